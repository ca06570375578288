"""Finalize: the last step of every run. Its status becomes final (SUCCEEDED or FAILED, with
timings, and where its outputs or its error are), a failed run always has an error.json, and a
run-finished event tells whoever listens."""

from __future__ import annotations

import json
from typing import Any

from .. import runs, s3io, status
from . import manage


def _error_document(record: runs.RunRecord, error: dict[str, Any] | None) -> dict[str, Any]:
    """error.json for a run whose driver wrote none (it never started, or died)."""
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
    return {"run_id": record.run_id, "status": "FAILED", "error": name, "message": message, "cause": cause}


def finalize(record: runs.RunRecord, state: str, error: dict[str, Any] | None) -> dict[str, Any]:
    if state == "SUCCEEDED":
        doc = s3io.find_json(record.bucket, record.results_key("outputs.json")) or {}
        fields: dict[str, Any] = {"outputs": record.results + "outputs.json", "error": None}
    else:
        doc = s3io.find_json(record.bucket, record.results_key("error.json"))
        if doc is None:
            doc = _error_document(record, error)
            s3io.put_json(record.bucket, record.results_key("error.json"), doc)
        fields = {
            "error": {
                "error": doc.get("error"),
                "message": doc.get("message"),
                "error_json": record.results + "error.json",
            }
        }
    if doc.get("report"):
        fields["report"] = doc["report"]
    final = status.update(
        record.bucket,
        record.run_id,
        lambda current: current.model_copy(update={"status": state, **fields}),
        initial=status.new(record),
    )
    if final is not None and final.status == state:  # not CANCELLED meanwhile (that state stays)
        manage.announce(final)
    return {"run_id": record.run_id, "status": final.status if final else state,
            "duration_s": final.duration_s if final else None}
