"""moto's server as local mode runs it: its settings, its loggers, its start and its stop, and the
switch that makes its Step Functions execute state machines. ``stack.LocalStack`` calls these; it
imports nothing of moto itself."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from ...http_service import stop_promptly

#: moto's own settings (environment variables) for local mode: nothing in the stack uses an AMI,
#: and moto's EC2 otherwise makes its ~1,300 default images, each with a snapshot and a volume,
#: for every account and region it serves (a third of a second of CPU each time)
MOTO_SETTINGS = {"MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}

#: the loggers local mode's stack turns down, and the level each is set to
QUIET_LOGGERS = {
    "werkzeug": logging.WARNING,  # moto server's request log
    "moto": logging.ERROR,
    # moto's Step Functions interpreter logs each Fail state it reaches at ERROR, with its own
    # objects' reprs: a failed run's normal end, which the run's error.json already says
    "moto.stepfunctions.parser.asl.component.eval_component": logging.CRITICAL,
    # this process's clients of the server (moto's Step Functions' kept clients, used by as many
    # executions at once as run: fixes.stepfunctions_clients_kept) get connections it closes after
    # one answer, so their pools never hold one worth keeping: urllib3's "Connection pool is full,
    # discarding connection" (a client used by more threads at once than its pool's 10) says nothing
    "urllib3.connectionpool": logging.ERROR,
}


def quiet_loggers() -> None:
    """moto's and its server's logs down to what says something is wrong with local mode."""
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


class ThreadsKeptServer:
    """werkzeug's threaded WSGI server, whose threads wait for the next connection when theirs is
    done. The threaded server starts a thread per connection, and its handler closes every
    connection after one response (it sends ``Connection: close``: werkzeug's ``run_wsgi``), so
    every request was a new thread: starting it was about an eighth of the stack's CPU in a
    50-task scatter (py-spy), and a request answered by a waiting thread costs the server about
    12% less CPU (``make bench-moto-server``). A thread ends once it has waited ``idle_seconds``
    with no connection, and at ``close``. Anything else is as the threaded server does it (a
    connection is one thread's until it closes; a new thread starts when none waits), and as
    moto's own ``ThreadedMotoServer`` serves its application."""

    idle_seconds = 30.0

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import ThreadedWSGIServer

        kept = self

        class Server(ThreadedWSGIServer):
            def process_request(self, request: Any, client_address: Any) -> None:
                kept.hand_over(request, client_address)

        self.server = Server(host, port, app, handler=MotoRequestHandler)
        self.thread_name = f"moto-request-{self.server.server_address[1]}"
        self._connections: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting = 0  # threads waiting for a connection
        self._closed = False

    def hand_over(self, request: Any, client_address: Any) -> None:
        """A connection to a waiting thread, or to a new one of its own (one thread a connection;
        a thread that cannot start leaves the connection to socketserver, which closes it)."""
        with self._lock:
            if self._waiting:
                self._waiting -= 1
                self._connections.put((request, client_address))
                return
        threading.Thread(
            target=self._serve, args=((request, client_address),), name=self.thread_name, daemon=True
        ).start()

    def _serve(self, connection: tuple[Any, Any]) -> None:
        while True:
            self.server.process_request_thread(*connection)  # (socketserver's: handled, then shut)
            with self._lock:
                if self._closed:
                    return
                self._waiting += 1
            while True:
                try:
                    connection = self._connections.get(timeout=self.idle_seconds)
                    break
                except queue.Empty:
                    with self._lock:  # (one handed over meanwhile was counted as this thread's)
                        if self._connections.empty():
                            self._waiting -= 1
                            return
            if connection is None:  # closed
                return

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def close(self) -> None:
        """Once ``serve_forever`` has returned: the listening socket closed, and each thread
        waiting for a connection told to end (one serving a connection ends when it has, as the
        threaded server's would: when its client closes it)."""
        self.server.server_close()
        with self._lock:
            self._closed = True
            for _ in range(self._waiting):
                self._connections.put(None)
            self._waiting = 0


class MotoServer:
    """moto's server application (``ThreadedMotoServer``'s: ``DomainDispatcherApplication``, each
    service's Flask app, ``MotoRequestHandler``) served by a ``ThreadsKeptServer`` in a thread of
    this process: ``ThreadedMotoServer`` itself without a thread's start per request."""

    def __init__(self, host: str, port: int) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.server = ThreadsKeptServer(DomainDispatcherApplication(create_backend_app), host, port)
        self.thread = threading.Thread(target=self.server.serve_forever, name="moto-server", daemon=True)
        self.thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self.server.server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        self.server.server.shutdown()
        self.thread.join()
        self.server.close()


def start() -> MotoServer:
    """moto's server on a port of 127.0.0.1 the system picks (port 0: no other process can take
    it between a choice and the bind), serving. No browser reads from it (the run API is
    ``gateway``'s), and S3 answers no cross-origin request to a bucket without a CORS
    configuration (403, "CORS is not enabled for this bucket":
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/cors-troubleshooting.html; the stack
    gives its bucket none): moto's global CORS, Flask-CORS on each service's app and a twentieth
    of the server's CPU per request, is off, as ``MOTO_DISABLE_GLOBAL_CORS`` turns
    it off (moto reads that variable once, when its settings are first imported, which in a
    process that used moto before the stack started is long past: the value it bound is set)."""
    from moto.moto_server import werkzeug_app

    werkzeug_app.DISABLE_GLOBAL_CORS = True
    return MotoServer("127.0.0.1", 0)


def execute_state_machines(endpoint: str) -> None:
    """moto's Step Functions runs the state machines' executions (by default it only records them)."""
    import requests

    requests.post(
        f"{endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10
    ).raise_for_status()


def stop(server: Any) -> None:
    """Stop a ``MotoServer`` (or moto's ``ThreadedMotoServer``) without socketserver's wait of up
    to half a second (``http_service.stop_promptly``)."""
    stop_promptly(server.stop, server.get_host_and_port())
