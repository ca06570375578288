import threading

import pytest

from miniwdl_fargate.backend.poller import HEADROOM, MAX_DESCRIBE, TaskPoller
from tests.waiting import wait_for


class FakeECS:
    def __init__(self):
        self.calls = []
        self.stopped = set()
        self.hidden = set()  # ARNs ECS does not know (yet)
        self.lock = threading.Lock()

    def describe(self, arns):
        with self.lock:
            self.calls.append(list(arns))
        return {
            "tasks": [
                {"taskArn": a, "lastStatus": "STOPPED" if a in self.stopped else "RUNNING", "containers": [{"exitCode": 0}]}
                for a in arns
                if not a.startswith("gone") and a not in self.hidden
            ],
            "failures": [{"arn": a, "reason": "MISSING"} for a in arns if a.startswith("gone") or a in self.hidden],
        }


def test_one_describe_call_per_hundred_tasks_per_pass():
    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=3600, background=False)
    watches = [poller.watch(f"arn:{i}") for i in range(250)]
    poller.poll_once()
    assert [len(c) for c in ecs.calls] == [MAX_DESCRIBE, MAX_DESCRIBE, 50]
    assert (poller.calls, poller.described) == (3, 250)  # (what the driver logs at the run's end)
    assert all(w.description["lastStatus"] == "RUNNING" for w in watches)


def test_stopped_tasks_are_delivered_and_leave_the_watch_list():
    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=3600, background=False)
    a, b, gone = poller.watch("a"), poller.watch("b"), poller.watch("gone-1")
    ecs.stopped.add("a")
    poller.poll_once()
    assert a.stopped and not b.stopped
    assert gone.missing and not gone.stopped
    ecs.calls.clear()
    poller.poll_once()
    assert ecs.calls == [["b", "gone-1"]]  # a MISSING task stays watched: ECS may not know it yet


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_missing_task_is_unknown_since_launch_until_ecs_knows_it():
    ecs, clock = FakeECS(), Clock()
    poller = TaskPoller(ecs.describe, interval=3600, background=False, clock=clock)
    ecs.hidden.add("new")
    watch = poller.watch("new")  # launched at 100
    clock.now = 103.0
    poller.poll_once()
    assert watch.missing and watch.unknown_for() == 3.0  # since launch: it was never seen
    clock.now = 110.0
    assert watch.unknown_for() == 10.0
    ecs.hidden.clear()  # ECS knows it now
    poller.poll_once()
    assert not watch.missing and watch.unknown_for() == 0.0
    assert watch.description["lastStatus"] == "RUNNING"


def test_a_task_seen_then_missing_is_unknown_since_it_went_missing():
    ecs, clock = FakeECS(), Clock()
    poller = TaskPoller(ecs.describe, interval=3600, background=False, clock=clock)
    watch = poller.watch("x")
    poller.poll_once()
    assert watch.description["lastStatus"] == "RUNNING"
    clock.now = 200.0
    watch._update(None, missing=True)
    clock.now = 205.0
    watch._update(None, missing=True)
    assert watch.unknown_for() == 5.0
    assert watch.description["lastStatus"] == "RUNNING"  # what was known stays


def test_waiter_wakes_on_update():
    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=0.01)
    w = poller.watch("x")
    ecs.stopped.add("x")
    seen = 0
    for _ in range(200):
        seen = w.wait(0.05, seen)
        if w.stopped:
            break
    assert w.stopped


def test_a_wake_makes_the_next_pass_now_not_at_the_end_of_the_interval():
    """With an interval of an hour, the task's end is seen only because of the wake."""
    from miniwdl_fargate.backend import poller as poller_module

    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=3600)
    w = poller.watch("x")
    wait_for(lambda: len(ecs.calls) >= 1, what="the first pass")
    ecs.stopped.add("x")
    poller_module.wake_all()
    wait_for(lambda: w.stopped, what="the pass the wake asked for")
    assert len(ecs.calls) == 2


