"""One fork server for a local stack's Python children: ``python -m ... SOCKET_FD``.

A local stack forks two kinds of Python process: Lambda execution environments
(``lambda_zygote``'s children) and drivers (``driver_zygote``'s). Their libraries are mostly the
same (boto3 and botocore's models, miniwdl and its WDL parsers, Powertools), and a fork server
spends about a second of CPU importing them at every stack start; this one imports what both
preload, once (1.3-1.5 s of CPU measured where the two took 2.0-2.6, and one interpreter's
memory), and forks
either kind of child. A request says which with ``"kind"``: ``"lambda"`` (three descriptors, as
``lambda_zygote`` takes them) or ``"driver"`` (one, as ``driver_zygote`` takes it); the child
then turns into it exactly as that module's own server's child would (``become_environment``,
``become_driver``), with the process name ``lambda`` or ``driver`` (``ps -o comm``).

The local runtime starts it (``LocalRuntime``), with the Lambda environments' base environment and
``lambda_zygote.PRELOAD_ENV`` (children replace their environment with the request's). Where
drivers cannot be forked here (``EcsRunner``'s trial of its first driver child fails), local
mode stops it and goes back to what it did without it: Lambda environments from a
``lambda_zygote`` of their own, drivers as new processes. Each module's own server still serves
alone (the runners' tests, a Lambda runner outside a stack).
"""

from __future__ import annotations

import os
import socket
import sys
from typing import NoReturn

from . import driver_zygote, forkserver, lambda_zygote, remount

#: the kinds of child, and how many descriptors (beside the status pipe) each request brings
KINDS = {"lambda": 3, "driver": 1}
#: prctl(2)'s option that sets the calling thread's name (the process's, for its only thread):
#: what ``ps -o comm`` and /proc/<pid>/comm show, the cmdline staying the server's
PR_SET_NAME = 15


def preload() -> None:
    """What both kinds of child use, loaded once: the Lambda handlers' libraries (with
    ``PRELOAD_ENV``), then the driver's preload (its libraries and plugins, the WDL parsers and
    the AWS models, which the Lambda handlers' services are among: ``forkserver.AWS_SERVICES``)."""
    lambda_zygote.import_libraries()
    driver_zygote.preload()
    remount.libc()  # (loaded here, once: each child names itself with it)


def name_process(name: str) -> None:
    """This process's name as the system shows it (at most 15 bytes); where it cannot be set, the
    server's stays. (The C library as the process has it loaded, ``remount.libc``: looking it up by
    name, ``ctypes.util.find_library``, ran ``ldconfig`` in every child.)"""
    try:
        remount.libc().prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):  # (no prctl in it: not Linux)
        pass


def become(request: dict, fds: list[int], server: socket.socket) -> NoReturn:
    """In the forked child: what ``request["kind"]`` asks (``serve`` refused any other kind).
    Each ``become_*`` ends the child itself; it never returns to the server's loop."""
    try:
        name_process(request["kind"])
        if request["kind"] == "lambda":
            lambda_zygote.become_environment(request, fds, server)
        else:
            driver_zygote.become_driver(request, fds, server)
    finally:
        os._exit(1)  # (not reached)


def main() -> int:
    return forkserver.server_main(become, KINDS, preload)


if __name__ == "__main__":
    sys.exit(main())
