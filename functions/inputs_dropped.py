"""Submit a run dropped into the bucket: an S3 "Object Created" EventBridge event for
runs/<name>/inputs.json. (The API entrance is functions/api.py.)"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

from miniwdl_fargate.pipeline import start
from miniwdl_fargate.pipeline.settings import FunctionSettings

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=S3EventNotificationEventBridgeModel)
def handler(event: S3EventNotificationEventBridgeModel, context: Any) -> dict[str, Any]:
    bucket, obj = event.detail.bucket.name, event.detail.object
    key = unquote_plus(obj.key)  # S3 notifications URL-encode keys ("runs/my%20run/inputs.json")
    logger.append_keys(s3_key=key)
    size = int(obj.size) if obj.size is not None else None  # the event's object size: the inputs cap before any read
    result = start.from_object(FunctionSettings.from_env(), bucket, key, obj.etag, obj.version_id, size)
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
