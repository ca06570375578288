"""Helpers for tests of local mode's Fargate runner, task by task: RunTask on a task definition
shaped like the aws_fargate backend's (entryPoint ["/bin/sh", "-c"], the EFS access point
mounted at /mnt/efs, initProcessEnabled), and what ECS then reports."""

import os
import uuid

from miniwdl_fargate import aws, sweep
from tests.waiting import wait_for

EFS = "/mnt/efs"


def every_task_arn(cluster):
    """The ARNs of the cluster's tasks, running and stopped (ListTasks lists RUNNING ones unless
    asked for STOPPED: a task of a run already over is listed only so)."""
    ecs = aws.client("ecs")
    found = [arn for state in ("RUNNING", "STOPPED") for arn in ecs.list_tasks(cluster=cluster, desiredStatus=state)["taskArns"]]
    return list(dict.fromkeys(found))  # (a task stopping between the two lists is in both)


def tasks_of_run(stack, run_id, only=None):
    """Every ECS task tagged with the run, running or stopped, with its tags: its driver and its
    WDL tasks, or ``only="wdl"`` the WDL tasks', ``only="driver"`` the driver's."""
    ecs = aws.client("ecs")
    cluster = stack.outputs["ClusterName"]
    arns = every_task_arn(cluster)
    marks = {None: "", "wdl": "-task-", "driver": "-driver"}
    found = []
    for i in range(0, len(arns), 100):  # (DescribeTasks takes at most 100)
        for task in ecs.describe_tasks(cluster=cluster, tasks=arns[i : i + 100], include=["TAGS"])["tasks"]:
            if sweep.tags_of(task).get(sweep.RUN_TAG) == run_id and marks[only] in task["taskDefinitionArn"]:
                found.append(task)
    return found


def image(name):
    """One of the images tests/containers/images.sh builds."""
    return f"miniwdl-fargate-test/{name}:1"


def register(stack, image_name, entry_point=("/bin/sh", "-c"), **container):
    spec = {
        "name": "task", "image": image_name, "essential": True, "memory": 512, "stopTimeout": 5,
        "mountPoints": [{"sourceVolume": "efs", "containerPath": EFS, "readOnly": False}],
        "linuxParameters": {"initProcessEnabled": True},
        **container,
    }
    if entry_point:
        spec["entryPoint"] = list(entry_point)
    efs = {
        "fileSystemId": stack.outputs["FileSystemId"], "transitEncryption": "ENABLED",
        "authorizationConfig": {"accessPointId": stack.outputs["AccessPointId"], "iam": "DISABLED"},
    }
    return aws.client("ecs").register_task_definition(
        family=f"test-{uuid.uuid4().hex[:8]}", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
        cpu="256", memory="512", containerDefinitions=[spec], volumes=[{"name": "efs", "efsVolumeConfiguration": efs}],
    )["taskDefinition"]["taskDefinitionArn"]


def run(stack, td, command, memory=None):
    override = {"name": "task", "command": list(command)}
    overrides = {"containerOverrides": [override]}
    if memory:
        override["memory"] = memory
        overrides["memory"] = str(memory)
    return aws.client("ecs").run_task(
        cluster=stack.outputs["ClusterName"], taskDefinition=td, launchType="FARGATE", overrides=overrides,
        networkConfiguration={"awsvpcConfiguration": {
            "subnets": stack.outputs["TaskSubnetIds"].split(","), "securityGroups": [stack.outputs["TaskSecurityGroupId"]],
        }},
    )["tasks"][0]["taskArn"]


def describe(stack, arn):
    """The task as DescribeTasks sees it; right after RunTask ECS may not know it yet (local mode
    answers MISSING for a new task's first describe, as ECS may), which reads as not stopped."""
    found = aws.client("ecs").describe_tasks(cluster=stack.outputs["ClusterName"], tasks=[arn])
    return found["tasks"][0] if found["tasks"] else {"lastStatus": "MISSING", "failures": found["failures"]}


def stopped(stack, arn, timeout=60.0):
    wait_for(lambda: describe(stack, arn)["lastStatus"] == "STOPPED", timeout, what=lambda: f"STOPPED: {describe(stack, arn)}")
    return describe(stack, arn)


def efs_dir(stack):
    return stack.runtime.efs_host_dir(
        {"name": "efs", "efsVolumeConfiguration": {
            "fileSystemId": stack.outputs["FileSystemId"],
            "authorizationConfig": {"accessPointId": stack.outputs["AccessPointId"]},
        }}
    )


def fresh_dir(stack):
    """A task directory the driver (root, on the host) made, as miniwdl would."""
    name = uuid.uuid4().hex[:8]
    os.makedirs(os.path.join(efs_dir(stack), "t", name))
    return f"{EFS}/t/{name}", os.path.join(efs_dir(stack), "t", name)


def log_of(stack, arn, family_td):
    family = family_td.rsplit("/", 1)[-1].split(":")[0]
    path = os.path.join(stack.state_dir, "logs", "ecs", family, arn.rsplit("/", 1)[-1] + ".log")
    if not os.path.exists(path):  # not started yet
        return ""
    with open(path) as infile:
        return infile.read()
