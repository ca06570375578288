"""local/gateway.py makes of an HTTP request the event API Gateway's REST API sends a Lambda proxy
integration: the stored event's shape (tests/events/apigw_post_runs.json), a multipart/form-data
body base64-encoded (the API's binary media type), any other as text; the resource it reached and
its path parameters; and a request for a resource or method the API does not have is answered as
API Gateway answers it (403, Missing Authentication Token), never by the function."""

import base64
import json
from pathlib import Path

import pytest

import urllib.error
import urllib.request

from miniwdl_fargate.local import gateway
from miniwdl_fargate.local.gateway import Gateway, Route, Routes, proxy_event

STORED = json.loads((Path(__file__).resolve().parents[1] / "events" / "apigw_post_runs.json").read_text())


def test_the_event_has_api_gateways_shape():
    event = proxy_event("POST", "/runs", {"Content-Type": "application/json"}, b'{"name": "x"}')
    assert set(event) == set(STORED)
    assert {"resourcePath", "httpMethod", "path", "stage", "identity"} <= set(event["requestContext"])
    assert (event["body"], event["isBase64Encoded"], event["requestContext"]["path"]) == ('{"name": "x"}', False, "/v1/runs")


def test_a_multipart_body_is_base64_encoded_and_the_query_is_parsed():
    body = b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\xff\r\n--b--\r\n"
    event = proxy_event("POST", "/ga4gh/wes/v1/runs?page_size=5", {"Content-Type": "multipart/form-data; boundary=b"}, body)
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == body
    assert event["path"] == "/ga4gh/wes/v1/runs" and event["queryStringParameters"] == {"page_size": "5"}
    empty = proxy_event("GET", "/runs", {}, b"")
    assert (empty["body"], empty["isBase64Encoded"], empty["queryStringParameters"]) == (None, False, None)


#: the run API's resources as template.yaml declares them (what moto's deployed REST API lists)
API = Routes([
    Route("/", frozenset()), Route("/runs", frozenset({"GET", "POST"})), Route("/runs/{run_id}", frozenset({"GET", "DELETE"})),
    Route("/runs/{run_id}/resume", frozenset({"POST"})), Route("/ga4gh/wes/v1/runs/{run_id}/status", frozenset({"GET"})),
    Route("/files/{key+}", frozenset({"GET"})), Route("/files/latest", frozenset({"GET"})),
])


@pytest.mark.parametrize("method, path, reached", [
    ("GET", "/runs", ("/runs", {})),
    ("POST", "/runs", ("/runs", {})),
    ("GET", "/runs/hello-0123abcd", ("/runs/{run_id}", {"run_id": "hello-0123abcd"})),
    ("DELETE", "/runs/a%20b", ("/runs/{run_id}", {"run_id": "a b"})),
    ("POST", "/runs/hello-0123abcd/resume", ("/runs/{run_id}/resume", {"run_id": "hello-0123abcd"})),
    ("GET", "/ga4gh/wes/v1/runs/r-1/status", ("/ga4gh/wes/v1/runs/{run_id}/status", {"run_id": "r-1"})),
    ("GET", "/files/a/b/c", ("/files/{key+}", {"key": "a/b/c"})),
    ("GET", "/files/latest", ("/files/latest", {})),  # (a literal segment over a path variable)
    # what the API does not have: no such resource, or no such method on it
    ("PUT", "/runs", None),
    ("POST", "/runs/hello-0123abcd", None),
    ("GET", "/runs/", None),  # (REST APIs match the path exactly: a trailing slash is another resource)
    ("GET", "/runs/a/b", None),
    ("GET", "/", None),
    ("GET", "/nothing", None),
])
def test_a_request_reaches_the_resource_api_gateway_would_route_it_to_or_none(method, path, reached):
    assert API.match(method, path) == reached


def test_a_route_the_api_lacks_is_answered_as_api_gateway_does_and_never_reaches_the_function(monkeypatch):
    invoked = []

    def invoke(function_name, event):
        invoked.append(event)
        return 200, [("Content-Type", "application/json")], b'{"ok": true}'

    monkeypatch.setattr(gateway, "invoke", invoke)
    with Gateway("api-function", API) as url:
        for method, path in (("PUT", "/runs"), ("GET", "/nothing"), ("PATCH", "/runs/x-0123abcd"), ("OPTIONS", "/runs")):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(url + path, method=method))
            assert refused.value.code == 403, (method, path)
            assert refused.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
            assert json.loads(refused.value.read()) == {"message": "Missing Authentication Token"}
        assert invoked == []
        with urllib.request.urlopen(f"{url}/runs/hello-0123abcd?view=full") as answer:
            assert json.loads(answer.read()) == {"ok": True}
        with pytest.raises(urllib.error.HTTPError) as head:  # (HEAD: no such method on the resource)
            urllib.request.urlopen(urllib.request.Request(url + "/runs", method="HEAD"))
        assert head.value.code == 403 and head.value.read() == b""
    [event] = invoked
    assert (event["resource"], event["path"], event["pathParameters"]) == ("/runs/{run_id}", "/runs/hello-0123abcd", {"run_id": "hello-0123abcd"})
    assert event["requestContext"]["resourcePath"] == "/runs/{run_id}"
    assert event["queryStringParameters"] == {"view": "full"}


