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
    assert (kind, payload["error"]) == ("failure", "DriverStopped")
