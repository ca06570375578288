"""A run's gate (limits.py): its concurrent tasks and vCPUs, turns given back, waits that end when
the run stops, and the budget against an estimate of the run's cost (fake attempts, a fake clock)."""

import os
import threading

import pytest

from miniwdl_fargate import attempts, config, driver, limits
from miniwdl_fargate.limits import LaunchCancelled
from miniwdl_fargate.report.cost import Prices
from tests.waiting import wait_for


def gate(estimate=lambda now: 0.0, clock=None, **values):
    return limits.Gate("r", limits.RunLimits(**values), estimate, **({"clock": clock} if clock else {}))


class Waiting:
    """``gate.take`` in a thread: its Turn or what it raised, once it returns."""

    def __init__(self, g, vcpus=1.0, cancelled=None):
        self.turn = self.error = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(g, vcpus, cancelled), daemon=True)
        self.thread.start()

    def _run(self, g, vcpus, cancelled):
        try:
            self.turn = g.take(vcpus, cancelled, who="task call-x")
        except BaseException as exn:  # noqa: BLE001 (the test looks at it)
            self.error = exn
        self.done.set()


def queued(g, n):
    wait_for(lambda: len(g._queue) == n, 5, what=f"{n} waiting")


def test_at_most_max_concurrent_tasks_hold_a_turn_and_a_turn_given_back_lets_the_next_in():
    g = gate(max_concurrent_tasks=2)
    first, second = g.take(1), g.take(1)
    third = Waiting(g)
    queued(g, 1)
    assert g.running == 2 and not third.done.is_set()
    g.give_back(first)
    wait_for(third.done.is_set, 5, what="the third task's turn")
    assert third.error is None and g.running == 2 and g.most_running == 2
    g.give_back(first)  # (once only)
    assert g.running == 2
    g.give_back(second), g.give_back(third.turn)
    assert g.running == 0 and g.vcpus == 0


def test_vcpus_are_counted_and_the_first_in_line_goes_first():
    g = gate(max_vcpus=4)
    held = g.take(2)
    big = Waiting(g, 4)  # must wait for all 4
    queued(g, 1)
    small = Waiting(g, 1)  # would fit now, but the big one came first
    queued(g, 2)
    assert g.vcpus == 2 and not big.done.is_set() and not small.done.is_set()
    g.give_back(held)
    wait_for(big.done.is_set, 5, what="the big task's turn")
    assert g.vcpus == 4 and not small.done.is_set()
    g.give_back(big.turn)
    wait_for(small.done.is_set, 5, what="the small task's turn")
    assert g.vcpus == 1 and g.most_vcpus == 4


def test_a_task_bigger_than_max_vcpus_fails_at_once_naming_the_limit():
    g = gate(max_vcpus=2)
    with pytest.raises(limits.TooBig) as failed:
        g.take(4, who="task call-big")
    assert str(failed.value).startswith(
        "task call-big needs 4 vCPU, more than the run's max_vcpus of 2 (options.max_vcpus or the stack's MaxRunVCpus)"
    )
    assert g.running == 0 and not g._queue


def test_a_waiting_task_stops_waiting_when_the_run_stops():
    g = gate(max_concurrent_tasks=1)
    g.take(1)
    stop = threading.Event()
    waiting = Waiting(g, cancelled=stop.is_set)
    queued(g, 1)
    stop.set()  # (miniwdl's terminating(): a SIGTERM, a cancel, a failed sibling)
    wait_for(waiting.done.is_set, 5, what="the wait to end")
    assert isinstance(waiting.error, LaunchCancelled)
    assert not g._queue and g.running == 1


def test_closing_the_gate_refuses_the_waiting_tasks():
    g = gate(max_concurrent_tasks=1)
    g.take(1)
    waiting = Waiting(g)
    queued(g, 1)
    g.close()
    wait_for(waiting.done.is_set, 5, what="the wait to end")
    assert isinstance(waiting.error, limits.LaunchRefused)
    assert "the run is over" in str(waiting.error)


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def running_attempt(run="r", launched=1000.0, cpu=1024, memory=2048, capacity="FARGATE"):
    return attempts.Attempt(call="call-a", attempt=1, run=run, cpu=cpu, memory=memory, capacity=capacity,
                            queued=launched, launched=launched, running=launched, billing_start=launched)


PRICES = Prices.parse('{"FARGATE": {"vcpu_hour": 3.6, "gb_hour": 0}, "public_ipv4_hour": 0, "minimum_seconds": 1}')


