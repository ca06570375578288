"""Run directories on EFS (``<efs>/runs/<run id>/``): removed once their run is done with them, so
the filesystem holds nothing between runs but the shared cache (``<efs>/cache/``), whose entries
go once no run has used them for ``keep_unused_cache_days`` (``collect_shared``).

- **a successful run**: its driver removes the directory once the outputs are in S3 and
  outputs.json is written (``driver.finish``);
- **a failed or cancelled run**: kept ``keep_failed_run_days`` days for debugging (0: removed at
  once), with ``EXPIRES_MARKER`` in it saying until when;
- **what is left** (a driver killed before it could tidy up, a kept directory whose days are over):
  collected by the next driver's start (in the background) and by ``miniwdl-fargate gc``, each
  directory decided by its run's status.json in S3, or a kept one's marker (``look``,
  ``decide``): a run not finished is never touched.

Removal is robust to what EFS and WDL tasks leave: read-only files and directories are made
writable first, NFS "silly-renamed" files (``.nfsXXXX``: a file deleted while a process still
holds it open, which the NFS client removes when it is closed) and other failures are counted
and logged, never raised: housekeeping never fails a run.

The shared cache's entries (a staged ``s3://`` input: ``cache/s3/<bucket>/<key>/<ETag>/``; a
file or directory the call cache fetched: ``cache/files/<sha256>/``, ``cache/dirs/<tree>/``) each
carry ``USED_MARKER``, touched by every run that stages or reuses the entry (``mark_used``). An
entry goes when its marker is older than both ``keep_unused_cache_days`` and the start of every
run not yet finished (a run touches what it uses when it starts using it), so nothing a running run
uses is taken from under it. The removal first renames the entry aside and looks at its marker
again: a run that touched it meanwhile gets it back. The spares of inputs at EFS's hard-link limit
(``<cache>/links``) and what an unfinished collection left aside go once nothing uses them
(``leftovers``).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from . import nfs, runs
from . import status as status_doc

log = logging.getLogger("miniwdl-fargate.efs")

#: written by the driver when it starts a run's directory: says the directory is a pipeline run's
RUN_MARKER = ".miniwdl-fargate-run"
#: written when a run's directory is kept after its end: when it may go (ISO time, and why kept)
EXPIRES_MARKER = ".miniwdl-fargate-expires"
#: a run's states before its end: its directory is never removed then
NOT_FINISHED = ("SUBMITTED", "STARTING", "RUNNING")
#: status.json exists but cannot be read (edited by hand): keep, and say so
UNREADABLE = "UNREADABLE"
#: status.json says the run is not finished, long after its state machine can have waited for it
#: (``lapsed_at``): its execution was stopped from outside (StopExecution runs no Catch, so nothing
#: recorded its end) or its finalize failed. Taken as a failed run that ended then, so that it
#: neither keeps its directory nor holds back the shared cache's collection for good
LAPSED = "LAPSED"
#: a run's state machine waits at most its ``max_run_seconds`` for its driver, each new launch of a
#: driver that failed to start with its own timeout (LaunchDriver's Retry: such attempts end in
#: minutes); twice that and a day more is past any wait
LAPSE_FACTOR, LAPSE_MARGIN = 2, timedelta(days=1)
#: in each entry of the shared cache: touched whenever a run stages or reuses the entry
USED_MARKER = ".miniwdl-fargate-used"
#: the shared cache's folders whose entries are collected, and how deep below each an entry is
#: (None: any depth, an entry being a folder holding USED_MARKER: staged inputs' keys have slashes)
SHARED_STORES = {"s3": None, "files": 1, "dirs": 1}
#: where an entry is renamed aside before it is removed
TRASH = ".trash"
#: the spare copies of inputs at EFS's hard-link limit (``backend.links``: ``<cache>/links/<group>/<n>``)
LINK_SPARES = "links"
#: seconds since its last change before a spare no task links to any more, a spare's unfinished
#: copy, or an entry left in TRASH by a collection that did not finish, goes (a spare is made, then
#: linked at once: each link changes its ctime)
LEFTOVER_SECONDS = 3600.0
PROBLEMS_KEPT = 10  # problem messages kept per removal (all are counted)
GB = 1e9


# -- removing one directory tree ------------------------------------------------------------------


@dataclass
class Removal:
    """What removing one directory tree did."""

    path: str
    files: int = 0  # entries unlinked (files, links, FIFOs)
    dirs: int = 0  # directories removed
    #: bytes given back to the filesystem: a file's blocks count when its last link goes (an
    #: input hard-linked from the shared store of staged inputs frees nothing)
    freed_bytes: int = 0
    busy: int = 0  # entries EFS would not remove yet (EBUSY: .nfsXXXX files still held open)
    failed: int = 0  # other entries that could not be removed
    problems: list[str] = field(default_factory=list)
    unfinished: bool = False  # the deadline came first

    @property
    def complete(self) -> bool:
        return not os.path.lexists(self.path)

    def problem(self, path: str, exn: OSError) -> None:
        if exn.errno == errno.EBUSY:
            self.busy += 1
        else:
            self.failed += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(f"{path}: {exn.strerror or exn}")

    def add(self, part: "Removal") -> None:
        """What removing a part of this tree did, counted in."""
        self.files += part.files
        self.dirs += part.dirs
        self.freed_bytes += part.freed_bytes
        self.busy += part.busy
        self.failed += part.failed
        self.problems += part.problems[: max(0, PROBLEMS_KEPT - len(self.problems))]
        self.unfinished = self.unfinished or part.unfinished

    def summary(self) -> str:
        said = f"{self.files} file(s), {self.dirs} folder(s), {self.freed_bytes / GB:.3f} GB freed"
        if self.busy or self.failed:
            said += f"; {self.busy} busy and {self.failed} failed entries left ({'; '.join(self.problems[:3])})"
        if self.unfinished:
            said += "; out of time, the rest is left for the next collection"
        return said


#: threads removing one tree at once: on EFS each unlink and rmdir is a round trip to the NFS
#: server, and a run of 10,000 tasks leaves about 90,000 entries; many at once go as fast as the
#: file system's operations allow, not one round trip after another ("Amazon EFS performance
#: tips": parallelize, https://docs.aws.amazon.com/efs/latest/ug/performance-tips.html)
REMOVE_THREADS = 16


def remove_tree(path: str, deadline: float | None = None, threads: int = REMOVE_THREADS) -> Removal:
    """Remove the directory tree at ``path`` (symlinks removed, never followed), as far as it can
    be; never raises for what is in it. A directory without write or search permission for its
    owner (a task's read-only input folder) is given them first. ``deadline`` (time.monotonic())
    stops it early, leaving the rest. Its first levels are opened one folder after another until
    there are enough folders below them to share out, and ``threads`` remove those subtrees at
    once (a run's calls: ``<run>/<yyyymmdd_hhmmss_workflow>/call-*``)."""
    removal = Removal(path)
    if os.path.islink(path):  # a link to a directory: the link goes, never what it points at
        _remove_file(path, removal)
        return removal
    opened: list[str] = []  # the first levels' folders, their files gone and their folders below
    below = [path]
    while threads > 1 and below and len(below) < threads * 4 and len(opened) < 1000:
        level, below = below, []
        for folder in level:
            if deadline is not None and time.monotonic() > deadline:
                removal.unfinished = True
                return removal
            folders = _files_removed(folder, removal)
            if folders is not None:
                opened.append(folder)
                below += folders
    if len(below) > 1:
        with ThreadPoolExecutor(min(threads, len(below)), thread_name_prefix="remove") as pool:
            for part in pool.map(lambda folder: _remove_subtree(folder, deadline), below):
                removal.add(part)
    elif below:
        removal.add(_remove_subtree(below[0], deadline))
    for folder in reversed(opened):  # (deepest first: each is empty once what was below it is gone)
        _remove_dir(folder, removal)
    return removal


def _files_removed(folder: str, removal: Removal) -> list[str] | None:
    """Remove what is in ``folder`` but folders (symlinks too, never followed); the folders in it,
    or None if it cannot be opened (or is gone)."""
    entries = _entries(folder, removal)
    if entries is None:
        return None
    folders = []
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            folders.append(entry.path)
        else:
            _remove_file(entry.path, removal)
    return folders


def _remove_subtree(path: str, deadline: float | None) -> Removal:
    """``remove_tree``'s work on one folder and what is below it, one entry after another."""
    removal = Removal(path)
    pending: list[tuple[str, bool]] = [(path, False)]  # (directory, its entries are gone)
    while pending:
        folder, emptied = pending.pop()
        if emptied:
            _remove_dir(folder, removal)
            continue
        if deadline is not None and time.monotonic() > deadline:
            removal.unfinished = True
            return removal
        folders = _files_removed(folder, removal)
        if folders is not None:
            pending.append((folder, True))
            pending += [(below, False) for below in folders]
    return removal


def _entries(folder: str, removal: Removal) -> list[os.DirEntry] | None:
    """The folder's entries, once it is open to its owner; None if it is gone or unreadable."""
    try:
        _open_up(folder)
        with os.scandir(folder) as found:
            return list(found)
    except FileNotFoundError:
        return None
    except OSError as exn:
        removal.problem(folder, exn)
        return None


def _open_up(folder: str) -> None:
    """Give the folder's owner read, write and search permission (what removing its entries
    needs), if it lacks any."""
    mode = stat.S_IMODE(os.lstat(folder).st_mode)
    if mode & stat.S_IRWXU != stat.S_IRWXU:
        os.chmod(folder, mode | stat.S_IRWXU)


def _remove_file(path: str, removal: Removal) -> None:
    try:
        info = os.lstat(path)
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exn:
        removal.problem(path, exn)
        return
    removal.files += 1
    if info.st_nlink <= 1 and stat.S_ISREG(info.st_mode):
        removal.freed_bytes += info.st_blocks * 512


def _remove_dir(path: str, removal: Removal) -> None:
    try:
        os.rmdir(path)
        removal.dirs += 1
    except FileNotFoundError:
        pass
    except OSError as exn:
        if exn.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not (removal.busy or removal.failed):
            removal.problem(path, exn)  # (a folder left non-empty by entries already counted is not news)


# -- a run's own directory: marked at its start, removed or kept at its end -----------------------


def owns(workdir: str, run_id: str) -> bool:
    """Whether ``workdir`` is a run directory as the driver makes them, ``<efs>/runs/<run id>``:
    the only kind this module removes for a driver (a driver run by hand elsewhere keeps its)."""
    parent, name = os.path.split(os.path.normpath(workdir))
    return name == run_id and os.path.basename(parent) == runs.RUNS_PREFIX.rstrip("/")


def mark_run(workdir: str, run_id: str, results: str) -> None:
    """Say in the run's directory that it is a pipeline run's (``RUN_MARKER``), for a collection
    that finds no status.json for it."""
    _write_json(os.path.join(workdir, RUN_MARKER), {"run_id": run_id, "results": results, "started_at": runs.now_iso()})


def mark_kept(workdir: str, state: str, keep_days: float, reason: str, now: datetime | None = None) -> str:
    """Keep the run's directory ``keep_days`` from now, saying so in ``EXPIRES_MARKER``; the
    ISO time it may go."""
    now = now or datetime.now(timezone.utc)
    expires = (now + timedelta(days=keep_days)).isoformat(timespec="seconds")
    _write_json(os.path.join(workdir, EXPIRES_MARKER), {
        "expires_at": expires, "status": state, "finished_at": now.isoformat(timespec="seconds"), "reason": reason,
    })
    return expires


def mark_used(entry: str) -> bool:
    """Say that a run uses the shared cache's ``entry`` (a folder) now: touch its ``USED_MARKER``.
    Whether it was marked; never raises (an entry not there yet, or read-only, is not marked: a
    caller that then makes the entry marks it once it is there)."""
    try:
        with open(os.path.join(entry, USED_MARKER), "a"):
            pass
        os.utime(os.path.join(entry, USED_MARKER), None)
        return True
    except OSError as exn:
        log.debug("could not mark %s used: %s", entry, exn)
        return False


def _write_json(path: str, doc: dict[str, Any]) -> None:
    with open(path, "w") as outfile:
        json.dump(doc, outfile, indent=1)
        outfile.write("\n")


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as infile:
            found = json.load(infile)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


# -- collecting what is left: one decision per directory ------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What a collection knows of one directory under ``<efs>/runs/``."""

    name: str
    #: the run's state from its status.json; None: it has none; UNREADABLE: it cannot be read
    state: str | None
    finished_at: datetime | None = None  # the run's end (status.json, or a kept directory's marker)
    kept: bool = False  # it has EXPIRES_MARKER: its driver kept it on purpose
    pipeline: bool = False  # it has RUN_MARKER: a driver of the pipeline made it
    changed_at: datetime = datetime.fromtimestamp(0, timezone.utc)  # its (or its markers') last change


@dataclass(frozen=True)
class Verdict:
    remove: bool
    reason: str


def decide(seen: Seen, now: datetime, keep_days: float) -> Verdict:
    """Remove the directory or keep it, and why. Only a finished run's directory goes: a
    SUCCEEDED one at once (unless its driver kept it), a FAILED or CANCELLED one (or a kept one)
    ``keep_days`` after the run's end. A run not finished (its driver may be writing there) is
    never touched: one whose driver died is ended by the state machine (heartbeat timeout:
    FAILED), and goes then. A directory without a status.json goes only when a driver made it
    (``RUN_MARKER``) and nothing changed in it for ``keep_days``; anything else is left alone."""
    keep = timedelta(days=keep_days)
    if not runs.RUN_ID_RE.match(seen.name):
        return Verdict(False, "not a run directory (its name is not a run id)")
    if seen.state == UNREADABLE:
        return Verdict(False, "its status.json cannot be read")
    if seen.state == LAPSED:
        ended = seen.finished_at or seen.changed_at
        until = ended + keep
        said = f"the run's status.json still says it runs, past the most its state machine waits ({_iso(ended)})"
        return Verdict(True, said) if now >= until else Verdict(False, f"{said}; kept until {_iso(until)}")
    if seen.state in NOT_FINISHED:
        return Verdict(False, f"the run is {seen.state}")
    if seen.state is None:
        if not seen.pipeline:
            return Verdict(False, "no status.json, and no pipeline driver made it")
        until = seen.changed_at + keep
        if now >= until:
            return Verdict(True, f"no status.json (results deleted?); unchanged since {_iso(seen.changed_at)}")
        return Verdict(False, f"no status.json; kept until {_iso(until)}")
    if seen.state == "SUCCEEDED" and not seen.kept:
        return Verdict(True, "the run SUCCEEDED")
    ended = seen.finished_at or seen.changed_at
    until = ended + keep
    if now >= until:
        return Verdict(True, f"the run {seen.state} at {_iso(ended)}, more than {keep_days:g} day(s) ago")
    return Verdict(False, f"the run {seen.state}; kept until {_iso(until)}")


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def lapsed_at(bucket: str, current: status_doc.RunStatus) -> datetime | None:
    """When a run not finished is past any wait of its state machine (``LAPSE_FACTOR``), from its
    submission and its record's ``max_run_seconds``; None if its record cannot say."""
    from . import s3io

    try:
        found = s3io.find_json(bucket, s3io.split(current.results)[1] + runs.RECORD_NAME)
        limit = float(found["max_run_seconds"])
        submitted = datetime.fromisoformat(current.submitted_at)
    except (KeyError, TypeError, ValueError):
        return None
    return submitted + LAPSE_FACTOR * timedelta(seconds=limit) + LAPSE_MARGIN


def marked_end(path: str) -> tuple[str, datetime] | None:
    """The end of the run of the directory ``path`` as its ``EXPIRES_MARKER`` says it (its state and
    time), or None where the marker cannot say. Its driver wrote the marker once the run's end was
    written, and a run never runs again (a resume is a new run, in a directory of its own): a
    collection asks S3 for the status of no directory kept so. Each driver's start-up collection
    used to read the status.json of every failed run kept for its days, a GetObject each."""
    found = _read_json(os.path.join(path, EXPIRES_MARKER)) or {}
    try:
        state, ended = found["status"], datetime.fromisoformat(found["finished_at"])
    except (KeyError, TypeError, ValueError):
        return None
    if state not in status_doc.FINISHED or ended.tzinfo is None:
        return None
    return state, ended


def look(runs_root: str, name: str, bucket: str, now: datetime | None = None) -> Seen:
    """What is known of ``<runs_root>/<name>``: its run's end as the marker of a kept directory
    says it (``marked_end``), else its run's status (status.json in ``bucket``); its markers and
    its last change; a run not finished long after any wait for it (``LAPSED``) as ended then."""
    path = os.path.join(runs_root, name)
    changed = max(
        (os.lstat(p).st_mtime for p in (path, os.path.join(path, RUN_MARKER), os.path.join(path, EXPIRES_MARKER))
         if os.path.lexists(p)),
        default=0.0,
    )
    facts: dict[str, Any] = {
        "kept": os.path.lexists(os.path.join(path, EXPIRES_MARKER)),
        "pipeline": os.path.lexists(os.path.join(path, RUN_MARKER)),
        "changed_at": datetime.fromtimestamp(changed, timezone.utc),
    }
    if not runs.RUN_ID_RE.match(name):
        return Seen(name, None, **facts)
    if facts["kept"] and (marked := marked_end(path)) is not None:
        return Seen(name, *marked, **facts)
    try:
        # a missing status.json is "none" only where the reader may list the bucket (else S3 says
        # 403, not 404: https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html), which
        # the driver's role may; a 403 raises, and the directory is kept (``collect``)
        current = status_doc.read(bucket, name)
    except status_doc.UnreadableStatus:
        return Seen(name, UNREADABLE, **facts)
    if current is None:
        return Seen(name, None, **facts)
    if current.status in NOT_FINISHED and (lapse := lapsed_at(bucket, current)) is not None:
        if (now or datetime.now(timezone.utc)) >= lapse:
            return Seen(name, LAPSED, lapse, **facts)
    ended = datetime.fromisoformat(current.finished_at) if current.finished_at else None
    return Seen(name, current.status, ended, **facts)


def collect(
    runs_root: str, bucket: str, keep_days: float, *, dry_run: bool = False, skip: tuple[str, ...] = (),
    deadline: float | None = None, now: Callable[[], datetime] | None = None,
) -> list[dict[str, Any]]:
    """Decide every directory under ``runs_root`` (but ``skip``) and remove those that go (or,
    ``dry_run``, only say so); one entry per directory: ``name``, ``action`` (removed, partly
    removed, would remove, kept, unknown), ``reason``, and for a removal what it freed. A
    directory whose status cannot be looked up (S3 unreachable) is kept, saying why. Stops
    deciding at ``deadline`` (time.monotonic())."""
    clock = now or (lambda: datetime.now(timezone.utc))
    try:
        names = sorted(e.name for e in os.scandir(runs_root) if e.is_dir(follow_symlinks=False) and e.name not in skip)
    except FileNotFoundError:
        return []
    done: list[dict[str, Any]] = []
    for name in names:
        if deadline is not None and time.monotonic() > deadline:
            break
        try:
            seen = look(runs_root, name, bucket, clock())
            verdict = decide(seen, clock(), keep_days)
        except Exception as exn:  # S3 unreachable, no permission...: never a reason to remove
            log.warning("run directory %s kept: could not look it up: %s", name, exn)
            done.append({"name": name, "action": "unknown", "reason": f"could not look it up: {exn}"})
            continue
        entry: dict[str, Any] = {"name": name, "action": "kept", "reason": verdict.reason, "state": seen.state}
        if verdict.remove:
            entry["action"] = "would remove"
            if not dry_run:
                entry.update(removal_facts(remove_tree(os.path.join(runs_root, name), deadline)))
                log.info("run directory %s removed (%s): %s", name, verdict.reason, entry["summary"])
        done.append(entry)
    return done


def started_at(runs_root: str, name: str) -> float | None:
    """When the run of ``<runs_root>/<name>`` started (its RUN_MARKER's time), if it says."""
    try:
        return os.lstat(os.path.join(runs_root, name, RUN_MARKER)).st_mtime
    except OSError:
        return None


def shared_cutoff(now: float, keep_days: float, running_starts: list[float]) -> float:
    """The time before which an unused entry of the shared cache may go: ``keep_days`` ago, and no
    later than the start of any run not finished (``running_starts``)."""
    return min([now - keep_days * 86400, *running_starts])


def shared_entries(cache_root: str) -> list[str]:
    """Every entry of the shared cache (a folder holding USED_MARKER) under ``SHARED_STORES``."""
    found: list[str] = []
    for store, depth in SHARED_STORES.items():
        top = os.path.join(cache_root, store)
        for folder, subdirs, files in os.walk(top):
            level = os.path.relpath(folder, top).count(os.sep) + 1 if folder != top else 0
            if USED_MARKER in files and folder != top:
                found.append(folder)
                subdirs[:] = []  # (an entry's own content is not searched)
            elif depth is not None and level >= depth:
                subdirs[:] = []
    return sorted(found)


def collect_shared(
    cache_root: str, cutoff: float, *, dry_run: bool = False, deadline: float | None = None
) -> list[dict[str, Any]]:
    """Remove the shared cache's entries not used since ``cutoff`` (``shared_cutoff``); one report
    entry each (``name`` relative to ``cache_root``, ``action``, ``reason``, what it freed)."""
    done: list[dict[str, Any]] = leftovers(cache_root, dry_run=dry_run)
    for entry in shared_entries(cache_root):
        if deadline is not None and time.monotonic() > deadline:
            break
        name = os.path.relpath(entry, cache_root)
        try:
            used = fresh_mtime(os.path.join(entry, USED_MARKER))  # (as EFS has it, not as cached here)
        except OSError:
            continue
        if used >= cutoff:
            continue
        reason = f"not used since {datetime.fromtimestamp(used, timezone.utc).isoformat(timespec='seconds')}"
        report: dict[str, Any] = {"name": name, "action": "would remove", "reason": reason}
        if not dry_run:
            report.update(_remove_unused(cache_root, entry, cutoff))
        done.append(report)
    return done


def leftovers(cache_root: str, *, dry_run: bool = False, now: float | None = None) -> list[dict[str, Any]]:
    """What nothing uses and nothing else would ever remove: spares of ``LINK_SPARES`` no task's
    file links to any more (one link: the spare's own; its group's source may be long collected),
    unfinished copies of spares (a driver killed mid-copy), and entries left in ``TRASH`` by a
    collection that did not finish; each unchanged for ``LEFTOVER_SECONDS``. One report entry each."""
    clock = time.time() if now is None else now
    found: list[tuple[str, str]] = []  # (path, why)
    spares = os.path.join(cache_root, LINK_SPARES)
    for folder, _, files in os.walk(spares):
        for name in files:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if clock - st.st_ctime < LEFTOVER_SECONDS:
                continue
            if name.startswith(".part."):
                found.append((path, "an unfinished copy of a spare"))
            elif st.st_nlink <= 1:
                found.append((path, "a spare copy of an input no task links to any more"))
    trash = os.path.join(cache_root, TRASH)
    for entry in os.scandir(trash) if os.path.isdir(trash) else ():
        try:
            if clock - entry.stat(follow_symlinks=False).st_ctime >= LEFTOVER_SECONDS:
                found.append((entry.path, "left aside by a collection that did not finish"))
        except OSError:
            continue
    done = []
    for path, why in found:
        report: dict[str, Any] = {"name": os.path.relpath(path, cache_root), "action": "would remove", "reason": why}
        if not dry_run:
            if os.path.isdir(path) and not os.path.islink(path):
                report.update(removal_facts(remove_tree(path)))
            else:
                removal = Removal(path)
                _remove_file(path, removal)
                report.update(removal_facts(removal))
                _remove_empty_parents(os.path.dirname(path), cache_root)
        done.append(report)
    return done


def fresh_mtime(path: str) -> float:
    """A marker's mtime as EFS has it (``nfs.fresh_stat``: opened, not an lstat of cached attributes)."""
    return nfs.fresh_stat(path).st_mtime


def _remove_unused(cache_root: str, entry: str, cutoff: float) -> dict[str, Any]:
    """Rename ``entry`` aside, look at its marker again (a run may have touched it meanwhile: then
    it goes back), remove it, and remove the folders it leaves empty."""
    trash = os.path.join(cache_root, TRASH)
    os.makedirs(trash, exist_ok=True)
    aside = os.path.join(trash, f"{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(entry, aside)
    except OSError as exn:
        return {"action": "kept", "reason": f"could not move it aside: {exn}"}
    try:
        touched = fresh_mtime(os.path.join(aside, USED_MARKER)) >= cutoff
    except OSError:
        touched = False
    if touched:
        try:
            os.rename(aside, entry)  # (a run staging it anew meanwhile: its own copy stays)
            return {"action": "kept", "reason": "a run used it while it was being removed"}
        except OSError:
            pass
    facts = removal_facts(remove_tree(aside))
    _remove_empty_parents(os.path.dirname(entry), cache_root)
    return facts


def _remove_empty_parents(folder: str, top: str) -> None:
    """rmdir ``folder`` and its parents up to (not including) a store of ``top`` while empty."""
    stores = {os.path.join(top, store) for store in (*SHARED_STORES, LINK_SPARES)}
    while folder.startswith(top + os.sep) and folder not in stores:
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)


def removal_facts(removal: Removal) -> dict[str, Any]:
    """What a report says of one removal."""
    return {
        "action": "removed" if removal.complete else "partly removed",
        "freed_bytes": removal.freed_bytes,
        "files": removal.files,
        "left_busy": removal.busy,
        "left_failed": removal.failed,
        "problems": removal.problems,
        "summary": removal.summary(),
    }


def running_starts(runs_root: str, done: list[dict[str, Any]]) -> list[float]:
    """The start of each run ``collect`` found not finished (or could not tell): 0 for one that
    does not say when (then nothing of the shared cache goes this time)."""
    unsure = [d for d in done if d.get("state") in (*NOT_FINISHED, UNREADABLE) or d["action"] == "unknown"]
    return [started_at(runs_root, d["name"]) or 0.0 for d in unsure]


def collect_shared_after(
    runs_root: str, done: list[dict[str, Any]], keep_days: float, *, dry_run: bool = False,
    deadline: float | None = None, own_start: float | None = None,
) -> list[dict[str, Any]]:
    """Collect the shared cache beside ``runs_root`` (``<efs>/cache``) once ``collect`` has looked at
    every run directory (``done``), sparing what any run not finished (and the caller's own run,
    started at ``own_start``) may use."""
    starts = running_starts(runs_root, done) + ([own_start] if own_start is not None else [])
    cutoff = shared_cutoff(time.time(), keep_days, starts)
    cache_root = os.path.join(os.path.dirname(runs_root), "cache")
    return collect_shared(cache_root, cutoff, dry_run=dry_run, deadline=deadline)


def collection(
    runs_root: str, bucket: str, keep_days: float, dry_run: bool = False, cache_keep_days: float = 7.0,
    deadline: float | None = None,
) -> dict[str, Any]:
    """``miniwdl-fargate gc --here``: collect ``runs_root`` and the shared cache beside it (until
    ``deadline``, time.monotonic()), and say what was done, as its report."""
    done = collect(runs_root, bucket, keep_days, dry_run=dry_run, deadline=deadline)
    cache = collect_shared_after(runs_root, done, cache_keep_days, dry_run=dry_run, deadline=deadline)
    return {
        "runs_root": runs_root,
        "bucket": bucket,
        "dry_run": dry_run,
        "keep_failed_run_days": keep_days,
        "keep_unused_cache_days": cache_keep_days,
        "directories": done,
        "cache": cache,
        "freed_bytes": sum(d.get("freed_bytes", 0) for d in [*done, *cache]),
        # out of time: what it did not get to waits for the next collection
        "unfinished": deadline is not None and time.monotonic() > deadline,
        "finished_at": runs.now_iso(),
    }
