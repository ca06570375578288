"""Starts Lambda execution environments fast: ``python -m ... SOCKET_FD``.

Importing a handler's libraries (boto3, Powertools, pydantic, the X-Ray SDK, miniwdl) takes most
of a new environment's start. This process imports them once, then forks one child per new
environment (``lambda_runner`` asks through SOCKET_FD, a SOCK_SEQPACKET socket). A child is on
its own from there: a new session, the function's environment variables and working directory,
the request pipe as stdin, the log file as stdout and stderr, and ``lambda_bootstrap`` imports
the handler's own module and serves invocations as a freshly started one would. Only libraries
are imported here, the stack's handlers' (``PRELOAD_ENV``: ``LIBRARIES``, miniwdl's WDL parsers
built and botocore's models of the services they call parsed), never the handler's module, and no
thread is started before a fork. A zygote for other handlers (the Lambda runner's own tests)
preloads nothing: a child is then an interpreter started once, its handler's imports its own.

A request is one JSON message ``{"handler", "cwd", "env"}`` with three descriptors (the
request pipe's read end, the response pipe's write end, the log file); the answer is
``{"pid"}`` with the child's pidfd, or ``{"error"}`` (``forkserver``, which reaps the children; the runner watches them through their
pidfd).
"""

from __future__ import annotations

import importlib
import os
import socket
import sys

from ..process_exit import flush_standard_streams
from . import forkserver

#: what the stack's handlers import that costs the most, imported before any fork (``PRELOAD_ENV``)
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
    # the parser's models load at first use, each building its pydantic models (and pydantic's
    # first model scanning the entry points for its plugins): a fifth of a new environment's init
    "aws_lambda_powertools.utilities.parser.models.s3",
    "aws_lambda_powertools.utilities.parser.models.event_bridge",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.event_handler.openapi.params",
    "aws_lambda_powertools.event_handler.openapi.exceptions",
    "aws_lambda_powertools.event_handler.middlewares.openapi_validation",
    "aws_xray_sdk.core",
    "WDL",
    "WDL.runtime",
)


#: set (to 1) in the zygote's environment by a runner of the stack's handlers (``LambdaRunner``
#: ``preload``): import their ``LIBRARIES``, build miniwdl's WDL parsers (the submit and API
#: handlers load the submitted workflow) and parse the AWS models of the services they call
PRELOAD_ENV = "MINIWDL_FARGATE_LAMBDA_PRELOAD"


def preimport() -> None:
    if import_libraries():
        forkserver.build_wdl_parsers()
        forkserver.preload_aws()


def import_libraries() -> bool:
    """With ``PRELOAD_ENV``, import the handlers' ``LIBRARIES``; whether it did (``preimport``
    then builds the parsers and parses the models; ``python_zygote`` has the driver's preload do
    that, once for both)."""
    if os.environ.get(PRELOAD_ENV) != "1":
        return False  # (other handlers': about 1 s of CPU per zygote that they would not use)
    for name in LIBRARIES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 (a library a handler does not have is simply not preloaded)
            pass
    return True


def become_environment(request: dict, fds: list[int], server: socket.socket) -> None:
    """In the forked child: turn into a fresh environment and serve; never returns."""
    code = 1
    try:
        requests, responses, log = fds
        forkserver.into_session(server, requests, log)  # (the handler's own subprocesses are its to wait for)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["lambda_bootstrap", request["handler"], str(responses)]
        from . import lambda_bootstrap

        code = lambda_bootstrap.main()
    finally:
        flush_standard_streams()
        os._exit(code)


def main() -> int:
    return forkserver.server_main(become_environment, 3, preimport)


if __name__ == "__main__":
    sys.exit(main())
