"""Faults injected in local mode (local/faults.py) end each run in the right terminal state, with
nothing left running: throttled and capacity-starved launches, Spot interruptions, a driver killed
mid-run, duplicated events, Lambda failures."""

from pathlib import Path

import pytest

from miniwdl_fargate import aws, runs
from miniwdl_fargate import upload as local_run
from miniwdl_fargate.local.faults import Faults
from tests.local_ecs import tasks_of_run
from tests.waiting import run_end, wait_for

SCATTER = """
version 1.1
workflow faulty {
  input { Int n = 3  Int seconds = 1  Int spot = 0 }
  scatter (i in range(n)) { call work { input: i = i, seconds = seconds, spot = spot } }
  output { Array[Int] out = work.out }
}
task work {
  input { Int i  Int seconds  Int spot }
  command <<< sleep ~{seconds}; echo ~{i} >>>
  output { Int out = read_int(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" preemptible: spot }
}
"""


@pytest.fixture
def faults(stack):
    def inject(**spec):
        stack.runtime.faults = Faults(**spec)
        return stack.runtime.faults

    yield inject
    stack.runtime.faults = Faults()


@pytest.fixture
def run(stack, tmp_path):
    def go(name, inputs=None, source=SCATTER, timeout=240):
        wdl = tmp_path / f"{name}.wdl"
        wdl.write_text(source)
        bucket = stack.outputs["BucketName"]
        name, run_id = local_run.submit(bucket, wdl, inputs or {}, name=name)
        result = run_end(stack, name, run_id, timeout=timeout)
        # whatever happened, nothing of the run keeps running (and billing)
        wait_for(lambda: stack.runtime.running_tasks() == [], 30, what=lambda: f"end of {stack.runtime.running_tasks()}")
        return result

    return go


def execution(stack, run_id):
    arn = runs.execution_arn(stack.outputs["StateMachineArn"], run_id)
    sfn = aws.client("stepfunctions")
    return sfn.describe_execution(executionArn=arn), sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]


def test_throttled_and_capacity_starved_launches_are_retried(stack, faults, run):
    injected = faults(run_task_throttles=2, run_task_capacity=2)
    result = run("throttled")
    assert result.status == "SUCCEEDED", result.document
    assert result.document["outputs"]["faulty.out"] == [0, 1, 2]
    assert injected.injected.count("run_task_throttles") == 2
    assert injected.injected.count("run_task_capacity") == 2


def test_a_spot_interruption_is_retried_on_demand(stack, faults, run):
    injected = faults(spot_interruptions=1)
    result = run("spot", {"faulty.n": 1, "faulty.seconds": 3, "faulty.spot": 1})
    assert result.status == "SUCCEEDED", result.document
    assert injected.injected == ["spot_interruptions"]
    tasks = tasks_of_run(stack, result.run_id, only="wdl")
    assert sorted((t.get("capacityProviderName") or t.get("launchType"), t.get("stopCode")) for t in tasks) == [
        ("FARGATE", "EssentialContainerExited"),
        ("FARGATE_SPOT", "SpotInterruption"),
    ]


def test_a_driver_killed_mid_run_fails_the_run_and_stops_its_tasks(stack, faults, run):
    faults(kill_driver_after_tasks=2)
    result = run("killed", {"faulty.seconds": 60})
    assert result.status == "FAILED"
    cause = result.document["cause"]
    assert result.document["error"] == "DriverStopped", result.document
    assert cause["message"] == ("the driver task stopped without writing outputs.json or error.json (exit code 137; ECS: "
                                "EssentialContainerExited: Essential container in task exited)")
    assert cause["exit_code"] == 137
    status, _ = execution(stack, result.run_id)
    assert status["status"] == "FAILED"
    tasks = tasks_of_run(stack, result.run_id, only="wdl")
    assert len(tasks) >= 2
    assert all(t["lastStatus"] == "STOPPED" for t in tasks), [(t["lastStatus"], t.get("stoppedReason"), t.get("createdAt")) for t in tasks]
    assert {t["stoppedReason"] for t in tasks} == {"the run's driver stopped (EssentialContainerExited): stopping its tasks"}


def test_duplicated_events_start_one_run_and_finish_it_once(stack, faults, run):
    injected = faults(duplicate_events=True)
    result = run("duplicated", {"faulty.n": 1})
    assert result.status == "SUCCEEDED", result.document
    assert "duplicate_event" in injected.injected
    executions = aws.client("stepfunctions").list_executions(stateMachineArn=stack.outputs["StateMachineArn"])["executions"]
    assert [e["name"] for e in executions if e["name"].startswith("duplicated-")] == [result.run_id]
    drivers = tasks_of_run(stack, result.run_id, only="driver")
    assert len(drivers) == 1
    _, history = execution(stack, result.run_id)
    assert sum(1 for e in history if e["type"] == "TaskSucceeded") == 3  # driver slot, launch (token), finalize: once each


