"""GA4GH WES 1.1 through the API function (functions/api.py), against moto: API Gateway proxy
events as the REST API sends them (a multipart/form-data body base64-encoded, the API's binary
media type), the run started through the one submission path, answers in WES's shapes."""

import json
import logging
import os
import time

import botocore.session
import pytest
import urllib3
from botocore.validate import ParamValidator

from miniwdl_fargate import aws, runs, status
from miniwdl_fargate.local.gateway import proxy_event
from tests.function_env import LambdaContext, set_environment
from tests.workflows import HELLO

S3_MODEL = botocore.session.get_session().get_service_model("s3")
SFN_MODEL = botocore.session.get_session().get_service_model("stepfunctions")
PREFIX = "/ga4gh/wes/v1"


@pytest.fixture
def wes(moto_aws, monkeypatch):
    """call(method, path, body=b"", content_type=...) -> (status, answer) through the handler."""
    import api

    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    aws.client("ecs").create_cluster(clusterName="wdl")
    machine = aws.client("stepfunctions").create_state_machine(
        name="run", definition=json.dumps({"StartAt": "a", "States": {"a": {"Type": "Wait", "Seconds": 3600, "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/run",
    )["stateMachineArn"]
    set_environment(monkeypatch, STATE_MACHINE_ARN=machine)
    monkeypatch.setattr(api.metrics.provider, "namespace", "test")
    sent = []  # every request to S3 and Step Functions, checked against botocore's models below
    for client, name in ((s3, "s3"), (aws.client("stepfunctions"), "stepfunctions")):
        client.meta.events.register(f"provide-client-params.{name}.*", lambda params, model, name=name, **_: sent.append((name, model.name, dict(params))))

    def call(method, path, body=b"", content_type="application/json"):
        event = proxy_event(method, PREFIX + path, {"Content-Type": content_type, "Host": "abcdef1234.execute-api.us-east-1.amazonaws.com"}, body)
        answer = api.handler(event, LambdaContext())
        return answer["statusCode"], json.loads(answer["body"])

    call.machine = machine
    yield call
    for service, operation, params in sent:
        model = S3_MODEL if service == "s3" else SFN_MODEL
        report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
        assert not report.has_errors(), (operation, report.generate_report())


def form(fields, files=()):
    """A multipart/form-data body as an HTTP client encodes it, and its Content-Type."""
    parts = list(fields.items()) + [("workflow_attachment", (name, data)) for name, data in files]
    return urllib3.encode_multipart_formdata(parts)


def executions(machine):
    return aws.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]


def record_of(run_id):
    current = status.read("runs", run_id)
    bucket, prefix = current.results[len("s3://"):].split("/", 1)
    return runs.RunRecord.model_validate(json.loads(aws.client("s3").get_object(Bucket=bucket, Key=prefix + runs.RECORD_NAME)["Body"].read()))


def test_service_info_names_wdl_miniwdl_and_the_protocols(wes):
    code, info = wes("GET", "/service-info")
    assert code == 200
    assert info["workflow_type_versions"] == {"WDL": {"workflow_type_version": ["draft-2", "1.0", "1.1", "1.2", "development"]}}
    assert list(info["workflow_engine_versions"]) == ["miniwdl"]
    assert info["workflow_engine_versions"]["miniwdl"]["workflow_engine_version"][0][0].isdigit()
    assert info["supported_filesystem_protocols"] == ["s3", "https"]
    assert info["supported_wes_versions"] == ["1.1.0"]


def test_multipart_post_with_an_attached_wdl_starts_one_run_with_tags_as_labels_and_parameters_as_options(wes):
    body, content_type = form(
        {"workflow_url": "hello.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
         "workflow_params": json.dumps({"hello.who": "Ann"}), "tags": json.dumps({"team": "genomics"}),
         "workflow_engine_parameters": json.dumps({"max_cost_usd": "20", "call_cache": "read"})},
        [("hello.wdl", HELLO.encode())],
    )
    code, answer = wes("POST", "/runs", body, content_type)
    assert code == 200, answer
    run_id = answer["run_id"]
    assert run_id.startswith("hello-")
    record = record_of(run_id)
    assert record.options == {"labels": {"team": "genomics"}, "max_cost_usd": 20.0, "call_cache": "read"}
    assert record.submitted["via"] == "wes" and record.submitted["workflow_type_version"] == "1.1"
    assert [e["name"] for e in executions(wes.machine)] == [run_id]

    assert wes("GET", f"/runs/{run_id}/status") == (200, {"run_id": run_id, "state": "QUEUED"})
    code, log = wes("GET", f"/runs/{run_id}")
    assert code == 200
    assert log["state"] == "QUEUED" and log["task_logs"] == [] and log["outputs"] == {}
    assert log["request"]["workflow_params"] == {"hello.who": "Ann"}
    assert log["request"]["tags"] == {"team": "genomics"}
    assert log["request"]["workflow_engine_parameters"] == {"max_cost_usd": "20.0", "call_cache": "read"}
    assert log["request"]["workflow_url"] == "hello.wdl"

    code, listed = wes("GET", "/runs?page_size=10")
    assert code == 200 and listed["runs"][0]["run_id"] == run_id and listed["runs"][0]["state"] == "QUEUED"
    assert listed["runs"][0]["tags"] == {"team": "genomics"}  # (RunSummary's tags: the request's)
    assert wes("GET", "/runs?page_size=5000")[0] == 200  # (a preference: taken as the most a page holds)

    assert wes("POST", f"/runs/{run_id}/cancel") == (200, {"run_id": run_id})
    assert wes("GET", f"/runs/{run_id}/status")[1]["state"] == "CANCELED"
    # a client's retry of its cancel (its answer lost): CancelRun answers 200, 401, 403, 404 or 500
    assert wes("POST", f"/runs/{run_id}/cancel") == (200, {"run_id": run_id})
    assert status.read("runs", run_id).status == "CANCELLED"
    # a run that ended otherwise has nothing to cancel
    other = wes("POST", "/runs", *form({"workflow_url": "hello.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
                                        "workflow_params": json.dumps({"hello.who": "Bo"})}, [("hello.wdl", HELLO.encode())]))[1]["run_id"]
    status.set_state("runs", other, "SUCCEEDED")
    code, refused = wes("POST", f"/runs/{other}/cancel")
    assert code == 409 and refused["status_code"] == 409 and "already SUCCEEDED" in refused["msg"]


def test_json_post_with_an_s3_workflow_url(wes):
    aws.client("s3").put_object(Bucket="runs", Key="workflows/hello/hello.wdl", Body=HELLO.encode())
    request = {"workflow_url": "s3://runs/workflows/hello/hello.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
               "workflow_params": {"hello.who": "Bo"}}
    code, answer = wes("POST", "/runs", json.dumps(request).encode())
    assert code == 200, answer
    assert record_of(answer["run_id"]).submitted["workflow"] == "s3://runs/workflows/hello/hello.wdl"
    code, answer = wes("POST", "/runs", json.dumps({**request, "workflow_type_version": "2.0"}).encode())
    assert code == 400 and "workflow_type_version: '2.0': this service runs WDL draft-2, 1.0, 1.1" in answer["msg"]


@pytest.mark.parametrize(
    "change, where",
    [
        ({"tags": json.dumps({"aws:team": "x"})}, "tags: 'aws:team'"),
        ({"workflow_engine_parameters": json.dumps({"max_cost_usd": "-1"})}, "workflow_engine_parameters.max_cost_usd"),
        ({"workflow_engine_parameters": json.dumps({"fast": "yes"})}, "workflow_engine_parameters.fast"),
        ({"workflow_type": "CWL"}, "workflow_type"),
        ({"workflow_engine_version": "1.11.0"}, "workflow_engine_version: '1.11.0': this service runs miniwdl 1.16"),
        ({"workflow_url": "old.wdl"}, "the document declares WDL 3.0: this service runs WDL draft-2"),
        ({"workflow_params": '{"hello.who": "a", "hello.who": "b"}'}, "workflow_params"),
        ({"workflow_params": json.dumps({"hello.nobody": "x"})}, "hello.nobody"),
        ({"workflow_url": "other.wdl"}, "workflow_url"),
        ({"workflow_url": "ftp://host/hello.wdl"}, "workflow_url"),
    ],
)
def test_a_bad_request_is_an_error_response_naming_the_field_and_starts_nothing(wes, change, where):
    fields = {"workflow_url": "hello.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
              "workflow_params": json.dumps({"hello.who": "Ann"}), **change}
    attached = [("old.wdl", b"version 3.0\nworkflow old {}\n")] if fields["workflow_url"] == "old.wdl" else [("hello.wdl", HELLO.encode())]
    code, answer = wes("POST", "/runs", *form(fields, attached))
    assert code == 400 and answer["status_code"] == 400, answer
    assert where in answer["msg"], answer
    assert executions(wes.machine) == []
    assert aws.client("s3").list_objects_v2(Bucket="runs").get("KeyCount", 0) == 0


def test_unknown_run_and_route_answer_wes_error_responses(wes):
    code, answer = wes("GET", "/runs/nobody-0000aaaa")
    assert (code, answer["status_code"]) == (404, 404) and "nobody-0000aaaa" in answer["msg"]
    # a run id no run can have names no run: 404, as WES answers an unknown one (not 400: WES's
    # GetRunLog, GetRunStatus, CancelRun and GetTask have no 400 answer)
    for path in ("/runs/not a run id/status", "/runs/not a run id", "/runs/x%2Fy/tasks/abc", "/runs/nobody-0000aaaa/tasks/x y"):
        code, answer = wes("POST" if path.endswith("/cancel") else "GET", path)
        assert (code, answer["status_code"]) == (404, 404), path
        assert "no such run" in answer["msg"], answer
    code, answer = wes("POST", "/runs/not a run id/cancel")
    assert (code, answer["status_code"]) == (404, 404)
    code, answer = wes("GET", "/nothing-here")
    assert (code, answer["status_code"]) == (404, 404)


def test_a_failed_run_lists_as_executor_error_and_a_damaged_cost_json_leaves_its_task_logs_empty(wes):
    body, content_type = form({"workflow_url": "hello.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
                               "workflow_params": json.dumps({"hello.who": "Ann"})}, [("hello.wdl", HELLO.encode())])
    run_id = wes("POST", "/runs", body, content_type)[1]["run_id"]
    results = status.read("runs", run_id).results
    prefix = results[len("s3://runs/"):]
    s3 = aws.client("s3")
    s3.put_object(Bucket="runs", Key=prefix + "error.json", Body=json.dumps(
        {"run_id": run_id, "status": "FAILED", "error": "RunFailed", "message": "call-greet failed with exit status 1",
         "failed_task": {"error": "CommandFailed", "exit_status": 1}}).encode())
    s3.put_object(Bucket="runs", Key=prefix + "cost.json", Body=b"{ not json")
    status.set_state("runs", run_id, "FAILED", error={"error": "RunFailed", "message": "x", "error_json": results + "error.json"})
    listed = wes("GET", "/runs")[1]["runs"]
    assert [(r["run_id"], r["state"]) for r in listed] == [(run_id, "EXECUTOR_ERROR")]
    code, log = wes("GET", f"/runs/{run_id}")
    assert code == 200 and log["state"] == "EXECUTOR_ERROR" and log["task_logs"] == []
    assert log["run_log"]["system_logs"] == ["call-greet failed with exit status 1"]


def test_a_run_logs_stderr_is_a_url_a_client_gets_over_https(wes):
    """RunLog's stderr is "A URL to retrieve standard error logs": wes-client GETs it with
    requests, which failed on the s3:// URI it was; it is a presigned HTTPS URL of the run's
    workflow.log, which reads without AWS credentials."""
    import requests

    body, content_type = form({"workflow_url": "hello.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
                               "workflow_params": json.dumps({"hello.who": "Ann"})}, [("hello.wdl", HELLO.encode())])
    run_id = wes("POST", "/runs", body, content_type)[1]["run_id"]
    results = status.read("runs", run_id).results
    status.update("runs", run_id, lambda current: current.model_copy(update={"status": "RUNNING", "started_at": runs.now_iso()}))
    # the driver uploads workflow.log at the run's end: no URL that answers NoSuchKey before it
    assert wes("GET", f"/runs/{run_id}")[1]["run_log"]["stderr"] is None
    status.update("runs", run_id, lambda current: current.model_copy(update={"status": "FAILED"}))
    assert wes("GET", f"/runs/{run_id}")[1]["run_log"]["stderr"] is None  # (a driver that died uploaded none)
    aws.client("s3").put_object(Bucket="runs", Key=results[len("s3://runs/"):] + "workflow.log", Body=b"the workflow's log\n")
    stderr = wes("GET", f"/runs/{run_id}")[1]["run_log"]["stderr"]
    # (Signature Version 4: S3 refuses version 2, which botocore presigns with in us-east-1, for buckets since 2020)
    assert stderr.startswith("https://") and "/workflow.log?" in stderr and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in stderr, stderr
    assert requests.get(stderr, timeout=10).text == "the workflow's log\n"


def bundle_of(main_wdl, defaults=None):
    """A ``miniwdl zip`` bundle (built by miniwdl's own builder) of one WDL, with default inputs."""
    import tempfile

    import WDL
    import WDL.Zip

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "hello.wdl")
        with open(path, "w") as out:
            out.write(main_wdl)
        zipped = os.path.join(folder, "hello.zip")
        WDL.Zip.build(WDL.load(path), zipped, logging.getLogger("test"), inputs=defaults)
        with open(zipped, "rb") as data:
            return data.read()


def test_an_attached_miniwdl_zip_bundle_runs_with_its_default_inputs_under_the_given_ones(wes):
    bundle = bundle_of(HELLO, {"hello.who": "bundled"})
    body, content_type = form(
        {"workflow_url": "hello.zip", "workflow_type": "WDL", "workflow_type_version": "draft-2",  # (the bundle's says)
         "workflow_params": json.dumps({})},
        [("hello.zip", bundle)],
    )
    code, answer = wes("POST", "/runs", body, content_type)
    assert code == 200, answer
    record = record_of(answer["run_id"])
    assert answer["run_id"].startswith("hello-")
    bucket, prefix = record.inputs[len("s3://"):].split("/", 1)
    assert json.loads(aws.client("s3").get_object(Bucket=bucket, Key=prefix)["Body"].read()) == {"hello.who": "bundled"}
    assert record.workflow.endswith("/source/hello.wdl")

    body, content_type = form({"workflow_url": "bad.zip", "workflow_type": "WDL", "workflow_params": "{}"}, [("bad.zip", b"not a zip")])
    code, refused = wes("POST", "/runs", body, content_type)
    assert code == 400 and refused["msg"] == (
        "the request was not accepted: workflow_attachment: not a ZIP archive (build the bundle with `miniwdl zip WORKFLOW.wdl`)"
    ), refused  # (the attachment named once)
    assert len(executions(wes.machine)) == 1


def test_a_runs_task_logs_are_listed_a_page_at_a_time_and_one_too_large_for_its_run_log_is_only_paged(wes, monkeypatch):
    """WES 1.1's ListTasks and GetTask: every attempt's log, in RunLog's order, a page at a time;
    a run of more attempts than a RunLog holds (its answer must stay under Lambda's 6 MB) gives
    task_logs null there and the URL to page them."""
    import api

    from miniwdl_fargate.pipeline import wes as wes_logic

    body, content_type = form({"workflow_url": "hello.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
                               "workflow_params": json.dumps({"hello.who": "Ann"})}, [("hello.wdl", HELLO.encode())])
    run_id = wes("POST", "/runs", body, content_type)[1]["run_id"]
    results = status.read("runs", run_id).results
    arns = [f"arn:aws:ecs:us-east-1:123456789012:task/wdl/{i:032x}" for i in range(7)]
    attempts = [{"call": "driver", "attempt": 1, "ecs_task": "arn:aws:ecs:us-east-1:123456789012:task/wdl/driver"}] + [
        {"call": f"call-greet-{i}", "attempt": 1, "ecs_task": arn, "exit_code": 0, "outcome": "succeeded", "capacity": "FARGATE",
         "started_at": "2026-12-02T15:00:00Z", "stopped_at": "2026-12-02T15:01:00Z"} for i, arn in enumerate(arns)
    ]
    aws.client("s3").put_object(Bucket="runs", Key=results[len("s3://runs/"):] + "cost.json", Body=json.dumps({"attempts": attempts}).encode())

    code, whole = wes("GET", f"/runs/{run_id}")
    assert code == 200 and [t["id"] for t in whole["task_logs"]] == [a.rsplit("/", 1)[1] for a in arns]
    assert whole["task_logs_url"] == f"{PREFIX}/runs/{run_id}/tasks"  # (no API Gateway domain in this event: the path)
    paged, token = [], None
    for expected_next in ("3", "6", ""):
        code, page = wes("GET", f"/runs/{run_id}/tasks?page_size=3" + (f"&page_token={token}" if token else ""))
        assert code == 200 and page["next_page_token"] == expected_next
        paged += page["task_logs"]
        token = page["next_page_token"]
    assert paged == whole["task_logs"]
    code, one = wes("GET", f"/runs/{run_id}/tasks/{paged[4]['id']}")
    assert code == 200 and one == paged[4]
    code, missing = wes("GET", f"/runs/{run_id}/tasks/{'f' * 32}")
    assert (code, missing["status_code"]) == (404, 404) and "has no task" in missing["msg"]
    for query in ("?page_token=99", "?page_size=0", f"?page_size={wes_logic.TASKS_PAGE_MAX + 1}", "?page_token=x"):
        code, refused = wes("GET", f"/runs/{run_id}/tasks{query}")
        assert (code, refused["status_code"]) == (400, 400), query

    monkeypatch.setattr(wes_logic, "TASK_LOGS_INLINE", 5)
    code, large = wes("GET", f"/runs/{run_id}")
    assert code == 200 and large["task_logs"] is None and large["task_logs_url"] == whole["task_logs_url"]
    # through API Gateway, the URL is the API's own: its domain and stage
    event = proxy_event("GET", f"{PREFIX}/runs/{run_id}", {"Host": "abcdef1234.execute-api.us-east-1.amazonaws.com"}, b"")
    event["requestContext"]["domainName"] = "abcdef1234.execute-api.us-east-1.amazonaws.com"
    answer = json.loads(api.handler(event, LambdaContext())["body"])
    assert answer["task_logs_url"] == f"https://abcdef1234.execute-api.us-east-1.amazonaws.com/v1{PREFIX}/runs/{run_id}/tasks"
    # through a custom domain, under the base path its mapping gives the API
    event["requestContext"].update(domainName="api.example.org", path=f"/genomics{PREFIX}/runs/{run_id}")
    answer = json.loads(api.handler(event, LambdaContext())["body"])
    assert answer["task_logs_url"] == f"https://api.example.org/genomics{PREFIX}/runs/{run_id}/tasks"


def test_a_run_log_too_large_for_the_answer_names_its_outputs_and_then_its_inputs_by_their_s3_objects(wes, monkeypatch):
    import api

    params = {"hello.who": "A" * 5000}
    body, content_type = form({"workflow_url": "hello.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
                               "workflow_params": json.dumps(params)}, [("hello.wdl", HELLO.encode())])
    run_id = wes("POST", "/runs", body, content_type)[1]["run_id"]
    results = status.read("runs", run_id).results
    outputs = {"hello.files": [f"{results}out/files/{i}/sample-{i}.bam" for i in range(100)]}
    aws.client("s3").put_object(Bucket="runs", Key=results[len("s3://runs/"):] + "outputs.json", Body=json.dumps({"outputs": outputs}).encode())
    code, whole = wes("GET", f"/runs/{run_id}")
    assert code == 200 and whole["outputs"] == outputs and whole["request"]["workflow_params"] == params
    size = len(json.dumps(whole))
    monkeypatch.setattr(api, "ANSWER_BYTES", size - 1000)  # (the outputs, about 9 KB, need to go)
    code, log = wes("GET", f"/runs/{run_id}")
    assert code == 200 and log["outputs"] == {} and log["request"]["workflow_params"] == params
    assert log["run_log"]["system_logs"][-1].startswith("outputs: ") and log["run_log"]["system_logs"][-1].endswith(f"in {results}outputs.json")
    monkeypatch.setattr(api, "ANSWER_BYTES", 3000)  # (the inputs, 5 KB, too)
    code, log = wes("GET", f"/runs/{run_id}")
    assert code == 200 and log["outputs"] == {} and log["request"]["workflow_params"] == {}
    assert [line.split(":")[0] for line in log["run_log"]["system_logs"][-2:]] == ["outputs", "workflow_params"]
    assert log["run_log"]["system_logs"][-1].endswith(f"in {results}inputs.json")


READS = """version 1.1
workflow count {
  input { File reads  Array[File] more = []  String label = "" }
  output { Int lines = length(read_lines(reads)) }
}
"""


def test_attached_files_workflow_params_names_are_the_runs_inputs(wes):
    """WES: "input files may be relative URLs corresponding to files uploaded using
    workflow_attachment" (wes-client --attachments=data/reads.txt, Dockstore --attach): they were
    dropped, the run refused as naming a local path. They are staged by content, as `submit`
    stages local files; a String naming one stays a String."""
    import hashlib

    reads = b"a\nb\nc\n"
    body, content_type = form(
        {"workflow_url": "count.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
         "workflow_params": json.dumps({"count.reads": "data/reads.txt", "count.more": ["./data/reads.txt"],
                                        "count.label": "data/reads.txt"})},
        [("count.wdl", READS.encode()), ("data/reads.txt", reads), ("README.md", b"not named: not staged")])
    code, answer = wes("POST", "/runs", body, content_type)
    assert code == 200, answer
    record = record_of(answer["run_id"])
    inputs = json.loads(aws.client("s3").get_object(Bucket="runs", Key=record.inputs[len("s3://runs/"):])["Body"].read())
    staged = f"s3://runs/staged/{hashlib.sha256(reads).hexdigest()}/reads.txt"
    assert inputs == {"count.reads": staged, "count.more": [staged], "count.label": "data/reads.txt"}
    assert aws.client("s3").get_object(Bucket="runs", Key=staged[len("s3://runs/"):])["Body"].read() == reads
    listed = aws.client("s3").list_objects_v2(Bucket="runs", Prefix="staged/")["Contents"]
    assert [o["Key"] for o in listed] == [staged[len("s3://runs/"):]]


@pytest.mark.parametrize("params, said", [
    ({"count.reads": "/etc/passwd"}, "count.reads: file /etc/passwd is not one of the attached files"),
    ({"count.reads": "data/other.txt"}, "count.reads: file data/other.txt is not one of the attached files"),
    ({"count.reads": "../count.wdl"}, "count.reads: file ../count.wdl is not one of the attached files"),
])
def test_a_local_path_that_is_not_attached_is_refused_and_nothing_of_the_service_is_read(wes, params, said):
    body, content_type = form({"workflow_url": "count.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
                               "workflow_params": json.dumps(params)},
                              [("count.wdl", READS.encode()), ("data/reads.txt", b"x\n")])
    code, answer = wes("POST", "/runs", body, content_type)
    assert code == 400 and said in answer["msg"], answer
    assert aws.client("s3").list_objects_v2(Bucket="runs").get("KeyCount", 0) == 0


def test_attached_files_named_beside_an_s3_workflow_are_refused_naming_them(wes):
    aws.client("s3").put_object(Bucket="runs", Key="workflows/count.wdl", Body=READS.encode())
    body, content_type = form({"workflow_url": "s3://runs/workflows/count.wdl", "workflow_type": "WDL",
                               "workflow_type_version": "1.1", "workflow_params": json.dumps({"count.reads": "data/reads.txt"})},
                              [("data/reads.txt", b"x\n")])
    code, answer = wes("POST", "/runs", body, content_type)
    assert code == 400 and "workflow_params: names the attached file(s) data/reads.txt" in answer["msg"], answer


def test_an_attached_file_named_many_times_is_staged_once(wes):
    """A 16 KB request naming one attached file 2,000 times held 2,000 copies of it in memory
    (2 GB for a 1 MiB file) and asked S3 2,000 times: one upload a key."""
    body, content_type = form(
        {"workflow_url": "count.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
         "workflow_params": json.dumps({"count.reads": "r.txt", "count.more": ["r.txt"] * 2000})},
        [("count.wdl", READS.encode()), ("r.txt", b"x" * (1 << 20))])
    from miniwdl_fargate.pipeline import wes as wes_mapping

    asked = wes_mapping.submission(wes_mapping.read_request(body, content_type), bucket="runs")
    assert len(asked.staged) == 1 and len(asked.inputs["count.more"]) == 2000
    code, answer = wes("POST", "/runs", body, content_type)
    assert code == 200, answer


@pytest.mark.parametrize("attachments, said", [
    ([("count.wdl", READS.encode()), ("bad\x00name.txt", b"x")], "its name holds a control character"),
    ([("count.wdl", b"version 1.1\nworkflow count { call a  call b }\n")], "No such task/workflow: a"),
])
def test_a_bad_attachment_or_a_workflow_of_several_errors_is_a_400_naming_it(wes, attachments, said):
    body, content_type = form({"workflow_url": "count.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
                               "workflow_params": "{}"}, attachments)
    code, answer = wes("POST", "/runs", body, content_type)
    assert code == 400 and said in answer["msg"] and "/tmp/" not in answer["msg"], answer


def test_a_task_logs_url_gives_its_text_with_the_apis_own_credentials(wes):
    """A TaskLog's stdout/stderr was the CloudWatch console's page: a client GETting it got a
    sign-in page. It is this API's URL of the log's text ("available using the same credentials
    used to access the WES endpoint": WES 1.1), the console's link kept in its tags."""
    import api

    body, content_type = form({"workflow_url": "hello.wdl", "workflow_type": "WDL", "workflow_type_version": "1.1",
                               "workflow_params": json.dumps({"hello.who": "Ann"})}, [("hello.wdl", HELLO.encode())])
    run_id = wes("POST", "/runs", body, content_type)[1]["run_id"]
    results = status.read("runs", run_id).results
    ran, never = "a" * 32, "b" * 32
    attempts = [{"call": "call-greet", "attempt": n, "ecs_task": f"arn:aws:ecs:us-east-1:123456789012:task/wdl/{task}",
                 "exit_code": 1, "outcome": "failed"} for n, task in ((1, ran), (2, never))]
    aws.client("s3").put_object(Bucket="runs", Key=results[len("s3://runs/"):] + "cost.json", Body=json.dumps({"attempts": attempts}).encode())
    logs = aws.client("logs")
    logs.create_log_group(logGroupName="miniwdl-fargate-tasks")
    logs.create_log_stream(logGroupName="miniwdl-fargate-tasks", logStreamName=f"miniwdl/task/{ran}")
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName="miniwdl-fargate-tasks", logStreamName=f"miniwdl/task/{ran}",
                        logEvents=[{"timestamp": now + i, "message": f"line {i}"} for i in range(3)])
    code, one = wes("GET", f"/runs/{run_id}/tasks/{ran}")
    assert code == 200 and one["stdout"] == one["stderr"] == f"{PREFIX}/runs/{run_id}/tasks/{ran}/logs"
    assert one["tags"]["log_console"].startswith("https://")
    code, whole = wes("GET", f"/runs/{run_id}")
    assert [t["stdout"] for t in whole["task_logs"]] == [f"{PREFIX}/runs/{run_id}/tasks/{t}/logs" for t in (ran, never)]

    def text(task):
        answer = api.handler(proxy_event("GET", f"{PREFIX}/runs/{run_id}/tasks/{task}/logs", {}, b""), LambdaContext())
        headers = {**{k: v[0] for k, v in (answer.get("multiValueHeaders") or {}).items()}, **(answer.get("headers") or {})}
        return answer["statusCode"], headers.get("Content-Type"), answer["body"]

    assert text(ran) == (200, "text/plain", "line 0\nline 1\nline 2\n")
    assert text(never) == (200, "text/plain", "(no log: the task never started, or its log expired)\n")
    code, missing = wes("GET", f"/runs/{run_id}/tasks/{'c' * 32}/logs")
    assert (code, missing["status_code"]) == (404, 404)
