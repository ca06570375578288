"""A driver that stopped before its command ran: launched again by the state machine when what
stopped it may pass (DriverFailedToStart, in LaunchDriver's Retry), failing the run when it will
not (an image that cannot be pulled), as the WDL tasks' ends are read (backend.stops)."""

import json
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from miniwdl_fargate import aws
from miniwdl_fargate.pipeline import driver_outcome

EVENT = Path(__file__).parents[1] / "events" / "ecs_driver_stopped.json"
ASL = Path(__file__).parents[2] / "statemachine" / "run.asl.json"


class Stopped(EventBridgeModel):
    detail: driver_outcome.EcsTaskStateChange


def failed_to_start(stopped_reason: str, container_reason: str | None = None) -> driver_outcome.EcsTaskStateChange:
    """The fixture's real STOPPED event of the driver, as ECS sends it for a task that never ran:
    TaskFailedToStart, no exit code."""
    event = json.loads(EVENT.read_text())
    event["detail"].update(stopCode="TaskFailedToStart", stoppedReason=stopped_reason)
    for container in event["detail"]["containers"]:
        container.pop("exitCode", None)
        if container_reason:
            container["reason"] = container_reason
    return parse(event=event, model=Stopped).detail


@pytest.fixture
def bucket(moto_aws):
    aws.client("s3").create_bucket(Bucket="miniwdl-fargate-runsbucket-example")  # (no outputs.json, no error.json)


@pytest.mark.parametrize("stopped_reason, container_reason", [
    ("ResourceInitializationError: failed to invoke EFS utils commands to set up EFS volumes: mount.nfs4: Connection timed out", None),
    ("ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: "
     "unable to retrieve ecr registry auth: service call has been retried 3 time(s): RequestError: send request failed", None),
    ("Task failed to start", "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve "
     "ref 123456789012.dkr.ecr.us-east-1.amazonaws.com/miniwdl-fargate-driver:latest: i/o timeout"),
])
def test_a_driver_that_failed_to_start_for_a_passing_reason_is_launched_again(bucket, stopped_reason, container_reason):
    kind, payload = driver_outcome.outcome(failed_to_start(stopped_reason, container_reason), "driver")
    assert (kind, payload["error"]) == ("failure", "DriverFailedToStart")
    cause = json.loads(payload["cause"])
    assert cause["stop_code"] == "TaskFailedToStart" and cause["stopped_reason"] == stopped_reason
    asl = json.loads(ASL.read_text())
    retried = {e for r in asl["States"]["LaunchDriver"]["Retry"] for e in r["ErrorEquals"]}
    assert "DriverFailedToStart" in retried


def test_a_driver_whose_image_cannot_be_pulled_fails_the_run(bucket):
    detail = failed_to_start(
        "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref "
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/miniwdl-fargate-driver:nope: not found"
    )
    kind, payload = driver_outcome.outcome(detail, "driver")
    assert (kind, payload["error"]) == ("failure", "DriverImageUnusable")  # (not in LaunchDriver's Retry)
    asl = json.loads(ASL.read_text())
    assert "DriverImageUnusable" not in {e for r in asl["States"]["LaunchDriver"]["Retry"] for e in r["ErrorEquals"]}
    # the image, what is wrong with it, and what to do (error.json's message, through finalize)
    message = json.loads(payload["cause"])["message"]
    assert message.startswith("the driver's image 123456789012.dkr.ecr.us-east-1.amazonaws.com/miniwdl-fargate-driver:latest "
                              "cannot be used (the image, tag or digest does not exist): push it"), message
    assert "make push-image" in message and "DriverImage" in message and "not found" in message


