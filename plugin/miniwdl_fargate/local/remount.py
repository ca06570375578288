"""Every mount under a new root made read-only, in one process: ``python -I -S remount.py
remount,bind,ro ROOT HIDDEN...`` (run by the strict sandbox's script, as root of its mount
namespace, before it pivots into ROOT; standard library only, no imports of the package). The
first argument is the remount's options as ``mount -o`` takes them (``OPTIONS``), to which each
mount's own flags are added.

The sandbox's shell loop does the same with one ``mount -o remount,bind,ro,...`` process per
mount (``sandbox.strict_script`` keeps it for the machine probe, which reports what stays
writable): about 2 ms of CPU each, 20 to 30 a task, most of a short task's cost. Here it is one
mount(2) call each. Like the loop it skips ROOT/proc (the user namespace maps are written there)
and anything under a HIDDEN folder (covered by its own tmpfs), works deepest mount first, and
keeps each mount's other flags (nosuid, nodev, noexec, the atime flags: in a user namespace they
are locked and a remount that changed them would be refused, mount(2), "MS_REMOUNT" and
mount_namespaces(7), "Restrictions on mount namespaces"). A mount that cannot be made read-only
is left as it is, as the loop leaves it.
"""

from __future__ import annotations

import ctypes
import re
import sys

MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096  # <sys/mount.h>
#: the options the first argument may name
OPTIONS = {"remount": MS_REMOUNT, "bind": MS_BIND, "ro": MS_RDONLY}
#: per-mount options (/proc/self/mountinfo, field 6) and their mount(2) flags
KEPT = {
    "nosuid": 2, "nodev": 4, "noexec": 8, "nosymfollow": 256, "noatime": 1024, "nodiratime": 2048,
    "relatime": 1 << 21, "strictatime": 1 << 24,
}


def unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes are written as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


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


def main(argv: list[str]) -> int:
    options, root, hidden = argv[1].split(","), argv[2], [argv[2] + path for path in argv[3:]]
    unknown = [option for option in options if option not in OPTIONS]
    if unknown:
        print(f"remount: unknown options {unknown}", file=sys.stderr)
        return 2
    flags = 0
    for option in options:
        flags |= OPTIONS[option]
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/self/mountinfo") as listing:
        mounts = targets(listing.read(), root, hidden, flags)
    for target, flags in mounts:
        libc.mount(None, target.encode(), None, flags, None)  # (refused: it stays as it is)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
