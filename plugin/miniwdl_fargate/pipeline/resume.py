"""Resume: a new run of a FAILED or CANCELLED run, reusing what it finished.

The new run (a new run id, the same run name) runs the earlier run's own copy of its workflow
(its ``source/``) on its own copy of the inputs (its ``inputs.json``), both copied again beside the
new run's results, with the earlier run's options and the call cache read: the calls the earlier
run finished are taken from the cache, the rest run. Options given to resume override the
earlier run's (labels one by one). It goes through ``start``'s machinery (pin and validate,
run.json once, the execution named by the run id, the API's client token), so a retried resume
starts no second run.

The two runs point at each other: the new run's record and status say ``resumed_from``, the
earlier run's status lists it in ``resumed_by`` (a finished status keeps its state, and takes
this field: ``status.update``).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from .. import aws, run_options, runs, s3io, status
from . import manage, start
from .settings import ApiSettings

#: the states a run may be resumed from
RESUMABLE = ("FAILED", "CANCELLED")


class NotResumable(start.Refused):
    """The run cannot be resumed in the state it is in (HTTP 409): still going, or SUCCEEDED."""


def resumed_options(original: dict[str, Any], given: dict[str, Any], stack_call_cache: str) -> dict[str, Any]:
    """The resumed run's options: the earlier run's, with the call cache read (the point of
    resuming), and written as the earlier run was: a run that kept its calls (``true``,
    ``"write"``, or no option and a stack whose ``CallCache`` keeps them, ``stack_call_cache``)
    resumes with ``true``; one that did not (``false``, ``"read"``, or no option and a stack
    that keeps none) resumes with ``"read"``, so resuming never stores what its submitter or
    the stack chose not to store. The options given to resume override these (labels one by
    one); the result is checked as any run's options are (``OptionsProblems``)."""
    kept = run_options.parse(original).cache_put
    if kept is None:  # the stack's CallCache parameter: "true", "false", "read" or "write"
        kept = stack_call_cache in ("true", "write")
    merged = {**original, "call_cache": "read" if kept is False else True}
    for key, value in given.items():
        merged[key] = {**merged.get("labels", {}), **value} if key == "labels" else value
    return run_options.parse(merged).given()


def resumable(bucket: str, run_id: str) -> status.RunStatus:
    """The run's status if it can be resumed; RunNotFound, or NotResumable saying why not."""
    current = status.read(bucket, run_id)
    if current is None:
        raise manage.RunNotFound(f"no run {run_id} in s3://{bucket} (looked for s3://{bucket}/{status.status_key(run_id)})")
    if current.status == "SUCCEEDED":
        raise NotResumable([{"where": run_id, "problem": (
            f"run {run_id} SUCCEEDED: there is nothing to resume (its outputs: {current.outputs or current.results}); "
            "to run it again, submit it again")}])
    if current.status not in RESUMABLE:
        raise NotResumable([{"where": run_id, "problem": (
            f"run {run_id} is still {current.status}: only a FAILED or CANCELLED run can be resumed; "
            f"wait for it to end, or cancel it (miniwdl-fargate cancel {run_id}) and then resume it")}])
    return current


def original_record(current: status.RunStatus) -> runs.RunRecord:
    """The run record of the run to resume, or Refused if it is gone."""
    bucket, prefix = s3io.split(current.results)
    found = s3io.find_json(bucket, prefix + runs.RECORD_NAME)
    if found is None:
        raise start.Refused([{"where": s3io.uri(bucket, prefix + runs.RECORD_NAME),
                              "problem": gone(current.run_id, "record")}])
    return runs.RunRecord.model_validate(found)


def gone(run_id: str, what: str) -> str:
    return f"run {run_id}'s copy of its {what} is gone (deleted): it cannot be resumed; submit the run again"


def original_inputs(record: runs.RunRecord) -> tuple[bytes, dict[str, Any]]:
    """The bytes and the document of the run's own copy of its inputs, or Refused if it is gone."""
    bucket, key = s3io.split(record.inputs)
    s3 = aws.client("s3")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise start.Refused([{"where": record.inputs, "problem": gone(record.run_id, "inputs")}]) from None
    return body, start.parse_inputs(body, record.inputs)


def check_source(record: runs.RunRecord) -> None:
    """Refused if the run's own copy of its main WDL is gone (HeadObject answers 404 for a
    missing key when the caller may list the bucket:
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html)."""
    bucket, key = s3io.split(record.workflow)
    s3 = aws.client("s3")
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exn:
        if not s3io.not_found(exn):
            raise
        raise start.Refused([{"where": record.workflow, "problem": gone(record.run_id, "workflow")}]) from None


def link(bucket: str, run_id: str, resumed_by: str) -> None:
    """Add ``resumed_by`` to the earlier run's status (once; its state stays what it is)."""

    def add(current: status.RunStatus) -> status.RunStatus | None:
        if resumed_by in current.resumed_by:
            return None
        return current.model_copy(update={"resumed_by": [*current.resumed_by, resumed_by]})

    status.update(bucket, run_id, add)


def started(settings: ApiSettings, record: runs.RunRecord) -> start.Submitted:
    """Start the resumed run (once: ``start.start``) and link the earlier run to it."""
    submitted = start.start(settings, record)
    assert submitted.record.resumed_from is not None
    link(settings.runs_bucket, submitted.record.resumed_from, submitted.record.run_id)
    return submitted


def resume(
    settings: ApiSettings, run_id: str, client_token: str, options: dict[str, Any] | None = None,
    source: Literal["api", "cli"] = "api",
) -> start.Submitted:
    """Start a new run resuming ``run_id`` (see the module's docstring). The same
    ``client_token`` with the same options is the same resumed run; with other options (or for
    another request), TokenConflict. RunNotFound for an unknown run; NotResumable for one still
    going or SUCCEEDED; Refused when its record, workflow or inputs are gone, or the options or
    the inputs' s3:// objects are no longer valid. Nothing is started when it is refused."""
    bucket = settings.runs_bucket
    current = resumable(bucket, run_id)
    fingerprint = {"resume": run_id, "options": start.digest(options or {})}
    earlier = start.check_token(bucket, client_token, fingerprint)
    if earlier is not None and (record := start.recorded_or_none(bucket, start.run_key(bucket, current.name, earlier))):
        return started(settings, record)
    original = original_record(current)
    try:
        merged = resumed_options(original.options, options or {}, settings.call_cache)
    except run_options.OptionsProblems as exn:
        raise start.Refused(exn.problems) from None
    limits = settings.run_limits(merged)  # (max_run_hours already checked by the options' model)
    new_id = runs.run_id_for(original.name, "resume", run_id, client_token, json.dumps(fingerprint, sort_keys=True))
    results = runs.results_uri(bucket, original.name, new_id)
    body, inputs = original_inputs(original)
    check_source(original)
    workflow, workflow_name = start.pin_and_validate(
        original.workflow, inputs, original.inputs, results, settings.capacities(), settings.max_vcpus(merged),
        run_options.task_of(merged), run_options.check_quant_of(merged),
    )
    record = start.new_record(
        new_id, original.name, bucket, workflow, results, source, limits,
        submitted={"workflow": original.workflow, "inputs": original.inputs, "resumed_from": run_id},
        options=merged, resumed_from=run_id, workflow_name=workflow_name,
    )
    start.put_once(bucket, record.results_key(runs.INPUTS_NAME), body, "inputs")
    start.claim_token(bucket, client_token, fingerprint, new_id)
    return started(settings, record)
