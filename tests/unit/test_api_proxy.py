"""``miniwdl-fargate api-proxy`` (api_proxy.py): a request to the local port reaches the stack's
API with its method, path, query, body and Content-Type, SigV4-signed for execute-api in the
stack's region; the API's answer (an error too) comes back as it was."""

import json
import urllib.error
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from miniwdl_fargate.api_proxy import SigningProxy, stage_url
from tests.http_servers import QuietHandler, serving

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


@pytest.fixture
def upstream():
    """A stand-in for the stage: records each request, answers 200 (404 for /missing)."""
    seen = []
    stage = []

    class Handler(QuietHandler):
        def _serve(self):
            body = self.body()
            seen.append((self.command, self.path, dict(self.headers.items()), body))
            code = 404 if "missing" in self.path else 200
            doc = {"msg": "nope", "status_code": 404} if code == 404 else {"ok": True}
            log_text = f"{stage[0]}/ga4gh/wes/v1/runs/r-1/tasks/t1/logs"
            if self.path.endswith("/runs/r-1"):  # a WES RunLog: its task_logs_url the API's own
                doc = {"run_id": "r-1", "task_logs_url": f"{stage[0]}/ga4gh/wes/v1/runs/r-1/tasks",
                       "task_logs": [{"id": "t1", "stdout": log_text, "stderr": log_text}],
                       "outputs": {"w.note": f"{stage[0]}/kept as it is"}}
            if self.path.endswith("/tasks/t1"):  # GetTask: one TaskLog
                doc = {"id": "t1", "stdout": log_text, "stderr": log_text}
            self.reply(code, doc)

        do_GET = do_POST = _serve

    with serving(Handler) as url:
        stage.append(f"{url}/v1")
        yield stage[0], seen


def test_requests_arrive_signed_for_execute_api_with_body_and_query(upstream, monkeypatch):
    import datetime

    import botocore.auth

    # one clock for the proxy's signature and the one computed here to compare
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: datetime.datetime(2026, 11, 30, 9, 0, 0))
    stage, seen = upstream
    with SigningProxy(stage, CREDENTIALS, "eu-west-1") as url:
        body = b"--b\r\nContent-Disposition: form-data; name=\"workflow_type\"\r\n\r\nWDL\r\n--b--\r\n"
        request = urllib.request.Request(url + "/ga4gh/wes/v1/runs?x=1", data=body, method="POST",
                                         headers={"Content-Type": "multipart/form-data; boundary=b", "Authorization": "Bearer nope"})
        with urllib.request.urlopen(request) as answer:
            assert json.loads(answer.read()) == {"ok": True}
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url + "/ga4gh/wes/v1/runs/missing-0000aaaa")
        assert missing.value.code == 404 and json.loads(missing.value.read())["status_code"] == 404
    method, path, headers, received = seen[0]
    assert (method, path, received) == ("POST", "/v1/ga4gh/wes/v1/runs?x=1", body)
    assert headers["Content-Type"] == "multipart/form-data; boundary=b"
    auth = headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and "/eu-west-1/execute-api/aws4_request" in auth
    # the signature is the one botocore computes for the same request at the same time
    again = AWSRequest(method="POST", url=stage + "/ga4gh/wes/v1/runs?x=1", data=body,
                       headers={"Content-Type": "multipart/form-data; boundary=b"})
    SigV4Auth(CREDENTIALS, "execute-api", "eu-west-1").add_auth(again)
    assert headers["X-Amz-Date"] == "20261130T090000Z"
    assert again.headers["Authorization"] == auth


def test_the_stage_url_comes_from_the_stacks_api_url():
    assert stage_url("https://abc.execute-api.us-east-1.amazonaws.com/v1/runs") == "https://abc.execute-api.us-east-1.amazonaws.com/v1"


def test_a_local_stack_is_not_proxied_and_no_credentials_is_an_error(monkeypatch):
    from miniwdl_fargate import cli, client

    with pytest.raises(client.ClientError, match="local up"):
        cli.serve_api_proxy(client.Deployment("s", "us-east-1", {"ApiUrl": "http://x/v1/runs"}, local=True), 0)
    import boto3

    monkeypatch.setattr(boto3.session.Session, "get_credentials", lambda self: None)
    with pytest.raises(client.ClientError, match="no AWS credentials"):
        cli.serve_api_proxy(client.Deployment("s", "us-east-1", {"ApiUrl": "https://x/v1/runs"}), 0)


def test_a_run_logs_task_logs_url_comes_back_as_the_proxys_own(upstream):
    """The API gives a WES RunLog's task_logs_url as its own URL, which a client of the proxy
    (unsigned) could not call: through the proxy it is the proxy's; nothing else is changed."""
    stage, seen = upstream
    with SigningProxy(stage, CREDENTIALS, "eu-west-1") as url:
        with urllib.request.urlopen(url + "/ga4gh/wes/v1/runs/r-1") as answer:
            log = json.loads(answer.read())
        assert log["task_logs_url"] == url + "/ga4gh/wes/v1/runs/r-1/tasks"
        assert log["outputs"] == {"w.note": f"{stage}/kept as it is"}
        # each task log's text too (in a RunLog, and as GetTask gives one)
        assert log["task_logs"][0]["stdout"] == log["task_logs"][0]["stderr"] == url + "/ga4gh/wes/v1/runs/r-1/tasks/t1/logs"
        with urllib.request.urlopen(url + "/ga4gh/wes/v1/runs/r-1/tasks/t1") as answer:
            assert json.loads(answer.read())["stdout"] == url + "/ga4gh/wes/v1/runs/r-1/tasks/t1/logs"
        with urllib.request.urlopen(log["task_logs_url"]) as answer:  # (the proxy signs it)
            assert json.loads(answer.read()) == {"ok": True}
    assert seen[-1][1] == "/v1/ga4gh/wes/v1/runs/r-1/tasks"
    assert seen[-1][2]["Authorization"].startswith("AWS4-HMAC-SHA256 ")


def test_an_unreachable_api_is_answered_502_in_one_line():
    """The connection to the client was dropped (a traceback on the proxy's console)."""
    with SigningProxy("http://127.0.0.1:9/v1", CREDENTIALS, "eu-west-1") as url:  # (port 9: nothing listens)
        with pytest.raises(urllib.error.HTTPError) as answered:
            urllib.request.urlopen(url + "/ga4gh/wes/v1/service-info")
    assert answered.value.code == 502
    doc = json.loads(answered.value.read())
    assert doc["error"] == "ProxyError" and doc["message"].startswith("could not reach the stack's API http://127.0.0.1:9/v1")
