"""Local mode without a container engine: WDL tasks as host processes, but strictly.

A host process is far kinder than Fargate: it could write anywhere as the user running local
mode. Here a WDL task's command runs in a private mount namespace whose root is the host's, read-
only (every mount remounted ``ro``, except ``/proc``); the task's EFS volumes are bind-mounted
writable at their container paths; ``/tmp``, ``/var/tmp`` and ``/dev/shm`` are private tmpfs (a
container's own scratch); local mode's own state (the local EFS with every run's directory, moto's
data) is hidden under an empty read-only tmpfs, so a task reaches no other run by its host path;
and the command runs as an unprivileged user with no capabilities:

- ``setpriv`` (local mode runs as root and the kernel has idmapped mounts): the command runs as a
  uid of its own (``MINIWDL_FARGATE_LOCAL_TASK_UID``, default the first uid >= 1000 that the
  host's passwd does not name) with no capability in any set and no new privileges (what
  ``setpriv`` sets up; the one-process setup does it itself, ``remount.become``), and each EFS
  volume is an idmapped mount on which that uid acts as the owner of the local EFS directory (the
  access point's POSIX user; see ``idmap``).
- ``userns`` (otherwise, where user namespaces are allowed): the command runs in a user namespace
  as uid/gid 1000 mapped onto the user running local mode, without capabilities (what ``unshare
  --user`` sets up; the one-process setup does it itself, ``remount.user_namespace``); on disk its
  files belong to that user, as they would to the access point's user.

Only util-linux (``unshare``, ``mount``, ``findmnt``, ``pivot_root``, ``setpriv``) is needed, and
the running Python: a task's sandbox, and the machine probe's (which reports what stays writable),
is set up in one process (``remount.py sandbox``: mount(2), pivot_root(2) and umount2(2) calls,
the identity, then exec); where pivot_root's system call number is not known, by a shell script
doing the same with one process per step (``strict_script``, ``remount_loop``).
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import subprocess
import sys
from dataclasses import dataclass

from .remount import PIVOT_ROOT_SYSCALL

TASK_UID_ENV = "MINIWDL_FARGATE_LOCAL_TASK_UID"
APPARENT_UID = 1000  # what `id -u` says in userns mode, like a typical non-root image
NEW_ROOT = "/mnt/.root"
OLD_ROOT = "/mnt/.old"
SCRATCH = ("tmp", "var/tmp", "dev/shm")
#: what an interpreter adds to its environment when it starts without a UTF-8 locale (PEP 538's
#: locale coercion, which ``-I`` cannot turn off): taken out before the command runs
COERCED = ("LC_CTYPE",)
#: the one-process remount of a task's sandbox (run with this interpreter, ``-I -S``)
REMOUNT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "remount.py")


def free_uid(start: int = 1000) -> int:
    """The first uid from ``start`` that the host's passwd does not name."""
    uid = start
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


