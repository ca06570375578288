"""local mode's moto server as ``local.moto.server`` starts it."""

import socket
import threading

import pytest
import requests

from tests.waiting import wait_for


def s3_answer_to_a_browser(endpoint: str) -> requests.Response:
    """ListBuckets as a page in a browser would ask it (an Origin header)."""
    return requests.get(f"{endpoint}/", headers={"Origin": "http://localhost:8000", "Host": "s3.amazonaws.com"}, timeout=10)


def test_local_modes_moto_server_answers_no_browser(moto_server, monkeypatch):
    """No CORS headers (Flask-CORS on each of moto's service apps, a twentieth of the server's CPU
    per request): nothing of local mode reads from moto's server in a browser."""
    answer = s3_answer_to_a_browser(moto_server["AWS_ENDPOINT_URL"])
    assert answer.status_code == 200, answer.text
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_moto_still_answers_a_browser_with_cors_unless_told_not_to(monkeypatch):
    """When this fails, moto's server no longer adds CORS headers by default: local mode's
    ``server.start`` need not turn them off."""
    from moto.moto_server import werkzeug_app
    from moto.server import ThreadedMotoServer

    from miniwdl_fargate.local.moto import server as local_moto_server

    monkeypatch.setattr(werkzeug_app, "DISABLE_GLOBAL_CORS", False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        answer = s3_answer_to_a_browser(f"http://{host}:{port}")
        assert answer.status_code == 200, answer.text
        assert answer.headers.get("Access-Control-Allow-Origin") == "http://localhost:8000"
    finally:
        local_moto_server.stop(server)


def request_threads(port: int) -> set[threading.Thread]:
    """The threads alive now of the ``ThreadsKeptServer`` on ``port`` (the threads themselves: an
    ended thread's ident may be a new one's)."""
    return {thread for thread in threading.enumerate() if thread.name == f"moto-request-{port}"}


def list_buckets(endpoint: str) -> None:
    answer = requests.get(f"{endpoint}/", headers={"Host": "s3.amazonaws.com"}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_one_request_after_another_is_served_by_the_same_thread():
    """werkzeug closes each connection after its response, so each request is a connection: the
    thread that answered one waits for the next, rather than a thread starting for each."""
    from miniwdl_fargate.local.moto import server as local_moto_server

    server = local_moto_server.start()
    kept = server.server
    host, port = server.get_host_and_port()
    seen = set()
    try:
        for _ in range(20):
            list_buckets(f"http://{host}:{port}")
            seen |= request_threads(port)
            # the thread that answered closes the connection, then waits for the next (a request
            # that came first, on a busy machine, would get a thread of its own, as it should: it
            # found none waiting; 4 of 20 once did)
            wait_for(lambda: kept._waiting == 1, timeout=10, what="the answering thread waiting for the next connection")
    finally:
        local_moto_server.stop(server)
    assert len(seen) == 1, seen


def test_a_connection_that_holds_its_thread_holds_up_no_other_and_threads_end_when_idle_or_stopped():
    """Each connection has a thread of its own while it is open (a slow client holds up no
    other); a thread with no connection for ``idle_seconds`` ends; after a stop, the listening
    socket is closed and each thread ends once its connection has."""
    from miniwdl_fargate.local.moto import server as local_moto_server

    server = local_moto_server.start()
    server.server.idle_seconds = 3.0  # (the sixth thread, counted right after its answer, still waits)
    host, port = server.get_host_and_port()
    silent = [socket.create_connection((host, port), timeout=10) for _ in range(5)]
    try:
        wait_for(lambda: len(request_threads(port)) == 5, timeout=10, what="a thread per silent connection")
        list_buckets(f"http://{host}:{port}")  # answered while five threads wait on their clients
        assert len(request_threads(port)) == 6
        wait_for(lambda: len(request_threads(port)) == 5, timeout=10, what="the idle thread's end")
    finally:
        local_moto_server.stop(server)
        for connection in silent:
            connection.close()
    wait_for(lambda: not request_threads(port), timeout=10, what="every request thread's end after the stop")
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2).close()
