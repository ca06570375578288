"""A run's wait for its driver timed out: its maximum duration (``States.Timeout``), or its
driver's heartbeat stopped (``States.HeartbeatTimeout``: the driver died or hung and nothing
reported its end, e.g. its STOPPED event was lost).

Step Functions names the two errors in Catch
(https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html); where only
``States.Timeout`` is said, the time the run has taken against its maximum tells them apart.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from .. import runs, s3io, status, sweep

log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
MAX_DURATION = "max_duration"
HEARTBEAT = "heartbeat"


def elapsed_seconds(current: status.RunStatus | None, now: datetime | None = None) -> float | None:
    """Seconds since the run was submitted, if its status says when."""
    if current is None:
        return None
    try:
        submitted = datetime.fromisoformat(current.submitted_at)
    except ValueError:
        return None
    return ((now or datetime.now(timezone.utc)) - submitted).total_seconds()


def which_limit(error_name: str, record: runs.RunRecord, elapsed: float | None) -> str:
    if error_name == HEARTBEAT_TIMEOUT:
        return HEARTBEAT
    if elapsed is not None and elapsed < record.max_run_seconds:
        return HEARTBEAT  # (a service that says States.Timeout for both)
    return MAX_DURATION


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def timed_out_error(record: runs.RunRecord, limit: str, elapsed: float | None) -> dict[str, Any]:
    """error.json of a run that timed out: which limit, and after how long."""
    after = f" after {clock(elapsed)}" if elapsed is not None else ""
    if limit == MAX_DURATION:
        hours = record.max_run_seconds / 3600
        message = (
            f"the run timed out: it was still running at its maximum duration of {clock(record.max_run_seconds)} "
            f"({hours:.4g} h: options.max_run_hours, else the stack's MaxRunHours); its driver and every task "
            f"were stopped{after}"
        )
    else:
        message = (
            f"the run timed out: its driver sent no heartbeat for {record.heartbeat_seconds} s "
            f"(DriverHeartbeatSeconds: it died or hung without its end being reported); whatever of the run "
            f"still ran was stopped{after}"
        )
    doc: dict[str, Any] = {
        "run_id": record.run_id, "status": "FAILED", "error": "TimedOut", "message": message, "limit": limit,
        "max_run_seconds": record.max_run_seconds, "heartbeat_seconds": record.heartbeat_seconds,
    }
    if elapsed is not None:
        doc["elapsed_s"] = round(elapsed, 1)
    return doc


def stop_timed_out_run(record: runs.RunRecord, error: dict[str, Any] | None, cluster: str) -> dict[str, str]:
    """End a run whose wait timed out; ``{"status": "SUCCEEDED"|"FAILED"}`` for the state machine.

    A driver that finished (outputs.json written) and whose end was lost succeeded. Otherwise
    the run is FAILED: status.json first (so the driver, stopping, keeps this story), then every
    task of the run, its driver included, is stopped (StopTask by the run tag, as a cancel does),
    then error.json says it timed out (a driver that already wrote its own error.json keeps it:
    that is why it ended).
    """
    bucket, prefix = s3io.split(record.results)
    outputs = s3io.find_json(bucket, prefix + "outputs.json")
    current = status.read(bucket, record.run_id)
    elapsed = elapsed_seconds(current)
    name = (error or {}).get("Error") or "States.Timeout"
    if outputs is not None and outputs.get("status") == "SUCCEEDED":
        log.warning("run %s: %s, but its driver had finished: SUCCEEDED (its completion was lost)", record.run_id, name)
        _stop_all(cluster, record.run_id, "the run had finished: stopping what is left of it")
        return {"status": "SUCCEEDED"}
    written = s3io.find_json(bucket, prefix + "error.json")
    limit = which_limit(name, record, elapsed)
    doc = timed_out_error(record, limit, elapsed)
    if written is None:
        summary = {"error": doc["error"], "message": doc["message"], "error_json": record.results + "error.json"}

        def failing(now: status.RunStatus) -> status.RunStatus | None:
            # the driver claims success in status.json just before it writes outputs.json (the
            # same conditional write a cancel makes): a claimed run is not failed under it
            return None if now.outputs and not now.finished else now.model_copy(update={"status": "FAILED", "error": summary})

        after = status.update(bucket, record.run_id, failing, initial=status.new(record))
        if after is not None and after.outputs and not after.finished:
            log.warning("run %s: %s, but its driver had claimed success: SUCCEEDED", record.run_id, name)
            return {"status": "SUCCEEDED"}
    stopped = _stop_all(cluster, record.run_id, f"run timed out ({limit.replace('_', ' ')})")
    if written is None:
        s3io.put_json(bucket, prefix + "error.json", doc | {"stopped_tasks": stopped})
    log.warning("run %s timed out (%s, %s): %d task(s) stopped", record.run_id, name, limit, len(stopped))
    return {"status": "FAILED"}


def _stop_all(cluster: str, run_id: str, reason: str) -> list[str]:
    return sweep.stop_run(cluster, run_id, reason) if cluster else []
