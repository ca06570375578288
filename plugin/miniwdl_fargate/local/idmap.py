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
import stat as stat_module
import subprocess
import threading
import time

from . import owners, remount

SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442  # x86_64 and arm64 alike
OPEN_TREE_CLONE = 1
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_IDMAP = 0x00100000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MNT_DETACH = 2

_libc = remount.libc()

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
# table until a reboot. Each stack mounts under a folder of its own, ``<state>/idmapped/<pid>-<start>``,
# with an owner file holding its identity (``claim``, ``owners``); the next stack to mount one
# unmounts those of stacks that are gone (``sweep``). Only what is surely such a mount is touched: an idmapped mount (the
# kernel says so in the mount table; only root makes one) at ``<stack folder>/<task>/<index>``,
# whose folder's owner file is root's own regular file naming a process of this boot and of this
# PID namespace that has ended. Anything else (another PID namespace's stack, a folder without an
# owner, a file that cannot be read) is left as it is.

#: the file in a stack's folder of idmapped mounts naming the stack
OWNER_FILE = "owner"
#: umount2(2): do not follow a symbolic link at the mount point
UMOUNT_NOFOLLOW = 8


def claim(base: str) -> str:
    """This stack's own folder of idmapped mounts under ``base`` (a state folder's ``idmapped/``),
    made, with its owner file holding this process's ``owners.identity``."""
    own = owners.identity()
    pid, started = own.split()[:2]
    folder = os.path.join(base, f"{pid}-{started}")
    os.makedirs(folder, exist_ok=True)
    part = os.path.join(folder, OWNER_FILE + ".part")
    with open(part, "w") as outfile:
        outfile.write(own + "\n")
    os.replace(part, os.path.join(folder, OWNER_FILE))
    return folder


def release(folder: str) -> None:
    """Remove a stack's folder of idmapped mounts (``claim``) as it stops, if none is left in it."""
    try:
        if not any(entry.is_dir(follow_symlinks=False) for entry in os.scandir(folder)):
            os.unlink(os.path.join(folder, OWNER_FILE))
            os.rmdir(folder)
    except OSError:
        pass


def owner_gone(folder: str) -> bool:
    """Whether ``folder``'s owner file surely names a process that has ended: root's regular
    file (never a link, never one whose reading could block), of this boot and PID namespace.
    False wherever that cannot be told."""
    try:
        fd = os.open(os.path.join(folder, OWNER_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat_module.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_size > 4096:
            return False
        return owners.gone(os.read(fd, 4096).decode())
    except (OSError, ValueError):
        return False
    finally:
        os.close(fd)


def mounts(mountinfo: str) -> list[tuple[str, set[str]]]:
    """The mount points of a mount table in /proc/<pid>/mountinfo's format (its 5th field, the
    octal escapes of space, tab, newline and backslash undone: proc(5)), each with its per-mount
    options (6th field: ``idmapped`` among them for an idmapped mount)."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) > 5:
            found.append((remount.unescape(fields[4]), set(fields[5].split(","))))
    return found


#: a task's idmapped mount: ``<state folder>/idmapped/<stack>/<task id>/<index>``
_TASK_MOUNT = re.compile(r"^(?P<stack>/.*/idmapped/[^/]+)/(?P<task>[^/]+)/\d+$")


def sweep(mountinfo: str | None = None) -> list[str]:
    """Unmount the idmapped task mounts of stacks that are gone (``owner_gone``) and remove their
    folders as they empty (never what is in them: a mount left there would be a run's EFS
    directory); the mount points unmounted. ``mountinfo``: the mount table to look in (this
    process's by default). A mount that cannot be unmounted is left for the next sweep."""
    if mountinfo is None:
        with open("/proc/self/mountinfo", "rb") as infile:
            mountinfo = os.fsdecode(infile.read())  # (a path of any bytes: surrogate escapes)
    swept: list[str] = []
    gone: dict[str, bool] = {}
    for point, options in mounts(mountinfo):
        found = _TASK_MOUNT.match(point)
        if found is None or "idmapped" not in options:
            continue
        stack = found.group("stack")
        if stack not in gone:
            gone[stack] = owner_gone(stack)
        if gone[stack] and _libc.umount2(os.fsencode(point), MNT_DETACH | UMOUNT_NOFOLLOW) == 0:
            swept.append(point)
    tasks = {os.path.dirname(point) for point in swept}
    for empty in [*swept, *tasks]:  # (each folder removed only once empty)
        try:
            os.rmdir(empty)
        except OSError:
            pass
    for stack in {os.path.dirname(task) for task in tasks}:
        release(stack)
    return swept
