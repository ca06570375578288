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
from typing import Any, Literal

from .. import aws, inputs_json, run_options, runs, s3io, sizes, status, zipbundle
from . import snapshot
from .settings import ApiSettings, SubmitSettings
from .validate import Problems, check_run, target_name

log = logging.getLogger(__name__)


class Refused(ValueError):
    """Bad input: nothing was started. ``problems`` says what and where."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p['where']}: {p['problem']}" for p in problems))


class TokenConflict(Refused):
    """The client token was first used for a different request (HTTP 409): ``problems`` name
    each part of the request that differs."""


@dataclass
class Submitted:
    record: runs.RunRecord
    execution_arn: str
    duplicate: bool


def find_workflow(bucket: str, name: str) -> tuple[str, str]:
    """(key, etag) of the run's workflow: ``workflow.wdl``, or ``workflow.zip`` (a ``miniwdl zip``
    bundle), or the only ``*.wdl`` in its folder, or else its only ``*.zip`` (``miniwdl zip
    wf.wdl`` writes ``wf.wdl.zip``); Refused when it is none or both."""
    s3 = aws.client("s3")
    prefix = runs.run_prefix(name)
    where = f"s3://{bucket}/{prefix}"
    found = [(key, etag) for key in (prefix + runs.DEFAULT_WDL, prefix + runs.DEFAULT_ZIP) if (etag := head_etag(bucket, key))]
    if len(found) == 2:
        raise Refused([{"where": where, "problem": f"both {runs.DEFAULT_WDL} and {runs.DEFAULT_ZIP}: keep the one to run"}])
    if found:
        return found[0]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
    listed = [o for page in pages for o in page.get("Contents", [])]
    wdls = [o for o in listed if o["Key"].endswith(".wdl")]
    if not wdls:
        wdls = [o for o in listed if zipbundle.is_bundle(o["Key"])]
        if len(wdls) > 1:
            names = ", ".join(o["Key"][len(prefix):] for o in wdls)
            raise Refused([{"where": where, "problem": f"several bundles ({names}); name the one to run {runs.DEFAULT_ZIP}"}])
    if not wdls:
        raise Refused([{"where": where, "problem": f"no WDL found: upload the workflow as {where}{runs.DEFAULT_WDL} "
                        f"(or a `miniwdl zip` bundle as {where}{runs.DEFAULT_ZIP})"}])
    if len(wdls) > 1:
        names = ", ".join(o["Key"][len(prefix):] for o in wdls)
        raise Refused(
            [{"where": where, "problem": f"several WDL files ({names}); name the main one {runs.DEFAULT_WDL}"}]
        )
    return wdls[0]["Key"], wdls[0]["ETag"].strip('"')


def head_etag(bucket: str, key: str) -> str | None:
    """The object's ETag, or None if there is no such object."""
    s3 = aws.client("s3")
    try:
        return str(s3.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')
    except s3.exceptions.ClientError as exn:
        if not s3io.not_found(exn):
            raise
        return None


def read_options(bucket: str, name: str) -> run_options.RunOptions:
    """The run options of an S3 drop: its sidecar ``runs/<name>/options.json`` as it is now, or
    none; Refused naming the sidecar and each bad option."""
    key = runs.run_prefix(name) + runs.OPTIONS_NAME
    s3 = aws.client("s3")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read(run_options.SIDECAR_MAX_BYTES + 1)
    except s3.exceptions.NoSuchKey:
        return run_options.RunOptions()
    try:
        return run_options.parse_sidecar(body, s3io.uri(bucket, key))
    except run_options.OptionsProblems as exn:
        raise Refused(exn.problems) from None


def parse_inputs(body: bytes, where: str) -> dict[str, Any]:
    """The inputs document as a dict, or Refused saying why not (``inputs_json.load_object``)."""
    try:
        return inputs_json.load_object(body, where)
    except inputs_json.InputsJSONError as exn:
        raise Refused(exn.problems) from None


#: how many earlier versions of an inputs.json copied onto itself are looked through for the run
#: of the same bytes (each copy in place is a version: a few storage-class or encryption edits)
COPIES_LOOKED_THROUGH = 10


def copied_in_place(bucket: str, name: str, key: str, version_id: str, etag: str) -> runs.RunRecord | None:
    """The run of an earlier version of ``key`` with the same bytes as ``version_id`` (the versions
    just before it that also have them are looked through, ``COPIES_LOOKED_THROUGH``), if that
    version started one; None otherwise: then the copy is a submission like any other (a copy
    from elsewhere, or of other bytes). ListObjectVersions lists a key's versions newest first
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectVersions.html). Bytes are
    compared as read (an inputs.json is capped), not by ETag: a copy that changes the encryption
    to SSE-KMS gets an ETag that is no MD5 of its bytes ("Objects ... encrypted by SSE-C or
    SSE-KMS, have ETags that are not an MD5 digest of their object data",
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_Object.html)."""
    s3 = aws.client("s3")
    versions: list[dict[str, Any]] = []
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key)
    for page in pages:  # (the copy is the newest version, or nearly: the first page has it and those before it)
        versions += [v for v in page.get("Versions", []) if v["Key"] == key]
        ids = [v["VersionId"] for v in versions]
        if version_id in ids and len(ids) - ids.index(version_id) > COPIES_LOOKED_THROUGH:
            break
    ids = [v["VersionId"] for v in versions]
    if version_id not in ids:
        return None
    try:
        copied = snapshot.read_version(bucket, key, version_id, etag)
        for earlier in versions[ids.index(version_id) + 1 :][:COPIES_LOOKED_THROUGH]:
            if snapshot.read_version(bucket, key, earlier["VersionId"], None) != copied:
                return None  # (other bytes: what was copied onto the key is new)
            run_id = runs.run_id_for(name, key, earlier["VersionId"])
            found = recorded_or_none(bucket, s3io.split(runs.results_uri(bucket, name, run_id))[1] + runs.RECORD_NAME)
            if found is not None:
                log.info("s3://%s/%s version %s is a copy of version %s onto itself: run %s", bucket, key, version_id, earlier["VersionId"], run_id)
                return found
    except snapshot.SnapshotError:  # (a version gone meanwhile: no run to answer for the copy)
        return None
    return None


