"""A run timed out (state machine step StopTimedOutRun): stop its driver and tasks, say so."""

from __future__ import annotations

from typing import Any

from observability import lambda_handler, logger
from pydantic import BaseModel

from miniwdl_fargate.pipeline.settings import ClusterSettings
from miniwdl_fargate.pipeline.timeout import stop_timed_out_run
from miniwdl_fargate.runs import RunRecord

SETTINGS = ClusterSettings


class TimedOutEvent(BaseModel):
    run: RunRecord
    error: dict[str, Any] | None = None  # the Catch's {"Error": "States.Timeout"|"States.HeartbeatTimeout", "Cause"}


@lambda_handler(TimedOutEvent)
def handler(event: TimedOutEvent, context: Any) -> dict[str, str]:
    logger.append_keys(run_id=event.run.run_id)
    result = stop_timed_out_run(event.run, event.error, SETTINGS.from_env().cluster)
    logger.warning("run timed out", extra={"error": event.error, **result})
    return result
