"""Which processes are still about: those naming a folder (a stack's state, a session's
temporary folder) in their command line, working directory or environment; and a pid no process
has any more."""

import os
import signal
import subprocess
import threading
from collections.abc import Callable


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


#: what a thread asleep in the kernel can wait in: the kernel function /proc/<tid>/wchan names,
#: and, where wchan reads "0" (a kernel that hides its symbols), the number /proc/<tid>/syscall
#: begins with, by machine (futex; clock_nanosleep, which time.sleep calls)
WAITS = {
    "lock": ("futex", {"x86_64": 202, "aarch64": 98}),
    "sleep": ("nanosleep", {"x86_64": 230, "aarch64": 115}),
}


def asleep_in(native_id: int, waits: tuple[str, ...]) -> bool:
    """Whether thread ``native_id`` of this process sleeps in the kernel in one of ``waits``
    (``WAITS``): "lock", a Python lock's (or event's, queue's) wait, or the GIL's; "sleep",
    ``time.sleep``."""
    import platform

    task = f"/proc/self/task/{native_id}"
    with open(f"{task}/stat") as stat:
        if stat.read().rsplit(")", 1)[1].split()[0] != "S":
            return False
    with open(f"{task}/wchan") as wchan:
        where = wchan.read().strip()
    if where and where != "0":
        return any(WAITS[wait][0] in where for wait in waits)
    numbers = {str(WAITS[wait][1].get(platform.machine())) for wait in waits}
    if "None" in numbers:
        raise RuntimeError(
            f"cannot tell what thread {native_id} waits in: wchan reads {where!r}, and no syscall number for {platform.machine()}"
        )
    with open(f"{task}/syscall") as syscall:
        return syscall.read().split()[0] in numbers


def signal_while_the_main_thread_waits(
    signum: int, then: Callable[[], None] = lambda: None, waits: tuple[str, ...] = ("lock",)
) -> threading.Thread:
    """A thread that sends ``signum`` to itself alone once the main thread waits (in one of
    ``waits``: ``WAITS``), then calls ``then``: the signal lands where Python cannot run its
    handler, and the main thread's wait is not interrupted. The main thread is taken to wait once
    seen asleep there twice, a poll apart (asleep the first time for the GIL, it would have taken
    it meanwhile)."""
    from tests.waiting import wait_for

    main = os.getpid()  # (the main thread's id: threading's native_id is its parent's in a forked child)
    seen = []

    def waiting() -> bool:
        seen.append(asleep_in(main, waits))
        return seen[-2:] == [True, True]

    def run() -> None:
        wait_for(waiting, timeout=30, what=f"the main thread waiting ({' or '.join(waits)})", interval=0.02)
        signal.pthread_kill(threading.get_ident(), signum)
        then()

    thread = threading.Thread(target=run, name="signalled")
    thread.start()
    return thread
