"""Submitting a workflow to the pipeline the way a user would (AWS or local mode alike).

Stage the workflow bundle and any local input files into the bucket, drop ``inputs.json`` into
``runs/<name>/`` (which starts the run through S3 -> EventBridge -> the inputs_dropped
function), follow the execution, and return the outputs (File values as s3:// URIs) or the error.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import itertools
import json
import os
import posixpath
import re
import secrets
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import botocore.exceptions
import WDL
from WDL._util import path_really_within

from . import aws, config, inputs_json, run_options, runs, s3io, wdl_parsers, wdl_target, zipbundle

BUNDLE_MAX_FILES = 200
BUNDLE_MAX_BYTES = 256 * 1024 * 1024
SKIP_DIRS = {"__pycache__", ".git", ".venv", "node_modules", ".pytest_cache"}


class RunInputError(ValueError):
    """The WDL or inputs cannot be submitted; nothing was uploaded or started."""


@dataclass
class RunResult:
    run_id: str
    status: str  # SUCCEEDED | FAILED
    results: str  # s3:// prefix
    document: dict[str, Any]  # outputs.json or error.json

    @property
    def outputs_uri(self) -> str:
        return self.results + ("outputs.json" if self.status == "SUCCEEDED" else "error.json")


def workflow_target(doc: WDL.Tree.Document, task: str | None = None) -> wdl_target.Target:
    """What the run runs (``wdl_target``; ``task``: the run's option), or RunInputError naming the document."""
    try:
        return wdl_target.require(doc, task)
    except wdl_target.NoTarget as exn:
        raise RunInputError(f"{doc.pos.uri}: {exn}") from None


def load_wdl(wdl_path: Path, check_quant: bool = True, import_path: Sequence[str] = ()) -> WDL.Tree.Document:
    """The WDL and its imports, loaded as ``miniwdl run`` loads them: an ``http(s)://`` import
    downloaded (miniwdl's own ``WDL.CLI.make_read_source``); ``check_quant`` false as with
    ``--no-quant-check``; an import looked for in ``import_path`` too, as with ``-p``;
    RunInputError saying what is wrong."""
    from WDL import CLI

    wdl_parsers.use_cache()  # (the parser's build, once per machine: most of this check's time)
    try:
        return WDL.load(
            str(wdl_path), [os.path.abspath(p) for p in import_path], read_source=CLI.make_read_source(False),
            check_quant=check_quant,
        )
    except WDL.Error.SyntaxError as exn:  # (on one line, as the pipeline says it: lark's list of tokens spans many)
        raise RunInputError(f"{wdl_path}:{exn.pos.line}:{exn.pos.column}: WDL syntax error: {' '.join(str(exn).split())}") from None
    except WDL.Error.ValidationError as exn:
        raise RunInputError(f"{wdl_path}:{exn.pos.line}:{exn.pos.column}: {exn}") from None
    except WDL.Error.MultipleValidationErrors as exn:
        first = exn.exceptions[0]
        raise RunInputError(
            f"{wdl_path}:{first.pos.line}:{first.pos.column}: {first} (and {len(exn.exceptions) - 1} more)"
        ) from None
    except WDL.Error.ImportError as exn:
        from .pipeline.validate import import_failure

        raise RunInputError(f"{wdl_path}:{exn.pos.line}:{exn.pos.column}: {import_failure(exn)}") from None
    except UnicodeDecodeError as exn:
        from .pipeline.validate import not_utf8

        raise RunInputError(f"{wdl_path}: {not_utf8(exn)}") from None
    except (OSError, ImportError) as exn:
        raise RunInputError(f"{wdl_path}: {exn}") from None


def url_imports(doc: WDL.Tree.Document) -> list[str]:
    """The ``http(s)://`` imports of the WDL and of every WDL it imports (a folder cannot hold
    them: ``prepare`` submits such a WDL as a bundle, which does)."""
    found = [imp.uri for imp in doc.imports if "://" in imp.uri]
    return found + [uri for imp in doc.imports if imp.doc is not None for uri in url_imports(imp.doc)]


def local_imports(doc: WDL.Tree.Document) -> Iterator[tuple[str, Path]]:
    """(the import as written, the file miniwdl found: its path as given, not a link's target)
    of every local WDL the document imports, directly or through its imports."""
    for imp in doc.imports:
        if imp.doc is not None and "://" not in imp.uri:
            yield imp.uri, Path(os.path.abspath(imp.doc.pos.abspath))
            yield from local_imports(imp.doc)


def imports_outside(doc: WDL.Tree.Document, base: Path) -> bool:
    """Whether the WDL, or a WDL it imports, imports a file outside the WDL's folder (``base``): by
    an absolute path, or one that climbs above it (WARP's ``../../../tasks/broad/Utils.wdl``), or
    one its upload leaves out (a hidden file or folder, ``.deps/``, ``node_modules/``). A folder
    cannot hold those: ``prepare`` submits such a WDL as a bundle, which does."""
    for uri, imported in local_imports(doc):
        if uri.startswith("/") or not imported.is_relative_to(base):
            return True
        rel = imported.relative_to(base).parts
        if any(part.startswith(".") for part in rel) or any(part in SKIP_DIRS for part in rel[:-1]):
            return True
    return False


def check_imports(doc: WDL.Tree.Document, base: Path) -> None:
    """Every import a relative path to a file inside the WDL's folder (``base``), as the pipeline
    requires (``pipeline.validate.IMPORT_RULE``): only that folder is uploaded."""
    from .pipeline.validate import IMPORT_RULE

    for imp in doc.imports:
        where = f"{doc.pos.abspath}:{imp.pos.line}:{imp.pos.column}"
        if "://" in imp.uri or imp.uri.startswith("/"):
            raise RunInputError(f"{where}: cannot import {imp.uri}: {IMPORT_RULE}")
        if imp.doc is not None:
            # (by the path as miniwdl found it, not its link's target: a link in the folder is the
            # folder's file, uploaded as such)
            imported = Path(os.path.abspath(imp.doc.pos.abspath))
            if not imported.is_relative_to(base):
                raise RunInputError(
                    f"{where}: cannot import {imp.uri}: it is outside the workflow's folder; {IMPORT_RULE} "
                    "(or submit with --zip: a `miniwdl zip` bundle takes the WDL it imports from anywhere)"
                )
            rel = imported.relative_to(base).as_posix()
            if not runs.in_bundle(rel):  # (not uploaded: the name is the pipeline's or the run's own)
                raise RunInputError(
                    f"{where}: cannot import {imp.uri}: {rel} is a name the pipeline keeps for a run's own files "
                    f"(its inputs, options, refusal and {runs.RESULTS_DIR}/), which is not uploaded with the workflow: rename it"
                )
            check_imports(imp.doc, base)


def imports_file(doc: WDL.Tree.Document, path: Path) -> bool:
    """Whether the document imports the file at ``path``, directly or through its imports."""
    return any(imported.resolve() == path.resolve() for _, imported in local_imports(doc))


#: the file that marks a folder as local mode's state (``local run|up --state-dir``)
LOCAL_STATE_MARK = ".miniwdl-fargate-local-state"


#: a folder `miniwdl run` left beside the WDL: ``20261203_061500_hello/`` (its log, its ``rerun``
#: script, its work), and its ``_LAST`` link to the latest
MINIWDL_RUN_DIR = re.compile(r"^\d{8}_\d{6}_.+$")


def _skipped(root: str, name: str) -> bool:
    """Whether the folder ``name`` in ``root`` is left out of a workflow's upload: tools' and
    version control's folders, hidden ones, local mode's state, `miniwdl run`'s run folders."""
    path = os.path.join(root, name)
    return (
        name in SKIP_DIRS or name.startswith(".") or name == "_LAST"
        or os.path.exists(os.path.join(path, LOCAL_STATE_MARK))
        or (bool(MINIWDL_RUN_DIR.match(name)) and os.path.exists(os.path.join(path, "workflow.log")))
    )


def bundle_files(wdl_path: Path, leave_out: frozenset[Path] = frozenset()) -> list[Path]:
    """The files of the WDL's folder (its imports and source-relative files live there), but
    folders ``_skipped`` (a local stack's state folder in it: `--state-dir state` run from the
    workflow's folder; `miniwdl run`'s run folders) and the files in ``leave_out`` (local inputs:
    uploaded as inputs, not again with the folder)."""
    base = wdl_path.parent
    files: list[Path] = []
    total = 0
    sizes: dict[str, int] = {}  # (by the folder's own entries: what to name when it is too large)

    def add(path: Path) -> None:
        nonlocal total
        files.append(path)
        size = path.stat().st_size
        total += size
        top = path.relative_to(base).parts[0]
        sizes[top] = sizes.get(top, 0) + size
        if len(files) > BUNDLE_MAX_FILES or total > BUNDLE_MAX_BYTES:
            largest = ", ".join(f"{n} ({b / 2**20:.1f} MiB)" for n, b in sorted(sizes.items(), key=lambda i: -i[1])[:3])
            raise RunInputError(
                f"{base} holds more than {BUNDLE_MAX_FILES} files or {BUNDLE_MAX_BYTES >> 20} MiB (the largest so far: "
                f"{largest}): the workflow's folder is uploaded with it; put the WDL (with its imports and the files it "
                "reads by relative path) in a folder of its own, and give data as inputs (uploaded apart, once)"
            )

    # Each real folder is walked once, under the first of its names; every other name of it (a
    # link to a folder walked already, or walked later under its first name) is an alias, whose
    # files are listed again under it once the walk is done: the WDL may read a file by either
    # name, and no chain of links multiplies the walk. A link to the folder it is in or one above
    # it is a loop, left out. Each folder's real path is its parent's and its name, found by a
    # realpath only for a link (one of every entry looks at each folder above it: the square of a
    # deep tree's depth)
    real = {str(base): os.path.realpath(base)}
    seen = set(real.values())
    aliases: list[tuple[Path, str]] = []  # (the name, the real folder it names)
    found: list[tuple[str, str]] = []  # (a walked file's real folder, its name)
    for root, dirs, names in os.walk(base, followlinks=True):
        here = real.pop(root)
        kept = []
        for name in sorted(dirs):
            path = os.path.join(root, name)
            resolved = os.path.realpath(path) if os.path.islink(path) else os.path.join(here, name)
            if _skipped(root, name) or here == resolved or here.startswith(resolved + os.sep):
                continue
            if resolved in seen:
                aliases.append((Path(path), resolved))
                continue
            seen.add(resolved)
            real[path] = resolved
            kept.append(name)
        dirs[:] = kept
        for name in sorted(names):
            path = Path(root) / name
            if name.startswith(".") or not path.is_file():
                continue
            if (path.resolve() if path.is_symlink() else Path(here, name)) in leave_out:
                continue
            found.append((here, name))
            add(path)
    for alias, target in aliases:
        for folder, name in found:
            if folder == target or folder.startswith(target + os.sep):
                add(alias / os.path.relpath(folder, target) / name)
    return files


#: where local File/Directory inputs are uploaded, by content: ``staged/<sha256 of the file>/<its
#: name>``, ``staged/<sha256 of the tree>/<its name>/<relative path>`` for a directory (the tree:
#: each file's relative path and sha256). A key's bytes never change: a later submission (under
#: the same run name, or resuming) cannot change what a run reads, the same content is uploaded
#: once whatever the run's name or the file's folder, and the call cache, which keys a File input
#: by URI and ETag, finds it again.
STAGED_PREFIX = "staged/"


def stage_inputs(
    doc: WDL.Tree.Document, inputs: dict[str, Any], inputs_dir: Path, bucket: str, task: str | None = None,
    label: str = "inputs", confined: str = "",
) -> tuple[dict[str, Any], list[Staged]]:
    """Rewrite local File/Directory inputs (relative to the inputs file) as s3:// URIs under
    ``STAGED_PREFIX``, named by their content.

    Returns the new inputs JSON and the uploads to make (``Staged``); checks everything before
    uploading. ``task``: the run's option (``wdl_target``). A problem is said under ``label``
    (the inputs file), at the value's place in its input (``hello.pairs[0].right``).
    ``confined`` (what the files there are, e.g. "the attached files"): only relative paths to
    what ``inputs_dir`` holds are taken, nothing of the machine's own (a service staging what a
    request attached: no absolute path, no current folder, no link out of it).
    """
    target = workflow_target(doc, task)
    try:
        env = WDL.values_from_json(inputs, target.available_inputs, namespace=target.name)
    except WDL.Error.InputError as exn:
        raise RunInputError(f"{label}: {exn}") from None
    # (each File and Directory's place, in the order ``WDL.Value.rewrite_paths`` meets them: it
    # hands the callback copies)
    places = {b.name: iter([where for _v, where in value_places(b.value, f"{target.name}.{b.name}")]) for b in env}
    uploads: list[Staged] = []
    taken: dict[str, str] = {}  # key -> the local path (as given, made absolute) it holds

    def stage(value: WDL.Value.File | WDL.Value.Directory, name: str) -> str:
        path = value.value
        is_dir = isinstance(value, WDL.Value.Directory)
        place = f"{label}: {next(places[name], f'{target.name}.{name}')}"
        if "://" in path:
            from .pipeline.validate import uri_problem

            if problem := uri_problem(path, is_dir):  # (as the submit step would refuse it, after the upload)
                raise RunInputError(f"{place}: {problem}")
            return path
        kind = "directory" if is_dir else "file"
        where = f"{place}: {kind}"
        if not path:
            raise RunInputError(f"{place}: an empty path where a {kind} is named")
        if problem := name_problem(path):
            raise RunInputError(f"{where} {path!r}: {problem}")
        def found(local: Path) -> bool:
            return local.is_dir() if is_dir else local.is_file()

        if confined:
            local = (inputs_dir / path).resolve()
            if os.path.isabs(path) or not local.is_relative_to(inputs_dir.resolve()) or not found(local):
                raise RunInputError(f"{where} {path} is not one of {confined} (a local path names nothing the service "
                                    "can read: give an s3:// URI, or attach it)")
            return keyed(path, local, is_dir, where)
        try:
            local = (inputs_dir / path).resolve()
            # a relative path is the inputs file's folder's; else, as `miniwdl run -i` reads it,
            # the current folder's (an inputs file kept in a subfolder, run from the project's root)
            from_cwd = (Path.cwd() / path).resolve()
        except RuntimeError:  # (Python's word for a loop of symbolic links)
            raise RunInputError(f"{where} {path}: a loop of symbolic links (looked for {inputs_dir / path})") from None
        if not found(local) and found(from_cwd):
            local = from_cwd
        if not found(local):
            what = "is not a regular file" if local.exists() and not is_dir else "not found"
            looked = [str(p) for p in dict.fromkeys((local, from_cwd)) if str(p) != path]  # (a relative path: where it was looked for)
            raise RunInputError(f"{where} {path} {what}" + (f" (looked for {' and '.join(looked)})" if looked else ""))
        try:
            return keyed(path, local, is_dir, where)
        except OSError as exn:  # (unreadable: a file's mode, a folder's inside the Directory)
            raise RunInputError(f"{where} {path}: {exn.filename or local}: {exn.strerror}") from None

    def keyed(path: str, local: Path, is_dir: bool, where: str) -> str:
        """The input's s3:// URI, named by its content and its name as given (a link's, not its
        target's: tools go by names), its uploads noted; two files of one name and content
        given from two places stay two, as miniwdl gives them."""
        name = os.path.basename(os.path.normpath(path))
        given = os.path.normpath(os.path.join(inputs_dir, path))

        def key_for(digest: str) -> str:
            for n in itertools.count(1):
                key = f"{STAGED_PREFIX}{digest}{'' if n == 1 else f'-{n}'}/{name}"
                if taken.setdefault(key, given) == given:
                    return key
            raise AssertionError  # (unreachable)

        if is_dir:
            files, empty = directory_tree(local, path)
            files.sort()
            if not files:  # (the submit step refuses an s3:// folder that holds nothing: S3 has no empty folders)
                raise RunInputError(f"{where} {path} holds no files (looked in {local}); an S3 folder "
                                    "cannot be empty: put a file in it, or give the input no value if it is optional")
            digests = [content_digest(file) for _rel, file in files]
            executable = {rel for rel, file in files if os.access(file, os.X_OK)}
            # the tree: each file's path and sha256, its executables and its empty folders (only
            # where it has any: a tree of neither keeps the key it had before they were staged)
            tree = hashlib.sha256()
            for (rel, _file), digest in zip(files, digests, strict=True):
                tree.update(f"{rel}\0{digest}{chr(0) + 'x' if rel in executable else ''}\n".encode())
            for rel in sorted(empty):
                tree.update(f"{rel}/\0\n".encode())
            key = key_for(tree.hexdigest() + (EXECUTABLE_SUFFIX if executable else ""))
            uploads.extend(Staged(f"{key}/{rel}", digest, file) for (rel, file), digest in zip(files, digests, strict=True))
            uploads.extend(Staged.of(f"{key}/{rel}/", b"") for rel in sorted(empty))  # (folder markers)
            if executable:  # (S3 keeps no modes: the driver's staging gives them back, ``staging.directory_modes``)
                uploads.append(Staged.of(key + MODES_SUFFIX, json.dumps({"executable": sorted(executable)}).encode()))
            return s3io.uri(bucket, key + "/")
        digest = content_digest(local)
        # an executable file (a script the task runs: `~{tool}`) keeps its execute bits: a key of
        # its own, since one key's object is staged with one mode (``upload_staged``)
        executable_file = os.access(local, os.X_OK)
        key = key_for(digest + (EXECUTABLE_SUFFIX if executable_file else ""))
        uploads.append(Staged(key, digest, local, executable=executable_file))
        return s3io.uri(bucket, key)

    problems: list[str] = []

    def staged(value: WDL.Value.File | WDL.Value.Directory, name: str) -> str:
        """``stage``, its problem noted (every input's is said at once, as the submit step says them)."""
        try:
            return stage(value, name)
        except RunInputError as exn:
            problems.append(str(exn))
            return value.value

    rewritten = env.map(
        lambda b: WDL.Env.Binding(b.name, WDL.Value.rewrite_paths(b.value, lambda v: staged(v, b.name)), b.info)
    )
    if problems:
        raise RunInputError("; ".join(dict.fromkeys(problems)))
    # (one upload a key, however many inputs name its file: an Array of one file 2,000 times)
    return WDL.values_to_json(rewritten, namespace=target.name), list({u.key: u for u in uploads}.values())


def value_places(value: WDL.Value.Base, where: str) -> Iterator[tuple[WDL.Value.Base, str]]:
    """Each File and Directory in ``value`` with its place (``where``, then ``[0]``, ``.left``,
    ``["key"]``, ``.member``), as an inputs JSON writes it, in the order ``WDL.Value.rewrite_paths``
    meets them."""
    if isinstance(value, (WDL.Value.File, WDL.Value.Directory)):
        yield value, where
    elif isinstance(value, WDL.Value.Array):
        for i, item in enumerate(value.value):
            yield from value_places(item, f"{where}[{i}]")
    elif isinstance(value, WDL.Value.Map):
        for key, item in value.value:
            yield from value_places(key, f"{where} (a key)")
            yield from value_places(item, f"{where}[{json.dumps(key.json)}]")
    elif isinstance(value, WDL.Value.Pair):
        yield from value_places(value.value[0], f"{where}.left")
        yield from value_places(value.value[1], f"{where}.right")
    elif isinstance(value, WDL.Value.Struct):
        for member, item in value.value.items():
            yield from value_places(item, f"{where}.{member}")


def name_problem(path: str) -> str | None:
    """What keeps a local file's path from being an S3 key a run can read: control characters
    (a newline: S3's XML listings and the shell scripts of tasks do not carry them)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "its name holds a control character (a newline, a tab): rename it"
    return None


def directory_files(root: Path, given: str = "") -> list[tuple[str, Path]]:
    """(relative path, path) of every file under ``root`` (``directory_tree``'s files)."""
    return directory_tree(root, given)[0]


def directory_tree(root: Path, given: str = "") -> tuple[list[tuple[str, Path]], list[str]]:
    """(relative path, path) of every file under ``root`` (a Directory input, ``given`` so), and
    the relative path of every folder in it that holds nothing (not its files' folders), as
    miniwdl reads one: through links to folders (a link back to a folder it is inside, a loop,
    is not followed); a link to a file must be relative and stay inside ``root``, as miniwdl
    requires of a Directory input (``WDL.CLI``: "Input Directory contains unusable symlink"),
    else RunInputError; FIFOs and other non-files hold nothing."""
    found: list[tuple[str, Path]] = []
    empty: list[str] = []

    def walk(folder: Path, rel: str, inside: frozenset[str]) -> None:
        with os.scandir(folder) as entries:
            listed = list(entries)
        held = len(found), len(empty)
        for entry in listed:
            path, name = Path(entry.path), f"{rel}{entry.name}"
            if entry.is_dir():  # (follows links)
                real = os.path.realpath(path)
                if real not in inside:
                    walk(path, name + "/", inside | {real})
            elif entry.is_symlink() and not (
                entry.is_file() and not os.path.isabs(os.readlink(path)) and path_really_within(str(path), str(root))
            ):
                raise RunInputError(
                    f"inputs: directory {given or root}: {name} is a symbolic link that is dangling, absolute or leads "
                    "outside the directory; miniwdl refuses such a Directory input (make it a relative link inside it, "
                    "or copy the file in)"
                )
            elif problem := name_problem(name):
                raise RunInputError(f"inputs: directory {given or root}: {name!r}: {problem}")
            elif entry.is_file():
                found.append((name, path))
        if rel and held == (len(found), len(empty)):  # (nothing inside it: S3 keeps it as a folder marker)
            empty.append(rel.rstrip("/"))

    walk(root, "", frozenset({os.path.realpath(root)}))
    return found, empty


def content_digest(path: Path) -> str:
    """The sha256 of a file's bytes (hex), read once per process while its size and mtime stay."""
    stat = path.stat()
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _digest(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as infile:
        for chunk in iter(lambda: infile.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _HashingReader(io.RawIOBase):
    """A file read once, front to back, hashing what is read (not seekable: s3transfer then
    reads it in order, part after part)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        return data


#: S3's most parts of one multipart upload, and the part size s3transfer uses unless told
#: (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html)
MAX_PARTS = 10_000
DEFAULT_PART_BYTES = 8 << 20


def staged_transfer(size: int) -> Any:
    """The transfer settings of a ``size``-byte upload from a stream: s3transfer cannot size the
    parts of a stream it cannot seek (as it does for a file), so they are sized here to stay
    within S3's 10,000 parts (with room), in whole MiB; the parts in flight, and those read ahead of
    them (``max_in_memory_upload_chunks``: 10 unless told, whatever the concurrency), are held in
    memory, so fewer go at once and fewer are read ahead as they grow (about 512 MiB of each)."""
    from boto3.s3.transfer import TransferConfig

    part = -(-max(DEFAULT_PART_BYTES, -(-size // (MAX_PARTS - 1000))) // (1 << 20)) * (1 << 20)
    held = max(1, min(10, (512 << 20) // part))
    config = TransferConfig(multipart_chunksize=part, max_concurrency=held)
    # (s3transfer's own setting, which boto3's TransferConfig, a subclass, takes as an attribute only)
    config.max_in_memory_upload_chunks = max(2, held)
    return config


#: the user metadata a staged object carries: the sha256 of the bytes uploaded (its key's)
STAGED_SHA256 = "sha256"
#: a staged File that was executable, or a staged Directory that holds executables: its key's
#: folder ends so (``staged/<sha256>.x/<name>``); the File's object carries
#: ``staging.MODE_METADATA``, the Directory's executables are listed beside it (``MODES_SUFFIX``)
#: (S3 keeps no file modes)
EXECUTABLE_SUFFIX = ".x"
#: beside a staged Directory that holds executables (``staged/<sha256>.x/<name>.modes.json``):
#: ``{"executable": [their paths in it]}``
MODES_SUFFIX = ".modes.json"


class Staged(NamedTuple):
    """One object ``submit`` stages: a local file (``path``), or ``body`` (a Directory's folder
    marker, its list of executables), under ``key``; ``digest``: the sha256 of its bytes as keyed."""

    key: str
    digest: str
    path: Path | None = None
    body: bytes = b""
    executable: bool = False

    @classmethod
    def of(cls, key: str, body: bytes) -> "Staged":
        return cls(key, hashlib.sha256(body).hexdigest(), body=body)


def upload_staged(s3: Any, path: Path | None, bucket: str, key: str, digest: str, executable: bool = False,
                  body: bytes = b"") -> None:
    """A staged input (a local file at ``path``, or else ``body``) uploaded unless its key is
    there already (with the sha256, ``digest``, as uploaded here); an ``executable`` file's
    object carries its mode (``staging.MODE_METADATA``). RunInputError if the file changed since
    its key was made (nothing is uploaded), or while it was uploaded (the object is removed: the
    upload hashes what it sends): a key never holds other bytes than its name says, and nothing
    has started."""
    try:
        if s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(STAGED_SHA256) == digest:
            return
    except s3.exceptions.ClientError:  # (404, or 403 without s3:ListBucket: upload it)
        pass
    metadata = {STAGED_SHA256: digest}
    if path is None:
        s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)
        return
    changed = RunInputError(f"{path} changed while it was being submitted: nothing was started; submit again")
    if content_digest(path) != digest:  # (since it was keyed: its size or mtime tell)
        raise changed
    if executable:
        from .staging import EXECUTABLE_MODE, MODE_METADATA

        metadata[MODE_METADATA] = EXECUTABLE_MODE
    with open(path, "rb") as infile:
        reader = _HashingReader(infile)
        s3.upload_fileobj(reader, bucket, key, ExtraArgs={"Metadata": metadata},
                          Config=staged_transfer(path.stat().st_size))
    if reader.sha256.hexdigest() != digest:  # (changed while it was read)
        s3.delete_object(Bucket=bucket, Key=key)
        raise changed


@dataclass
class Submission:
    """A checked WDL + inputs, ready to upload: everything that can be wrong with them was found
    before anything is started."""

    wdl_path: Path
    doc: WDL.Tree.Document
    inputs: dict[str, Any]
    inputs_dir: Path
    name: str
    files: list[Path]
    #: the run's options (``--label``, ``--option``): uploaded as the sidecar options.json
    options: run_options.RunOptions = field(default_factory=run_options.RunOptions)
    inputs_version: str | None = None  # of the uploaded inputs.json, once uploaded
    #: ``wdl_path`` is a `miniwdl zip` bundle: uploaded as it is (runs/<name>/workflow.zip), which
    #: the submit step checks again and unpacks; its default inputs go under ``inputs`` there
    bundle: bool = False
    #: once uploaded: whether the pipeline answered within ``ANSWER_SECONDS``, and its refusal
    #: (runs/<name>/error.json) if it refused the run
    answered: bool = False
    refusal: dict[str, Any] | None = None

    def upload_workflow(self, bucket: str) -> None:
        """The workflow into runs/<name>/: the bundle as workflow.zip, or the WDL's folder with
        the WDL as workflow.wdl; the other of the two removed (an earlier submission's, under
        the same name, would make the drop ambiguous), and every other file an earlier submit
        uploaded there (``SUBMITTED``) that this one did not. A file someone else put there is
        never removed: it is theirs (and the submit step copies it with the workflow)."""
        s3 = aws.client("s3")
        prefix = runs.run_prefix(self.name)
        marked = {"Metadata": {SUBMITTED: "1"}}
        uploaded = set()
        if self.bundle:
            s3.upload_file(str(self.wdl_path), bucket, prefix + runs.DEFAULT_ZIP, ExtraArgs=marked)
            uploaded.add(runs.DEFAULT_ZIP)
        else:
            for path in self.files:
                rel = path.relative_to(self.wdl_path.parent).as_posix()
                if path == self.wdl_path:
                    rel = runs.DEFAULT_WDL
                elif rel in (runs.DEFAULT_WDL, runs.DEFAULT_ZIP) or not runs.in_bundle(rel):
                    continue
                s3.upload_file(str(path), bucket, prefix + rel, ExtraArgs=marked)
                uploaded.add(rel)
        # what an earlier submission under this name left (its miniwdl.cfg, a file it read) is not
        # this one's: the submit step copies the whole folder
        from .pipeline.snapshot import bundle_listing

        for obj in bundle_listing(bucket, prefix):
            rel = obj["Key"][len(prefix):]
            if not runs.in_bundle(rel) or rel in uploaded:
                continue
            if rel in (runs.DEFAULT_WDL, runs.DEFAULT_ZIP) or submitted(s3, bucket, obj["Key"]):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])

    def upload(
        self, bucket: str, interval: float = 0.25, answer_timeout: float | None = None,
        pause: Callable[[float], None] | None = None,
    ) -> tuple[str, str]:
        """Upload the bundle, the local inputs and then inputs.json (which starts the run), and
        wait for the pipeline's answer (``answered``, ``refusal``; looking every ``interval``
        seconds, ``pause`` between looks as ``wait`` takes it, for at most ``answer_timeout``,
        default ``ANSWER_SECONDS``), the run name
        claimed all along (``name_claimed``: another submission under the same name waits its
        turn, so neither runs the other's workflow). Returns (run name, the run id the pipeline
        gives it)."""
        staged_inputs, uploads = stage_inputs(self.doc, self.inputs, self.inputs_dir, bucket, self.options.task)
        body = json.dumps(staged_inputs, indent=2).encode()
        if problem := inputs_json.size_problem(len(body)):  # with its local paths made s3:// URIs
            raise RunInputError(f"inputs (as uploaded): {problem}")
        s3 = aws.client("s3")
        prefix = runs.run_prefix(self.name)
        with name_claimed(bucket, self.name) as lost:
            self.upload_workflow(bucket)
            for item in uploads:
                upload_staged(s3, item.path, bucket, item.key, item.digest, item.executable, item.body)
            given = self.options.given()
            if given:
                s3.put_object(Bucket=bucket, Key=prefix + runs.OPTIONS_NAME, Body=json.dumps(given, indent=2).encode(),
                              ContentType="application/json")
            else:  # this submission is the whole story: an earlier submission's options do not apply
                s3.delete_object(Bucket=bucket, Key=prefix + runs.OPTIONS_NAME)
            if lost():
                raise RunInputError(
                    f"run name {self.name!r}: another submission took the folder over while this one uploaded "
                    "(it could not renew its claim): nothing was started; submit again"
                )
            put = s3.put_object(
                Bucket=bucket,
                Key=prefix + runs.INPUTS_NAME,
                Body=body,
                ContentType="application/json",
            )
            version = put.get("VersionId") or put["ETag"].strip('"')  # as the submit step names the run
            self.inputs_version = version
            run_id = runs.run_id_for(self.name, prefix + runs.INPUTS_NAME, version)
            # the submit step has copied the folder once it answers: the name is free again then
            self.answered, self.refusal = await_answer(
                bucket, self.name, run_id, version, ANSWER_SECONDS if answer_timeout is None else answer_timeout, interval,
                pause,
            )
        return self.name, run_id


#: how long a submission waits for the pipeline to take or refuse it (the S3 event's way to the
#: submit function: seconds on AWS, a Lambda's cold start included)
ANSWER_SECONDS = 60.0
#: a claim on a run name is a lease of this long, renewed while its submission lives: one not
#: renewed in time was left by a submission that died, and is taken over
CLAIM_SECONDS = 90.0
#: how long a submission waits for another under the same name (more than a lease: a waiter
#: outlasts a dead submission's claim)
CLAIM_WAIT_SECONDS = 300.0


def await_answer(
    bucket: str, name: str, run_id: str, inputs_version: str | None, timeout: float = ANSWER_SECONDS, interval: float = 0.25,
    pause: Callable[[float], None] | None = None,
) -> tuple[bool, dict[str, Any] | None]:
    """The pipeline's answer to a submission: (True, None) once the run exists, (True, the
    refusal) if it refused this upload (runs/<name>/error.json), (False, None) if neither came
    within ``timeout`` seconds (looking every ``interval`` seconds, ``pause`` as ``wait`` takes it)."""
    from . import status

    deadline = time.monotonic() + timeout
    while True:
        if status.read(bucket, run_id) is not None:
            return True, None
        refused = rejection(bucket, name, inputs_version)
        if refused is not None:
            return True, refused
        if time.monotonic() > deadline:
            return False, None
        (pause or time.sleep)(interval)


@contextlib.contextmanager
def name_claimed(
    bucket: str, name: str, wait: float = CLAIM_WAIT_SECONDS, clock: Callable[[], float] = time.time,
    lease: float = CLAIM_SECONDS,
) -> Iterator[None]:
    """Hold ``runs/<name>/.submitting`` while a submission uploads into ``runs/<name>/`` and the
    pipeline takes it (created only where there is none: S3's conditional write,
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html). Two
    submissions under one name at once would each upload into the same folder, and one run
    would run the other's workflow with the other's options; the second waits its turn (up to
    ``wait`` seconds, then RunInputError). The claim is a lease of ``lease`` seconds, renewed
    every third of it while held (however long an upload takes), so a submission that died
    (killed: no ``finally`` ran) holds the name that long at most: a claim past its time is
    taken over, by a write conditional on its ETag; a claim lost that way fails the upload
    before its inputs.json starts anything (RunInputError)."""
    key = runs.run_prefix(name) + runs.CLAIM_NAME
    token = secrets.token_hex(8)  # (which submission's claim it is)
    give_up = time.monotonic() + wait

    def claim_body() -> bytes:
        return json.dumps({"token": token, "until": clock() + lease}).encode()

    def lapsed(held: s3io.Claim) -> bool:  # (no "until": not a claim this writes: taken over)
        until = held.doc.get("until")
        return not isinstance(until, (int, float)) or until < clock()

    while True:
        taking = s3io.take_claim(bucket, key, claim_body(), lapsed)
        if taking.etag:
            etag = taking.etag
            break
        if taking.held is None:
            continue  # (given up, or taken over by another submission, meanwhile: at once again)
        until = taking.held.doc["until"]
        if time.monotonic() > give_up:
            raise RunInputError(
                f"run name {name!r} is still claimed by another submission after {wait:.0f}s (s3://{bucket}/{key}, "
                f"until {time.strftime('%H:%M:%S UTC', time.gmtime(until))}): try again later, or give another --name"
            )
        time.sleep(0.2)
    held_etag = [etag]
    lost = threading.Event()
    done = threading.Event()

    def ours() -> s3io.Claim | None:
        """The claim as it is, if it is still this submission's: a write whose answer was lost
        (botocore's retry of it then refused) leaves an ETag this never saw, and its token."""
        held = s3io.read_claim(bucket, key)
        return held if held is not None and held.doc.get("token") == token else None

    def renew() -> None:
        while not done.wait(lease / 3):
            try:
                renewed = s3io.replace_claim(bucket, key, claim_body(), held_etag[0])
                if renewed is None:
                    held = ours()
                    if held is None:
                        lost.set()  # (taken over: this submission ran past its lease unrenewed)
                        return
                    renewed = held.etag
            except Exception:  # noqa: BLE001 (S3 unreachable for a moment: the next renewal tries again)
                continue
            held_etag[0] = renewed

    renewer = threading.Thread(target=renew, name="name-claim", daemon=True)
    renewer.start()
    try:
        yield lost.is_set
    finally:
        done.set()
        renewer.join()
        try:  # (unless taken over meanwhile: then not ours to give up)
            if not s3io.remove_claim(bucket, key, held_etag[0]):
                held = ours()
                if held is not None:
                    s3io.remove_claim(bucket, key, held.etag)
        except Exception:  # noqa: BLE001 (S3 unreachable: the claim expires in any case)
            pass


def default_name(workflow: str) -> str:
    """``<workflow>-<UTC time>-<6 random hex>``: submits in the same second (three shells, a
    loop) never share a run folder, whose bundle each would overwrite."""
    suffix = f"-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
    return workflow[: 64 - len(suffix)] + suffix


def prepare(
    wdl: str | os.PathLike, inputs: str | os.PathLike | dict[str, Any], name: str | None = None,
    options: run_options.RunOptions | None = None, zip_into: str | os.PathLike | None = None,
    assignments: list[str] | tuple[str, ...] = (), empty: list[str] | tuple[str, ...] = (),
    none: list[str] | tuple[str, ...] = (), import_path: Sequence[str] = (),
) -> Submission:
    """Check the WDL (or `miniwdl zip` bundle), the inputs and the files they name; raise
    RunInputError saying what is wrong. With ``zip_into`` (a folder), a WDL is made a bundle
    there by miniwdl's own ``WDL.Zip.build`` (``build_bundle``), which is submitted; so is a WDL
    a folder cannot hold (one importing by URL, from outside its folder, or its folder's
    workflow.wdl, whose place it would take), in a scratch folder. Local inputs in the WDL's
    folder go as inputs, not again with the folder or bundle (never the WDL, its imports or its
    miniwdl.cfg).
    ``assignments``: NAME=VALUE inputs from the command line, over the inputs file's, and the
    inputs ``empty`` (``--empty NAME``) and ``none`` (``--none NAME``) name (``command_line_inputs``).
    The run's ``options.task`` (``--task NAME``) is what it runs, rather than the document's workflow.
    ``import_path`` (``-p DIR``): folders imports are looked for in, as ``miniwdl run -p``; what
    the WDL imports from them is outside its folder, so it goes as a bundle."""
    task = options.task if options is not None else None
    check_quant = options is None or options.quant_check is not False
    # (the path as given, as miniwdl reads it: a link's imports are beside the link, not its target)
    wdl_path = Path(os.path.abspath(wdl))
    if not wdl_path.is_file():
        raise RunInputError(f"{wdl}: {'a folder, not a WDL file' if wdl_path.is_dir() else 'no such WDL file'}")
    defaults: dict[str, Any] = {}
    #: where submit makes a bundle of the WDL, once it knows the local inputs its folder leaves out
    bundle_into: Path | None = None
    if zipbundle.is_bundle(str(wdl_path)):
        doc, defaults = load_bundle(wdl_path, check_quant)
    else:
        doc = load_wdl(wdl_path, check_quant, import_path)
        check_bundled_cfg(wdl_path.parent)
        # a bundle holds what a folder cannot: what a URL imports (as fetched now: the driver fetches
        # nothing), WDL from outside the folder (stored under __outside_wdl/, as miniwdl zip does),
        # and the folder's workflow.wdl, whose place in runs/<name>/ the main WDL takes
        imports_workflow_wdl = wdl_path.name != runs.DEFAULT_WDL and imports_file(doc, wdl_path.parent / runs.DEFAULT_WDL)
        # (-p: an import found in one of its folders is where the pipeline, with no -p, does not
        # look, even inside the WDL's folder: a bundle rewrites it to where it holds it)
        if (zip_into is not None or url_imports(doc) or imports_outside(doc, wdl_path.parent) or imports_workflow_wdl
                or import_path):
            bundle_into = Path(zip_into if zip_into is not None else scratch_folder())
        else:
            check_imports(doc, wdl_path.parent)
    if isinstance(inputs, dict):
        inputs_doc, inputs_dir = inputs, Path.cwd()
    else:
        inputs_doc, inputs_dir = read_inputs(Path(inputs)), Path(os.path.abspath(inputs)).parent
    if not isinstance(inputs_doc, dict):
        raise RunInputError(f"{inputs}: must be a JSON object of workflow inputs")
    if assignments or empty or none:
        inputs_doc = command_line_inputs(doc, inputs_doc, list(assignments), list(empty), list(none), task)
    name = name or default_name(workflow_target(doc, task).name)
    try:
        runs.check_name(name)
    except ValueError as exn:
        raise RunInputError(str(exn)) from None
    check_inputs(doc, inputs_doc, defaults, "inputs" if isinstance(inputs, dict) else str(inputs), task)
    # (raises on a missing local file)
    _, staged = stage_inputs(doc, inputs_doc, inputs_dir, "bucket", task, "inputs" if isinstance(inputs, dict) else str(inputs))
    # the local inputs go as inputs, not again with the WDL's folder; but never the workflow itself
    workflow = {wdl_path.resolve(), (wdl_path.parent / config.RUN_CFG).resolve(), *(p.resolve() for _, p in local_imports(doc))}
    leave_out = frozenset(s.path.resolve() for s in staged if s.path is not None) - workflow
    if bundle_into is not None:
        wdl_path = build_bundle(wdl_path, bundle_into, leave_out, check_quant, import_path)
        load_bundle(wdl_path, check_quant)  # (checked as every bundle is: its size, its members)
    if zipbundle.is_bundle(str(wdl_path)):
        return Submission(wdl_path, doc, inputs_doc, inputs_dir, name, [wdl_path], options or run_options.RunOptions(), bundle=True)
    files = bundle_files(wdl_path, leave_out)
    check_copy_keys(name, wdl_path, files)
    return Submission(wdl_path, doc, inputs_doc, inputs_dir, name, files, options or run_options.RunOptions())


def check_copy_keys(name: str, wdl_path: Path, files: list[Path]) -> None:
    """RunInputError before anything is uploaded when the run's copy of a file of the WDL's folder
    (uploaded to ``runs/<name>/``, copied by the submit step to the run's
    ``results/<run id>/source/``) would have a key S3 refuses for its length (the submit step
    would refuse the run, after the upload)."""
    from .pipeline.snapshot import SOURCE_DIR

    copies = f"{runs.run_prefix(name)}{runs.RESULTS_DIR}/{name}-00000000/{SOURCE_DIR}"  # (a run id: the name, 8 hex digits)
    for path in files:
        rel = runs.DEFAULT_WDL if path == wdl_path else path.relative_to(wdl_path.parent).as_posix()
        if (length := s3io.key_bytes(copies + rel)) > s3io.MAX_KEY_BYTES:
            raise RunInputError(
                f"{path}: the run's copy of it (runs/{name}/{runs.RESULTS_DIR}/<run id>/{SOURCE_DIR}{rel}) would be an S3 "
                f"object whose key is {length} bytes, where S3 allows {s3io.MAX_KEY_BYTES}: shorten its path or the run's name"
            )


def command_line_inputs(
    doc: WDL.Tree.Document, inputs: dict[str, Any], assignments: list[str], empty: list[str] | None = None,
    none: list[str] | None = None, task: str | None = None,
) -> dict[str, Any]:
    """``inputs`` with the command line's inputs over them, each read as ``miniwdl run`` reads it
    (``WDL.CLI.runner_input``): NAME=VALUE ``assignments`` (a value by its input's type, an array
    by repeating its name, a compound one as JSON, a local File or Directory made an absolute path
    and checked to be there, a URI left as it is), ``empty`` (``--empty NAME``: an empty array or
    string) and ``none`` (``--none NAME``: an optional input set to null, over its default); an
    input the file also gives (with or without the workflow's name in front) is the command
    line's. RunInputError saying which of them is wrong."""
    from WDL import CLI

    target = workflow_target(doc, task)
    # (the workflow's name in front, as an inputs JSON may have it: miniwdl's command line has none)
    prefix = f"{target.name}."

    def short(name: str) -> str:
        return name[len(prefix):] if name.startswith(prefix) and name[len(prefix):] in target.available_inputs else name

    # each as the user gave it, and as miniwdl takes it: (said, kind, item)
    items = [(a, "assign", short(a.split("=", 1)[0]) + a[len(a.split("=", 1)[0]):]) for a in assignments]
    items += [(f"--empty {n}", "empty", short(n)) for n in empty or []] + [(f"--none {n}", "none", short(n)) for n in none or []]

    def read(chosen: list[tuple[str, str, str]]) -> dict[str, Any]:
        by_kind = {kind: [item for _, k, item in chosen if k == kind] for kind in ("assign", "empty", "none")}
        # (miniwdl prints the workflow's inputs as help on a bad name: this says the problem instead)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            _, env, _ = CLI.runner_input(
                doc, by_kind["assign"], None, by_kind["empty"], by_kind["none"], task=task, check_required=False,
                downloadable=lambda path, directory: "://" in path,
            )
        # a File or Directory inside a struct, pair or map (JSON on the command line) stays as
        # written: relative to the current folder, as miniwdl makes a plain File's, not to the inputs file
        env = WDL.Value.rewrite_env_paths(env, lambda v: v.value if "://" in v.value else os.path.abspath(v.value))
        return WDL.values_to_json(env, namespace=target.name if isinstance(target, WDL.Tree.Workflow) else "")

    try:
        given = read(items)
    except (WDL.Error.InputError, ValueError) as exn:
        culprit = next((item for item in items if _fails(read, item)), None)
        said = str(exn)
        if isinstance(exn, ValueError) and culprit is not None and culprit[1] == "assign":
            # (int("x"), float("x"): the value is wrong)
            name, value = culprit[2].split("=", 1)
            decl = target.available_inputs.get(name)
            said = f"expected {decl.type if decl else 'a value of its type'}, got {value!r}"
        where = f"{culprit[0]}: " if culprit is not None else ""
        raise RunInputError(f"inputs on the command line: {where}{said}") from None
    merged = dict(inputs)
    for key in given:
        bare = key.split(".", 1)[1] if key.startswith(prefix) else key
        for alias in (key, bare, prefix + bare):
            merged.pop(alias, None)
    merged.update(given)
    return merged


def _fails(read: Callable[[list[tuple[str, str, str]]], Any], item: tuple[str, str, str]) -> bool:
    """Whether ``item`` alone is refused (which of several is wrong)."""
    try:
        read([item])
    except (WDL.Error.InputError, ValueError):
        return True
    return False


def check_inputs(doc: WDL.Tree.Document, inputs: dict[str, Any], defaults: dict[str, Any], where: str, task: str | None = None) -> None:
    """The inputs (over a bundle's ``defaults``) checked as the submit step checks them
    (``validate.check_inputs``: each known and of its type, given once, with or without the
    workflow's name in front, none required missing); RunInputError names every problem."""
    from .pipeline import validate

    target = workflow_target(doc, task)
    problems = validate.Problems()
    validate.check_inputs(target, zipbundle.merge_defaults(defaults, inputs, target.name), where, problems)
    if problems:
        raise RunInputError("; ".join(f"{p['where']}: {p['problem']}" for p in problems.found))


def check_bundled_cfg(folder: Path) -> None:
    """The workflow's miniwdl.cfg, if it has one (uploaded with it; the driver reads it)."""
    bundled_cfg = folder / config.RUN_CFG
    if bundled_cfg.is_file():
        try:
            config.check_cfg_file(str(bundled_cfg), run=True)
        except config.InvalidConfig as exn:
            raise RunInputError(str(exn)) from None


def scratch_folder() -> str:
    """A folder for a bundle built before submitting (``prepare(zip_into=...)``), removed when
    the process ends."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="miniwdl-fargate-zip-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def build_bundle(
    wdl_path: Path, folder: Path, leave_out: frozenset[Path] = frozenset(), check_quant: bool = True,
    import_path: Sequence[str] = (),
) -> Path:
    """``miniwdl zip WORKFLOW.wdl``: the WDL and every WDL it imports (from anywhere: imports
    outside its folder are stored under ``__outside_wdl/`` and rewritten to match), into
    ``folder``; and the other files of the WDL's folder, as a folder submitted as it is takes them
    (``bundle_files``, but ``leave_out``: the files its tasks read by relative path, its
    ``miniwdl.cfg``), beside the main WDL, where the run reads them (the submit step unpacks a
    bundle into a folder). Those are added here, by their paths, not by miniwdl's
    ``additional_files``, which takes a name as a glob (``data[1].txt``), a link leading out of the
    folder as an error, and a name the archive holds already as an error."""
    import logging

    import WDL.Zip

    doc = load_wdl(wdl_path, check_quant, import_path)
    archive = folder / (wdl_path.stem + zipbundle.SUFFIX)
    others = [f for f in bundle_files(wdl_path, leave_out) if f.resolve() != archive.resolve()]
    try:
        WDL.Zip.build(doc, str(archive), logging.getLogger("miniwdl-fargate.zip"))
        with zipfile.ZipFile(archive, "a") as bundle:
            main = json.loads(bundle.read(zipbundle.MANIFEST))["mainWorkflowURL"]
            held = set(bundle.namelist())  # (the WDL miniwdl put there, its manifest)
            for path in others:
                name = posixpath.join(posixpath.dirname(main), path.relative_to(wdl_path.parent).as_posix())
                if name not in held:
                    bundle.write(path, name)
                    held.add(name)
    except (OSError, WDL.Error.InputError) as exn:
        raise RunInputError(f"{wdl_path}: could not build a bundle of it: {exn}") from None
    return archive


#: the metadata key (``x-amz-meta-miniwdl-fargate-submitted``) on each file ``submit`` uploads
#: into a run name's folder: a later submit under that name removes those it does not upload again
#: (they are not its workflow's), and only those
SUBMITTED = "miniwdl-fargate-submitted"


def submitted(s3: Any, bucket: str, key: str) -> bool:
    """Whether an earlier ``submit`` uploaded the object (``SUBMITTED``); False if it is gone."""
    try:
        return SUBMITTED in s3.head_object(Bucket=bucket, Key=key).get("Metadata", {})
    except botocore.exceptions.ClientError as exn:
        if s3io.not_found(exn):
            return False
        raise


def load_bundle(zip_path: Path, check_quant: bool = True) -> tuple[WDL.Tree.Document, dict[str, Any]]:
    """A `miniwdl zip` bundle checked as the submit step checks it (``zipbundle``): its main WDL,
    loaded from a temporary unpacked copy (problems name the bundle, not the copy), and its
    default inputs."""
    import tempfile

    if problem := zipbundle.size_problem(zip_path.stat().st_size, str(zip_path)):
        raise RunInputError(problem)
    with tempfile.TemporaryDirectory(prefix="miniwdl-fargate-bundle-") as folder:
        try:
            with zipbundle.opened(zip_path, str(zip_path)) as bundle:
                main = Path(bundle.extract_to(folder))
                defaults = bundle.defaults
            doc = load_wdl(main, check_quant)
            # (the whole bundle is the run's copy the driver downloads: a main WDL in a subfolder,
            # as Amazon Genomics CLI's bundles have it, imports its siblings)
            check_imports(doc, Path(folder))
            check_bundled_cfg(main.parent)
        except zipbundle.BundleError as exn:
            raise RunInputError(str(exn)) from None
        except RunInputError as exn:
            raise RunInputError(str(exn).replace(folder, str(zip_path))) from None
    return doc, defaults


def read_inputs(path: Path) -> dict[str, Any]:
    """The inputs file as the pipeline reads an inputs.json (``inputs_json``): its size checked
    before it is read, a byte order mark stripped, duplicate keys and NaN refused."""
    try:
        problem = inputs_json.size_problem(path.stat().st_size)
        if problem:
            raise RunInputError(f"{path}: {problem}")
        if path.suffix.lower() in inputs_json.YAML_SUFFIXES:  # (as `miniwdl run -i` reads one)
            return inputs_json.load_yaml_object(path.read_bytes(), str(path))
        return inputs_json.load_object(path.read_bytes(), str(path))
    except IsADirectoryError:
        raise RunInputError(f"{path}: a folder, not an inputs file") from None
    except OSError as exn:
        raise RunInputError(f"{path}: {exn.strerror}") from None
    except inputs_json.InputsJSONError as exn:
        raise RunInputError(str(exn)) from None


def submit(bucket: str, wdl: str | os.PathLike, inputs: str | os.PathLike | dict[str, Any], name: str | None = None) -> tuple[str, str]:
    """Check, upload and submit as a user would; return (run name, expected run id)."""
    return prepare(wdl, inputs, name).upload(bucket, interval=0.05)


def wait(
    bucket: str, state_machine_arn: str, name: str, run_id: str, timeout: float = 3600, on_status=None,
    inputs_version: str | None = None, interval: float = 0.25, check: Callable[[], None] | None = None,
    pause: Callable[[float], None] | None = None,
) -> RunResult:
    """Follow the run's execution to its end, looking every ``interval`` seconds (``pause``
    waits between two looks: ``time.sleep`` unless given, as a local stack's change watch is,
    ``local.changes``); return its outcome document. A rejection of the submission
    (runs/<name>/error.json) counts if it answers ``inputs_version`` (any, if None). ``check`` is
    called before each look: it raises to stop following (``local run`` told to stop)."""
    sfn = aws.client("stepfunctions")
    arn = runs.execution_arn(state_machine_arn, run_id)
    results = runs.results_uri(bucket, name, run_id)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if check is not None:
            check()
        try:
            status = sfn.describe_execution(executionArn=arn)["status"]
        except sfn.exceptions.ExecutionDoesNotExist:
            status = "SUBMITTING"
            rejected = rejection(bucket, name, inputs_version)
            if rejected is not None:
                return RunResult(run_id, "FAILED", f"s3://{bucket}/{runs.run_prefix(name)}", rejected)
        if status != last and on_status:
            on_status(status)
        last = status
        if status not in ("SUBMITTING", "RUNNING"):
            key = runs.run_results_prefix(run_id)
            doc = s3io.find_json(bucket, key + ("outputs.json" if status == "SUCCEEDED" else "error.json"))
            if doc is None:
                doc = {"status": status, "message": f"execution ended {status} without a result document"}
            return RunResult(run_id, "SUCCEEDED" if status == "SUCCEEDED" else "FAILED", results, doc)
        (pause or time.sleep)(interval)
    raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f}s")


def rejection(bucket: str, name: str, inputs_version: str | None = None) -> dict[str, Any] | None:
    """The submit step's rejection of run ``name`` (runs/<name>/error.json), if it answers the
    upload ``inputs_version`` (any upload, if None)."""
    found = s3io.find_json(bucket, runs.refusal_key(name))
    return found if found is not None and inputs_version in (None, found.get("inputs_version")) else None

