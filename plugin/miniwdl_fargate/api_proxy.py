"""``miniwdl-fargate api-proxy``: the deployed stack's API (the run API and GA4GH WES) on
``http://127.0.0.1:<port>``, each request signed with SigV4 on its way, so a WES client that
cannot sign (most send a bearer token or nothing) works against a stack whose API takes IAM only.

A request is forwarded to the stage's URL (``ApiUrl`` without ``/runs``) with its method, path,
query, body and Content-Type, signed for the service ``execute-api`` in the stack's region with
the caller's AWS credentials (the usual chain: environment, profile, SSO, role)
(https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-control-access-using-iam-policies-to-invoke-api.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html). It listens on this machine
only: whoever reaches the port acts with your credentials. A WES RunLog's ``task_logs_url`` (the
API's own URL, which wants a signed request) comes back as this proxy's.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from .http_service import HttpService

#: headers passed on to the API (the rest are the client's connection's, or would break the signature)
FORWARDED = ("content-type", "accept")
TIMEOUT_S = 60.0


def stage_url(api_url: str) -> str:
    """The stage's base URL from the stack's ``ApiUrl`` output (``https://…/v1/runs``)."""
    return api_url[: -len("/runs")] if api_url.endswith("/runs") else api_url.rstrip("/")


def signed(method: str, url: str, headers: dict[str, str], body: bytes, credentials: Any, region: str) -> AWSRequest:
    """The request as API Gateway's IAM authorization wants it: SigV4 for ``execute-api``."""
    request = AWSRequest(method=method, url=url, data=body or None, headers=headers)
    SigV4Auth(credentials, "execute-api", region).add_auth(request)
    return request


def forward(request: AWSRequest) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send a signed request; the answer as status, headers, body (an HTTP error is an answer)."""
    prepared = request.prepare()
    outgoing = urllib.request.Request(prepared.url, data=prepared.body or None, method=prepared.method,
                                      headers=dict(prepared.headers.items()))
    try:
        with urllib.request.urlopen(outgoing, timeout=TIMEOUT_S) as answer:  # noqa: S310 (an https:// stage URL)
            return answer.status, list(answer.headers.items()), answer.read()
    except urllib.error.HTTPError as exn:
        return exn.code, list(exn.headers.items()), exn.read()


def failed(code: int, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """The proxy's own answer when it cannot forward a request (one line of JSON, as the API's errors)."""
    print(f"api-proxy: {message}", file=sys.stderr)
    return code, [("Content-Type", "application/json")], json.dumps({"error": "ProxyError", "message": message}).encode()


class SigningProxy(HttpService):
    """``with SigningProxy(stage, credentials, region, port=…) as url:`` the API at ``url``."""

    thread_name = "api-proxy"

    def __init__(self, stage: str, credentials: Any, region: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.stage, self.credentials, self.region = stage.rstrip("/"), credentials, region
        super().__init__(host, port)

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        passed = {k: v for k, v in headers.items() if k.lower() in FORWARDED}
        try:
            request = signed(method, self.stage + path, passed, body, self.credentials, self.region)
        except Exception as exn:  # noqa: BLE001 (credentials that cannot be refreshed: an ended SSO session)
            return failed(401, f"could not sign the request with your AWS credentials: {' '.join(str(exn).split())}")
        try:
            code, answer_headers, answer = forward(request)
        except (urllib.error.URLError, OSError) as exn:  # (the API unreachable: said, not a dropped connection)
            return failed(502, f"could not reach the stack's API {self.stage}: {getattr(exn, 'reason', exn)}")
        return code, answer_headers, self.through_proxy(answer)

    def through_proxy(self, answer: bytes) -> bytes:
        """A WES answer whose URLs are the API's own (``https://<api>/<stage>/...``, which a client
        of this proxy could not call unsigned) with them as this proxy's: a RunLog's
        ``task_logs_url``, and each TaskLog's ``stdout``/``stderr`` (in a RunLog's ``task_logs``,
        a ListTasks page's, or one GetTask answers); any other answer as it came."""
        prefix = self.stage + "/"
        if prefix.encode() not in answer:
            return answer
        try:
            doc = json.loads(answer)
        except ValueError:
            return answer
        if not isinstance(doc, dict):
            return answer

        def ours(holder: dict[str, Any], field: str) -> None:
            url = holder.get(field)
            if isinstance(url, str) and url.startswith(prefix):
                holder[field] = self.url + url[len(self.stage):]

        ours(doc, "task_logs_url")
        for log in [doc, *(t for t in (doc.get("task_logs") or []) if isinstance(t, dict))]:
            ours(log, "stdout")
            ours(log, "stderr")
        return json.dumps(doc).encode()
