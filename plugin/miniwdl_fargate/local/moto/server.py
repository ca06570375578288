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


def start() -> Any:
    """moto's ``ThreadedMotoServer`` on a port of 127.0.0.1 the system picks (port 0: no other
    process can take it between a choice and the bind), serving. No browser reads from it (the
    run API is ``gateway``'s), and S3 answers no cross-origin request to a bucket without a CORS
    configuration (403, "CORS is not enabled for this bucket":
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/cors-troubleshooting.html; the stack
    gives its bucket none): moto's global CORS, Flask-CORS on each service's app and a twentieth
    of the server's CPU per request, is off, as ``MOTO_DISABLE_GLOBAL_CORS`` turns
    it off (moto reads that variable once, when its settings are first imported, which in a
    process that used moto before the stack started is long past: the value it bound is set)."""
    from moto.moto_server import werkzeug_app
    from moto.server import ThreadedMotoServer

    werkzeug_app.DISABLE_GLOBAL_CORS = True

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    return server


def execute_state_machines(endpoint: str) -> None:
    """moto's Step Functions runs the state machines' executions (by default it only records them)."""
    import requests

    requests.post(
        f"{endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10
    ).raise_for_status()


def stop(server: Any) -> None:
    """Stop moto's ``ThreadedMotoServer``. Its ``serve_forever`` (socketserver's) looks for a
    shutdown request only between waits of up to 0.5 s for a connection, so a stop took up to
    that long: while the stop waits, a connection to the server's socket ends the wait at once."""
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
