"""Local mode's stand-in for API Gateway: an HTTP server on this machine that turns each request
into the REST API's Lambda proxy event and invokes the stack's API function with it (through moto,
as every local Lambda invoke goes), so HTTP clients (a WES client, curl) reach the run API and WES
at ``http://127.0.0.1:<port>/ga4gh/wes/v1/...``. No SigV4 here: it serves this machine only.

The event has the shape API Gateway sends (tests/events/apigw_post_runs.json): a body whose
Content-Type is one of the API's binary media types (multipart/form-data) arrives base64-encoded
with ``isBase64Encoded`` true
(https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-payload-encodings.html);
``resource`` is the API's resource the request matched (``/runs/{run_id}``) and
``pathParameters`` what its ``{...}`` segments took. Only the deployed API's resources and methods
reach the function (``Routes``, read from the REST API as deployed): any other request is answered
as API Gateway answers it, 403 ``{"message": "Missing Authentication Token"}``, never by the
function (https://repost.aws/knowledge-center/api-gateway-authentication-token-errors: "The API
request is made to a method or resource that doesn't exist").
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .. import aws
from ..http_service import HttpService

#: the API's BinaryMediaTypes (template.yaml RunsApi)
BINARY_MEDIA_TYPES = ("multipart/form-data",)
STAGE = "v1"


#: what API Gateway answers a request for a resource or method the API does not have
MISSING_ROUTE = (
    403,
    [("Content-Type", "application/json"), ("x-amzn-ErrorType", "MissingAuthenticationTokenException")],
    json.dumps({"message": "Missing Authentication Token"}).encode(),
)


@dataclass(frozen=True)
class Route:
    """One resource of the API (``/runs/{run_id}``) and the methods it has."""

    resource: str
    methods: frozenset[str]

    @property
    def pattern(self) -> re.Pattern[str]:
        """The request paths the resource takes: ``{name}`` one path segment, ``{name+}`` (a
        greedy path variable) the rest of the path."""
        parts = []
        for segment in self.resource.strip("/").split("/") if self.resource != "/" else []:
            variable = re.fullmatch(r"\{(\w+)(\+?)\}", segment)
            if variable is None:
                parts.append(re.escape(segment))
            else:
                parts.append(f"(?P<{variable[1]}>{'.+' if variable[2] else '[^/]+'})")
        return re.compile("/" + "/".join(parts))

    @property
    def variables(self) -> int:
        return self.resource.count("{")


class Routes:
    """The API's resources and their methods: which one a request reaches (a resource with fewer
    path variables first, as API Gateway prefers a literal segment), or none."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = sorted(routes, key=lambda route: (route.variables, "+}" in route.resource))

    @classmethod
    def of_api(cls, rest_api_id: str) -> "Routes":
        """The resources and methods of the REST API ``rest_api_id`` as deployed."""
        pages = aws.client("apigateway").get_paginator("get_resources").paginate(restApiId=rest_api_id, embed=["methods"])
        return cls([
            Route(item["path"], frozenset(item.get("resourceMethods") or {}))
            for page in pages for item in page["items"]
        ])

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        """(the resource, its path parameters) that ``method`` on ``path`` reaches; None if none."""
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found is not None:
                if method not in route.methods and "ANY" not in route.methods:
                    return None
                return route.resource, {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
        return None


def proxy_event(
    method: str, target: str, headers: dict[str, str], body: bytes, resource: str | None = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Lambda proxy event API Gateway makes of one HTTP request to the stage (``target``:
    path and query, without the stage) that reached ``resource`` (the path itself where not
    given) with ``path_parameters``."""
    parsed = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    kind = headers.get("Content-Type", headers.get("content-type", "")).split(";", 1)[0].strip().lower()
    binary = kind in BINARY_MEDIA_TYPES
    return {
        "resource": resource or parsed.path,
        "path": parsed.path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource or parsed.path, "httpMethod": method, "path": f"/{STAGE}{parsed.path}", "stage": STAGE,
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
    """``with Gateway(function_name, routes) as url:`` the API at ``url`` until the block ends:
    a request ``routes`` has goes to the function, any other is answered ``MISSING_ROUTE``."""

    thread_name = "local-api-gateway"

    def __init__(self, function_name: str, routes: Routes, host: str = "127.0.0.1", port: int = 0) -> None:
        self.function_name = function_name
        self.routes = routes
        super().__init__(host, port)

    @classmethod
    def for_stack(cls, stack_name: str, host: str = "127.0.0.1", port: int = 0) -> "Gateway":
        """The gateway of the stack's run API (its API function, and its REST API's routes)."""
        from ..client import api_function

        pages = aws.client("cloudformation").get_paginator("list_stack_resources").paginate(StackName=stack_name)
        apis = [r["PhysicalResourceId"] for page in pages for r in page["StackResourceSummaries"]
                if r["ResourceType"] == "AWS::ApiGateway::RestApi"]
        if len(apis) != 1:
            raise ValueError(f"stack {stack_name} has {len(apis)} REST APIs; local mode serves one")
        return cls(api_function(stack_name), Routes.of_api(apis[0]), host, port)

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        reached = self.routes.match(method, urllib.parse.urlsplit(path).path)
        if reached is None:
            return MISSING_ROUTE
        code, answered, data = invoke(self.function_name, proxy_event(method, path, headers, body, *reached))
        return code, list(answered.items()), data
