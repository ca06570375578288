"""Local mode's short waits: how often the driver polls ECS and a client looks at its run, short
for a local stack, unchanged for a deployment."""

import io
from pathlib import Path
from types import SimpleNamespace

from miniwdl_fargate import client, status, upload
from miniwdl_fargate.local import stack

REPO = Path(__file__).resolve().parents[2]


def template_parameter(name):
    return stack.read_template(REPO / "template.yaml")["Parameters"][name]


def test_a_local_stack_polls_ecs_as_a_deployment_does():
    """The local ECS runner wakes a driver's poller when one of its tasks ends (``wakeups``), so
    a local stack needs no shorter interval than a deployment's to see it at once."""
    from miniwdl_fargate import config

    poll = template_parameter("TaskPollSeconds")
    # a deployment's floor is the backend's own default (the interval grows with the tasks watched)
    assert float(poll["Default"]) == float(config._defaults()["poll_interval"]) == 0.5
    assert stack.POLL_SECONDS == float(poll["Default"]) > float(poll["MinValue"])
    made = stack.LocalStack()  # (stopped after: its own state folder, empty, goes)
    assert made.poll_seconds == stack.POLL_SECONDS
    made.stop()


def test_follow_looks_often_at_a_local_stack_and_every_two_seconds_at_a_deployment():
    deployed = client.Deployment("stack", "us-east-1", {"BucketName": "b"})
    local = client.Deployment("stack", "us-east-1", {"BucketName": "b"}, local=True)
    assert client.follow_seconds(deployed) == client.FOLLOW_SECONDS == 2.0
    assert client.follow_seconds(local) == client.LOCAL_FOLLOW_SECONDS < client.FOLLOW_SECONDS


def test_follow_waits_its_deployments_interval_between_looks(monkeypatch):
    running = status.RunStatus(run_id="r", name="n", status="RUNNING", submitted_at="2026-01-01T00:00:00+00:00")
    answers = iter([None, running, running.model_copy(update={"status": "SUCCEEDED"})])
    slept = []
    monkeypatch.setattr(client.status, "read", lambda bucket, run_id: next(answers))
    monkeypatch.setattr(client.manage, "describe_run", lambda bucket, run_id: {"run_id": run_id, "status": "SUCCEEDED"})
    monkeypatch.setattr(client.time, "sleep", slept.append)
    local = client.Deployment("stack", "us-east-1", {"BucketName": "b"}, local=True)
    assert client.follow(local, "r", out=io.StringIO())["status"] == "SUCCEEDED"
    assert slept == [client.LOCAL_FOLLOW_SECONDS] * 2


def test_wait_looks_at_the_execution_every_interval(monkeypatch):
    states = iter(["RUNNING", "RUNNING", "SUCCEEDED"])

    class StepFunctions:
        exceptions = SimpleNamespace(ExecutionDoesNotExist=LookupError)

        def describe_execution(self, executionArn):
            assert executionArn == "arn:aws:states:us-east-1:123456789012:execution:machine:run-1"
            return {"status": next(states)}

    slept = []
    monkeypatch.setattr(upload.aws, "client", lambda service: StepFunctions())
    monkeypatch.setattr(upload.s3io, "find_json", lambda bucket, key: {"outputs": {}})
    monkeypatch.setattr(upload.time, "sleep", slept.append)
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:machine"
    result = upload.wait("bucket", machine, "run", "run-1", interval=0.05)
    assert result.status == "SUCCEEDED"
    assert slept == [0.05, 0.05]


def test_the_default_wait_interval_is_unchanged():
    import inspect

    assert inspect.signature(upload.wait).parameters["interval"].default == 0.25
