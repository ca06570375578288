"""Hard links of input files into task work directories, within EFS's limit on links per file.

Input files reach a task's ``work/_miniwdl_inputs`` as hard links: on one filesystem (EFS) that
copies no data, and the command sees ordinary files whose ``realpath`` stays inside its work
directory. But EFS allows at most 177 hard links to one file; the 178th ``link(2)`` fails with
``EMLINK`` ("Too many links"):
https://docs.aws.amazon.com/efs/latest/ug/limits.html (Quotas for Amazon EFS file systems) and
https://docs.aws.amazon.com/efs/latest/ug/troubleshooting-efs-fileop-errors.html#hardlinkerror.
A 300-way scatter over one staged input, or one staged input reused by many runs (their links
stay as long as their run directories), reaches that.

So on ``EMLINK`` the file gets a *spare*: one copy of it, made once, from which the next 176
links are made; when that one is full too, the next spare. A 300-way scatter costs one extra
copy, not 123. Spares live in one directory shared by every run on the filesystem
(``[aws_fargate] link_spares_dir``: the driver makes it ``<cache>/links`` on EFS; empty, a
hidden ``.miniwdl_links`` directory beside the input), grouped by the source's inode, size and
modification time, so a changed or replaced source never gets an old spare. Each spare is made
by one thread of the driver while the others needing it wait (a 50 GB input is not copied 123
times at once), as a temporary file then hard-linked under its final name, which fails if
another run's driver made it first: never a half-written spare, never two spares for one slot.

``[aws_fargate] efs_link_limit`` (``MINIWDL__AWS_FARGATE__EFS_LINK_LIMIT``) makes the limit
real where the filesystem allows more (local mode's "EFS" is an ordinary directory whose
filesystem allows ~65,000 links; local mode sets 177, tests set a few): a link that would pass
the limit fails with ``EMLINK`` as on EFS, and the same code handles it. The check and the link
are made under an ``flock`` of the source, so concurrent tasks and drivers never pass the limit
between them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from .. import config

SPARES_NAME = ".miniwdl_links"  # the spares directory beside an input when none is configured
#: how many times one spare may be found missing by one link (made meanwhile by another thread,
#: or deleted by hand) before the link gives up on spares
SPARE_REMAKES = 3

_next_spare: dict[str, int] = {}  # spares group -> the first spare that may still have room
_making: dict[str, threading.Lock] = {}  # spares group -> held while this process makes one of its spares
_registry_lock = threading.Lock()


@dataclass
class LinkStats:
    """What linking a task's inputs took."""

    linked: int = 0  # hard links made (from the input itself or from a spare)
    spares: int = 0  # spare copies made because a file had reached its link limit
    copied: int = 0  # whole copies into the work directory (no link possible: another filesystem...)


@dataclass(frozen=True)
class LinkPolicy:
    """``[aws_fargate] efs_link_limit`` and ``link_spares_dir`` (environment:
    ``MINIWDL__AWS_FARGATE__EFS_LINK_LIMIT``, ``MINIWDL__AWS_FARGATE__LINK_SPARES_DIR``)."""

    #: hard links one file may have, or None: the filesystem's own limit
    limit: int | None = None
    #: where spare copies go; empty: beside each input
    spares: str = ""

    @classmethod
    def from_cfg(cls, cfg: Any) -> "LinkPolicy":
        """The two settings as ``config.option`` reads every ``[aws_fargate]`` setting (a cfg
        file or the environment; ValueError saying which setting and what is wrong)."""
        return cls(config.option(cfg, "efs_link_limit"), str(config.option(cfg, "link_spares_dir")))

    def spares_dir(self, top: str) -> str:
        """Where the spares of the input ``top`` (a file, or a Directory holding the file) go:
        the configured directory, else beside ``top`` (never inside a Directory input, whose
        listing the command sees)."""
        if self.spares:
            return self.spares
        return os.path.join(os.path.dirname(os.path.realpath(top).rstrip("/")) or "/", SPARES_NAME)


@contextmanager
def _link_count_lock(path: str) -> Iterator[None]:
    """Hold an exclusive flock of ``path`` (the check of its link count and the link happen as
    one step for every thread and process here); without a lock if it cannot be opened, except
    when it is not there: FileNotFoundError then, as the link would give (going on unlocked, a
    spare made just after the open failed was linked past the limit by a thread holding no lock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # (releases the lock)


def hard_link(source: str, target: str, limit: int | None) -> None:
    """``os.link(source, target)``, failing with EMLINK as EFS does once ``source`` has
    ``limit`` links (when a limit is configured)."""
    if limit is None:
        os.link(source, target)
        return
    with _link_count_lock(source):
        if os.stat(source).st_nlink >= limit:
            raise OSError(errno.EMLINK, f"{os.strerror(errno.EMLINK)} (efs_link_limit {limit})", source)
        os.link(source, target)


def link_or_copy(source: str, target: str, top: str, stats: LinkStats, policy: LinkPolicy) -> None:
    """Make ``target`` the file ``source`` (symlinks resolved): a hard link; from a spare if
    ``source`` has all the links it may have; a copy if no link can be made at all."""
    source = os.path.realpath(source)
    try:
        hard_link(source, target, policy.limit)
        stats.linked += 1
        return
    except OSError as exn:
        if exn.errno != errno.EMLINK:  # another filesystem, a protected link...: copy, as ever
            shutil.copy2(source, target)
            stats.copied += 1
            return
    try:
        _link_from_spare(source, target, policy.spares_dir(top), stats, policy.limit)
    except OSError:  # no room for spares there (read-only, full): this task gets its own copy
        if os.path.lexists(target):
            os.unlink(target)
        shutil.copy2(source, target)
        stats.copied += 1


def _link_from_spare(source: str, target: str, spares: str, stats: LinkStats, limit: int | None) -> None:
    """Link ``target`` to the first spare of ``source`` with room, making spares as needed."""
    st = os.stat(source)
    group = os.path.join(spares, f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}")
    os.makedirs(group, exist_ok=True)
    with _registry_lock:
        number = _next_spare.get(group, 1)
        making = _making.setdefault(group, threading.Lock())
    remade = 0
    while True:
        spare = os.path.join(group, str(number))
        try:
            hard_link(spare, target, limit)
        except FileNotFoundError:
            if remade >= SPARE_REMAKES:
                raise
            remade += 1
            with making:  # one copy at a time: the other tasks wanting it wait, then link
                if not os.path.lexists(spare):
                    stats.spares += _make_spare(source, spare)
            continue
        except OSError as exn:
            if exn.errno != errno.EMLINK:
                raise
            number, remade = number + 1, 0
            continue
        stats.linked += 1
        with _registry_lock:
            _next_spare[group] = max(number, _next_spare.get(group, 1))
        return


def _make_spare(source: str, spare: str) -> int:
    """Copy ``source`` to ``spare`` unless it exists; return 1 if this call made it."""
    fd, partial = tempfile.mkstemp(prefix=".part.", dir=os.path.dirname(spare))
    os.close(fd)
    try:
        shutil.copy2(source, partial)
        try:
            os.link(partial, spare)  # (never replaces a spare another thread or driver made)
        except FileExistsError:
            return 0
        return 1
    finally:
        os.unlink(partial)
