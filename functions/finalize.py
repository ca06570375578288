"""Finalize a run (state machine steps RecordSuccess / RecordFailure)."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import event_parser
from pydantic import BaseModel

from miniwdl_fargate.pipeline.finalize import finalize
from miniwdl_fargate.runs import RunRecord

logger = Logger()


class FinalizeEvent(BaseModel):
    run: RunRecord
    status: Literal["SUCCEEDED", "FAILED"]
    error: dict[str, Any] | None = None


@logger.inject_lambda_context(clear_state=True)
@event_parser(model=FinalizeEvent)
def handler(event: FinalizeEvent, context: Any) -> dict[str, Any]:
    logger.append_keys(run_id=event.run.run_id)
    result = finalize(event.run, event.status, event.error)
    logger.info("run finalized", extra=result)
    return result
