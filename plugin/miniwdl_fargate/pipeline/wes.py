"""GA4GH WES 1.1 over our runs: what the ``/ga4gh/wes/v1/...`` routes of functions/api.py mean.

A WES request is read here (JSON or multipart/form-data), mapped onto the one submission path
(``start.from_request``: ``tags`` become the run's labels and ``workflow_engine_parameters`` its
options, both checked by ``run_options``), and our run documents are answered as WES's: its
states, its run log with task logs. Plain functions; the handler only wires them.

States (WES ``State``): SUBMITTED → QUEUED, STARTING → INITIALIZING, RUNNING → RUNNING,
SUCCEEDED → COMPLETE, CANCELLED → CANCELED. A FAILED run is EXECUTOR_ERROR when the workflow
itself failed (error.json's ``failed_task``: a command's exit status, out of memory, a WDL
evaluation error), SYSTEM_ERROR when the service stopped it or broke (a timeout, the budget, a
stopped or failed driver, a task interrupted past its retries, no error.json at all). CANCELING is
never answered: a cancel marks the run CANCELLED and stops its execution, driver and tasks before
it answers.
"""

from __future__ import annotations

import email.parser
from datetime import datetime, timezone
import email.policy
import http.client
import importlib.metadata
import io
import json
import os
import re
import typing
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import inputs_json, run_options, runs, status, zipbundle

PREFIX = "/ga4gh/wes/v1"
WES_VERSION = "1.1.0"
WORKFLOW_TYPE = "WDL"
#: the WDL versions the drivers' miniwdl reads (its grammars; a document with no ``version``
#: statement is draft-2), as every other entrance takes them
WDL_VERSIONS = ("draft-2", "1.0", "1.1", "1.2", "development")
PROTOCOLS = ("s3", "https")
#: an https:// workflow_url is fetched at submit, at most this much (the API's inline WDL cap) ...
HTTPS_MAX_BYTES = 1_000_000
#: ... within this many seconds
HTTPS_TIMEOUT_S = 10.0

QUEUED, INITIALIZING, RUNNING, COMPLETE = "QUEUED", "INITIALIZING", "RUNNING", "COMPLETE"
EXECUTOR_ERROR, SYSTEM_ERROR, CANCELED = "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"
STATES = {"SUBMITTED": QUEUED, "STARTING": INITIALIZING, "RUNNING": RUNNING, "SUCCEEDED": COMPLETE, "CANCELLED": CANCELED}
#: error codes (error.json's ``error``, or its failed task's) of a run the service stopped or failed
SYSTEM_CODES = frozenset({"TimedOut", "BudgetExceeded", "DriverStopped", "DriverError", "UnreadableDocument", "Interrupted"})
#: error codes of a failed task that are the workflow's own doing, beside a command's exit status
#: and running out of memory: miniwdl's errors of a command, its outputs, and evaluating or checking
#: the WDL (WDL.Error's ValidationError and EvalError kinds), and an image that cannot be used.
#: Anything else (a task ECS could not start, the run's EFS volume) is SYSTEM_ERROR
EXECUTOR_CODES = frozenset({
    "CommandFailed", "OutputError", "ImageUnusable", "InputError", "EvalError", "NullValue", "OutOfBounds", "EmptyArray",
    "ValidationError", "MultipleValidationErrors", "SyntaxError", "ImportError", "StaticTypeMismatch", "IncompatibleOperand",
    "NoSuchInput", "NoSuchMember", "NoSuchFunction", "UnknownIdentifier", "WrongArity", "NotAnArray", "InvalidType",
})


def state(our: str, error: dict[str, Any] | None = None) -> str:
    """The WES state of a run whose status is ``our`` and whose error.json is ``error``."""
    if our != "FAILED":
        return STATES[our]
    return failure_state(error)


def failure_state(error: dict[str, Any] | None) -> str:
    """EXECUTOR_ERROR: the workflow failed (the driver's error.json names its failed task);
    SYSTEM_ERROR: anything else (see the module's docstring)."""
    if not error or not isinstance(error.get("failed_task"), dict):
        return SYSTEM_ERROR
    failed = error["failed_task"]
    codes = {error.get("error"), failed.get("error")}
    if codes & SYSTEM_CODES or any(str(c).startswith("States.") for c in codes):
        return SYSTEM_ERROR
    if "exit_status" in failed or "out_of_memory" in failed or failed.get("error") in EXECUTOR_CODES:
        return EXECUTOR_ERROR
    return SYSTEM_ERROR  # (the backend's own failures: a task ECS could not start, EFS, ...)


# -- POST /runs ------------------------------------------------------------------------------------


