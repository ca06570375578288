"""What runs one ECS task's container locally: a host process (``HostJob``) or a container of
the local engine (``ContainerJob``). The local Fargate runner drives either the same way: start,
wait, SIGTERM on StopTask, SIGKILL after the container's stopTimeout, and how it ended."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
from dataclasses import dataclass
from typing import Any, Callable

import psutil

from .forkserver import ForkServer, readable, reported_exit_code
from .containers import ContainerSpec, Engine, cgroup_hit_limit, engine_argv, remove_cgroup


@dataclass
class Outcome:
    """How a job ended: its exit code, whether it was killed for its memory, or why it never
    started (ECS's ``CannotStartContainerError``)."""

    exit_code: int | None
    out_of_memory: bool = False
    start_error: str = ""


#: Linux lists each thread's children in /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN;
#: https://www.kernel.org/doc/html/latest/filesystems/proc.html, "/proc/<pid>/task/<tid>/children")
CHILDREN_FILES = os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    if CHILDREN_FILES:  # (the runner asks four times a second per running task)
        return sum(resident_bytes(p) for p in descendants(pid))
    try:  # (psutil finds children by reading the parent of every process of the machine)
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(pid: int) -> int:
    """A process's resident set size (what psutil's ``memory_info().rss`` reads: the second
    field of /proc/<pid>/statm, in pages; proc(5)), without a psutil.Process, whose making reads
    the process's stat file first; 0 if it has ended."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


#: how long a job waits for a process it killed to be gone
STOP_WAIT_SECONDS = 10.0
#: guards the jobs' pidfds (opened, copied, closed)
_PIDFD_LOCK = threading.Lock()


def children(pid: int) -> list[int]:
    """The children of ``pid``, from the kernel's list of each of its threads' children (none if
    it has ended meanwhile)."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/children") as listing:
                found.extend(int(child) for child in listing.read().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from the kernel's lists of each thread's children
    (no scan of every process of the machine, which the runner would otherwise make four times
    a second per running task). A process that ends meanwhile is simply not there."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children(current))
    return found


class ProcessJob:
    """What both kinds of job are to the runner: one local process (the command, or the engine's
    ``run``) to start and wait for."""

    proc: subprocess.Popen | None = None
    #: the process's pidfd while it runs (-1: none yet or closed; None: not available here)
    _exit_fd: int | None = -1

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int | None:
        """The exit code once the process ended, else None after ``timeout`` seconds. Where the
        kernel has pidfds it returns the moment the process exits (``Popen.wait`` with a timeout
        looks every 50 ms at most, and wakes that often for as long as the task runs)."""
        assert self.proc is not None
        with _PIDFD_LOCK:  # (a stopping thread may wait too: each waits on a copy of the pidfd)
            fd = self._exit_pidfd()
            fd = None if fd is None else os.dup(fd)
        if fd is None:
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        try:
            exited = readable(fd, timeout)  # once the process has exited
        finally:
            os.close(fd)
        if not exited:
            return self.proc.returncode
        # (ended: reap it, or wait for the thread reaping it; ``poll`` would answer None then)
        code = self.proc.wait()
        with _PIDFD_LOCK:
            self._close_pidfd()
        return code

    def _exit_pidfd(self) -> int | None:
        """The process's pidfd (opened at first use), or None where there is none: no
        ``os.pidfd_open`` (Linux 5.3, Python 3.9), or the process was already reaped."""
        if self._exit_fd == -1 and self.proc is not None and self.proc.returncode is None:
            try:
                self._exit_fd = os.pidfd_open(self.proc.pid)
            except (AttributeError, OSError):
                self._exit_fd = None
        return self._exit_fd if self._exit_fd != -1 else None

    def _close_pidfd(self) -> None:
        if self._exit_fd not in (-1, None):
            os.close(self._exit_fd)
            self._exit_fd = -1


class HostJob(ProcessJob):
    """A container command as a host process (its own process group); the runner watches its
    memory, as Fargate's cgroup would."""

    watch_memory = True

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], cleanup: Callable[[], None] = lambda: None) -> None:
        self.argv, self.cwd, self.env, self._cleanup = argv, cwd, env, cleanup
        self.proc: subprocess.Popen | None = None
        self._killed_for_memory = False

    def start(self, output: Any) -> None:
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def _signal(self, sig: int) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def memory(self) -> int:
        return tree_rss(self.proc.pid) if self.proc is not None else 0

    def kill_for_memory(self) -> None:
        self._killed_for_memory = True
        self.kill()

    def finish(self, code: int, stop_requested: bool) -> Outcome:
        self._cleanup()
        # a command killed by signal N reports 128+N, as a container's would
        return Outcome(code if code >= 0 else 128 - code, out_of_memory=self._killed_for_memory)


log = logging.getLogger("miniwdl-fargate.local")