def check_inputs_size(bucket: str, key: str, version_id: str | None, etag: str | None, size: int | None) -> None:
    """Refuse an inputs JSON over the cap from its size alone, before reading a byte of it: the
    event's ``object.size``, else HeadObject's ContentLength of that same upload
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html,
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html)."""
    if size is None:
        s3 = aws.client("s3")
        try:
            size = int(s3.head_object(Bucket=bucket, Key=key, **s3io.one_upload(version_id, etag))["ContentLength"])
        except s3.exceptions.ClientError:
            return  # gone or replaced: reading it says so (snapshot.read_version); the body is capped too
    problem = inputs_json.size_problem(size)
    if problem:
        raise Refused([{"where": s3io.uri(bucket, key), "problem": problem}])


def validate(
    workflow: str, inputs: dict[str, Any], inputs_where: str, capacities: sizes.Capacities,
    max_vcpus: tuple[float, str] = (0.0, ""), task: str | None = None, check_quant: bool = True,
) -> str:
    """Raise Refused listing every problem of the run on a stack with ``capacities``, with the
    run's ``max_vcpus``, ``task`` and ``check_quant`` (its options; see ``validate``); the name of
    the workflow (or task) it runs."""
    problems = Problems()
    name = check_run(workflow, inputs, inputs_where, problems, capacities, max_vcpus, task, check_quant)
    if problems:
        raise Refused(problems.found)
    return name


