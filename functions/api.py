"""The run API (API Gateway, IAM-authorized): submit, list, describe, cancel and resume runs.

    POST   /runs            submit: the workflow by s3:// URI or inline, inputs, options
    GET    /runs            list (newest first within each run name)
    GET    /runs/{run_id}   status, timings, task counts, outputs or error
    DELETE /runs/{run_id}   cancel, end to end
    POST   /runs/{run_id}/resume   a new run of a failed or cancelled run, its finished calls reused

and GA4GH WES 1.1 beside it, under /ga4gh/wes/v1 (pipeline/wes.py): service-info, POST and GET
/runs, GET /runs/{run_id}, GET /runs/{run_id}/status, POST /runs/{run_id}/cancel; its errors in
WES's ErrorResponse shape ({"msg", "status_code"}).

Powertools validates requests against the models below, which also generate the OpenAPI
document kept in docs/openapi.json (`make openapi`).
"""


import base64
import binascii
import importlib.metadata
import json
import uuid
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.metrics import MetricUnit
from observability import lambda_handler, logger, metrics, tracer
from pydantic import BaseModel, ConfigDict, Field

from miniwdl_fargate import aws, inputs_json, openapi30, runs, s3io, status, upload
from miniwdl_fargate.run_options import RunOptions
from miniwdl_fargate.pipeline import manage, resume, start, wes
from miniwdl_fargate.pipeline.settings import WesApiSettings

SETTINGS = WesApiSettings
app = APIGatewayRestResolver(enable_validation=True)

RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}-[0-9a-f]{8}$"
#: the most runs a WES ListRuns page holds: its page_size is "the preferred number of workflow
#: runs to return in a page" (WES 1.1), so a larger one is taken as this, not refused
WES_PAGE_MAX = 1000


#: base64 characters of an uploaded bundle (about 3.5 MiB of ZIP): the whole request reaches the
#: function as one synchronous invocation's event, at most 6 MB with the inputs and headers
#: (https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html); larger bundles go to S3 and
#: are named by ``workflow``
WORKFLOW_ZIP_MAX_CHARS = 5_000_000


class RunRequest(BaseModel):
    # a field the API does not know is refused, naming it: "input" for "inputs" would otherwise
    # start a run with the workflow's defaults, "option" one without its budget
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=runs.NAME_RE.pattern, description="run name: 1-64 letters, digits, '.', '_' or '-'")
    workflow: str | None = Field(
        default=None, pattern=r"^s3://[^/]+/.+\.(wdl|zip)$",
        description="s3:// URI of the main WDL file (its folder holds its imports), or of a `miniwdl zip` bundle (.zip)",
    )
    workflow_zip: str | None = Field(
        default=None, min_length=1, max_length=WORKFLOW_ZIP_MAX_CHARS,
        description="or: a `miniwdl zip` bundle itself, base64-encoded (its default inputs honoured, `inputs` over them)",
    )
    wdl: str | None = Field(default=None, min_length=1, max_length=1_000_000, description="or: the WDL source itself (a self-contained document)")
    inputs: dict[str, Any] = Field(default_factory=dict, description="miniwdl inputs JSON object, e.g. {\"hello.names\": [\"Ann\"]}")
    options: RunOptions = Field(default_factory=RunOptions)
    client_token: str | None = Field(default=None, min_length=1, max_length=128, description="idempotency token: a retry with the same token starts no second run")


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # ("inputs" here would be ignored: a resume runs with the run's own)

    options: RunOptions = Field(
        default_factory=RunOptions,
        description="options overriding the resumed run's own (labels one by one); the call cache is read in any case unless call_cache says otherwise",
    )
    client_token: str | None = Field(default=None, min_length=1, max_length=128, description="idempotency token: a retry with the same token starts no second run")


#: a resume request without a body: the run's own options, a new client token
NO_BODY = ResumeRequest()


class Accepted(BaseModel):
    run_id: str
    execution_arn: str
    results: str = Field(description="s3:// prefix of the run's results")
    duplicate: bool = Field(description="true: this request was a retry of an earlier one")


class Problem(BaseModel):
    where: str
    problem: str


class ApiError(BaseModel):
    """Every error answer of the API, whatever its HTTP status: a code, one line for people and
    each problem with where it is (empty when there is nothing more to point at)."""

    error: str = Field(description="InvalidRequest, ClientTokenConflict, NotFound, AlreadyFinished, NotResumable, UnreadableStatus or InternalError")
    message: str = Field(description="what went wrong, in one line")
    problems: list[Problem] = Field(default_factory=list, description="each problem and where it is")


#: the largest JSON answer a route gives whole: Lambda's answer is at most 6 MB with the body
#: escaped into it as a string (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html),
#: and one over it is API Gateway's 502; a run's outputs or inputs past this are named, not inlined
ANSWER_BYTES = 4 * 1024 * 1024


class RunDescription(status.RunStatus):
    outputs: dict[str, Any] | str | None = Field(
        default=None,
        description=f"the run's outputs (File values as s3:// URIs); where they would make the answer over {ANSWER_BYTES >> 20} MiB, "
                    "the s3:// URI of outputs.json instead",
    )
    outputs_json: str | None = None
    error: dict[str, Any] | None = Field(default=None, description="error.json: what failed, where, the tail of its stderr")
    error_json: str | None = None


