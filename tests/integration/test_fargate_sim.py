"""`miniwdl run` with the aws_fargate backend against the simulated ECS endpoint (bench/ecs_sim.py):
Spot interruptions and fallback, failed starts, cancellation (a failed sibling, SIGTERM)."""

import signal

import pytest
from sim_support import finish, start_miniwdl

from tests.waiting import wait_for


def capacities(sim):
    return [
        (r.get("capacityProviderStrategy") or [{"capacityProvider": r.get("launchType")}])[0]["capacityProvider"]
        for r in sim.run_task_requests
    ]


ONE_TASK = """
    version 1.1
    workflow w { call t output { String out = t.out } }
    task t {
      command <<< echo hi >>>
      output { String out = "done" }
      runtime { docker: "ubuntu:22.04" preemptible: %d }
    }
"""


def test_spot_interruption_is_retried_then_the_task_runs_on_demand(sim, tmp_path):
    sim.faults.script.extend(["spot_interruption", "ok"])
    code, out = finish(start_miniwdl(sim, tmp_path, ONE_TASK % 1))
    assert code == 0, out
    # attempt 1 on Spot (interrupted, exit 143 after its SIGTERM warning: not the task's fault);
    # the budget of one interruption spent, attempt 2 runs on on-demand FARGATE
    assert capacities(sim) == ["FARGATE_SPOT", "FARGATE"]
    assert "interrupted task will be retried" in out
    assert "Fargate Spot reclaimed the task" in out


def test_spot_budget_covers_several_interruptions(sim, tmp_path):
    sim.faults.script.extend(["spot_interruption", "spot_interruption", "ok"])
    code, out = finish(start_miniwdl(sim, tmp_path, ONE_TASK % 3))
    assert code == 0, out
    assert capacities(sim) == ["FARGATE_SPOT", "FARGATE_SPOT", "FARGATE_SPOT"]


def test_an_interruption_without_a_budget_fails_the_task(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__START_RETRIES", "0")
    sim.faults.script.extend(["fail_to_start"])
    code, out = finish(start_miniwdl(sim, tmp_path, ONE_TASK % 0))
    assert code != 0
    assert "ECS task failed to start: ResourceInitializationError" in out
    assert capacities(sim) == ["FARGATE"]


def test_a_task_that_failed_to_start_is_retried_within_the_budget(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__START_RETRIES", "0")
    sim.faults.script.extend(["fail_to_start", "ok"])
    code, out = finish(start_miniwdl(sim, tmp_path, ONE_TASK % 1))
    assert code == 0, out
    assert len(sim.run_task_requests) == 2


def test_a_task_that_failed_to_start_for_a_passing_reason_starts_again_without_spending_retries(sim, tmp_path, monkeypatch):
    """Its network interface not provisioned, no IP address free in the subnet while other runs'
    tasks hold them: its command never ran. A task with neither preemptible nor maxRetries failed
    at once (a 10,000-task run with it); it starts again after a backoff, start_retries times,
    and only then counts as interrupted."""
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__START_RETRY_DELAY", "0.05")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__START_RETRIES", "2")
    sim.faults.script.extend(["fail_to_start", "fail_to_start", "ok"])
    code, out = finish(start_miniwdl(sim, tmp_path, ONE_TASK % 0))
    assert code == 0, out
    assert len(sim.run_task_requests) == 3
    assert "ResourceInitializationError: failed to configure ENI (simulated): start retry 2 of 2" in out
    sim.faults.script.extend(["fail_to_start"] * 3)
    (tmp_path / "again").mkdir()
    code, out = finish(start_miniwdl(sim, tmp_path / "again", ONE_TASK % 0))
    assert code != 0
    assert "ECS task failed to start: ResourceInitializationError: failed to configure ENI (simulated) (after 3 tries, start_retries = 2)" in out


SCATTER_WITH_A_FAILURE = """
    version 1.1
    workflow w {
      scatter (i in range(3)) { call slow { input: i = i } }
      call breaks
      output { Array[Int] out = slow.out }
    }
    task slow {
      input { Int i }
      command <<< sleep 600 >>>
      output { Int out = i }
    }
    task breaks {
      command <<< exit 3 >>>
    }
"""


def slow_or_failing(req):
    (script,) = req["overrides"]["containerOverrides"][0]["command"]
    workdir = script.split("cd ", 1)[1].split(" ", 1)[0]
    if "call-breaks" in workdir:
        return {"exit_code": 3, "run_time": 1.0}
    return {"run_time": 600}


def test_a_failed_sibling_stops_every_running_task(sim, tmp_path):
    sim.behaviour = slow_or_failing
    code, out = finish(start_miniwdl(sim, tmp_path, SCATTER_WITH_A_FAILURE))
    assert code != 0
    assert "call-breaks" in out
    slow = [t for t in sim.tasks.values() if t.run_time == 600]
    assert len(slow) == 3
    assert all(t.stop_requested is not None for t in slow)
    assert sim.count("StopTask", "ok") == 3  # once each
    wait_for(lambda: sim.running() == 0, 10, what="no running task")  # ECS takes a moment to reach STOPPED


def test_sigterm_to_the_driver_stops_every_running_task(sim, tmp_path):
    sim.run_time = (600, 600)
    proc = start_miniwdl(sim, tmp_path, SCATTER_WITH_A_FAILURE.replace("call breaks", ""))
    wait_for(lambda: sim.running() >= 3, 30, what="3 running tasks")
    assert sim.running() == 3
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc)
    assert code != 0
    assert sim.count("StopTask", "ok") == 3
    wait_for(lambda: sim.running() == 0, 10, what="no running task")


