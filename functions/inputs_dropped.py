"""Submit a run dropped into the bucket: an S3 "Object Created" EventBridge event for
runs/<name>/inputs.json. (The API entrance is functions/api.py.)"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from observability import lambda_handler, logger, metrics

from miniwdl_fargate import runs
from miniwdl_fargate.pipeline import start
from miniwdl_fargate.pipeline.settings import SubmitSettings

SETTINGS = SubmitSettings


@lambda_handler(S3EventNotificationEventBridgeModel, publishes_metrics=True)
def handler(event: S3EventNotificationEventBridgeModel, context: Any) -> dict[str, Any]:
    bucket, obj = event.detail.bucket.name, event.detail.object
    key = unquote_plus(obj.key)  # S3 notifications URL-encode keys ("runs/my%20run/inputs.json")
    logger.append_keys(s3_key=key)
    size = int(obj.size) if obj.size is not None else None  # the event's object size: the inputs cap before any read
    if not runs.TRIGGER_RE.match(key):
        # every run's own copy, runs/<name>/results/<run_id>/inputs.json, matches the rule's
        # runs/*/inputs.json too (an event pattern's wildcard * matches "/" as any character:
        # https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html):
        # nothing was submitted, so nothing was rejected either
        logger.info("ignored: not runs/<name>/inputs.json")
        return {"started": False, "ignored": True}
    result = start.from_object(SETTINGS.from_env(), bucket, key, obj.etag, obj.version_id, size, event.detail.reason)
    if result is None:
        metrics.add_metric(name="RunsRejected", unit=MetricUnit.Count, value=1)
        return {"started": False}
    logger.append_keys(run_id=result.record.run_id)
    logger.info("run submitted", extra={"duplicate": result.duplicate})
    if not result.duplicate:
        metrics.add_metric(name="RunsSubmitted", unit=MetricUnit.Count, value=1)
    return {
        "started": not result.duplicate,
        "run_id": result.record.run_id,
        "execution_arn": result.execution_arn,
        "results": result.record.results,
        "duplicate": result.duplicate,
    }
