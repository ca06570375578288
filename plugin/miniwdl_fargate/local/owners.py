"""Which local stack something it leaves behind belongs to, and whether that stack is gone.

A stack cleans up as it stops (its tasks' idmapped mounts unmounted, their containers removed);
killed outright (``kill -9``, a crash) it cleans nothing, and what it left would stay: idmapped
mounts in the machine's mount table until a reboot, containers in the engine's list for ever. So
each stack marks what it leaves with its ``identity``, and the next stack removes what belongs
to a stack that is ``gone`` (``idmap.sweep``, ``containers.Engine.sweep``). An identity is a
process's pid and start time (a pid used again later has another start time), its PID namespace
and the machine's boot: a pid means something only in both, and a stack of another namespace or
an earlier boot is never judged gone (its leftovers stay, as before)."""

from __future__ import annotations

import os


def process_started(pid: int | str) -> str | None:
    """When process ``pid`` ("self": this one) started: its start time in clock ticks since
    boot, /proc/<pid>/stat's 22nd field; None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rindex(b")") + 2:].split()  # (after the command's name, which may hold anything)
    return fields[19].decode()


def _context() -> tuple[str, str]:
    """This process's PID namespace and the machine's boot."""
    with open("/proc/sys/kernel/random/boot_id") as boot:
        return os.readlink("/proc/self/ns/pid"), boot.read().strip()


def identity() -> str:
    """This process's identity: ``<pid> <start time> <PID namespace> <boot id>``."""
    started = process_started("self")
    if started is None:
        raise OSError("cannot read /proc/self/stat")
    return " ".join((str(os.getpid()), started, *_context()))


def gone(stated: str) -> bool:
    """Whether the process an identity names has surely ended: one of this boot and PID
    namespace whose pid no process has, or a process started at another time has. False for
    anything that cannot be told (another namespace or boot, an identity that does not parse, a
    process whose start cannot be read: another user's, where /proc hides it)."""
    try:
        pid, started, namespace, boot = stated.split()
        if (namespace, boot) != _context():
            return False
        os.kill(int(pid), 0)  # (signal 0: whether the pid is there at all)
    except ProcessLookupError:
        return True
    except PermissionError:  # (there: another user's)
        pass
    except (OSError, ValueError):
        return False
    now = process_started(int(pid))
    return now is not None and now != started