def start(settings: SubmitSettings, record: runs.RunRecord) -> Submitted:
    """Write run.json and start the execution named after the run, exactly once per run id.

    run.json is written only if absent (a conditional put): the submission that creates it is the
    first; any other is a duplicate (a redelivered event, a retried request). Either way the
    execution is started with the input recorded in run.json, so a first attempt that died
    between the two steps is completed by its retry, and a duplicate finds the execution there:
    Step Functions answers the same running execution, or ExecutionAlreadyExists.
    """
    key = record.results_key(runs.RECORD_NAME)
    first = s3io.put_if_absent(record.bucket, key, (record.model_dump_json(indent=2) + "\n").encode(), "application/json")
    arn = runs.execution_arn(settings.state_machine_arn, record.run_id)
    if not first:
        record = _recorded(record.bucket, key)
        known = _known_status(record)
        if known is not None and known.finished:
            # its execution ended; Step Functions takes an execution's name again 90 days after it
            # closed ("Names can be reused after 90 days",
            # https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html):
            # a late duplicate (a client token used again, a redelivered event) must not start it anew
            log.info("run %s already submitted and finished", record.run_id)
            return Submitted(record, known.execution_arn or arn, duplicate=True)
        if known is not None and known.execution_arn and known.execution_arn != arn:
            # started under the name of its day (a run id's "." before execution_name made it "_")
            return Submitted(record, known.execution_arn, duplicate=True)
    status.update(record.bucket, record.run_id, lambda current: current, initial=status.new(record, arn))
    sfn = aws.client("stepfunctions")
    try:
        arn = sfn.start_execution(
            stateMachineArn=settings.state_machine_arn, name=runs.execution_name(record.run_id), input=record.model_dump_json()
        )["executionArn"]
    except sfn.exceptions.ExecutionAlreadyExists:
        arn, first = runs.execution_arn(settings.state_machine_arn, record.run_id), False
    if not first:
        log.info("run %s already submitted: %s", record.run_id, arn)
    return Submitted(record, arn, duplicate=not first)


def _known_status(record: runs.RunRecord) -> status.RunStatus | None:
    """The run's status.json (None: not there yet, or it cannot be read)."""
    try:
        return status.read(record.bucket, record.run_id)
    except status.UnreadableStatus:
        return None


def _recorded(bucket: str, key: str) -> runs.RunRecord:
    """The run record another submission wrote (waiting briefly if it is still being written)."""
    for delay in (0.0, 0.2, 0.5, 1.0, 2.0):
        time.sleep(delay)
        found = s3io.find_json(bucket, key)
        if found is not None:
            return runs.RunRecord.model_validate(found)
    raise RuntimeError(f"s3://{bucket}/{key} is being written by another submission and did not appear")


def reject(
    bucket: str, name: str, key: str, inputs_version: str, problems: list[dict[str, str]], run_id: str | None = None
) -> None:
    """Answer a rejected S3 submission with ``runs/<name>/error.json`` (with the run id the run
    would have had, which the submitter was told: ``status RUN`` finds the refusal by it), kept
    under that run id's results too (``runs.run_refusal_key``: a later refusal under the name
    replaces the name's)."""
    doc = {
        "status": "FAILED",
        "error": "InvalidSubmission",
        "message": f"the run was not started: {len(problems)} problem(s) with the submission",
        "problems": problems,
        "inputs": s3io.uri(bucket, key),
        "inputs_version": inputs_version,  # which upload of inputs.json this answers
        **({"run_id": run_id} if run_id else {}),
    }
    if run_id:
        s3io.put_json(bucket, runs.run_refusal_key(run_id), doc)
    where = s3io.put_json(bucket, runs.refusal_key(name), doc)
    # handled: the user's answer is error.json; raising would only make EventBridge retry
    log.error("rejected s3://%s/%s: %s (see %s)", bucket, key, Refused(problems), where)


def pin_and_validate(
    workflow: str, inputs: dict[str, Any], inputs_where: str, results: str, capacities: sizes.Capacities,
    max_vcpus: tuple[float, str] = (0.0, ""), task: str | None = None, check_quant: bool = True,
) -> tuple[str, str]:
    """Copy the workflow's bundle into the run's ``source/`` and validate that copy (what the
    driver will run); return the copy's URI and the workflow's name. Problems name the original
    keys. A rejected copy is removed."""
    pinned = pin_workflow(workflow, inputs, inputs_where, results, capacities, max_vcpus, task, check_quant)
    return pinned.workflow, pinned.name


