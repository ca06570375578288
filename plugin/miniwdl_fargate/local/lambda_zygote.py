"""Starts Lambda execution environments fast: ``python -m ... SOCKET_FD``.

Importing a handler's libraries (boto3, Powertools, pydantic, the X-Ray SDK, miniwdl) takes most
of a new environment's start. This process imports them once, then forks one child per new
environment (``lambda_runner`` asks through SOCKET_FD, a SOCK_SEQPACKET socket). A child is on
its own from there: a new session, the function's environment variables and working directory,
the request pipe as stdin, the log file as stdout and stderr, and ``lambda_bootstrap`` imports
the handler's own module and serves invocations as a freshly started one would. Only libraries
are imported here, never the handler's module, and no thread is started before a fork.

A request is one JSON message ``{"handler", "cwd", "env"}`` with three descriptors (the
request pipe's read end, the response pipe's write end, the log file); the answer is
``{"pid"}`` with the child's pidfd, or ``{"error"}``. Children are reaped automatically (the
runner watches them through their pidfd).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys

#: what the stack's handlers import that costs the most, imported before any fork
LIBRARIES = (
    "boto3",
    "botocore.session",
    "botocore.client",
    "pydantic",
    "aws_lambda_powertools",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
    "aws_lambda_powertools.utilities.parser",
    "aws_lambda_powertools.event_handler",
    "aws_xray_sdk.core",
    "WDL",
)
MAX_MESSAGE = 1 << 20


def preimport() -> None:
    for name in LIBRARIES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 (a library a handler does not have is simply not preloaded)
            pass


def become_environment(request: dict, fds: list[int], server: socket.socket) -> None:
    """In the forked child: turn into a fresh environment and serve; never returns."""
    code = 1
    try:
        server.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the handler's own subprocesses are its to wait for
        os.setsid()
        requests, responses, log = fds
        os.dup2(requests, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(requests)
        os.close(log)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["lambda_bootstrap", request["handler"], str(responses)]
        from . import lambda_bootstrap

        code = lambda_bootstrap.main()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def serve(server: socket.socket) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped as they exit
    while True:
        message, fds, _flags, _addr = socket.recv_fds(server, MAX_MESSAGE, 3)
        if not message:
            return
        request = json.loads(message)
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            server.send(json.dumps({"error": "expected 3 descriptors"}).encode())
            continue
        pid = os.fork()
        if pid == 0:
            become_environment(request, fds, server)
        for fd in fds:
            os.close(fd)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exn:  # it already ended (and was reaped)
            server.send(json.dumps({"error": f"environment ended at once: {exn}"}).encode())
            continue
        socket.send_fds(server, [json.dumps({"pid": pid}).encode()], [pidfd])
        os.close(pidfd)


def main() -> int:
    server = socket.socket(fileno=int(sys.argv[1]))
    preimport()
    serve(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
