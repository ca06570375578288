"""The strict sandbox's setup in one process (``python -I -S remount.py sandbox SPEC -- COMMAND``,
see ``sandbox``), and every mount under a new root made read-only, in one process: ``python -I -S
remount.py remount,bind,ro ROOT HIDDEN...`` (run by the strict sandbox's script, as root of its
mount namespace, before it pivots into ROOT; standard library only, no imports of the package). The
first argument is the remount's options as ``mount -o`` takes them (``OPTIONS``), to which each
mount's own flags are added.

The sandbox's shell loop does the same with one ``mount -o remount,bind,ro,...`` process per
mount (``sandbox.remount_loop``, which ``strict_script`` runs where pivot_root's system call
number is unknown and the machine probe's report is wanted): about 2 ms of CPU each, 20 to 30 a
task, most of a short task's cost. Here it is one
mount(2) call each. Like the loop it skips ROOT/proc (the user namespace maps are written there)
and anything under a HIDDEN folder (covered by its own tmpfs), works deepest mount first, and
keeps each mount's other flags (nosuid, nodev, noexec, the atime flags: in a user namespace they
are locked and a remount that changed them would be refused, mount(2), "MS_REMOUNT" and
mount_namespaces(7), "Restrictions on mount namespaces"). A mount that cannot be made read-only
is left as it is, as the loop leaves it.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import signal
import sys
import warnings  # noqa: F401 (os.execvp imports it: done before ``become``, which may leave no way to the standard library)

MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096  # <sys/mount.h>
#: the options the first argument may name
OPTIONS = {"remount": MS_REMOUNT, "bind": MS_BIND, "ro": MS_RDONLY}
#: per-mount options (/proc/self/mountinfo, field 6) and their mount(2) flags
KEPT = {
    "nosuid": 2, "nodev": 4, "noexec": 8, "nosymfollow": 256, "noatime": 1024, "nodiratime": 2048,
    "relatime": 1 << 21, "strictatime": 1 << 24,
}


#: an octal escape of a mountinfo path (compiled once, in the fork server, not in each task)
ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes are written as octal escapes."""
    return ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field) if "\\" in field else field


def targets(mountinfo: str, root: str, hidden: list[str], flags_asked: int) -> list[tuple[str, int]]:
    """(mount point, flags of its remount: ``flags_asked`` and the mount's own) of every mount at
    or under ``root`` but ROOT/proc and the hidden folders' contents, deepest first."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        target = unescape(fields[4])
        if target != root and not target.startswith(root + "/"):
            continue
        if any(target == skip or target.startswith(skip + "/") for skip in [root + "/proc", *hidden]):
            continue
        flags = flags_asked
        for option in fields[5].split(","):
            flags |= KEPT.get(option, 0)
        found.append((target, flags))
    return sorted(set(found), reverse=True)


#: pivot_root(2) has no C library wrapper: its system call number on the machines local mode runs on
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE, MNT_DETACH = 2, 4, 16384, 1 << 18, 2
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000  # <sched.h>
#: <linux/prctl.h>, <linux/capability.h>
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library's functions, as this process has them loaded (no search for the library:
    ``ctypes.util.find_library`` runs ``ldconfig``, a program, at each call), once per process
    (a fork server's children inherit it)."""
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, kind: str | None, flags: int, data: str | None) -> None:
    """mount(2), raising OSError (naming the target) where it fails."""
    encoded = [v.encode() if isinstance(v, str) else v for v in (source, target, kind, data)]
    _check(libc().mount(encoded[0], encoded[1], encoded[2], flags, encoded[3]), f"mount {target}")


def remount_all(root: str, hidden: list[str], flags: int) -> list[str]:
    """Every mount at or under ``root`` (but ``targets`` leaves out) remounted with ``flags`` and
    its own; the mounts that refused, which stay as they were."""
    with open("/proc/self/mountinfo") as listing:
        found = targets(listing.read(), root, hidden, flags)
    lib = libc()
    return [target for target, own in found if lib.mount(None, target.encode(), None, own, None) != 0]


