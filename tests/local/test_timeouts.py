"""A run never hangs (issue 10, item 10), end to end in local mode: a run over its maximum
duration (options.max_run_hours) is stopped, its driver and every task, and ends FAILED saying it
timed out; a driver that dies and whose STOPPED event is lost ends its run through the state
machine's heartbeat timeout, with its tasks stopped."""

import copy
import json
from pathlib import Path

import pytest

from miniwdl_fargate import aws, runs, s3io
from miniwdl_fargate import upload as local_run
from miniwdl_fargate.local import moto as moto_seam
from miniwdl_fargate.local.faults import Faults
from miniwdl_fargate.local.stack import LocalStack
from miniwdl_fargate.client import api_function
from tests.waiting import run_end, wait_for
from tests.workflows import sleepy

# each test waits out a timer (the run's maximum duration; the driver's heartbeat timeout)
pytestmark = pytest.mark.long

REPO = Path(__file__).resolve().parents[2]
EVENT = json.loads((REPO / "tests" / "events" / "apigw_post_runs.json").read_text())

SLEEPY = sleepy(300)


#: DriverHeartbeatSeconds of the stack the lost-driver test runs on: the test waits the heartbeat
#: timeout out, so its stack's is short (the session stack keeps 90 s, a margin for drivers that
#: start slowly on a loaded machine). Its drivers send one every quarter of it, and it covers the
#: driver's start, so it stays well above a local driver's start.
SHORT_HEARTBEAT_SECONDS = 10


def post_run(stack, body):
    """POST /runs on the deployed API function, as API Gateway invokes it."""
    physical = api_function(stack.stack_name)
    event = copy.deepcopy(EVENT)
    event.update(httpMethod="POST", path="/runs", resource="/runs", body=json.dumps(body))
    answer = json.loads(aws.client("lambda").invoke(FunctionName=physical, Payload=json.dumps(event).encode())["Payload"].read())
    return answer["statusCode"], json.loads(answer["body"])


def history(stack, run_id):
    arn = runs.execution_arn(stack.outputs["StateMachineArn"], run_id)
    return aws.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]


def timeline(stack, run_id):
    """The execution's events, seconds after its start: when the driver's wait began and ended."""
    events = history(stack, run_id)
    start = events[0]["timestamp"]
    return [(round((e["timestamp"] - start).total_seconds(), 2), e["type"]) for e in events]


def driver_log(stack, run_id):
    """The run's driver log lines (CloudWatch Logs, as local mode keeps them), for a failure's message."""
    logs = aws.client("logs")
    group = stack.outputs["DriverLogGroupName"]
    lines = []
    for found in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        events = logs.get_log_events(logGroupName=group, logStreamName=found["logStreamName"], startFromHead=True)["events"]
        if any(run_id in e["message"] for e in events):
            lines += [e["message"] for e in events]
    return lines[-60:]


def entered(events):
    return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]


def test_a_run_over_its_maximum_duration_is_stopped_and_fails_saying_so(stack):
    # 9 s: a run this short gets a heartbeat one second short of it (runs.limits), which its
    # driver's beats (every quarter of it, the first at its start) keep from ending it first
    code, accepted = post_run(stack, {"name": "too-long", "wdl": SLEEPY, "options": {"max_run_hours": 0.0025}})
    assert code == 202, accepted
    run_id = accepted["run_id"]
    bucket = stack.outputs["BucketName"]
    result = run_end(stack, "too-long", run_id, timeout=180)
    assert result.status == "FAILED", result.document
    error = result.document
    assert error["error"] == "TimedOut", error
    assert error["message"].startswith("the run timed out: it was still running at its maximum duration of 9s (0.0025 h"), (
        "\n".join([error["message"], f"events (s after start, type): {timeline(stack, run_id)}", "driver log:",
                   *driver_log(stack, run_id)]))
    assert "StopTimedOutRun" in entered(history(stack, run_id))
    status = s3io.get_json(bucket, f"runs/too-long/results/{run_id}/status.json")
    assert status["status"] == "FAILED" and status["error"]["error"] == "TimedOut"
    nothing_runs(stack)


def nothing_runs(stack):
    """Wait until nothing of any run still runs in ``stack`` (fails naming what does)."""
    wait_for(lambda: stack.runtime.running_tasks() == [], 60, what=lambda: f"end of {stack.runtime.running_tasks()}")


@pytest.fixture  # (not module-scoped: while it is up, every run in this process is routed to it)
def short_heartbeat_stack(stack, tmp_path_factory):
    """A second local stack in this process, deployed with DriverHeartbeatSeconds short. While it is
    up, local mode's moto hooks route work to its runtime; after, back to the session stack's.

    The state machine fails the driver's task state with States.HeartbeatTimeout when no
    SendTaskHeartbeat came within HeartbeatSeconds:
    https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskHeartbeat.html"""
    try:
        with LocalStack(
            state_dir=str(tmp_path_factory.mktemp("short-heartbeat")), stack_name="miniwdl-fargate-short-heartbeat",
            poll_seconds=stack.poll_seconds, heartbeat_seconds=SHORT_HEARTBEAT_SECONDS,
        ) as deployed:
            yield deployed
    finally:
        moto_seam.install(stack.runtime)


@pytest.fixture
def faults(short_heartbeat_stack):
    def inject(**spec):
        short_heartbeat_stack.runtime.faults = Faults(**spec)
        return short_heartbeat_stack.runtime.faults

    yield inject
    short_heartbeat_stack.runtime.faults = Faults()


def test_a_dead_driver_whose_end_is_lost_ends_by_heartbeat_timeout(short_heartbeat_stack, faults, tmp_path):
    stack = short_heartbeat_stack
    injected = faults(kill_driver_after_tasks=2, lose_driver_stopped_events=1)
    wdl = tmp_path / "lost.wdl"
    wdl.write_text(SLEEPY)
    bucket = stack.outputs["BucketName"]
    name, run_id = local_run.submit(bucket, wdl, {"sleepy.seconds": 300}, name="lost")
    result = run_end(stack, name, run_id, timeout=240)
    assert injected.injected == ["kill_driver", "lose_driver_stopped_events"]
    assert result.status == "FAILED", result.document
    error = result.document
    assert error["error"] == "TimedOut" and error["limit"] == "heartbeat", error
    assert f"its driver sent no heartbeat for {stack.heartbeat_seconds} s" in error["message"]
    events = history(stack, run_id)
    assert any(e["type"] == "TaskTimedOut" for e in events)
    assert "StopTimedOutRun" in entered(events)
    nothing_runs(stack)
