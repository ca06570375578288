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
request is made to a method or resource that doesn't exist"). A method whose request validator
checks the body (``POST /runs``: the RunRequest model) has a JSON body checked against its model as
API Gateway checks it, JSON Schema draft 4, and a body of another Content-Type not at all
(https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-method-request-validation.html:
"If no matching content type is found, request validation is not performed"); one that fails
gets the API's BAD_REQUEST_BODY gateway response, never the function (``BodyChecks``), its
``validationErrorString`` worded as API Gateway's validator words the checks the models use.
A body over the REST API's 10 MB, or an event over Lambda's synchronous 6 MB, gets API Gateway's
413; a function slower than its integration's timeout (29 s unless the definition says otherwise)
its 504, while the function runs on.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Iterator

from .. import aws
from ..http_service import HttpService

log = logging.getLogger(__name__)

#: the API's BinaryMediaTypes (template.yaml RunsApi)
BINARY_MEDIA_TYPES = ("multipart/form-data",)
STAGE = "v1"


#: API Gateway's own answers local mode gives, by gateway response type: the status code, the
#: message and x-amzn-ErrorType AWS gives where the API does not customize the type
#: (https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html):
#: a resource or method the API does not have; a body its model refuses; a request too large for
#: API Gateway or for the Lambda invoke it makes; an integration slower than its timeout
OWN_ANSWERS = {
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token", "MissingAuthenticationTokenException"),
    "BAD_REQUEST_BODY": (400, "Invalid request body", "BadRequestException"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long", "RequestTooLargeException"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out", "InternalServerErrorException"),
}


@dataclass(frozen=True)
class GatewayResponses:
    """The API's gateway responses (``x-amazon-apigateway-gateway-responses`` of its definition):
    how API Gateway's own answers look. A type the API does not customize falls back to its
    DEFAULT_4XX or DEFAULT_5XX, else AWS's ``{"message": ...}``. A template is filled by simple
    substitution only, as API Gateway fills it (no VTL:
    https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-swagger-extensions-gateway-responses.responseTemplates.html)."""

    responses: dict[str, dict[str, Any]]

    @classmethod
    def of_definition(cls, definition: dict[str, Any]) -> "GatewayResponses":
        return cls(dict(definition.get("x-amazon-apigateway-gateway-responses") or {}))

    def answer(self, kind: str, validation: str | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
        """API Gateway's answer of type ``kind`` (an ``OWN_ANSWERS`` key); ``validation``: the
        ``validationErrorString`` of a refused body."""
        status, message, error_type = OWN_ANSWERS[kind]
        response = self.responses.get(kind) or self.responses.get("DEFAULT_4XX" if status < 500 else "DEFAULT_5XX") or {}
        template = (response.get("responseTemplates") or {}).get("application/json")
        if template is None:
            data = json.dumps({"message": message})
        else:
            data = (
                template.replace("$context.error.messageString", json.dumps(message))
                .replace("$context.error.message", json.dumps(message)[1:-1])
                .replace("$context.error.responseType", kind)
                .replace("$context.error.validationErrorString", json.dumps(validation or message)[1:-1])
            )
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type)]
        return int(response.get("statusCode") or status), headers, data.encode()


#: the answers of an API that customizes none (AWS's own)
AWS_DEFAULTS = GatewayResponses({})


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


