"""Kept-alive HTTP/1.1 connections for moto's server in local mode: a subclass of moto's request
handler for werkzeug's development server, which moto's server runs on (werkzeug pinned in
plugin/pyproject.toml: this leans on how its ``WSGIRequestHandler.run_wsgi`` ends a request).

werkzeug's server closes every connection after one answer (it sends ``Connection: close``:
pallets/werkzeug#2397, "Don't use keep-alive connections in HTTP/1.1 mode", PR #2399): Python's
``http.server`` does not read what an application left unread of a request's body, which it
would then take for the next request, so after each answer werkzeug reads whatever else the
client sent, for 10 ms. AWS's endpoints keep connections alive and botocore pools them; local
mode's server closing each one made every AWS call of a driver, a Lambda environment or a
command open a new TCP connection, and the server start a new thread for it: about 150 for a run
of examples/hello, at about 1 ms of CPU each between the two ends.

``KeepAliveServer`` keeps a connection when the request's body is delimited by its Content-Length
(or absent): once the application has made its answer (``KeepAliveApplication``), whatever of the
body it did not read is read here, to its exact end, and the connection is kept; werkzeug's own
reading after the answer is given nothing to read (it would otherwise take the client's next
request). A request with a chunked body (werkzeug's to end), an application that fails, a client
that asks for ``Connection: close`` or speaks HTTP/1.0 close the connection as before.
``close_connections`` ends the kept ones (a stop: their handlers wait for a next request).

The test that tells when this is no longer needed: ``tests/unit/test_moto_keep_alive.py::
test_werkzeug_still_closes_every_connection`` (werkzeug's own handler still answers ``Connection:
close``).
"""

from __future__ import annotations

import functools
import socket
import threading
from typing import Any, Callable, Iterable

from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import ThreadedWSGIServer

#: the environ key of the handler serving a request (``KeepAliveApplication`` tells it the answer is made)
HANDLER_KEY = "miniwdl_fargate.keep_alive.handler"


class _Body:
    """A request body of ``length`` bytes on the connection's stream: reads stop at its end, and
    ``finish`` reads what the application left."""

    def __init__(self, stream: Any, length: int) -> None:
        self.stream, self.left = stream, length

    def _take(self, data: bytes) -> bytes:
        self.left -= len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        return self._take(self.stream.read(size)) if size else b""

    def readline(self, size: int | None = -1) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        return self._take(self.stream.readline(size)) if size else b""

    def __iter__(self):
        while line := self.readline():
            yield line

    def finish(self) -> bool:
        """Read the rest of the body; whether it was all there (False: the client went away)."""
        while self.left:
            if not self.read(1 << 16):
                return False
        return True


class _NothingLeft:
    """What werkzeug's reading after an answer reads from (``KeepAliveRequestHandler.answered``)."""

    def read(self, size: int = -1) -> bytes:
        return b""


@functools.cache
def _always_readable() -> socket.socket:
    """What werkzeug's reading after an answer waits on: a socket that is always readable, its
    other end closed. One per process, never closed (a request still being answered when its
    server stops may yet wait on it)."""
    ours, theirs = socket.socketpair()
    theirs.close()
    return ours


class KeepAliveRequestHandler(MotoRequestHandler):
    """moto's request handler, keeping the connection where the request allows (module docstring)."""

    protocol_version = "HTTP/1.1"
    #: each answer goes out at once (TCP_NODELAY, socketserver's switch): on a kept connection the
    #: answer's header and its body are two writes, and the second would wait for the client's
    #: delayed acknowledgement of the first (about 40 ms)
    disable_nagle_algorithm = True
    server: KeepAliveServer

    def setup(self) -> None:
        super().setup()
        self._body: _Body | None = None
        self._keep = False
        self.server.opened(self.connection)

    def finish(self) -> None:
        self.server.closed(self.connection)
        super().finish()

    def handle_one_request(self) -> None:
        self._body, self._keep = None, False  # (each request decides anew, one refused before its answer too)
        super().handle_one_request()

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        if not environ.get("wsgi.input_terminated"):  # (a chunked body: werkzeug's own reader, closed after)
            try:
                length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
            except ValueError:
                length = None  # (werkzeug answers it; the connection is closed after)
            if length is not None:
                self._body = environ["wsgi.input"] = _Body(environ["wsgi.input"], length)
        environ[HANDLER_KEY] = self
        return environ

    def answered(self) -> None:
        """The application made its answer: read what it left of the body and, if it was all
        there, keep the connection, with werkzeug's reading after the answer given nothing."""
        if self._body is not None and self._body.finish():
            self._keep = True
            self.rfile, self.connection = _NothingLeft(), _always_readable()

    def run_wsgi(self) -> None:
        rfile, connection = self.rfile, self.connection
        try:
            super().run_wsgi()
        finally:
            self.rfile, self.connection = rfile, connection
            if not self._keep:
                self.close_connection = True

    def send_header(self, keyword: str, value: str) -> None:
        if self._keep and keyword.lower() == "connection" and value.lower() == "close":
            return  # (werkzeug's, on every answer)
        super().send_header(keyword, value)


class KeepAliveApplication:
    """A WSGI application's answers made whole before werkzeug sends them (moto's are in memory
    already), then the handler told (``KeepAliveRequestHandler.answered``). An application that
    fails, or makes an answer werkzeug would refuse (no start_response, a part not bytes), tells
    it nothing: the connection is closed after the answer, as werkzeug closes every one."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        started = []

        def start(*args: Any) -> Any:
            started.append(True)
            return start_response(*args)

        answer = self.app(environ, start)
        try:
            body = list(answer)
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()
        handler = environ.get(HANDLER_KEY)
        # (an answer werkzeug will refuse, as its write() does, is sent with Connection: close)
        if handler is not None and started and all(isinstance(part, bytes) for part in body):
            handler.answered()
        return body


class KeepAliveServer(ThreadedWSGIServer):
    """werkzeug's threaded server with ``KeepAliveRequestHandler``, serving ``app`` through
    ``KeepAliveApplication``; it knows its open connections (``close_connections``)."""

    def __init__(self, host: str, port: int, app: Callable[..., Iterable[bytes]]) -> None:
        super().__init__(host, port, KeepAliveApplication(app), handler=KeepAliveRequestHandler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def opened(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """End every open connection: a handler waiting for its client's next request reads the end."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # (closed meanwhile)
                pass