class ForkedJob(HostJob):
    """A host process forked from a fork server (``driver_zygote``, ``task_zygote``): ``request``
    says what the child becomes (and ``"what"``, how the log names it). The server is the child's
    parent; the job watches the child through its pidfd and learns its exit code from a status
    pipe the server writes when it reaps it. Where the server cannot fork, the job is the
    ``HostJob`` of ``argv`` (a fresh process)."""

    def __init__(
        self, server: Callable[[], ForkServer | None], request: dict, argv: list[str], cwd: str, env: dict[str, str],
        cleanup: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(argv, cwd, env, cleanup)
        self._server, self.request = server, request
        self.pid: int | None = None
        self._pidfd = self._status = -1
        self._code: int | None = None
        self._lock = threading.Lock()  # (the descriptors: a stop comes from another thread)

    def start(self, output: Any) -> None:
        server = self._server()
        what = self.request.get("what") or shlex.join(self.request["argv"])
        if server is not None:
            try:
                self.pid, self._pidfd, self._status = server.fork_watched(self.request, output.fileno())
                log.info("local mode: %s forked from its fork server as pid %d", what, self.pid)
                return
            except OSError as exn:
                log.warning("local mode: cannot fork %s (%s): starting a new process", what, exn)
        super().start(output)

    def running(self) -> bool:
        if self.pid is None:
            return super().running()
        with self._lock:
            return self._code is None and self._pidfd >= 0 and not readable(self._pidfd, 0)

    def wait(self, timeout: float) -> int | None:
        if self.pid is None:
            return super().wait(timeout)
        with self._lock:
            status = self._status if self._code is None else -1
        if status >= 0 and readable(status, timeout):
            with self._lock:
                if self._code is None:
                    self._code = self._read_status()
        return self._code

    def _read_status(self) -> int:
        """The child's exit code from the status pipe (it ended); closes the job's descriptors."""
        data = os.read(self._status, 64)  # one write of a few bytes, or the end of the pipe
        os.close(self._status)
        self._status = -1
        if not data and not readable(self._pidfd, 0):
            # the fork server ended before its child (killed, crashed): the child, still running,
            # is nobody's to watch or stop now; it ends as a container whose runtime died would
            log.warning("local mode: the fork server of pid %d ended before it: killing it", self.pid)
            self._kill_child(signal.SIGKILL)
            readable(self._pidfd, STOP_WAIT_SECONDS)
        os.close(self._pidfd)
        self._pidfd = -1
        return reported_exit_code(data)

    def _signal(self, sig: int) -> None:
        if self.pid is None:
            return super()._signal(sig)
        with self._lock:
            if self._code is None and self._pidfd >= 0 and not readable(self._pidfd, 0):
                self._kill_child(sig)

    def _kill_child(self, sig: int) -> None:
        """``sig`` to the child's process group (not reaped yet: its group is still its own)."""
        try:
            os.killpg(self.pid, sig)  # type: ignore[arg-type]
        except ProcessLookupError:
            # just forked: not yet in a session of its own (its first step makes one), so alone
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except ProcessLookupError:
                pass

    def memory(self) -> int:
        if self.pid is None:
            return super().memory()
        return tree_rss(self.pid) if self.running() else 0


class ContainerJob(ProcessJob):
    """A container of the local engine. The engine enforces memory (its cgroup), so the runner
    does not watch it; StopTask becomes ``<engine> stop --time <stopTimeout>``."""

    watch_memory = False

    def __init__(self, engine: Engine, spec: ContainerSpec, cleanup: Callable[[], None] = lambda: None) -> None:
        self.engine, self.spec, self._cleanup = engine, spec, cleanup
        self.argv = engine_argv(engine.program, spec)
        self.proc: subprocess.Popen | None = None
        self._stopping: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, output: Any) -> None:
        self.proc = self.engine.start(self.argv, output)

    def terminate(self) -> None:
        """StopTask: the engine sends SIGTERM, then SIGKILL after the stop timeout (once)."""
        with self._lock:
            if self._stopping is not None or self.proc is None:
                return
            self._stopping = threading.Thread(target=self._stop, daemon=True, name=f"stop-{self.spec.name}")
        self._stopping.start()

    def _stop(self) -> None:
        # right after `run` the engine may not know the container yet: ask again while it runs
        while not self.engine.stop(self.spec.name, self.spec.stop_timeout) and self.running():
            if self.proc is not None and self.wait(0.2) is not None:
                return

    def kill(self) -> None:
        self.engine.stop(self.spec.name, 0)

    def memory(self) -> int:
        return 0

    def kill_for_memory(self) -> None:  # pragma: no cover - the engine's cgroup does it
        self.kill()

    def finish(self, code: int, stop_requested: bool) -> Outcome:
        try:
            ending = self.engine.ending(self.spec.name)
            if ending.error:
                return Outcome(None, start_error=ending.error)
            exit_code = ending.exit_code if ending.exit_code is not None else code
            oom = ending.oom_killed or (
                exit_code == 137 and not stop_requested and self.spec.memory_mib is not None
                and self.spec.cgroup_parent is not None
                and cgroup_hit_limit(self.spec.cgroup_parent, self.spec.memory_mib)
            )
            return Outcome(exit_code, out_of_memory=oom)
        finally:
            if self._stopping is not None:
                self._stopping.join(self.spec.stop_timeout + 60)
            self.engine.remove(self.spec.name)
            if self.spec.cgroup_parent:
                remove_cgroup(self.spec.cgroup_parent)
            self._cleanup()