def test_the_estimate_prices_running_attempts_up_to_now_and_the_overhead(monkeypatch):
    log = attempts.AttemptLog()
    monkeypatch.setattr(attempts, "LOG", log)
    log.begin(**vars(running_attempt(run="r")))
    log.begin(**vars(running_attempt(run="other")))  # not this run's
    limits.add_overhead("r", running_attempt(run="r", cpu=2048))  # the driver: 2 vCPU
    try:
        estimate = limits.run_estimate("r", PRICES)
        # 1 + 2 vCPU at 3.6 USD an hour (0.001 a second) for 10 s
        assert estimate(1010.0) == pytest.approx(0.03)
    finally:
        limits.end_run("r")
    assert limits.overhead("r") == []


def test_a_standalone_runs_estimate_prices_its_attempts(monkeypatch):
    """miniwdl run on its own (no pipeline run id) records its attempts under run "", while its
    gate is the STANDALONE one: its estimate found none, so [aws_fargate] max_cost_usd never
    stopped anything outside the pipeline."""
    log = attempts.AttemptLog()
    monkeypatch.setattr(attempts, "LOG", log)
    log.begin(**vars(running_attempt(run="")))
    try:
        assert limits.run_estimate(limits.STANDALONE, PRICES)(1010.0) == pytest.approx(0.01)
    finally:
        limits.end_run(limits.STANDALONE)


def test_a_launch_is_refused_once_the_cost_so_far_reaches_the_budget():
    clock = Clock()
    spent = {"usd": 0.5}
    g = gate(lambda now: spent["usd"], clock, max_cost_usd=1.0)
    turn = g.take(1)
    g.give_back(turn)
    spent["usd"] = 1.0
    clock.now += limits.LAUNCH_ESTIMATE_AGE  # (a launch reuses an estimate younger than this)
    with pytest.raises(limits.LaunchRefused) as refused:
        g.take(1, who="task call-b")
    assert str(refused.value).startswith(
        "task call-b not launched: the run reached its budget: it had spent about 1.0000 USD of the run's budget 1 USD"
    )
    assert g.running == 0
    assert g.halted == limits.BudgetExceeded(1.0, 1.0, clock.now)
    assert "the run reached its budget" in g.halted_error()
    g.close()


def test_the_watcher_halts_the_run_while_tasks_run_and_wakes_the_waiting():
    clock = Clock()
    spent = {"usd": 0.0}
    g = gate(lambda now: spent["usd"], clock, max_cost_usd=2.0, max_concurrent_tasks=1, check_seconds=0.05)
    g.take(1)
    waiting = Waiting(g)
    queued(g, 1)
    assert g.halted_error() is None
    spent["usd"] = 2.5  # the running task costs more as time goes
    wait_for(lambda: g.halted is not None, 5, what="the watcher to see the budget spent")
    assert g.halted.spent_usd == 2.5 and g.halted.limit_usd == 2.0
    wait_for(waiting.done.is_set, 5, what="the waiting task to be refused")
    assert isinstance(waiting.error, limits.LaunchRefused)
    g.close()


def test_no_budget_no_watcher_and_no_estimate():
    def never(now):
        raise AssertionError("estimated without a budget")

    g = gate(never, max_concurrent_tasks=3)
    g.give_back(g.take(1))
    assert g._watcher is None and g.check_budget() is None


def test_gates_are_one_per_run_until_the_run_ends():
    made = limits.gate_for("run-a", limits.RunLimits(max_vcpus=4), PRICES)
    assert limits.gate_for("run-a", limits.RunLimits(max_vcpus=8), PRICES) is made
    assert limits.find("run-a") is made
    assert limits.end_run("run-a") is made and made.closed
    assert limits.find("run-a") is None and limits.end_run("run-a") is None


# -- the driver: the run's options over the stack's defaults, and the end of a run out of budget ----


