"""Make the driver's NFS client see what a task's container just wrote on EFS.

The driver and each task's container are different NFS clients of one EFS filesystem. Linux NFS
clients cache attributes (``acregmin``/``acdirmin``, 3 and 30 s by default, ``actimeo`` sets
all) and directory entries; a directory's cached entries are dropped only once the client
notices the directory's mtime changed, and "since the directory's mtime is a cached attribute,
it may take some time before a client notices it has changed" (nfs(5), "Directory entry
caching": https://man7.org/linux/man-pages/man5/nfs.5.html). So when a task stops, the driver
may not yet see the outputs its command wrote, or see an old size of ``stdout.txt``.

Opening a file or directory revalidates its attributes with the server whatever their age
(nfs(5), "Close-to-open cache consistency": the client sends GETATTR or ACCESS on open
"regardless of the freshness of the file's cached attributes"). cto is the default, and the
EFS mount helper's options (nfsvers=4.1, rsize, wsize, hard, timeo, retrans, noresvport) change
neither it nor attribute caching: https://docs.aws.amazon.com/efs/latest/ug/mount-helper-setting.html).
``revalidate_tree`` therefore opens every directory of the work tree (which makes the client
notice a changed mtime and drop its cached entries) and lists it, and ``revalidate_file``
opens a file the driver itself made before the task ran (stdout.txt, stderr.txt), whose
attributes it holds. New files need nothing more: the driver has no cached attributes for a
name it never looked up. (miniwdl-aws walks the task directory after each job for the same
reason.) Symlinks are not followed and no file is read, so this stays cheap: one GETATTR and
one READDIR per directory.
"""

from __future__ import annotations

import os
import stat

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _open(path: str, flags: int, dir_fd: int | None = None) -> int:
    """``os.open`` (a seam for tests to watch what is revalidated)."""
    return os.open(path, flags, dir_fd=dir_fd)


def revalidate_file(path: str) -> bool:
    """Open ``path`` (a regular file; never a FIFO, which would block) and fstat it: its cached
    attributes are refreshed. Returns whether it was there."""
    try:
        fd = _open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        os.fstat(fd)
    finally:
        os.close(fd)
    return True


def fresh_stat(path: str) -> os.stat_result:
    """The attributes of ``path`` (a regular file; never a FIFO) as the server has them now: opened
    and fstat'ed (an lstat may answer with attributes this client cached up to ``acregmax``, 60 s,
    before: another client's touch unseen). OSError as ``os.lstat`` raises it."""
    fd = _open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def revalidate_tree(root: str) -> int:
    """Open and list every directory under ``root`` (``root`` included; symlinks not followed).
    Returns how many directories were revalidated; a directory that cannot be opened (gone,
    no permission) is skipped."""
    try:
        fd = _open(root, _DIR_FLAGS)
    except OSError:
        return 0
    return _revalidate_dir(fd)


def _revalidate_dir(fd: int) -> int:
    """Revalidate the open directory ``fd`` and those beneath it; closes ``fd``."""
    count = 1
    try:
        os.fstat(fd)
        subdirs = [entry.name for entry in os.scandir(fd) if entry.is_dir(follow_symlinks=False)]
        for name in subdirs:
            try:
                child = _open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            if stat.S_ISDIR(os.fstat(child).st_mode):
                count += _revalidate_dir(child)
            else:
                os.close(child)
    finally:
        os.close(fd)
    return count
