"""What the aws_fargate backend's tests share: checking a request against botocore's ECS model,
a task's evaluated runtime section as miniwdl hands it to ``process_runtime``, and a stack's
driver side in moto (``driver_side``)."""

import botocore.session
import WDL
from botocore.validate import ParamValidator

ECS_MODEL = botocore.session.get_session().get_service_model("ecs")


def validate(operation, params):
    """Fail unless ``params`` is a valid request of ECS ``operation`` by botocore's model."""
    report = ParamValidator().validate(params, ECS_MODEL.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


def runtime(**values):
    """A task's evaluated runtime section, as miniwdl hands it to process_runtime."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool):
            out[key] = WDL.Value.Boolean(value)
        elif isinstance(value, int):
            out[key] = WDL.Value.Int(value)
        elif isinstance(value, float):
            out[key] = WDL.Value.Float(value)
        elif value is None:
            out[key] = WDL.Value.Null()
        elif isinstance(value, list):
            out[key] = WDL.Value.Array(WDL.Type.String(), [WDL.Value.String(v) for v in value])
        else:
            out[key] = WDL.Value.String(value)
    return out


def driver_side():
    """What the stack's functions find in moto when they start a task of the driver's task
    definition: cluster ``c``, the family ``stack-driver``, the runs bucket; the environment of
    such a function (tests.function_env) for it, with the driver task definition's ARN."""
    from miniwdl_fargate import aws
    from tests.function_env import environment

    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="c")
    td = ecs.register_task_definition(
        family="stack-driver", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="1024", memory="2048",
        containerDefinitions=[{"name": "driver", "image": "driver:1"}],
    )["taskDefinition"]["taskDefinitionArn"]
    aws.client("s3").create_bucket(Bucket="runs")
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    return environment(CLUSTER="c", DRIVER_TASK_DEFINITION=td, DRIVER_SUBNETS=subnet, DRIVER_SECURITY_GROUPS="sg-1")
