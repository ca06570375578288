"""A local stack's count of its changes: what a client following a run watches instead of
asking the stack again and again.

A client following a local run (``local run``, ``submit --local --follow``) looked at it every
50 ms: each look an AWS request the stack answered, about 8 ms of CPU between the two processes,
a fifth of a core for as long as the run's tasks ran, taken from the run itself on a small
machine. The stack counts its changes instead, in a file of its state folder (``FILE``: the
count, 8 bytes): every S3 object written or removed, every Step Functions execution started or
ended, every ECS task whose status changed (``moto.hooks`` and ``ecs_state`` call ``bump``). A
client of the stack (the connection file names its state folder) reads the count every
``CHECK_SECONDS``, a read of 8 bytes, and looks at the run again when the count moved (at most
every ``SHORTEST_SECONDS``, as often as it looked before: a scatter's tasks change many times a
second), and at least every ``LOOK_SECONDS`` whatever it says (for what it does not count, as
CloudWatch Logs).

The stack keeps two counts. ``FILE`` counts every change, its ECS tasks' statuses and the call
cache's objects among them: a scatter's tasks move it hundreds of times a run. ``RUN_FILE`` counts
the changes to runs alone, what a client following a run reads: the S3 objects under ``runs/``
(each run's status.json, its results, a refusal's error.json) and the Step Functions executions.
A client following a run watches that one (``pace(..., RUN_FILE)``): during a 50-task scatter it
looked at the run's status.json about 26 times, once every ``SHORTEST_SECONDS`` while the tasks'
changes kept the first count moving, where the run's own status changed 9 times (each look a
GetObject, about 5 ms of CPU between the stack and the client); a client waiting for an ECS task
watches the first.

Only local mode has this: on AWS a client looks every few seconds, as before.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import Callable

#: the file of the count of every change, in the stack's state folder
FILE = "changes"
#: the file of the count of the changes to runs (S3 objects under runs/, executions), beside it
RUN_FILE = "run-changes"
#: how often a watching client reads the count (a change is seen this long after it, at most)
CHECK_SECONDS = 0.02
#: the shortest time between two looks of a watching client
SHORTEST_SECONDS = 0.05
#: how often a watching client looks at what it follows whatever the count says
LOOK_SECONDS = 1.0

_SIZE = 8


class ChangeCount:
    """The stack's side: the count, bumped after each change is in place (a client that sees
    the new count and looks sees the change)."""

    def __init__(self, state_dir: str, name: str = FILE) -> None:
        self.path = os.path.join(state_dir, name)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._lock = threading.Lock()
        self._count = _read(self._fd)  # (a stack started again on its folder counts on)

    def bump(self) -> None:
        with self._lock:
            if self._fd < 0:
                return
            self._count += 1
            os.pwrite(self._fd, self._count.to_bytes(_SIZE, "little"), 0)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class ChangeWatch:
    """A client's side: ``pause`` waits until the count (of the file ``name``) moves (or
    ``longest`` seconds), at least ``SHORTEST_SECONDS``."""

    def __init__(self, state_dir: str, name: str = FILE) -> None:
        self.path = os.path.join(state_dir, name)
        self._seen = self._count()
        if self._seen is None:
            raise FileNotFoundError(self.path)

    def _count(self) -> int | None:
        """The count now (the file opened for each read: a watch holds nothing open); None once
        the file is gone (the stack's folder removed), which reads as a change."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return _read(fd)
        finally:
            os.close(fd)

    def pause(self, longest: float, check: Callable[[], None] | None = None) -> None:
        """Return once the count moved since this watch last saw it, and ``SHORTEST_SECONDS`` have
        passed; or after ``longest`` seconds. ``check`` is called at each read of the count (it
        raises to stop waiting: ``local run`` told to stop)."""
        deadline = time.monotonic() + longest
        time.sleep(min(SHORTEST_SECONDS, longest))
        while True:
            if check is not None:
                check()
            count = self._count()
            if count != self._seen:
                self._seen = count
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(CHECK_SECONDS, left))


def pace(
    state_dir: str | None, otherwise: float, check: Callable[[], None] | None = None, name: str = FILE,
) -> tuple[float, Callable[[float], None]]:
    """How a client of the stack whose state folder is ``state_dir`` waits between two looks at
    what it follows: (the longest wait, what waits). Until the count of the file ``name`` moved
    (``FILE``: any change; ``RUN_FILE``: a change to a run), ``LOOK_SECONDS`` at most (``check``
    called at each read of the count); where the stack keeps no such count, a sleep of
    ``otherwise`` seconds."""
    found = watch(state_dir, name)
    if found is None:
        return otherwise, time.sleep
    return LOOK_SECONDS, found.pause if check is None else functools.partial(found.pause, check=check)


def watch(state_dir: str | None, name: str = FILE) -> ChangeWatch | None:
    """A watch of the count ``name`` of the stack whose state folder is ``state_dir``; None where
    it keeps no such count (a stack of an earlier version, a folder gone): its client looks at its
    old pace."""
    if not state_dir:
        return None
    try:
        return ChangeWatch(state_dir, name)
    except OSError:
        return None


def _read(fd: int) -> int:
    return int.from_bytes(os.pread(fd, _SIZE, 0) or b"\0", "little")
