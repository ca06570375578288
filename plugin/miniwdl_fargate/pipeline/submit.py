"""Submit: turn an inputs JSON dropped into the bucket (or an API request) into one execution.

The run id is derived from what was submitted, and is the execution name: a duplicate delivery of
the same submission finds the execution already there and starts nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from .. import aws, runs, s3io, status
from .settings import FunctionSettings
from .validate import MAX_INPUTS_BYTES, Problems, check_run

log = logging.getLogger(__name__)


class SubmitError(ValueError):
    """Bad input: nothing was started. ``problems`` says what and where."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p['where']}: {p['problem']}" for p in problems))


@dataclass
class Submitted:
    record: runs.RunRecord
    execution_arn: str
    duplicate: bool


def find_workflow(bucket: str, name: str) -> tuple[str, str]:
    """(key, etag) of the run's WDL: ``workflow.wdl``, or the only ``*.wdl`` in its folder."""
    s3 = aws.client("s3")
    prefix = runs.run_prefix(name)
    try:
        head = s3.head_object(Bucket=bucket, Key=prefix + runs.DEFAULT_WDL)
        return prefix + runs.DEFAULT_WDL, head["ETag"].strip('"')
    except s3.exceptions.ClientError as exn:
        if exn.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/")
    wdls = [o for o in listing.get("Contents", []) if o["Key"].endswith(".wdl")]
    where = f"s3://{bucket}/{prefix}"
    if not wdls:
        raise SubmitError([{"where": where, "problem": f"no WDL found: upload the workflow as {where}{runs.DEFAULT_WDL}"}])
    if len(wdls) > 1:
        names = ", ".join(o["Key"][len(prefix):] for o in wdls)
        raise SubmitError(
            [{"where": where, "problem": f"several WDL files ({names}); name the main one {runs.DEFAULT_WDL}"}]
        )
    return wdls[0]["Key"], wdls[0]["ETag"].strip('"')


def parse_inputs(body: bytes, where: str) -> dict[str, Any]:
    """The inputs document as a dict, or SubmitError saying why not."""
    if len(body) > MAX_INPUTS_BYTES:
        raise SubmitError(
            [{"where": where, "problem": f"{len(body)} bytes; an inputs JSON may have at most {MAX_INPUTS_BYTES >> 20} MiB "
              "(put large values in files and pass their s3:// URIs)"}]
        )
    if not body.strip():
        raise SubmitError([{"where": where, "problem": "empty: expected a JSON object of workflow inputs, e.g. {\"wf.x\": 1}"}])
    try:
        doc = json.loads(body)
    except ValueError as exn:
        raise SubmitError([{"where": where, "problem": f"not valid JSON: {exn}"}]) from None
    if not isinstance(doc, dict):
        raise SubmitError(
            [{"where": where, "problem": f"expected a JSON object of workflow inputs, got a JSON {type(doc).__name__}"}]
        )
    return doc


def read_inputs(bucket: str, key: str) -> dict[str, Any]:
    """The inputs document at the key; SubmitError if it is gone (deleted or replaced by a
    delete marker between its upload and this event) or not a JSON object of inputs."""
    s3 = aws.client("s3")
    where = s3io.uri(bucket, key)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise SubmitError(
            [{"where": where, "problem": "was deleted before the pipeline could read it: upload it again to start the run"}]
        ) from None
    return parse_inputs(body, where)


def validate(workflow: str, inputs: dict[str, Any], inputs_where: str) -> None:
    """Raise SubmitError listing every problem of the run (see ``validate``)."""
    problems = Problems()
    check_run(workflow, inputs, inputs_where, problems)
    if problems:
        raise SubmitError(problems.found)


def start(settings: FunctionSettings, record: runs.RunRecord) -> Submitted:
    """Write run.json and start the execution named after the run, exactly once per run id.

    run.json is written only if absent (a conditional put): the submission that creates it is the
    first; any other is a duplicate (a redelivered event, a retried request). Either way the
    execution is started with the input recorded in run.json, so a first attempt that died
    between the two steps is completed by its retry, and a duplicate finds the execution there:
    Step Functions answers the same running execution, or ExecutionAlreadyExists.
    """
    s3 = aws.client("s3")
    key = record.results_key("run.json")
    first = True
    try:
        s3.put_object(
            Bucket=record.bucket, Key=key, IfNoneMatch="*", ContentType="application/json",
            Body=(record.model_dump_json(indent=2) + "\n").encode(),
        )
    except s3.exceptions.ClientError as exn:
        if exn.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise
        first = False
        record = _recorded(record.bucket, key)
    arn = execution_arn(settings.state_machine_arn, record.run_id)
    status.update(record.bucket, record.run_id, lambda current: current, initial=status.new(record, arn))
    sfn = aws.client("stepfunctions")
    try:
        arn = sfn.start_execution(
            stateMachineArn=settings.state_machine_arn, name=record.run_id, input=record.model_dump_json()
        )["executionArn"]
    except sfn.exceptions.ExecutionAlreadyExists:
        arn, first = execution_arn(settings.state_machine_arn, record.run_id), False
    if not first:
        log.info("run %s already submitted: %s", record.run_id, arn)
    return Submitted(record, arn, duplicate=not first)


def _recorded(bucket: str, key: str) -> runs.RunRecord:
    """The run record another submission wrote (waiting briefly if it is still being written)."""
    for delay in (0.0, 0.2, 0.5, 1.0, 2.0):
        time.sleep(delay)
        found = s3io.find_json(bucket, key)
        if found is not None:
            return runs.RunRecord.model_validate(found)
    raise RuntimeError(f"s3://{bucket}/{key} is being written by another submission and did not appear")


def execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name


def submit_object(
    settings: FunctionSettings, bucket: str, key: str, etag: str, version_id: str | None = None
) -> Submitted | None:
    """An object landed in the bucket: start a run if it is ``runs/<name>/inputs.json``.

    Returns None when nothing was started: not a trigger key, or a rejected submission (its
    problems written to ``runs/<name>/error.json``).
    """
    match = runs.TRIGGER_RE.match(key)
    if not match:
        log.info("ignoring s3://%s/%s: not runs/<name>/inputs.json", bucket, key)
        return None
    name = match.group("name")
    try:
        runs.check_name(name)
        inputs = read_inputs(bucket, key)
        wdl_key, wdl_etag = find_workflow(bucket, name)
        validate(s3io.uri(bucket, wdl_key), inputs, s3io.uri(bucket, key))
    except (SubmitError, ValueError) as exn:
        problems = exn.problems if isinstance(exn, SubmitError) else [{"where": s3io.uri(bucket, key), "problem": str(exn)}]
        where = s3io.put_json(
            bucket,
            runs.run_prefix(name) + "error.json",
            {
                "status": "FAILED",
                "error": "InvalidSubmission",
                "message": f"the run was not started: {len(problems)} problem(s) with the submission",
                "problems": problems,
                "inputs": s3io.uri(bucket, key),
                "inputs_version": version_id or etag,  # which upload of inputs.json this answers
            },
        )
        # handled: the user's answer is error.json; raising would only make EventBridge retry
        log.error("rejected s3://%s/%s: %s (see %s)", bucket, key, SubmitError(problems), where)
        return None
    # the object's version (each upload its own, even of the same bytes) when the bucket keeps
    # versions; a redelivered event carries the same one, so it maps to the same run
    run_id = runs.run_id_for(name, key, version_id or etag, wdl_etag)
    record = runs.RunRecord(
        run_id=run_id,
        name=name,
        bucket=bucket,
        workflow=s3io.uri(bucket, wdl_key),
        inputs=s3io.uri(bucket, key),
        results=runs.results_uri(bucket, name, run_id),
        submitted_at=runs.now_iso(),
        source="s3",
        **settings.run_limits({}),
    )
    submitted = start(settings, record)
    if not submitted.duplicate:  # an earlier rejection of this run name no longer applies
        aws.client("s3").delete_object(Bucket=bucket, Key=runs.run_prefix(name) + "error.json")
    return submitted


def submit_request(
    settings: FunctionSettings,
    name: str,
    workflow: str | None,
    inputs: dict[str, Any],
    client_token: str,
    wdl: str | None = None,
    options: dict[str, Any] | None = None,
) -> Submitted:
    """An API request: inputs given inline, the workflow by s3:// URI or inline (``wdl``, the
    source of a self-contained WDL document). The same ``client_token`` is the same run."""
    problems = []
    try:
        runs.check_name(name)
    except ValueError as exn:
        problems.append({"where": "name", "problem": str(exn)})
    if (workflow is None) == (wdl is None):
        problems.append({"where": "workflow", "problem": "give either workflow (an s3:// URI of a .wdl file) or wdl (its source)"})
    elif workflow is not None:
        try:
            wf_bucket, wf_key = s3io.split(workflow)
            if not wf_key.endswith(".wdl"):
                problems.append({"where": "workflow", "problem": f"{workflow} is not a .wdl file"})
        except ValueError as exn:
            problems.append({"where": "workflow", "problem": str(exn)})
    try:
        limits = settings.run_limits(options)
    except ValueError as exn:
        problems.append({"where": "options.max_run_hours", "problem": str(exn)})
    if problems:
        raise SubmitError(problems)
    s3 = aws.client("s3")
    bucket = settings.runs_bucket
    if workflow is not None:
        try:
            wdl_version = s3.head_object(Bucket=wf_bucket, Key=wf_key)["ETag"].strip('"')
        except s3.exceptions.ClientError:
            raise SubmitError([{"where": "workflow", "problem": f"{workflow} does not exist or is not readable"}]) from None
        run_id = runs.run_id_for(name, "api", client_token, workflow, wdl_version)
    else:
        assert wdl is not None
        run_id = runs.run_id_for(name, "api", client_token, hashlib.sha256(wdl.encode()).hexdigest())
        workflow = runs.results_uri(bucket, name, run_id) + "source/" + runs.DEFAULT_WDL
        _put_once(bucket, s3io.split(workflow)[1], wdl.encode(), "wdl")
    validate(workflow, inputs, "inputs")
    results = runs.results_uri(bucket, name, run_id)
    record = runs.RunRecord(
        run_id=run_id,
        name=name,
        bucket=bucket,
        workflow=workflow,
        inputs=results + runs.INPUTS_NAME,
        results=results,
        submitted_at=runs.now_iso(),
        source="api",
        options=options or {},
        **limits,
    )
    _put_once(bucket, record.results_key(runs.INPUTS_NAME), json.dumps(inputs, indent=2, sort_keys=True).encode(), "inputs")
    return start(settings, record)


def _put_once(bucket: str, key: str, body: bytes, what: str) -> None:
    """Write a run's input once: a retried request finds the same bytes there; a different
    request reusing the client token is refused rather than overwriting the first run's."""
    s3 = aws.client("s3")
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
    except s3.exceptions.ClientError as exn:
        if exn.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise
        if s3.get_object(Bucket=bucket, Key=key)["Body"].read() != body:
            raise SubmitError(
                [{"where": "client_token", "problem": f"already used for a run with other {what}; use a new token for a new run"}]
            ) from None
