"""The host_process backend's attempts are HostProcessJobs: the process and its start, nothing set
on the Popen object."""

import logging
import subprocess

from WDL.runtime import config as wdl_config

from miniwdl_fargate.backend.base import Job
from miniwdl_fargate.backend.host_process import HostProcessJob, HostProcessTaskContainer

LOG = logging.getLogger("test")


def container(tmp_path) -> HostProcessTaskContainer:
    host_dir = tmp_path / "call-t"
    host_dir.mkdir()
    return HostProcessTaskContainer(wdl_config.Loader(LOG, filenames=[]), "call-t", str(host_dir))


def test_start_returns_a_host_process_job_that_poll_follows(tmp_path):
    made = container(tmp_path)
    job = made._start(LOG, "exit 5", lambda: False)
    assert isinstance(job, HostProcessJob) and isinstance(job, Job)
    assert isinstance(job.process, subprocess.Popen) and job.pid == job.process.pid
    assert not hasattr(job.process, "started_at")
    status = made._poll(LOG, job, 60)
    assert (status.stopped, status.exit_code, status.started_at) == (True, 5, job.started_at)


def test_a_stopped_job_reports_the_signal_as_a_shell_would(tmp_path):
    made = container(tmp_path)
    job = made._start(LOG, "sleep 60", lambda: False)
    status = made._poll(LOG, job, 0)
    assert status.running and not status.stopped
    made._stop(LOG, job, "test over")
    assert made._poll(LOG, job, 60).exit_code == 128 + 15  # SIGTERM
    made._stop(LOG, job, "again")  # already ended: nothing to do


def test_an_attempt_is_recorded_under_the_run_id_of_the_tasks_cfg(tmp_path, monkeypatch):
    from miniwdl_fargate import attempts

    monkeypatch.setenv("MINIWDL__AWS_FARGATE__RUN_ID", "hello-0a0b0c0d")
    made = container(tmp_path)
    made.runtime_values = {}
    assert made._run(LOG, lambda: False, "exit 0") == 0
    (attempt,) = attempts.LOG.snapshot(run="hello-0a0b0c0d")
    assert (attempt.call, attempt.outcome, attempt.exit_code) == ("call-t", attempts.SUCCEEDED, 0)
    attempts.LOG.clear()
