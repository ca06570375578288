"""local/gateway.py makes of an HTTP request the event API Gateway's REST API sends a Lambda proxy
integration: the stored event's shape (tests/events/apigw_post_runs.json), a multipart/form-data
body base64-encoded (the API's binary media type), any other as text."""

import base64
import json
from pathlib import Path

import pytest

from miniwdl_fargate.local.gateway import proxy_event

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


def test_local_up_serves_the_api_on_8080_or_on_a_free_port_when_it_is_taken(monkeypatch):
    import socket

    from miniwdl_fargate.local import cli as local_cli

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

