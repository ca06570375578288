"""miniwdl's call cache with its entries in S3: the ``aws_s3`` cache backend
(``[call_cache] backend = aws_s3``, entry point group ``miniwdl.plugin.cache_backend``).

An entry is ``<call_cache_uri>call/<task>/<WDL digest>/<digest of the key's parts>.json``
(``keys``): the key's parts, the outputs, and the run and call that made them. A call's output
files go to ``<call_cache_uri>files/<sha256>`` (a Directory: each of its files, and its listing in
the entry) *before* its entry is written, so every entry's files are in S3: an entry outlives the
run directory it came from (the driver removes run directories once their outputs are in S3), and
the same content is stored once whichever runs made it. The run's own results are not used for
this: they hold only the workflow's outputs, not what one call handed the next.

A hit brings the entry's files onto EFS, into the content-addressed stores beside the staged
inputs (``<cache>/files/<sha256>/<name>``, ``<cache>/dirs/<tree>/<name>/...``; a file already
there is not fetched again), eagerly, when the hit is taken: miniwdl hands a hit's outputs on as
local paths at once (to its out/ links and to the calls waiting on them), so they must exist then.
The paths name the content, so a later call keyed on them matches the call that produced them
first, whichever run that was.

miniwdl's ``[call_cache] get`` / ``put`` decide, as for its own backend (the driver maps a run's
``call_cache`` option onto them). Every call this process looks up is recorded (``CALLS``): the
driver writes the run's part as ``call_cache.json`` beside the report, for ``explain``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any

import botocore.exceptions
import WDL
from WDL.runtime import config as wdl_config
from WDL.runtime.cache import CallCache, CallCacheAddPaths

from .. import attempts, aws, config, efs_cleanup, s3io
from . import keys

#: a placeholder, in an entry's outputs, for a File / a Directory stored with it
FILE_REF, DIR_REF = "cache-file:", "cache-dir:"
#: a stored File output that was executable (a script a later call runs: ``~{tool}``); stored
#: and identified as any File of its content, fetched with its execute bits
EXEC_FILE_REF = "cache-file+x:"
#: in a stored Directory's listing (entry ``dirs``), beside [path, sha256]: the file was
#: executable; and [path + "/", ""]: an empty folder (a ``logs/`` the task made and left empty)
EXECUTABLE = "x"



def start_run() -> None:
    """Before a run: what this process knew of s3:// objects' identities is forgotten (a run asks
    again: an object may have been replaced since the last run of this process)."""
    with _IDENTITIES_LOCK:
        for identities in _IDENTITIES.values():
            identities.forget_remote()


class CallRecords:
    """The calls this process looked up in the cache, by call directory (its path on EFS): the
    key's parts and what became of the call (reused from an entry, or ran)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, dict[str, Any]] = {}

    def note(self, call_dir: str, **facts: Any) -> None:
        if not call_dir:
            return
        with self._lock:
            self._calls.setdefault(os.path.realpath(call_dir), {}).update(facts)

    def under(self, run_dir: str) -> list[dict[str, Any]]:
        """The calls of the run whose miniwdl run directory is ``run_dir``, each with ``call``:
        its directory relative to ``run_dir`` ("." for the workflow as a whole)."""
        root = os.path.realpath(run_dir)
        with self._lock:
            found = [
                {"call": os.path.relpath(path, root), **facts}
                for path, facts in self._calls.items()
                if path == root or path.startswith(root + os.sep)
            ]
        return sorted(found, key=lambda c: c["call"])


#: the calls of this process's runs (the driver reads its run's)
CALLS = CallRecords()

_IDENTITIES: dict[str, keys.Identities] = {}
_IDENTITIES_LOCK = threading.Lock()


def identities_for(cache_dir: str) -> keys.Identities:
    """One ``keys.Identities`` per cache folder in this process (its digests remembered)."""
    with _IDENTITIES_LOCK:
        return _IDENTITIES.setdefault(cache_dir, keys.Identities(cache_dir))