@dataclass
class Pinned:
    """The run's own copy of its workflow, validated: the main WDL's copy, the name of what it
    runs, and the run's inputs (a bundle's default inputs under the submitted ones)."""

    workflow: str
    name: str
    inputs: dict[str, Any]


def pin_workflow(
    workflow: str | bytes, inputs: dict[str, Any], inputs_where: str, results: str, capacities: sizes.Capacities,
    max_vcpus: tuple[float, str] = (0.0, ""), task: str | None = None, check_quant: bool = True,
) -> Pinned:
    """``pin_and_validate`` for a WDL (its folder copied) or a ``miniwdl zip`` bundle (checked,
    then unpacked into ``source/``; its default inputs honoured, the submitted ones over them).
    ``workflow`` is an s3:// URI, or an uploaded bundle's bytes (named "workflow_zip" in problems)."""
    bucket, prefix = s3io.split(results)
    source = prefix + snapshot.SOURCE_DIR
    where = workflow if isinstance(workflow, str) else "workflow_zip"
    try:
        if isinstance(workflow, bytes) or zipbundle.is_bundle(workflow):
            unpacked = snapshot.copy_bundle_zip(workflow, bucket, source, where)
            copy, original = unpacked.workflow, where + "/"
            inputs = with_defaults(copy, unpacked.defaults, inputs, task, check_quant)
        else:
            copy = snapshot.copy_bundle(workflow, bucket, source)
            original = s3io.uri(s3io.split(workflow)[0], snapshot.folder_of(s3io.split(workflow)[1]))
    except snapshot.SnapshotError as exn:  # too big, a bad bundle, or kept changing: the submitter's to fix
        snapshot.delete_prefix(bucket, source)
        raise Refused([{"where": where, "problem": str(exn).removeprefix(where + ": ")}]) from None
    try:
        name = validate(copy, inputs, inputs_where, capacities, max_vcpus, task, check_quant)
    except Refused as exn:
        snapshot.delete_prefix(bucket, source)
        pinned = s3io.uri(bucket, source)
        raise Refused(
            [{k: snapshot.unmap(v, pinned, original) for k, v in p.items()} for p in exn.problems]
        ) from None
    return Pinned(copy, name, inputs)


def with_defaults(
    workflow: str, defaults: dict[str, Any], inputs: dict[str, Any], task: str | None = None, check_quant: bool = True
) -> dict[str, Any]:
    """The run's inputs: a bundle's ``defaults`` with the submitted ``inputs`` over them, input
    by input (named with or without the workflow's (or ``task``'s) name in front)."""
    if not defaults:
        return inputs
    merged = zipbundle.merge_defaults(defaults, inputs, target_name(workflow, task, check_quant))
    if problem := inputs_json.size_problem(len(inputs_body(merged))):
        raise snapshot.SnapshotError(f"the inputs with the bundle's default inputs: {problem}")
    return merged


