"""Launch the driver task of a run (state machine step LaunchDriver, waitForTaskToken)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from pydantic import BaseModel

from miniwdl_fargate.pipeline.launch import launch_driver
from miniwdl_fargate.pipeline.settings import FunctionSettings
from miniwdl_fargate.runs import RunRecord

logger = Logger()
tracer = Tracer()


class LaunchEvent(BaseModel):
    run: RunRecord
    task_token: str


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_parser(model=LaunchEvent)
def handler(event: LaunchEvent, context: Any) -> dict[str, str]:
    logger.append_keys(run_id=event.run.run_id)
    arn = launch_driver(FunctionSettings.from_env(), event.run, event.task_token)
    logger.info("driver launched", extra={"task_arn": arn})
    return {"driver_task": arn}
