"""Looking at and managing runs: list, describe, cancel, and the run-finished event.

Plain functions over boto3 shared by the run API (functions/api.py) and the command line
(``miniwdl-fargate status|list|cancel ...``), so both behave the same against AWS and local mode.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Callable

from .. import aws, runs, s3io, status, sweep

log = logging.getLogger(__name__)

EVENT_SOURCE = "miniwdl-fargate"
EVENT_FINISHED = "Run Finished"


class RunNotFound(LookupError):
    pass


class RunRefused(RunNotFound):
    """The run id is that of a submission the pipeline refused: there is no run, but its
    refusal (``runs/<name>/error.json``) says why."""

    def __init__(self, message: str, refusal: dict[str, Any]) -> None:
        super().__init__(message)
        self.refusal = refusal


class RunFinished(ValueError):
    """The run already ended (``status``: how): there is nothing to cancel."""

    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self.status = status


def list_runs(
    bucket: str, limit: int = 50, name: str | None = None, after: str | None = None,
    on_unreadable: Callable[[str], None] | None = None,
) -> tuple[list[status.RunStatus], str | None]:
    """At most ``limit`` runs, newest first within each name, names in order, and the page token
    to go on with (None: there are no more): a run name (the next page starts after its runs) or
    ``<name>~<ms>~<hex>`` (after that name's run submitted then with that id: a name run more often
    than a page holds; runs of it submitted since come on no later page, and shift none;
    ``runs.PAGE_TOKEN_RE``, whose ``<name>:<N>`` is taken too). ``after`` is such a token. A run
    whose status.json cannot be read is left out (logged, and told to ``on_unreadable``): one bad
    object does not hide the others."""
    s3 = aws.client("s3")
    start, skip, last = None, None, None
    if after:
        token = runs.PAGE_TOKEN_RE.match(after)
        if token is None:
            raise ValueError(f"page token {after!r} is not one a list of runs gave")
        start, skip = token["name"], int(token["skip"]) if token["skip"] is not None else None
        if token["ms"] is not None:
            skip, last = 0, (int(token["ms"]), f"{start}-{token['id']}")
    names: list[str] = []
    if name:
        runs.check_name(name)
        names = [name]
    else:
        paginator = s3.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": runs.RUNS_PREFIX, "Delimiter": "/"}
        if start:  # (after its folder, "runs/<name>/"; or from it, when the token goes on inside it)
            kwargs["StartAfter"] = runs.run_prefix(start) if skip is None else runs.RUNS_PREFIX + start
        for page in paginator.paginate(**kwargs):
            names += [p["Prefix"][len(runs.RUNS_PREFIX):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        if start and skip is not None:
            # ("runs/<name>" also sorts before "runs/<name>-x/" and "runs/<name>.x/", which come
            # before "runs/<name>/": names listed on an earlier page; a page goes on from its name)
            names = [n for n in names if runs.run_prefix(n) >= runs.run_prefix(start)]
    found: list[status.RunStatus] = []
    for i, run_name in enumerate(names):
        prefix = f"{runs.run_prefix(run_name)}{runs.RESULTS_DIR}/"
        ids = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            ids += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        statuses = [st for st in aws.each(lambda run_id: _readable(bucket, run_id, on_unreadable), ids, s3io.READ_THREADS) if st is not None]
        # by time, not text (statuses written before timestamps had milliseconds sort with the
        # rest), then by id: one order, in which a page token names a place
        statuses.sort(key=_place, reverse=True)
        offset = skip if skip is not None and run_name == start else 0
        if last is not None and run_name == start:
            offset = sum(1 for st in statuses if _place(st) >= last)
        room = limit - len(found)
        if len(statuses) - offset > room:
            found += statuses[offset : offset + room]
            ms, run_id = _place(found[-1])
            token = f"{run_name}~{ms}~{run_id[len(run_name) + 1:]}"
            return found, token if runs.PAGE_TOKEN_RE.match(token) else f"{run_name}:{offset + room}"
        found += statuses[offset:]
        if len(found) >= limit and i + 1 < len(names):
            return found, run_name
    return found, None


def _place(current: status.RunStatus) -> tuple[int, str]:
    """Where a run is among its name's runs (``list_runs``): its submission, in epoch
    milliseconds, and its id."""
    return round(datetime.fromisoformat(current.submitted_at).timestamp() * 1000), current.run_id


def _readable(bucket: str, run_id: str, on_unreadable: Callable[[str], None] | None) -> status.RunStatus | None:
    try:
        return status.read(bucket, run_id)
    except status.UnreadableStatus as exn:
        if on_unreadable is not None:  # the caller tells its user
            on_unreadable(f"run {run_id} left out: {exn}")
        else:
            log.warning("run %s left out of the list: %s", run_id, exn)
        return None


def refusal(bucket: str, run_id: str) -> tuple[dict[str, Any], str] | None:
    """The pipeline's refusal of the submission that would have been run ``run_id`` and where it
    is: kept under the run id (``runs.run_refusal_key``), or, for a refusal written before that was
    kept, if it is the last thing its name's ``runs/<name>/error.json`` says (``start.reject``)."""
    for key in (runs.run_refusal_key(run_id), runs.refusal_key(runs.name_of(run_id))):
        try:
            found = s3io.find_json(bucket, key)
        except ValueError:  # (damaged: not this run's answer to give)
            continue
        if isinstance(found, dict) and found.get("run_id") == run_id:
            return found, s3io.uri(bucket, key)
    return None


