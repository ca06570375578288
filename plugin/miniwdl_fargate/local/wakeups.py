"""Telling a local driver's process at once that one of its WDL tasks changed.

On AWS the driver's poller (``backend.poller``) learns that a task stopped at its next
DescribeTasks pass, up to ``TaskPollSeconds`` later. Locally the ECS runner knows the moment it
happens, so it says so: it writes a line into a FIFO in the driver task's metadata folder (the
folder ``ECS_CONTAINER_METADATA_URI_V4`` names, ``ecs_runner.task_metadata``), and a thread in the
driver's process reads it and calls ``backend.poller.wake_all``; the pass that sees the change
then starts at once. The poller still asks ECS (moto) what happened: only the moment of asking
changes. A driver that does not listen (not forked from ``driver_zygote``) is polled as on AWS.

A notice is one line: the ARN of the task that changed (the driver's pass then describes that
task alone), or empty (every task it watches). A line is one write of at most ``PIPE_BUF`` bytes
to a pipe, which Linux writes whole or not at all (pipe(7)), so notices from the runner's threads
never interleave. A notice that finds the pipe full is dropped: its task is seen at the driver's
next pass of every task.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
from typing import Callable

log = logging.getLogger("miniwdl-fargate.local")

#: the FIFO's name in the driver task's metadata folder
FIFO = "wake"


def notify(folder: str, arn: str = "") -> bool:
    """Wake the driver whose metadata folder ``folder`` is, if it listens, for the task ``arn``
    (empty: for any task); never blocks. True if it was told."""
    line = arn.encode() + b"\n"
    if b"\n" in line[:-1] or len(line) > select.PIPE_BUF:  # (never a task ARN: said, and no one woken)
        log.warning("local mode: not a task ARN a wake can name: %r", arn[:200])
        return False
    try:
        fd = os.open(os.path.join(folder, FIFO), os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exn:  # no FIFO (not listening), or no reader (ENXIO: its process ended)
        if exn.errno not in (errno.ENOENT, errno.ENXIO):
            log.warning("local mode: cannot wake the driver of %s: %s", folder, exn)
        return False
    try:
        os.write(fd, line)
    except BlockingIOError:  # the pipe is full: the listener has wakes to read already, and the
        pass  # task is described at the next pass of every task
    finally:
        os.close(fd)
    return True


def listen(folder: str, wake: Callable[[list[str] | None], None]) -> threading.Thread:
    """Make the FIFO in ``folder`` and start a daemon thread that calls ``wake`` whenever
    notices were written into it (several read at once make one call): with the ARNs they named,
    or None if one named none (every task)."""
    path = os.path.join(folder, FIFO)
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        pass
    fd = os.open(path, os.O_RDWR)  # (a writer of its own: no end-of-file between the runner's writes)
    thread = threading.Thread(target=_serve, args=(fd, wake), name="local-wakeups", daemon=True)
    thread.start()
    return thread


def _serve(fd: int, wake: Callable[[list[str] | None], None]) -> None:
    pending = b""
    while chunk := os.read(fd, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        if len(pending) > select.PIPE_BUF:  # (no notice is that long: not one, so a wake for every task)
            lines, pending = [b""], b""
        if not lines:  # (the rest of a line is still to come: a read may end inside a write)
            continue
        try:
            arns = [line.decode(errors="replace") for line in lines]
            wake(None if "" in arns else arns)
        except Exception:  # noqa: BLE001 (a failed wake only means a pass at the interval)
            log.exception("local mode: waking the poller failed")