def test_a_wake_that_names_a_task_describes_that_task_alone_and_one_naming_none_every_task():
    """Local mode's ECS runner names the task that stopped: its pass describes it alone (the
    others are unchanged, and a scatter's every end would describe them all again)."""
    from miniwdl_fargate.backend import poller as poller_module

    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=3600, background=False)
    watches = {a: poller.watch(a) for a in ("a", "b", "c")}
    poller.background = True
    poller.watch("a")  # (the thread starts with all three watched)
    wait_for(lambda: len(ecs.calls) >= 1, what="the first pass")
    assert sorted(ecs.calls[0]) == ["a", "b", "c"]
    ecs.stopped.add("b")
    poller_module.wake_all(["b", "not-watched"])
    wait_for(lambda: watches["b"].stopped, what="the pass the wake asked for")
    assert ecs.calls[1] == ["b"]
    assert poller.watched() == 2
    ecs.stopped.add("c")
    poller_module.wake_all()  # (naming none: every task watched)
    wait_for(lambda: watches["c"].stopped, what="the pass of every task")
    assert sorted(ecs.calls[2]) == ["a", "c"]
    assert len(ecs.calls) == 3
    poller.forget("a")


def test_a_task_woken_for_before_it_is_watched_is_described_as_soon_as_it_is():
    """A short task can end before RunTask's answer reaches the driver: the wake that names it
    comes first, and watching the task then makes its pass at once, not an interval later."""
    from miniwdl_fargate.backend import poller as poller_module

    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=3600)
    first = poller.watch("first")
    wait_for(lambda: len(ecs.calls) >= 1, what="the first pass")
    ecs.stopped.add("quick")
    poller_module.wake_all(["quick"])  # (not watched yet: its RunTask's answer is on its way)
    quick = poller.watch("quick")
    wait_for(lambda: quick.stopped, what="the pass of the task woken for before it was watched")
    assert ecs.calls[1:] == [["quick"]] and not first.stopped
    # the names of tasks never watched are not kept without end
    poller.wake([f"never-{n}" for n in range(poller_module.EARLY_KEPT + 10)])
    assert len(poller._early) == poller_module.EARLY_KEPT and "never-0" not in poller._early
    poller.forget("first")


def test_a_task_woken_for_that_ecs_does_not_know_yet_is_asked_about_again_soon_a_few_times():
    """ECS is eventually consistent: the first DescribeTasks naming a task may answer MISSING. A
    wake said the task changed, so the poller asks again soon, not an interval later; a few times,
    then it leaves the task to the passes of every task."""
    from miniwdl_fargate.backend import poller as poller_module

    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=3600)
    first = poller.watch("first")
    wait_for(lambda: len(ecs.calls) >= 1, what="the first pass")
    quick = poller.watch("quick")
    ecs.stopped.add("quick")
    ecs.hidden.add("quick")  # (unknown to the first DescribeTasks that names it)
    described = ecs.describe

    def describe_once_hidden(arns):
        answer = described(arns)
        ecs.hidden.discard("quick")
        return answer

    poller._describe = describe_once_hidden
    poller.wake(["quick"])
    wait_for(lambda: quick.stopped, what="the task's end, asked about again")
    assert ecs.calls[1:] == [["quick"], ["quick"]] and not first.stopped
    # a task ECS never knows is asked about MISSING_RECHECKS times more, then left to the interval
    gone = poller.watch("gone-1")
    poller.wake(["gone-1"])
    wait_for(lambda: ecs.calls.count(["gone-1"]) == 1 + poller_module.MISSING_RECHECKS and not poller._rechecks,
             what="the rechecks")
    assert gone.missing and ecs.calls.count(["gone-1"]) == 1 + poller_module.MISSING_RECHECKS
    poller.forget("first")
    poller.forget("gone-1")


def test_a_task_woken_for_that_the_pass_of_every_task_finds_missing_is_asked_about_again_soon():
    """A wake for every task and one naming a task come together: the pass of every task answers
    for the named one too, and if ECS does not know it yet it is asked about again soon."""
    ecs = FakeECS()
    in_pass, release = threading.Event(), threading.Event()
    described = ecs.describe

    def describe(arns):
        if len(ecs.calls) == 0:  # (the first pass waits while both wakes come)
            in_pass.set()
            release.wait(10)
        answer = described(arns)
        if len(ecs.calls) == 2:
            ecs.hidden.discard("quick")  # (known from the second DescribeTasks that names it)
        return answer

    poller = TaskPoller(describe, interval=3600)
    first = poller.watch("first")
    in_pass.wait(10)
    quick = poller.watch("quick")
    ecs.stopped.add("quick")
    ecs.hidden.add("quick")
    poller.wake(["quick"])
    poller.wake()
    release.set()
    wait_for(lambda: quick.stopped, what="the task's end, asked about again")
    assert ecs.calls[0] == ["first"] and sorted(ecs.calls[1]) == ["first", "quick"] and ecs.calls[2:] == [["quick"]]
    assert not first.stopped
    poller.forget("first")