def caller_call() -> tuple[str, WDL.Tree.Task | None]:
    """The directory of the call miniwdl is looking up or storing, and its task (None for a
    workflow): ``run_dir`` and ``task``, locals of the function calling the cache
    (``WDL.runtime.task.run_local_task``, or ``WDL.runtime.workflow.run_local_workflow``).
    miniwdl passes the cache only the key; ``tests/integration/test_s3_call_cache.py`` (the
    calls' directories in call_cache.json) fails if miniwdl's callers stop having them."""
    frame = sys._getframe(2)  # (1: get/put; 2: miniwdl's caller)
    for _ in range(3):
        if frame is None:
            break
        found = frame.f_locals.get("run_dir")
        if isinstance(found, str):
            task = frame.f_locals.get("task")
            return found, task if isinstance(task, WDL.Tree.Task) else None
        frame = frame.f_back
    return "", None


def written_file(key: str) -> bool:
    """Whether miniwdl asks about a file a workflow wrote (``write_lines`` and the other
    ``write_*`` at the workflow level: ``WDL.runtime._stdlib``'s ``_virtualize_filename`` keys it
    ``write_/<digest of its content>``), not a call. miniwdl looks for an earlier copy so that a
    call taking the file has the same input path in its key as before; here a call's key names a
    file by its content, so the file needs no entry of its own: it is a miss, and nothing is kept."""
    return key.startswith("write_/")


class KnownEntries:
    """Which call cache entries are in S3, by folder of entries (a task's, at one WDL digest:
    ``call/<task>/<WDL digest>/``), so that the calls of a scatter miss without a GetObject each.
    A folder's first lookup in the run is a GET, as any lookup was (a task called once costs no
    more: a listing is priced as about 12 GETs, https://aws.amazon.com/s3/pricing/); its second
    lists the folder, and from then on a call whose entry is not in the listing misses without a
    request of its own: a scatter's thousand calls of one task make one GET and one ListObjectsV2
    a minute while they are looked up, not a thousand GETs. ListObjectsV2 is strongly consistent
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel): the
    listing has every entry written before it. It answers for ``MAX_AGE_SECONDS``, then the
    folder is listed again at its next lookup: an entry another driver wrote meanwhile (a run of
    the same workflow beside this one) is seen within that time; the run's own entries count from
    their writing. A folder of more than ``MAX_PAGES`` pages of entries, or one the role may not
    list (a ``call_cache_uri`` where it lacks s3:ListBucket), has each call looked up by its own
    GET for the rest of the run (a listing that failed otherwise is tried again a minute later).
    One per ``S3CallCache``: miniwdl makes one for a run and hands it to each of the run's calls
    and sub-workflows (``WDL.runtime.workflow.run_local_workflow``'s ``_cache``)."""

    #: pages listed of one folder at most, and entries a page (S3's most)
    MAX_PAGES, PAGE_SIZE = 10, 1000
    #: how long a folder's listing answers its lookups
    MAX_AGE_SECONDS = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: folder -> its listing: when it was made, the keys (None: not listed), and whether it
        #: stands for the rest of the run (a folder too big, or one the role may not list)
        self._listed: dict[tuple[str, str], tuple[float, set[str] | None, bool]] = {}
        self._listing: dict[tuple[str, str], threading.Lock] = {}  # folder -> held while listed
        self._asked: set[tuple[str, str]] = set()  # folders looked up in before
        self._written: dict[tuple[str, str], set[str]] = {}  # folder -> keys the run wrote

    @staticmethod
    def folder(key: str) -> str:
        return key.rpartition("/")[0] + "/"

    def absent(self, bucket: str, key: str, logger: logging.Logger) -> bool:
        """Whether the folder's listing shows no entry at ``key`` (False: look it up)."""
        folder = (bucket, self.folder(key))
        with self._lock:
            if key in self._written.get(folder, ()):
                return False
            if folder not in self._asked:  # (its first lookup: a GET)
                self._asked.add(folder)
                return False
            listing = self._listing.setdefault(folder, threading.Lock())
        with listing:  # (a scatter's calls ask at once: one lists, the others wait for it)
            with self._lock:
                listed = self._listed.get(folder)
            if listed is None or (not listed[2] and time.monotonic() - listed[0] > self.MAX_AGE_SECONDS):
                started = time.monotonic()
                listed = (started, *self._list(bucket, folder[1], logger))
                with self._lock:
                    self._listed[folder] = listed
        keys_there = listed[1]
        with self._lock:
            return keys_there is not None and key not in keys_there and key not in self._written.get(folder, ())

    def written(self, bucket: str, key: str) -> None:
        """The run wrote (or found) an entry at ``key``."""
        with self._lock:
            self._written.setdefault((bucket, self.folder(key)), set()).add(key)

    def _list(self, bucket: str, prefix: str, logger: logging.Logger) -> tuple[set[str] | None, bool]:
        """The keys under ``prefix`` (None: not listed), and whether that stands for the run."""
        found: set[str] = set()
        where = s3io.uri(bucket, prefix)
        try:
            pages = aws.client("s3").get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": self.PAGE_SIZE}
            )
            for number, page in enumerate(pages, 1):
                found.update(item["Key"] for item in page.get("Contents", []))
                if number >= self.MAX_PAGES and page.get("IsTruncated"):
                    logger.info("call cache: more than %d entries under %s: each call looked up by itself", len(found), where)
                    return None, True
        except botocore.exceptions.ClientError as exn:
            denied = aws.error_code(exn) == "AccessDenied"
            logger.info("call cache: %s not listed, each call looked up by itself: %s", where, exn)
            return None, denied
        except botocore.exceptions.BotoCoreError as exn:
            logger.info("call cache: %s not listed, each call looked up by itself: %s", where, exn)
            return None, False
        return found, False


