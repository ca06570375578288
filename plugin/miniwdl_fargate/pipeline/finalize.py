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

from botocore.exceptions import WaiterError
from pydantic import BaseModel

from .. import aws, gc_task, runs, s3io, status, sweep
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
    ending_only: bool = False,
    stop: bool = True,
    over_claim: bool = False,
) -> dict[str, Any]:
    """Record the run's end; then stop whatever of it still runs (by its run tag): every path
    of the state machine ends here (RecordSuccess / RecordFailure, the Catch of every state
    included), so a run the state machine ends, whatever ended it, leaves nothing running; and,
    with ``collection`` (the stack's, made when needed), have what it left on EFS collected when
    that falls due. ``ending_only``: record and announce the end only if the run had not ended
    (an execution's end event, delivered at least once: two copies at once end it once), nor its
    driver claimed a success (status.json's ``outputs``, set just before it writes outputs.json,
    as a cancel leaves it): then nothing is done, and the answer says ``claimed`` (unless
    ``over_claim``: the claim was waited on, and outputs.json never came). ``stop``: False for a
    run whose driver is still writing its outputs (its tasks are done)."""
    if state == "SUCCEEDED":
        doc = s3io.find_json(record.bucket, record.results_key("outputs.json")) or {}
        fields: dict[str, Any] = {"outputs": record.results + "outputs.json", "error": None}
    else:
        doc = s3io.find_json(record.bucket, record.results_key("error.json"))
        written = doc is not None
        if doc is None:
            doc = _error_document(record, error, state)
            if not ending_only:  # (ending_only: only once this call has ended the run, below)
                s3io.put_json(record.bucket, record.results_key("error.json"), doc)
                written = True
        fields = {
            "outputs": None,  # (a success its driver claimed and never wrote)
            "error": {
                "error": doc.get("error"),
                "message": doc.get("message"),
                "error_json": record.results + "error.json",
            },
        }
    if doc.get("report"):
        fields["report"] = doc["report"]
    ended_here: list[bool] = []  # (status.update may apply the change again: the last one counts)

    def ending(current: status.RunStatus) -> status.RunStatus | None:
        claimed = state != "SUCCEEDED" and bool(current.outputs) and not over_claim
        ended_here.append(not (ending_only and (current.finished or claimed)))
        return current.model_copy(update={"status": state, **fields}) if ended_here[-1] else None

    final = status.update(record.bucket, record.run_id, ending, initial=status.new(record))
    if ending_only and final is not None and not final.finished:  # (its driver claimed a success: nothing done)
        return {"run_id": record.run_id, "status": final.status, "duration_s": None, "gc_scheduled": [], "claimed": True}
    recorded_here = bool(ended_here) and ended_here[-1]
    if state != "SUCCEEDED" and not written and recorded_here:
        s3io.put_json(record.bucket, record.results_key("error.json"), doc)
    if final is not None and final.status == state and recorded_here:  # (not CANCELLED meanwhile: that state stays)
        try:
            manage.announce(final)
        except Exception:  # noqa: BLE001 (the end is recorded: its announcement is not what fails it)
            log.exception("run %s: its run-finished event could not be sent", record.run_id)
    ended = final.status if final else state
    scheduled = after_end(record.bucket, record.run_id, ended, final.driver_slot if final else None, cluster, file_system_id,
                          collection, stop)
    return {"run_id": record.run_id, "status": ended, "duration_s": final.duration_s if final else None,
            "gc_scheduled": scheduled}


def after_end(
    bucket: str, run_id: str, state: str, driver_slot: str | None, cluster: str = "", file_system_id: str = "",
    collection: Callable[[], gc_task.Collection] | None = None, stop: bool = True,
) -> list[str]:
    """What follows a run's end, each part safe to repeat: whatever of it still runs stopped
    (with ``stop``), its own EFS access point deleted, its driver slot given back, and what it left
    on EFS scheduled for collection (with ``collection``): the schedules made. A stop that failed
    (ECS throttled past the retries) is raised once the rest is done: the caller is tried again."""
    failed: Exception | None = None
    if stop:
        try:
            stop_what_runs(cluster, run_id, state)
        except Exception as exn:  # noqa: BLE001 (raised below)
            failed = exn
        sweep.release_leftovers(file_system_id, run_id)
    driver_slots.give_back(bucket, run_id, driver_slot)
    scheduled = collect_when_due(collection, bucket, state) if collection else []
    if failed is not None:
        raise failed
    return scheduled


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
#: how long the end of an execution stopped as its driver claimed a success waits for the
#: driver's outputs.json (S3's object_exists waiter: a HeadObject every few seconds)
OUTPUTS_WAIT = {"Delay": 5, "MaxAttempts": 120}  # (10 minutes, within the function's 15)