@dataclass
class Identity:
    """How the sandboxed command gets its uid: ``setpriv`` (a real unprivileged uid) or
    ``userns`` (a uid in a user namespace)."""

    mode: str
    uid: int
    gid: int

    def exec_prefix(self) -> list[str]:
        if self.mode == "setpriv":
            return [
                "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            ]
        return ["unshare", "--user", f"--map-user={self.uid}", f"--map-group={self.gid}", "--"]


def check_mounts(mounts: list[tuple[str, str]]) -> None:
    for container_path, _host in mounts:
        if not container_path.startswith("/mnt/") or "/." in container_path:
            raise ValueError(f"local mode mounts volumes under /mnt only, not {container_path}")


def strict_script(
    mounts: list[tuple[str, str]], identity: Identity, report: bool = False, hidden: tuple[str, ...] = ()
) -> str:
    """The shell script (run as root of a private mount namespace) that builds the sandbox and
    execs ``"$@"`` in it. ``mounts``: (container path, host path), container paths under /mnt.
    ``report``: say on stderr which mounts could not be made read-only. ``hidden``: host
    directories the task must not see (each covered by an empty read-only tmpfs)."""
    q = shlex.quote
    lines = [
        "set -e",
        "mount -t tmpfs -o mode=0755 tmpfs /mnt",
        f"mkdir -p {NEW_ROOT} {OLD_ROOT}",
    ]
    check_mounts(mounts)
    for container_path, _host in mounts:
        lines.append(f"mkdir -p {q(container_path)}")
    lines.append(f"mount --rbind / {NEW_ROOT}")
    if report:
        lines += remount_loop(report, hidden)
    else:  # (a task's: the same in one process, not one ``mount`` per mount: ``remount``)
        lines.append(shlex.join([sys.executable, "-I", "-S", REMOUNT, "remount,bind,ro", NEW_ROOT, *(os.path.realpath(p) for p in hidden)]))
    for path in hidden:  # (the binds below take their sources from the namespace's own root)
        target = q(NEW_ROOT + os.path.realpath(path))
        lines.append(f"if [ -d {target} ]; then mount -t tmpfs -o ro,mode=0555,size=4k tmpfs {target}; fi")
    for container_path, host_path in mounts:
        lines.append(f"mount --bind {q(host_path)} {q(NEW_ROOT + container_path)}")
    for scratch in SCRATCH:
        lines.append(f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {NEW_ROOT}/{scratch}")
    lines += [
        f"cd {NEW_ROOT}",
        f"pivot_root . {OLD_ROOT.lstrip('/')}",
        f"umount -l {OLD_ROOT}",
        'cd "${SANDBOX_CWD:-/}"',
        'unset SANDBOX_CWD',
        "exec " + shlex.join(identity.exec_prefix()) + ' "$@"',
    ]
    return "\n".join(lines) + "\n"


def remount_loop(report: bool, hidden: tuple[str, ...] = ()) -> list[str]:
    """Shell lines making every mount of the new root read-only, one ``mount`` process each
    (what ``remount`` does in one process; run where pivot_root's system call number is not
    known and what stays writable is to be reported: the machine probe there)."""
    q = shlex.quote
    return [
        # every mount of the new root read-only, keeping its other flags (a user namespace may
        # not drop nosuid/nodev); /proc stays as it is (the user namespace maps are written there)
        # (one sed drops every mount's "rw" option, rather than one per mount: a task's setup
        # forks once per mount only for its mount command)
        f"findmnt -rno TARGET,VFS-OPTIONS --submounts --mountpoint {NEW_ROOT} | sort -r |"
        r" sed -e 's/^\([^ ]*\) rw,/\1 /; s/^\([^ ]*\) \(.*\),rw,/\1 \2,/; s/^\([^ ]*\) rw$/\1 /' |"
        " while read -r target options; do",
        f'  case "$target" in {NEW_ROOT}/proc|{NEW_ROOT}/proc/*) continue;; esac',
        # (findmnt -r writes a space, a tab... as \x20: decoded, only where there is one)
        '  case "$target" in *\\\\*) target=$(printf %b "$target");; esac',
        # (a mount under a hidden folder is out of sight under its tmpfs: not one remount each; the
        # idmapped mounts of every running task are there, so a task's setup does not grow with them)
        *(f'  case "$target" in {q(NEW_ROOT + os.path.realpath(path))}|{q(NEW_ROOT + os.path.realpath(path))}/*) continue;; esac'
          for path in hidden),
        '  mount -o "remount,bind,ro${options:+,$options}" "$target" 2>/dev/null'
        + (f' || echo "sandbox: not read-only: ${{target#{NEW_ROOT}}}" >&2' if report else " || true"),
        "done",
    ]


@dataclass
class StrictSandbox:
    """Runs a command in the sandbox, inside ``prefix`` (a private mount namespace)."""

    prefix: list[str]
    identity: Identity
    #: mounts the sandbox could not make read-only (found by the probe)
    writable: list[str]

    def wrap(
        self, mounts: list[tuple[str, str]], argv: list[str], report: bool = False, hidden: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> list[str]:
        """The command line that runs ``argv`` in the sandbox, set up by one Python process
        (``remount.py sandbox``: a dozen fewer processes per task than the shell script, which
        only machines without a known pivot_root system call number use). ``report``: say on
        stderr which mounts stay writable (the machine probe's)."""
        if not self.set_up_in_python:
            return self.prefix + ["sh", "-c", strict_script(mounts, self.identity, report, hidden), "sandbox", *argv]
        return self.in_new_process(self.setup(mounts, hidden, report, env), argv)

    def in_new_process(self, spec: dict, argv: list[str]) -> list[str]:
        """The command line of a new process that sets the sandbox ``spec`` says up (``setup``)
        and runs ``argv`` in it."""
        return self.prefix + [sys.executable, "-I", "-S", REMOUNT, "sandbox", json.dumps(spec), "--", *argv]

    @property
    def set_up_in_python(self) -> bool:
        """Whether ``remount.sandbox`` can set a task's sandbox up here (it knows pivot_root's
        system call number on this machine)."""
        return os.uname().machine in PIVOT_ROOT_SYSCALL  # (what platform.machine() says)

    def setup(
        self, mounts: list[tuple[str, str]], hidden: tuple[str, ...] = (), report: bool = False,
        env: dict[str, str] | None = None,
    ) -> dict:
        """The spec ``remount.sandbox`` takes to set the sandbox up in the private mount namespace
        ``prefix`` makes, the command's identity included. ``env``: the command's environment,
        where known (the variables an interpreter may add to it are taken out again: ``COERCED``)."""
        check_mounts(mounts)
        spec = {
            "new_root": NEW_ROOT, "old_root": OLD_ROOT, "mounts": [list(m) for m in mounts], "hidden": list(hidden),
            "scratch": list(SCRATCH), "report": report,
            "unset": [name for name in COERCED if env is not None and name not in env],
        }
        # the identity's setpriv or unshare, done by the same process (remount.become, user_namespace)
        spec["become" if self.identity.mode == "setpriv" else "user_namespace"] = [self.identity.uid, self.identity.gid]
        return spec

    @classmethod
    def detect(cls, prefix: list[str], idmap_problem: str | None) -> tuple["StrictSandbox | None", str]:
        """The strictest sandbox this machine allows inside ``prefix``, and what it leaves
        unenforced ('' if nothing). ``idmap_problem``: why idmapped mounts cannot be used, or None."""
        running_as_root = os.geteuid() == 0 and "--user" not in prefix
        candidates = []
        if running_as_root and idmap_problem is None:
            uid = int(os.environ.get(TASK_UID_ENV) or free_uid())
            candidates.append(Identity("setpriv", uid, uid))
        candidates.append(Identity("userns", APPARENT_UID, APPARENT_UID))
        failures = []
        for identity in candidates:
            sandbox = cls(prefix, identity, [])
            probe = subprocess.run(
                sandbox.wrap([], ["sh", "-c", "test $(id -u) != 0 && ! touch /.sandbox-probe 2>/dev/null"], report=True),
                capture_output=True, text=True, stdin=subprocess.DEVNULL,
            )
            if probe.returncode == 0:
                sandbox.writable = [
                    line.split(": ", 2)[2] or "/" for line in probe.stderr.splitlines() if line.startswith("sandbox: not read-only")
                ]
                why = idmap_problem or "; ".join(failures)  # (why a uid of its own is not used)
                return sandbox, sandbox.caveats(why if running_as_root else None)
            failures.append(f"{identity.mode}: {(probe.stderr.strip().splitlines() or ['failed'])[-1]}")
        return None, "; ".join(failures)

    def caveats(self, why_not_setpriv: str | None) -> str:
        """What the sandbox leaves unenforced. ``why_not_setpriv``: why, as root, the command does
        not run as a uid of its own (idmapped mounts unavailable, or that identity's probe failed)."""
        said = []
        if self.identity.mode == "userns" and os.geteuid() == 0:
            why = why_not_setpriv or "local mode's namespaces are made in a user namespace here"
            said.append(
                "tasks run as uid 0 of the host without capabilities, shown as uid 1000 in a user "
                f"namespace (not as a uid of their own: {why})"
            )
        if self.writable:
            said.append("still writable: " + ", ".join(self.writable))
        return "; ".join(said)
