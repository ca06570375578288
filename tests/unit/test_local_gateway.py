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


def test_local_up_with_its_api_port_taken_says_so_and_writes_no_connection_file(monkeypatch, tmp_path, capsys):
    """`local up --api-port N` with N taken: an error naming the port, exit 2, before it says it is
    up or writes the file the other commands would then find (and fail to reach)."""
    import argparse
    import socket

    from miniwdl_fargate import client
    from miniwdl_fargate.local import cli as local_cli
    from miniwdl_fargate.local import stack as local_stack

    class Stack:  # (what `up` uses of a LocalStack, without deploying one)
        stack_name, endpoint, outputs, state_dir = "s", "http://127.0.0.1:1", {"BucketName": "b"}, str(tmp_path)

        def __init__(self, **_):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def write_connection(self, path):
            path.write_text("{}")

    monkeypatch.setattr(local_stack, "LocalStack", Stack)
    monkeypatch.setattr(client, "api_function", lambda stack_name: "api")
    said = []
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        args = argparse.Namespace(file=str(tmp_path / "stack.json"), state_dir=None, template=None, parameter=[],
                                  seed_s3=None, api_port=port)
        assert local_cli.up(args, said.append) == 2
    finally:
        taken.close()
    assert capsys.readouterr().err.startswith(f"error: --api-port {port}: Address already in use: give another port")
    assert not (tmp_path / "stack.json").exists()
    assert not any("up at" in line for line in said)
