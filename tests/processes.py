"""Which processes are still about: those naming a folder (a stack's state, a session's
temporary folder) in their command line, working directory or environment; and a pid no process
has any more."""

import os
import subprocess


def ancestors() -> set[int]:
    """This process and the ones it was started under (its parent, theirs, ...)."""
    import psutil

    return {os.getpid(), *(parent.pid for parent in psutil.Process().parents() if parent.pid > 1)}


def processes_naming(folder: str | os.PathLike) -> dict[int, str]:
    """The processes but this one and those it was started under (``pytest --basetemp=FOLDER``
    run by ``timeout`` or ``make``: they name the folder too) whose command line, working
    directory or environment names ``folder``: pid -> command line."""
    folder = str(folder)
    found, needle = {}, folder.encode()
    skip = ancestors()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as infile:
                cmdline = infile.read()
            cwd = os.readlink(f"/proc/{name}/cwd")
            with open(f"/proc/{name}/environ", "rb") as infile:
                environ = infile.read()
        except OSError:  # (ended meanwhile, a zombie, or not ours to read)
            continue
        if needle in cmdline or needle in environ or cwd == folder or cwd.startswith(folder + os.sep):
            found[int(name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()[:300]
    return found


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
