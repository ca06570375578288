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

``RUN_FILE`` holds, after the count of every run's changes, a count per run name (``run_slot``:
``RUN_SLOTS`` counts, a name's chosen by its CRC-32), and a client following one run watches its
run's (``pace(..., run=name)``): with ten runs at once, a client waiting for the first looked at
it at each change of any of the ten. Two names may share a count: a look too many, never a change
missed.

Only local mode has this: on AWS a client looks every few seconds, as before.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import zlib
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

#: the counts of ``RUN_FILE`` after its first (every run's changes): one per run name, by ``run_slot``
RUN_SLOTS = 1024

_SIZE = 8


def run_slot(run_name: str) -> int:
    """Where ``RUN_FILE`` counts the changes of the runs named ``run_name``: 1 to ``RUN_SLOTS``
    (0 is every run's). A "." counts as "_": an execution's name is its run id with each "."
    made "_" (``runs.execution_name``), and its changes are its run's."""
    return 1 + zlib.crc32(run_name.replace(".", "_").encode()) % RUN_SLOTS


class ChangeCount:
    """The stack's side: the count (``slots`` of them: the first counts every change, the others
    each a part of them), bumped after each change is in place (a client that sees the new count
    and looks sees the change)."""

    def __init__(self, state_dir: str, name: str = FILE, slots: int = 1) -> None:
        self.path = os.path.join(state_dir, name)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._lock = threading.Lock()
        # (a stack started again on its folder counts on)
        self._counts = [_read(self._fd, slot) for slot in range(slots)]
        os.pwrite(self._fd, b"".join(count.to_bytes(_SIZE, "little") for count in self._counts), 0)

    def bump(self, slot: int = 0) -> None:
        """Count a change: in the first count, and in count ``slot`` too if it is another."""
        with self._lock:
            if self._fd < 0:
                return
            for counted in {0, slot}:
                self._counts[counted] += 1
                os.pwrite(self._fd, self._counts[counted].to_bytes(_SIZE, "little"), counted * _SIZE)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class ChangeWatch:
    """A client's side: ``pause`` waits until the count (of the file ``name``: its count
    ``slot``) moves (or ``longest`` seconds), at least ``SHORTEST_SECONDS``."""

    def __init__(self, state_dir: str, name: str = FILE, slot: int = 0) -> None:
        self.path = os.path.join(state_dir, name)
        try:
            size = os.stat(self.path).st_size
        except OSError:
            raise FileNotFoundError(self.path) from None
        # (a file of fewer counts, a stack of an earlier version's: its first count, every change)
        self.slot = slot if size >= (slot + 1) * _SIZE else 0
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
            return _read(fd, self.slot)
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
    run: str | None = None,
) -> tuple[float, Callable[[float], None]]:
    """How a client of the stack whose state folder is ``state_dir`` waits between two looks at
    what it follows: (the longest wait, what waits). Until the count of the file ``name`` moved
    (``FILE``: any change; ``RUN_FILE``: a change to a run, to the runs named ``run`` if given),
    ``LOOK_SECONDS`` at most (``check`` called at each read of the count); where the stack keeps no
    such count, a sleep of ``otherwise`` seconds."""
    found = watch(state_dir, name, run)
    if found is None:
        return otherwise, time.sleep
    return LOOK_SECONDS, found.pause if check is None else functools.partial(found.pause, check=check)


def watch(state_dir: str | None, name: str = FILE, run: str | None = None) -> ChangeWatch | None:
    """A watch of the count ``name`` of the stack whose state folder is ``state_dir`` (of
    ``RUN_FILE``, the count of the runs named ``run`` if given); None where it keeps no such count
    (a stack of an earlier version, a folder gone): its client looks at its old pace."""
    if not state_dir:
        return None
    try:
        return ChangeWatch(state_dir, name, run_slot(run) if run and name == RUN_FILE else 0)
    except OSError:
        return None


def _read(fd: int, slot: int = 0) -> int:
    return int.from_bytes(os.pread(fd, _SIZE, slot * _SIZE) or b"\0", "little")
