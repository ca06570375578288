"""Everything that can be known wrong about a run before anything is started.

The submit step calls ``check_run``: the WDL (read from S3 with its imports) parses and typechecks
with miniwdl; the inputs are a JSON object of the workflow's inputs, none missing, none unknown,
each of the declared type; every s3:// File/Directory they name exists and is readable; File
inputs are not local paths nobody in the cloud can read; and what can be told of sizes is within
limits (the inputs document, the WDL, literal runtime cpu/memory/disks/gpu/gpuCount against what
Fargate and the stack's managed instances and EBS scratch volumes can give).

Every problem is reported, each with where it is (``where``) and what is wrong (``problem``), so
one fix-and-resubmit round is enough.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import posixpath
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import WDL
from WDL._util import parse_byte_size

from .. import aws, config, s3io, sizes, wdl_target
from . import snapshot

MAX_WDL_BYTES = 2 * 1024 * 1024  # per WDL document
S3_CHECK_THREADS = 16  # s3:// inputs checked at once (each of them is checked)
MAX_LISTED = 100  # unreadable s3:// inputs listed one by one; the rest are counted
SUPPORTED_SCHEMES = ("s3://", "https://", "http://")


@dataclass
class Problems:
    found: list[dict[str, str]] = field(default_factory=list)

    def add(self, where: str, problem: str) -> None:
        self.found.append({"where": where, "problem": problem})

    def __bool__(self) -> bool:
        return bool(self.found)


# -- the WDL, read from S3 ---------------------------------------------------------------------


def _where(uri: str, pos: Any) -> str:
    line, column = getattr(pos, "line", 0), getattr(pos, "column", 0)
    source = getattr(pos, "abspath", "") or getattr(pos, "uri", "") or uri
    return f"{source}:{line}:{column}" if line else source


def _read_s3(uri: str) -> str:
    bucket, key = s3io.split(uri)
    s3 = aws.client("s3")
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exn:
        raise FileNotFoundError(_s3_error(exn, uri)) from None
    if obj["ContentLength"] > MAX_WDL_BYTES:
        raise ValueError(f"{obj['ContentLength']} bytes; a WDL document may have at most {MAX_WDL_BYTES >> 20} MiB")
    body = obj["Body"].read()
    try:
        return body.decode("utf-8")  # (strictly, as the driver's miniwdl reads it)
    except UnicodeDecodeError as exn:
        raise ValueError(f"{uri}: {not_utf8(exn)}") from None


def not_utf8(exn: UnicodeDecodeError) -> str:
    """What is wrong with a WDL document that is not UTF-8, and where."""
    return f"not UTF-8 text (byte 0x{exn.object[exn.start]:02x} at offset {exn.start}): a WDL document is UTF-8"


IMPORT_RULE = "imports must be relative paths to files inside the workflow's folder (the driver downloads that folder, nothing else)"
#: what takes imports from outside the folder
BUNDLE_HINT = "; or submit a `miniwdl zip` bundle, which holds the WDL it imports from anywhere (`miniwdl-fargate submit` makes one itself)"


def _import_problem(uri: str, resolved: str, folder: str) -> str | None:
    """Why the driver could not load this import as the validator would, if it could not."""
    if "://" in uri:
        return (f"cannot import {uri}: {IMPORT_RULE}; copy it into the folder and import it by relative path, or "
                "submit a `miniwdl zip` bundle, which holds what the WDL imports by URL (`miniwdl-fargate submit` "
                "makes one itself)")
    bundle = BUNDLE_HINT
    if uri.startswith("/"):
        return f"cannot import {uri}: an absolute path names a file on the machine running the workflow; {IMPORT_RULE}{bundle}"
    if not resolved.startswith(folder):
        return f"cannot import {uri}: it is outside the workflow's folder; {IMPORT_RULE}{bundle}"
    return None


def _source_reader(main_uri: str) -> Any:
    """miniwdl ``read_source``: the main document and its imports, straight from S3. A relative
    import is resolved against the importing document's s3:// location, as the driver will see it
    (it downloads the WDL's folder, so only imports inside that folder can be loaded)."""
    bucket, main_key = s3io.split(main_uri)
    folder = s3io.uri(bucket, snapshot.source_root(main_key))

    async def read_source(uri: str, path: list[str], importer: Any) -> Any:
        if importer is None:
            return WDL.ReadSourceResult(source_text=_read_s3(uri), abspath=uri)
        importer_bucket, importer_key = s3io.split(importer.pos.abspath)
        resolved = s3io.uri(importer_bucket, posixpath.normpath(posixpath.join(posixpath.dirname(importer_key), uri)))
        problem = _import_problem(uri, resolved, folder)
        if problem:
            raise FileNotFoundError(problem)
        return WDL.ReadSourceResult(source_text=_read_s3(resolved), abspath=resolved)

    return read_source


#: how many of an imported document's errors ``import_failure`` names (the rest are counted)
IMPORT_ERRORS_SHOWN = 5


def import_failure(exn: WDL.Error.ImportError) -> str:
    """What a failed import says, on one line: each import that failed in turn (``Failed to
    import b.wdl: Failed to import c.wdl``, miniwdl's words) and why, an error in an imported
    document with where it is in that document (``<its path>:<line>:<column>: ...``; several,
    each so, ``;``-separated), or the documents importing each other in a circle. miniwdl's own
    ImportError says only which import failed, its text of an imported document's several errors
    is empty, and a circle it says as the same imports over and over until its depth limit."""
    said, importers = [str(exn)], [exn.pos.abspath]
    cause = exn.__cause__ or exn.__context__
    while isinstance(cause, WDL.Error.ImportError):
        if cause.pos.abspath in importers:  # (each ImportError's position is its importer's import)
            circle = importers[importers.index(cause.pos.abspath):] + [cause.pos.abspath]
            return f"{said[0]}: circular imports: {' -> '.join(circle)}"
        said.append(str(cause))
        importers.append(cause.pos.abspath)
        cause = cause.__cause__ or cause.__context__
    why = _error_text(cause) if cause is not None else ""
    return ": ".join(said + ([why] if why and why not in said[-1] else []))


def _error_text(error: BaseException) -> str:
    """One line saying what ``error`` (why a WDL document did not load) is, and where when it
    has a source position."""
    if isinstance(error, WDL.Error.MultipleValidationErrors):
        shown = [_error_text(each) for each in error.exceptions[:IMPORT_ERRORS_SHOWN]]
        more = len(error.exceptions) - len(shown)
        return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")
    if isinstance(error, UnicodeDecodeError):
        return not_utf8(error)
    text = " ".join(str(error).split())  # (a syntax error's list of expected tokens spans many lines)
    pos = getattr(error, "pos", None)
    if isinstance(error, (WDL.Error.SyntaxError, WDL.Error.ValidationError)) and getattr(pos, "line", 0):
        return f"{_where('', pos)}: {text}"
    return text


def load_workflow(uri: str, problems: Problems, check_quant: bool = True) -> WDL.Tree.Document | None:
    """The typechecked document at ``uri`` (s3://), or None with the problems recorded
    (``check_quant`` false: as ``miniwdl run --no-quant-check``, the run's option)."""
    try:
        return asyncio.run(WDL.load_async(uri, read_source=_source_reader(uri), check_quant=check_quant))
    except WDL.Error.SyntaxError as exn:
        problems.add(_where(uri, exn.pos), "WDL syntax error: " + " ".join(str(exn).split()))
    except WDL.Error.ImportError as exn:
        problems.add(_where(uri, exn.pos), f"WDL import failed: {import_failure(exn)}")
    except WDL.Error.MultipleValidationErrors as exn:
        for error in exn.exceptions:
            problems.add(_where(uri, error.pos), f"WDL error: {error}")
    except WDL.Error.ValidationError as exn:
        problems.add(_where(uri, exn.pos), f"WDL error: {exn}")
    except (FileNotFoundError, ValueError) as exn:
        problems.add(uri, str(exn))
    return None


def target_name(uri: str, task: str | None = None, check_quant: bool = True) -> str:
    """The name of what the WDL at ``uri`` runs (its inputs' namespace; ``task``: the run's
    option); "" if it does not load (``check_run`` then says why)."""
    doc = load_workflow(uri, Problems(), check_quant)
    target = workflow_target(doc, uri, Problems(), task) if doc is not None else None
    return str(target.name) if target is not None else ""


def workflow_target(doc: WDL.Tree.Document, uri: str, problems: Problems, task: str | None = None) -> wdl_target.Target | None:
    """What the run runs (``wdl_target``; ``task``: the run's option); None, with the problem
    added, when there is nothing."""
    try:
        return wdl_target.require(doc, task)
    except wdl_target.NoTarget as exn:
        problems.add(uri, str(exn))
        return None


# -- the inputs ---------------------------------------------------------------------------------


def _strip(key: str, namespace: str) -> str:
    return key[len(namespace) + 1 :] if key.startswith(namespace + ".") else key


def _typed_values(ty: Any, value: Any, path: str) -> Iterator[tuple[Any, Any, str]]:
    """(type, JSON value, where) of an input's value and of every value inside it, as its type
    reads it: struct members it declares, array items, map values, pair sides."""
    yield ty, value, path
    if isinstance(ty, WDL.Type.StructInstance) and isinstance(value, dict) and ty.members is not None:
        for key, item in value.items():
            if key in ty.members:
                yield from _typed_values(ty.members[key], item, f"{path}.{key}")
    elif isinstance(ty, WDL.Type.Array) and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _typed_values(ty.item_type, item, f"{path}[{index}]")
    elif isinstance(ty, WDL.Type.Map) and isinstance(value, dict):
        for key, item in value.items():
            yield from _typed_values(ty.item_type[1], item, f"{path}[{json.dumps(key)}]")
    elif isinstance(ty, WDL.Type.Pair) and isinstance(value, dict):
        for side, side_type in (("left", ty.left_type), ("right", ty.right_type)):
            if side in value:
                yield from _typed_values(side_type, value[side], f"{path}.{side}")


def _extra_members(ty: Any, value: Any, path: str) -> list[tuple[str, str, str]]:
    """(path, member, struct name) of each JSON member that a struct in ``value`` does not
    declare (miniwdl would drop them silently)."""
    return [
        (where, key, t.type_name)
        for t, v, where in _typed_values(ty, value, path)
        if isinstance(t, WDL.Type.StructInstance) and isinstance(v, dict) and t.members is not None
        for key in v
        if key not in t.members
    ]


def _check_input(target: Any, key: str, value: Any, where: str, problems: Problems) -> bool:
    """One input: known, well-typed, no struct member it does not declare."""
    available = target.available_inputs
    name = _strip(key, target.name)
    if not available.has_binding(name):
        close = [b.name for b in available if b.name.split(".")[-1] == name.split(".")[-1]]
        hint = f" (did you mean {target.name}.{close[0]}?)" if close else ""
        problems.add(f"{where}: {key}", f"unknown input: {target.name} has no input {name}{hint}")
        return False
    decl = available[name]
    try:
        WDL.values_from_json({name: value}, available, namespace=target.name)
    except (WDL.Error.InputError, WDL.Error.RuntimeError, ValueError, TypeError) as exn:
        # (RuntimeError: a Map key of another type, "coercing 'String' to 'Int'")
        problems.add(f"{where}: {key}", f"expected {decl.type}, got {json.dumps(value)[:200]} ({exn})")
        return False
    extra = _extra_members(decl.type, value, key)
    for path, member, struct in extra:
        problems.add(f"{where}: {path}", f"struct {struct} has no member {member!r}")
    empty = _empty_nonempty(decl.type, value, key)
    for path, ty in empty:
        problems.add(f"{where}: {path}", f"an empty array where {ty} must have at least one item")
    huge = [(path, v) for t, v, path in _typed_values(decl.type, value, key)
            if isinstance(t, WDL.Type.Int) and isinstance(v, int) and not INT_MIN <= v <= INT_MAX]
    for path, number in huge:
        problems.add(f"{where}: {path}", f"{number} is beyond WDL's Int, a 64-bit integer ({INT_MIN} to {INT_MAX})")
    return not extra and not empty and not huge


#: WDL's Int: "a 64-bit signed integer" (https://github.com/openwdl/wdl/blob/wdl-1.1/SPEC.md#primitive-types);
#: miniwdl takes any Python int, which a task's command then gets whole
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def _empty_nonempty(ty: Any, value: Any, path: str) -> list[tuple[str, Any]]:
    """(where, type) of each empty array given for an ``Array[...]+`` (miniwdl takes it, and the
    run fails when a task or expression gets it: "Empty array for Array+")."""
    return [(where, t) for t, v, where in _typed_values(ty, value, path) if isinstance(t, WDL.Type.Array) and t.nonempty and v == []]


def check_inputs(target: Any, inputs: dict[str, Any], where: str, problems: Problems) -> WDL.Env.Bindings | None:
    """Each input known and well-typed, given once, none required missing; the values if all is well."""
    ok = True
    given: dict[str, str] = {}
    for key, value in inputs.items():
        if key.startswith("#"):  # a comment, which miniwdl's values_from_json skips
            continue
        name = _strip(key, target.name)
        if name in given:
            problems.add(f"{where}: {key}", f"the input {target.name}.{name} is also given as {given[name]!r}: give it once")
            ok = False
            continue
        given[name] = key
        ok = _check_input(target, key, value, where, problems) and ok
    for binding in target.required_inputs:
        if binding.name not in given:
            problems.add(f"{where}: {target.name}.{binding.name}", f"missing required input of type {binding.value.type}")
            ok = False
    if not ok:
        return None
    return WDL.values_from_json(inputs, target.available_inputs, target.required_inputs, namespace=target.name)


def _s3_error(exn: Any, uri: str) -> str:
    code = aws.error_code(exn)
    if code in s3io.NOT_FOUND:
        return f"{uri} does not exist"
    if code == "NoSuchBucket":
        return f"{uri}: bucket {s3io.split(uri)[0]} does not exist"
    if code in ("403", "AccessDenied", "Forbidden"):
        return (
            f"{uri} is not readable by the pipeline (does it exist? is its bucket in the stack's "
            "ReadableS3Arns parameter? a Requester Pays bucket, which answers so to a read that does not "
            "offer to pay, is not supported: copy the object to a bucket of your own)"
        )
    return f"{uri}: {exn}"


#: storage classes whose objects GetObject refuses until restored (InvalidObjectState): "If the
#: object you are retrieving is stored in the S3 Glacier Flexible Retrieval storage class, the S3
#: Glacier Deep Archive storage class, the S3 Intelligent-Tiering Archive Access tier, or the S3
#: Intelligent-Tiering Deep Archive Access tier, before you can retrieve the object you must first
#: restore a copy using RestoreObject" (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html)
ARCHIVED_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
ARCHIVED_TIERS = ("ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS")


def archived_problem(head: dict[str, Any], uri: str) -> str | None:
    """What keeps an object (its HeadObject answer) from being read, if it is archived and not
    restored (HeadObject's ``Restore``: ``ongoing-request="false"`` once a copy is there); None if
    it can be read. The driver's download would fail with InvalidObjectState after the run started."""
    archived = head.get("StorageClass") if head.get("StorageClass") in ARCHIVED_CLASSES else None
    if head.get("ArchiveStatus") in ARCHIVED_TIERS:
        archived = f"Intelligent-Tiering {head['ArchiveStatus']}"
    if archived is None or 'ongoing-request="false"' in str(head.get("Restore") or ""):
        return None
    restoring = " (its restore is under way: submit once it is done)" if 'ongoing-request="true"' in str(head.get("Restore") or "") else ""
    return (f"{uri} is archived in S3 ({archived}) and cannot be read until it is restored{restoring}: restore it "
            "(RestoreObject, or the S3 console's Initiate restore), then submit again")


def _check_s3(uri: str, directory: bool) -> str | None:
    s3 = aws.client("s3")
    try:
        bucket, key = s3io.split(uri)
        if directory:
            prefix = key if key.endswith("/") or not key else key + "/"
            # (a "<folder>/" object, the S3 console's or an empty Directory output's, is no file:
            # the driver's staging takes files only)
            # (its first 10,000 keys: a larger Directory's others are checked as the driver stages it)
            listed_objects = [o for o in itertools.islice(s3io.list_keys(bucket, prefix), 10_000) if not o["Key"].endswith("/")]
            files = [o["Key"] for o in listed_objects]
            if not files:
                return f"{uri} holds no objects (a Directory input names a prefix with files under it)"
            unplaceable = next(((k, p) for k in files if (p := s3io.path_problem(k[len(prefix):]))), None)
            if unplaceable:
                return f"{uri}: s3://{bucket}/{unplaceable[0]}: {unplaceable[1]}"
            archived = next((o["Key"] for o in listed_objects if o.get("StorageClass") in ARCHIVED_CLASSES), None)
            if archived is not None and (problem := archived_problem(s3.head_object(Bucket=bucket, Key=archived), f"s3://{bucket}/{archived}")):
                return f"{uri}: {problem}"
            return None
        if long := s3io.name_problem([key.rsplit("/", 1)[-1]]):  # (staged as a file of that name)
            return f"{uri}: {long}"
        return archived_problem(s3.head_object(Bucket=bucket, Key=key), uri)
    except s3io.S3URIError as exn:
        return str(exn)
    except s3.exceptions.ClientError as exn:
        return _s3_error(exn, uri)


def check_files(values: WDL.Env.Bindings, where: str, problems: Problems, namespace: str = "") -> None:
    """Every File/Directory input a URI the driver can fetch, and every s3:// one there."""
    found: list[tuple[str, str, bool]] = []  # (input name, uri, is a Directory)

    def collect(name: str):
        def visit(value: Any) -> str:
            found.append((name, value.value, isinstance(value, WDL.Value.Directory)))
            return value.value

        return visit

    prefix = namespace + "." if namespace else ""
    for binding in values:
        WDL.Value.rewrite_paths(binding.value, collect(prefix + binding.name))
    s3_checks: dict[tuple[str, bool], list[str]] = {}
    for name, uri, directory in found:
        kind = "Directory" if directory else "File"
        if "://" not in uri:
            problems.add(
                f"{where}: {name}",
                f"{kind} input {uri!r} is a local path, which the pipeline cannot read: upload it to S3 and "
                "give its s3:// URI (`miniwdl-fargate local run` uploads local files for you)",
            )
        elif problem := uri_problem(uri, directory):
            problems.add(f"{where}: {name}", problem)
        elif uri.startswith("s3://"):
            s3_checks.setdefault((uri, directory), []).append(name)
    _report_s3(s3_checks, where, problems)


def uri_problem(uri: str, directory: bool) -> str | None:
    """What is wrong with a File/Directory input's URI that the URI itself shows (no request:
    the command line checks it too, before it uploads anything)."""
    kind = "Directory" if directory else "File"
    if not uri.startswith(SUPPORTED_SCHEMES):
        return f"{kind} input {uri}: only s3:// and https:// URIs are supported"
    if uri.startswith("s3://"):
        try:
            _bucket, key = s3io.split(uri)
        except s3io.S3URIError:  # (no bucket: the scheme is s3://)
            return f"{kind} input {uri}: no bucket named (s3://BUCKET/KEY)"
        if not directory and (not key or key.endswith("/")):
            return f"{uri} names a folder; a File input names one object (use a Directory input for a folder)"
    return None


def _report_s3(s3_checks: dict[tuple[str, bool], list[str]], where: str, problems: Problems) -> None:
    """HeadObject/ListObjectsV2 every distinct s3:// input, however many, ``S3_CHECK_THREADS`` at
    a time; each missing one reported (the first ``MAX_LISTED``, then a count of them all)."""
    unique = list(s3_checks)
    with ThreadPoolExecutor(S3_CHECK_THREADS) as pool:
        results = list(pool.map(lambda item: _check_s3(*item), unique))
    failed = [(item, problem) for item, problem in zip(unique, results, strict=True) if problem]
    for item, problem in failed[:MAX_LISTED]:
        for name in s3_checks[item]:
            problems.add(f"{where}: {name}", problem)
    if len(failed) > MAX_LISTED:
        problems.add(
            where,
            f"{len(failed)} of the {len(unique)} s3:// inputs cannot be read ({MAX_LISTED} are listed above; "
            "fix those and submit again to see the rest)",
        )


# -- sizes -------------------------------------------------------------------------------------


def _literal(expr: Any, version: str, env: WDL.Env.Bindings | None = None) -> Any:
    """The value of an expression that needs nothing but ``env`` (values known before the run),
    else None."""
    try:
        return expr.eval(env or WDL.Env.Bindings(), stdlib=WDL.StdLib.Base(version))
    except Exception:  # it refers to what only the run knows, or calls functions needing files
        return None


#: the runtime keys whose literal values decide a task's size and capacity (``sizes.GPU_KEYS``:
#: Cromwell's and HealthOmics's GPU keys, which miniwdl passes through as unknown runtime keys)
SIZE_KEYS = ("cpu", "memory", "disks", "disk", "bootDiskSizeGb", *sizes.GPU_KEYS)


#: tasks, each with the document it is in (``tasks_always_called``)
CalledTasks = list[tuple[WDL.Tree.Task, WDL.Tree.Document]]


def check_task_sizes(
    called: CalledTasks, problems: Problems, capacities: sizes.Capacities, max_vcpus: tuple[float, str] = (0.0, ""),
    known: dict[int, list[WDL.Env.Bindings]] | None = None,
) -> None:
    """Runtime requests known before the run (cpu: 64, memory: "500 GiB", gpu: true, gpuCount: 2,
    disks: "500 GiB", or `cpu: cpu` of an input `Int cpu = 64` the run does not change: ``known``,
    each task's known inputs at each of its calls, ``known_task_inputs``) that neither Fargate nor
    the stack's other ``capacities`` can meet (``sizes.for_task``, the backend's own decision), or
    whose size needs more vCPUs than the run may hold at once (``max_vcpus``: the limit, 0 for
    none, and where it comes from), so it could never run: of the tasks the run calls whatever its
    inputs (``tasks_always_called``). A task that is only imported, or only called under an
    ``if``, may never run: the backend refuses it, with the same words, if it is ever launched."""
    for task, document in called:
        for env in (known or {}).get(id(task)) or [WDL.Env.Bindings()]:
            try:
                requests = literal_requests(task, document.effective_wdl_version, env)
                size = sizes.for_task(task.name, **requests, capacities=capacities)
            except sizes.SizeError as exn:
                problems.add(_where(document.pos.abspath, task.pos), str(exn))
                break
            if requests["cpu"] is not None and max_vcpus[0] and size.cpu / 1024 > max_vcpus[0]:
                problems.add(_where(document.pos.abspath, task.pos), vcpus_problem(task.name, requests["cpu"], size, max_vcpus))
                break


def known_task_inputs(doc: WDL.Tree.Document, values: WDL.Env.Bindings | None, task: str | None = None) -> dict[int, list[WDL.Env.Bindings]]:
    """For each task the run always calls (by ``id``), the values of its inputs known before the
    run at each of its calls: given by the run's inputs (``values``, as ``check_inputs`` read them;
    None: unknown), or set by the call to what the workflow's known inputs make, or else the
    input's own default, where that needs nothing the run makes. An input set otherwise (by an
    earlier call's output, a scatter's item, or the inputs of a sub-workflow's call) is left out:
    a runtime value that needs it is known at run time only."""
    target = wdl_target.find(doc, task)
    given = values if values is not None else WDL.Env.Bindings()
    version = doc.effective_wdl_version
    if isinstance(target, WDL.Tree.Task):
        return {id(target): [_task_env(target, {b.name: b.value for b in given}, version)]}
    if target is None:
        return {}
    workflow = WDL.Env.Bindings()
    for decl in target.inputs or []:  # (the workflow's own inputs: given, else their defaults)
        value = given[decl.name] if given.has_binding(decl.name) else (
            _literal(decl.expr, version, workflow) if decl.expr is not None else None)
        if value is not None:
            workflow = workflow.bind(decl.name, value)
    found: dict[int, list[WDL.Env.Bindings]] = {}
    for call, top in _always_calls(target):
        callee = call.callee
        assert isinstance(callee, WDL.Tree.Task)
        set_by_call = {name: (_literal(expr, version, workflow) if top else None) for name, expr in call.inputs.items()}
        if top:
            set_by_call.update({b.name.split(".", 1)[1]: b.value for b in given if b.name.startswith(call.name + ".")})
        elif any(b.name.split(".")[-2:-1] == [call.name] for b in given):  # (given for a sub-workflow's call: not read here)
            set_by_call.update({b.name.rsplit(".", 1)[1]: None for b in given if b.name.split(".")[-2:-1] == [call.name]})
        found.setdefault(id(callee), []).append(_task_env(callee, set_by_call, version))
    return found


def _task_env(task: WDL.Tree.Task, set_values: dict[str, Any], version: str) -> WDL.Env.Bindings:
    """A task's inputs known before the run: ``set_values`` (None: set, to what the run makes), else their defaults."""
    env = WDL.Env.Bindings()
    for decl in task.inputs or []:
        if decl.name in set_values:
            value = set_values[decl.name]
        else:
            value = _literal(decl.expr, version, env) if decl.expr is not None else None
        if value is not None:
            env = env.bind(decl.name, value)
    return env


def check_task_images(called: CalledTasks, problems: Problems, known: dict[int, list[WDL.Env.Bindings]] | None = None) -> None:
    """A ``docker``/``container`` image known before the run (a literal, or an input's as
    ``check_task_sizes`` reads ``known``: `String docker = "..."`) of a task the run always calls
    that is no image reference Docker would take (``images.parse_reference``): ECS would fail the
    task as it pulls it, after the run has started (local mode, running tasks without their
    images, never)."""
    for task, document in called:
        for env in (known or {}).get(id(task)) or [WDL.Env.Bindings()]:
            if _image_problem(task, document, problems, env):
                break


def _image_problem(task: WDL.Tree.Task, document: WDL.Tree.Document, problems: Problems, env: WDL.Env.Bindings) -> bool:
    """``check_task_images`` of one call's ``env``: whether it found a problem (added)."""
    from .. import images

    # the image the backend takes: ``container`` before ``docker`` (as miniwdl), an array's
    # first ECS can pull (``images.chosen_image``); "" or "*" is the configured default image
    if "inlineDockerfile" in task.runtime:  # (miniwdl's Docker backend builds it; ECS runs images only)
        problems.add(_where(document.pos.abspath, task.pos), f"task {task.name}: runtime.inlineDockerfile is not supported "
                     "(ECS runs images from a registry, it builds none): build the image, push it and name it in runtime.docker")
        return True
    key = next((k for k in ("container", "docker") if k in task.runtime), None)
    if key is None:
        return False
    value = _literal(task.runtime[key], document.effective_wdl_version, env)
    if not isinstance(value, (WDL.Value.String, WDL.Value.Array)) or not (image := images.chosen_image(value.json)):
        return False
    try:
        images.parse_reference(image)
    except images.ImageReferenceError as exn:
        problems.add(_where(document.pos.abspath, task.pos), f"task {task.name}: runtime.{key}: {exn}")
        return True
    problem = images.ecs_image_problem(image)
    if problem:
        problems.add(_where(document.pos.abspath, task.pos), f"task {task.name}: runtime.{key}: {image!r}: {problem}")
    return bool(problem)


def check_task_retries(called: CalledTasks, problems: Problems) -> None:
    """A literal ``maxRetries`` or ``preemptible`` of a task the run always calls that is not a
    whole number (miniwdl takes each as an Int as the task starts: the run would fail there)."""
    for task, document in called:
        for key in ("maxRetries", "preemptible"):
            literal = _literal(task.runtime[key], document.effective_wdl_version) if key in task.runtime else None
            if literal is None or isinstance(literal, WDL.Value.Null):
                continue
            try:
                literal.coerce(WDL.Type.Int())
            except (ValueError, TypeError, WDL.Error.RuntimeError):
                problems.add(
                    _where(document.pos.abspath, task.pos),
                    f"task {task.name}: runtime.{key} = {json.dumps(literal.json)}: expected a whole number (e.g. {key}: 2)",
                )


def _always_calls(workflow: WDL.Tree.Workflow) -> list[tuple[WDL.Tree.Call, bool]]:
    """The calls of tasks a run of ``workflow`` makes whatever its inputs (outside any ``if``; in
    scatters too, and through the sub-workflows it so calls, each of those once), each with
    whether it is the workflow's own and outside any scatter (its inputs all set by the
    workflow's inputs)."""
    found: list[tuple[WDL.Tree.Call, bool]] = []
    seen: set[int] = set()

    def visit(nodes: list[Any], top: bool) -> None:
        for node in nodes:
            if isinstance(node, WDL.Tree.Call):
                callee = node.callee
                if isinstance(callee, WDL.Tree.Task):
                    found.append((node, top))
                elif isinstance(callee, WDL.Tree.Workflow) and id(callee) not in seen:
                    seen.add(id(callee))
                    visit(callee.body, False)
            elif isinstance(node, WDL.Tree.Scatter):
                visit(node.body, False)
            # (a Conditional's calls may never run)

    visit(workflow.body, True)
    return found


def tasks_always_called(doc: WDL.Tree.Document, task: str | None = None) -> CalledTasks:
    """The tasks a run of ``doc`` calls whatever its inputs, each with its document: the target
    task, or the tasks the workflow calls outside any ``if`` (in scatters too, and through the
    sub-workflows it so calls), each once, in the order they are called."""
    owner: dict[int, WDL.Tree.Document] = {}  # each task's document (for its WDL version)
    pending, documents = [doc], set()
    while pending:
        document = pending.pop()
        if id(document) not in documents:
            documents.add(id(document))
            owner.update({id(task): document for task in document.tasks})
            pending.extend(imp.doc for imp in document.imports if imp.doc is not None)
    target = wdl_target.find(doc, task)
    if isinstance(target, WDL.Tree.Task):
        return [(target, doc)]
    found: dict[int, WDL.Tree.Task] = {}
    for call, _top in _always_calls(target) if target is not None else []:
        found.setdefault(id(call.callee), call.callee)
    return [(task, owner.get(id(task), doc)) for task in found.values()]


def vcpus_problem(task: str, cpu: float, size: sizes.TaskSize, max_vcpus: tuple[float, str]) -> str:
    """What is wrong with a task whose size needs more vCPUs than the run's ``max_vcpus``."""
    runs_as = f" (it runs as {size.cpu / 1024:g} vCPU)" if size.cpu / 1024 != cpu else ""
    return (
        f"task {task}: runtime.cpu = {cpu:g}{runs_as} is more than the run's max_vcpus of {max_vcpus[0]:g} "
        f"({max_vcpus[1]}): it could never run; ask for fewer vCPUs or give the run a larger max_vcpus"
    )


def literal_requests(task: WDL.Tree.Task, version: str, env: WDL.Env.Bindings | None = None) -> dict[str, Any]:
    """``sizes.for_task``'s keyword arguments for what the task's runtime says with what is known
    before the run (``env``: its inputs known, ``known_task_inputs``; a value that needs more is
    left to the backend, which sizes every task as it starts); SizeError for a ``gpuCount`` that
    is not a count."""
    values = {k: _literal(task.runtime[k], version, env) for k in SIZE_KEYS if k in task.runtime}
    memory = None
    if values.get("memory") is not None and not isinstance(values["memory"], WDL.Value.Null):
        # (as miniwdl reads it when the task starts: TaskContainer.process_runtime)
        try:
            memory = parse_byte_size(sizes.memory_text(values["memory"].coerce(WDL.Type.String()).value))
        except (ValueError, WDL.Error.RuntimeError):
            raise sizes.SizeError(
                f"task {task.name}: runtime.memory = {json.dumps(values['memory'].json)}: not a memory size "
                '(e.g. "4 GiB", "512 MiB" or a number of bytes)'
            ) from None
    cpu, gpu, boot = (values.get(k) for k in ("cpu", "gpu", "bootDiskSizeGb"))
    disks = sizes.disks_value({k: v.json for k, v in values.items() if k in ("disks", "disk") and v is not None})
    counts = {k: v.json for k, v in values.items() if k in sizes.GPU_KEYS and v is not None}
    if any(k in task.runtime and values[k] is None for k in sizes.GPU_COUNT_KEYS):
        counts.pop("acceleratorType", None)  # (a count known at run time only: its type alone says nothing)
    gpus, gpus_said = sizes.gpus_asked(task.name, counts)
    return {
        "cpu": float(cpu.value) if isinstance(cpu, (WDL.Value.Int, WDL.Value.Float)) else None,
        "memory_bytes": memory,
        "disks": disks,
        "boot_disk_gib": sizes.boot_disk(task.name, boot.json if boot is not None else None),
        "gpu": isinstance(gpu, WDL.Value.Boolean) and gpu.value is True,
        "gpus": gpus,
        "gpus_said": gpus_said,
        "default_cpu_units": 256,
        "default_memory_mib": 512,
    }


def check_bundle_cfg(workflow_uri: str, problems: Problems) -> None:
    """The bundle's miniwdl.cfg (beside the WDL, as the driver will read it), if there is one, is
    a configuration file miniwdl can read."""
    bucket, key = s3io.split(workflow_uri)
    if "/" not in key:  # a WDL at the top of its bucket has no bundle (driver.fetch)
        return
    cfg_uri = s3io.uri(bucket, key.rsplit("/", 1)[0] + "/" + config.RUN_CFG)
    try:
        text = _read_s3(cfg_uri)
    except FileNotFoundError:
        # none there (or, without s3:ListBucket on that bucket, a 403 in place of the 404:
        # https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html); the driver
        # still checks whatever it downloads
        return
    except ValueError as exn:
        problems.add(cfg_uri, str(exn))
        return
    problem = config.cfg_problem(text, cfg_uri, run=True)
    if problem:
        problems.add(cfg_uri, f"not a valid miniwdl configuration file: {problem}")


def check_run(
    workflow_uri: str, inputs: dict[str, Any], inputs_where: str, problems: Problems, capacities: sizes.Capacities,
    max_vcpus: tuple[float, str] = (0.0, ""), task: str | None = None, check_quant: bool = True,
) -> str:
    """Everything above, for one run on a stack with ``capacities`` besides Fargate: ``problems``
    says what is wrong, if anything. The name of what the run runs (its workflow, or its only
    task, or ``task``, the run's option), "" if there is none."""
    check_bundle_cfg(workflow_uri, problems)
    doc = load_workflow(workflow_uri, problems, check_quant)
    if doc is None:
        return ""
    target = workflow_target(doc, workflow_uri, problems, task)
    called = tasks_always_called(doc, task)
    try:  # (the inputs' own problems are said below, in order)
        given = WDL.values_from_json(inputs, target.available_inputs, namespace=target.name) if target is not None else None
    except Exception:
        given = None
    # (inputs that do not parse: literals only, not defaults the inputs may have meant to change)
    known = known_task_inputs(doc, given, task) if given is not None else None
    check_task_sizes(called, problems, capacities, max_vcpus, known)
    check_task_images(called, problems, known)
    check_task_retries(called, problems)
    if target is None:
        return ""
    values = check_inputs(target, inputs, inputs_where, problems)
    if values is not None:
        check_files(values, inputs_where, problems, namespace=target.name)
    return str(target.name)