def private_namespace(as_user: bool = False) -> None:
    """This process into a mount namespace of its own whose mounts propagate nowhere: what
    ``unshare --mount --propagation private`` gives the program it runs (unshare(2), mount(2)
    MS_PRIVATE; mount_namespaces(7), "Shared subtrees"), as root. ``as_user`` (local mode not run
    as root): into a user namespace of its own too, as its root, mapped onto the user and group
    it runs as, which may then mount there: what ``unshare --user --map-root-user --mount
    --propagation private`` gives (unshare(2): with CLONE_NEWUSER, the user namespace is made
    first and owns the new mount namespace)."""
    if not as_user:
        _check(libc().unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    else:
        outer_uid, outer_gid = os.geteuid(), os.getegid()
        _check(libc().unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER | CLONE_NEWNS)")
        _map_ids((0, outer_uid), (0, outer_gid))
    mount("none", "/", None, MS_REC | MS_PRIVATE, None)


def become(uid: int, gid: int) -> None:
    """This process (root) becomes ``uid``:``gid`` with no supplementary group, no capability in
    any set and no way to gain one: what ``setpriv --reuid=UID --regid=GID --clear-groups
    --inh-caps=-all --bounding-set=-all --no-new-privs`` does before it execs, without its exec.
    The bounding set is emptied first, while CAP_SETPCAP is held (prctl(2), PR_CAPBSET_DROP); the
    inheritable set by capset(2); leaving uid 0 for another then clears the permitted, effective
    and ambient sets (capabilities(7), "Effect of user ID changes on capabilities")."""
    lib = libc()
    with open("/proc/sys/kernel/cap_last_cap") as found:
        last = int(found.read())
    for cap in range(last + 1):
        _check(lib.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"prctl(PR_CAPBSET_DROP, {cap})")
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    sets = (ctypes.c_uint32 * 6)()  # two of {effective, permitted, inheritable}: 64 bits each
    _check(lib.capget(header, sets), "capget")
    sets[2] = sets[5] = 0
    _check(lib.capset(header, sets), "capset")
    _check(lib.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _check(lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def user_namespace(uid: int, gid: int) -> None:
    """This process into a user namespace of its own as ``uid``:``gid``, mapped onto the user and
    group it runs as: what ``unshare --user --map-user=UID --map-group=GID`` does before it execs
    ("deny" to setgroups, then one line to each map: user_namespaces(7), "User and group ID
    mappings"). Its exec then leaves it no capability in effect, as it runs as a uid other than
    the namespace's root (capabilities(7), "Transformation of capabilities during execve()")."""
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    _check(libc().unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
    _map_ids((uid, outer_uid), (gid, outer_gid))


def _map_ids(user: tuple[int, int], group: tuple[int, int]) -> None:
    """This process's new user namespace's one user and one group: (id inside, id outside) each
    ("deny" to setgroups first, which an unprivileged process must write before its gid_map:
    user_namespaces(7), "User and group ID mappings" and "Interaction with system calls that
    change process UIDs or GIDs")."""
    for name, line in (("setgroups", "deny"), ("uid_map", "%d %d 1" % user), ("gid_map", "%d %d 1" % group)):
        with open(f"/proc/self/{name}", "w") as out:
            out.write(line)


def sandbox(spec: dict, argv: list[str]) -> int:
    """``python -I -S remount.py sandbox SPEC -- COMMAND...``: the strict sandbox's setup
    (``sandbox.strict_script``, what its shell script does with a dozen processes) in this one
    process, as root of a new mount namespace, then exec COMMAND in it. SPEC (JSON): ``new_root``,
    ``old_root``, ``mounts`` ([container path, host path]), ``hidden`` (host folders covered by an
    empty read-only tmpfs), ``scratch`` (folders of the new root given a private tmpfs), ``report``
    (say on stderr which mounts stay writable: ``sandbox: not read-only: PATH``, as the probe's
    script says it), ``unset`` (variables the command's environment must not have: this
    interpreter may have added them), ``become`` ([uid, gid] the command runs as: ``become``) or
    ``user_namespace`` ([uid, gid] it runs as in a user namespace: ``user_namespace``)."""
    lib = libc()
    new_root, old_root = spec["new_root"], spec["old_root"]
    mount("tmpfs", "/mnt", "tmpfs", 0, "mode=0755")
    os.makedirs(new_root, exist_ok=True)
    os.makedirs(old_root, exist_ok=True)
    for container_path, _host in spec["mounts"]:
        os.makedirs(container_path, exist_ok=True)
    mount("/", new_root, None, MS_BIND | MS_REC, None)
    hidden = [os.path.realpath(path) for path in spec["hidden"]]
    writable = remount_all(new_root, [new_root + path for path in hidden], MS_REMOUNT | MS_BIND | MS_RDONLY)
    for target in writable if spec.get("report") else ():
        print(f"sandbox: not read-only: {target[len(new_root):]}", file=sys.stderr)
    for path in hidden:  # (the binds below take their sources from the namespace's own root)
        if os.path.isdir(new_root + path):
            mount("tmpfs", new_root + path, "tmpfs", MS_RDONLY, "mode=0555,size=4k")
    for container_path, host_path in spec["mounts"]:
        mount(host_path, new_root + container_path, None, MS_BIND, None)
    for scratch in spec["scratch"]:
        mount("tmpfs", f"{new_root}/{scratch}", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    os.chdir(new_root)
    _check(lib.syscall(PIVOT_ROOT_SYSCALL[os.uname().machine], b".", old_root.lstrip("/").encode()), "pivot_root")
    _check(lib.umount2(old_root.encode(), MNT_DETACH), f"umount {old_root}")
    os.chdir(os.environ.pop("SANDBOX_CWD", "") or "/")
    for name in spec.get("unset", []):  # (what this interpreter added: LC_CTYPE, PEP 538's locale coercion)
        os.environ.pop(name, None)
    # the command gets the signal dispositions a container's process starts with, not Python's
    # (it ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec:
    # signal(7), "Signal disposition"; subprocess's restore_signals does the same for its children)
    for name in ("SIGPIPE", "SIGXFSZ"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    if spec.get("become"):
        become(*spec["become"])
    elif spec.get("user_namespace"):
        user_namespace(*spec["user_namespace"])
    try:
        os.execvp(argv[0], argv)
    except OSError as exn:  # (as a shell, setpriv or unshare says it: 127 not found, 126 not runnable)
        print(f"sandbox: cannot run {argv[0]}: {exn.strerror}", file=sys.stderr)
        return 127 if exn.errno == errno.ENOENT else 126
    return 127  # (not reached: exec replaced this process)


def enter_sandbox(spec: dict, argv: list[str]) -> int:
    """``sandbox``, or 1, having said on stderr why it failed (returns only then)."""
    try:
        return sandbox(spec, argv)
    except OSError as exn:
        print(f"sandbox: {exn}", file=sys.stderr)
        return 1


def main(argv: list[str]) -> int:
    if argv[1] == "sandbox":
        import json

        return enter_sandbox(json.loads(argv[2]), argv[argv.index("--") + 1:])
    options, root, hidden = argv[1].split(","), argv[2], [argv[2] + path for path in argv[3:]]
    unknown = [option for option in options if option not in OPTIONS]
    if unknown:
        print(f"remount: unknown options {unknown}", file=sys.stderr)
        return 2
    flags = 0
    for option in options:
        flags |= OPTIONS[option]
    remount_all(root, hidden, flags)  # (a mount that refuses stays as it is)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