class RunList(BaseModel):
    runs: list[status.RunStatus]
    next: str | None = Field(default=None, description="pass as ?after= for the next page")
    warnings: list[str] = Field(
        default_factory=list,
        description="runs left out of this page because their status.json cannot be read (damaged by hand): which, and what is wrong",
    )


def _json(code: int, body: BaseModel | dict[str, Any]) -> Response[dict[str, Any]]:
    payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return Response(code, content_types.APPLICATION_JSON, payload)


def _error(code: int, error: str, message: str, problems: list[dict[str, str]] | None = None) -> Response[dict[str, Any]]:
    return _json(code, ApiError(error=error, message=message, problems=[Problem(**p) for p in problems or []]))


def _invalid(problems: list[dict[str, str]]) -> Response[dict[str, Any]]:
    return _error(400, "InvalidRequest", f"the request was not accepted: {len(problems)} problem(s)", problems)


@app.exception_handler(RequestValidationError)
def invalid_request(exn: RequestValidationError) -> Response[dict[str, Any]]:
    problems = [_problem(e) for e in exn.errors()]
    if _is_wes():
        if all(tuple(e.get("loc", ()))[:1] == ("path",) for e in exn.errors()):
            # a run (or task) id no run can have names none: WES answers 404 for an unknown one,
            # and its GetRunLog, GetRunStatus, CancelRun and GetTask have no 400
            return _wes_error(404, f"no such run or task: {wes.problems_text(problems)}")
        return _wes_error(400, wes.problems_text(problems))
    return _invalid(problems)


def _problem(error: dict[str, Any]) -> dict[str, str]:
    """One validation error as where + what. A body that is not JSON is located by Powertools
    as ("body", <character offset>): say so in words."""
    if error.get("type") == "json_invalid":
        offset = next((p for p in error.get("loc", ()) if isinstance(p, int)), None)
        detail = (error.get("ctx") or {}).get("error", "")
        at = f" at character {offset}" if offset is not None else ""
        return {"where": "body", "problem": f"not valid JSON{at}" + (f": {detail}" if detail else "")}
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
    if where == "body" and error.get("type") == "missing":  # (Powertools' word is "Field required")
        return {"where": "body", "problem": "no request body: send the run as a JSON object (docs/openapi.json)"}
    return {"where": where, "problem": error.get("msg", str(error))}


def _unreadable(exn: status.UnreadableStatus) -> Response[dict[str, Any]]:
    """The run's status.json was damaged (edited by hand): say which object and what is wrong."""
    logger.error("unreadable run status", extra={"problem": str(exn)})
    return _error(500, "UnreadableStatus", str(exn))


@app.not_found
def no_such_route(exn: Exception) -> Response[dict[str, Any]]:
    message = f"no such resource: {app.current_event.http_method} {app.current_event.path}"
    return _wes_error(404, message) if _is_wes() else _error(404, "NotFound", message)


@app.exception_handler(Exception)
def internal_error(exn: Exception) -> Response[dict[str, Any]]:
    logger.exception("request failed")  # the traceback goes to the log, never to the caller
    message = "the request failed on our side; it is logged: try again, or report it"
    return _wes_error(500, message) if _is_wes() else _error(500, "InternalError", message)


def _answers(code: int, description: str) -> dict[int, dict[str, Any]]:
    return {code: {"description": description, "content": {"application/json": {"model": ApiError}}}}


BAD_REQUEST = _answers(400, "bad request: every problem, and where")
NOT_FOUND = _answers(404, "no such run")
INTERNAL = _answers(500, "the API failed (InternalError), or the run's status.json is damaged (UnreadableStatus); the same error shape")


@app.post(
    "/runs",
    summary="Submit a run",
    responses={
        202: {"description": "started", "content": {"application/json": {"model": Accepted}}},
        200: {"description": "a retry of an earlier request (same client_token, same request)", "content": {"application/json": {"model": Accepted}}},
        **BAD_REQUEST,
        **_answers(409, "the client_token was first used for a different request; problems name each part that differs"),
        **INTERNAL,
    },
)
@tracer.capture_method
def post_run(request: RunRequest) -> Response[dict[str, Any]]:
    logger.append_keys(run_name=request.name)
    try:
        result = start.from_request(
            SETTINGS.from_env(), request.name, request.workflow, request.inputs,
            request.client_token or str(uuid.uuid4()), wdl=request.wdl, options=request.options.given(),
            workflow_zip=_decoded_zip(request.workflow_zip),
        )
    except start.TokenConflict as exn:
        parts = ", ".join(p["where"] for p in exn.problems)
        return _error(409, "ClientTokenConflict", f"client_token already used for a request with another {parts}", exn.problems)
    except start.Refused as exn:
        return _invalid(exn.problems)
    return _accepted(result, "RunsSubmitted")


