"""A run's limits inside its driver: how many of its tasks run at once, how many vCPUs they hold,
and what the run may cost.

One ``Gate`` per run (``gate_for``: the aws_fargate backend makes it at the run's first task, from
the task's ``[aws_fargate]`` settings ``max_concurrent_tasks``, ``max_vcpus`` and ``max_cost_usd``,
which the driver sets from the run's options, else the stack's defaults), shared by every task
thread of the run:

- ``take``: before RunTask, a task waits its turn until the run's running tasks and this one stay
  within ``max_concurrent_tasks``, and their vCPUs within ``max_vcpus`` (first come, first served:
  a big task is never starved by small ones). A task bigger than ``max_vcpus`` on its own fails at
  once (``TooBig``). The wait ends at once when the run is being stopped (``cancelled()``, the
  backend's ``terminating``: a SIGTERM, a cancel, a failed sibling; checked every second while few
  wait, ``check_interval``) or the budget is spent. ``give_back``: the task's attempt is over (it stopped, or never launched).
- the budget: the run's cost so far is estimated as the run report does (``report.cost``, list
  prices, over the attempts recorded in ``attempts.LOG``, running ones up to now, plus the
  ``overhead`` rows: the driver's own task), at each ``take`` and every ``check_seconds`` by a
  watcher thread. Once it reaches ``max_cost_usd`` the gate is ``halted``: no task is launched
  any more, waiting tasks fail, and each running task's thread stops its ECS task and fails
  (``halted_error``); the driver ends the run FAILED with ``BudgetExceeded``.

How exact the budget is: Fargate bills from the start of the image pull until the task terminates,
rounded up to the second (https://aws.amazon.com/fargate/pricing/), which the estimate follows with
list prices (Spot prices vary; the bill is AWS's). A stopped task is sent SIGTERM and bills until
its container exits, at most its stop timeout later, when SIGKILL comes
(https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_StopTask.html): the budget halts
once what the running tasks will have billed by then (the watcher's interval and the stop
timeout, ``RunLimits.stop_seconds``) would reach it. What it cannot see: prices other than the
list's, and what bills by the byte (see ``report.cost``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from . import attempts
from .report.cost import Prices, estimate_cost

log = logging.getLogger(__name__)

#: how many threads, in all, may wake each second only to check whether they should stop
#: waiting (``check_interval``): thousands wait at once in a large scatter, and a thousand
#: timed wake-ups a second cost a driver more than a vCPU (GIL and futex churn)
CHECKS_PER_SECOND = 100.0


def check_interval(waiting: int, floor: float = 1.0, ceiling: float = 30.0) -> float:
    """Seconds each of ``waiting`` threads may sleep between checks of its run's state so that
    together they wake about ``CHECKS_PER_SECOND`` times a second: ``floor`` while few wait
    (as before: a small run notices a stop within a second), at most ``ceiling``."""
    return max(floor, min(ceiling, waiting / CHECKS_PER_SECOND))


class LaunchCancelled(Exception):
    """The caller stopped waiting (the run is terminating) before its turn to launch."""


#: a launch's budget check reuses an estimate at most this old (seconds): a burst of a thousand
#: launches prices the run's attempts a few times, not a thousand
LAUNCH_ESTIMATE_AGE = 1.0


@dataclass(frozen=True)
class RunLimits:
    """What one run may hold and spend; 0 in a field: no limit."""

    max_concurrent_tasks: int = 0
    max_vcpus: float = 0.0
    max_cost_usd: float = 0.0
    #: seconds between the watcher's estimates of the run's cost
    check_seconds: float = 5.0
    #: seconds a stopped task may bill on while it exits (its container's stop timeout, after
    #: which SIGKILL comes): the budget keeps room for them
    stop_seconds: float = 0.0

    @property
    def any(self) -> bool:
        return bool(self.max_concurrent_tasks or self.max_vcpus or self.max_cost_usd)


class TooBig(ValueError):
    """A task needs more vCPUs than the run may hold at once: it can never run."""


class LaunchRefused(Exception):
    """The gate will not let a task launch: the run's budget is spent (``halted``) or the run ended."""


#: the gate of a run that miniwdl runs on its own (no pipeline run id)
STANDALONE = "standalone"


@dataclass(frozen=True)
class BudgetExceeded:
    """The run's estimated cost reached its budget."""

    limit_usd: float
    spent_usd: float
    at: float  # epoch seconds
    #: the least the tasks given their turn and not launched yet would have cost (``Turn.committed_usd``)
    committed_usd: float = 0.0
    #: what its running tasks would have billed by the time the next check could have stopped
    #: them (the check's interval, then their stop timeout), had they run on
    coming_usd: float = 0.0

    def spending(self) -> str:
        """What it had spent, what the launches it stopped would have cost at least, and what its
        running tasks would have billed by the time the next check had stopped them."""
        more = (f", and its next launches would have cost at least {self.committed_usd:.4f} USD more (a task bills a "
                "minute at least)") if self.committed_usd > 0 else ""
        coming = (f"; its running tasks would have billed about {self.coming_usd:.4f} USD more by the time the next "
                  "check had stopped them" if self.coming_usd > 0 else "")
        return f"it had spent about {self.spent_usd:.4f} USD{more}{coming}"

    def message(self) -> str:
        return (
            f"the run reached its budget: {self.spending()} of the run's budget "
            f"{self.limit_usd:g} USD ([aws_fargate] max_cost_usd; a pipeline run's options.max_cost_usd or its "
            "stack's MaxRunCostUsd), as the run report "
            "estimates cost at list prices; no more tasks were launched and its running tasks were stopped"
        )


