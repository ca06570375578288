"""The launch Lambda's RunTask of the driver is idempotent: a retried invocation for the same run
and Step Functions task token gets the driver the first one started."""

import botocore.session
import pytest
from botocore.validate import ParamValidator

from miniwdl_fargate import aws, runs
from miniwdl_fargate.local import moto_patches
from miniwdl_fargate.pipeline import launch
from miniwdl_fargate.pipeline.settings import FunctionSettings


@pytest.fixture
def settings(moto_aws):
    moto_patches.honour_run_task_client_token()  # as in local mode: moto alone ignores the token
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="c")
    td = ecs.register_task_definition(
        family="stack-driver", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="1024", memory="2048",
        containerDefinitions=[{"name": "driver", "image": "driver:1"}],
    )["taskDefinition"]["taskDefinitionArn"]
    aws.client("s3").create_bucket(Bucket="runs")
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    return FunctionSettings.model_validate(
        {"RUNS_BUCKET": "runs", "CLUSTER": "c", "DRIVER_TASK_DEFINITION": td, "DRIVER_SUBNETS": subnet, "DRIVER_SECURITY_GROUPS": "sg-1"}
    )


def record(run_id="run-1"):
    return runs.RunRecord(
        run_id=run_id, name="n", bucket="runs", workflow="s3://runs/w.wdl", inputs="s3://runs/i.json",
        results="s3://runs/results/run-1/", submitted_at="2026-01-01T00:00:00+00:00",
    )


def test_a_retried_launch_for_the_same_attempt_starts_one_driver(settings):
    first = launch.launch_driver(settings, record(), "sfn-task-token-A")
    again = launch.launch_driver(settings, record(), "sfn-task-token-A")
    assert again == first
    assert len(aws.client("ecs").list_tasks(cluster="c")["taskArns"]) == 1
    # another state-machine attempt (another task token) or another run: another driver
    assert launch.launch_driver(settings, record(), "sfn-task-token-B") != first
    assert launch.launch_driver(settings, record("run-2"), "sfn-task-token-A") != first


def test_the_driver_token_fits_run_task(settings):
    token = launch.driver_client_token("run-1", "x" * 5000)
    assert len(token) <= 64 and all(33 <= ord(c) <= 126 for c in token)
    model = botocore.session.get_session().get_service_model("ecs")
    request = {"cluster": "c", "taskDefinition": "td", "clientToken": token}
    assert not ParamValidator().validate(request, model.operation_model("RunTask").input_shape).has_errors()