def test_local_up_serves_the_api_on_8080_or_on_a_free_port_when_it_is_taken(monkeypatch):
    import socket

    from miniwdl_fargate.local import cli as local_cli

    # (the stack's routes: a stack "f" has none here)
    monkeypatch.setattr(Gateway, "for_stack", classmethod(lambda cls, name, host="127.0.0.1", port=0: cls(name, Routes([]), host, port)))

    said = []
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        monkeypatch.setattr(local_cli, "DEFAULT_API_PORT", taken.getsockname()[1])
        gateway = local_cli.api_gateway("f", None, said.append)
        with gateway as url:
            assert url != f"http://127.0.0.1:{taken.getsockname()[1]}"
        assert said and said[0].startswith(f"port {taken.getsockname()[1]} is not free")
        with pytest.raises(OSError):  # a port asked for is that port or an error
            local_cli.api_gateway("f", taken.getsockname()[1], said.append)
    finally:
        taken.close()



#: a REST API definition as aws-sam-translator writes it for template.yaml's RunsApi (OpenAPI 3)
DEFINITION = {
    "openapi": "3.0.1",
    "x-amazon-apigateway-request-validators": {"body-only": {"validateRequestParameters": False, "validateRequestBody": True}},
    "x-amazon-apigateway-gateway-responses": {"BAD_REQUEST_BODY": {"statusCode": "400", "responseTemplates": {
        "application/json": '{"error": "InvalidRequest", "problems": [{"where": "body", "problem": "$context.error.validationErrorString"}]}',
    }}},
    "components": {"schemas": {"runrequest": {
        "type": "object", "required": ["name"], "additionalProperties": False,
        "properties": {"name": {"type": "string", "pattern": "^[a-z]+$"}, "wdl": {"type": "string", "minLength": 1}, "inputs": {"type": "object"}},
    }}},
    "paths": {
        "/runs": {
            "post": {"x-amazon-apigateway-request-validator": "body-only",
                     "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/runrequest"}}}, "required": True}},
            "get": {},
        },
        "/runs/{run_id}/resume": {"post": {}},
        "/any/{x}": {"parameters": [{"name": "x", "in": "path"}], "x-amazon-apigateway-any-method": {
            "x-amazon-apigateway-request-validator": "body-only",
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
        }},
    },
}


@pytest.mark.parametrize("body, said", [
    (b'{"name": "ok"}', None),
    (b'{}', '[object has missing required properties ([\\"name\\"])]'),
    (b'{"name": "Bad Name", "extra": 1, "inputs": [], "wdl": ""}', (
        '[object instance has properties which are not allowed by the schema: [\\"extra\\"], '
        'instance type (array) does not match any allowed primitive type (allowed: [\\"object\\"]), '
        'ECMA 262 regex \\"^[a-z]+$\\" does not match input string \\"Bad Name\\", '
        'string \\"\\" is too short (length: 0, required minimum: 1)]'
    )),
    (b'', '[instance type (null) does not match any allowed primitive type (allowed: [\\"object\\"])]'),
    (b'{oops', "Invalid request body"),
])
def test_a_json_body_is_checked_against_its_methods_model_as_api_gateway_checks_it(body, said):
    checks = gateway.BodyChecks.of_definition(DEFINITION)
    assert set(checks.schemas) == {("/runs", "POST"), ("/any/{x}", "ANY")}
    refused = checks.refusal("/runs", "POST", {"Content-Type": "application/json; charset=utf-8"}, body)
    if said is None:
        assert refused is None
        return
    code, headers, data = refused
    assert code == 400 and ("Content-Type", "application/json") in headers
    assert data.decode() == '{"error": "InvalidRequest", "problems": [{"where": "body", "problem": "' + said + '"}]}'
    json.loads(data)  # (the error string is escaped into the template: the answer stays JSON)


