"""A run's status, kept in S3 next to its results (``runs/<name>/results/<run id>/status.json``):
it outlives the Step Functions history (90 days) and costs nothing while idle.

Who writes it, in order: submit (SUBMITTED), launch (STARTING, the driver's task), the driver
(RUNNING, then task counts as it goes), finalize (SUCCEEDED / FAILED, timings, outputs or error),
and cancel (CANCELLED). Updates are read-modify-write with a conditional put (If-Match on the
ETag, retried on a conflict), and a finished run keeps its state: a late writer (the driver's last
counts, finalize after a cancel, a cancel after the end) can add to it but not change it.
"""

from __future__ import annotations

import json
import time
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
    wrong if its status.json is not one."""
    where = s3io.uri(bucket, status_key(run_id))
    try:
        found = s3io.find_json(bucket, status_key(run_id))
    except ValueError as exn:  # (json.JSONDecodeError and UnicodeDecodeError are ValueErrors)
        raise UnreadableStatus(f"{where} is not valid JSON: {exn}") from None
    if found is None:
        return None
    try:
        return RunStatus.model_validate(found)
    except ValidationError as exn:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exn.errors()[:3])
        raise UnreadableStatus(f"{where} is not a run status ({problems})") from None


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


def update(
    bucket: str, run_id: str, change: Callable[[RunStatus], RunStatus | None], initial: RunStatus | None = None
) -> RunStatus | None:
    """Apply ``change`` to the stored status (or to ``initial`` if there is none yet) and store it,
    safely against concurrent writers. ``change`` returns None to leave it as it is. A finished
    run's state never changes (a late RUNNING, FAILED or CANCELLED is dropped)."""
    s3 = aws.client("s3")
    key = status_key(run_id)
    for attempt in range(8):
        try:
            obj = s3.get_object(Bucket=bucket, Key=key)
            current: RunStatus | None = RunStatus.model_validate(json.loads(obj["Body"].read()))
            condition = {"IfMatch": obj["ETag"]}
        except s3.exceptions.NoSuchKey:
            current, condition = initial, {"IfNoneMatch": "*"}
        if current is None:
            return None
        changed = change(current.model_copy(deep=True))
        if changed is None:
            return current
        if current.finished and changed.status != current.status:
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
            s3.put_object(
                Bucket=bucket, Key=key, ContentType="application/json",
                Body=(changed.model_dump_json(indent=2) + "\n").encode(), **condition,
            )
            return changed
        except s3.exceptions.ClientError as exn:
            if not s3io.condition_failed(exn):
                raise
            time.sleep(0.05 * (attempt + 1))  # someone else wrote first: read again
    raise RuntimeError(f"status of run {run_id} kept changing under us; gave up updating it")


def set_state(bucket: str, run_id: str, state: State, **fields: Any) -> RunStatus | None:
    def change(current: RunStatus) -> RunStatus:
        return current.model_copy(update={"status": state, **fields})

    return update(bucket, run_id, change)

