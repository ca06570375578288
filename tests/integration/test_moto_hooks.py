"""local/moto/hooks.py and local/ecs_state.py against in-process moto: RunTask hands the runner a
plain TaskSpec and StopTask the task's ARN; what ecs_state writes is what DescribeTasks and the
"ECS Task State Change" events show. (Without a runtime, the hooks leave the work to moto.)"""

import json

import pytest

from miniwdl_fargate import aws, sweep
from miniwdl_fargate.local.ecs_runner import TaskSpec
from miniwdl_fargate.local.ecs_state import MotoTaskState
from miniwdl_fargate.local.faults import Faults
from miniwdl_fargate.local.moto import hooks
from tests.waiting import wait_for


class FakeRuntime:
    def __init__(self):
        self.faults = Faults(describe_missing=0)
        self.started: list[TaskSpec] = []
        self.stops: list[tuple[str, str]] = []

    def ecs_task_started(self, task):
        self.started.append(task)

    def ecs_stop_task(self, task_arn, reason):
        self.stops.append((task_arn, reason))
        return True


@pytest.fixture
def hooked(moto_aws):
    """The ECS hooks, with a fake runtime and moto's tasks changing status only as ecs_state says."""
    from moto.moto_api import state_manager

    hooks._ecs_run_and_stop()
    runtime, state = FakeRuntime(), MotoTaskState("us-east-1")
    hooks._current.update(runtime=runtime, state=state)
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    yield runtime, state
    state_manager.unset_transition("ecs::task")
    hooks._current.clear()


def run_task(family="mwf-task-x", **kwargs):
    ecs, ec2 = aws.client("ecs"), aws.client("ec2")
    ecs.create_cluster(clusterName="wdl")
    ecs.register_task_definition(
        family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="1024", memory="2048",
        containerDefinitions=[{"name": "task", "image": "ubuntu:22.04", "command": ["true"]}],
        volumes=[{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}],
    )
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    return ecs.run_task(
        cluster="wdl", taskDefinition=family, launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}}, **kwargs,
    )["tasks"][0]


def test_run_task_hands_the_runner_a_plain_task_spec(hooked):
    runtime, _ = hooked
    overrides = {"containerOverrides": [{"name": "task", "command": ["echo", "hi"]}], "memory": "4096"}
    tags = [{"key": sweep.RUN_TAG, "value": "r1"}]
    answer = run_task(overrides=overrides, tags=tags)
    (spec,) = runtime.started
    assert isinstance(spec, TaskSpec)
    assert (spec.task_arn, spec.cluster_arn, spec.task_definition_arn) == (
        answer["taskArn"], answer["clusterArn"], answer["taskDefinitionArn"],
    )
    assert spec.id == answer["taskArn"].rsplit("/", 1)[-1]
    assert (spec.family, spec.cpu, spec.memory) == ("mwf-task-x", "1024", "2048")
    assert {k: spec.container[k] for k in ("name", "image", "command")} == {
        "name": "task", "image": "ubuntu:22.04", "command": ["true"],
    }
    assert spec.overrides == overrides and spec.tags == tags
    assert [v["name"] for v in spec.volumes] == ["efs"]


def test_stop_task_hands_the_runner_the_task_arn_and_reason(hooked):
    runtime, _ = hooked
    arn = run_task()["taskArn"]
    stopped = aws.client("ecs").stop_task(cluster="wdl", task=arn.rsplit("/", 1)[-1], reason="run cancelled")
    assert runtime.stops == [(arn, "run cancelled")] and stopped["task"]["taskArn"] == arn


