"""A local server stops without waiting out socketserver's poll (``http_service.stop_promptly``):
``serve_forever`` looks for a stop request only between its waits for a connection (half a
second each by default, so `local up`'s API and every local stack's moto server took up to that
long to stop); the stop knocks at the server's socket, which ends the wait at once. Here the
servers wait an hour between looks: a stop that waited would not end within the test's bound."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from miniwdl_fargate import http_service
from miniwdl_fargate.local.moto import server as moto_server

AN_HOUR = 3600.0


def ended(action, bound: float = 30.0) -> bool:
    """Whether ``action()`` returned within ``bound`` seconds (it runs in a thread of its own)."""
    done = threading.Event()

    def run() -> None:
        action()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(bound)


def serving_an_hour_between_looks(server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": AN_HOUR}, daemon=True)
    thread.start()
    return thread


def test_a_server_waiting_an_hour_for_a_connection_stops_at_once():
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    thread = serving_an_hour_between_looks(server)
    try:
        assert ended(lambda: http_service.stop_promptly(server.shutdown, server.server_address[:2]))
    finally:
        server.server_close()
    thread.join(30)
    assert not thread.is_alive()


def test_a_local_http_service_stops_at_once():
    service = http_service.HttpService()
    service.thread = threading.Thread(target=service.server.serve_forever, kwargs={"poll_interval": AN_HOUR}, daemon=True)
    with_url = service.__enter__()
    assert with_url.startswith("http://127.0.0.1:")
    assert ended(lambda: service.__exit__(None, None, None))
    assert not service.thread.is_alive()


class ServerStoppedAsMotos:
    """What ``moto_server.stop`` is given (``MotoServer``, moto's ``ThreadedMotoServer``): its
    ``stop`` and its address."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        self.thread = serving_an_hour_between_looks(self.server)

    def get_host_and_port(self) -> tuple[str, int]:
        return self.server.server_address[:2]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_moto_server_stops_at_once():
    served = ServerStoppedAsMotos()
    assert ended(lambda: moto_server.stop(served))
    served.thread.join(30)
    assert not served.thread.is_alive()