def test_the_runs_options_override_the_stacks_limits_for_that_run_only(monkeypatch, tmp_path):
    # (as the driver does it, several runs in one process: set_up keeps the stack's defaults and
    # takes their variables out; each run's limits go in its own configuration file, over the
    # operator's and the bundle's, which the backend reads as every other setting)
    monkeypatch.setattr(driver, "_STACK_LIMITS", {})
    operator = tmp_path / "operator.cfg"
    operator.write_text("[aws_fargate]\nmax_concurrent_tasks = 7\nmax_vcpus = 5\n")
    monkeypatch.setattr(os, "environ", {
        **{k: v for k, v in os.environ.items() if not k.startswith("MINIWDL__AWS_FARGATE__MAX_")},
        "MINIWDL__AWS_FARGATE__MAX_COST_USD": "25",  # the stack's MaxRunCostUsd
        "MINIWDL__AWS_FARGATE__MAX_CONCURRENT_TASKS": "0",  # its MaxRunConcurrentTasks (none: MaxRunVCpus unset)
        "MINIWDL_CFG": str(operator),
    })
    monkeypatch.chdir(tmp_path)  # (set_up goes into each run's folder)
    stop = {"stop_seconds": float(config.option(config.loader(), "stop_timeout"))}

    def limits_of(run_id, options, bundle_cfg=""):
        run = driver.DriverRun(run_id, "s3://b/w.wdl", "s3://b/i.json", f"s3://b/results/{run_id}/", str(tmp_path / run_id), options=options)
        monkeypatch.setattr(run, "tags", lambda: {})
        bundle = tmp_path / f"{run_id}-bundle"
        bundle.mkdir()
        if bundle_cfg:
            (bundle / "miniwdl.cfg").write_text(bundle_cfg)
        driver.set_up(run)
        assert not [k for k in os.environ if k.startswith("MINIWDL__AWS_FARGATE__MAX_")]
        cfg = driver.run_cfg(run.workdir, "", str(bundle), options, own=driver.run_own_settings(run))
        return config.run_limits(config.loader(cfg))

    # the run's options over the stack's defaults; where neither says, the operator's file (max_vcpus)
    assert limits_of("r-1", {"max_cost_usd": 2.5, "max_vcpus": 8}) == limits.RunLimits(
        max_concurrent_tasks=0, max_vcpus=8, max_cost_usd=2.5, **stop)
    # the next run of this process, its variables gone: the stack's defaults still hold
    assert limits_of("r-2", {"max_concurrent_tasks": 3}) == limits.RunLimits(
        max_concurrent_tasks=3, max_vcpus=5, max_cost_usd=25, **stop)
    # a bundle's miniwdl.cfg is over the operator's file, under the run's options and the stack's defaults
    assert limits_of("r-3", {"max_cost_usd": 123456.7}, "[aws_fargate]\nmax_vcpus = 16\nmax_cost_usd = 1\nmax_concurrent_tasks = 2\n") == (
        limits.RunLimits(max_concurrent_tasks=0, max_vcpus=16, max_cost_usd=123456.7, **stop))


@pytest.mark.parametrize(("options", "source"), [({"max_cost_usd": 0.5}, "options.max_cost_usd"), ({}, "the stack's MaxRunCostUsd")])
def test_a_run_out_of_budget_ends_failed_saying_what_it_spent_of_which_budget(options, source):
    run = driver.DriverRun("r-1", "s3://b/w.wdl", "s3://b/i.json", "s3://b/results/r-1/", "/tmp/r-1", options=options)
    outcome = driver.budget_exceeded(run, limits.BudgetExceeded(0.5, 0.5123456789, 1000.0))
    assert (outcome.status, outcome.exit_code) == ("FAILED", 1)
    assert outcome.stop_tasks  # anything of the run still running is stopped
    assert outcome.document == {
        "run_id": "r-1", "status": "FAILED", "error": "BudgetExceeded",
        "message": f"the run reached its budget: it had spent about 0.5123 USD of the run's budget 0.5 USD ({source}), "
        "as the run report estimates cost (list prices, not the bill); no more tasks were launched and every running "
        "task of the run was stopped",
        "limit": "max_cost_usd", "max_cost_usd": 0.5, "spent_usd": 0.512346, "limit_source": source,
    }


def test_tasks_taking_their_turns_at_once_count_their_minimum_before_any_bills():
    """A scatter's tasks all take their turns within a second, long before any image pull is
    seen: each counts the least it will cost (its one-minute minimum) from its turn on, so the
    launches stop once those alone would reach the budget (500 big tasks passed a budget of 1 USD
    while the estimate still said 0)."""
    clock = Clock()
    g = gate(lambda now: 0.0, clock, max_cost_usd=1.0)  # (no attempt billing yet: the estimate says 0)
    for _ in range(3):
        g.take(1, committed_usd=0.3)
    assert g.pending_usd == pytest.approx(0.9) and g.halted is None
    with pytest.raises(limits.LaunchRefused, match=r"the run reached its budget: it had spent about 0.0000 USD, and its next "
                       r"launches would have cost at least 1.2000 USD more \(a task bills a minute at least\) of the run's budget 1 USD"):
        g.take(1, who="task call-d", committed_usd=0.3)
    assert g.running == 3
    g.close()


