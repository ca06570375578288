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
from tests.function_env import LambdaContext, set_environment

EVENT = json.loads((Path(__file__).parents[1] / "events" / "sfn_execution_aborted.json").read_text())
RECORD = runs.RunRecord.model_validate_json(EVENT["detail"]["input"])
BUCKET = RECORD.bucket


@pytest.fixture
def handler(moto_aws, monkeypatch):
    """The finalize function as Lambda runs it, its gc schedules, the tasks it stops and the
    run-finished events it sends recorded rather than made."""
    import finalize as function
    import observability

    from miniwdl_fargate import sweep
    from miniwdl_fargate.pipeline import manage

    set_environment(monkeypatch)
    monkeypatch.setattr(observability.metrics.provider, "namespace", "test")
    monkeypatch.setattr(finalize, "OUTPUTS_WAIT", {"Delay": 0.05, "MaxAttempts": 3})
    aws.client("s3").create_bucket(Bucket=BUCKET)
    scheduled: list[tuple[str, str]] = []
    monkeypatch.setattr(finalize, "collect_when_due", lambda collection, bucket, state: scheduled.append((bucket, state)) or [])
    monkeypatch.setattr(sweep, "stop_run", lambda cluster, run_id, reason, **kw: STOPPED.append((cluster, run_id, reason)) or [])
    monkeypatch.setattr(manage, "announce", lambda current: ANNOUNCED.append(current.status))
    STOPPED.clear()
    ANNOUNCED.clear()
    return lambda event: (function.handler(event, LambdaContext()), scheduled)


STOPPED: list[tuple[str, str, str]] = []
ANNOUNCED: list[str] = []


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
    assert scheduled == [(BUCKET, "CANCELLED")] and ANNOUNCED == ["CANCELLED"]


def test_a_run_that_held_a_slot_gives_it_back_and_what_of_it_runs_is_stopped(handler):
    queued_run(driver_slot=True)
    handler(ended("ABORTED", "States.Aborted", "stopped in the console"))
    assert list(s3io.list_keys(BUCKET, driver_slots.PREFIX)) == []
    assert STOPPED == [("wdl", RECORD.run_id, "run cancelled: stopping what still runs of it")]  # (counted cancelled)
    assert "stopped in the console" in status.read(BUCKET, RECORD.run_id).error["message"]


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED", "CANCELLED"])
def test_a_run_whose_end_is_recorded_already_keeps_it_and_what_follows_an_end_is_done_again(handler, state):
    """Every execution's end sends the event, a finalized one's too, and a run cancelled by
    `miniwdl-fargate cancel` (which says so before it stops the execution): its end stands, no
    second run-finished event goes out; what follows an end (safe to repeat) is done again, as a
    finalize step that failed after recording the end may not have done it (its tasks would bill on)."""
    queued_run(driver_slot=True)
    status.set_state(BUCKET, RECORD.run_id, state)
    before = status.read(BUCKET, RECORD.run_id)
    result, scheduled = handler(ended("FAILED" if state != "CANCELLED" else "ABORTED", "RunFailed", "see error.json"))
    assert result == {"run_id": RECORD.run_id, "result": "ended already", "status": state}
    assert status.read(BUCKET, RECORD.run_id) == before and ANNOUNCED == []
    assert s3io.find_json(BUCKET, RECORD.results_key("error.json")) is None
    said = "run cancelled" if state == "CANCELLED" else f"run {state}"
    # (a SUCCEEDED run's driver may still be tidying up: not stopped; its own stop's event follows)
    assert STOPPED == ([] if state == "SUCCEEDED" else [("wdl", RECORD.run_id, f"{said}: stopping what still runs of it")])
    assert list(s3io.list_keys(BUCKET, driver_slots.PREFIX)) == [] and scheduled == [(BUCKET, state)]


def test_two_copies_of_the_end_event_at_once_end_the_run_once(handler):
    """EventBridge delivers at least once: a copy that finds the run ended by the other (between
    its look and its write) records and announces nothing."""
    queued_run()
    status.set_state(BUCKET, RECORD.run_id, "CANCELLED")
    finalize.finalize(RECORD, "CANCELLED", {"Error": "Cancelled", "Cause": "{}"}, "wdl", ending_only=True)
    assert ANNOUNCED == []
    finalize.finalize(RECORD, "FAILED", {"Error": "RunFailed", "Cause": "{}"}, "wdl")  # (the state machine's: as before)
    assert ANNOUNCED == []  # (CANCELLED stays; announced by whoever ended it)


