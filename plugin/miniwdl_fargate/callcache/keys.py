"""What makes a call's result reusable: its cache key's parts, and what differs between two.

miniwdl keys a call by its task's WDL digest and its input values, a File by its path. A path
says nothing of the data once runs live in directories of their own (and those directories are
removed once their outputs are in S3), so the parts here name each File and Directory input by
what it is:

- an ``s3://`` input staged into the store of staged inputs (``staging``:
  ``<cache>/s3/<bucket>/<key>/<ETag>/<name>``): ``s3://bucket/key#etag=<ETag>``, and so is one
  miniwdl downloads itself (HeadObject's ETag; a Directory's listing digest, as staged);
- a file the S3 call cache brought back (``<cache>/files/<sha256>/<name>``): ``sha256:<hex>``,
  a directory (``<cache>/dirs/<tree>/<name>``): ``tree:<hex>``;
- any other local file: the SHA-256 of its content (``sha256:<hex>``), computed once per
  (device, inode, size, mtime) in this process: the outputs the cache uploads are hashed then
  and not again when a later call takes them as inputs; a directory: ``tree:<hex>``, the digest
  of its files' relative paths and digests;
- each local one followed by its name (``sha256:<hex>/<name>``): a task sees that too.

Besides the inputs, the key has the task's name and WDL digest (``result_digest``: miniwdl's
digest of its source, which covers its command, outputs and runtime section, ``docker``/
``container`` and ``gpu`` included, since the runtime expressions are WDL evaluated over the
inputs; but not the values of cpu, memory, disks, maxRetries and preemptible, which change how
a task runs, not what it makes) and the defaults the configuration gives a task that names no
image (``[task_runtime] defaults``: docker, container, gpu). The image a call ran is recorded beside the key (by digest where the backend
knows it) for ``explain``; it cannot be in the key, since it is known only once the task ran.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import threading
from types import SimpleNamespace
from typing import Any, Iterable

import WDL

#: the version of the parts' layout, in every key: a new layout never meets entries of an old one
#: (2: entries keep their outputs' execute bits and empty folders, which version 1's lost: a call
#: reused from one gave ~{tool} without them; and [task_runtime] env, command_preamble and
#: command_shell, which change what a task makes, are in the key)
#: 3: a local File or Directory is named by its name too, beside its content (two files of one
#: content under two names gave each other's results: basename(f));
#: workflows and sub-workflows have no entries (a URI computed as the run goes, from a manifest,
#: was in no workflow key: a later run got the old object's result)
KEY_VERSION = 3

#: runtime defaults ([task_runtime] defaults) that change what a task does: those in the key
RESULT_DEFAULTS = ("docker", "container", "gpu")

S3_PREFIX, SHA_PREFIX, TREE_PREFIX = "s3://", "sha256:", "tree:"
#: after the URI of an object that could not be looked up (``remote``): no entry is kept with one
UNREADABLE = "#unreadable"
#: the folder of a run's directory where miniwdl writes the files of a workflow's write_lines,
#: write_json, ... (``WDL.runtime.workflow``: ``write_dir``), each under a random name
WRITTEN_DIR = "write_"


class NotRegular(ValueError):
    """A path that is not a regular file where one was to be read (a FIFO, a device, a socket,
    a symbolic link inside a directory): never opened, since opening a FIFO blocks."""


class Identities:
    """Names files by what they are (see the module's docstring), with the filesystem's cache
    folder ``cache_dir`` (its ``s3``, ``files`` and ``dirs`` stores). One per process: its memo
    of file digests is shared by every call."""

    def __init__(self, cache_dir: str):
        self.cache_dir = os.path.realpath(cache_dir) if cache_dir else ""
        self._memo: dict[tuple[int, int, int, int], str] = {}
        self._remote: dict[tuple[str, bool], str] = {}
        self._lock = threading.Lock()

    def of(self, path: str, directory: bool = False) -> str:
        """The identity of the File (or Directory) at ``path``; an ``s3://`` one miniwdl downloads
        itself (not staged: an input's default, a URI in a call's inputs, one that staging could
        not take) by its ETag or listing (``remote``); the path itself when it is another URI or
        does not exist."""
        if path.startswith(S3_PREFIX):
            return self.remote(path, directory)
        real = os.path.realpath(path.rstrip("/") or "/")
        if "://" in path or not os.path.exists(real):
            return path
        try:
            found = self.in_store(real) or (self.tree(real) if directory else self.file_digest(real))
        except NotRegular:
            return path  # (by its path, as miniwdl keys it)
        if found.startswith((SHA_PREFIX, TREE_PREFIX)) and os.path.basename(os.path.dirname(path.rstrip("/"))) != WRITTEN_DIR:
            # its content, and what else a task sees of it: its name (``basename(f)``, a sample's
            # name in it, a tool choosing by extension; but not the random one of a file the
            # workflow wrote, write_lines' ``write_/tmpXXXX``, which would never match again).
            # (Not its mode: a file the cache fetched back is shared by every entry of its
            # content and name, executable or not, and its mode says the last one fetched.)
            found += "/" + os.path.basename(path.rstrip("/"))
        return found

    def forget_remote(self) -> None:
        """Forget the identities ``remote`` found (a new run asks S3 again)."""
        with self._lock:
            self._remote.clear()

    def remote(self, uri: str, directory: bool) -> str:
        """``s3://bucket/key#etag=<ETag>`` of an object miniwdl will download (a Directory: its
        listing's digest, as staging names it): the URI alone keyed a call whose object was
        since replaced to the old object's result. Asked once per run (a run downloads a URI
        once; ``s3cache.start_run`` forgets them); one that cannot be read is ``<uri>#unreadable``,
        which no entry has."""
        with self._lock:
            known = self._remote.get((uri, directory))
        if known:
            return known
        from .. import aws, s3io, staging

        try:
            bucket, key = s3io.split(uri)
            if directory:
                prefix = key.rstrip("/") + "/" if key.strip("/") else ""
                listing = staging.directory_listing(bucket, prefix)
                found = f"{S3_PREFIX}{bucket}/{prefix.rstrip('/') or '_'}#etag={staging.listing_digest(listing)}" if listing else ""
            else:
                etag = aws.client("s3").head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
                found = f"{S3_PREFIX}{bucket}/{key}#etag={etag}"
        except Exception:  # noqa: BLE001 (miniwdl's download says why; the key only must not match)
            found = ""
        if not found:  # (not remembered: a passing failure asks again; and no entry is kept with it)
            return uri + UNREADABLE
        with self._lock:
            self._remote[(uri, directory)] = found
        return found

    def in_store(self, real: str) -> str:
        """The identity a path of one of the cache folder's stores carries in itself; "" if none."""
        if not self.cache_dir or not real.startswith(self.cache_dir + os.sep):
            return ""
        store, _, rest = os.path.relpath(real, self.cache_dir).partition(os.sep)
        parts = rest.split(os.sep)
        if store == "s3" and len(parts) >= 4:
            return self.staged(parts)
        if store == "files" and len(parts) == 2:
            return SHA_PREFIX + parts[0]
        if store == "dirs" and len(parts) == 2:
            return TREE_PREFIX + parts[0]
        return ""

    def staged(self, parts: list[str]) -> str:
        """The identity of a path of the store of staged inputs, ``parts`` below it: an entry is
        ``<bucket>/<key...>/<ETag or listing digest>/<name>`` (``staging``), its folder marked
        (``efs_cleanup.USED_MARKER``), a staged Directory's files below ``<name>``, each of which
        is ``s3://bucket/key#etag=<digest>/<its path in the Directory>`` (every file of a Directory
        was the Directory's own identity, so a call given one file of it reused another's result).
        An unmarked path is an entry only in its plain shape (its name is its key's last part);
        otherwise "": its content is its identity."""
        from ..efs_cleanup import USED_MARKER

        store = os.path.join(self.cache_dir, "s3")
        for depth in range(len(parts) - 1, 2, -1):  # (the entry's folder: bucket, key, digest at least)
            if os.path.exists(os.path.join(store, *parts[:depth], USED_MARKER)):
                below = parts[depth + 1 :]
                return (f"{S3_PREFIX}{parts[0]}/{'/'.join(parts[1 : depth - 1])}#etag={parts[depth - 1]}"
                        + "".join("/" + part for part in below))
        if parts[-1] == parts[-3]:
            return f"{S3_PREFIX}{parts[0]}/{'/'.join(parts[1:-2])}#etag={parts[-2]}"
        return ""

    def file_digest(self, real: str) -> str:
        """``sha256:<hex>`` of the file's content, remembered by (device, inode, size, mtime)."""
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(f"not a regular file: {real}")
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            known = self._memo.get(stamp)
        if known:
            return known
        digest = hashlib.sha256()
        with open(real, "rb") as infile:
            for block in iter(lambda: infile.read(1 << 20), b""):
                digest.update(block)
        found = SHA_PREFIX + digest.hexdigest()
        with self._lock:
            self._memo[stamp] = found
        return found

    def tree(self, real: str) -> str:
        """``tree:<hex>``: the digest of a directory's files (relative path, content digest)."""
        return TREE_PREFIX + tree_digest(self.listing(real))

    def listing(self, real: str) -> list[tuple[str, str]]:
        """(relative path, ``sha256:<hex>``) of every file under the directory, sorted;
        NotRegular if it holds anything but regular files and directories."""
        found = []
        for root, dirs, files in os.walk(real):
            for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                path = os.path.join(root, name)
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    raise NotRegular(f"not a regular file: {path}")
                found.append((os.path.relpath(path, real), self.file_digest(path)))
        return sorted(found)