FOUR_IN_A_ROW = """
    version 1.1
    workflow w {
      call t as a { input: i = 1 }
      call t as b { input: i = a.out }
      call t as c { input: i = b.out }
      call t as d { input: i = c.out }
      output { Int out = d.out }
    }
    task t {
      input { Int i }
      command <<< echo ~{i} >>>
      output { Int out = i + 1 }
      runtime { docker: "ubuntu:22.04" maxRetries: 2 }
    }
"""


def test_a_run_launches_at_most_max_tasks_per_run_and_fails_naming_the_limit(sim, tmp_path, monkeypatch):
    """The stack's MaxTasksPerRun reaches the driver as MINIWDL__AWS_FARGATE__MAX_TASKS_PER_RUN;
    the launch past it (and its retries) fails the run and is never sent to ECS."""
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__MAX_TASKS_PER_RUN", "3")
    code, out = finish(start_miniwdl(sim, tmp_path, FOUR_IN_A_ROW))
    assert code != 0
    assert ("task call-d not launched: the run has launched its maximum of 3 ECS tasks (retries included); "
            "the limit is the stack parameter MaxTasksPerRun") in out
    assert len(sim.run_task_requests) == 3


# -- the run's limits (limits.py): concurrent tasks, vCPUs, budget ------------------------------------


def most_at_once(sim, weight=lambda task: 1):
    """The most of ``weight`` (1 a task, or its vCPUs) the simulated ECS had running at once: from
    each task's creation (RunTask) to its stop."""
    events = sorted(
        [(t.created, weight(t)) for t in sim.tasks.values()] + [(t.stopped_at, -weight(t)) for t in sim.tasks.values()],
        key=lambda e: (e[0], e[1]),  # (a stop before a start at the same moment)
    )
    most = now = 0
    for _when, change in events:
        now += change
        most = max(most, now)
    return most


def vcpus(task):
    return int(task.overrides["cpu"]) / 1024


SCATTER = """
    version 1.1
    workflow w {
      scatter (i in range(%d)) { call t { input: i = i } }
      output { Array[Int] out = t.out }
    }
    task t {
      input { Int i }
      command <<< echo ~{i} >>>
      output { Int out = i }
      runtime { docker: "ubuntu:22.04" cpu: %s }
    }
"""