@pytest.mark.parametrize("stopped_reason, remedy", [
    ("ResourceInitializationError: failed to invoke EFS utils commands to set up EFS volumes: stderr: Failed to resolve "
     '"fs-1.efs.us-east-1.amazonaws.com": mount.nfs4: Connection timed out : unsuccessful EFS utils command execution; code: 32',
     "NFS (TCP 2049)"),
    ("ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to "
     "retrieve ecr registry auth: service call has been retried 3 time(s): RequestError: send request failed", "NAT gateway"),
])
def test_a_driver_that_could_not_start_says_why_and_what_to_look_at(bucket, stopped_reason, remedy):
    kind, payload = driver_outcome.outcome(failed_to_start(stopped_reason), "driver")
    message = json.loads(payload["cause"])["message"]
    assert payload["error"] == "DriverFailedToStart" and stopped_reason in message and remedy in message, message


def stopped(exit_code, container_reason=None, stop_code="EssentialContainerExited", reason="Essential container in task exited"):
    event = json.loads(EVENT.read_text())
    event["detail"].update(stopCode=stop_code, stoppedReason=reason)
    for container in event["detail"]["containers"]:
        container["exitCode"] = exit_code
        if container_reason:
            container["reason"] = container_reason
    return parse(event=event, model=Stopped).detail


def test_a_driver_out_of_memory_names_its_size_and_the_stack_parameter(bucket):
    kind, payload = driver_outcome.outcome(stopped(137, "OutOfMemoryError: Container killed due to memory usage"), "driver")
    cause = json.loads(payload["cause"])
    assert payload["error"] == "DriverOutOfMemory", payload
    assert "of 2048 MiB" in cause["message"] and "DriverMemory" in cause["message"], cause
    assert cause["container_reason"] == "OutOfMemoryError: Container killed due to memory usage"


def test_a_driver_that_died_without_a_document_says_what_ecs_said(bucket):
    kind, payload = driver_outcome.outcome(stopped(139), "driver")
    cause = json.loads(payload["cause"])
    assert payload["error"] == "DriverStopped"
    assert cause["message"] == ("the driver task stopped without writing outputs.json or error.json (exit code 139; "
                                "ECS: EssentialContainerExited: Essential container in task exited)")


def test_a_cancelled_runs_driver_stopping_gives_its_slot_back_and_schedules_its_collection(bucket, monkeypatch):
    """A cancelled run's execution is stopped: no finalize step follows. Its driver's stop gives
    its driver slot back and schedules the collection of what it left on EFS, as finalize would;
    a run whose finalize still comes (not ended yet) keeps its slot for it."""
    from miniwdl_fargate import runs, status
    from miniwdl_fargate.pipeline import driver_slots, finalize

    runs_bucket, run_id = "miniwdl-fargate-runsbucket-example", "hello-1a2b3c4d"
    record = runs.RunRecord(
        run_id=run_id, name="hello", bucket=runs_bucket, workflow=f"s3://{runs_bucket}/runs/hello/workflow.wdl",
        inputs=f"s3://{runs_bucket}/runs/hello/inputs.json", results=f"s3://{runs_bucket}/runs/hello/results/{run_id}/",
        submitted_at="2026-01-01T00:00:00+00:00",
    )
    status.update(runs_bucket, run_id, lambda current: current, initial=status.new(record))
    key = driver_slots.take(runs_bucket, "c", run_id, 1)
    status.update(runs_bucket, run_id, lambda current: current.model_copy(update={"driver_slot": key}))
    scheduled = []
    monkeypatch.setattr(finalize, "collect_when_due", lambda collection, bucket, state: scheduled.append((bucket, state)))
    event = parse(event=json.loads(EVENT.read_text()), model=Stopped).detail
    driver_outcome.send_outcome(event, "driver", collection=lambda: None)
    assert driver_slots._held(runs_bucket, key).run_id == run_id and scheduled == []  # (still RUNNING: finalize comes)
    status.set_state(runs_bucket, run_id, "CANCELLED")
    driver_outcome.send_outcome(event, "driver", collection=lambda: None)
    assert driver_slots._held(runs_bucket, key) is None
    assert scheduled == [(runs_bucket, "CANCELLED")]
