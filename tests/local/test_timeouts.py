"""A run never hangs (issue 10, item 10), end to end in local mode: a run over its maximum
duration (options.max_run_hours) is stopped, its driver and every task, and ends FAILED saying it
timed out; a driver that dies and whose STOPPED event is lost ends its run through the state
machine's heartbeat timeout, with its tasks stopped."""

import copy
import json
import time
from pathlib import Path

import pytest

from miniwdl_fargate import aws, runs, s3io
from miniwdl_fargate import upload as local_run
from miniwdl_fargate.local.faults import Faults

REPO = Path(__file__).resolve().parents[2]
EVENT = json.loads((REPO / "tests" / "events" / "apigw_post_runs.json").read_text())

SLEEPY = """version 1.1
workflow sleepy {
  input { Int n = 2  Int seconds = 300 }
  scatter (i in range(n)) { call nap { input: seconds = seconds } }
}
task nap {
  input { Int seconds }
  command <<< sleep ~{seconds} >>>
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def wait_until(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.25)
    return None


def post_run(stack, body):
    """POST /runs on the deployed API function, as API Gateway invokes it."""
    physical = next(
        r["PhysicalResourceId"]
        for r in aws.client("cloudformation").list_stack_resources(StackName=stack.stack_name)["StackResourceSummaries"]
        if r["LogicalResourceId"] == "ApiFunction"
    )
    event = copy.deepcopy(EVENT)
    event.update(httpMethod="POST", path="/runs", resource="/runs", body=json.dumps(body))
    answer = json.loads(aws.client("lambda").invoke(FunctionName=physical, Payload=json.dumps(event).encode())["Payload"].read())
    return answer["statusCode"], json.loads(answer["body"])


def history(stack, run_id):
    arn = runs.execution_arn(stack.outputs["StateMachineArn"], run_id)
    return aws.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]


def entered(events):
    return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]


def test_a_run_over_its_maximum_duration_is_stopped_and_fails_saying_so(stack):
    code, accepted = post_run(stack, {"name": "too-long", "wdl": SLEEPY, "options": {"max_run_hours": 0.006}})
    assert code == 202, accepted
    run_id = accepted["run_id"]
    bucket = stack.outputs["BucketName"]
    result = local_run.wait(bucket, stack.outputs["StateMachineArn"], "too-long", run_id, timeout=180)
    assert result.status == "FAILED", result.document
    error = result.document
    assert error["error"] == "TimedOut", error
    assert error["message"].startswith("the run timed out: it was still running at its maximum duration of 22s (0.006111 h")
    assert "StopTimedOutRun" in entered(history(stack, run_id))
    status = s3io.get_json(bucket, f"runs/too-long/results/{run_id}/status.json")
    assert status["status"] == "FAILED" and status["error"]["error"] == "TimedOut"
    assert wait_until(lambda: stack.runtime.running_tasks() == [], 60) is not None, stack.runtime.running_tasks()


@pytest.fixture
def faults(stack):
    def inject(**spec):
        stack.runtime.faults = Faults(**spec)
        return stack.runtime.faults

    yield inject
    stack.runtime.faults = Faults()


def test_a_dead_driver_whose_end_is_lost_ends_by_heartbeat_timeout(stack, faults, tmp_path):
    injected = faults(kill_driver_after_tasks=2, lose_driver_stopped_events=1)
    wdl = tmp_path / "lost.wdl"
    wdl.write_text(SLEEPY)
    bucket = stack.outputs["BucketName"]
    name, run_id = local_run.submit(bucket, wdl, {"sleepy.seconds": 300}, name="lost")
    result = local_run.wait(bucket, stack.outputs["StateMachineArn"], name, run_id, timeout=240)
    assert injected.injected == ["kill_driver", "lose_driver_stopped_events"]
    assert result.status == "FAILED", result.document
    error = result.document
    assert error["error"] == "TimedOut" and error["limit"] == "heartbeat", error
    assert f"its driver sent no heartbeat for {stack.heartbeat_seconds} s" in error["message"]
    events = history(stack, run_id)
    assert any(e["type"] == "TaskTimedOut" for e in events)
    assert "StopTimedOutRun" in entered(events)
    assert wait_until(lambda: stack.runtime.running_tasks() == [], 60) is not None, stack.runtime.running_tasks()