def from_object(
    settings: SubmitSettings, bucket: str, key: str, etag: str, version_id: str | None = None, size: int | None = None,
    reason: str | None = None,
) -> Submitted | None:
    """An object landed in the bucket: start a run if it is ``runs/<name>/inputs.json``.

    The run is this upload (``version_id``, else ``etag``): it reads exactly these bytes and a
    copy of the workflow's folder as it is now (see ``snapshot``), so a later upload to the same
    keys, however soon, is a run of its own and never changes this one. Returns None when nothing
    was started: not a trigger key, or a rejected submission (its problems written to
    ``runs/<name>/error.json``). ``reason``: the event's (the S3 call that made the object): a
    CopyObject of an inputs.json onto itself (the console's "Edit storage class" or "Edit
    encryption", a Batch Operations copy) makes a new version of the same bytes, not a
    submission: the run of the version it copied answers for it (``copied_in_place``).
    """
    match = runs.TRIGGER_RE.match(key)
    if not match:
        log.info("ignoring s3://%s/%s: not runs/<name>/inputs.json", bucket, key)
        return None
    name = match.group("name")
    upload = version_id or etag
    run_id: str | None = None
    try:
        runs.check_name(name)
        # a redelivered event carries the same version, so it maps to the same run
        run_id = runs.run_id_for(name, key, upload)
        results = runs.results_uri(bucket, name, run_id)
        record = recorded_or_none(bucket, s3io.split(results)[1] + runs.RECORD_NAME)
        if record is not None:  # a duplicate delivery: the run is already bound
            return start(settings, record)
        check_inputs_size(bucket, key, version_id, etag, size)
        if reason == "CopyObject" and version_id and (earlier := copied_in_place(bucket, name, key, version_id, etag)):
            return start(settings, earlier)  # (a copy of a run's inputs.json onto itself: that run's)
        body = snapshot.read_version(bucket, key, version_id, etag)
        inputs = parse_inputs(body, s3io.uri(bucket, key))
        body = inputs_json.decode(body, key).encode("utf-8")  # the run's copy: no byte order mark
        wdl_key, _ = find_workflow(bucket, name)
        options = read_options(bucket, name).given()
        limits = settings.run_limits(options)
        pinned = pin_workflow(
            s3io.uri(bucket, wdl_key), inputs, s3io.uri(bucket, key), results, settings.capacities(), settings.max_vcpus(options),
            run_options.task_of(options), run_options.check_quant_of(options),
        )
        workflow, workflow_name = pinned.workflow, pinned.name
        if pinned.inputs is not inputs:  # a bundle's default inputs under the uploaded ones
            body = inputs_body(pinned.inputs)
    except (Refused, ValueError) as exn:
        problems = exn.problems if isinstance(exn, Refused) else [{"where": s3io.uri(bucket, key), "problem": str(exn)}]
        reject(bucket, name, key, upload, problems, run_id)
        return None
    record = new_record(
        run_id, name, bucket, workflow, results, "s3", limits,
        submitted={"workflow": s3io.uri(bucket, wdl_key), "inputs": s3io.uri(bucket, key), "inputs_version": upload},
        options=options, workflow_name=workflow_name,
    )
    # an earlier delivery of this event may have been refused (inputs.json before its workflow,
    # in a parallel `aws s3 sync`) under this same run id: the run now started must not carry
    # that refusal as its error (S3 delivers events at least once)
    aws.client("s3").delete_object(Bucket=bucket, Key=runs.run_refusal_key(run_id))
    put_once(bucket, record.results_key(runs.INPUTS_NAME), body, "inputs")
    submitted = start(settings, record)
    if not submitted.duplicate:  # an earlier rejection of this run name no longer applies
        aws.client("s3").delete_object(Bucket=bucket, Key=runs.refusal_key(name))
    return submitted


def new_record(
    run_id: str, name: str, bucket: str, workflow: str, results: str, source: Literal["s3", "api", "cli"],
    limits: dict[str, int], submitted: dict[str, str], options: dict[str, Any] | None = None,
    resumed_from: str | None = None, workflow_name: str = "",
) -> runs.RunRecord:
    """A new run's record, submitted now: it runs ``workflow`` (its own copy) on its own copy of
    the inputs, beside its results."""
    return runs.RunRecord(
        run_id=run_id, name=name, bucket=bucket, workflow=workflow, inputs=results + runs.INPUTS_NAME,
        results=results, submitted_at=runs.now_iso(), source=source, options=options or {}, submitted=submitted,
        resumed_from=resumed_from, workflow_name=workflow_name, **limits,
    )


def recorded_or_none(bucket: str, key: str) -> runs.RunRecord | None:
    found = s3io.find_json(bucket, key)
    return runs.RunRecord.model_validate(found) if found is not None else None


# -- the API: one client token, one request ------------------------------------------------------

TOKENS_PREFIX = "client-tokens/"


