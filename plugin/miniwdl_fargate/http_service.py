"""A small HTTP server on this machine, in a thread of its own: what local mode's API gateway
(``local/gateway.py``) and the signing proxy for a deployed stack (``api_proxy.py``) have in
common. A subclass says how one request is answered (``answer``); this reads the request, writes
the answer, and serves until its ``with`` block ends.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: headers of an answer that are this connection's own (re-made here), never passed on
HOP_BY_HOP = ("content-length", "transfer-encoding", "connection")

#: how long ``stop_promptly`` knocks at a server's socket before it waits as socketserver does
STOP_KNOCK_SECONDS = 2.0


def stop_promptly(stop: Callable[[], None], address: tuple[str, int]) -> None:
    """``stop()``, the stop of a socketserver serving on ``address`` (its ``shutdown``, or what
    calls it), without its wait. ``serve_forever`` looks for a shutdown request only between waits
    of up to half a second for a connection, so a stop took up to that long; while the stop
    waits, a connection to the server's socket ends the wait at once (the server answers it as
    any: a connection closed unread)."""
    stopping = threading.Thread(target=stop, name="http-server-stop", daemon=True)
    stopping.start()
    deadline = time.monotonic() + STOP_KNOCK_SECONDS
    while stopping.is_alive() and time.monotonic() < deadline:
        try:
            socket.create_connection(address, timeout=0.1).close()
        except OSError:  # (closed already: the stop is done, or about to be)
            pass
        stopping.join(0.02)
    stopping.join()


class HttpService:
    """``with Service(...) as url:`` requests to ``url`` (any method) answered by ``answer``."""

    thread_name = "http-service"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, name=self.thread_name, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """The answer to one request (``path``: with its query): status, headers, body."""
        raise NotImplementedError

    def refused_length(self, length: int) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """The answer to a request whose body would be ``length`` bytes, given before the body is
        read, if the service refuses it for its size (None: read it and ``answer``)."""
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                refused = service.refused_length(length)
                if refused is not None:
                    # (read and dropped a piece at a time, never held: a client still sending it
                    # would otherwise meet a closed connection instead of the answer)
                    while length > 0:
                        piece = self.rfile.read(min(length, 1 << 16))
                        if not piece:  # (the client stopped sending)
                            break
                        length -= len(piece)
                    code, headers, data = refused
                else:
                    body = self.rfile.read(length) if length else b""
                    code, headers, data = service.answer(self.command, self.path, dict(self.headers.items()), body)
                self.send_response(code)
                for key, value in headers:
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":  # (an answer to HEAD has the headers of one to GET, no body)
                    self.wfile.write(data)

            # (every method reaches ``answer``, which says what the service does with it)
            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = _serve

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc: Any) -> None:
        host, port = self.server.server_address[:2]
        stop_promptly(self.server.shutdown, (str(host), int(port)))
        self.server.server_close()
        self.thread.join()
