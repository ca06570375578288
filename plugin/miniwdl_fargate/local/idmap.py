"""Idmapped bind mounts: local mode's stand-in for an EFS access point's POSIX user.

On Fargate, an EFS access point with a ``PosixUser`` does every NFS operation of every container
user as that user: "EFS replaces the NFS client's user and group IDs with the identity configured
on the access point for all file system operations", new files belong to it, and permissions are
evaluated for it (https://docs.aws.amazon.com/efs/latest/ug/enforce-identity-access-points.html).
So an image whose USER is 1000 writes a task directory that root created.

Locally the EFS filesystem is a directory owned by the user running local mode. An idmapped
bind mount of it (Linux >= 5.12, ``mount_setattr(MOUNT_ATTR_IDMAP)``) presents its owner as the
container's user, and writes by that user land on disk as the owner: the same effect, for the
one uid/gid pair the task runs as. Creating one needs root (CAP_SYS_ADMIN in the initial user
namespace); ``supported`` says whether this machine can.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import threading
import time

SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442  # x86_64 and arm64 alike
OPEN_TREE_CLONE = 1
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_IDMAP = 0x00100000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)

#: user namespaces made so far, by (owner uid, owner gid, uid, gid): an open descriptor keeps a
#: namespace alive after its process is gone (namespaces(7)), so each mapping is made once
_namespaces: dict[tuple[int, int, int, int], int] = {}
_namespaces_lock = threading.Lock()


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(result: int, what: str, path: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what} failed for {path}: {os.strerror(errno)}")
    return result


def _user_namespace(owner_uid: int, owner_gid: int, uid: int, gid: int) -> tuple[subprocess.Popen, int]:
    """A user namespace whose id ``owner`` maps to ``uid``/``gid``: a sleeping ``unshare --user``
    child whose maps root writes. Returns the child and an fd of its namespace."""
    child = subprocess.Popen(["unshare", "--user", "sleep", "30"], stdin=subprocess.DEVNULL)
    try:
        own = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{child.pid}/ns/user") == own:
            if child.poll() is not None or time.monotonic() > deadline:
                raise OSError(f"unshare --user did not start (exit {child.poll()})")
            time.sleep(0.005)
        with open(f"/proc/{child.pid}/uid_map", "w") as outfile:
            outfile.write(f"{owner_uid} {uid} 1\n")
        with open(f"/proc/{child.pid}/gid_map", "w") as outfile:
            outfile.write(f"{owner_gid} {gid} 1\n")
        return child, os.open(f"/proc/{child.pid}/ns/user", os.O_RDONLY)
    except BaseException:
        child.kill()
        child.wait()
        raise


def _mapping(owner: tuple[int, int], user: tuple[int, int]) -> int:
    """A descriptor of a user namespace mapping ``owner`` to ``user`` (made at first use, kept)."""
    key = (*owner, *user)
    with _namespaces_lock:
        if key not in _namespaces:
            child, nsfd = _user_namespace(*key)
            child.kill()
            child.wait()
            _namespaces[key] = nsfd
        return _namespaces[key]


def idmapped_bind(source: str, target: str, owner: tuple[int, int], user: tuple[int, int]) -> None:
    """Bind-mount ``source`` at ``target`` (created if missing) so that files owned by ``owner``
    (uid, gid) appear owned by ``user``, and files ``user`` creates are owned by ``owner`` on disk."""
    nsfd = _mapping(owner, user)
    tree = _check(
        _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, source.encode(), OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE),
        "open_tree", source,
    )
    try:
        attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, nsfd)
        _check(
            _libc.syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)),
            "mount_setattr(MOUNT_ATTR_IDMAP)", source,
        )
        os.makedirs(target, exist_ok=True)
        _check(
            _libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH),
            "move_mount", target,
        )
    finally:
        os.close(tree)


def unmount(target: str) -> None:
    """Detach the mount at ``target`` (lazily: a process still in it keeps its view) and remove
    the directory."""
    if _libc.umount2(target.encode(), MNT_DETACH) < 0 and ctypes.get_errno() not in (22, 2):  # EINVAL, ENOENT
        errno = ctypes.get_errno()
        raise OSError(errno, f"umount {target}: {os.strerror(errno)}")
    try:
        os.rmdir(target)
    except OSError:
        pass


def supported(scratch: str) -> str | None:
    """None if idmapped bind mounts work for directories under ``scratch``; else why not."""
    if os.geteuid() != 0:
        return "idmapped mounts need root"
    probe = os.path.join(scratch, ".idmap-probe")
    source, target = probe + "-source", probe + "-target"
    os.makedirs(source, exist_ok=True)
    try:
        idmapped_bind(source, target, (os.stat(source).st_uid, os.stat(source).st_gid), (54321, 54321))
        mapped = os.stat(target).st_uid == 54321
        unmount(target)
        return None if mapped else "the idmapped mount did not map ownership"
    except OSError as exn:
        return str(exn)
    finally:
        try:
            os.rmdir(source)
        except OSError:
            pass


# -- what a stack killed outright leaves ------------------------------------------------------------
# A stack unmounts a task's idmapped mounts as the task ends, and every one as it stops; killed
# outright (``kill -9``, a crash) it unmounts nothing, and its mounts stay in the machine's mount
# table until a reboot. Each stack names itself in its ``idmapped/`` folder (``claim``), and the
# next stack to mount one (any state folder) unmounts those of stacks that are gone (``sweep``).

#: the file in a stack's ``idmapped/`` folder naming the process whose tasks' mounts are there
OWNER_FILE = "owner"


def process_started(pid: int) -> str | None:
    """When process ``pid`` started (its start time in clock ticks since boot, /proc/<pid>/stat's
    22nd field: a pid used again later has another), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # (after the command's name, which may hold spaces)
    return fields[19]


