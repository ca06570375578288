"""A process's identity as the kernel shows it: what the sandbox tests compare between the ways
a task's uid, groups and capabilities are set up (``setpriv``/``unshare`` and ``remount``'s own)."""

#: the lines of /proc/self/status that make a process's identity
IDENTITY = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")
#: a command printing them, and whether the process may call setgroups (a user namespace's "deny")
SHOW = ["sh", "-c", "grep -E '^(" + "|".join(IDENTITY) + "):' /proc/self/status; echo setgroups: $(cat /proc/self/setgroups)"]


def shown(output: str) -> dict[str, str]:
    """What ``SHOW`` printed, by name."""
    return dict(line.split(":", 1) for line in output.splitlines())
