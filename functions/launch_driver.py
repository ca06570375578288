"""Launch the driver task of a run (state machine step LaunchDriver, waitForTaskToken)."""

from __future__ import annotations

from typing import Any

from observability import lambda_handler, logger
from pydantic import BaseModel

from miniwdl_fargate.pipeline.launch import launch_driver
from miniwdl_fargate.pipeline.settings import LaunchSettings
from miniwdl_fargate.runs import RunRecord

SETTINGS = LaunchSettings


class LaunchEvent(BaseModel):
    run: RunRecord
    task_token: str


@lambda_handler(LaunchEvent)
def handler(event: LaunchEvent, context: Any) -> dict[str, str]:
    logger.append_keys(run_id=event.run.run_id)
    arn = launch_driver(SETTINGS.from_env(), event.run, event.task_token)
    logger.info("driver launched", extra={"task_arn": arn})
    return {"driver_task": arn}
