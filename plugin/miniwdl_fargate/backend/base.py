"""The base class shared by the aws_fargate and local_process backends.

Both run the task command somewhere that sees the task's directory through a *view* at
``container_dir``: a directory of four symlinks (``work``, ``command``, ``stdout.txt``,
``stderr.txt``) pointing at the current attempt's files in the task directory. On Fargate the view
is ``/mnt/miniwdl_task_container`` inside the container, which mounts the shared EFS filesystem at
the same path as the driver; locally it is ``<task dir>/container``. Input files are hard-linked
(not copied) into ``work/_miniwdl_inputs``, so they cost nothing on EFS; ``[file_io]
copy_input_files`` still makes real copies.

Subclasses supply ``_start`` (launch the script), ``_status`` (wait briefly for news) and ``_stop``.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from abc import abstractmethod
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Callable

from WDL.runtime.error import Terminated
from WDL.runtime.task_container import TaskContainer
from WDL._util import StructuredLogMessage as _

VIEW_LINKS = ("work", "command", "stdout.txt", "stderr.txt")


@dataclass
class JobStatus:
    """What a backend knows about a launched task command."""

    running: bool = False
    stopped: bool = False
    exit_code: int | None = None
    reason: str = ""
    detail: dict[str, Any] | None = None


def _link_or_copy(source: str, target: str) -> int:
    """Hard-link the file ``source`` (symlinks resolved) at ``target``; copy if that fails.
    Returns 1 if it had to copy."""
    source = os.path.realpath(source)
    try:
        os.link(source, target)
        return 0
    except OSError:
        shutil.copy2(source, target)
        return 1


class ViewTaskContainer(TaskContainer):
    """A TaskContainer that runs its command through a symlink view of the task directory."""

    #: seconds to wait for news of a running job between checks of ``terminating()``
    status_wait: float = 1.0

    def __init__(self, cfg: Any, run_id: str, host_dir: str) -> None:
        super().__init__(cfg, run_id, host_dir)
        self.container_dir = self.view_dir()
        self._inputs_copied = False

    # -- what subclasses provide ------------------------------------------------------------

    @abstractmethod
    def view_dir(self) -> str:
        """Where the task command sees its task directory."""

    @abstractmethod
    def _start(self, logger: logging.Logger, script: str, terminating: Callable[[], bool]) -> Any:
        """Launch ``/bin/sh -c script``; return a handle for ``_status`` and ``_stop``. May raise
        Terminated if ``terminating()`` turns true before the launch happens."""

    @abstractmethod
    def _status(self, logger: logging.Logger, job: Any, wait: float) -> JobStatus:
        """Wait up to ``wait`` seconds for news and return the job's status."""

    @abstractmethod
    def _stop(self, logger: logging.Logger, job: Any, reason: str) -> None:
        """Stop the job (idempotent)."""

    def _exit_code(self, logger: logging.Logger, status: JobStatus) -> int:
        """Turn a stopped job's status into the command's exit code (or raise)."""
        if status.exit_code is None:
            raise RuntimeError(f"task stopped without an exit code: {status.reason}")
        return status.exit_code

    # -- the shared mechanics -----------------------------------------------------------------

    def copy_input_files(self, logger: logging.Logger) -> None:
        super().copy_input_files(logger)
        self._inputs_copied = True

    def reset(self, logger: logging.Logger) -> None:
        super().reset(logger)
        self._inputs_copied = False

    def link_input_files(self, logger: logging.Logger) -> None:
        """Hard-link each input into ``work/_miniwdl_inputs`` (a Directory input becomes a tree of
        directories and hard links). On one filesystem (EFS) this copies no data, and the command
        sees ordinary files; across filesystems it falls back to copying."""
        copied = 0
        for host_path, container_path in self.input_path_map.items():
            source = host_path.rstrip("/")
            target = self.host_work_path(container_path).rstrip("/")
            if os.path.lexists(target):
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.isdir(source):
                for root, _dirs, files in os.walk(source, followlinks=True):
                    rel = os.path.relpath(root, source)
                    os.makedirs(os.path.join(target, rel), exist_ok=True)
                    for name in files:
                        copied += _link_or_copy(os.path.join(root, name), os.path.join(target, rel, name))
            else:
                copied += _link_or_copy(source, target)
        if self.input_path_map:
            logger.debug(_("linked input files", count=len(self.input_path_map), copied=copied))

    def write_command(self, command: str) -> str:
        path = os.path.join(self.host_dir, "command")
        with open(path, "w") as outfile:
            for key, value in self.runtime_values.get("env", {}).items():
                outfile.write(f"export {key}={shlex.quote(str(value))}\n")
            outfile.write(command)
        return path

    def view_script(self) -> str:
        """The shell script that builds the view and runs the command in ``work``."""
        view = self.container_dir
        targets = {
            "work": self.host_work_dir(),
            "command": os.path.join(self.host_dir, "command"),
            "stdout.txt": self.host_stdout_txt(),
            "stderr.txt": self.host_stderr_txt(),
        }
        q = shlex.quote
        lines = ["set -e", f"mkdir -p {q(view)}"]
        lines += [f"ln -sfn {q(targets[n])} {q(os.path.join(view, n))}" for n in VIEW_LINKS]
        shell = self.cfg.get("task_runtime", "command_shell")
        lines += [
            f"cd {q(os.path.join(view, 'work'))}",
            f"exec {shell} {q(os.path.join(view, 'command'))}"
            f" >> {q(os.path.join(view, 'stdout.txt'))} 2>> {q(os.path.join(view, 'stderr.txt'))}",
        ]
        return "\n".join(lines) + "\n"

    def _run(self, logger: logging.Logger, terminating: Callable[[], bool], command: str) -> int:
        self.write_command(command)
        if not self._inputs_copied:
            self.link_input_files(logger)
        for stream in (self.host_stdout_txt(), self.host_stderr_txt()):
            open(stream, "a").close()
        script = self.view_script()

        with ExitStack() as cleanup:
            poll_stderr = cleanup.enter_context(self.poll_stderr_context(logger))
            job = self._start(logger, script, terminating)
            finished = False

            def stop_unless_finished() -> None:
                if not finished:
                    self._stop(logger, job, "miniwdl stopped waiting for the task")

            cleanup.callback(stop_unless_finished)
            running = False
            while True:
                if terminating():
                    finished = True  # (stopped here: the cleanup need not stop it again)
                    self._stop(logger, job, "run terminated")
                    raise Terminated()
                status = self._status(logger, job, self.status_wait)
                if (status.running or status.stopped) and not running:
                    cleanup.enter_context(self.task_running_context())
                    running = True
                poll_stderr()
                if status.stopped:
                    finished = True
                    return self._exit_code(logger, status)