def problems_text(error: dict[str, Any]) -> str:
    """An error.json's problems on one line (``where: problem; ...``), or its message without them."""
    problems = [p for p in error.get("problems") or [] if isinstance(p, dict)]
    if not problems:
        return str(error.get("message") or error.get("error") or "no reason given")
    return "; ".join(f"{p.get('where', '')}: {p.get('problem', '')}" for p in problems)


def describe_run(bucket: str, run_id: str) -> dict[str, Any]:
    """The run's status with its outputs (outputs.json) or its error (error.json) inline."""
    current = status.read(bucket, run_id)
    if current is None:
        found = refusal(bucket, run_id)
        if found is not None:
            refused, where = found
            raise RunRefused(f"run {run_id} was not started: the submission was refused: {problems_text(refused)} ({where})", refused)
        raise RunNotFound(f"no run {run_id} in s3://{bucket} (looked for s3://{bucket}/{status.status_key(run_id)})")
    doc = current.model_dump()
    results_bucket, prefix = s3io.split(current.results)
    for key, name in (("outputs", "outputs.json"), ("error", "error.json")):
        try:
            found = s3io.find_json(results_bucket, prefix + name)
        except ValueError as exn:  # damaged (edited by hand): say so rather than fail the description
            where = s3io.uri(results_bucket, prefix + name)
            log.warning("run %s: %s is not valid JSON: %s", run_id, where, exn)
            doc["error"] = {"error": "UnreadableDocument", "message": f"{where} is not valid JSON: {exn}"}
            doc[f"{key}_json"] = where
            continue
        if found is None:
            continue
        if key == "outputs":
            doc["outputs"] = found.get("outputs", found)
            doc["outputs_json"] = s3io.uri(results_bucket, prefix + name)
        else:
            doc["error"] = found
            doc["error_json"] = s3io.uri(results_bucket, prefix + name)
    return doc


def run_finished_event(current: status.RunStatus) -> dict[str, Any]:
    """The run-finished EventBridge entry: what a notification needs, nothing more."""
    detail: dict[str, Any] = {
        "run_id": current.run_id,
        "name": current.name,
        "status": current.status,
        "submitted_at": current.submitted_at,
        "finished_at": current.finished_at,
        "duration_s": current.duration_s,
        "results": current.results,
        "tasks": current.tasks.model_dump(),
    }
    if current.outputs:
        detail["outputs"] = current.outputs
    if current.error:
        detail["error"] = current.error
    if current.report:
        detail["report"] = current.report
    return {
        "Source": EVENT_SOURCE,
        "DetailType": EVENT_FINISHED,
        "Resources": [current.execution_arn] if current.execution_arn else [],
        "Detail": json.dumps(detail),
    }


def announce(current: status.RunStatus) -> None:
    """Put the run-finished event on the default bus (users wire rules to it: SNS, Slack, ...)."""
    answer = aws.client("events").put_events(Entries=[run_finished_event(current)])
    if answer.get("FailedEntryCount"):
        log.error("run-finished event of %s not delivered: %s", current.run_id, answer.get("Entries"))


