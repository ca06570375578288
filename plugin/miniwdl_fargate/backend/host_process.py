"""host_process (also registered under its earlier name, local_process): run each task command as a
host process (no container, no image).

For trying workflows on a machine without Docker or AWS, and for testing the shared base class:
the command runs with the host's tools, in its task's real directory, as on Fargate.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict

import psutil
from WDL._util import StructuredLogMessage as _

from .. import miniwdl_fixes
from . import links
from .base import BaseTaskContainer, Job, JobStatus

#: in each task's directory: what its script says besides the command's output (a container's log)
CONTAINER_LOG = "container.log"


@dataclass(eq=False)
class HostProcessJob(Job):
    """One attempt run as a host process: the process (its own session, so a stop reaches the
    whole command) and when it started."""

    process: subprocess.Popen
    started_at: float

    @property
    def pid(self) -> int:
        return self.process.pid


class HostProcessTaskContainer(BaseTaskContainer):
    _limits: Dict[str, int] | None = None

    @classmethod
    def global_init(cls, cfg: Any, logger: logging.Logger) -> None:
        logger.info(_("host_process backend: task commands run as host processes"))
        links.LinkPolicy.from_cfg(cfg)  # (a bad efs_link_limit fails the run now, not at its first task)
        miniwdl_fixes.inputs_stay_read_only()

    @classmethod
    def detect_resource_limits(cls, cfg: Any, logger: logging.Logger) -> Dict[str, int]:
        if cls._limits is None:
            cls._limits = {
                "cpu": multiprocessing.cpu_count(),
                "mem_bytes": psutil.virtual_memory().total,
            }
        return cls._limits

    def attempt_facts(self) -> dict[str, Any]:
        return {**super().attempt_facts(), "capacity": "local"}

    def _start(self, logger: logging.Logger, script: str, terminating: Callable[[], bool]) -> HostProcessJob:
        # what the script itself says (not the command's: that is stdout.txt and stderr.txt) goes
        # where a container's log would: a file of the task's, beside its command's
        with open(os.path.join(self.host_dir, CONTAINER_LOG), "ab") as log_file:
            process = subprocess.Popen(
                ["/bin/sh", "-c", script],
                cwd=self.host_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        job = HostProcessJob(process, time.time())
        logger.notice(_("host_process started", pid=job.pid))  # type: ignore[attr-defined]
        return job

    def _poll(self, logger: logging.Logger, job: Job, wait: float) -> JobStatus:
        assert isinstance(job, HostProcessJob)
        try:
            code = job.process.wait(wait)
        except subprocess.TimeoutExpired:
            return JobStatus(running=True, started_at=job.started_at)
        # a command killed by signal N reports 128+N, as a shell (and a container) would
        return JobStatus(stopped=True, exit_code=code if code >= 0 else 128 - code, started_at=job.started_at)

    def _stop(self, logger: logging.Logger, job: Job, reason: str) -> None:
        assert isinstance(job, HostProcessJob)
        if job.process.poll() is not None:
            return
        logger.warning(_("stopping local process", pid=job.pid, reason=reason))
        try:
            os.killpg(job.pid, signal.SIGTERM)
            job.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.process.wait()
        except ProcessLookupError:
            pass
