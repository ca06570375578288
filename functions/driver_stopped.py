"""The driver task stopped ("ECS Task State Change"): tell the waiting state machine."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from observability import lambda_handler, logger

from miniwdl_fargate.pipeline.driver_outcome import EcsTaskStateChange, send_outcome
from miniwdl_fargate.pipeline.settings import DriverStoppedSettings

SETTINGS = DriverStoppedSettings


class EcsTaskStateChangeEvent(EventBridgeModel):
    detail: EcsTaskStateChange


@lambda_handler(EcsTaskStateChangeEvent)
def handler(event: EcsTaskStateChangeEvent, context: Any) -> dict[str, str]:
    settings = SETTINGS.from_env()
    container = settings.driver_container_name
    logger.append_keys(run_id=event.detail.environment(container).get("RUN_ID"), task_arn=event.detail.taskArn)
    result = send_outcome(event.detail, container, settings.cluster, settings.file_system_id, settings.collection)
    logger.info("driver stop handled", extra={"result": result})
    return {"result": result}
