"""Small HTTP servers the tests stand up on 127.0.0.1 (a stage behind a proxy, Step Functions'
heartbeat endpoint, a folder WDL imports from by URL): one way to start, answer and stop them."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from miniwdl_fargate.http_service import stop_promptly


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that logs nothing (http.server writes each request to stderr) and answers JSON
    with ``reply``."""

    def log_message(self, *_: object) -> None:
        pass

    def body(self) -> bytes:
        """The request's body (read whole: a handler that leaves it unread stalls its client)."""
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, code: int, doc: Any, content_type: str = "application/json") -> None:
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def serving(handler: Any, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """``handler`` (a request handler class, or a factory of one such as ``functools.partial``)
    serving on a port of 127.0.0.1 the system picks, in a thread (over HTTPS with ``tls``, a
    server context): its base URL, then the server stopped and its socket closed."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="test-http-server", daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        stop_promptly(server.shutdown, server.server_address[:2])  # (not after socketserver's poll)
        server.server_close()
