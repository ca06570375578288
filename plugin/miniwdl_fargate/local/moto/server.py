"""moto's server as local mode runs it: its settings, its loggers, its start and its stop, and the
switch that makes its Step Functions execute state machines. ``stack.LocalStack`` calls these; it
imports nothing of moto itself."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

#: moto's own settings (environment variables) for local mode: nothing in the stack uses an AMI,
#: and moto's EC2 otherwise makes its ~1,300 default images, each with a snapshot and a volume,
#: for every account and region it serves (a third of a second of CPU each time)
MOTO_SETTINGS = {"MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}

#: how long ``stop`` knocks at the server's socket before it waits as socketserver does
STOP_KNOCK_SECONDS = 2.0


def quiet_loggers() -> None:
    """moto's and its server's logs down to what says something is wrong with local mode."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto server's request log
    logging.getLogger("moto").setLevel(logging.ERROR)
    # moto's Step Functions interpreter logs each Fail state it reaches at ERROR, with its own
    # objects' reprs: a failed run's normal end, which the run's error.json already says
    logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component").setLevel(logging.CRITICAL)


class Server:
    """moto's server application (``DomainDispatcherApplication``, as moto's own
    ``ThreadedMotoServer`` serves it) on werkzeug's threaded server, with kept-alive connections
    (``keep_alive``), serving from a thread of its own."""

    def __init__(self, host: str, port: int) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        from .keep_alive import KeepAliveServer

        self._server = KeepAliveServer(host, port, DomainDispatcherApplication(create_backend_app))
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Stop serving (at socketserver's next look for a shutdown request: ``stop`` knocks),
        end the kept connections and close the listening socket."""
        self._server.shutdown()
        self._thread.join()
        self._server.close_connections()
        self._server.server_close()


def start() -> Server:
    """moto's server on a port of 127.0.0.1 the system picks (port 0: no other process can take it
    between a choice and the bind), serving."""
    return Server("127.0.0.1", 0)


def execute_state_machines(endpoint: str) -> None:
    """moto's Step Functions runs the state machines' executions (by default it only records them)."""
    import requests

    requests.post(
        f"{endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10
    ).raise_for_status()


def stop(server: Any) -> None:
    """Stop moto's server (``Server``, or anything with its ``stop`` and ``get_host_and_port``).
    Its ``serve_forever`` (socketserver's) looks for a shutdown request only between waits of up
    to 0.5 s for a connection, so a stop took up to that long: while the stop waits, a connection
    to the server's socket ends the wait at once."""
    stopping = threading.Thread(target=server.stop, name="moto-server-stop", daemon=True)
    stopping.start()
    deadline = time.monotonic() + STOP_KNOCK_SECONDS
    while stopping.is_alive() and time.monotonic() < deadline:
        try:
            socket.create_connection(server.get_host_and_port(), timeout=0.1).close()
        except OSError:  # (closed already: the stop is done, or about to be)
            pass
        stopping.join(0.02)
    stopping.join()