def claim(folder: str) -> None:
    """Name this process as the owner of the mounts under ``folder`` (a stack's ``idmapped/``)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, OWNER_FILE), "w") as outfile:
        outfile.write(f"{os.getpid()} {process_started(os.getpid())}\n")


def owner_gone(folder: str) -> bool:
    """Whether ``folder``'s owner file names a process that has ended (False without one: a
    folder no stack claimed is left alone)."""
    try:
        with open(os.path.join(folder, OWNER_FILE)) as infile:
            pid, started = infile.read().split()
    except (OSError, ValueError):
        return False
    return process_started(int(pid)) != started


def mount_points(mountinfo: str) -> list[str]:
    """The mount points of a mount table in /proc/<pid>/mountinfo's format (its 5th field, with
    the octal escapes of space, tab, newline and backslash undone: proc(5))."""
    points = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return points


#: a task's idmapped mount: ``<state folder>/idmapped/<task id>/<index>``
_TASK_MOUNT = re.compile(r"^(?P<folder>/.*/idmapped)/(?P<task>[^/]+)/\d+$")


def sweep(mountinfo: str | None = None) -> list[str]:
    """Unmount the idmapped mounts of tasks of stacks that are gone (their folder's owner ended),
    and remove their task folders once empty (never a folder's content: a mount left there would
    be the run's EFS directory); the mount points unmounted. A failure is left for the next sweep."""
    if mountinfo is None:
        with open("/proc/self/mountinfo") as infile:
            mountinfo = infile.read()
    swept = []
    gone: dict[str, bool] = {}
    for point in mount_points(mountinfo):
        found = _TASK_MOUNT.match(point)
        if found is None:
            continue
        folder = found.group("folder")
        if folder not in gone:
            gone[folder] = owner_gone(folder)
        if not gone[folder]:
            continue
        try:
            unmount(point)
        except OSError:
            continue
        swept.append(point)
    for task_folder in {os.path.dirname(point) for point in swept}:
        try:
            os.rmdir(task_folder)
        except OSError:  # (not empty: a mount of it still there)
            pass
    return swept