def _decoded_zip(text: str | None) -> bytes | None:
    """An uploaded bundle's bytes; Refused if ``workflow_zip`` is not base64."""
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise start.Refused([{"where": "workflow_zip", "problem": "not base64: give the bundle's bytes base64-encoded"}]) from None


def _accepted(result: start.Submitted, metric: str) -> Response[dict[str, Any]]:
    """A started run: 202, or 200 for a retry of the request that started it."""
    logger.append_keys(run_id=result.record.run_id)
    logger.info("run submitted", extra={"duplicate": result.duplicate, "resumed_from": result.record.resumed_from})
    if not result.duplicate:
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    accepted = Accepted(
        run_id=result.record.run_id, execution_arn=result.execution_arn, results=result.record.results,
        duplicate=result.duplicate,
    )
    return _json(200 if result.duplicate else 202, accepted)


@app.get(
    "/runs",
    summary="List runs",
    responses={200: {"description": "runs", "content": {"application/json": {"model": RunList}}}, **BAD_REQUEST, **INTERNAL},
)
@tracer.capture_method
def list_runs(
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many runs")] = 50,
    name: Annotated[str | None, Query(pattern=runs.NAME_RE.pattern, description="only runs of this name")] = None,
    after: Annotated[str | None, Query(pattern=runs.PAGE_TOKEN_RE.pattern, description="the previous page's next: where to go on")] = None,
) -> Response[dict[str, Any]]:
    warnings: list[str] = []
    found, following = manage.list_runs(SETTINGS.from_env().runs_bucket, limit, name, after, on_unreadable=warnings.append)
    page = RunList(runs=found, next=following, warnings=warnings).model_dump(mode="json")
    excess = _size(page) - ANSWER_BYTES
    if excess > 0:  # (within Lambda's answer: the largest runs' calls, each task's ARN, go first; GET /runs/{run_id} has them)
        by_size = sorted(((_size(r["calls"]) - _size({}), r) for r in page["runs"] if r.get("calls")), key=lambda pair: -pair[0])
        for saved, entry in by_size:
            if excess <= 0:
                break
            excess -= saved
            entry["calls"] = {}
            page["warnings"].append(f"run {entry['run_id']}: its calls are left out of this page, too large for one answer: GET /runs/{entry['run_id']} has them")
    return _json(200, page)


@app.get(
    "/runs/<run_id>",
    summary="Describe a run: status, timings, task counts, outputs or error",
    responses={200: {"description": "the run", "content": {"application/json": {"model": RunDescription}}}, **BAD_REQUEST, **NOT_FOUND, **INTERNAL},
)
@tracer.capture_method
def get_run(run_id: Annotated[str, Path(pattern=RUN_ID)]) -> Response[dict[str, Any]]:
    try:
        doc = manage.describe_run(SETTINGS.from_env().runs_bucket, run_id)
        if isinstance(doc.get("outputs"), dict) and _size(doc) > ANSWER_BYTES:
            doc["outputs"] = doc.get("outputs_json")
        return _json(200, doc)
    except manage.RunNotFound as exn:
        return _error(404, "NotFound", str(exn))
    except status.UnreadableStatus as exn:
        return _unreadable(exn)


@app.delete(
    "/runs/<run_id>",
    summary="Cancel a run: its execution, its driver and every task",
    responses={
        200: {"description": "cancelled", "content": {"application/json": {"model": status.RunStatus}}},
        **BAD_REQUEST, **NOT_FOUND,
        **_answers(409, "the run already ended"), **INTERNAL,
    },
)
@tracer.capture_method
def delete_run(run_id: Annotated[str, Path(pattern=RUN_ID)]) -> Response[dict[str, Any]]:
    settings = SETTINGS.from_env()
    try:
        final = manage.cancel_run(settings.runs_bucket, settings.state_machine_arn, settings.cluster, run_id)
    except manage.RunNotFound as exn:
        return _error(404, "NotFound", str(exn))
    except manage.RunFinished as exn:
        return _error(409, "AlreadyFinished", str(exn))
    except status.UnreadableStatus as exn:
        return _unreadable(exn)
    except manage.CancelIncomplete as exn:  # (cancelled, but tasks run on: said, and the cancel may be repeated)
        logger.exception("cancel incomplete")
        return _error(500, "InternalError", str(exn))
    metrics.add_metric(name="RunsCancelled", unit=MetricUnit.Count, value=1)
    return _json(200, final)


