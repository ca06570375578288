"""Finalize: the last step of every run. A failed run always leaves an error.json."""

from __future__ import annotations

import json
from typing import Any

from .. import aws, runs, s3io


def finalize(record: runs.RunRecord, status: str, error: dict[str, Any] | None) -> dict[str, Any]:
    key = record.results_key("error.json")
    if status == "FAILED":
        s3 = aws.client("s3")
        try:
            s3.head_object(Bucket=record.bucket, Key=key)
        except s3.exceptions.ClientError:
            cause: Any = (error or {}).get("Cause", "")
            try:
                cause = json.loads(cause)
            except (TypeError, ValueError):
                pass
            name = (error or {}).get("Error") or "RunFailed"
            if isinstance(cause, dict):  # ours ({"message": ...}) or a Lambda error ({"errorMessage": ...})
                message = cause.get("message") or cause.get("errorMessage") or json.dumps(cause)[:1000]
            else:
                message = str(cause or name)
            s3io.put_json(
                record.bucket,
                key,
                {"run_id": record.run_id, "status": "FAILED", "error": name, "message": message, "cause": cause},
            )
    return {"run_id": record.run_id, "status": status}
