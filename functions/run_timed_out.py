"""A run timed out (state machine step StopTimedOutRun): stop its driver and tasks, say so."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from pydantic import BaseModel

from miniwdl_fargate.pipeline.settings import FunctionSettings
from miniwdl_fargate.pipeline.timeout import stop_timed_out_run
from miniwdl_fargate.runs import RunRecord

logger = Logger()
tracer = Tracer()


class TimedOutEvent(BaseModel):
    run: RunRecord
    error: dict[str, Any] | None = None  # the Catch's {"Error": "States.Timeout"|"States.HeartbeatTimeout", "Cause"}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@event_parser(model=TimedOutEvent)
def handler(event: TimedOutEvent, context: Any) -> dict[str, str]:
    logger.append_keys(run_id=event.run.run_id)
    result = stop_timed_out_run(event.run, event.error, FunctionSettings.from_env().cluster)
    logger.warning("run timed out", extra={"error": event.error, **result})
    return result