def test_lambda_service_errors_are_retried_by_the_state_machine(stack, faults, run):
    injected = faults(lambda_errors={"LaunchDriver": 2})
    result = run("lambda-flaky", {"faulty.n": 1})
    assert result.status == "SUCCEEDED", result.document
    assert injected.injected == ["lambda_error:LaunchDriver"] * 2
    _, history = execution(stack, result.run_id)
    assert sum(1 for e in history if e["type"] == "TaskFailed") == 2


def test_a_failing_lambda_ends_the_run_failed_with_error_json(stack, faults, run):
    faults(lambda_crashes={"LaunchDriver": 5})
    result = run("lambda-broken", {"faulty.n": 1})
    assert result.status == "FAILED"
    doc = result.document
    assert doc["error"] == "RuntimeError"
    assert doc["message"] == "injected fault: RuntimeError in " + doc["message"].rsplit(" ", 1)[1]
    assert "LaunchDriver" in doc["message"]
    status, _ = execution(stack, result.run_id)
    assert status["status"] == "FAILED"
    assert tasks_of_run(stack, result.run_id) == []  # nothing was launched


def test_a_lost_run_task_answer_starts_no_second_task(stack, faults, run):
    injected = faults(run_task_lost_answers=1)  # the task starts; its answer is a server error
    result = run("lost-answer", {"faulty.n": 1, "faulty.seconds": 4})  # (inputs no other test uses: no call cache hit)
    assert result.status == "SUCCEEDED", result.document
    assert injected.injected == ["run_task_lost_answers"]
    tasks = tasks_of_run(stack, result.run_id, only="wdl")
    assert len(tasks) == 1  # botocore's retry carried the same clientToken


def test_an_image_that_cannot_be_pulled_fails_the_run_at_once_naming_it(stack, faults, run):
    faults(pull_failures=1, pull_error="failed to resolve ref docker.io/library/ubuntu:22.04: manifest unknown")
    result = run("no-image", {"faulty.n": 1, "faulty.seconds": 5})
    assert result.status == "FAILED"
    said = "image 'ubuntu:22.04' cannot be pulled (the tag or digest does not exist); not retried"
    assert said in result.document["message"], result.document  # (the message status and WES print)
    tasks = tasks_of_run(stack, result.run_id, only="wdl")
    assert [(t["stopCode"], t["stoppedReason"][:24]) for t in tasks] == [("TaskFailedToStart", "CannotPullContainerError")], [
        (t["taskArn"], t.get("startedBy"), t.get("createdAt")) for t in tasks
    ]


def test_an_image_that_cannot_run_the_script_fails_at_once_saying_so(stack, faults, run):
    """An image built only for arm64 (or one with no /bin/sh) is pulled, then its container exits 1
    before the task's script runs: ECS says only EssentialContainerExited, exit 1. It was "failed
    with exit status 1", empty stderr, retried under maxRetries; it is the image's doing."""
    faults(unrunnable_images=1)
    result = run("unrunnable", {"faulty.n": 1, "faulty.seconds": 6})
    assert result.status == "FAILED"
    message = result.document["message"]
    assert "failed: ImageUnusable: " in message and "never ran the task's script (its container exited 1" in message, message
    assert "--platform linux/amd64" in message
    tasks = tasks_of_run(stack, result.run_id, only="wdl")
    assert [t["stopCode"] for t in tasks] == ["EssentialContainerExited"]


SIZED = """
version 1.1
workflow sized {
  input { Int n = 3  Float cpu = 0.5  String tag = "" }
  scatter (i in range(n)) { call work { input: i = i, cpu = cpu, tag = tag } }
  output { Array[Int] out = work.out }
}
task work {
  input { Int i  Float cpu  String tag }
  command <<<
    # (tag "waits": each task ends only once the test has written "release" into the run's
    # directory, ../.. of its work directory: release_waiting_tasks)
    if [ "~{tag}" = waits ]; then until [ -e ../../release ]; do sleep 0.1; done; fi
    echo ~{i}
  >>>
  output { Int out = read_int(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: cpu memory: "2 GiB" }
}
"""


def release_waiting_tasks(stack, run_id: str) -> None:
    """Let the tasks of run ``run_id`` (of ``SIZED``, tag "waits") end: "release" in the run's
    miniwdl directory on the stack's EFS (runs/<run id>/<timestamp>_sized/)."""
    found = wait_for(lambda: next(Path(stack.runtime.efs_root).glob(f"*/miniwdl/runs/{run_id}/*_sized/call-work-0"), None),
                     60, f"run {run_id}'s directory on EFS")
    (found.parent / "release").touch()


