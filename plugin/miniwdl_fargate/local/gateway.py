"""Local mode's stand-in for API Gateway: an HTTP server on this machine that turns each request
into the REST API's Lambda proxy event and invokes the stack's API function with it (through moto,
as every local Lambda invoke goes), so HTTP clients (a WES client, curl) reach the run API and WES
at ``http://127.0.0.1:<port>/ga4gh/wes/v1/...``. No SigV4 here: it serves this machine only.

The event has the shape API Gateway sends (tests/events/apigw_post_runs.json): a body whose
Content-Type is one of the API's binary media types (multipart/form-data) arrives base64-encoded
with ``isBase64Encoded`` true
(https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-payload-encodings.html).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

from .. import aws
from ..http_service import HttpService

#: the API's BinaryMediaTypes (template.yaml RunsApi)
BINARY_MEDIA_TYPES = ("multipart/form-data",)
STAGE = "v1"


def proxy_event(method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The Lambda proxy event API Gateway makes of one HTTP request to the stage (``target``:
    path and query, without the stage)."""
    parsed = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    kind = headers.get("Content-Type", headers.get("content-type", "")).split(";", 1)[0].strip().lower()
    binary = kind in BINARY_MEDIA_TYPES
    return {
        "resource": parsed.path,
        "path": parsed.path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": parsed.path, "httpMethod": method, "path": f"/{STAGE}{parsed.path}", "stage": STAGE,
            "accountId": "123456789012", "protocol": "HTTP/1.1", "requestId": "local",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": headers.get("User-Agent", "")},
        },
        "body": (base64.b64encode(body).decode() if binary else body.decode("utf-8", errors="replace")) if body else None,
        "isBase64Encoded": bool(body) and binary,
    }


def invoke(function_name: str, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """The function's answer to ``event``: status, headers, body."""
    payload = aws.client("lambda").invoke(FunctionName=function_name, Payload=json.dumps(event).encode())["Payload"].read()
    answer = json.loads(payload)
    if "statusCode" not in answer:  # the function failed: API Gateway answers 502
        return 502, {"Content-Type": "application/json"}, json.dumps({"message": "Internal server error"}).encode()
    body = answer.get("body") or ""
    data = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
    return int(answer["statusCode"]), dict(answer.get("headers") or {}), data


class Gateway(HttpService):
    """``with Gateway(function_name) as url:`` the API at ``url`` until the block ends."""

    thread_name = "local-api-gateway"

    def __init__(self, function_name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.function_name = function_name
        super().__init__(host, port)

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        code, answered, data = invoke(self.function_name, proxy_event(method, path, headers, body))
        return code, list(answered.items()), data