def test_what_ecs_state_writes_is_what_describe_tasks_and_the_events_show(hooked):
    _, state = hooked
    sqs, events = aws.client("sqs"), aws.client("events")
    queue = sqs.create_queue(QueueName="ecs-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="ecs", EventPattern=json.dumps({"source": ["aws.ecs"]}))
    events.put_targets(Rule="ecs", Targets=[{"Id": "q", "Arn": queue_arn}])
    arn = run_task()["taskArn"]
    ecs = aws.client("ecs")

    def described():
        return ecs.describe_tasks(cluster="wdl", tasks=[arn])["tasks"][0]

    state.provisioning(arn)
    assert (described()["lastStatus"], described()["version"]) == ("PROVISIONING", 1)
    state.set_status(arn, "RUNNING")
    task = described()
    assert (task["lastStatus"], task["containers"][0]["lastStatus"], task["version"]) == ("RUNNING", "RUNNING", 2)
    assert "startedAt" in task
    state.stop_requested(arn, "run cancelled")
    assert (described()["desiredStatus"], described()["stopCode"], described()["stoppedReason"]) == (
        "STOPPED", "UserInitiated", "run cancelled",
    )
    state.stopped(arn, "UserInitiated", "run cancelled", exit_code=143, container_reason="killed")
    task = described()
    assert (task["lastStatus"], task["stopCode"], task["stoppedReason"], task["version"]) == (
        "STOPPED", "UserInitiated", "run cancelled", 3,
    )
    assert (task["containers"][0]["exitCode"], task["containers"][0]["reason"]) == (143, "killed")
    assert "stoppedAt" in task
    state.emit(arn)
    message = wait_for(lambda: sqs.receive_message(QueueUrl=queue).get("Messages"), 30.0, "the state change event")[0]
    event = json.loads(message["Body"])
    assert event["detail-type"] == "ECS Task State Change" and event["resources"] == [arn]
    assert (event["detail"]["lastStatus"], event["detail"]["version"], event["detail"]["containers"][0]["exitCode"]) == (
        "STOPPED", 3, 143,
    )


def test_without_a_runtime_the_hooks_leave_run_and_stop_task_to_moto(moto_aws):
    hooks._ecs_run_and_stop()
    hooks._current.clear()
    arn = run_task(family="plain")["taskArn"]
    stopped = aws.client("ecs").stop_task(cluster="wdl", task=arn, reason="by moto")["task"]
    assert (stopped["taskArn"], stopped["desiredStatus"], stopped["stoppedReason"]) == (arn, "STOPPED", "by moto")


def test_a_managed_instances_task_reaches_the_runner_with_its_provider_and_its_volumes(hooked):
    from miniwdl_fargate.local.moto import fixes

    fixes.ecs_managed_instances()
    fixes.run_task_volume_configurations()
    runtime, _ = hooked
    ecs, ec2 = aws.client("ecs"), aws.client("ec2")
    ecs.create_cluster(clusterName="wdl")
    fixes.managed_instances_provider("wdl-managed", "wdl")
    ecs.register_task_definition(
        family="mwf-task-mi", requiresCompatibilities=["MANAGED_INSTANCES"], networkMode="awsvpc", cpu="32768",
        memory="65536", volumes=[{"name": "scratch", "configuredAtLaunch": True}],
        containerDefinitions=[{"name": "task", "image": "ubuntu:22.04", "command": ["true"],
                               "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/mnt/scratch"}]}],
    )
    volumes = [{"name": "scratch", "managedEBSVolume": {"sizeInGiB": 500, "roleArn": "arn:aws:iam::123456789012:role/v"}}]
    answer = ecs.run_task(
        cluster="wdl", taskDefinition="mwf-task-mi", capacityProviderStrategy=[{"capacityProvider": "wdl-managed", "weight": 1}],
        networkConfiguration={"awsvpcConfiguration": {"subnets": [ec2.describe_subnets()["Subnets"][0]["SubnetId"]], "securityGroups": ["sg-1"]}},
        volumeConfigurations=volumes,
    )["tasks"][0]
    (spec,) = runtime.started
    assert spec.task_arn == answer["taskArn"]
    assert spec.capacity_provider_name == "wdl-managed" == answer["capacityProviderName"]
    assert spec.volume_configurations == volumes
    assert spec.volumes == [{"name": "scratch", "configuredAtLaunch": True}]
