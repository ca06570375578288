"""A run's status, kept in S3 next to its results (``runs/<name>/results/<run id>/status.json``):
it outlives the Step Functions history (90 days) and costs nothing while idle.

Who writes it, in order: submit (SUBMITTED), launch (STARTING, the driver's task), the driver
(RUNNING, then task counts as it goes), finalize (SUCCEEDED / FAILED, timings, outputs or error),
and cancel (CANCELLED). Updates are read-modify-write with a conditional put (If-Match on the
ETag, retried on a conflict; a process writes its next update on top of its last without reading
it again, ``WRITTEN``), and a finished run keeps its state: a late writer (the driver's last
counts, finalize after a cancel, a cancel after the end) can add to it but not change it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from datetime import datetime
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field, ValidationError

from . import aws, runs, s3io

STATUS_NAME = "status.json"
FINISHED = ("SUCCEEDED", "FAILED", "CANCELLED")
State = Literal["SUBMITTED", "STARTING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]


class TaskCounts(BaseModel):
    """WDL task attempts of the run, as the driver sees them."""

    total: int = 0  # calls scheduled so far (a scatter adds its calls as it unrolls)
    queued: int = 0  # waiting for a launch slot or for ECS to start them
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0  # stopped because the run was cancelled (or ran out of time or budget)
    retried: int = 0  # attempts retried (Spot interruption, out of memory, maxRetries)
    cached: int = 0  # calls answered by the call cache


class TransferCounts(BaseModel):
    """Objects of one transfer phase of the driver (staging inputs, uploading outputs)."""

    done: int = 0
    total: int = 0  # known so far (a phase adds a Directory's objects once it has listed them)


class RunStatus(BaseModel):
    run_id: str
    name: str
    status: State
    submitted_at: str
    started_at: str | None = None  # the driver started
    finished_at: str | None = None
    updated_at: str = Field(default_factory=runs.now_iso)
    duration_s: float | None = None  # submitted to finished
    source: str = "s3"
    workflow: str = ""
    inputs: str = ""
    results: str = ""
    execution_arn: str | None = None
    driver_task: str | None = None
    driver_slot: str | None = None  # the runs bucket's key of the driver slot it holds (pipeline/driver_slots.py)
    tasks: TaskCounts = Field(default_factory=TaskCounts)
    phase: str | None = None  # what the driver is doing, e.g. "staging inputs 1200/20000"
    transfers: dict[str, TransferCounts] = Field(
        default_factory=dict, description="objects moved by phase: staging inputs, uploading outputs"
    )
    calls: dict[str, list[str]] = Field(default_factory=dict, description="each WDL call's ECS tasks, attempt by attempt")
    outputs: str | None = None  # s3:// URI of outputs.json
    error: dict[str, Any] | None = None  # {"error", "message", "error_json"}
    report: str | None = None  # s3:// URI of the run report
    resumed_from: str | None = None  # the failed or cancelled run this one resumes
    resumed_by: list[str] = Field(default_factory=list, description="the runs that resume this one, oldest first")
    labels: dict[str, str] = Field(default_factory=dict, description="the run's labels (its options' labels): WES RunSummary's tags")

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def status_key(run_id: str) -> str:
    """The status.json key of a run, from its id alone (``<name>-<8 hex>``)."""
    return runs.run_results_prefix(run_id) + STATUS_NAME


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class UnreadableStatus(ValueError):
    """A status.json that is not JSON, or not a run's status (edited or written by hand)."""


def read(bucket: str, run_id: str) -> RunStatus | None:
    """The run's status; None if it has none (yet); UnreadableStatus saying where and what is
    wrong if its status.json is not one. What is read is remembered (``WRITTEN``): an update
    of the run by this process next writes on top of it without reading it again (a launch or
    a finalize reads the status, decides, and updates it)."""
    found = _fetch(bucket, status_key(run_id))
    return None if found is None else found[1]


def _fetch(bucket: str, key: str) -> tuple[str, RunStatus] | None:
    """The status.json at ``key`` with its ETag, remembered (``WRITTEN``); None if there is none;
    UnreadableStatus saying where and what is wrong if it is not one."""
    where = s3io.uri(bucket, key)
    s3 = aws.client("s3")
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
        found = json.loads(obj["Body"].read())
    except s3.exceptions.ClientError as exn:  # (NoSuchKey is one)
        if s3io.not_found(exn):
            return None
        raise
    except ValueError as exn:  # (json.JSONDecodeError and UnicodeDecodeError are ValueErrors)
        raise UnreadableStatus(f"{where} is not valid JSON: {exn}") from None
    try:
        current = RunStatus.model_validate(found)
    except ValidationError as exn:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exn.errors()[:3])
        raise UnreadableStatus(f"{where} is not a run status ({problems})") from None
    WRITTEN.put(bucket, key, obj["ETag"], current)
    return obj["ETag"], current