@app.post(
    "/runs/<run_id>/resume",
    summary="Resume a failed or cancelled run: a new run of the same workflow, inputs and options, its finished calls taken from the call cache",
    responses={
        202: {"description": "started", "content": {"application/json": {"model": Accepted}}},
        200: {"description": "a retry of an earlier request (same client_token, same options)", "content": {"application/json": {"model": Accepted}}},
        **_answers(400, "bad options, or the run's record, workflow, inputs or their s3:// objects are gone: every problem, and where"),
        **NOT_FOUND,
        **_answers(409, "the run is still going or SUCCEEDED (NotResumable), or the client_token was first used for another request"),
        **INTERNAL,
    },
)
@tracer.capture_method
def resume_run(
    run_id: Annotated[str, Path(pattern=RUN_ID)],
    request: Annotated[ResumeRequest, Body(description="may be left out: the run's own options, a new client token")] = NO_BODY,
) -> Response[dict[str, Any]]:
    logger.append_keys(resumed_run_id=run_id)
    try:
        result = resume.resume(
            SETTINGS.from_env(), run_id, request.client_token or str(uuid.uuid4()), request.options.given()
        )
    except manage.RunNotFound as exn:
        return _error(404, "NotFound", str(exn))
    except resume.NotResumable as exn:
        return _error(409, "NotResumable", exn.problems[0]["problem"], exn.problems)
    except start.TokenConflict as exn:
        parts = ", ".join(p["where"] for p in exn.problems)
        return _error(409, "ClientTokenConflict", f"client_token already used for a request with another {parts}", exn.problems)
    except start.Refused as exn:
        return _invalid(exn.problems)
    except status.UnreadableStatus as exn:
        return _unreadable(exn)
    return _accepted(result, "RunsResumed")


# -- GA4GH WES 1.1 (pipeline/wes.py) ---------------------------------------------------------------


class WesErrorResponse(BaseModel):
    """WES's ErrorResponse: every error of the /ga4gh/wes/v1 routes."""

    msg: str = Field(description="what went wrong; a refused request names each problem and where (its WES field)")
    status_code: int


class WesRunId(BaseModel):
    run_id: str


class WesRunStatus(BaseModel):
    run_id: str
    state: str = Field(description="QUEUED, INITIALIZING, RUNNING, COMPLETE, EXECUTOR_ERROR, SYSTEM_ERROR or CANCELED")


class WesRunSummary(WesRunStatus):
    start_time: str | None = None
    end_time: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class WesRunListResponse(BaseModel):
    runs: list[WesRunSummary]
    next_page_token: str = Field(description="pass as page_token for the next page; empty at the end")


class WesLog(BaseModel):
    name: str | None = None
    cmd: list[str] | None = None
    start_time: str | None = None
    end_time: str | None = None
    stdout: str | None = Field(default=None, description="a task's CloudWatch log stream (console link)")
    stderr: str | None = Field(default=None, description="a task's CloudWatch log stream; the run's: its workflow.log in S3")
    exit_code: int | None = None
    system_logs: list[str] = Field(default_factory=list)


class WesTaskLog(WesLog):
    id: str = Field(description="the ECS task's id")
    tags: dict[str, str] = Field(default_factory=dict, description="ecs_task, outcome, capacity")


class WesRunLog(BaseModel):
    run_id: str
    request: dict[str, Any]
    state: str
    run_log: WesLog
    task_logs_url: str = Field(description="ListTasks of this run: its task logs, a page at a time")
    task_logs: list[WesTaskLog] | None = Field(
        description=f"every task attempt's log, for a run of at most {wes.TASK_LOGS_INLINE} (deprecated in WES 1.1); "
                    "null for a larger one: page through task_logs_url"
    )
    outputs: dict[str, Any]


class WesTaskListResponse(BaseModel):
    task_logs: list[WesTaskLog]
    next_page_token: str = Field(description="pass as page_token for the next page; empty at the end")


class WesServiceInfo(BaseModel):
    """GA4GH service-info with WES 1.1's fields."""

    id: str
    name: str
    type: dict[str, str]
    organization: dict[str, str]
    version: str
    workflow_type_versions: dict[str, dict[str, list[str]]]
    supported_wes_versions: list[str]
    supported_filesystem_protocols: list[str]
    workflow_engine_versions: dict[str, dict[str, list[str]]]
    default_workflow_engine_parameters: list[dict[str, str]]
    system_state_counts: dict[str, int]
    auth_instructions_url: str
    tags: dict[str, str]


_WES_FIELDS = {
    "workflow_url": {"type": "string", "description": "s3:// URI of the main .wdl (its folder holds its imports), an https:// URL "
                     "(fetched at submit, at most 1 MB, a self-contained document) or the name of the attached .wdl"},
    "workflow_params": {"type": "string", "description": "the inputs JSON object (its text in a form)"},
    "workflow_type": {"type": "string", "enum": ["WDL"]},
    "workflow_type_version": {"type": "string", "enum": list(wes.WDL_VERSIONS)},
    "tags": {"type": "string", "description": "a JSON object of strings: the run's labels (AWS tags of its driver and tasks)"},
    "workflow_engine_parameters": {"type": "string", "description": "a JSON object: the run's options (" +
                                   ", ".join(n for n in RunOptions.model_fields if n != "labels") + "), values as strings or JSON"},
    "workflow_engine": {"type": "string", "enum": ["miniwdl"]},
    "workflow_engine_version": {"type": "string"},
}
#: the request body of WES POST /runs in the OpenAPI document
WES_RUN_REQUEST = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["workflow_url", "workflow_type", "workflow_type_version"],
                                           "properties": {**_WES_FIELDS, "workflow_attachment": {
                                               "type": "array", "items": {"type": "string", "format": "binary"},
                                               "description": "the workflow's .wdl file, the files it imports (by their paths "
                                                              "relative to it), or a miniwdl zip bundle; and input files "
                                                              "workflow_params names by their paths"}}}},
        "application/json": {"schema": {"type": "object", "required": ["workflow_url", "workflow_type", "workflow_type_version"],
                                        "additionalProperties": False,
                                        "properties": {**_WES_FIELDS, "workflow_params": {"type": "object"},
                                                       "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                                                       "workflow_engine_parameters": {"type": "object"}}}},
    },
}


def _is_wes() -> bool:
    return str(app.current_event.path or "").startswith(wes.PREFIX)


def _wes_error(code: int, msg: str) -> Response[dict[str, Any]]:
    return _json(code, WesErrorResponse(msg=msg, status_code=code))


def _wes_answers(*codes: int) -> dict[int, dict[str, Any]]:
    what = {400: "the request is malformed: each problem and where", 404: "no such run", 409: "the run already ended",
            500: "the service failed"}
    return {c: {"description": what[c], "content": {"application/json": {"model": WesErrorResponse}}} for c in codes}


def _ok(model: type[BaseModel], description: str) -> dict[int, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"model": model}}}}