def operations(definition: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(resource, method, operation) of each method of a REST API's OpenAPI definition; ``ANY``
    for API Gateway's ``x-amazon-apigateway-any-method`` (a path's own ``parameters`` skipped)."""
    for path, methods in (definition.get("paths") or {}).items():
        for method, operation in methods.items():
            if isinstance(operation, dict):
                yield path, "ANY" if method == "x-amazon-apigateway-any-method" else method.upper(), operation


@dataclass(frozen=True)
class BodyChecks:
    """The request bodies the API checks against a model: by (resource, method), the JSON Schema
    of an ``application/json`` body; and what a body that fails gets (BAD_REQUEST_BODY)."""

    schemas: dict[tuple[str, str], dict[str, Any]]
    responses: GatewayResponses = AWS_DEFAULTS

    @classmethod
    def of_definition(cls, definition: dict[str, Any]) -> "BodyChecks":
        """From the REST API's OpenAPI definition (its ``Body`` in the deployed template): each
        method whose request validator (its own ``x-amazon-apigateway-request-validator``, else
        the API's) validates the body, with the model of its ``application/json`` content."""
        validators = definition.get("x-amazon-apigateway-request-validators") or {}
        default = definition.get("x-amazon-apigateway-request-validator")
        models = (definition.get("components") or {}).get("schemas") or definition.get("definitions") or {}
        schemas = {}
        for path, method, operation in operations(definition):
            validator = validators.get(operation.get("x-amazon-apigateway-request-validator", default)) or {}
            schema = (((operation.get("requestBody") or {}).get("content") or {}).get("application/json") or {}).get("schema")
            if validator.get("validateRequestBody") and schema is not None:
                ref = schema.get("$ref", "")
                schemas[(path, method)] = models[ref.rsplit("/", 1)[1]] if ref else schema
        return cls(schemas, GatewayResponses.of_definition(definition))

    def refusal(self, resource: str, method: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """The answer to a body the model of ``method`` on ``resource`` refuses; None if it has
        none, the body is not JSON by its Content-Type, or it passes."""
        schema = self.schemas.get((resource, method), self.schemas.get((resource, "ANY")))
        kind = next((v for k, v in headers.items() if k.lower() == "content-type"), "").split(";", 1)[0].strip().lower()
        if schema is None or kind != "application/json":
            return None
        try:
            instance = json.loads(body or b"null")
        except ValueError:
            said = "Invalid request body"
        else:
            errors = validation_errors(schema, instance)
            if not errors:
                return None
            said = "[" + ", ".join(errors) + "]"
        return self.responses.answer("BAD_REQUEST_BODY", said)


def validation_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """Why ``instance`` fails the JSON Schema (draft 4) ``schema``, each as API Gateway's
    validator says it (``object has missing required properties (["name"])``) for the checks
    the API's models use, in jsonschema's words for any other."""
    from jsonschema import Draft4Validator

    said: list[str] = []
    missing: list[str] = []
    for error in sorted(Draft4Validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path)):
        kind, value, found = error.validator, error.validator_value, error.instance
        if kind == "required":
            missing.extend(name for name in value if isinstance(found, dict) and name not in found and name not in missing)
            continue
        if kind == "additionalProperties" and isinstance(found, dict):
            extra = sorted(k for k in found if k not in (error.schema.get("properties") or {}))
            said.append(f"object instance has properties which are not allowed by the schema: {json.dumps(extra)}")
        elif kind == "type":
            allowed = value if isinstance(value, list) else [value]
            said.append(f"instance type ({_json_type(found)}) does not match any allowed primitive type (allowed: {json.dumps(allowed)})")
        elif kind == "pattern":
            said.append(f"ECMA 262 regex {json.dumps(value)} does not match input string {json.dumps(found)}")
        elif kind == "minLength":
            said.append(f"string {json.dumps(found)} is too short (length: {len(found)}, required minimum: {value})")
        elif kind == "maxLength":
            said.append(f"string {json.dumps(found)[:80]} is too long (length: {len(found)}, maximum allowed: {value})")
        else:
            said.append(error.message)
    if missing:
        said.insert(0, f"object has missing required properties ({json.dumps(missing)})")
    return said


def _json_type(value: Any) -> str:
    """JSON Schema's name of a JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


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


#: the largest request body a REST API takes (10 MB: https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html)
MAX_BODY_BYTES = 10 * 1024 * 1024



class RequestTooLarge(Exception):
    """The Lambda invoke refused the event for its size: API Gateway answers REQUEST_TOO_LARGE."""


#: how long API Gateway waits for an integration that names no ``timeoutInMillis``: 29 s
#: (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html, "Integration timeout")
INTEGRATION_SECONDS = 29.0



def integration_seconds(definition: dict[str, Any]) -> dict[tuple[str, str], float]:
    """By (resource, method), how long API Gateway waits for the method's integration, from the
    REST API's OpenAPI definition (``x-amazon-apigateway-integration.timeoutInMillis``;
    ``INTEGRATION_SECONDS`` where it names none)."""
    found = {}
    for path, method, operation in operations(definition):
        millis = (operation.get("x-amazon-apigateway-integration") or {}).get("timeoutInMillis")
        found[(path, method)] = int(millis) / 1000 if millis else INTEGRATION_SECONDS
    return found


#: API Gateway's body of a failed integration (500: the invoke refused or failed; 502: the function failed)
INTERNAL_ERROR = json.dumps({"message": "Internal server error"}).encode()


def invoke(function_name: str, event: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """The function's answer to ``event``: status, headers (its ``headers`` and
    ``multiValueHeaders`` merged, as API Gateway merges them: Powertools answers with the second
    only, https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html),
    body. An event over Lambda's synchronous payload quota (6 MB: the invoke is refused before
    the function runs) raises ``RequestTooLarge``; any other refused invoke is API Gateway's 500."""
    from botocore.exceptions import ClientError

    try:
        payload = aws.client("lambda").invoke(FunctionName=function_name, Payload=json.dumps(event).encode())["Payload"].read()
    except ClientError as exn:
        if exn.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 413:
            raise RequestTooLarge() from exn
        return 500, [("Content-Type", "application/json")], INTERNAL_ERROR
    answer = json.loads(payload)
    if "statusCode" not in answer:  # the function failed: API Gateway answers 502
        return 502, [("Content-Type", "application/json")], INTERNAL_ERROR
    body = answer.get("body") or ""
    data = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
    headers = [(str(k), str(v)) for k, v in (answer.get("headers") or {}).items()]
    headers += [(str(k), str(v)) for k, values in (answer.get("multiValueHeaders") or {}).items() for v in values or []]
    return int(answer["statusCode"]), list(dict.fromkeys(headers)), data