class S3CallCache(CallCache):
    """miniwdl's ``CallCache`` with its call entries in S3 (see the module's docstring); its
    download cache is miniwdl's own."""

    def __init__(self, cfg: wdl_config.Loader, logger: logging.Logger):
        super().__init__(cfg, logger)
        where = str(config.option(cfg, "call_cache_uri"))
        self._bucket, prefix = s3io.split(where) if where else ("", "")
        self._prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._cache_dir = os.path.dirname(self._call_cache_dir.rstrip("/"))
        self._identities = identities_for(self._cache_dir)
        self._run_id = config.run_id(cfg)
        self._known = KnownEntries()  # (which entries are in S3: a folder listed at its second lookup)
        runtime = cfg["task_runtime"]
        self._defaults = keys.result_defaults(
            runtime.get_dict("defaults"), runtime.get_dict("env") if cfg.has_option("task_runtime", "env") else None,
            runtime.get("command_preamble") if cfg.has_option("task_runtime", "command_preamble") else "",
            runtime.get("command_shell") if cfg.has_option("task_runtime", "command_shell") else "/bin/bash",
        )
        self._parts: dict[str, dict[str, Any]] = {}  # miniwdl's key -> the key's parts
        self._unusable: set[str] = set()  # entries whose files could not be fetched
        # id(task) -> (the task, its result_digest): made once per task, not once per call (each
        # of a scatter's calls would read the task's source again; the task is held, so its id
        # is not reused while the cache lives), under a lock (a scatter's calls ask at once)
        self._digests: dict[int, tuple[WDL.Tree.Task, str]] = {}
        self._digests_lock = threading.Lock()

    # -- miniwdl's interface ---------------------------------------------------------------------

    def get(
        self, key: str, inputs: WDL.Env.Bindings[WDL.Value.Base], output_types: WDL.Env.Bindings[WDL.Type.Base]
    ) -> WDL.Env.Bindings[WDL.Value.Base] | None:
        reading, writing = self._cfg["call_cache"].get_bool("get"), self._cfg["call_cache"].get_bool("put")
        if not self._bucket or not (reading or writing):
            return super().get(key, inputs, output_types)
        if self.relative_outputs():
            return None
        if written_file(key):
            return None
        call_dir, task = caller_call()
        if task is None:
            # a workflow or sub-workflow: none is kept (``keys.KEY_VERSION`` 3). Its key could not
            # name the objects its calls read by URIs computed as it runs (a manifest's lines), so
            # a hit gave the old objects' results; its calls are each looked up, by what they read
            return None
        try:
            parts = self.parts(key, inputs, task)
        except OSError as exn:  # (an input file that cannot be read: the call will say so)
            self._logger.warning("call cache: %s not looked up: %s", key, exn)
            return None
        name = keys.entry_name(parts)
        CALLS.note(
            call_dir, task=parts["task"], entry=name, parts=parts, read=reading, outcome="ran",
            looked_up=datetime.now(timezone.utc).isoformat(timespec="seconds"),  # (as an entry's "written")
        )
        if not reading:
            return None
        entry = None if self._known.absent(self._bucket, self.entry_key(name), self._logger) else self.read_entry(name)
        if entry is None or entry.get("parts") != parts:
            self._logger.info("call cache miss: %s", self.entry_uri(name))
            return None
        try:
            outputs = self.materialize(entry, output_types)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError, ValueError, KeyError) as exn:
            self._logger.warning("call cache entry %s unusable, the call runs: %s", self.entry_uri(name), exn)
            self._unusable.add(name)
            CALLS.note(call_dir, unusable={"run": entry.get("run", ""), "call": entry.get("call", ""), "problem": str(exn)[:500]})
            return None
        self._logger.notice("call cache hit: %s (run %s, %s)", self.entry_uri(name), entry.get("run"), entry.get("call"))  # type: ignore[attr-defined]
        CALLS.note(call_dir, outcome="reused", source={"run": entry.get("run", ""), "call": entry.get("call", "")})
        self._entry_add_paths[key] = CallCacheAddPaths()
        return outputs

    def put(
        self,
        key: str,
        outputs: WDL.Env.Bindings[WDL.Value.Base],
        run_dir: str | None = None,
        *,
        inputs: WDL.Env.Bindings[WDL.Value.Base],
        add_paths: CallCacheAddPaths,
    ) -> None:
        if not self._bucket:
            return super().put(key, outputs, run_dir, inputs=inputs, add_paths=add_paths)
        if written_file(key):
            return
        self._entry_add_paths[key] = add_paths.copy()
        if not self._cfg["call_cache"].get_bool("put") or self.relative_outputs():
            return
        found_dir, task = caller_call()
        if task is None:
            return  # (a workflow's: see ``get``)
        call_dir = run_dir or found_dir
        image = self.image_of(call_dir)
        CALLS.note(call_dir, **image)
        if add_paths.add_paths or add_paths.absent_paths:
            # (WDL 1.2 source-relative files: miniwdl checks them by path and mtime, which a
            # later run's own copy of the bundle never matches)
            self._logger.info("call cache: %s reads files beside its WDL, not kept", key)
            return
        try:
            self.keep(key, outputs, inputs, call_dir, image, task)
        except keys.NotRegular as exn:  # (the driver refuses to upload such an output too)
            self._logger.warning("call cache: %s not kept: %s", key, exn)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as exn:
            # the call succeeded: a cache that cannot keep it fails nothing
            self._logger.warning("call cache: %s not kept, S3 or EFS failed: %s", key, exn)

    def keep(
        self, key: str, outputs: WDL.Env.Bindings[WDL.Value.Base], inputs: WDL.Env.Bindings[WDL.Value.Base],
        call_dir: str, image: dict[str, str], task: WDL.Tree.Task | None = None,
    ) -> None:
        """The call's output files into S3, then its entry."""
        parts = self._parts.get(key) or self.parts(key, inputs, task)
        if keys.UNREADABLE in json.dumps(parts):
            # (an object its key names could not be looked up: an entry keyed on that would match
            # whatever the object is the next time it cannot be)
            self._logger.info("call cache: %s not kept: an input object could not be looked up", key)
            return
        name = keys.entry_name(parts)
        dirs: dict[str, list[list[str]]] = {}
        stored = WDL.Value.rewrite_env_paths(outputs, lambda v: self.store(v, dirs))
        entry = {
            "parts": parts,
            "outputs": WDL.values_to_json(stored),
            "dirs": dirs,
            "run": self._run_id,
            # (its directory under the run's: a sub-workflow's call-inner/call-x, as the run reports it)
            "call": attempts.call_path_of(call_dir, os.path.basename(call_dir.rstrip("/"))) if call_dir else "",
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **image,
        }
        self.write_entry(name, entry)
        CALLS.note(call_dir, kept=True)

    def relative_outputs(self) -> bool:
        """``[file_io] use_relative_output_paths``: miniwdl lays a run's out/ by each output's
        path in its call's work directory, which a hit's files (fetched to ``files/<sha256>/<name>``)
        do not keep: two outputs of one name collided ("Output filename collision"), so the
        call cache neither reuses nor keeps calls of such a run."""
        try:
            return self._cfg["file_io"].get_bool("use_relative_output_paths")
        except Exception:  # noqa: BLE001 (an older miniwdl without the option)
            return False

    # -- the parts ---------------------------------------------------------------------------------

    def parts(
        self, key: str, inputs: WDL.Env.Bindings[WDL.Value.Base], task: WDL.Tree.Task | None = None
    ) -> dict[str, Any]:
        """The key's parts of the call miniwdl keys ``key`` (remembered for its ``put``)."""
        digest = self.task_digest(task) if task is not None else ""
        found = keys.key_parts(key, keys.input_identities(inputs, self._identities), self._defaults, digest)
        self._parts[key] = found
        return found

    def task_digest(self, task: WDL.Tree.Task) -> str:
        """``keys.result_digest`` of the task, made once per task."""
        with self._digests_lock:
            known = self._digests.get(id(task))
            if known is None or known[0] is not task:
                known = self._digests[id(task)] = (task, keys.result_digest(task))
            return known[1]

    def entry_key(self, name: str) -> str:
        return f"{self._prefix}call/{name}.json"

    def entry_uri(self, name: str) -> str:
        return s3io.uri(self._bucket, self.entry_key(name))

    def write_entry(self, name: str, entry: dict[str, Any]) -> None:
        """Write the entry unless one of the same key is there (it names the run that first made
        these results, and a hit gives the same either way); one this run found unusable (its
        files gone) is replaced. ``IfNoneMatch: *`` makes "unless there" one request, and of two
        drivers writing the same key at once exactly one succeeds
        (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html)."""
        body = (json.dumps(entry, indent=2, sort_keys=True) + "\n").encode()
        if name in self._unusable:
            s3io.put_json(self._bucket, self.entry_key(name), entry)
        elif not s3io.put_if_absent(self._bucket, self.entry_key(name), body, "application/json"):
            self._known.written(self._bucket, self.entry_key(name))
            self._logger.info("call cache entry already there: %s", self.entry_uri(name))
            return
        self._known.written(self._bucket, self.entry_key(name))
        self._logger.info("call cache insert: %s", self.entry_uri(name))

    def read_entry(self, name: str) -> dict[str, Any] | None:
        try:
            found = s3io.find_json(self._bucket, self.entry_key(name))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, ValueError) as exn:
            self._logger.warning("call cache entry %s unreadable: %s", self.entry_uri(name), exn)
            return None
        return found if isinstance(found, dict) else None

    def image_of(self, call_dir: str) -> dict[str, str]:
        """The image the call's last attempt ran (as asked, and by digest where ECS said), from
        the attempts log; none for a call without attempts (a workflow)."""
        last = attempts.LOG.latest(call_dir) if call_dir else None
        if last is None:
            return {}
        return {k: v for k, v in (("image", last.image), ("image_digest", last.image_digest)) if v}

    # -- files into S3, and back -------------------------------------------------------------------

    def store(self, value: WDL.Value.File | WDL.Value.Directory, dirs: dict[str, list[list[str]]]) -> str:
        """Upload one output (a File, or a Directory's files) under ``files/<sha256>`` unless
        there already; its placeholder in the entry."""
        real = os.path.realpath(value.value.rstrip("/"))
        base = os.path.basename(value.value.rstrip("/"))
        if isinstance(value, WDL.Value.Directory):
            listing = self._identities.listing(real)
            for rel, digest in listing:
                self.upload_blob(os.path.join(real, rel), digest)
            tree = keys.tree_digest(listing)  # (its identity: its files' paths and contents, as any Directory's)
            # (by tree and name: two outputs of one call with the same files, one of them with an
            # empty folder more, are each kept as they are)
            dirs[f"{tree}/{base}"] = stored_listing(real, listing)
            return f"{DIR_REF}{tree}/{base}"
        digest = self._identities.file_digest(real)
        self.upload_blob(real, digest)
        ref = EXEC_FILE_REF if os.stat(real).st_mode & 0o111 else FILE_REF
        return f"{ref}{digest[len(keys.SHA_PREFIX):]}/{base}"

    def blob_key(self, digest: str) -> str:
        return f"{self._prefix}files/{digest[len(keys.SHA_PREFIX):]}"

    def upload_blob(self, path: str, digest: str) -> None:
        """Upload the file as ``files/<sha256>`` unless an object is there (same name, same
        content). A missing object answers HeadObject 404 only with s3:ListBucket on the bucket,
        which the driver's role has (403 otherwise:
        https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html)."""
        s3 = aws.client("s3")
        try:
            s3.head_object(Bucket=self._bucket, Key=self.blob_key(digest))
            return
        except botocore.exceptions.ClientError as exn:
            if not s3io.not_found(exn):
                raise
        s3io.upload_file(path, self._bucket, self.blob_key(digest))

    def materialize(
        self, entry: dict[str, Any], output_types: WDL.Env.Bindings[WDL.Type.Base]
    ) -> WDL.Env.Bindings[WDL.Value.Base]:
        """The entry's outputs with each stored file on EFS (fetched now where not there yet)."""
        outputs = WDL.values_from_json(entry["outputs"], output_types)
        listings = entry.get("dirs") or {}
        return WDL.Value.rewrite_env_paths(outputs, lambda v: self.fetch(v.value, listings))

    def fetch(self, ref: str, listings: dict[str, list[list[str]]]) -> str:
        """The local path of a stored File or Directory (``FILE_REF`` / ``DIR_REF``)."""
        for prefix, executable in ((FILE_REF, False), (EXEC_FILE_REF, True)):
            if ref.startswith(prefix):
                sha, base = _stored_name(ref[len(prefix):])
                entry = os.path.join(self._cache_dir, "files", sha)
                marked = efs_cleanup.mark_used(entry)  # (kept while runs use it)
                path = self.fetch_blob(keys.SHA_PREFIX + sha, os.path.join(entry, base), executable)
                if not marked:  # (fetched into a new entry)
                    efs_cleanup.mark_used(entry)
                return path
        if ref.startswith(DIR_REF):
            tree, base = _stored_name(ref[len(DIR_REF):])
            entry = os.path.join(self._cache_dir, "dirs", tree)
            target = os.path.join(entry, base)
            marked = efs_cleanup.mark_used(entry)
            os.makedirs(target, exist_ok=True)  # (an empty Directory output is there too)
            for rel, digest, *flags in listings[f"{tree}/{base}"]:
                if os.path.isabs(rel) or ".." in rel.split("/"):
                    raise ValueError(f"a stored directory's file is outside it: {rel}")
                if rel.endswith("/"):
                    os.makedirs(os.path.join(target, rel), exist_ok=True)
                else:
                    self.fetch_blob(digest, os.path.join(target, rel), EXECUTABLE in flags)
            if not marked:  # (fetched into a new entry)
                efs_cleanup.mark_used(entry)
            return target
        raise ValueError(f"not a stored output: {ref}")

    def fetch_blob(self, digest: str, path: str, executable: bool = False) -> str:
        """The stored file of content ``digest`` at ``path`` (downloaded unless already there;
        the download lands in a temporary file renamed into place: never half a file), read-only
        (shared by every run that reuses it, hard-linked into tasks), executable if it was."""
        mode = 0o555 if executable else 0o444
        if not os.path.isfile(path):
            s3io.download_to(self._bucket, self.blob_key(digest), path)
            os.chmod(path, mode)
        elif executable and not os.stat(path).st_mode & 0o100:
            os.chmod(path, mode)  # (fetched before by an entry of the same content that was not)
        return path


def stored_listing(real: str, listing: list[tuple[str, str]]) -> list[list[str]]:
    """A Directory output's listing as its entry keeps it: each file's [path, sha256], with
    ``EXECUTABLE`` for one that was, and [path + "/", ""] for each empty folder in it, so a
    fetched copy is the Directory the task made (miniwdl's own cache gives the task's folder)."""
    kept: list[list[str]] = []
    for rel, digest in listing:
        executable = os.stat(os.path.join(real, rel)).st_mode & 0o111
        kept.append([rel, digest, EXECUTABLE] if executable else [rel, digest])
    for root, dirs, files in os.walk(real):
        if not dirs and not files and root != real:
            kept.append([os.path.relpath(root, real) + "/", ""])
    return kept


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _stored_name(text: str) -> tuple[str, str]:
    """``<sha256 or tree digest>/<name>`` of a stored output, checked: a digest, and a plain name
    (nothing that could lead outside the store)."""
    digest, _, base = text.partition("/")
    if not _HEX64.match(digest) or not base or "/" in base or base in (".", ".."):
        raise ValueError(f"not a stored output's name: {text!r}")
    return digest, base