def execution_ended(
    detail: ExecutionStatusChange, cluster: str = "", file_system_id: str = "",
    collection: Callable[[], gc_task.Collection] | None = None,
) -> dict[str, Any]:
    """Finalize a run whose execution ended without its finalize step having recorded the end:
    stopped from outside (CANCELLED, saying so; FAILED if its driver had failed first, its
    error.json written; SUCCEEDED if its driver had claimed a success, once its outputs.json is
    there, its driver left to finish), its finalize step failed (done again: SUCCEEDED when it
    failed recording a success, else FAILED), or timed out. A run whose status says it ended
    (finalized, or cancelled by ``miniwdl-fargate cancel``, which says so before it stops the
    execution) keeps its end; what follows an end is done again (``after_end``: a finalize step
    that failed after recording the end may not have stopped what ran). The event comes after
    every end, at least once, in no set order."""
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
        # (a SUCCEEDED run's driver may still be tidying up: its own stop's event follows it)
        after_end(record.bucket, record.run_id, current.status, current.driver_slot, cluster, file_system_id, collection,
                  stop=current.status != "SUCCEEDED")
        return {"run_id": record.run_id, "result": "ended already", "status": current.status}
    said = ": ".join(part for part in (detail.error, detail.cause) if part)
    if detail.status == "ABORTED" and s3io.find_json(record.bucket, record.results_key("error.json")) is not None:
        state, error = "FAILED", None  # (its driver failed first and said why: that end stands)
    elif detail.status == "ABORTED":
        state, error = "CANCELLED", {"Error": "Cancelled", "Cause": json.dumps({"message": (
            "the run's execution was stopped outside miniwdl-fargate (the Step Functions console, or StopExecution)"
            + (f": {said}" if said else "") + "; `miniwdl-fargate cancel` is what stops a run")})}
    elif detail.error == "FinalizeFailed":  # (RecordSuccess's Catch: the driver's outputs are written)
        state, error = "SUCCEEDED", None
    elif detail.status == "TIMED_OUT":
        state, error = "FAILED", {"Error": "TimedOut", "Cause": json.dumps({"message": "the run's execution timed out"})}
    else:  # (RecordFailure's Catch: the Fail state's error says only that the run failed)
        state, error = "FAILED", {"Error": detail.error or "RunFailed", "Cause": json.dumps({"message": (
            "the run failed, and recording its failure failed too: what failed it is in its execution's history "
            f"(the Step Functions console, execution {detail.executionArn}: the RecordFailure step's input)")})}
    log.warning("run %s: its execution ended %s (%s) without its finalize step: finalized as %s",
                record.run_id, detail.status, said or "no cause given", state)
    result = finalize(record, state, error, cluster, file_system_id, collection, ending_only=True)
    if result.get("claimed"):  # (its driver claimed a success: it writes its outputs.json next)
        return _claimed_success(record, cluster, file_system_id, collection)
    return {**result, "result": "finalized"}


def _claimed_success(
    record: runs.RunRecord, cluster: str, file_system_id: str, collection: Callable[[], gc_task.Collection] | None,
) -> dict[str, Any]:
    """A run whose driver claimed a success (status.json's ``outputs``) writes its outputs.json
    next (after the call cache's entries and the run's report, which on a large run take
    minutes): SUCCEEDED once it is there, the driver not stopped (its tasks are done; stopped, it
    would say it failed); FAILED, what still runs of it stopped, if it never comes. An S3 that
    fails the look is raised: the event is tried again."""
    try:
        aws.client("s3").get_waiter("object_exists").wait(
            Bucket=record.bucket, Key=record.results_key("outputs.json"), WaiterConfig=OUTPUTS_WAIT
        )
        state, error, stop = "SUCCEEDED", None, False
    except WaiterError as exn:
        if "Max attempts exceeded" not in str(exn.kwargs.get("reason", "")):
            raise
        state, error, stop = "FAILED", {"Error": "DriverStopped", "Cause": json.dumps({"message": (
            "its driver claimed the run's success but wrote no outputs.json in "
            f"{OUTPUTS_WAIT['Delay'] * OUTPUTS_WAIT['MaxAttempts']:g} s; its execution was stopped meanwhile")})}, True
    log.warning("run %s: its execution ended as its driver claimed a success: finalized as %s", record.run_id, state)
    return {**finalize(record, state, error, cluster, file_system_id, collection, ending_only=True, stop=stop, over_claim=True),
            "result": "finalized"}


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
    tasks left by a driver that died); none, usually. A cancelled run's are stopped with the
    reason a cancel gives (``runs.CANCELLED_STOP_REASON``): its driver counts them cancelled, not failed."""
    said = runs.CANCELLED_STOP_REASON if state == "CANCELLED" else f"run {state}"
    stopped = sweep.stop_run(cluster, run_id, f"{said}: stopping what still runs of it") if cluster else []
    if stopped:
        log.warning("run %s ended %s with %d task(s) still running: stopped", run_id, state, len(stopped))
    return stopped

