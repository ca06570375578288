"""Finalize: the last step of every run. Its status becomes final (SUCCEEDED or FAILED, with
timings, and where its outputs or its error are), a failed run always has an error.json, a
run-finished event tells whoever listens, its driver slot is given back (driver_slots), and what
the run left on EFS is collected once it falls due (gc_task.schedule).

A run whose execution ended without reaching its finalize step is finalized all the same, from
the "Step Functions Execution Status Change" event Step Functions sends at the end
(``execution_ended``): an execution stopped from outside (the Step Functions console, or
StopExecution by anything but ``miniwdl-fargate cancel``: no Catch runs for a stopped execution),
or one whose finalize step itself failed. A run waiting for a driver slot has no driver whose stop
would say it ended: without this its status said SUBMITTED, queued, for good."""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, Callable

from pydantic import BaseModel

from .. import gc_task, runs, s3io, status, sweep
from . import driver_slots, manage

log = logging.getLogger(__name__)


def _error_document(record: runs.RunRecord, error: dict[str, Any] | None, state: str = "FAILED") -> dict[str, Any]:
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
    return {"run_id": record.run_id, "status": state, "error": name, "message": message, "cause": cause}


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
            doc = _error_document(record, error, state)
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


class ExecutionStatusChange(BaseModel):
    """The detail of a "Step Functions Execution Status Change" event, which Step Functions sends
    to the default bus at each change of a standard workflow's execution (best effort), with its
    input unless that and its output pass 248 KB (a run's is its RunRecord, well under)
    (https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html)."""

    executionArn: str
    stateMachineArn: str
    name: str
    status: str
    input: str | None = None
    error: str | None = None
    cause: str | None = None


#: the execution statuses that end it (RUNNING and the redriven PENDING_REDRIVE do not)
EXECUTION_ENDS = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def execution_ended(
    detail: ExecutionStatusChange, cluster: str = "", file_system_id: str = "",
    collection: Callable[[], gc_task.Collection] | None = None,
) -> dict[str, Any]:
    """Finalize a run whose execution ended without its finalize step having recorded the end:
    stopped from outside (CANCELLED, saying so), its finalize step failed (done again: SUCCEEDED
    when it failed recording a success, else FAILED), or timed out. A run whose status says it
    ended (finalized, or cancelled by ``miniwdl-fargate cancel``, which says so before it stops
    the execution) is left as it is: this event comes after every end, and is sent at least once."""
    if detail.status not in EXECUTION_ENDS or detail.status == "SUCCEEDED":
        return {"result": "ignored", "execution_status": detail.status}
    try:
        record = runs.RunRecord.model_validate_json(detail.input or "")
    except ValueError:
        log.error("execution %s ended %s with no run in its event's input (%.200r): nothing to finalize",
                  detail.executionArn, detail.status, detail.input)
        return {"result": "no run", "execution_status": detail.status}
    current = status.read(record.bucket, record.run_id)
    if current is not None and current.finished:
        return {"run_id": record.run_id, "result": "ended already", "status": current.status}
    said = ": ".join(part for part in (detail.error, detail.cause) if part)
    if current is not None and current.outputs:  # (its driver claimed a success and writes its outputs: that end stands)
        state, error = "SUCCEEDED", None
    elif detail.status == "ABORTED":
        state, error = "CANCELLED", {"Error": "Cancelled", "Cause": json.dumps({"message": (
            "the run's execution was stopped outside miniwdl-fargate (the Step Functions console, or StopExecution)"
            + (f": {said}" if said else "") + "; `miniwdl-fargate cancel` is what stops a run")})}
    elif detail.error == "FinalizeFailed":  # (RecordSuccess's Catch: the driver's outputs are written)
        state, error = "SUCCEEDED", None
    elif detail.status == "TIMED_OUT":
        state, error = "FAILED", {"Error": "TimedOut", "Cause": json.dumps({"message": "the run's execution timed out"})}
    else:
        state, error = "FAILED", {"Error": detail.error or "RunFailed", "Cause": detail.cause or ""}
    log.warning("run %s: its execution ended %s (%s) without its finalize step: finalized as %s",
                record.run_id, detail.status, said or "no cause given", state)
    return {**finalize(record, state, error, cluster, file_system_id, collection), "result": "finalized"}


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