def digest(value: Any) -> str:
    """The SHA-256 of a JSON value, its keys sorted: one part of a request's fingerprint."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def request_fingerprint(
    name: str, workflow: str | None, wdl: str | None, inputs: dict[str, Any], options: dict[str, Any] | None,
    workflow_zip: bytes | None = None,
) -> dict[str, str]:
    """What a request asks for, part by part (digests of the large parts), to compare a retry."""
    parts = {
        "name": name,
        "workflow": workflow or "",
        "wdl": digest(wdl) if wdl is not None else "",
        "inputs": digest(inputs),
        "options": digest(options or {}),
    }
    if workflow_zip is not None:  # (only then: earlier requests' fingerprints have no such part)
        parts["workflow_zip"] = hashlib.sha256(workflow_zip).hexdigest()
    return parts


def token_key(client_token: str) -> str:
    return TOKENS_PREFIX + hashlib.sha256(client_token.encode()).hexdigest() + ".json"


def check_token(bucket: str, client_token: str, fingerprint: dict[str, str]) -> str | None:
    """The run id this token was first used for, if for this same request; TokenConflict naming
    what differs if for another; None if the token is new."""
    used = s3io.find_json(bucket, token_key(client_token))
    if used is None:
        return None
    differs = [part for part, value in fingerprint.items() if used.get("request", {}).get(part) != value]
    if differs:
        raise TokenConflict(
            [{"where": part, "problem": f"differs from the request that first used this client_token (run {used['run_id']}); "
              "a retry must repeat the request exactly, a new run needs a new client_token"} for part in differs]
        )
    return str(used["run_id"])


def claim_token(bucket: str, client_token: str, fingerprint: dict[str, str], run_id: str) -> None:
    """Record the token's request once (a conditional put): of two different requests racing
    with one token, the second gets TokenConflict."""
    body = json.dumps({"run_id": run_id, "request": fingerprint}).encode()
    if not s3io.put_if_absent(bucket, token_key(client_token), body, "application/json"):
        check_token(bucket, client_token, fingerprint)


def check_request(
    settings: SubmitSettings, name: str, workflow: str | None, wdl: str | None, options: dict[str, Any] | None,
    workflow_zip: bytes | None = None,
) -> dict[str, int]:
    """The run's limits, or Refused naming every malformed field of the request."""
    problems = []
    try:
        runs.check_name(name)
    except ValueError as exn:
        problems.append({"where": "name", "problem": str(exn)})
    if [workflow, wdl, workflow_zip].count(None) != 2:
        problems.append({"where": "workflow", "problem": "give one of workflow (an s3:// URI of a .wdl file or of a "
                         "`miniwdl zip` bundle .zip), wdl (the WDL's source) or workflow_zip (a bundle, base64)"})
    elif workflow is not None:
        try:
            if zipbundle.is_bundle(s3io.split(workflow)[1]):
                pass  # self-contained: no folder of its own needed
            elif not s3io.split(workflow)[1].endswith(".wdl"):
                problems.append({"where": "workflow", "problem": f"{workflow} is neither a .wdl file nor a .zip bundle"})
            elif problem := snapshot.folder_problem(workflow):
                problems.append({"where": "workflow", "problem": problem})
        except ValueError as exn:
            problems.append({"where": "workflow", "problem": str(exn)})
    limits: dict[str, int] = {}
    try:
        limits = settings.run_limits(options)
    except ValueError as exn:
        problems.append({"where": "options.max_run_hours", "problem": str(exn)})
    if problems:
        raise Refused(problems)
    return limits