def test_a_body_of_another_content_type_or_method_is_not_checked():
    checks = gateway.BodyChecks.of_definition(DEFINITION)
    assert checks.refusal("/runs", "POST", {"Content-Type": "multipart/form-data; boundary=b"}, b"{}") is None
    assert checks.refusal("/runs", "POST", {}, b"{}") is None
    assert checks.refusal("/runs/{run_id}/resume", "POST", {"Content-Type": "application/json"}, b"[]") is None
    assert checks.refusal("/any/{x}", "PUT", {"Content-Type": "application/json"}, b"[]")[0] == 400  # (an ANY method's model)
    default = gateway.BodyChecks.of_definition({**DEFINITION, "x-amazon-apigateway-gateway-responses": {}})
    assert default.refusal("/runs", "POST", {"content-type": "application/json"}, b"{}")[2] == b'{"message": "Invalid request body"}'


def test_a_refused_body_never_reaches_the_function(monkeypatch):
    invoked = []
    monkeypatch.setattr(gateway, "invoke", lambda name, event: invoked.append(event) or (201, [], b"{}"))
    with Gateway("api-function", API, checks=gateway.BodyChecks.of_definition(DEFINITION)) as url:
        post = urllib.request.Request(url + "/runs", data=b'{"nmae": "x"}', method="POST", headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post)
        assert refused.value.code == 400
        assert json.loads(refused.value.read())["problems"][0]["where"] == "body"
        assert invoked == []
        post = urllib.request.Request(url + "/runs", data=b'{"name": "x"}', method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(post) as answer:
            assert answer.status == 201
    assert len(invoked) == 1


def test_a_request_too_large_for_api_gateway_or_for_lambdas_invoke_gets_413(monkeypatch):
    """A body over the REST API's 10 MB never reaches the function; an event over Lambda's 6 MB
    synchronous quota is refused by the invoke (fixes.invoke_request_size): both API Gateway's
    413. Any other refused invoke is API Gateway's 500, not a dropped connection."""
    from botocore.exceptions import ClientError

    invoked = []

    class Lambda:
        def invoke(self, FunctionName, Payload):
            invoked.append(len(Payload))
            code = 413 if len(Payload) > 6 * 1024 * 1024 else 429
            raise ClientError({"Error": {"Code": "x"}, "ResponseMetadata": {"HTTPStatusCode": code}}, "Invoke")

    monkeypatch.setattr(gateway.aws, "client", lambda service: Lambda())
    with Gateway("api-function", API) as url:
        for size, code in ((gateway.MAX_BODY_BYTES + 1, 413), (7 * 1024 * 1024, 413), (10, 500)):
            post = urllib.request.Request(url + "/runs", data=b"A" * size, method="POST", headers={"Content-Type": "text/plain"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(post)
            assert refused.value.code == code, size
            said = json.loads(refused.value.read())
            assert said == ({"message": "Request Too Long"} if code == 413 else {"message": "Internal server error"})
    assert len(invoked) == 2  # (the body over 10 MB was never sent on)
    # refused by its Content-Length, before a byte of it is read (the service never buffers it)
    service = Gateway("api-function", API)
    assert service.refused_length(gateway.MAX_BODY_BYTES + 1) == gateway.AWS_DEFAULTS.answer("REQUEST_TOO_LARGE")
    assert service.refused_length(gateway.MAX_BODY_BYTES + 1)[0] == 413
    assert service.refused_length(gateway.MAX_BODY_BYTES) is None
    service.server.server_close()


def test_an_integration_slower_than_its_timeout_gets_api_gateways_504_while_the_function_runs_on(monkeypatch):
    import threading

    definition = {"paths": {
        "/runs": {"get": {"x-amazon-apigateway-integration": {"timeoutInMillis": 200}}, "post": {"x-amazon-apigateway-integration": {}}},
    }}
    timeouts = gateway.integration_seconds(definition)
    assert timeouts == {("/runs", "GET"): 0.2, ("/runs", "POST"): gateway.INTEGRATION_SECONDS}
    assert gateway.INTEGRATION_SECONDS == 29.0
    release, finished = threading.Event(), threading.Event()

    def invoke(function_name, event):
        release.wait(10)  # (the function answers only once the test lets it)
        finished.set()
        return 200, [], b"{}"

    monkeypatch.setattr(gateway, "invoke", invoke)
    with Gateway("api-function", API, timeouts=timeouts) as url:
        with pytest.raises(urllib.error.HTTPError) as late:
            urllib.request.urlopen(url + "/runs")
        assert late.value.code == 504 and json.loads(late.value.read()) == {"message": "Endpoint request timed out"}
        assert not finished.is_set()  # (answered 504 while the function still ran)
        release.set()
        assert finished.wait(10)
        monkeypatch.setattr(gateway, "invoke", lambda name, event: (_ for _ in ()).throw(OSError("moto is gone")))
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(url + "/runs")
        assert failed.value.code == 500
