"""How a local stack stops its moto server (``local.moto.server.stop``): at once, not at the next of
socketserver's half-second looks for a shutdown request."""

import socket

from miniwdl_fargate.local.moto.server import stop as stop_server


class WaitingServer:
    """A server whose stop, like socketserver's ``serve_forever``, notices the request only when
    a connection comes (or 30 s pass)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.woken = False

    def get_host_and_port(self):
        return self.sock.getsockname()[:2]

    def stop(self) -> None:
        self.sock.settimeout(30)
        try:
            self.sock.accept()[0].close()
            self.woken = True
        except TimeoutError:
            pass
        self.sock.close()


def test_a_connection_ends_the_servers_wait_for_one():
    server = WaitingServer()
    stop_server(server)
    assert server.woken

