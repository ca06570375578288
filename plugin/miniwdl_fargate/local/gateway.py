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
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .. import aws

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


class Gateway:
    """``with Gateway(function_name) as url:`` the API at ``url`` until the block ends."""

    def __init__(self, function_name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.function_name = function_name
        handler = self._handler()
        self.server = ThreadingHTTPServer((host, port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="local-api-gateway", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                event = proxy_event(self.command, self.path, {k: v for k, v in self.headers.items()}, body)
                code, headers, data = invoke(gateway.function_name, event)
                self.send_response(code)
                for key, value in headers.items():
                    if key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def api_function(stack_name: str) -> str:
    """The physical name of the stack's API function."""
    resources = aws.client("cloudformation").list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    return next(r["PhysicalResourceId"] for r in resources if r["LogicalResourceId"] == "ApiFunction")
