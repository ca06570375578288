"""What the aws_fargate backend's tests share: checking a request against botocore's ECS model,
and a task's evaluated runtime section as miniwdl hands it to ``process_runtime``."""

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