def new(record: runs.RunRecord, execution_arn: str | None = None) -> RunStatus:
    return RunStatus(
        run_id=record.run_id,
        name=record.name,
        status="SUBMITTED",
        submitted_at=record.submitted_at,
        source=record.source,
        workflow=record.workflow,
        inputs=record.inputs,
        results=record.results,
        execution_arn=execution_arn,
        resumed_from=record.resumed_from,
        labels=dict((record.options or {}).get("labels") or {}),
    )


class _Written:
    """The status.json this process last wrote or read (``update``, ``read``), per key, with its
    ETag: the next update of the same run by this process (the driver's RUNNING, counts and
    phases, a dozen in a short run; a launch's or a finalize's after its read) writes on top of it
    with ``If-Match`` at once, instead of reading it again first. If another writer changed it
    meanwhile, S3 refuses the write (412 Precondition Failed, or 404 if it was deleted:
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html) and the update
    reads it and goes on as before: a stale entry costs one refused write, never a lost change. A
    finished run's is not kept (what follows its end, in the Lambda functions, writes it once or
    twice more at most), and at most ``KEPT`` keys are (a warm Lambda environment serves many
    runs). The documents kept are never handed out: ``update`` changes a copy, ``read`` returns
    its own."""

    KEPT = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[str, RunStatus]] = OrderedDict()

    def get(self, bucket: str, key: str) -> tuple[str, RunStatus] | None:
        with self._lock:
            return self._entries.get((bucket, key))

    def put(self, bucket: str, key: str, etag: str | None, document: RunStatus) -> None:
        with self._lock:
            if not etag or document.finished:
                self._entries.pop((bucket, key), None)
                return
            self._entries[(bucket, key)] = (etag, document.model_copy(deep=True))
            self._entries.move_to_end((bucket, key))
            while len(self._entries) > self.KEPT:
                self._entries.popitem(last=False)

    def forget(self, bucket: str, key: str) -> None:
        with self._lock:
            self._entries.pop((bucket, key), None)


WRITTEN = _Written()


def update(
    bucket: str, run_id: str, change: Callable[[RunStatus], RunStatus | None], initial: RunStatus | None = None
) -> RunStatus | None:
    """Apply ``change`` to the stored status (or to ``initial`` if there is none yet) and store it,
    safely against concurrent writers. ``change`` returns None to leave it as it is. A finished
    run's state never changes (a late RUNNING, FAILED or CANCELLED is dropped)."""
    s3 = aws.client("s3")
    key = status_key(run_id)
    reads = remembered = 0  # (8 tries of each: a refused write on top of what was remembered is no read)
    while reads < 8:
        known = WRITTEN.get(bucket, key) if remembered < 8 else None
        if known is not None:  # (as this process left it: written on top of if no one else wrote since)
            remembered += 1
            etag, current = known
            condition: dict[str, str] = {"IfMatch": etag}
        else:
            reads += 1
            found = _fetch(bucket, key)
            if found is None:
                current, condition = initial, {"IfNoneMatch": "*"}
            else:
                current, condition = found[1], {"IfMatch": found[0]}
        if current is None:
            return None
        changed = change(current.model_copy(deep=True))
        if changed is None or (current.finished and changed.status != current.status):
            if known is not None:  # (nothing to write: what is answered is read, not remembered)
                WRITTEN.forget(bucket, key)
                continue
            return current
        changed.updated_at = runs.now_iso()
        if changed.finished:  # the driver does nothing more (its last counts may still land: they keep none)
            changed.phase = None
        if changed.finished and changed.finished_at is None:
            changed.finished_at = changed.updated_at
        if changed.finished_at and changed.duration_s is None:
            start, end = _parse_time(changed.submitted_at), _parse_time(changed.finished_at)
            if start and end:
                changed.duration_s = round((end - start).total_seconds(), 1)
        try:
            written = s3.put_object(
                Bucket=bucket, Key=key, ContentType="application/json",
                Body=(changed.model_dump_json(indent=2) + "\n").encode(), **condition,
            )
        except s3.exceptions.ClientError as exn:
            WRITTEN.forget(bucket, key)
            if known is not None and (s3io.condition_failed(exn) or s3io.not_found(exn)):
                continue  # someone else wrote (or removed it) since this process did: read it again
            if not s3io.condition_failed(exn):
                raise
            time.sleep(0.05 * reads)  # someone else wrote first: read again
            continue
        WRITTEN.put(bucket, key, written.get("ETag"), changed)
        return changed
    raise RuntimeError(f"status of run {run_id} kept changing under us; gave up updating it")


def set_state(bucket: str, run_id: str, state: State, **fields: Any) -> RunStatus | None:
    def change(current: RunStatus) -> RunStatus:
        return current.model_copy(update={"status": state, **fields})

    return update(bucket, run_id, change)

