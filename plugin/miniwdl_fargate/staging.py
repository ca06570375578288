"""The store of staged s3:// inputs: the driver downloads each s3:// File/Directory input of a
run into a store on EFS addressed by the object's ETag, and runs miniwdl on those paths.

Why: miniwdl keys a call cache entry by the call's inputs as values: an s3:// URI by its text, a
local file by its path (and trusts an entry while the local files it names are older than it).
Left to download s3:// inputs into each run's own directory, every run would see new paths (no
reuse for any task reading them), while a rerun of the whole workflow would be keyed by URI text
alone and hit even after the object was overwritten. Staged here, the same data is the same path
in every run, changed data a new one. (miniwdl's own download cache is keyed by URI only, so it
stays off.) No flock is needed: staging is temp-file-and-rename, and miniwdl's call cache takes
flocks only on the run's own log file.

Layout: a File at ``<store>/<bucket>/<key>/<etag>/<name>``, a Directory at
``<store>/<bucket>/<prefix>/<digest of its keys and ETags>/<name>``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Callable

import WDL

from . import aws, efs_cleanup, inputs_json, s3io, wdl_target
from .lifecycle import DriverStopped

log = logging.getLogger("miniwdl-fargate.driver")

STAGING_THREADS = 8
#: the user metadata of an object ``submit`` staged from an executable local file, and its value
#: (``upload.EXECUTABLE_SUFFIX``): staged with its execute bits, as miniwdl gives a local input
MODE_METADATA, EXECUTABLE_MODE = "mode", "0755"


def stage_s3_inputs(
    wdl_path: str, inputs_path: str, store: str, progress: s3io.Progress | None = None, counted: s3io.Counted | None = None,
    task: str | None = None, check_quant: bool = True, load: Callable[[], WDL.Tree.Document] | None = None,
) -> str:
    """Download the s3:// File/Directory inputs into ``store`` (``<bucket>/<key>/<etag>/<name>``,
    reused when already there) and return the path of an inputs JSON naming those copies.
    Anything this cannot read (a WDL or inputs miniwdl will reject, an object it cannot see) is
    left as it was, for miniwdl to report in its own words. Every object moves through one
    s3io.Transfers (bounded, parallel); ``progress`` is called as the bytes come (it raises
    DriverStopped to stop the staging), ``counted`` with the objects done and known. ``task``: the
    run's option (what it runs, ``wdl_target``). ``load``: the workflow's document (the driver's,
    loaded once), else it is loaded from ``wdl_path``."""
    try:
        doc = load() if load is not None else WDL.load(wdl_path, check_quant=check_quant)
        target: Any = wdl_target.find(doc, task)
        with open(inputs_path) as infile:
            given = json.load(infile)
        env = WDL.values_from_json(given, target.available_inputs, namespace=target.name)
    except Exception as exn:
        log.info("inputs not staged (%s: %s); miniwdl will read them as given", exn.__class__.__name__, exn)
        return inputs_path
    env = with_s3_defaults(target, env)
    uris: dict[str, bool] = {}  # uri -> is a Directory

    def collect(value: WDL.Value.File | WDL.Value.Directory) -> str:
        if value.value.startswith("s3://"):
            uris[value.value] = isinstance(value, WDL.Value.Directory)
        return value.value

    WDL.Value.rewrite_env_paths(env, collect)
    if not uris:
        return inputs_path
    started = time.monotonic()
    with s3io.Transfers(progress, counted) as transfers, concurrent.futures.ThreadPoolExecutor(STAGING_THREADS) as pool:
        staged = dict(zip(uris, pool.map(lambda u: _stage(u, uris[u], store, transfers), uris), strict=True))
    env = WDL.Value.rewrite_env_paths(env, lambda v: staged.get(v.value) or v.value)
    reused = sum(1 for path in staged.values() if path and getattr(path, "reused", False))
    log.info("staged %d s3:// input(s) in %.1fs (%d already in %s)", len(uris), time.monotonic() - started, reused, store)
    path = os.path.join(os.path.dirname(inputs_path), "inputs.staged.json")
    inputs_json.write_json(path, WDL.values_to_json(env, namespace=target.name))
    return path


def with_s3_defaults(target: Any, env: WDL.Env.Bindings) -> WDL.Env.Bindings:
    """``env`` with each File or Directory input not given whose default is an ``s3://`` string
    literal, bound to it: staged as a given one is (the inputs staged name it, so the run's
    call-cache keys, a workflow's too, have its ETag; miniwdl would download it itself, keyed by
    its URI alone). The inputs miniwdl itself downloads so (``_add_downloadable_defaults``)."""
    for binding in target.available_inputs:
        decl = binding.value
        literal = decl.expr.literal if isinstance(decl.expr, WDL.Expr.String) else None
        if (
            isinstance(decl.type, (WDL.Type.File, WDL.Type.Directory)) and binding.name not in env
            and literal is not None and str(literal.value).startswith("s3://")
        ):
            value_type = WDL.Value.Directory if isinstance(decl.type, WDL.Type.Directory) else WDL.Value.File
            env = env.bind(binding.name, value_type(str(literal.value), decl.expr))
    return env


class _Staged(str):
    """A staged path that remembers whether it was already in the store."""

    reused = False


def _in_store(store: str, *parts: str) -> _Staged:
    """``store/parts...``, refusing keys that would climb out of it (S3 keys may hold "..")."""
    path = os.path.normpath(os.path.join(store, *parts))
    if not path.startswith(os.path.normpath(store) + os.sep):
        raise s3io.S3URIError(f"refusing to stage outside {store}: {'/'.join(parts)}")
    return _Staged(path)


class InputUnreadable(Exception):
    """An s3:// input the driver may not read: the run cannot go on, and no later download
    would do better (a task has no more rights than its driver)."""


def unreadable(uri: str, exn: Exception) -> InputUnreadable | None:
    """InputUnreadable saying what to change, if ``exn`` is S3 refusing the driver ``uri``: an
    object encrypted with a KMS key the stack may not use (S3 answers AccessDenied naming
    kms:Decrypt, while HeadObject, all the submit step asks, needs no key:
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html), or a bucket
    the stack may not read."""
    error = (getattr(exn, "response", None) or {}).get("Error", {})
    if error.get("Code") not in ("AccessDenied", "403", "Forbidden", "KMS.AccessDeniedException"):
        return None
    said = str(error.get("Message") or exn)
    if "kms" in said.lower():
        fix = "it is encrypted with a KMS key the stack may not use: add the key's ARN to the stack's ReadableKmsKeyArns"
    else:
        fix = "the stack may not read it: add its bucket to the stack's ReadableS3Arns (arn:aws:s3:::BUCKET and arn:aws:s3:::BUCKET/*)"
    return InputUnreadable(f"input {uri} cannot be read: {fix} ({said})")


def _stage(uri: str, directory: bool, store: str, transfers: s3io.Transfers) -> str | None:
    try:
        if transfers.progress is not None:
            transfers.progress(0)  # (told to stop: start no other download)
        return _stage_directory(uri, store, transfers) if directory else _stage_file(uri, store, transfers)
    except DriverStopped:
        raise
    except Exception as exn:  # miniwdl's own download of the URI will report it
        if (refused := unreadable(uri, exn)) is not None:
            raise refused from None
        log.warning("cannot stage %s (%s); leaving it to miniwdl", uri, exn)
        return None


def _stage_file(uri: str, store: str, transfers: s3io.Transfers) -> str:
    bucket, key = s3io.split(uri)
    head = aws.client("s3").head_object(Bucket=bucket, Key=key)
    etag = head["ETag"].strip('"')
    path = _in_store(store, bucket, key, etag, os.path.basename(key))
    marked = efs_cleanup.mark_used(os.path.dirname(path))  # (before looking: a collection spares what is marked)
    executable = (head.get("Metadata") or {}).get(MODE_METADATA) == EXECUTABLE_MODE
    if os.path.isfile(path) and os.path.getsize(path) == head["ContentLength"]:
        path.reused = True
    else:
        transfers.download([(bucket, key, path, head["ContentLength"], head["ETag"])])  # (asked for by that ETag)
        if not marked:  # (the entry is there now)
            efs_cleanup.mark_used(os.path.dirname(path))
    if executable:
        _made_executable(path)
    return path


def _made_executable(path: str) -> None:
    """A staged copy given the execute bits its source had (``MODE_METADATA``, ``directory_modes``)."""
    mode = os.stat(path).st_mode
    if not mode & 0o100:
        os.chmod(path, mode | 0o555)


def directory_objects(bucket: str, prefix: str) -> list[dict[str, Any]]:
    """The objects of a Directory input's ``prefix`` as ListObjectsV2 gives them, its folder
    markers left out (they name it no differently: ``s3io.prefix_folders`` makes their folders)."""
    return [o for o in s3io.list_keys(bucket, prefix) if not o["Key"].endswith("/")]


def directory_listing(bucket: str, prefix: str, objects: list[dict[str, Any]] | None = None) -> list[tuple[str, str]]:
    """(key, ETag) of each object of a Directory input's ``prefix`` (``directory_objects``, or those given), sorted."""
    return sorted((o["Key"], o["ETag"].strip('"')) for o in (directory_objects(bucket, prefix) if objects is None else objects))


