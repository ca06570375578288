"""Finalize a run (state machine steps RecordSuccess / RecordFailure)."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from pydantic import BaseModel

from miniwdl_fargate.pipeline.finalize import finalize
from miniwdl_fargate.pipeline.settings import FunctionSettings
from miniwdl_fargate.runs import RunRecord

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class FinalizeEvent(BaseModel):
    run: RunRecord
    status: Literal["SUCCEEDED", "FAILED"]
    error: dict[str, Any] | None = None


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=FinalizeEvent)
def handler(event: FinalizeEvent, context: Any) -> dict[str, Any]:
    logger.append_keys(run_id=event.run.run_id)
    settings = FunctionSettings.from_env()
    result = finalize(event.run, event.status, event.error, settings.cluster, settings.file_system_id)
    metrics.add_metric(name=f"Runs{result['status'].title()}", unit=MetricUnit.Count, value=1)
    if result.get("duration_s") is not None:
        metrics.add_metric(name="RunDuration", unit=MetricUnit.Seconds, value=result["duration_s"])
    logger.info("run finalized", extra=result)
    return result