class Gateway(HttpService):
    """``with Gateway(function_name, routes) as url:`` the API at ``url`` until the block ends:
    a request ``routes`` has goes to the function, any other is answered as API Gateway answers
    a missing route (MISSING_AUTHENTICATION_TOKEN), in the shape of the API's gateway responses."""

    thread_name = "local-api-gateway"

    def __init__(
        self, function_name: str, routes: Routes, host: str = "127.0.0.1", port: int = 0, checks: BodyChecks | None = None,
        timeouts: dict[tuple[str, str], float] | None = None,
    ) -> None:
        self.function_name = function_name
        self.routes = routes
        self.checks = checks or BodyChecks({})
        self.responses = self.checks.responses
        self.timeouts = timeouts or {}
        super().__init__(host, port)

    @classmethod
    def for_stack(cls, stack_name: str, host: str = "127.0.0.1", port: int = 0) -> "Gateway":
        """The gateway of the stack's run API (its API function, its REST API's routes, and the
        bodies its methods check, from the REST API's definition in the deployed template)."""
        from ..client import api_function

        cloudformation = aws.client("cloudformation")
        pages = cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name)
        apis = [(r["LogicalResourceId"], r["PhysicalResourceId"]) for page in pages for r in page["StackResourceSummaries"]
                if r["ResourceType"] == "AWS::ApiGateway::RestApi"]
        if len(apis) != 1:
            raise ValueError(f"stack {stack_name} has {len(apis)} REST APIs; local mode serves one")
        (logical, physical), = apis
        template = cloudformation.get_template(StackName=stack_name)["TemplateBody"]
        template = json.loads(template) if isinstance(template, str) else template
        definition = template["Resources"][logical]["Properties"].get("Body") or {}
        return cls(
            api_function(stack_name), Routes.of_api(physical), host, port, BodyChecks.of_definition(definition),
            integration_seconds(definition),
        )

    def refused_length(self, length: int) -> tuple[int, list[tuple[str, str]], bytes] | None:
        return self.responses.answer("REQUEST_TOO_LARGE") if length > MAX_BODY_BYTES else None

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        # (a body over MAX_BODY_BYTES never gets here: refused_length answered it by its length)
        reached = self.routes.match(method, urllib.parse.urlsplit(path).path)
        if reached is None:
            return self.responses.answer("MISSING_AUTHENTICATION_TOKEN")
        resource = reached[0]
        refused = self.checks.refusal(resource, method, headers, body)
        if refused is not None:
            return refused
        seconds = self.timeouts.get((resource, method), self.timeouts.get((resource, "ANY"), INTEGRATION_SECONDS))
        answer: list[tuple[int, list[tuple[str, str]], bytes] | None] = []
        event = proxy_event(method, path, headers, body, *reached)
        def call() -> None:
            try:
                answer.append(invoke(self.function_name, event))
            except RequestTooLarge:
                answer.append(None)
            except Exception:  # noqa: BLE001 (answered 500 below, as API Gateway answers a failed integration)
                log.exception("local API gateway: invoking %s failed", self.function_name)

        # (the function runs on past the timeout, as it does behind API Gateway: its answer is dropped)
        caller = threading.Thread(target=call, name="local-api-invoke", daemon=True)
        caller.start()
        caller.join(seconds)
        if caller.is_alive():
            return self.responses.answer("INTEGRATION_TIMEOUT")
        if not answer:  # (the invoke itself failed: logged)
            return 500, [("Content-Type", "application/json")], INTERNAL_ERROR
        if answer[0] is None:
            return self.responses.answer("REQUEST_TOO_LARGE")
        return answer[0]
