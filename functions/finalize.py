"""Finalize a run: the state machine's last step (RecordSuccess / RecordFailure), or, from the
"Step Functions Execution Status Change" event, a run whose execution ended without that step
(stopped from outside, or its finalize step failed)."""

from __future__ import annotations

from typing import Any, Literal, Union

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from observability import lambda_handler, logger, metrics
from pydantic import BaseModel

from miniwdl_fargate.pipeline.finalize import ExecutionStatusChange, execution_ended, finalize
from miniwdl_fargate.pipeline.settings import FinalizeSettings
from miniwdl_fargate.runs import RunRecord

SETTINGS = FinalizeSettings


class FinalizeEvent(BaseModel):
    run: RunRecord
    status: Literal["SUCCEEDED", "FAILED"]
    error: dict[str, Any] | None = None


class ExecutionEndedEvent(EventBridgeModel):
    detail: ExecutionStatusChange


@lambda_handler(Union[FinalizeEvent, ExecutionEndedEvent], publishes_metrics=True)
def handler(event: FinalizeEvent | ExecutionEndedEvent, context: Any) -> dict[str, Any]:
    settings = SETTINGS.from_env()
    if isinstance(event, ExecutionEndedEvent):
        logger.append_keys(execution_arn=event.detail.executionArn)
        result = execution_ended(event.detail, settings.cluster, settings.file_system_id, settings.collection)
        if result.get("result") != "finalized":
            logger.info("execution end needs no finalizing", extra=result)
            return result
    else:
        logger.append_keys(run_id=event.run.run_id)
        result = finalize(
            event.run, event.status, event.error, settings.cluster, settings.file_system_id, settings.collection
        )
    metrics.add_metric(name=f"Runs{result['status'].title()}", unit=MetricUnit.Count, value=1)
    if result.get("duration_s") is not None:
        metrics.add_metric(name="RunDuration", unit=MetricUnit.Seconds, value=result["duration_s"])
    logger.info("run finalized", extra=result)
    return result
