"""Local mode's moto server keeps HTTP/1.1 connections alive (``local.moto.keep_alive``), as AWS's
endpoints do, where werkzeug's development server closes every one; what a request leaves unread
of its body is never read as the next request."""

import socket
import threading

import boto3
import pytest
from werkzeug.serving import make_server

from miniwdl_fargate.local.moto import server as local_moto_server
from miniwdl_fargate.local.moto.keep_alive import KeepAliveServer
from tests.waiting import wait_for


def echo_path(reads: int | None):
    """A WSGI application answering the request's path (and what it read of the body), reading
    ``reads`` bytes of the body (None: none at all)."""

    def app(environ, start_response):
        got = b"" if reads is None else environ["wsgi.input"].read(reads)
        if environ["PATH_INFO"] == "/fail":
            raise RuntimeError("the application failed")
        body = environ["PATH_INFO"].encode() + b" " + got
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def serve(server):
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def keep_alive():
    """A KeepAliveServer factory: (server, its address); stopped after the test."""
    started = []

    def start(app):
        server = KeepAliveServer("127.0.0.1", 0, app)
        started.append((server, serve(server)))
        return server, server.server_address[:2]

    yield start
    for server, thread in started:
        server.shutdown()
        thread.join()
        server.close_connections()
        server.server_close()


def read_answer(stream) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer from ``stream`` (a socket's file): (status, headers lowercased, body)."""
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers.get("content-length", 0)))
    return int(status_line.split()[1]), headers, body


