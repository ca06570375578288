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
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'

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