@app.get(wes.PREFIX + "/service-info", summary="WES: the service: workflow types, engine, protocols", responses={**_ok(WesServiceInfo, "the service"), **_wes_answers(500)})
@tracer.capture_method
def wes_service_info() -> Response[dict[str, Any]]:
    return _json(200, wes.service_info(importlib.metadata.version("miniwdl"), importlib.metadata.version("miniwdl-fargate")))


@app.post(wes.PREFIX + "/runs", summary="WES: run a workflow (multipart/form-data or JSON)", responses={**_ok(WesRunId, "started"), **_wes_answers(400, 500)})
@tracer.capture_method
def wes_post_run() -> Response[dict[str, Any]]:
    event = app.current_event
    body = base64.b64decode(event.body or "") if event.is_base64_encoded else (event.body or "").encode("utf-8")
    content_type = event.get_header_value("content-type", default_value="", case_sensitive=False) or ""
    try:
        settings = SETTINGS.from_env()
        asked = wes.submission(wes.read_request(body, content_type), bucket=settings.runs_bucket)
        for item in asked.staged:  # (the attached files workflow_params names, where its inputs now say)
            upload.upload_staged(aws.client("s3"), None, settings.runs_bucket, item.key, item.digest, item.executable, item.body)
        result = start.from_request(
            settings, asked.name, asked.workflow, asked.inputs, str(uuid.uuid4()), wdl=asked.wdl,
            options=asked.options, workflow_zip=asked.workflow_zip,
            described={"via": "wes", "workflow_url": asked.workflow_url, "workflow_type_version": asked.workflow_type_version},
        )
    except (wes.WesRefused, start.Refused) as exn:
        return _wes_error(400, f"the request was not accepted: {wes.problems_text(exn.problems)}")
    logger.append_keys(run_id=result.record.run_id)
    logger.info("run submitted through WES")
    metrics.add_metric(name="RunsSubmitted", unit=MetricUnit.Count, value=1)
    return _json(200, WesRunId(run_id=result.record.run_id))


@app.get(wes.PREFIX + "/runs", summary="WES: list runs, a page at a time", responses={**_ok(WesRunListResponse, "runs"), **_wes_answers(400, 500)})
@tracer.capture_method
def wes_list_runs(
    page_size: Annotated[int, Query(ge=1, description=f"at most this many runs (a preference: at most {WES_PAGE_MAX} are given)")] = 50,
    page_token: Annotated[str | None, Query(pattern=runs.PAGE_TOKEN_RE.pattern, description="next_page_token of the previous page")] = None,
) -> Response[dict[str, Any]]:
    bucket = SETTINGS.from_env().runs_bucket
    found, following = manage.list_runs(bucket, min(page_size, WES_PAGE_MAX), None, page_token or None)
    errors = aws.each(lambda current: _error_json(current) if current.status == "FAILED" else None, found, s3io.READ_THREADS)
    summaries = [wes.summary(current, error) for current, error in zip(found, errors, strict=True)]
    return _json(200, {"runs": summaries, "next_page_token": following or ""})


def _error_json(current: status.RunStatus) -> dict[str, Any] | None:
    """A failed run's error.json (what tells EXECUTOR_ERROR from SYSTEM_ERROR)."""
    bucket, prefix = s3io.split(current.results)
    return _readable_json(bucket, prefix + "error.json")


def _readable_json(bucket: str, key: str) -> Any:
    """A run's JSON document, or None if it is absent or damaged (logged: edited by hand)."""
    try:
        return s3io.find_json(bucket, key)
    except ValueError as exn:
        logger.warning("unreadable run document", extra={"document": s3io.uri(bucket, key), "problem": str(exn)})
        return None


def _describe(run_id: str) -> dict[str, Any] | Response[dict[str, Any]]:
    try:
        return manage.describe_run(SETTINGS.from_env().runs_bucket, run_id)
    except manage.RunNotFound as exn:
        return _wes_error(404, str(exn))
    except status.UnreadableStatus as exn:
        logger.error("unreadable run status", extra={"problem": str(exn)})
        return _wes_error(500, str(exn))


