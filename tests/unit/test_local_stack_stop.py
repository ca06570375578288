"""How a local stack stops its moto server (``local.moto.server.stop``): at once, not at the next of
socketserver's half-second looks for a shutdown request."""

import os
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



def test_a_stack_that_kept_nothing_leaves_no_empty_folder_of_its_own(tmp_path, monkeypatch):
    """`local run` with a bad argument found once the stack was made (a template it cannot
    deploy, a parameter it refuses) left an empty miniwdl-fargate-local-* folder in /tmp each
    time; one given with --state-dir, or with something in it, stays."""
    from miniwdl_fargate.local.stack import LocalStack

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # (TMPDIR read again)
    made = LocalStack()
    assert made.state_dir.startswith(str(tmp_path)) and made.runtime is None
    made.stop()
    assert list(tmp_path.iterdir()) == []
    kept = LocalStack()
    (tmp_path / kept.state_dir / "efs").mkdir()
    kept.stop()
    given = LocalStack(state_dir=str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    given.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([os.path.basename(kept.state_dir), "mine"])
