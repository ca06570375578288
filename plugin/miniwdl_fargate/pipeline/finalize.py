"""Finalize: the last step of every run. Its status becomes final (SUCCEEDED or FAILED, with
timings, and where its outputs or its error are), a failed run always has an error.json, a
run-finished event tells whoever listens, its driver slot is given back (driver_slots), and what
the run left on EFS is collected once it falls due (gc_task.schedule)."""

from __future__ import annotations

import datetime
import json
from typing import Any, Callable

import logging

from .. import gc_task, runs, s3io, status, sweep
from . import driver_slots, manage

log = logging.getLogger(__name__)


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
    if name == "DriverSlotUnavailable":  # TakeDriverSlot's tries ran out (statemachine/run.asl.json)
        message = (f"gave up waiting for a driver slot after about 3.5 days, every slot held by runs still going ({message}); "
                   "submit or resume it again once they end, or raise the stack's MaxConcurrentRuns or the account's "
                   "Fargate On-Demand vCPU quota")
    return {"run_id": record.run_id, "status": "FAILED", "error": name, "message": message, "cause": cause}


def finalize(
    record: runs.RunRecord,
    state: str,
    error: dict[str, Any] | None,
    cluster: str = "",
    file_system_id: str = "",
    collection: Callable[[], gc_task.Collection] | None = None,
) -> dict[str, Any]:
    """Record the run's end; then stop whatever of it still runs (by its run tag): every path
    of the state machine ends here (RecordSuccess / RecordFailure, the Catch of every state
    included), so a run the state machine ends, whatever ended it, leaves nothing running; and,
    with ``collection`` (the stack's, made when needed), have what it left on EFS collected when
    that falls due."""
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
    stop_what_runs(cluster, record.run_id, final.status if final else state)
    sweep.release_leftovers(file_system_id, record.run_id)
    driver_slots.give_back(record.bucket, record.run_id, final.driver_slot if final else None)
    ended = final.status if final else state
    scheduled = collect_when_due(collection, record.bucket, ended) if collection else []
    return {"run_id": record.run_id, "status": ended, "duration_s": final.duration_s if final else None,
            "gc_scheduled": scheduled}


def collect_when_due(collection: Callable[[], gc_task.Collection], bucket: str, state: str) -> list[str]:
    """Schedule the gc task for when what this run left falls due (from now: the driver dates
    its directory's expiry from its own end, a moment before this). Whatever goes wrong is
    logged, never raised: the run has ended, and the next driver's start or ``miniwdl-fargate
    gc`` still collects."""
    try:
        stack = collection()
        return gc_task.schedule(stack, bucket, stack.due(clock(), failed=state != "SUCCEEDED"))
    except Exception:  # noqa: BLE001 (see above)
        log.warning("could not schedule the collection of what the run left on EFS; the next run's driver collects it "
                    "at its start, or run `miniwdl-fargate gc`", exc_info=True)
        return []


def clock() -> datetime.datetime:
    """Now, in UTC (a test sets the day)."""
    return datetime.datetime.now(datetime.timezone.utc)


def stop_what_runs(cluster: str, run_id: str, state: str) -> list[str]:
    """Stop the run's tasks still running (a driver whose launch the state machine gave up on,
    tasks left by a driver that died); none, usually."""
    stopped = sweep.stop_run(cluster, run_id, f"run {state}: stopping what still runs of it") if cluster else []
    if stopped:
        log.warning("run %s ended %s with %d task(s) still running: stopped", run_id, state, len(stopped))
    return stopped