@app.get(wes.PREFIX + "/runs/<run_id>", summary="WES: the run log: request, state, task logs, outputs", responses={**_ok(WesRunLog, "the run"), **_wes_answers(404, 500)})
@tracer.capture_method
def wes_get_run(run_id: Annotated[str, Path(pattern=RUN_ID)]) -> Response[dict[str, Any]]:
    doc = _describe(run_id)
    if isinstance(doc, Response):
        return doc
    settings = SETTINGS.from_env()
    bucket, prefix = s3io.split(doc["results"])
    record = _readable_json(bucket, prefix + runs.RECORD_NAME)
    inputs = _readable_json(bucket, prefix + runs.INPUTS_NAME)
    cost = _readable_json(bucket, prefix + "cost.json")
    log = wes.run_log(
        doc, runs.RunRecord.model_validate(record) if record else None, inputs, cost,
        settings.task_log_group, aws.client("s3").meta.region_name, _url(f"{wes.PREFIX}/runs/{run_id}/tasks"),
        log_url=_presigned,
    )
    _served_task_logs(run_id, log.get("task_logs") or [])
    return _json(200, _fitted(log, doc["results"]))


def _served_task_logs(run_id: str, logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each TaskLog's stdout/stderr as this API's own URL of its text (``wes_task_log_text``): a
    log "should be available using the same credentials used to access the WES endpoint" (WES
    1.1, TaskLog), and the CloudWatch console's page is a sign-in page to a client; the console
    link stays in its tags (``log_console``)."""
    for log in logs:
        console = log.get("stdout")
        served = _url(f"{wes.PREFIX}/runs/{run_id}/tasks/{log['id']}/logs") if console else None
        log["stdout"] = log["stderr"] = served
        if console:
            log.setdefault("tags", {})["log_console"] = console
    return logs


#: the most of a task's log one answer carries, as its JSON-escaped body counts (Lambda answers at most 6 MB)
LOG_TEXT_BYTES = 4 * 1024 * 1024


#: how long a log's URL in a RunLog works ("This URL may change between status requests": WES)
LOG_URL_SECONDS = 3600


def _presigned(uri: str) -> str | None:
    """An HTTPS URL of the s3:// ``uri`` a WES client can GET without AWS credentials, for
    ``LOG_URL_SECONDS`` (or until this function's own credentials expire, if sooner:
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-presigned-url.html); None if there
    is no such object (a URL that answers NoSuchKey is no log)."""
    bucket, key = s3io.split(uri)
    try:
        aws.client("s3").head_object(Bucket=bucket, Key=key)
    except Exception as exn:
        if s3io.not_found(exn):
            return None
        raise
    return aws.client("s3", config=aws.PRESIGN_CONFIG).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=LOG_URL_SECONDS
    )


def _size(doc: Any) -> int:
    """Bytes of ``doc`` in Lambda's answer, where the body is itself a JSON string: each quote and
    backslash of the body escaped again (what the 6 MB counts)."""
    return len(json.dumps(json.dumps(doc, default=str)).encode())


def _fitted(log: dict[str, Any], results: str) -> dict[str, Any]:
    """A WES RunLog within ``ANSWER_BYTES``: past it, its outputs and then its request's
    workflow_params are left out, each named in its system_logs by the S3 object that has them."""
    for where, key, name in ((log, "outputs", "outputs.json"), (log["request"], "workflow_params", runs.INPUTS_NAME)):
        if _size(log) > ANSWER_BYTES and where.get(key):
            said = f"{key}: {_size(where[key])} bytes, too large for this answer: in {results}{name}"
            where[key] = {}
            log["run_log"]["system_logs"].append(said)
    return log


def _url(path: str) -> str:
    """The URL of ``path`` (a route of this API) as the caller reached this one: through API
    Gateway, its domain and the path before the route (``/<stage>``, or a custom domain's base
    path: the Lambda proxy event's ``requestContext.path`` ends with the route's ``path``); else
    the path."""
    event = app.current_event.raw_event
    context = event.get("requestContext") or {}
    domain, full, route = context.get("domainName"), str(context.get("path") or ""), str(event.get("path") or "")
    if not domain or not route or not full.endswith(route):
        return path
    return f"https://{domain}{full[: len(full) - len(route)]}{path}"


def _run_tasks(run_id: str) -> tuple[status.RunStatus, dict[str, Any] | None] | Response[dict[str, Any]]:
    """The run's status and cost.json (its task attempts), or the WES error that says why not."""
    doc = _describe(run_id)
    if isinstance(doc, Response):
        return doc
    current = wes.status_of(doc)
    bucket, prefix = s3io.split(current.results)
    return current, _readable_json(bucket, prefix + "cost.json")


@app.get(wes.PREFIX + "/runs/<run_id>/tasks", summary="WES: the run's task logs, a page at a time", responses={**_ok(WesTaskListResponse, "task logs"), **_wes_answers(400, 404, 500)})
@tracer.capture_method
def wes_list_tasks(
    run_id: Annotated[str, Path(pattern=RUN_ID)],
    page_size: Annotated[int, Query(ge=1, le=wes.TASKS_PAGE_MAX, description="at most this many task logs")] = wes.TASKS_PAGE_DEFAULT,
    page_token: Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$", description="next_page_token of the previous page")] = None,
) -> Response[dict[str, Any]]:
    found = _run_tasks(run_id)
    if isinstance(found, Response):
        return found
    current, cost = found
    try:
        page = wes.task_page(current, cost, SETTINGS.from_env().task_log_group, aws.client("s3").meta.region_name, page_size, page_token or "")
    except ValueError as exn:
        return _wes_error(400, str(exn))
    _served_task_logs(run_id, page["task_logs"])
    return _json(200, page)


@app.get(wes.PREFIX + "/runs/<run_id>/tasks/<task_id>", summary="WES: one task attempt's log", responses={**_ok(WesTaskLog, "the task log"), **_wes_answers(404, 500)})
@tracer.capture_method
def wes_get_task(run_id: Annotated[str, Path(pattern=RUN_ID)], task_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$")]) -> Response[dict[str, Any]]:
    found = _run_tasks(run_id)
    if isinstance(found, Response):
        return found
    current, cost = found
    log = wes.one_task(current, cost, SETTINGS.from_env().task_log_group, aws.client("s3").meta.region_name, task_id)
    if log is None:
        return _wes_error(404, f"run {run_id} has no task {task_id} (ListTasks names its tasks)")
    return _json(200, _served_task_logs(run_id, [log])[0])


@app.get(wes.PREFIX + "/runs/<run_id>/tasks/<task_id>/logs", summary="WES: one task attempt's log, as text",
         responses={200: {"description": "the attempt's stdout and stderr (one CloudWatch log stream), as text",
                          "content": {"text/plain": {"schema": {"type": "string"}}}}, **_wes_answers(404, 500)})
@tracer.capture_method
def wes_task_log_text(run_id: Annotated[str, Path(pattern=RUN_ID)], task_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$")]) -> Response[Any]:
    """What a TaskLog's stdout/stderr URL gives: the attempt's log stream from its start, at most
    ``LOG_TEXT_BYTES`` (then a last line saying where the rest is)."""
    from miniwdl_fargate.client import read_stream

    found = _run_tasks(run_id)
    if isinstance(found, Response):
        return found
    current, cost = found
    settings = SETTINGS.from_env()
    log = wes.one_task(current, cost, settings.task_log_group, aws.client("s3").meta.region_name, task_id)
    if log is None:
        return _wes_error(404, f"run {run_id} has no task {task_id} (ListTasks names its tasks)")
    lines: list[str] = []
    size = [0]

    class Full(Exception):
        pass

    def take(events: list[dict[str, Any]]) -> None:
        for event in events:
            line = str(event.get("message", "")).rstrip("\n") + "\n"
            # (as Lambda's answer carries it: the body a JSON string, escaped as the python3.11
            # runtime escapes it, non-ASCII and control characters six bytes each)
            size[0] += len(json.dumps(line)) - 2
            if size[0] > LOG_TEXT_BYTES:
                raise Full
            lines.append(line)

    try:
        read = read_stream(aws.client("logs"), settings.task_log_group, f"miniwdl/task/{task_id}", None, take)
        if read.missing:
            lines.append("(no log: the task never started, or its log expired)\n")
        elif read.stopped_early:
            lines.append(f"(the log was cut short: {read.stopped_early}; all of it: {log.get('stdout')})\n")
    except Full:
        lines.append(f"(the log goes on past {LOG_TEXT_BYTES} bytes: all of it in CloudWatch Logs, {log.get('stdout')})\n")
    return Response(status_code=200, content_type=content_types.TEXT_PLAIN, body="".join(lines))


@app.get(wes.PREFIX + "/runs/<run_id>/status", summary="WES: the run's state", responses={**_ok(WesRunStatus, "the run's state"), **_wes_answers(404, 500)})
@tracer.capture_method
def wes_run_status(run_id: Annotated[str, Path(pattern=RUN_ID)]) -> Response[dict[str, Any]]:
    doc = _describe(run_id)
    if isinstance(doc, Response):
        return doc
    return _json(200, WesRunStatus(run_id=run_id, state=wes.state(doc["status"], doc.get("error"))))


@app.post(wes.PREFIX + "/runs/<run_id>/cancel", summary="WES: cancel a run: its execution, driver and every task", responses={**_ok(WesRunId, "cancelled (CANCELED at once)"), **_wes_answers(404, 409, 500)})
@tracer.capture_method
def wes_cancel_run(run_id: Annotated[str, Path(pattern=RUN_ID)]) -> Response[dict[str, Any]]:
    settings = SETTINGS.from_env()
    try:
        manage.cancel_run(settings.runs_bucket, settings.state_machine_arn, settings.cluster, run_id)
    except manage.RunNotFound as exn:
        return _wes_error(404, str(exn))
    except manage.RunFinished as exn:
        if exn.status == "CANCELLED":  # (a client's retry of its cancel: CancelRun answers 200, 401, 403, 404 or 500)
            return _json(200, WesRunId(run_id=run_id))
        return _wes_error(409, str(exn))
    except (status.UnreadableStatus, manage.CancelIncomplete) as exn:
        return _wes_error(500, str(exn))
    metrics.add_metric(name="RunsCancelled", unit=MetricUnit.Count, value=1)
    return _json(200, WesRunId(run_id=run_id))


@lambda_handler(publishes_metrics=True)
def handler(event: dict[str, Any], context: Any) -> Any:
    refused = _strict_body(event)
    return refused if refused is not None else app.resolve(event, context)


def _strict_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """A POST's body read as an S3 drop's inputs.json is (``inputs_json.loads``: its byte order
    mark stripped; a duplicate key, NaN or too deep a nesting refused, with where; the inputs'
    size cap applies to its inputs, by submit), before Powertools parses it leniently; the 400
    answer if it is refused."""
    body = event.get("body")
    if event.get("httpMethod") != "POST" or not isinstance(body, str):
        return None
    if str(event.get("path", "")).startswith(wes.PREFIX):
        return None  # a WES request is read strictly by wes.read_request, and answered in WES's shape
    kind = _content_type(event)
    if kind and kind != content_types.APPLICATION_JSON and not kind.endswith("+json"):
        # (Powertools would answer 500 for it; curl's --data sends application/x-www-form-urlencoded;
        # multipart/form-data, which the API takes as binary for WES, came base64-encoded and was
        # read leniently, a form taken for a run's fields)
        return _early_refusal([{"where": "Content-Type", "problem": f"{kind!r}: send the body as application/json"}])
    if event.get("isBase64Encoded"):
        return None
    if kind:  # JSON by another name (APPLICATION/JSON, application/vnd.x+json): Powertools reads only this one
        _set_header(event, "Content-Type", content_types.APPLICATION_JSON)
    text = inputs_json.decode(body, "body")
    event["body"] = text
    try:
        json.loads(text)
    except ValueError:
        return None  # not JSON at all: Powertools says where (invalid_request)
    except RecursionError:
        pass  # too deep: said below
    try:
        inputs_json.loads(text, "body", capped=False, wrapping=1)  # (its inputs are capped on their own)
    except inputs_json.InputsJSONError as exn:
        return _early_refusal([_body_problem(p) for p in exn.problems])
    return None


def _content_type(event: dict[str, Any]) -> str:
    """The request's media type, lower case, without parameters ("" if it names none)."""
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    multi = {str(k).lower(): v for k, v in (event.get("multiValueHeaders") or {}).items()}
    value = headers.get("content-type") or (multi.get("content-type") or [""])[0]
    return str(value or "").split(";", 1)[0].strip().lower()


def _set_header(event: dict[str, Any], name: str, value: str) -> None:
    """Header ``name`` of the event (in both of API Gateway's shapes) set to ``value`` alone."""
    for field, shaped in (("headers", value), ("multiValueHeaders", [value])):
        headers = event.get(field)
        if isinstance(headers, dict):
            for key in [k for k in headers if str(k).lower() == name.lower()]:
                del headers[key]
            headers[name] = shaped


def _early_refusal(problems: list[dict[str, str]]) -> dict[str, Any]:
    """The 400 answer to a request refused before Powertools reads it (API Gateway's proxy shape)."""
    answer = ApiError(error="InvalidRequest", message=f"the request was not accepted: {len(problems)} problem(s)",
                      problems=[Problem(**p) for p in problems])
    return {"statusCode": 400, "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": answer.model_dump_json(), "isBase64Encoded": False}


def _body_problem(problem: dict[str, str]) -> dict[str, str]:
    """``body: inputs.wf.x`` as the API names places: ``inputs: wf.x`` (``inputs`` as submit does)."""
    where = problem["where"]
    if where.startswith("body: inputs."):
        where = "inputs: " + where[len("body: inputs."):]
    elif where.startswith("body: "):
        where = where[len("body: "):]
    return {"where": where, "problem": problem["problem"]}


def openapi_json() -> str:
    """The OpenAPI document of this API (docs/openapi.json)."""
    doc = json.loads(
        app.get_openapi_json_schema(
            title="miniwdl-fargate runs API",
            version="1",
            description="Submit, list, describe, cancel and resume WDL runs; and GA4GH WES 1.1 under /ga4gh/wes/v1. "
            "Every request is SigV4-signed (IAM, execute-api:Invoke).",
        )
    )
    # the WES RunRequest is read by wes.read_request, not by Powertools: say what it takes
    doc["paths"][wes.PREFIX + "/runs"]["post"]["requestBody"] = WES_RUN_REQUEST
    # invalid requests answer 400 with ApiError (invalid_request above), not Powertools' 422
    for path in doc["paths"].values():
        for operation in path.values():
            operation["responses"].pop("422", None)
    doc["components"]["schemas"].pop("HTTPValidationError", None)
    # Powertools writes OpenAPI 3.1 (JSON Schema 2020-12: anyOf with {"type": "null"}); API
    # Gateway and most tools read OpenAPI 3.0: nullable fields say so with `nullable: true`
    return json.dumps(openapi30.downgrade(doc), indent=2) + "\n"