def tree_digest(listing: Iterable[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(sorted(listing), separators=(",", ":")).encode()).hexdigest()


def input_identities(inputs: WDL.Env.Bindings[WDL.Value.Base], identities: Identities) -> dict[str, Any]:
    """The call's inputs as JSON, each File and Directory by its identity."""

    def name(value: WDL.Value.File | WDL.Value.Directory) -> str:
        return identities.of(value.value, isinstance(value, WDL.Value.Directory))

    return WDL.values_to_json(WDL.Value.rewrite_env_paths(inputs, name))  # type: ignore[return-value]


#: runtime entries that change how a task is run, never what it makes: their values are left
#: out of the task's digest (``result_digest``)
SIZE_ONLY_RUNTIME = ("cpu", "memory", "disks", "maxRetries", "preemptible")


def result_digest(task: WDL.Tree.Task) -> str:
    """The task's digest as miniwdl makes it (``Task.digest``: the WDL version, the struct types
    it uses, its source less comments and blank lines), but with the values of its
    ``SIZE_ONLY_RUNTIME`` entries blanked: a task given more memory is the same task. miniwdl's
    own digest where its source cannot be read so (``tests/unit/test_callcache.py`` fails when
    miniwdl's private helpers change)."""
    try:
        doc = task.parent
        lines = list(doc.source_lines)
        for name in SIZE_ONLY_RUNTIME:
            if name in task.runtime:
                _blank(lines, task.runtime[name].pos)
        seen = SimpleNamespace(source_lines=lines, source_comments=doc.source_comments)
        source = [f"version {doc.wdl_version}"] if doc.wdl_version else []
        structs = WDL.Tree._describe_struct_types(task)  # type: ignore[attr-defined]
        source += [f"# {name} :: {structs[name]}" for name in sorted(structs)]
        source += WDL.Tree._source_excerpt(seen, task.pos, [task.command.pos])  # type: ignore[attr-defined]
    except (AttributeError, TypeError, IndexError):
        return task.digest
    text = "\n".join(source).strip()
    return base64.b32encode(hashlib.sha256(text.encode()).digest()[:20]).decode().lower()


def _blank(lines: list[str], pos: Any) -> None:
    """Spaces over the source span ``pos`` (1-based lines and columns, the end column exclusive)."""
    for number in range(pos.line, pos.end_line + 1):
        text = lines[number - 1]
        start = pos.column - 1 if number == pos.line else 0
        end = pos.end_column - 1 if number == pos.end_line else len(text)
        lines[number - 1] = text[:start] + " " * max(0, end - start) + text[end:]


def result_defaults(task_runtime_defaults: dict[str, Any], env: dict[str, Any] | None = None, preamble: str = "",
                    shell: str = "/bin/bash") -> dict[str, Any]:
    """The runtime settings in the key: the runtime defaults that change what a task does
    (``RESULT_DEFAULTS``) of ``[task_runtime] defaults``, and, where set, ``[task_runtime]``'s
    ``env`` (every task's environment), ``command_preamble`` (before every command) and a
    ``command_shell`` other than miniwdl's ``/bin/bash``: each changes what every task makes."""
    found = {k: task_runtime_defaults[k] for k in RESULT_DEFAULTS if k in task_runtime_defaults}
    if env:
        found["[task_runtime] env"] = env
    if preamble:
        found["[task_runtime] command_preamble"] = preamble
    if shell and shell != "/bin/bash":
        found["[task_runtime] command_shell"] = shell
    return found


def key_parts(miniwdl_key: str, inputs: dict[str, Any], defaults: dict[str, Any], wdl_digest: str = "") -> dict[str, Any]:
    """The parts of a call's key, from miniwdl's key (``<name>/<WDL digest>/<inputs digest>``),
    the inputs by identity (``input_identities``), the runtime defaults in the key, and the
    task's ``result_digest`` (default: miniwdl's digest, of the key)."""
    name, miniwdl_digest, _ = miniwdl_key.rsplit("/", 2)
    return {
        "version": KEY_VERSION, "task": name, "wdl_digest": wdl_digest or miniwdl_digest, "inputs": inputs,
        "defaults": defaults,
    }


def entry_name(parts: dict[str, Any]) -> str:
    """The entry's name, ``<task>/<WDL digest>/<digest of the parts>``: entries of one task lie
    under one prefix (``explain`` lists them)."""
    text = json.dumps(parts, separators=(",", ":"), sort_keys=True)
    digest = base64.b32encode(hashlib.sha256(text.encode()).digest()[:20]).decode().lower()
    return f"{parts['task']}/{parts['wdl_digest']}/{digest}"


# -- what differs ----------------------------------------------------------------------------------


def differences(now: dict[str, Any], before: dict[str, Any]) -> list[str]:
    """One readable line per difference between two calls' key parts (``now``: the call asked
    about; ``before``: an earlier entry); none when their keys are the same."""
    lines = []
    if now.get("task") != before.get("task"):
        lines.append(f"task: {before.get('task')} -> {now.get('task')}")
    if now.get("wdl_digest") != before.get("wdl_digest"):
        lines.append(f"the task's WDL (command, runtime or outputs) changed: digest {before.get('wdl_digest')} -> {now.get('wdl_digest')}")
    lines += input_differences(now.get("inputs") or {}, before.get("inputs") or {})
    was, is_ = before.get("defaults") or {}, now.get("defaults") or {}
    for key in sorted(set(was) | set(is_)):
        if was.get(key) != is_.get(key):
            lines.append(f"runtime default {key}: {_shown(was.get(key))} -> {_shown(is_.get(key))}")
    if now.get("version") != before.get("version"):
        lines.append(f"key layout: version {before.get('version')} -> {now.get('version')}")
    return lines


def input_differences(now: dict[str, Any], before: dict[str, Any]) -> list[str]:
    lines = []
    for name in sorted(set(now) | set(before)):
        if name not in before:
            lines.append(f"input {name}: not given before, now {_shown(now[name])}")
        elif name not in now:
            lines.append(f"input {name}: {_shown(before[name])} before, not given now")
        elif now[name] != before[name]:
            lines.append(f"input {name}: {value_change(before[name], now[name])}")
    return lines


def value_change(before: Any, now: Any) -> str:
    """How an input's value changed: an s3:// object by its ETag when only that changed, a file
    by its content digest, anything else as JSON."""
    if isinstance(before, str) and isinstance(now, str) and before.startswith(S3_PREFIX) and now.startswith(S3_PREFIX):
        (uri_b, _, tag_b), (uri_n, _, tag_n) = before.partition("#etag="), now.partition("#etag=")
        if uri_b == uri_n:
            return f"{uri_n} changed (ETag {tag_b} -> {tag_n})"
    if isinstance(before, str) and isinstance(now, str) and before.startswith(SHA_PREFIX) and now.startswith(SHA_PREFIX):
        (digest_b, _, name_b), (digest_n, _, name_n) = before.partition("/"), now.partition("/")
        if digest_b == digest_n:  # (the same content under another name: a task sees the name)
            return f"file name changed ({name_b or '?'} -> {name_n or '?'}; the same content)"
        return f"file content changed ({digest_b[:19]}... -> {digest_n[:19]}...)" + (
            f"; its name {name_b} -> {name_n}" if name_b != name_n else "")
    return f"{_shown(before)} -> {_shown(now)}"


def _shown(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."
