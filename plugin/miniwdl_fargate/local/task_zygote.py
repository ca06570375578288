"""Starts sandboxed WDL tasks fast: ``python -m ... SOCKET_FD``, a fork server (``forkserver``).

Without a container engine each WDL task runs in the strict sandbox (``sandbox``), which a fresh
task would build with two programs before its command: ``unshare`` (a private mount namespace)
and a Python interpreter running ``remount.py sandbox`` (the mounts, pivot_root, the unprivileged
identity). The interpreter's start and imports were half of a short task's CPU time. This small
process (the standard library and ``remount``, nothing else) forks one child per task instead;
the child makes the same namespaces itself (where local mode does not run as root, the user
namespace ``unshare --user --map-root-user`` would make too), runs the same ``remount.sandbox``
and execs the command, as ``driver_zygote`` does for drivers.

A request is one JSON message ``{"spec", "argv", "env", "user_namespace"}`` (``spec`` and
``argv`` as ``remount.sandbox`` takes them; ``"what"``, for the runner's log) with the log file
and the status pipe; the answer is the child's pidfd. The child is what ``HostJob`` would start: its own
session, /dev/null as stdin, the log file as stdout and stderr, exactly the task's environment,
and (``remount.sandbox``) the signal dispositions a new process has. No thread is started
before a fork.
"""

from __future__ import annotations

import os
import socket
import sys

from ..process_exit import flush_standard_streams
from . import forkserver, remount


def become_task(request: dict, fds: list[int], server: socket.socket) -> None:
    """In the forked child: into the task's sandbox, then exec its command; never returns."""
    code = 1
    try:
        (log,) = fds
        forkserver.into_session(server, os.open(os.devnull, os.O_RDONLY), log)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir("/")
        remount.private_namespace(request.get("user_namespace", False))
        code = remount.enter_sandbox(request["spec"], list(request["argv"]))
    except BaseException:  # noqa: BLE001 (said in the task's log, as the interpreter would)
        import traceback

        traceback.print_exc()
    finally:
        flush_standard_streams()
        os._exit(code)


def main() -> int:
    return forkserver.server_main(become_task, 1, lambda: None)


if __name__ == "__main__":
    sys.exit(main())
