"""Take a driver slot for a run (state machine step TakeDriverSlot), then launch its driver task
(step LaunchDriver, waitForTaskToken)."""

from __future__ import annotations

from typing import Any, Literal

from observability import lambda_handler, logger
from pydantic import BaseModel

from miniwdl_fargate.pipeline.launch import launch_driver, refuse_ended_run, take_a_slot
from miniwdl_fargate.pipeline.settings import LaunchSettings
from miniwdl_fargate.runs import RunRecord

SETTINGS = LaunchSettings


class LaunchEvent(BaseModel):
    run: RunRecord
    step: Literal["take_slot", "launch"] = "launch"
    task_token: str | None = None  # (LaunchDriver's)


@lambda_handler(LaunchEvent)
def handler(event: LaunchEvent, context: Any) -> dict[str, str]:
    logger.append_keys(run_id=event.run.run_id)
    settings = SETTINGS.from_env()
    if event.step == "take_slot":
        refuse_ended_run(event.run)
        key = take_a_slot(settings, event.run)
        logger.info("driver slot taken", extra={"driver_slot": key})
        return {"driver_slot": key}
    if not event.task_token:
        raise ValueError("LaunchDriver's event has no task_token")
    arn = launch_driver(settings, event.run, event.task_token)
    logger.info("driver launched", extra={"task_arn": arn})
    return {"driver_task": arn}