def listing_digest(listing: list[tuple[str, str]]) -> str:
    """What a Directory input's objects are (``directory_listing``): where it is staged, and its
    identity in the call cache's keys."""
    return hashlib.sha256("\n".join(f"{k} {e}" for k, e in listing).encode()).hexdigest()[:32]


def directory_modes(bucket: str, prefix: str) -> list[str]:
    """The paths in a Directory that ``submit`` staged from a folder (``upload.STAGED_PREFIX``)
    whose files were executable: listed beside it (``upload.MODES_SUFFIX``), as S3 keeps no
    modes; none for any other folder."""
    from .upload import EXECUTABLE_SUFFIX, MODES_SUFFIX, STAGED_PREFIX

    parts = prefix.rstrip("/").split("/")
    if not (len(parts) == 3 and prefix.startswith(STAGED_PREFIX) and parts[1].split("-")[0].endswith(EXECUTABLE_SUFFIX)):
        return []
    doc = s3io.find_json(bucket, prefix.rstrip("/") + MODES_SUFFIX)
    listed = doc.get("executable") if isinstance(doc, dict) else None
    return [rel for rel in listed if isinstance(rel, str)] if isinstance(listed, list) else []


def _stage_directory(uri: str, store: str, transfers: s3io.Transfers) -> str:
    bucket, prefix = s3io.split(uri)
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    objects = directory_objects(bucket, prefix)  # (one listing: named by it, and downloaded as listed)
    if not objects:
        raise s3io.S3URIError(f"no objects under {uri}")
    digest = listing_digest(directory_listing(bucket, prefix, objects))
    name = os.path.basename(prefix.rstrip("/")) or bucket
    path = _in_store(store, bucket, prefix.rstrip("/") or "_", digest, name)
    marked = efs_cleanup.mark_used(os.path.dirname(path))  # (before looking: a collection spares what is marked)
    if os.path.isdir(path):
        path.reused = True
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".part.", dir=os.path.dirname(path))
    try:
        for folder in s3io.prefix_folders(bucket, prefix, staging):  # (its empty folders too: folders only, listed apart)
            os.makedirs(folder, exist_ok=True)
        transfers.download(s3io.prefix_targets(bucket, prefix, staging, objects=objects))
        for rel in directory_modes(bucket, prefix):
            target = os.path.normpath(os.path.join(staging, rel))
            if target.startswith(staging + os.sep) and os.path.isfile(target) and not os.path.islink(target):
                _made_executable(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        os.rename(staging, path)
    except OSError:  # another run staged it meanwhile: same listing, same content
        shutil.rmtree(staging, ignore_errors=True)
        if not os.path.isdir(path):
            raise
    if not marked:  # (the entry is there now)
        efs_cleanup.mark_used(os.path.dirname(path))
    return path
