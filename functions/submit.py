"""Submit a run: from an S3 "Object Created" EventBridge event, or from POST /runs."""

from __future__ import annotations

import uuid
from urllib.parse import unquote_plus
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from pydantic import BaseModel, Field, ValidationError

from miniwdl_fargate.pipeline import submit
from miniwdl_fargate.pipeline.settings import FunctionSettings

logger = Logger()
app = APIGatewayRestResolver()


class RunRequest(BaseModel):
    name: str = Field(description="run name: 1-64 letters, digits, '.', '_' or '-'")
    workflow: str = Field(description="s3:// URI of the main WDL file")
    inputs: dict[str, Any] = Field(default_factory=dict, description="miniwdl inputs JSON object")
    client_token: str | None = Field(default=None, description="idempotency token: a retry with the same token starts no second run")


def _accepted(result: submit.Submitted) -> dict[str, Any]:
    return {
        "run_id": result.record.run_id,
        "execution_arn": result.execution_arn,
        "results": result.record.results,
        "duplicate": result.duplicate,
    }


@app.post("/runs")
def post_run() -> Response:
    try:
        request = RunRequest.model_validate(app.current_event.json_body or {})
    except (ValidationError, ValueError) as exn:
        problems = (
            [{"where": ".".join(str(p) for p in e["loc"]) or "body", "problem": e["msg"]} for e in exn.errors()]
            if isinstance(exn, ValidationError)
            else [{"where": "body", "problem": f"not valid JSON: {exn}"}]
        )
        return Response(400, content_types.APPLICATION_JSON, {"error": "InvalidRequest", "problems": problems})
    logger.append_keys(run_name=request.name)
    try:
        result = submit.submit_request(
            FunctionSettings.from_env(), request.name, request.workflow, request.inputs,
            request.client_token or str(uuid.uuid4()),
        )
    except submit.SubmitError as exn:
        return Response(400, content_types.APPLICATION_JSON, {"error": "InvalidRequest", "problems": exn.problems})
    logger.append_keys(run_id=result.record.run_id)
    logger.info("run submitted", extra={"duplicate": result.duplicate})
    return Response(200 if result.duplicate else 202, content_types.APPLICATION_JSON, _accepted(result))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> Any:
    if "detail-type" not in event:
        return app.resolve(event, context)
    parsed = parse(event=event, model=S3EventNotificationEventBridgeModel)
    bucket, obj = parsed.detail.bucket.name, parsed.detail.object
    logger.append_keys(s3_key=obj.key)
    # S3 notifications URL-encode keys ("runs/my%20run/inputs.json")
    key = unquote_plus(obj.key)
    result = submit.submit_object(FunctionSettings.from_env(), bucket, key, obj.etag, obj.version_id)
    if result is None:
        return {"started": False}
    logger.append_keys(run_id=result.record.run_id)
    logger.info("run submitted", extra={"duplicate": result.duplicate})
    return {"started": not result.duplicate, **_accepted(result)}