def test_a_launched_task_moves_from_pending_to_spent_and_one_never_launched_costs_nothing():
    clock = Clock()
    estimated, calls = {"usd": 0.0}, []

    def estimate(now):
        calls.append(now)
        return estimated["usd"]

    g = gate(estimate, clock, max_cost_usd=10.0)
    g._watcher = threading.Thread()  # (no watcher re-estimating meanwhile: the estimates are the launches' own)
    launched, unlaunched = g.take(1, committed_usd=2.0), g.take(1, committed_usd=3.0)
    # (the second launch reused the first's estimate: now, and a check ahead, what the running
    # tasks will have billed by then)
    assert calls == [clock.now, clock.now + g.limits.check_seconds]
    g.launched(launched)
    # the estimate in hand (too young to redo) gets it at once; the next one counts it from its launch
    assert (g.pending_usd, g.spent_usd) == (pytest.approx(3.0), pytest.approx(2.0))
    estimated["usd"] = 2.0
    g.give_back(unlaunched)
    assert g.pending_usd == pytest.approx(0.0)
    g.give_back(launched)  # (its cost is the estimate's from now on, stopped or not)
    assert g.pending_usd == pytest.approx(0.0) and g.spent_usd == pytest.approx(2.0)
    g.close()


def test_the_budgets_estimate_counts_a_launched_task_from_its_launch_until_its_pull_is_seen():
    from miniwdl_fargate.report import cost

    launched = attempts.Attempt("call-a", 1, cpu=1024, memory=2048, capacity="FARGATE", launched=1000.0)
    assert cost.billed_seconds(launched, 60, now=1001.0) == 0  # (the report: no pull seen, nothing billed yet)
    assert cost.billed_seconds(launched, 60, now=1001.0, committed=True) == 60  # (the budget: its minimum at least)
    stopped = attempts.Attempt("call-a", 1, cpu=1024, memory=2048, capacity="FARGATE", launched=1000.0, stopped=1002.0)
    assert cost.billed_seconds(stopped, 60, now=1003.0, committed=True) == 0  # (stopped before its pull: never billed)
    minimum = float(PRICES.table.get("minimum_seconds", 60))
    ran_its_minimum = attempts.Attempt("call-a", 1, cpu=1024, memory=2048, capacity="FARGATE", billing_start=10.0, running=10.0,
                                       launched=10.0, stopped=10.0 + minimum)
    least = cost.minimum_usd(launched, PRICES)
    assert least > 0 and least == pytest.approx(cost.attempt_cost(ran_its_minimum, PRICES, minimum).usd)



def test_the_budget_halts_before_the_running_tasks_bill_past_it_by_the_next_check():
    """The watcher looks every check_seconds: halting only once the estimate had reached the
    budget let a thousand running tasks bill on past it until the next look. It halts when what
    they will have billed by then would reach it, and says so."""
    clock = Clock()
    g = gate(lambda now: 0.9 + 0.01 * (now - 1000.0), clock, max_cost_usd=1.0, check_seconds=15)
    g._watcher = threading.Thread()
    assert g.check_budget() is not None  # (0.90 now, 1.05 by the next check)
    assert g.halted.spent_usd == pytest.approx(0.9) and g.halted.coming_usd == pytest.approx(0.15)
    assert "its running tasks would have billed about 0.1500 USD more by the time the next check had stopped them" in g.halted.message()
    g.close()
    g = gate(lambda now: 0.9 + 0.01 * (now - 1000.0), Clock(), max_cost_usd=1.0, check_seconds=5)
    g._watcher = threading.Thread()
    assert g.check_budget() is None  # (0.95 by the next check: within it)
    g.close()


def test_the_budget_keeps_room_for_what_stopped_tasks_bill_while_they_exit():
    """A stopped task bills until its container exits, up to its stop timeout (SIGKILL then):
    halting once the next check's figure reached the budget let a run's running tasks bill on
    past it while they stopped. The look-ahead counts their stop timeout too."""
    g = gate(lambda now: 0.9 + 0.01 * (now - 1000.0), Clock(), max_cost_usd=1.0, check_seconds=5, stop_seconds=10)
    g._watcher = threading.Thread()
    assert g.check_budget() is not None  # (0.95 by the next check, 1.05 once they have stopped)
    assert g.halted.coming_usd == pytest.approx(0.15)
    g.close()