class WesRefused(ValueError):
    """A WES request that cannot be a run; ``problems`` each say where and what."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p['where']}: {p['problem']}" for p in problems))


@dataclass
class WesRequest:
    """A WES RunRequest as sent (form fields still text where the form sends text)."""

    workflow_url: str = ""
    workflow_params: Any = None
    workflow_type: str = ""
    workflow_type_version: str = ""
    tags: Any = None
    workflow_engine_parameters: Any = None
    workflow_engine: str = ""
    workflow_engine_version: str = ""
    attachments: dict[str, bytes] = field(default_factory=dict)


FIELDS = ("workflow_url", "workflow_params", "workflow_type", "workflow_type_version", "tags",
          "workflow_engine_parameters", "workflow_engine", "workflow_engine_version")


def read_request(body: bytes, content_type: str) -> WesRequest:
    """The request's body, JSON or multipart/form-data, as a WesRequest; WesRefused if neither."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        return read_form(body, content_type)
    if kind in ("application/json", ""):
        return read_json(body)
    raise WesRefused([{"where": "Content-Type", "problem": f"{kind!r}: send application/json or multipart/form-data"}])


def read_json(body: bytes) -> WesRequest:
    try:
        doc = inputs_json.loads(body, "body", capped=False, wrapping=1)
    except inputs_json.InputsJSONError as exn:
        raise WesRefused(exn.problems) from None
    except ValueError as exn:
        raise WesRefused([{"where": "body", "problem": f"not valid JSON: {exn}"}]) from None
    if not isinstance(doc, dict):
        raise WesRefused([{"where": "body", "problem": "must be a JSON object (a WES RunRequest)"}])
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise WesRefused([{"where": k, "problem": f"not a field of a WES RunRequest ({', '.join(FIELDS)})"} for k in unknown])
    for key in ("workflow_url", "workflow_type", "workflow_type_version", "workflow_engine", "workflow_engine_version"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise WesRefused([{"where": key, "problem": f"must be a string, not {type(doc[key]).__name__}"}])
    return WesRequest(**{k: v for k, v in doc.items() if v is not None})


def read_form(body: bytes, content_type: str) -> WesRequest:
    """multipart/form-data: each field once, text; ``workflow_attachment`` parts are files by
    their file name (a relative path)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise WesRefused([{"where": "body", "problem": "not a multipart/form-data body (no parts found for its boundary)"}])
    request, problems, seen = WesRequest(), [], set()
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == "workflow_attachment":
            filename = part.get_filename() or ""
            if problem := attachment_name_problem(filename):
                problems.append({"where": f"workflow_attachment {filename!r}", "problem": problem})
            elif filename in request.attachments and request.attachments[filename] != payload:
                # (the later took the earlier's place: another document ran); the same bytes twice
                # are one file (wes-client --attachments="*.wdl" attaches the main file again)
                problems.append({"where": f"workflow_attachment {filename!r}",
                                 "problem": "attached more than once, with different contents: attach each file once"})
            request.attachments[filename] = payload
        elif name in FIELDS:
            if name in seen:
                problems.append({"where": name, "problem": "given more than once"})
            seen.add(name)
            try:
                setattr(request, name, payload.decode("utf-8"))
            except UnicodeDecodeError:
                problems.append({"where": name, "problem": "not UTF-8 text"})
        else:
            problems.append({"where": str(name), "problem": f"not a field of a WES RunRequest ({', '.join(FIELDS)}, workflow_attachment)"})
    if problems:
        raise WesRefused(problems)
    return request


def attachment_name_problem(name: str) -> str | None:
    from ..upload import name_problem

    if not name:
        return "an attachment needs a file name"
    if name.startswith("/") or ".." in name.split("/") or "\\" in name:
        return "must be a relative path inside the workflow's folder"
    return name_problem(name)  # (a control character: a NUL no file may be named with)


@dataclass
class Submission:
    """A WES request as ``start.from_request``'s arguments."""

    name: str
    workflow: str | None
    wdl: str | None
    inputs: dict[str, Any]
    options: dict[str, Any]
    workflow_url: str
    workflow_type_version: str
    #: an attached ``miniwdl zip`` bundle (its bytes), when workflow_url names one
    workflow_zip: bytes | None = None
    #: the attached files workflow_params names as File/Directory inputs, to upload under
    #: ``upload.STAGED_PREFIX`` (``inputs`` names them by their s3:// URIs there)
    staged: list[Any] = field(default_factory=list)


#: the most documents an https:// workflow and its imports may be (each at most HTTPS_MAX_BYTES)
HTTPS_MAX_DOCUMENTS = 200


def https_bundle(
    url: str, wdl: str, fetch: Callable[[str], bytes], problems: list[dict[str, str]], check_quant: bool = True
) -> bytes | None:
    """A ``miniwdl zip`` bundle of the https:// workflow at ``url`` (its text: ``wdl``) and what it
    imports, each import fetched relative to the document importing it, as `miniwdl run URL` reads
    them (a TRS server serves ``.../descriptor/{relative_path}``: Dockstore's `wes launch`) and
    with the same limits (https:// only, HTTPS_MAX_BYTES each, at most HTTPS_MAX_DOCUMENTS);
    None, with the problem, when one cannot be fetched or read."""
    import logging
    import tempfile

    import WDL
    import WDL.Zip

    read: dict[str, str] = {url: wdl}

    async def read_source(uri: str, path: list[str], importer: Any) -> Any:
        target = url if importer is None else urllib.parse.urljoin(importer.pos.abspath, uri)
        if not target.startswith("https://"):
            raise OSError(f"{uri}: an import of an https:// workflow is fetched over https:// only")
        if target not in read:
            if len(read) >= HTTPS_MAX_DOCUMENTS:
                raise OSError(f"{uri}: more than {HTTPS_MAX_DOCUMENTS} documents")
            fetched = fetch(target)
            if len(fetched) > HTTPS_MAX_BYTES:
                raise OSError(f"{target}: more than {HTTPS_MAX_BYTES} bytes")
            read[target] = fetched.decode("utf-8-sig")
        return WDL.ReadSourceResult(source_text=read[target], abspath=target)

    try:
        doc = WDL.load(url, read_source=read_source, check_quant=check_quant)
        with tempfile.TemporaryDirectory(prefix="miniwdl-fargate-wes-") as folder:
            archive = os.path.join(folder, "bundle.zip")
            WDL.Zip.build(doc, archive, logging.getLogger("miniwdl-fargate.wes"))
            with open(archive, "rb") as built:
                return built.read()
    except (OSError, UnicodeDecodeError, ValueError, http.client.HTTPException, WDL.Error.SyntaxError,
            WDL.Error.ImportError, WDL.Error.ValidationError, WDL.Error.MultipleValidationErrors) as exn:
        problems.append({"where": "workflow_url", "problem": f"{url}: could not be read with its imports: {wdl_error_text(exn)}"})
        return None


def submission(request: WesRequest, fetch: Callable[[str], bytes] | None = None, bucket: str = "") -> Submission:
    """What to submit for ``request``; WesRefused naming every problem (WES's fields by name).
    ``bucket``: the runs bucket, where attached files workflow_params names are staged."""
    problems: list[dict[str, str]] = []
    check_type(request, problems)
    inputs = json_object(request.workflow_params, "workflow_params", problems, strict=True)
    options = options_of(request, problems)
    workflow, wdl = workflow_source(request, problems, fetch or fetch_https)
    check_quant = run_options.check_quant_of(options)
    bundle = attached_bundle(request, problems, check_quant) if workflow is None and wdl is None else None
    url = request.workflow_url.strip()
    if wdl is not None and url.startswith("https://") and re.search(r"^\s*import\s", wdl, re.MULTILINE):
        bundle = https_bundle(url, wdl, fetch or fetch_https, problems, check_quant)  # (its imports, fetched as miniwdl run does)
        if bundle is not None:
            wdl = None
    if bundle is not None:
        wdl_of_bundle = bundle_wdl(bundle, problems)
        version = check_version(request, wdl_of_bundle, problems) if wdl_of_bundle is not None else ""
    else:
        version = check_version(request, wdl, problems)
    staged: list[Any] = []
    attached_workflow = url in request.attachments and not zipbundle.is_bundle(url)
    if not problems and attached_workflow:  # (its input types say which values are files)
        inputs, staged = attached_inputs(request, inputs, options.get("task"), bucket, problems, check_quant)
    elif not problems and (named := attached_names(inputs, request)):
        problems.append({"where": "workflow_params", "problem": f"names the attached file(s) {', '.join(sorted(named))}: "
                         "attached files are taken as inputs with an attached .wdl workflow; give an s3:// URI"})
    if problems:
        raise WesRefused(problems)
    return Submission(run_name(request.workflow_url), workflow, wdl, inputs, options, request.workflow_url, version, bundle,
                      staged)


def attached_names(inputs: Any, request: WesRequest) -> set[str]:
    """The attachments (other than the workflow) that workflow_params names by their path, as a
    File does, or as a folder of them, as a Directory does ("./" or not: wes-client sends paths
    relative to where it ran)."""
    others = set(request.attachments) - {request.workflow_url.strip()}
    folders = {"/".join(name.split("/")[:i]) for name in others for i in range(1, name.count("/") + 1)}
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            name = value.removeprefix("./").rstrip("/")
            if name in others or name in folders:
                found.add(name)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(inputs)
    return found


def attached_inputs(
    request: WesRequest, inputs: dict[str, Any], task: Any, bucket: str, problems: list[dict[str, str]],
    check_quant: bool = True,
) -> tuple[dict[str, Any], list[Any]]:
    """workflow_params with the File/Directory inputs that name attached files ("input files may
    be relative URLs corresponding to files uploaded using workflow_attachment": WES 1.1,
    RunWorkflow) given as the s3:// URIs they are staged under, as `submit` stages local files
    (``upload.stage_inputs``: by content, the same keys), and those uploads, their bytes in hand.
    Only the attached files are read (``confined``): a path naming anything else is refused. By
    the workflow's input types: a String that happens to name an attachment stays a String."""
    import tempfile
    from pathlib import Path

    import WDL

    from .. import upload

    with tempfile.TemporaryDirectory(prefix="miniwdl-fargate-wes-") as folder:
        files = write_attachments(request, os.path.join(folder, "attached"))
        try:
            doc = WDL.load(os.path.join(files, *request.workflow_url.strip().split("/")), read_source=attachments_only(files),
                           check_quant=check_quant)
            rewritten, uploads = upload.stage_inputs(doc, inputs, Path(files), bucket, task, label="workflow_params",
                                                     confined="the attached files")
        except upload.RunInputError as exn:
            said = str(exn).removeprefix("workflow_params: ").replace(files + os.sep, "")  # (no path of this machine's)
            problems.append({"where": "workflow_params", "problem": said})
            return inputs, []
        except (OSError, WDL.Error.SyntaxError, WDL.Error.ImportError, WDL.Error.ValidationError,
                WDL.Error.MultipleValidationErrors):
            return inputs, []  # (the workflow's own problem: the submit step's checks say it, by the document)
        # (the bytes the request carried, each once: ``stage_inputs`` gives one upload a key)
        return rewritten, [u if u.path is None else upload.Staged(
            u.key, u.digest, body=request.attachments[Path(u.path).relative_to(files).as_posix()], executable=u.executable)
            for u in uploads]


def attached_bundle(request: WesRequest, problems: list[dict[str, str]], check_quant: bool = True) -> bytes | None:
    """The attached ``miniwdl zip`` bundle workflow_url names, if it names one; or one built of
    the attached files, when workflow_url names one .wdl of several ("The workflow_attachment
    array may be used to upload files that are required to execute the workflow, including the
    primary workflow, tools imported by the workflow": WES 1.1, RunWorkflow) by miniwdl's own
    ``WDL.Zip.build``, its imports read from the attached files only (``attachments_only``);
    None, with the problem, when it cannot be built (``attached_wdl`` said what else is wrong)."""
    url = request.workflow_url.strip()
    if url not in request.attachments:
        return None
    if zipbundle.is_bundle(url):
        return request.attachments[url]
    if len(request.attachments) < 2 or not url.endswith(".wdl"):
        return None
    import logging
    import tempfile

    import WDL
    import WDL.Zip

    with tempfile.TemporaryDirectory(prefix="miniwdl-fargate-wes-") as folder:
        files = os.path.join(folder, "attached")
        try:
            write_attachments(request, files)
            doc = WDL.load(os.path.join(files, *url.split("/")), read_source=attachments_only(files), check_quant=check_quant)
            archive = os.path.join(folder, "bundle.zip")
            WDL.Zip.build(doc, archive, logging.getLogger("miniwdl-fargate.wes"))
            with open(archive, "rb") as built:
                return built.read()
        except (OSError, WDL.Error.SyntaxError, WDL.Error.ImportError, WDL.Error.ValidationError, WDL.Error.MultipleValidationErrors,
                WDL.Error.InputError) as exn:
            said = wdl_error_text(exn).replace(files + "/", "")
            problems.append({"where": "workflow_attachment", "problem": f"{url}: could not be read with its attachments: {said}"})
            return None


def wdl_error_text(exn: BaseException) -> str:
    """What a WDL error says, on one line: each of several validation errors (miniwdl's
    MultipleValidationErrors says nothing of its own), an import's own failure after it."""
    parts = [str(e) for e in getattr(exn, "exceptions", ())] or [str(exn)]
    if exn.__cause__ is not None:
        parts.append(str(exn.__cause__))
    return " ".join("; ".join(p for p in parts if p).split())


def write_attachments(request: WesRequest, files: str) -> str:
    """The request's attached files written under ``files`` by their names (checked already:
    relative, no "..", no control character: ``attachment_name_problem``); ``files``."""
    for name, body in request.attachments.items():
        path = os.path.join(files, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(body)
    return files


def attachments_only(folder: str) -> Callable[..., Any]:
    """A miniwdl ``read_source`` that reads an import only from the attached files (under
    ``folder``): a relative path, no URL, nothing outside them (an import of "/proc/self/environ"
    or an https:// URL would read what the API's function can, into the request's answer)."""
    import WDL

    root = os.path.realpath(folder)

    async def read(uri: str, path: list[str], importer: Any) -> Any:
        if importer is None:  # (the main WDL, which attached_bundle names by its path under the folder)
            target = os.path.realpath(uri)
        else:
            target = os.path.realpath(os.path.join(os.path.dirname(importer.pos.abspath), uri))
            if "://" in uri or os.path.isabs(uri):
                target = ""
        if not target.startswith(root + os.sep) or not os.path.isfile(target):
            raise FileNotFoundError(f"{uri}: not among the attached files (an import names an attached file by its path relative to the importing one)")
        with open(target) as infile:
            return WDL.ReadSourceResult(source_text=infile.read(), abspath=target)

    return read


def bundle_wdl(bundle: bytes, problems: list[dict[str, str]]) -> str | None:
    """The main WDL's source of an attached bundle (its version statement decides, as an attached
    .wdl's does); None, with the problem, when the bundle is not one."""
    try:
        with zipbundle.opened(io.BytesIO(bundle), "workflow_attachment") as opened:
            with opened.archive.open(opened.main) as main:
                return main.read(HTTPS_MAX_BYTES).decode("utf-8", errors="replace")
    except zipbundle.BundleError as exn:  # (its text names the attachment already)
        problems.append({"where": "workflow_attachment", "problem": str(exn).removeprefix("workflow_attachment: ")})
        return None


def check_type(request: WesRequest, problems: list[dict[str, str]]) -> None:
    if request.workflow_type.strip().upper() != WORKFLOW_TYPE:
        problems.append({"where": "workflow_type", "problem": f"{request.workflow_type!r}: this service runs {WORKFLOW_TYPE}"})
    engine = request.workflow_engine.strip()
    if engine and engine.lower() != "miniwdl":
        problems.append({"where": "workflow_engine", "problem": f"{engine!r}: this service's engine is miniwdl"})
    asked, runs = request.workflow_engine_version.strip(), engine_version()
    if asked and not (asked.removeprefix("v") == runs or runs.startswith(asked.removeprefix("v") + ".")):
        problems.append({"where": "workflow_engine_version", "problem": f"{asked!r}: this service runs miniwdl {runs} (service-info)"})


def engine_version() -> str:
    """The miniwdl every run's driver runs: the one installed here (the API's function and the
    driver install the same pinned plugin)."""
    return importlib.metadata.version("miniwdl")


def check_version(request: WesRequest, wdl: str | None, problems: list[dict[str, str]]) -> str:
    """The WDL version the run is: a document read at submit (attached, https://) says its own
    (its ``version`` statement decides, whatever ``workflow_type_version`` says: wes-service's
    client, for one, always sends ``draft-2`` for a local file); an s3:// one is taken at the
    request's word (miniwdl reads its statement when it runs). Either must be one of
    ``WDL_VERSIONS``."""
    runs_as = ", ".join(WDL_VERSIONS)
    if wdl is not None:
        declared = declared_version(wdl) or "draft-2"
        if declared not in WDL_VERSIONS:
            problems.append({"where": "workflow_url", "problem": f"the document declares WDL {declared}: this service runs WDL {runs_as}"})
        return declared
    version = request.workflow_type_version.strip()
    if version not in WDL_VERSIONS:
        problems.append({"where": "workflow_type_version", "problem": f"{version!r}: this service runs WDL {runs_as}"})
    return version


def declared_version(wdl: str) -> str | None:
    """A WDL document's ``version`` statement (its first, before anything but comments), or None."""
    for line in wdl.splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = re.match(r"^version\s+(\S+)", text)
        return match.group(1) if match else None
    return None


def json_object(value: Any, where: str, problems: list[dict[str, str]], strict: bool = False) -> dict[str, Any]:
    """A field that is a JSON object, given as one or as its text (a form field), read as an
    inputs JSON is (``inputs_json.loads``: a key given twice, NaN, too deep a nesting refused:
    `{"max_cost_usd": "5", "max_cost_usd": "500"}` took the second); ``strict``: capped in size
    as an inputs JSON is too."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = inputs_json.loads(value, where, capped=strict)
        except inputs_json.InputsJSONError as exn:
            problems.extend(exn.problems)
            return {}
        except ValueError as exn:
            problems.append({"where": where, "problem": f"not valid JSON: {exn}"})
            return {}
    if not isinstance(value, dict):
        problems.append({"where": where, "problem": f"must be a JSON object, not {type(value).__name__}"})
        return {}
    return value


def options_of(request: WesRequest, problems: list[dict[str, str]]) -> dict[str, Any]:
    """``tags`` as the run's labels and ``workflow_engine_parameters`` as its options, checked
    by the one options model; a problem names the WES field (``tags.team``,
    ``workflow_engine_parameters.max_cost_usd``). WES sends parameter values as strings: one
    that is JSON (``20``, ``true``) is read as JSON, as ``submit --option`` reads it."""
    tags = json_object(request.tags, "tags", problems)
    params = json_object(request.workflow_engine_parameters, "workflow_engine_parameters", problems)
    if "labels" in params:
        problems.append({"where": "workflow_engine_parameters.labels", "problem": "give labels as the request's tags"})
        return {}
    # ("": the stack's default, as service-info's default_value says: a client sending the
    # defaults it was shown back asks for nothing)
    raw: dict[str, Any] = {key: as_json(value) for key, value in params.items() if value != ""}
    if tags:
        raw["labels"] = tags
    try:
        return run_options.parse(raw, "options").given()
    except run_options.OptionsProblems as exn:
        problems.extend({"where": wes_where(p["where"]), "problem": p["problem"]} for p in exn.problems)
        return {}


def as_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def wes_where(where: str) -> str:
    """``options.labels.team`` → ``tags.team``; ``options.max_cost_usd`` →
    ``workflow_engine_parameters.max_cost_usd``."""
    if where == "options.labels" or where.startswith("options.labels."):
        return "tags" + where[len("options.labels"):]
    return "workflow_engine_parameters" + where[len("options"):]


def workflow_source(
    request: WesRequest, problems: list[dict[str, str]], fetch: Callable[[str], bytes]
) -> tuple[str | None, str | None]:
    """(s3:// URI, None) or (None, WDL source): an s3:// workflow_url is the run's workflow (its
    folder holds its imports); an https:// one is fetched now and runs as a self-contained
    document; otherwise workflow_url names the attached .wdl file (one self-contained file)."""
    url = request.workflow_url.strip()
    if not url:
        problems.append({"where": "workflow_url", "problem": "required: an s3:// or https:// URI, or the name of an attached .wdl file"})
        return None, None
    if url.startswith("s3://"):
        return url, None
    if url.startswith("https://"):
        try:
            fetched = fetch(url)
        except (OSError, http.client.HTTPException, ValueError) as exn:  # (ValueError: urllib's on a malformed URL)
            problems.append({"where": "workflow_url", "problem": f"could not fetch {url}: {exn}"})
            return None, None
        if fetched.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
            problems.append({"where": "workflow_url", "problem": f"{url} is a web page, not a WDL document (on GitHub, "
                             "give the file's raw URL: raw.githubusercontent.com)"})
            return None, None
        return None, text_of(fetched, "workflow_url", problems)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
        problems.append({"where": "workflow_url", "problem": f"{url}: this service reads {', '.join(p + '://' for p in PROTOCOLS)} or an attached file"})
        return None, None
    return None, attached_wdl(request, url, problems)


def attached_wdl(request: WesRequest, url: str, problems: list[dict[str, str]]) -> str | None:
    if url not in request.attachments:
        attached = ", ".join(sorted(request.attachments)) or "none"
        problems.append({"where": "workflow_url", "problem": f"{url!r} is not an attached file (attached: {attached})"})
        return None
    others = sorted(set(request.attachments) - {url})
    if others and zipbundle.is_bundle(url):
        problems.append({"where": "workflow_attachment", "problem": f"a miniwdl zip bundle is taken alone ({', '.join(others)} besides it)"})
    if zipbundle.is_bundle(url) or (others and url.endswith(".wdl")):
        return None  # (a bundle, or the files a bundle is made of: attached_bundle)
    if not url.endswith(".wdl"):
        problems.append({"where": "workflow_url", "problem": f"{url!r} is not a .wdl file or a miniwdl zip bundle"})
    return text_of(request.attachments[url], f"workflow_attachment {url!r}", problems)


def text_of(body: bytes, where: str, problems: list[dict[str, str]]) -> str | None:
    if len(body) > HTTPS_MAX_BYTES:
        problems.append({"where": where, "problem": f"{len(body)} bytes; a WDL document given inline may have at most {HTTPS_MAX_BYTES}"})
        return None
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exn:
        problems.append({"where": where, "problem": f"not UTF-8 text: byte {exn.start} is not UTF-8"})
        return None


class _HttpsOnly(urllib.request.HTTPRedirectHandler):
    """Follow redirects to https:// only."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if not newurl.startswith("https://"):
            raise OSError(f"redirected to {newurl}: only https:// is followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_https(url: str) -> bytes:
    """The document at an https:// URL: at most HTTPS_MAX_BYTES + 1 bytes read (more is refused
    by the caller), within HTTPS_TIMEOUT_S; OSError saying why not."""
    opener = urllib.request.build_opener(_HttpsOnly())
    with opener.open(urllib.request.Request(url, headers={"User-Agent": "miniwdl-fargate-wes"}), timeout=HTTPS_TIMEOUT_S) as answer:
        return answer.read(HTTPS_MAX_BYTES + 1)


def run_name(workflow_url: str) -> str:
    """The run's name: the workflow file's name without .wdl, made a valid run name (a TRS
    descriptor URL's last segment is its path, URL-encoded: ``.../descriptor/%2Fmain.wdl``)."""
    stem = urllib.parse.unquote(workflow_url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]).rsplit("/", 1)[-1]
    stem = re.sub(r"\.(wdl|zip)$", "", stem)
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", stem).lstrip("._-")[:64]
    return name if name and runs.NAME_RE.match(name) else "wes-run"


# -- answers ---------------------------------------------------------------------------------------


def service_info(miniwdl_version: str, our_version: str, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """GET /service-info (``version``: this service's, miniwdl-fargate's; the organization names
    the engine's project, as this one has no page of its own)."""
    return {
        "id": "org.miniwdl-fargate.wes",
        "name": "miniwdl-fargate",
        "type": {"group": "org.ga4gh", "artifact": "wes", "version": WES_VERSION},
        "organization": {"name": "miniwdl-fargate", "url": "https://github.com/chanzuckerberg/miniwdl"},
        "version": our_version,
        "description": "WDL on AWS Fargate with miniwdl; requests are SigV4-signed (IAM, execute-api:Invoke)",
        "workflow_type_versions": {WORKFLOW_TYPE: {"workflow_type_version": list(WDL_VERSIONS)}},
        "supported_wes_versions": [WES_VERSION],
        "supported_filesystem_protocols": list(PROTOCOLS),
        "workflow_engine_versions": {"miniwdl": {"workflow_engine_version": [miniwdl_version]}},
        # (each with its type; "" for its default: the stack's, which the field's description names)
        "default_workflow_engine_parameters": [
            {"name": name, "type": engine_parameter_type(field.annotation), "default_value": ""}
            for name, field in run_options.RunOptions.model_fields.items() if name != "labels"
        ],
        "system_state_counts": counts or {},
        "auth_instructions_url": "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html",
        "tags": {"labels": "tags become the run's labels (AWS tags of its driver and tasks)"},
    }


def engine_parameter_type(annotation: Any) -> str:
    """A run option's type as WES's DefaultWorkflowEngineParameter names one ("float", "int",
    "bool", "string"): the option's own, less its ``None`` (call_cache, true/false/"read"/"write": string)."""
    kinds = {a for a in typing.get_args(annotation) or (annotation,) if a is not type(None)}
    if kinds == {bool}:
        return "bool"
    if kinds == {float}:
        return "float"
    if kinds == {int}:
        return "int"
    return "string"


def wes_time(iso: str | None) -> str | None:
    """A time as WES gives it, "ISO 8601 format %Y-%m-%dT%H:%M:%SZ" (UTC, whole seconds: a client
    may parse it with exactly that format); ours have milliseconds and +00:00."""
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def summary(current: status.RunStatus, error: dict[str, Any] | None = None) -> dict[str, Any]:
    """A RunSummary of GET /runs."""
    return {
        "run_id": current.run_id,
        "state": state(current.status, error if error is not None else current.error),
        "start_time": wes_time(current.started_at or current.submitted_at),
        "end_time": wes_time(current.finished_at),
        "tags": dict(current.labels),  # (the request's tags, its labels: kept in status.json, which the list reads)
    }


#: the most task logs a RunLog holds itself (its deprecated ``task_logs``); a run with more gives
#: none there (null, as WES 1.1 allows), only ``task_logs_url``, which pages them: a RunLog of
#: 10,000 task attempts (about 0.9 KB each) would be over Lambda's 6 MB answer, which API Gateway
#: answers 502 (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html)
TASK_LOGS_INLINE = 1000
#: ListTasks' page size when the request names none, and the most it takes
TASKS_PAGE_DEFAULT, TASKS_PAGE_MAX = 100, 1000


def run_log(
    doc: dict[str, Any], record: runs.RunRecord | None, inputs: dict[str, Any] | None,
    cost: dict[str, Any] | None, log_group: str, region: str, tasks_url: str = "",
    log_url: Callable[[str], str | None] | None = None,
) -> dict[str, Any]:
    """GET /runs/{run_id}: the run's request, state, log, task logs and outputs. ``doc`` is
    ``manage.describe_run``'s; ``cost`` the run's cost.json (its attempts, once it ended);
    ``log_url``: an HTTPS URL of an s3:// URI (``stderr``, the run's workflow.log: "A URL to
    retrieve standard error logs", which WES clients fetch over HTTP; else the s3:// URI);
    ``tasks_url`` where its task logs are listed a page at a time (ListTasks): the task logs
    themselves only up to ``TASK_LOGS_INLINE``."""
    current = status_of(doc)
    error = doc.get("error")
    return {
        "run_id": current.run_id,
        "state": state(current.status, error),
        "request": request_of(record, inputs),
        "run_log": {
            "name": (record.workflow_name if record else "") or current.name,
            "cmd": ["miniwdl", "run", current.workflow],
            "start_time": wes_time(current.started_at),
            "end_time": wes_time(current.finished_at),
            "stdout": None,
            # (the driver uploads workflow.log at the run's end; a driver that died uploaded none:
            # ``log_url`` gives None for a log that is not there, as WES allows)
            "stderr": (log_url or (lambda uri: uri))(current.results + "workflow.log") if current.finished and current.started_at else None,
            "exit_code": None,
            "system_logs": system_logs(current, error),
        },
        "task_logs_url": tasks_url or f"{PREFIX}/runs/{current.run_id}/tasks",
        "task_logs": logs if len(logs := task_logs(current, cost, log_group, region)) <= TASK_LOGS_INLINE else None,
        "outputs": doc.get("outputs") if isinstance(doc.get("outputs"), dict) else {},
    }


def system_logs(current: status.RunStatus, error: Any) -> list[str]:
    """The run log's ``system_logs`` ("any logs the system decides are relevant, which are not
    tied directly to a task"): why it failed, once it did; while it has not ended, what it is
    doing (status.json's phase: why a QUEUED run waits, e.g. behind other runs for a driver, or
    what its driver is doing, e.g. staging its inputs)."""
    if isinstance(error, dict) and error.get("message"):
        return [str(error["message"])]
    if current.phase and not current.finished:
        return [current.phase]
    return []


def status_of(doc: dict[str, Any]) -> status.RunStatus:
    """The run's status in ``manage.describe_run``'s ``doc`` (which puts outputs.json and
    error.json in place of the status's URIs of them)."""
    return status.RunStatus.model_validate(
        {k: v for k, v in doc.items() if k in status.RunStatus.model_fields and k not in ("outputs", "error")}
    )


def task_page(
    current: status.RunStatus, cost: dict[str, Any] | None, log_group: str, region: str, page_size: int, page_token: str,
) -> dict[str, Any]:
    """GET /runs/{run_id}/tasks (ListTasks): ``page_size`` task logs from ``page_token`` (the
    previous page's ``next_page_token``: where it ended), in RunLog's order; ValueError for a
    token this listing did not give."""
    start = int(page_token) if page_token else 0
    logs = task_logs(current, cost, log_group, region)
    if start > len(logs):
        raise ValueError(f"page_token {page_token!r}: past the run's {len(logs)} task logs")
    end = start + page_size
    return {"task_logs": logs[start:end], "next_page_token": str(end) if end < len(logs) else ""}


def one_task(current: status.RunStatus, cost: dict[str, Any] | None, log_group: str, region: str, task_id: str) -> dict[str, Any] | None:
    """GET /runs/{run_id}/tasks/{task_id} (GetTask): the task log of that id (an ECS task's), or None."""
    return next((log for log in task_logs(current, cost, log_group, region) if log["id"] == task_id), None)


def request_of(record: runs.RunRecord | None, inputs: dict[str, Any] | None) -> dict[str, Any]:
    """The RunRequest a run answers, rebuilt from its record (whichever way it came in)."""
    if record is None:
        return {"workflow_type": WORKFLOW_TYPE}
    options = dict(record.options)
    labels = options.pop("labels", {})
    return {
        "workflow_params": inputs or {},
        "workflow_type": WORKFLOW_TYPE,
        "workflow_type_version": record.submitted.get("workflow_type_version", ""),
        "tags": labels,
        "workflow_engine_parameters": {k: v if isinstance(v, str) else json.dumps(v) for k, v in options.items()},
        "workflow_url": record.submitted.get("workflow_url") or record.submitted.get("workflow", ""),
    }


def task_logs(current: status.RunStatus, cost: dict[str, Any] | None, log_group: str, region: str) -> list[dict[str, Any]]:
    """One TaskLog per task attempt: from cost.json once the run has one (times, exit code,
    outcome), else from the status's calls (what has been launched so far). stdout and stderr
    both name the attempt's CloudWatch log stream (the container's two streams go to one)."""
    if cost and cost.get("attempts"):
        return [attempt_log(row, log_group, region) for row in cost["attempts"] if row.get("ecs_task") and row["call"] != "driver"]
    return [
        {"id": arn.rsplit("/", 1)[-1], "name": f"{call} attempt {i}", **log_links(arn, log_group, region), "tags": {"ecs_task": arn}}
        for call, arns in sorted(current.calls.items())
        for i, arn in enumerate(arns, 1)
    ]


def attempt_log(row: dict[str, Any], log_group: str, region: str) -> dict[str, Any]:
    arn = row["ecs_task"]
    return {
        "id": arn.rsplit("/", 1)[-1],
        "name": f"{row['call']} attempt {row['attempt']}",
        "start_time": wes_time(row.get("started_at")),
        "end_time": wes_time(row.get("stopped_at")),
        "exit_code": row.get("exit_code"),
        **log_links(arn, log_group, region),
        "system_logs": [row["outcome"]] if row.get("outcome") else [],
        "tags": {"ecs_task": arn, "outcome": str(row.get("outcome", "")), "capacity": str(row.get("capacity", ""))},
    }


def log_links(arn: str, log_group: str, region: str) -> dict[str, str | None]:
    """The attempt's CloudWatch log stream (``miniwdl/task/<task id>``) as a console link."""
    from ..backend.fargate import log_url  # (the backend's one way to name a stream's page)

    if not log_group or not arn.startswith("arn:"):
        return {"stdout": None, "stderr": None}
    link = log_url(region, log_group, f"miniwdl/task/{arn.rsplit('/', 1)[-1]}")
    return {"stdout": link, "stderr": link}


def error_response(status_code: int, msg: str) -> dict[str, Any]:
    """WES's ErrorResponse."""
    return {"msg": msg, "status_code": status_code}


def problems_text(problems: list[dict[str, str]]) -> str:
    return "; ".join(f"{p['where']}: {p['problem']}" for p in problems)
