"""One status poller per driver process.

Every running task registers here; a single thread makes one pass per interval, calling
DescribeTasks for at most 100 tasks per call, and hands each task's latest description to the
thread waiting on it. STOPPED tasks leave the watch list.

A task DescribeTasks answers MISSING for stays on the list: ECS is eventually consistent, and a
task just launched may be unknown to DescribeTasks for a while (the RunTask API reference says
to call DescribeTasks with backoff after RunTask,
https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html). The waiter sees
``missing`` and since when (``missing_since``), and decides how long to wait (the backend's
``missing_grace``).

``wake`` (every poller of the process: ``wake_all``) makes a pass start now rather than at the
end of the interval. Nothing here calls it: it is a hook for whoever learns of a task's change
first; local mode's ECS runner tells a local driver's process when one of its tasks stopped, so
the pass that sees it is not an interval late. A wake that names its tasks makes a pass that
describes only those (of the ones watched): the others are described at the interval as before,
so a scatter's task is described about once more for its end, not once per end of any task. A
wake may name a task before it is watched (a short task can end before RunTask's answer reaches
the driver, which then watches it): the name is kept (``EARLY_KEPT`` at most), and watching the
task makes a pass of it at once. A task a wake named that DescribeTasks answers MISSING (ECS is
eventually consistent: the first answers about a task may not know it yet) is asked about again
after ``MIN_WAKE_GAP``, ``MISSING_RECHECKS`` times at most, then left to the passes of every task.
On AWS nothing calls it and the poller passes every interval, as before.

The interval adapts to the number of tasks watched (``pass_interval``): a pass costs
ceil(watched / 100) DescribeTasks calls, and passes are spaced so that calls per second stay
within ``budget`` (the ``[aws_fargate] describe_budget``, by default a quarter of the account's
DescribeTasks rate, leaving the rest to the console, other runs and other drivers), never closer
than ``interval`` (``[aws_fargate] poll_interval``, the floor). So a few hundred tasks are polled
about twice a second, and thousands every few seconds. ECS throttles DescribeTasks per account
with a token bucket (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/request-throttling.html):
a pass that is throttled doubles a slowdown factor on the interval (up to ``MAX_SLOWDOWN``), and
each pass that is not shrinks it back (``next_slowdown``), so drivers sharing an account back
off together when their reads exceed the bucket.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any, Callable, Iterable

from .. import aws

MAX_DESCRIBE = 100
#: DescribeTasks calls per second a poller spends by default: a quarter of the account's
#: sustained DescribeTasks rate (20/s, ../shared/DESIGN.md; the request-throttling page above)
DEFAULT_BUDGET = 5.0
#: the most a throttled poller stretches its interval
MAX_SLOWDOWN = 8.0
#: the share of the budget a driver plans to use: calls spaced exactly 1/budget apart put one call
#: more than budget x 60 in some minutes (a minute holds both ends of its 60 s), which is over it
HEADROOM = 0.98
#: a pass a ``wake`` asks for starts at least this long after the previous one began (a burst
#: of wakes, as when many tasks stop at once, makes one or two passes, not one per wake)
MIN_WAKE_GAP = 0.05
#: task ARNs a wake named before they were watched, kept per poller (the oldest forgotten first):
#: a task woken for that is never watched (stopped and forgotten already) must not pile up
EARLY_KEPT = 256
#: how many more passes, ``MIN_WAKE_GAP`` apart, ask about a task a wake named and DescribeTasks
#: answered MISSING (the wake said it changed: ECS knows it, or soon will)
MISSING_RECHECKS = 3
#: every poller of this process (``wake_all``)
_POLLERS: "weakref.WeakSet[TaskPoller]" = weakref.WeakSet()


def wake_all(arns: Iterable[str] | None = None) -> None:
    """Every poller of this process makes a pass now: of the tasks ``arns`` names that it
    watches, or of every task it watches if None (see ``TaskPoller.wake``)."""
    named = None if arns is None else list(arns)
    for poller in list(_POLLERS):
        poller.wake(named)

log = logging.getLogger(__name__)


def calls_per_pass(watched: int) -> int:
    """DescribeTasks calls one pass over ``watched`` tasks makes (at most 100 tasks a call)."""
    return -(-watched // MAX_DESCRIBE)


def pass_interval(watched: int, budget: float, floor: float, slowdown: float = 1.0) -> float:
    """Seconds between the starts of two passes over ``watched`` tasks: the shortest that keeps
    DescribeTasks within ``budget`` calls per second, never below ``floor``, stretched by
    ``slowdown`` (>= 1) after throttles."""
    if budget <= 0:
        raise ValueError(f"DescribeTasks budget must be > 0 calls/s (got {budget})")
    return max(floor, calls_per_pass(watched) / (budget * HEADROOM)) * max(1.0, slowdown)


def next_slowdown(slowdown: float, throttled: bool) -> float:
    """The slowdown factor after a pass: doubled (up to ``MAX_SLOWDOWN``) if DescribeTasks was
    throttled in it, else a tenth of the way back towards 1 (slowly: drivers sharing an account
    stay below its read rate for a while rather than overrunning it again at once)."""
    if throttled:
        return min(MAX_SLOWDOWN, max(1.0, slowdown) * 2)
    return max(1.0, 1 + (slowdown - 1) * 0.9)


class Watch:
    """The waiting side of one task."""

    def __init__(self, arn: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.arn = arn
        self.description: dict[str, Any] | None = None
        self.missing = False
        self._clock = clock
        #: when the task was put on the list (right after RunTask answered)
        self.watched_at = clock()
        #: when the current run of MISSING answers began (None: not missing)
        self.missing_since: float | None = None
        self._news = threading.Condition()
        self._version = 0

    def _update(self, description: dict[str, Any] | None, missing: bool = False) -> None:
        with self._news:
            if missing:
                if self.missing_since is None:
                    self.missing_since = self._clock()
                # keep what was known before, if anything: only MISSING is new
            else:
                self.description = description
                self.missing_since = None
            self.missing = missing
            self._version += 1
            self._news.notify_all()

    @property
    def stopped(self) -> bool:
        return bool(self.description and self.description.get("lastStatus") == "STOPPED")

    def unknown_for(self) -> float:
        """Seconds ECS has not known the task: since launch if it never knew it, else since it
        went missing. 0 while it knows it."""
        if not self.missing or self.missing_since is None:
            return 0.0
        start = self.watched_at if self.description is None else self.missing_since
        return self._clock() - start

    def wait(self, timeout: float, seen: int = -1) -> int:
        """Wait until an update newer than ``seen`` arrives (or timeout); return the version."""
        with self._news:
            if self._version == seen:
                self._news.wait(timeout)
            return self._version


class TaskPoller:
    def __init__(
        self,
        describe: Callable[[list[str]], dict[str, Any]],
        interval: float,
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
        budget: float = DEFAULT_BUDGET,
    ) -> None:
        """``interval``: the shortest time between passes (the floor); ``budget``: DescribeTasks
        calls per second at most (see ``pass_interval``)."""
        if budget <= 0:
            raise ValueError(f"DescribeTasks budget must be > 0 calls/s (got {budget})")
        self._describe = describe
        self._clock = clock
        self.interval = interval
        self.budget = budget
        #: >= 1: how much throttles stretch the interval for now (``next_slowdown``)
        self.slowdown = 1.0
        #: tasks the last pass described
        self._last_watched = 0
        #: False: no thread; the caller drives ``poll_once`` (tests, the benchmark's simulations)
        self.background = background
        self._lock = threading.Lock()
        self._watches: dict[str, Watch] = {}
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        #: what the wakes since the last pass asked for: these tasks described (``_named``), or
        #: every task (``_wake_every``)
        self._named: set[str] = set()
        self._wake_every = False
        #: tasks a wake named that were not watched then (``EARLY_KEPT``)
        self._early: OrderedDict[str, None] = OrderedDict()
        #: tasks a wake named that were answered MISSING, and how often they were asked again
        self._rechecks: dict[str, int] = {}
        #: when the background thread's next pass of every task is due (``time.monotonic``)
        self._next_full = 0.0
        #: DescribeTasks calls made, and (calls, watched) per pass: read by tests and the benchmark
        self.calls = 0
        #: tasks described, over every call (a task in two passes counts twice)
        self.described = 0
        self.passes: list[tuple[int, int]] = []
        _POLLERS.add(self)

    def wake(self, arns: Iterable[str] | None = None) -> None:
        """Make a pass now (not before ``MIN_WAKE_GAP`` after the last one began), not at the end
        of the interval: the tasks ``arns`` names have just changed (those this poller watches
        are described), or, if None, any task may have (every task is described). The pass of
        every task stays due at its interval either way."""
        with self._lock:
            if arns is None:
                self._wake_every = True
            else:
                for arn in arns:
                    if arn in self._watches:
                        self._named.add(arn)
                    else:  # (its RunTask's answer may not have reached the driver yet)
                        self._early[arn] = None
                        while len(self._early) > EARLY_KEPT:
                            self._early.popitem(last=False)
        self._wake.set()

    def watch(self, arn: str) -> Watch:
        woken = False
        with self._lock:
            found = self._watches.get(arn)
            if found is None:
                found = self._watches[arn] = Watch(arn, self._clock)
                if arn in self._early:  # a wake named it before it was watched: described now
                    del self._early[arn]
                    self._named.add(arn)
                    woken = True
            if self.background and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._loop, name="fargate-poller", daemon=True)
                self._thread.start()
        if woken:
            self._wake.set()
        return found

    def forget(self, arn: str) -> None:
        with self._lock:
            self._watches.pop(arn, None)

    def poll_once(self, pace: bool = False, only: Iterable[str] | None = None) -> set[str]:
        """One pass: DescribeTasks for every task watched, 100 a call. ``pace``: the calls of
        the pass are spread ``1 / budget`` seconds apart (less ``HEADROOM``) (the background thread's passes), so
        that DescribeTasks stays within the budget over any stretch of time, not only on
        average: a pass of 20 calls takes 4 s, and each task is still described once a pass.
        ``only``: describe just those of these tasks that are watched (a wake's pass); such a
        pass is not counted as a pass of every task (``current_interval``, ``passes``), and only
        a throttle in it changes the slowdown (a burst of wakes does not undo a backoff).
        Returns the tasks whose DescribeTasks call failed."""
        with self._lock:
            arns = list(self._watches) if only is None else [a for a in dict.fromkeys(only) if a in self._watches]
        calls = 0
        throttled = False
        failed: set[str] = set()
        last_call: float | None = None
        for i in range(0, len(arns), MAX_DESCRIBE):
            chunk = arns[i : i + MAX_DESCRIBE]
            if pace and last_call is not None:
                time.sleep(max(0.0, last_call + 1 / (self.budget * HEADROOM) - time.monotonic()))
            last_call = time.monotonic()
            try:
                response = self._describe(chunk)
            except Exception as exn:  # keep polling: a transient error must not strand waiters
                throttled = throttled or aws.throttled(exn)
                log.warning("DescribeTasks failed (will retry next pass): %s", exn)
                failed.update(chunk)
                continue
            calls += 1
            self.described += len(chunk)
            for task in response.get("tasks", []):
                self._deliver(task["taskArn"], task)
            for failure in response.get("failures", []):
                if failure.get("reason") == "MISSING" and failure.get("arn"):
                    self._deliver(failure["arn"], None, missing=True)
        self.calls += calls
        if only is None or throttled:
            self.slowdown = next_slowdown(self.slowdown, throttled)
        if only is None:
            self._last_watched = len(arns)
            if arns:
                self.passes.append((calls, len(arns)))
        return failed

    def watched(self) -> int:
        """How many tasks the poller follows now."""
        with self._lock:
            return len(self._watches)

    def current_interval(self) -> float:
        """Seconds from the start of the last pass to the next one: for the tasks watched now,
        or in the last pass if it watched more (tasks that stopped during a pass must not let
        the next one start before the last one's calls were paid for)."""
        with self._lock:
            watched = max(len(self._watches), self._last_watched)
        return pass_interval(watched, self.budget, self.interval, self.slowdown)

    def _deliver(self, arn: str, task: dict[str, Any] | None, missing: bool = False) -> None:
        """Hand a task's description (or MISSING) to its waiter; a description equal to the
        one it has wakes nobody (most tasks of a large run are unchanged from pass to pass)."""
        with self._lock:
            watch = self._watches.get(arn)
            if watch is not None and not missing and (task or {}).get("lastStatus") == "STOPPED":
                del self._watches[arn]
        if watch is None or (not missing and not watch.missing and watch.description == task):
            return
        watch._update(task, missing=missing)

    def _recheck_missing(self, named: set[str], failed: set[str]) -> None:
        """The tasks a wake named that the pass after it found MISSING, or could not ask about
        (``failed``), are asked about again in the next pass (``MISSING_RECHECKS`` times at most)."""
        again = False
        with self._lock:
            for arn in named:
                watch = self._watches.get(arn)
                tries = self._rechecks.pop(arn, 0) + 1
                if watch is not None and (watch.missing or arn in failed) and tries <= MISSING_RECHECKS:
                    self._rechecks[arn] = tries
                    self._named.add(arn)
                    again = True
        if again:
            self._wake.set()

    def _loop(self) -> None:
        while True:
            started = time.monotonic()
            self._wake.clear()  # (a wake from here on asks for the next pass)
            with self._lock:
                named, self._named = self._named, set()
                every = self._wake_every or started >= self._next_full
                self._wake_every = False
            if every:
                failed = self.poll_once(pace=True)
                self._next_full = started + self.current_interval()
            else:
                failed = self.poll_once(pace=True, only=named) if named else set()
            if named:  # (a pass of every task that came with the wake answers for the named ones too)
                self._recheck_missing(named, failed)
            with self._lock:
                if not self._watches:
                    self._thread = None
                    self._next_full = 0.0  # (the next task watched is asked about at once, as at the start)
                    return
            if self._wake.wait(max(0.0, self._next_full - time.monotonic())):
                gap = MIN_WAKE_GAP - (time.monotonic() - started)
                if gap > 0:
                    time.sleep(gap)