def test_on_a_small_vcpu_quota_tasks_wait_their_turn_and_runs_take_turns_for_drivers(stack, faults, tmp_path):
    """The account's concurrent vCPU quota, 2 vCPUs here, as a new account's is a few. Within a
    run (its driver holding 1): RunTask answers its failure while the run's other tasks hold the
    rest; each task waits until they end. Between runs: two runs at once each started a driver of
    1 vCPU, which held the whole quota, and neither run's tasks could ever start (both waited until
    their MaxRunHours); now the drivers hold at most a quarter of it, at least one run: the second
    run waits its turn (SUBMITTED, its status saying why), then runs. Both succeed."""
    from miniwdl_fargate import status

    injected = faults(fargate_vcpu_quota=2)
    bucket = stack.outputs["BucketName"]
    wdl = tmp_path / "sized.wdl"
    wdl.write_text(SIZED)
    submitted = [
        local_run.submit(bucket, wdl, {"sized.n": 3, "sized.cpu": 0.5, "sized.tag": "waits"}, name="vcpu-quota-waits"),
        local_run.submit(bucket, wdl, {"sized.n": 1, "sized.cpu": 1, "sized.tag": "turn"}, name="vcpu-quota-turn"),
    ]
    said = []

    def queued_said():
        for _, run_id in submitted:
            current = status.read(bucket, run_id)
            if current is not None and (current.phase or "").startswith("queued behind other runs: "):
                said.append(current.phase)
        return said

    wait_for(queued_said, 60, "a run queued behind the other")
    assert "at most 1 run(s) of this stack have a driver at once (a quarter of the account's Fargate On-Demand vCPU quota (2)" in said[0], said[0]
    # a third run, queued behind them, whose execution is stopped from the Step Functions console:
    # no Catch runs for a stopped execution and it has no driver whose stop would say it ended (its
    # status said SUBMITTED, queued, for good); the execution's end event finalizes it
    _, stopped_id = local_run.submit(bucket, wdl, {"sized.n": 1, "sized.cpu": 1, "sized.tag": "stopped"}, name="vcpu-quota-stopped")
    wait_for(lambda: (getattr(status.read(bucket, stopped_id), "phase", None) or "").startswith("queued behind"), 60, "the third run queued")
    aws.client("stepfunctions").stop_execution(executionArn=status.read(bucket, stopped_id).execution_arn, cause="stopped in the console")
    wait_for(lambda: status.read(bucket, stopped_id).finished, 30, "the stopped run's end recorded")
    stopped = status.read(bucket, stopped_id)
    assert stopped.status == "CANCELLED" and "stopped outside miniwdl-fargate" in stopped.error["message"], stopped
    # the first run's tasks end only once a task of it was refused the quota while the others held
    # it (the driver 1 vCPU, two tasks 0.5 each), however slowly the machine launches them: with
    # tasks of a second's sleep, a loaded machine once launched the third after the first ended
    wait_for(lambda: "fargate_vcpu_quota" in injected.injected, 60, "a task of the first run refused for the vCPU quota")
    release_waiting_tasks(stack, submitted[0][1])
    results = [run_end(stack, name, run_id, timeout=180) for name, run_id in submitted]
    assert [r.status for r in results] == ["SUCCEEDED", "SUCCEEDED"], [r.document for r in results]
    assert results[0].document["outputs"]["sized.out"] == [0, 1, 2]
    assert "fargate_vcpu_quota" in injected.injected  # (a task of the first run waited for one of its others)
    wait_for(lambda: stack.runtime.running_tasks() == [], 30, what=lambda: f"end of {stack.runtime.running_tasks()}")


def test_a_task_larger_than_the_accounts_whole_vcpu_quota_fails_the_run_at_once_saying_so(stack, faults, run):
    """Before, such a task waited on the quota until the run's MaxRunHours; now the driver asks
    Service Quotas at the first quota answer and fails the task, naming the quota to raise (of
    which its driver holds 1 vCPU: the task's 2 could never be had beside it)."""
    injected = faults(fargate_vcpu_quota=2)
    result = run("vcpu-quota-never", {"sized.n": 1, "sized.cpu": 2, "sized.tag": "never"}, source=SIZED, timeout=90)
    assert result.status == "FAILED"
    message = result.document["failed_task"]["message"]
    assert "needs 2 vCPUs, more than this account's whole Fargate vCPU quota" in message, result.document
    assert "L-3032A538: 2, of which this run's driver holds 1)" in message, message
    assert "--quota-code L-3032A538" in message, message
    assert injected.injected == ["fargate_vcpu_quota"]  # one RunTask refused, then no wait
    assert tasks_of_run(stack, result.run_id, only="wdl") == []
