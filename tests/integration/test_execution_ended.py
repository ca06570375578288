"""A run whose execution ended without its finalize step is finalized from the "Step Functions
Execution Status Change" event (functions/finalize.py, pipeline/finalize.execution_ended): a run
stopped from the Step Functions console while it waited for a driver slot said SUBMITTED, queued,
for good; one whose finalize step failed never got its end recorded."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from miniwdl_fargate import aws, runs, s3io, status
from miniwdl_fargate.pipeline import driver_slots, finalize
from tests.function_env import set_environment

EVENT = json.loads((Path(__file__).parents[1] / "events" / "sfn_execution_aborted.json").read_text())
RECORD = runs.RunRecord.model_validate_json(EVENT["detail"]["input"])
BUCKET = RECORD.bucket


class Context:
    function_name, memory_limit_in_mb, invoked_function_arn, aws_request_id = "f", 128, "arn:aws:lambda:us-east-1:1:function:f", "r"


@pytest.fixture
def handler(moto_aws, monkeypatch):
    """The finalize function as Lambda runs it, its gc schedules recorded rather than made."""
    import finalize as function
    import observability

    set_environment(monkeypatch)
    monkeypatch.setattr(observability.metrics.provider, "namespace", "test")
    aws.client("s3").create_bucket(Bucket=BUCKET)
    aws.client("ecs").create_cluster(clusterName="wdl")
    scheduled: list[tuple[str, str]] = []
    monkeypatch.setattr(finalize, "collect_when_due", lambda collection, bucket, state: scheduled.append((bucket, state)) or [])
    return lambda event: (function.handler(event, Context()), scheduled)


def queued_run(driver_slot: bool = False) -> None:
    """The run as TakeDriverSlot leaves it while every slot is held (or, ``driver_slot``, with one)."""
    status.update(BUCKET, RECORD.run_id, lambda current: current.model_copy(update={"phase": "queued behind other runs"}),
                  initial=status.new(RECORD))
    if driver_slot:
        key = driver_slots.take(BUCKET, "wdl", RECORD.run_id, 1)
        status.update(BUCKET, RECORD.run_id, lambda current: current.model_copy(update={"driver_slot": key}))


def ended(state: str, error: str | None = None, cause: str | None = None) -> dict:
    event = copy.deepcopy(EVENT)
    event["detail"].update(status=state, error=error, cause=cause)
    return event


def test_a_run_stopped_from_the_console_while_queued_is_cancelled_saying_how(handler):
    queued_run()
    result, scheduled = handler(EVENT)
    assert result["result"] == "finalized" and result["status"] == "CANCELLED"
    current = status.read(BUCKET, RECORD.run_id)
    assert current.status == "CANCELLED" and current.phase is None
    assert "stopped outside miniwdl-fargate (the Step Functions console, or StopExecution)" in current.error["message"]
    said = s3io.get_json(BUCKET, RECORD.results_key("error.json"))
    assert (said["status"], said["error"]) == ("CANCELLED", "Cancelled")
    assert "`miniwdl-fargate cancel` is what stops a run" in said["message"]
    assert scheduled == [(BUCKET, "CANCELLED")]


def test_a_run_that_held_a_slot_gives_it_back_and_what_of_it_runs_is_stopped(handler, monkeypatch):
    from miniwdl_fargate import sweep

    queued_run(driver_slot=True)
    stopped = []
    monkeypatch.setattr(sweep, "stop_run", lambda cluster, run_id, reason, **kw: stopped.append((cluster, run_id, reason)) or [])
    handler(ended("ABORTED", "States.Aborted", "stopped in the console"))
    assert list(s3io.list_keys(BUCKET, driver_slots.PREFIX)) == []
    assert stopped == [("wdl", RECORD.run_id, "run CANCELLED: stopping what still runs of it")]
    assert "stopped in the console" in status.read(BUCKET, RECORD.run_id).error["message"]


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED", "CANCELLED"])
def test_a_run_whose_end_is_recorded_already_is_left_as_it_is(handler, state):
    """Every execution's end sends the event, a finalized one's too, and a run cancelled by
    `miniwdl-fargate cancel` (which says so before it stops the execution): nothing changes, and
    no second run-finished event goes out."""
    queued_run()
    status.set_state(BUCKET, RECORD.run_id, state)
    before = status.read(BUCKET, RECORD.run_id)
    result, scheduled = handler(ended("FAILED" if state != "CANCELLED" else "ABORTED", "RunFailed", "see error.json"))
    assert result == {"run_id": RECORD.run_id, "result": "ended already", "status": state}
    assert status.read(BUCKET, RECORD.run_id) == before and scheduled == []
    assert s3io.find_json(BUCKET, RECORD.results_key("error.json")) is None


def test_a_run_whose_finalize_step_failed_recording_its_success_is_finalized_succeeded(handler):
    queued_run()
    s3io.put_json(BUCKET, RECORD.results_key("outputs.json"), {"hello.message": "Hello, Ann!"})
    result, _ = handler(ended("FAILED", "FinalizeFailed", "recording its end failed: see the finalize function's logs"))
    assert result["status"] == "SUCCEEDED"
    assert status.read(BUCKET, RECORD.run_id).outputs == RECORD.results + "outputs.json"


def test_a_run_whose_finalize_step_failed_recording_its_failure_keeps_its_drivers_error(handler):
    queued_run()
    s3io.put_json(BUCKET, RECORD.results_key("error.json"), {"run_id": RECORD.run_id, "status": "FAILED", "error": "TaskFailed",
                                                            "message": "task hello failed"})
    result, _ = handler(ended("FAILED", "RunFailed", "The run failed: see error.json under the run's results prefix"))
    assert result["status"] == "FAILED"
    assert status.read(BUCKET, RECORD.run_id).error["error"] == "TaskFailed"


def test_a_run_whose_driver_claimed_its_success_is_not_cancelled_by_a_stop_from_outside(handler):
    """As `miniwdl-fargate cancel` leaves it: its driver is writing its outputs."""
    queued_run()
    status.update(BUCKET, RECORD.run_id, lambda current: current.model_copy(update={"outputs": RECORD.results + "outputs.json"}))
    result, _ = handler(EVENT)
    assert result["status"] == "SUCCEEDED"


def test_a_running_execution_or_one_that_is_not_a_run_is_ignored(handler, caplog):
    queued_run()
    running = copy.deepcopy(EVENT)
    running["detail"].update(status="RUNNING", stopDate=None)
    assert handler(running)[0] == {"result": "ignored", "execution_status": "RUNNING"}
    foreign = copy.deepcopy(EVENT)
    foreign["detail"]["input"] = json.dumps({"something": "else"})
    assert handler(foreign)[0]["result"] == "no run"
    assert "no run in its event's input" in caplog.text
    assert status.read(BUCKET, RECORD.run_id).status == "SUBMITTED"


def test_the_state_machines_own_payload_still_finalizes(handler):
    """RecordSuccess / RecordFailure call the same function with the run and its outcome."""
    queued_run()
    result, scheduled = handler({"run": json.loads(RECORD.model_dump_json()), "status": "FAILED",
                                 "error": {"Error": "DriverFailedToStart", "Cause": json.dumps({"message": "no route to ECR"})}})
    assert result["status"] == "FAILED" and scheduled == [(BUCKET, "FAILED")]
    assert s3io.get_json(BUCKET, RECORD.results_key("error.json"))["message"] == "no route to ECR"
