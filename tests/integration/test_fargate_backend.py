"""The aws_fargate backend's ECS requests, checked against botocore's ECS model and moto."""

import logging
import os

import botocore.session
import pytest
from botocore.validate import ParamValidator
from WDL.runtime import config as wdl_config

from miniwdl_fargate import aws
from miniwdl_fargate.backend.fargate import FargateTaskContainer

ECS_MODEL = botocore.session.get_session().get_service_model("ecs")


def validate(operation, params):
    report = ParamValidator().validate(params, ECS_MODEL.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


@pytest.fixture
def backend(moto_aws, tmp_path, monkeypatch):
    ec2 = aws.client("ec2")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"][:2]]
    sg = ec2.create_security_group(GroupName="aegea.efs", Description="efs")["GroupId"]
    aws.client("ecs").create_cluster(clusterName="wdl")
    efs = tmp_path / "efs"
    env = {
        "CLUSTER": "wdl",
        "SUBNETS": ",".join(subnets),
        "EFS_ID": "fs-12345678",
        "EFS_MOUNTPOINT": str(efs),
        "EXECUTION_ROLE": "arn:aws:iam::123456789012:role/exec",
        "LOG_GROUP": "/wdl/tasks",
        "POLL_INTERVAL": "0.1",
    }
    for key, value in env.items():
        monkeypatch.setenv(f"MINIWDL__AWS_FARGATE__{key}", value)
    cfg = wdl_config.Loader(logging.getLogger("test"), filenames=[])
    FargateTaskContainer._task_definitions.clear()
    FargateTaskContainer.global_init(cfg, logging.getLogger("test"))
    host_dir = efs / "runs" / "r1" / "call-align"
    os.makedirs(host_dir)
    container = FargateTaskContainer(cfg, "call-align", str(host_dir))
    container.runtime_values.update({"docker": "biocontainers/bwa:0.7.17", "cpu": 2, "memory_reservation": 3 * 2**30})
    return container, sg, subnets


def test_run_task_request_matches_the_ecs_model(backend):
    container, sg, subnets = backend
    logger = logging.getLogger("test")
    request = container.run_task_request(logger, container.view_script())
    validate("RunTask", request)
    assert request["launchType"] == "FARGATE"
    # WDL runtime cpu 2 / memory 3 GiB -> the smallest Fargate size: 2 vCPU with 4 GB
    assert request["overrides"]["cpu"] == "2048"
    assert request["overrides"]["memory"] == "4096"
    assert request["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": subnets,
        "securityGroups": [sg],  # aegea.efs resolved to its id
        "assignPublicIp": "ENABLED",
    }
    command = request["overrides"]["containerOverrides"][0]["command"]
    assert command[:2] == ["/bin/sh", "-c"]
    assert "/mnt/miniwdl_task_container/work" in command[2]
    assert f"ln -sfn {container.host_work_dir()} /mnt/miniwdl_task_container/work" in command[2]


def test_task_definition_mounts_efs_at_the_driver_path_and_is_reused(backend):
    container, _, _ = backend
    logger = logging.getLogger("test")
    spec = FargateTaskContainer.task_definition_spec("biocontainers/bwa:0.7.17")
    validate("RegisterTaskDefinition", {"family": "f", **spec})
    arn = container.task_definition(logger, "biocontainers/bwa:0.7.17")
    td = aws.client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
    assert td["volumes"] == [
        {"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-12345678", "rootDirectory": "/", "transitEncryption": "ENABLED"}}
    ]
    mount = td["containerDefinitions"][0]["mountPoints"][0]
    assert mount["containerPath"] == FargateTaskContainer.settings.efs_mountpoint
    assert td["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-group"] == "/wdl/tasks"
    # a second request for the same image reuses it, also across processes (looked up by family)
    FargateTaskContainer._task_definitions.clear()
    assert container.task_definition(logger, "biocontainers/bwa:0.7.17") == arn
    assert len(aws.client("ecs").list_task_definitions()["taskDefinitionArns"]) == 1


def test_launch_records_a_fargate_task_in_ecs(backend):
    container, _, _ = backend
    logger = logging.getLogger("test")
    watch = container._start(logger, container.view_script())
    task = aws.client("ecs").describe_tasks(cluster="wdl", tasks=[watch.arn], include=["TAGS"])["tasks"][0]
    assert task["overrides"]["cpu"] == "2048"
    assert task["overrides"]["memory"] == "4096"
    assert {"key": "miniwdl-fargate:run", "value": "standalone"} in task["tags"]
    assert container.failure_info["log_stream"] == f"miniwdl/task/{watch.arn.rsplit('/', 1)[1]}"
    container._stop(logger, watch, "test over")