def cancel_run(bucket: str, state_machine_arn: str, cluster: str, run_id: str, reason: str = "cancelled by the user") -> status.RunStatus:
    """Cancel end to end: mark the run CANCELLED (so nothing later reports it otherwise), stop its
    execution, stop its driver (SIGTERM: miniwdl stops every task it runs) and any task of the
    run still running, write error.json and announce the end.

    One rule keeps a run's files from saying SUCCEEDED beside CANCELLED: status.json decides,
    with conditional writes. The driver claims a success there (``outputs``) before it writes
    outputs.json, and only if the run has not ended; a cancel marks CANCELLED only if the run
    has neither ended nor a claimed success. A run that had ended raises RunFinished, after
    stopping whatever of it still runs (and saying so); CancelIncomplete whenever some of its
    tasks could not be stopped."""
    error = {"error": "Cancelled", "message": reason}
    before = status.read(bucket, run_id)
    if before is None:
        raise RunNotFound(f"no run {run_id} in s3://{bucket} (looked for s3://{bucket}/{status.status_key(run_id)})")

    def cancelling(current: status.RunStatus) -> status.RunStatus | None:
        if current.finished or current.outputs:
            return None  # ended, or its driver is writing its outputs: that end stands
        return current.model_copy(update={"status": "CANCELLED", "error": error})

    final = status.update(bucket, run_id, cancelling)
    if final is None or final.status != "CANCELLED" or before.finished:
        current = final or before
        if current.status == "CANCELLED":  # (an earlier cancel may not have stopped it: denied, interrupted)
            stop_execution(current, state_machine_arn, run_id, reason)
        raise RunFinished(_already_finished(cluster, run_id, current), current.status)
    stop_execution(final, state_machine_arn, run_id, reason)
    errors: list[str] = []
    stopped = sweep.stop_run(cluster, run_id, f"{runs.CANCELLED_STOP_REASON}: {reason}", errors=errors) if cluster else []
    log.info("run %s cancelled: execution stopped, %d task(s) stopped", run_id, len(stopped))
    results_bucket, prefix = s3io.split(final.results)
    s3io.put_json(results_bucket, prefix + "error.json", {"run_id": run_id, "status": "CANCELLED", **error})
    announce(final)
    if errors:  # (said, not only logged: those tasks run on and bill)
        raise CancelIncomplete(
            f"run {run_id} is CANCELLED, but {len(errors)} of its task(s) could not be stopped (the first: "
            f"{errors[0]}): they run on; cancel it again once that is mended"
        )
    return final


class CancelIncomplete(RuntimeError):
    """The run is CANCELLED, but some of its tasks could not be stopped."""


def stop_execution(current: status.RunStatus, state_machine_arn: str, run_id: str, reason: str) -> None:
    """StopExecution of the run's execution (a stopped or finished one: nothing changes)."""
    sfn = aws.client("stepfunctions")
    arn = current.execution_arn or runs.execution_arn(state_machine_arn, run_id)
    try:
        sfn.stop_execution(executionArn=arn, error="Cancelled", cause=reason[:32000])
    except sfn.exceptions.ExecutionDoesNotExist:
        pass


def _already_finished(cluster: str, run_id: str, current: status.RunStatus) -> str:
    """What a cancel of a run that had ended answers. A finished run's tasks still running (a
    driver that did not stop, a task whose stop was lost) are stopped by the run tag, and the
    answer says so; a run whose driver is writing its outputs is left to finish."""
    if not current.finished:
        return f"run {run_id} already SUCCEEDED: its driver is writing its outputs ({current.outputs})"
    errors: list[str] = []
    stopped = sweep.stop_run(cluster, run_id, f"run {current.status}: stopping what still runs of it", errors=errors) if cluster else []
    if errors:  # (as the first cancel says it: those tasks run on and bill)
        raise CancelIncomplete(
            f"run {run_id} already {current.status}, but {len(errors)} of its task(s) still running could not be "
            f"stopped (the first: {errors[0]}): they run on; cancel it again once that is mended"
        )
    if stopped:
        return f"run {run_id} already {current.status}; stopped {len(stopped)} task(s) of it still running"
    return f"run {run_id} already {current.status}"
