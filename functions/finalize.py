"""Finalize a run (state machine steps RecordSuccess / RecordFailure)."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from observability import lambda_handler, logger, metrics
from pydantic import BaseModel

from miniwdl_fargate.pipeline.finalize import finalize
from miniwdl_fargate.pipeline.settings import FinalizeSettings
from miniwdl_fargate.runs import RunRecord

SETTINGS = FinalizeSettings


class FinalizeEvent(BaseModel):
    run: RunRecord
    status: Literal["SUCCEEDED", "FAILED"]
    error: dict[str, Any] | None = None


@lambda_handler(FinalizeEvent, publishes_metrics=True)
def handler(event: FinalizeEvent, context: Any) -> dict[str, Any]:
    logger.append_keys(run_id=event.run.run_id)
    settings = SETTINGS.from_env()
    result = finalize(
        event.run, event.status, event.error, settings.cluster, settings.file_system_id, settings.collection
    )
    metrics.add_metric(name=f"Runs{result['status'].title()}", unit=MetricUnit.Count, value=1)
    if result.get("duration_s") is not None:
        metrics.add_metric(name="RunDuration", unit=MetricUnit.Seconds, value=result["duration_s"])
    logger.info("run finalized", extra=result)
    return result