def test_wakes_that_name_tasks_do_not_put_off_the_pass_of_every_task():
    """A task no wake names (here "a") is still described at each interval, however many named
    wakes come in between: passes of every task keep coming while "b" is woken for without end."""
    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=0.2)
    watches = {x: poller.watch(x) for x in ("a", "b")}
    wait_for(lambda: len(poller.passes) >= 1, what="the first pass")
    done = threading.Event()

    def keep_waking():
        while not done.wait(0.01):
            poller.wake(["b"])

    waker = threading.Thread(target=keep_waking)
    waker.start()
    try:
        wait_for(lambda: ["b"] in ecs.calls, what="a pass of the named task")
        wait_for(lambda: len(poller.passes) >= 4, what="passes of every task among the named ones")
        ecs.stopped.add("a")  # (stops unannounced: seen by a pass of every task)
        wait_for(lambda: watches["a"].stopped, what="the unannounced end")
    finally:
        done.set()
        waker.join()
    # each call was a named pass (of "b") or a pass of every task (the first may have come
    # before "b" was watched)
    assert all(arns == ["b"] or "a" in arns for arns in ecs.calls)
    poller.forget("b")


def test_the_first_task_watched_after_the_list_emptied_is_asked_about_at_once():
    """The poller's thread ends when it watches nothing; the next task watched starts it again
    and is described at once, not when the last pass of every task would have had its next."""
    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=3600)
    ecs.stopped.update({"done", "later"})  # (each ended by its first pass)
    done = poller.watch("done")
    wait_for(lambda: done.stopped, what="the first task's end")
    wait_for(lambda: poller._thread is None, what="the thread's end")
    later = poller.watch("later")
    wait_for(lambda: later.stopped, what="the next task's first pass")


def test_a_named_pass_whose_describetasks_failed_asks_again_soon():
    ecs = FakeECS()
    described = ecs.describe
    failures = []

    def describe(arns):
        if arns == ["quick"] and not failures:
            failures.append(arns)
            raise RuntimeError("a transient error")
        return described(arns)

    poller = TaskPoller(describe, interval=3600)
    first = poller.watch("first")
    wait_for(lambda: len(ecs.calls) >= 1, what="the first pass")
    quick = poller.watch("quick")
    ecs.stopped.add("quick")
    poller.wake(["quick"])
    wait_for(lambda: quick.stopped, what="the task's end, asked about again after the failure")
    assert failures == [["quick"]] and ecs.calls[1:] == [["quick"]] and not first.stopped
    poller.forget("first")


def test_wake_all_reaches_every_live_poller_of_the_process():
    from miniwdl_fargate.backend import poller as poller_module

    pollers = [TaskPoller(FakeECS().describe, interval=3600, background=False) for _ in range(2)]
    assert set(pollers) <= set(poller_module._POLLERS)
    poller_module.wake_all()
    assert all(p._wake.is_set() for p in pollers)


def test_the_interval_is_the_floor_while_few_tasks_run():
    from miniwdl_fargate.backend.poller import pass_interval

    # 200 tasks: 2 calls a pass; at 5 calls/s (98% of it) that allows a pass every 0.41 s, the floor is 0.5
    assert pass_interval(0, budget=5, floor=0.5) == 0.5
    assert pass_interval(100, budget=5, floor=0.5) == 0.5
    assert pass_interval(200, budget=5, floor=0.5) == 0.5
    assert pass_interval(100, budget=5, floor=0.1) == pytest.approx(0.2 / HEADROOM)


def test_the_interval_keeps_describe_calls_within_the_budget_at_any_size():
    from miniwdl_fargate.backend.poller import calls_per_pass, pass_interval

    assert pass_interval(2000, budget=5, floor=0.5) == pytest.approx(4.0 / HEADROOM)
    assert pass_interval(10000, budget=5, floor=0.5) == pytest.approx(20.0 / HEADROOM)
    assert pass_interval(2001, budget=5, floor=0.5) == pytest.approx(4.2 / HEADROOM)  # 21 calls
    for watched in (1, 99, 100, 101, 250, 1999, 5000, 12345):
        calls_per_second = calls_per_pass(watched) / pass_interval(watched, budget=5, floor=0.5)
        assert calls_per_second <= 5 * HEADROOM + 1e-9
        # a minute of back-to-back passes holds at most budget x 60 calls, its both ends included
        assert calls_per_second * 60 + 1 <= 5 * 60