def test_a_run_whose_finalize_step_failed_recording_its_success_is_finalized_succeeded(handler):
    queued_run()
    s3io.put_json(BUCKET, RECORD.results_key("outputs.json"), {"hello.message": "Hello, Ann!"})
    result, _ = handler(ended("FAILED", "FinalizeFailed", "recording its end failed: see the finalize function's logs"))
    assert result["status"] == "SUCCEEDED"
    assert status.read(BUCKET, RECORD.run_id).outputs == RECORD.results + "outputs.json"


def test_a_run_whose_finalize_step_failed_recording_its_failure_says_where_its_error_is(handler):
    """The Fail state's error says only that the run failed: the message says where what failed
    it is, rather than send the user to an error.json that does not exist."""
    queued_run()
    result, _ = handler(ended("FAILED", "RunFailed", "The run failed: see error.json under the run's results prefix"))
    said = s3io.get_json(BUCKET, RECORD.results_key("error.json"))
    assert result["status"] == "FAILED" and "recording its failure failed too" in said["message"]
    assert EVENT["detail"]["executionArn"] in said["message"]


def test_a_run_whose_finalize_step_failed_recording_its_failure_keeps_its_drivers_error(handler):
    queued_run()
    s3io.put_json(BUCKET, RECORD.results_key("error.json"), {"run_id": RECORD.run_id, "status": "FAILED", "error": "TaskFailed",
                                                            "message": "task hello failed"})
    result, _ = handler(ended("FAILED", "RunFailed", "The run failed: see error.json under the run's results prefix"))
    assert result["status"] == "FAILED"
    assert status.read(BUCKET, RECORD.run_id).error["error"] == "TaskFailed"


def test_a_run_whose_driver_claimed_its_success_is_not_cancelled_by_a_stop_from_outside(handler):
    """As `miniwdl-fargate cancel` leaves it: its driver is writing its outputs. SUCCEEDED once
    outputs.json is there, the driver not stopped (stopped, it would say it failed); FAILED, what
    runs of it stopped, if outputs.json never comes."""
    queued_run()
    status.update(BUCKET, RECORD.run_id, lambda current: current.model_copy(update={"outputs": RECORD.results + "outputs.json"}))
    result, _ = handler(EVENT)
    assert result["status"] == "FAILED" and STOPPED
    assert "claimed the run's success but wrote no outputs.json" in status.read(BUCKET, RECORD.run_id).error["message"]


def test_a_run_whose_driver_wrote_its_outputs_as_it_was_stopped_succeeds_its_driver_left_to_finish(handler):
    queued_run()
    status.update(BUCKET, RECORD.run_id, lambda current: current.model_copy(update={"outputs": RECORD.results + "outputs.json"}))
    s3io.put_json(BUCKET, RECORD.results_key("outputs.json"), {"hello.message": "Hello, Ann!"})
    result, _ = handler(EVENT)
    assert result["status"] == "SUCCEEDED" and STOPPED == [] and ANNOUNCED == ["SUCCEEDED"]
    assert s3io.find_json(BUCKET, RECORD.results_key("error.json")) is None


def test_a_run_whose_driver_failed_first_keeps_its_failure_when_its_execution_is_stopped(handler):
    queued_run()
    s3io.put_json(BUCKET, RECORD.results_key("error.json"), {"run_id": RECORD.run_id, "status": "FAILED", "error": "TaskFailed",
                                                            "message": "task hello failed"})
    result, _ = handler(EVENT)
    assert result["status"] == "FAILED" and status.read(BUCKET, RECORD.run_id).error["error"] == "TaskFailed"


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


def test_a_success_claimed_between_the_look_and_the_write_is_not_ended_under_its_driver(handler):
    """The claim is checked in the conditional write itself, as a cancel checks it: a stop's end
    recorded over it would stop the driver as it writes outputs.json."""
    queued_run()
    status.update(BUCKET, RECORD.run_id, lambda current: current.model_copy(update={"outputs": RECORD.results + "outputs.json"}))
    result = finalize.finalize(RECORD, "CANCELLED", {"Error": "Cancelled", "Cause": "{}"}, "wdl", ending_only=True)
    assert result["claimed"] and result["status"] == "SUBMITTED"
    assert status.read(BUCKET, RECORD.run_id).status == "SUBMITTED" and STOPPED == [] and ANNOUNCED == []
    assert s3io.find_json(BUCKET, RECORD.results_key("error.json")) is None  # (no CANCELLED beside the success to come)


def test_a_run_finished_event_that_cannot_be_sent_does_not_fail_the_runs_end(handler, monkeypatch, caplog):
    from miniwdl_fargate.pipeline import manage

    def failing(current):
        raise aws.client("events").exceptions.ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "PutEvents")

    monkeypatch.setattr(manage, "announce", failing)
    queued_run()
    result, _ = handler(EVENT)
    assert result["status"] == "CANCELLED" and status.read(BUCKET, RECORD.run_id).status == "CANCELLED"
    assert "its run-finished event could not be sent" in caplog.text