def request(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{headers}\r\n").encode() + body


def connect(address) -> socket.socket:
    """A connection whose reads fail after 10 s rather than wait for ever (an answer never sent)."""
    return socket.create_connection(address, timeout=10)


def ended(sock: socket.socket) -> bool:
    """Whether the server closed the connection (its next read is the end)."""
    return sock.recv(1) == b""


def test_werkzeug_still_closes_every_connection():
    """The still-needed test of ``local.moto.keep_alive``: werkzeug's own threaded server answers
    an HTTP/1.1 request with Connection: close (pallets/werkzeug#2397). Once this fails, werkzeug
    keeps connections itself: delete keep_alive, this test, and the werkzeug pin."""
    server = make_server("127.0.0.1", 0, echo_path(None), threaded=True)
    thread = serve(server)
    try:
        with connect(server.server_address[:2]) as sock:
            sock.sendall(request("GET", "/one"))
            status, headers, body = read_answer(sock.makefile("rb"))
            assert (status, body) == (200, b"/one ")
            assert headers["connection"] == "close"
            assert ended(sock)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.mark.parametrize("reads", [None, 3, 100], ids=["body unread", "body half read", "body read"])
def test_requests_sent_at_once_after_a_body_are_each_answered_on_one_connection(keep_alive, reads):
    """Three requests in one write, the first two with bodies the application reads none, part or
    all of: three answers in order, the connection still open; a body's rest is never taken for
    the next request (what werkzeug closes every connection to avoid)."""
    _server, address = keep_alive(echo_path(reads))
    with connect(address) as sock:
        sock.sendall(request("POST", "/one", b"first-body") + request("PUT", "/two", b"GET /x HTTP/1.1\r\n\r\n") + request("GET", "/three"))
        stream = sock.makefile("rb")
        answers = [read_answer(stream) for _ in range(3)]
        assert [(status, body) for status, _, body in answers] == [
            (200, b"/one " + b"first-body"[: reads or 0]),
            (200, b"/two " + b"GET /x HTTP/1.1\r\n\r\n"[: reads or 0]),
            (200, b"/three "),
        ]
        assert not any("connection" in headers for _, headers, _ in answers)
        sock.sendall(request("GET", "/four"))  # (and later on, the same connection)
        assert read_answer(stream)[2] == b"/four "


def test_a_chunked_body_closes_the_connection_after_its_answer(keep_alive):
    _server, address = keep_alive(echo_path(100))
    with connect(address) as sock:
        sock.sendall(b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        status, headers, body = read_answer(sock.makefile("rb"))
        assert (status, body, headers["connection"]) == (200, b"/chunked hello", "close")
        assert ended(sock)


def test_a_failed_application_answers_500_and_closes_the_connection(keep_alive):
    _server, address = keep_alive(echo_path(None))
    with connect(address) as sock:
        sock.sendall(request("POST", "/fail", b"body") + request("GET", "/never"))
        status, headers, _body = read_answer(sock.makefile("rb"))
        assert (status, headers["connection"]) == (500, "close")
        assert ended(sock)


def test_a_client_asking_to_close_is_closed(keep_alive):
    _server, address = keep_alive(echo_path(None))
    with connect(address) as sock:
        sock.sendall(request("GET", "/one", headers="Connection: close\r\n"))
        assert read_answer(sock.makefile("rb"))[2] == b"/one "
        assert ended(sock)


def test_a_stop_ends_the_kept_connections():
    """Local mode's server stopped while a client keeps a connection: the connection ends (its
    handler no longer waits for a next request), and the server serves nothing more."""
    server = local_moto_server.start()
    address = server.get_host_and_port()
    with connect(address) as sock:
        sock.sendall(request("GET", "/moto-api/"))
        status, headers, _body = read_answer(sock.makefile("rb"))
        assert status == 200 and "connection" not in headers
        local_moto_server.stop(server)
        assert ended(sock)
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=1)


def test_a_botocore_client_makes_its_calls_on_one_connection():
    """Twenty calls of one S3 client to local mode's moto server: one connection, kept open, as
    botocore keeps its connections to AWS (each call was a new connection and a new thread)."""
    server = local_moto_server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = boto3.client(
            "s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket="kept")
        for i in range(6):
            s3.put_object(Bucket="kept", Key=f"k{i}", Body=b"x" * 1000, Metadata={"with_underscore": "kept"})
            assert s3.get_object(Bucket="kept", Key=f"k{i}")["Body"].read() == b"x" * 1000
            assert s3.head_object(Bucket="kept", Key=f"k{i}")["Metadata"] == {"with_underscore": "kept"}
        assert s3.list_objects_v2(Bucket="kept")["KeyCount"] == 6
        assert len(server._server._connections) == 1
        s3.close()
        wait_for(lambda: not server._server._connections, 10, what="the client's connection closed")
    finally:
        local_moto_server.stop(server)


def test_a_request_answered_while_its_server_stops_ends_quietly(caplog):
    """The server stopped (its connections ended, its socket closed) while the application is
    still making an answer: the request ends without an error (werkzeug's reading after the
    answer once waited on a socket the stop had closed)."""
    making, release = threading.Event(), threading.Event()

    def slow(environ, start_response):
        making.set()
        release.wait(10)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = KeepAliveServer("127.0.0.1", 0, slow)
    thread = serve(server)
    caplog.set_level("ERROR", logger="werkzeug")
    with connect(server.server_address[:2]) as sock:
        sock.sendall(request("GET", "/slow"))
        assert making.wait(10)
        server.shutdown()
        thread.join()
        server.close_connections()
        server.server_close()
        release.set()
        while sock.recv(1024):  # (the connection ends, its answer sent or not)
            pass
        wait_for(lambda: not server._connections, 10, what="the request's end")
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


def test_a_refused_request_after_a_kept_one_closes_the_connection(keep_alive):
    """A request http.server refuses before any answer (a header line too long), after one
    answered on the kept connection: 431, and the connection closed (the rest of what the client
    sent is not read as requests)."""
    _server, address = keep_alive(echo_path(None))
    with connect(address) as sock:
        sock.sendall(request("GET", "/one"))
        stream = sock.makefile("rb")
        assert read_answer(stream)[2] == b"/one "
        sock.sendall(b"GET /two HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n" + request("GET", "/three"))
        status, headers, _body = read_answer(stream)
        assert (status, headers["connection"]) == (431, "close")
        assert stream.read() == b""