def test_a_run_never_has_more_than_max_concurrent_tasks_running(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__MAX_CONCURRENT_TASKS", "2")
    code, out = finish(start_miniwdl(sim, tmp_path, SCATTER % (10, "1")))
    assert code == 0, out
    assert len(sim.tasks) == 10
    assert most_at_once(sim) == 2  # (never more; and the limit, not one at a time)


MIXED_SIZES = """
    version 1.1
    workflow w {
      scatter (i in range(4)) { call t as two { input: i = i, cpu = 2 } }
      scatter (i in range(4)) { call t as one { input: i = i, cpu = 1 } }
      output { Array[Int] out = flatten([two.out, one.out]) }
    }
    task t {
      input { Int i  Int cpu }
      command <<< echo ~{i} >>>
      output { Int out = i }
      runtime { docker: "ubuntu:22.04" cpu: cpu }
    }
"""


def test_a_runs_running_tasks_never_hold_more_than_max_vcpus(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__MAX_VCPUS", "3")
    code, out = finish(start_miniwdl(sim, tmp_path, MIXED_SIZES))
    assert code == 0, out
    assert sorted(vcpus(t) for t in sim.tasks.values()) == [1] * 4 + [2] * 4
    assert most_at_once(sim, vcpus) == 3


def test_a_run_that_reaches_its_budget_stops_its_tasks_and_launches_no_more(sim, tmp_path, monkeypatch):
    """Three tasks that would run ten minutes, at 0.01 USD a vCPU-second (36 USD a vCPU-hour), a
    fourth waiting for a turn; a budget of 0.05 USD runs out within seconds."""
    sim.run_time = (600, 600)
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__MAX_COST_USD", "0.05")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__MAX_CONCURRENT_TASKS", "3")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__BUDGET_CHECK_SECONDS", "0.2")
    monkeypatch.setenv(
        "MINIWDL__AWS_FARGATE__PRICES", '{"FARGATE": {"vcpu_hour": 36, "gb_hour": 0}, "public_ipv4_hour": 0, "minimum_seconds": 1}'
    )
    code, out = finish(start_miniwdl(sim, tmp_path, SCATTER % (4, "1")))
    assert code != 0
    assert "the run reached its budget: it had spent about" in out
    assert "of the run's budget 0.05 USD ([aws_fargate] max_cost_usd; a pipeline run's options.max_cost_usd or its stack's MaxRunCostUsd)" in out
    assert len(sim.tasks) == 3  # the fourth never launched
    assert all(t.stop_requested is not None for t in sim.tasks.values())
    wait_for(lambda: sim.running() == 0, 10, what="no running task")


def test_sigterm_ends_the_wait_of_tasks_waiting_for_their_turn(sim, tmp_path, monkeypatch):
    """Two of four tasks run (max_concurrent_tasks 2), two wait for a turn; a SIGTERM stops the
    running ones and ends the others' wait: nothing more is launched and miniwdl exits."""
    sim.run_time = (600, 600)
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__MAX_CONCURRENT_TASKS", "2")
    proc = start_miniwdl(sim, tmp_path, SCATTER % (4, "1"))
    wait_for(lambda: sim.running() >= 2, 30, what="2 running tasks")
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc)
    assert code != 0
    assert len(sim.tasks) == 2 and sim.count("StopTask", "ok") == 2
    wait_for(lambda: sim.running() == 0, 10, what="no running task")


@pytest.mark.parametrize("where", ["elsewhere", "a link to it"])
def test_a_run_directory_outside_the_efs_mountpoint_launches_nothing(sim, tmp_path, where):
    """Its tasks would mount EFS at efs_mountpoint and fail to enter their directory, billing for
    nothing: refused before RunTask, naming the option. A link to the run's folder on this
    machine is no link in the container: the paths count as written."""
    mountpoint = tmp_path.parent / f"{tmp_path.name}-link"
    if where == "elsewhere":
        mountpoint = tmp_path / "elsewhere"
    else:
        mountpoint.symlink_to(tmp_path)
    settings = {"MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT": str(mountpoint)}
    code, out = finish(start_miniwdl(sim, tmp_path, ONE_TASK % 0, settings=settings))
    assert code != 0
    assert "is not under [aws_fargate] efs_mountpoint" in out and str(mountpoint) in out
    assert sim.run_task_requests == []