@dataclass(eq=False)
class Turn:
    """One task's place among the run's running tasks (``Gate.take``), and the least it will cost
    once launched (``committed_usd``: Fargate's one-minute minimum at its size), counted against
    the budget from its turn on."""

    vcpus: float
    committed_usd: float = 0.0
    launched: bool = False
    returned: bool = False


@dataclass(eq=False)
class _Waiter:
    vcpus: float


@dataclass(eq=False)
class Gate:
    """The limits of one run, for all its task threads (see the module's docstring)."""

    run_id: str
    limits: RunLimits
    #: the run's estimated cost in USD at a moment (epoch seconds)
    estimate: Callable[[float], float]
    clock: Callable[[], float] = time.time
    running: int = 0
    vcpus: float = 0.0
    #: the most tasks and vCPUs held at once (tests, logs)
    most_running: int = 0
    most_vcpus: float = 0.0
    halted: BudgetExceeded | None = None
    closed: bool = False
    spent_usd: float = 0.0
    #: what the running tasks will have billed by the time the next check has stopped them (``check_budget``)
    coming_usd: float = 0.0
    #: the least the tasks given a turn and not launched yet will cost (``Turn.committed_usd``):
    #: a scatter's tasks all take their turns at once, long before any of them bills
    pending_usd: float = 0.0
    estimated_at: float | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _queue: collections.deque = field(default_factory=collections.deque)
    _watcher: threading.Thread | None = None

    # -- turns ------------------------------------------------------------------------------

    def take(
        self, vcpus: float, cancelled: Callable[[], bool] | None = None, who: str = "a task", committed_usd: float = 0.0
    ) -> Turn:
        """Wait for the run's limits to let a task of ``vcpus`` run; its Turn. TooBig: it never
        could; LaunchRefused: the budget is spent, or would be by the least the tasks launched
        and launching cost (``committed_usd``: this task's), or the run ended; ``LaunchCancelled``
        (the launcher's) when ``cancelled()`` turns true meanwhile."""
        cap = self.limits.max_vcpus
        if cap and vcpus > cap + 1e-9:
            raise TooBig(
                f"{who} needs {vcpus:g} vCPU, more than the run's max_vcpus of {cap:g} (options.max_vcpus or the "
                "stack's MaxRunVCpus) allow at once: it can never run; ask for fewer vCPUs or give the run a larger max_vcpus"
            )
        self._watch()
        me = _Waiter(vcpus)
        with self._cond:
            self._queue.append(me)
            try:
                while True:
                    self._refuse_if_over(who)
                    if cancelled is not None and cancelled():
                        raise LaunchCancelled()
                    if self._queue[0] is me and self._fits(vcpus):
                        break
                    # (as the launcher's queue: every second while few wait, all of them together
                    # about a hundred times a second when thousands are held back)
                    self._cond.wait(check_interval(len(self._queue)))
            finally:
                self._queue.remove(me)
                self._cond.notify_all()  # (the next in line may fit now)
            self.running += 1
            self.vcpus += vcpus
            self.pending_usd += committed_usd
            self.most_running = max(self.most_running, self.running)
            self.most_vcpus = max(self.most_vcpus, self.vcpus)
        turn = Turn(vcpus, committed_usd)
        try:
            self.check_budget(max_age=LAUNCH_ESTIMATE_AGE)
            with self._cond:
                self._refuse_if_over(who)
        except BaseException:
            self.give_back(turn)
            raise
        return turn

    def launched(self, turn: Turn) -> None:
        """RunTask took the task: what it commits to is the estimate's now (which counts a launched
        task at least its minimum from its launch; the estimate in hand, up to
        ``LAUNCH_ESTIMATE_AGE`` old, does not yet: it is added to it)."""
        with self._cond:
            if turn.launched or turn.returned:
                return
            turn.launched = True
            self.pending_usd = max(0.0, self.pending_usd - turn.committed_usd)
            self.spent_usd += turn.committed_usd

    def give_back(self, turn: Turn) -> None:
        """The task's attempt is over: its place and vCPUs go to the next in line (once)."""
        with self._cond:
            if turn.returned:
                return
            turn.returned = True
            if not turn.launched:  # (never launched: it will cost nothing)
                self.pending_usd = max(0.0, self.pending_usd - turn.committed_usd)
            self.running -= 1
            self.vcpus = max(0.0, self.vcpus - turn.vcpus)
            self._cond.notify_all()

    def _fits(self, vcpus: float) -> bool:
        limits = self.limits
        if limits.max_concurrent_tasks and self.running + 1 > limits.max_concurrent_tasks:
            return False
        return not limits.max_vcpus or self.vcpus + vcpus <= limits.max_vcpus + 1e-9

    def _refuse_if_over(self, who: str) -> None:
        if self.halted is not None:
            raise LaunchRefused(f"{who} not launched: {self.halted.message()}")
        if self.closed:
            raise LaunchRefused(f"{who} not launched: the run is over")

    # -- the budget -------------------------------------------------------------------------

    def check_budget(self, max_age: float = 0.0) -> BudgetExceeded | None:
        """Estimate the run's cost now (or reuse an estimate at most ``max_age`` seconds old); halt
        the gate once it reaches the budget. What halted it, if anything."""
        budget = self.limits.max_cost_usd
        if not budget or self.halted is not None:
            return self.halted
        now = self.clock()
        if self.estimated_at is None or now - self.estimated_at >= max_age:
            spent = self.estimate(now)
            # what the running tasks bill until the next check could have stopped them, their
            # stop timeout included (a cap, not a signal after the fact; a thousand 1-vCPU tasks
            # bill about 0.07 USD in 5 s): from this estimate's own figure, not spent_usd, which
            # launches meanwhile add to (a launch seen by the second estimate only is counted
            # twice for an instant: early, never late)
            coming = max(0.0, self.estimate(now + self.limits.check_seconds + self.limits.stop_seconds) - spent)
            with self._cond:
                self.spent_usd, self.coming_usd, self.estimated_at = spent, coming, now
        if self.spent_usd + self.coming_usd + self.pending_usd >= budget:
            with self._cond:
                if self.halted is None:
                    self.halted = BudgetExceeded(budget, self.spent_usd, now, self.pending_usd, self.coming_usd)
                    log.warning("run %s: %s", self.run_id, self.halted.message())
                self._cond.notify_all()
        return self.halted

    def _watch(self) -> None:
        """Start the watcher thread (once) when the run has a budget."""
        if not self.limits.max_cost_usd or self._watcher is not None:
            return
        with self._cond:
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch_loop, name=f"budget-{self.run_id}", daemon=True)
                self._watcher.start()

    def _watch_loop(self) -> None:
        while True:
            with self._cond:
                if self.closed or self.halted is not None:
                    return
            try:
                if self.check_budget() is not None:
                    return
            except Exception:  # an estimate that fails is logged; the next one may work
                log.exception("run %s: could not estimate the run's cost", self.run_id)
            with self._cond:
                self._cond.wait_for(lambda: self.closed, timeout=self.limits.check_seconds)

    def halted_error(self) -> str | None:
        """Why a running task of the run must stop now (the budget is spent), else None."""
        halted = self.halted
        return halted.message() if halted is not None else None

    def close(self) -> None:
        """The run is over: waiting tasks are refused, the watcher ends."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


# -- the gates of this process, one per run --------------------------------------------------------

_GATES: dict[str, Gate] = {}
_OVERHEAD: dict[str, list[attempts.Attempt]] = {}
_LOCK = threading.Lock()


def run_estimate(run_id: str, prices: Prices) -> Callable[[float], float]:
    """The run's estimated cost at a moment: its recorded attempts (running ones up to then, and
    launched ones at least their minimum: ``committed``) and its overhead rows (the driver),
    priced as cost.json prices them."""

    # (miniwdl run on its own records its attempts under no pipeline run id: "")
    recorded_as = "" if run_id == STANDALONE else run_id

    def estimate(now: float) -> float:
        rows = overhead(run_id) + attempts.LOG.snapshot(run=recorded_as)
        return float(estimate_cost(rows, prices, now=now, committed=True)["total_usd"])

    return estimate


def gate_for(run_id: str, limits: RunLimits, prices: Prices) -> Gate:
    """Run ``run_id``'s gate, made on first use with these limits (later callers share it)."""
    with _LOCK:
        found = _GATES.get(run_id)
        if found is None:
            found = _GATES[run_id] = Gate(run_id, limits, run_estimate(run_id, prices))
            if limits.any:
                log.info("run %s limits: %s", run_id, limits)
        return found


def find(run_id: str) -> Gate | None:
    with _LOCK:
        return _GATES.get(run_id)


def add_overhead(run_id: str, row: attempts.Attempt) -> None:
    """Count ``row`` (the driver's own task, still running: ``stopped`` None) in the run's cost."""
    with _LOCK:
        _OVERHEAD.setdefault(run_id, []).append(row)


def overhead(run_id: str) -> list[attempts.Attempt]:
    with _LOCK:
        return list(_OVERHEAD.get(run_id, []))


def end_run(run_id: str) -> Gate | None:
    """The run's tasks are over: close its gate and forget it; the gate (None: there was none)."""
    with _LOCK:
        gate = _GATES.pop(run_id, None)
        _OVERHEAD.pop(run_id, None)
    if gate is not None:
        gate.close()
    return gate