def from_request(
    settings: ApiSettings,
    name: str,
    workflow: str | None,
    inputs: dict[str, Any],
    client_token: str,
    wdl: str | None = None,
    options: dict[str, Any] | None = None,
    workflow_zip: bytes | None = None,
    described: dict[str, str] | None = None,
) -> Submitted:
    """An API request: inputs given inline, the workflow by s3:// URI or inline (``wdl``, the
    source of a self-contained WDL document) or uploaded as a ``miniwdl zip`` bundle
    (``workflow_zip``, its bytes; or ``workflow`` naming an s3:// .zip). The same ``client_token`` with the same request is
    the same run; with a different request, TokenConflict. The run reads only its own copies of
    the workflow's folder and the inputs (see ``snapshot``). ``described``: more of what was
    submitted, kept in the record's ``submitted`` (a WES request's workflow_url and version)."""
    limits = check_request(settings, name, workflow, wdl, options, workflow_zip)
    body = inputs_body(inputs)
    if problem := inputs_json.size_problem(len(body)):  # the cap of every entrance
        raise Refused([{"where": "inputs", "problem": problem}])
    bucket = settings.runs_bucket
    fingerprint = request_fingerprint(name, workflow, wdl, inputs, options, workflow_zip)
    earlier = check_token(bucket, client_token, fingerprint)
    if earlier is not None and (record := recorded_or_none(bucket, run_key(bucket, name, earlier))) is not None:
        return start(settings, record)
    # the request's own digest in the id: a different request racing with the same token never
    # shares (or overwrites) this run's copies
    run_id = runs.run_id_for(name, "api", client_token, json.dumps(fingerprint, sort_keys=True))
    results = runs.results_uri(bucket, name, run_id)
    if workflow is not None:
        s3 = aws.client("s3")
        wf_bucket, wf_key = s3io.split(workflow)
        try:
            s3.head_object(Bucket=wf_bucket, Key=wf_key)
        except s3.exceptions.ClientError:
            raise Refused([{"where": "workflow", "problem": f"{workflow} does not exist or is not readable"}]) from None
        pinned = pin_workflow(workflow, inputs, "inputs", results, settings.capacities(), settings.max_vcpus(options),
                              run_options.task_of(options), run_options.check_quant_of(options))
        source, workflow_name = pinned.workflow, pinned.name
        if pinned.inputs is not inputs:  # a bundle's default inputs under the given ones
            body = inputs_body(pinned.inputs)
    elif workflow_zip is not None:
        pinned = pin_workflow(workflow_zip, inputs, "inputs", results, settings.capacities(), settings.max_vcpus(options),
                              run_options.task_of(options), run_options.check_quant_of(options))
        source, workflow_name = pinned.workflow, pinned.name
        if pinned.inputs is not inputs:
            body = inputs_body(pinned.inputs)
    else:
        assert wdl is not None
        source = results + snapshot.SOURCE_DIR + runs.DEFAULT_WDL
        put_once(bucket, s3io.split(source)[1], wdl.encode(), "wdl")
        try:
            workflow_name = validate(source, inputs, "inputs", settings.capacities(), settings.max_vcpus(options),
                                     run_options.task_of(options), run_options.check_quant_of(options))
        except Refused as exn:
            snapshot.delete_prefix(bucket, s3io.split(results)[1] + snapshot.SOURCE_DIR)  # a refused run leaves nothing
            # the problems name the request's "wdl" (line:column in it), not the copy just removed
            raise Refused(
                [{k: snapshot.unmap(v, source, "wdl") for k, v in p.items()} for p in exn.problems]
            ) from None
    record = new_record(
        run_id, name, bucket, source, results, "api", limits,
        submitted={"workflow": workflow or ("(uploaded bundle)" if workflow_zip is not None else "(inline)"),
                   "inputs": "(inline)", **(described or {})}, options=options or {},
        workflow_name=workflow_name,
    )
    put_once(bucket, record.results_key(runs.INPUTS_NAME), body, "inputs")
    claim_token(bucket, client_token, fingerprint, run_id)
    return start(settings, record)


def inputs_body(inputs: dict[str, Any]) -> bytes:
    """The run's copy of inputs given as a value (the API's, or merged with a bundle's defaults)."""
    return json.dumps(inputs, indent=2, sort_keys=True, ensure_ascii=False).encode()


def run_key(bucket: str, name: str, run_id: str) -> str:
    return s3io.split(runs.results_uri(bucket, name, run_id))[1] + runs.RECORD_NAME


def put_once(bucket: str, key: str, body: bytes, what: str) -> None:
    """Write a run's input once: a retried request or redelivered event finds the same bytes
    there; anything else is refused rather than overwriting the first run's."""
    if s3io.put_if_absent(bucket, key, body):
        return
    if aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() != body:
        raise Refused([{"where": s3io.uri(bucket, key), "problem": f"already holds other {what}"}])