def test_throttles_stretch_the_interval_and_clean_passes_shrink_it_back():
    from miniwdl_fargate.backend.poller import MAX_SLOWDOWN, next_slowdown, pass_interval

    slowdown = 1.0
    for expected in (2, 4, 8, 8):
        slowdown = next_slowdown(slowdown, throttled=True)
        assert slowdown == expected
    assert slowdown == MAX_SLOWDOWN
    assert pass_interval(2000, budget=5, floor=0.5, slowdown=slowdown) == pytest.approx(32.0 / HEADROOM)
    shrinking = [slowdown]
    while shrinking[-1] > 1.0 and len(shrinking) < 200:
        shrinking.append(next_slowdown(shrinking[-1], throttled=False))
    assert shrinking == sorted(shrinking, reverse=True) and shrinking[-1] < 1.01 and len(shrinking) > 10
    assert next_slowdown(1.0, throttled=False) == 1.0


def test_a_bad_budget_is_refused_saying_what_is_wrong():
    import pytest

    from miniwdl_fargate.backend.poller import pass_interval

    with pytest.raises(ValueError, match="budget must be > 0"):
        pass_interval(10, budget=0, floor=0.5)
    with pytest.raises(ValueError, match="budget must be > 0"):
        TaskPoller(FakeECS().describe, interval=1, budget=-1)


def test_a_throttled_pass_slows_the_poller_and_a_clean_one_recovers():
    from botocore.exceptions import ClientError

    ecs = FakeECS()
    throttle = {"on": True}

    def describe(arns):
        if throttle["on"]:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "DescribeTasks")
        return ecs.describe(arns)

    poller = TaskPoller(describe, interval=0.5, background=False)
    for i in range(300):
        poller.watch(f"arn:{i}")
    assert poller.current_interval() == pytest.approx(0.6 / HEADROOM)  # 3 calls at 5/s
    poller.poll_once()
    assert poller.slowdown == 2.0 and poller.current_interval() == pytest.approx(1.2 / HEADROOM)
    throttle["on"] = False
    poller.poll_once()
    assert 1.0 < poller.slowdown < 2.0


def test_an_unchanged_description_wakes_nobody_and_a_change_does():
    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=3600, background=False)
    watch = poller.watch("x")
    poller.poll_once()
    seen = watch.wait(0, -1)
    poller.poll_once()  # still RUNNING, the same description
    assert watch.wait(0, seen) == seen
    ecs.stopped.add("x")
    poller.poll_once()
    assert watch.wait(0, seen) == seen + 1 and watch.stopped


def test_a_paced_pass_spreads_its_calls_one_budget_step_apart(monkeypatch):
    from miniwdl_fargate.backend import poller as poller_module

    naps = []
    monkeypatch.setattr(poller_module.time, "sleep", naps.append)
    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=3600, background=False, budget=0.001)  # a call per 1,000 s
    for i in range(250):
        poller.watch(f"arn:{i}")
    poller.poll_once(pace=True)
    assert [len(c) for c in ecs.calls] == [100, 100, 50]
    assert len(naps) == 2 and all(900 < nap <= 1000 / HEADROOM for nap in naps)
    naps.clear()
    poller.poll_once()  # unpaced (tests, the benchmark's simulations): no naps
    assert naps == []


def test_the_next_pass_waits_for_the_calls_of_the_last_one_even_if_tasks_stopped_meanwhile():
    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=0.5, background=False)
    for i in range(1100):
        poller.watch(f"arn:{i}")
    poller.poll_once()  # 11 calls
    for i in range(200):
        poller.forget(f"arn:{i}")  # (900 left: 9 calls)
    assert poller.current_interval() == pytest.approx(2.2 / HEADROOM)  # the 11 calls just made, at 5 a second
    poller.poll_once()
    assert poller.current_interval() == pytest.approx(1.8 / HEADROOM)
