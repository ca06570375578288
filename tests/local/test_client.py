"""The user's command line (`miniwdl-fargate submit|status|list|logs|outputs|cancel`) against
local mode, run as a user runs it: a process of its own reaching the stack by its --local file
(the command's main in a fork of the test process, tests/forked.py; the console script itself
starts for real in test_errors_are_plain and tests/local/test_cli.py)."""

import json
import os
from pathlib import Path

import pytest

from miniwdl_fargate.cli import main as cli_main
from tests.forked import run_forked
from tests.waiting import wait_for

# a whole run and a cancelled one: first in the tier (run in parallel, the module runs in one
# worker, so that its module fixtures, a whole run, are set up once: tests/conftest.py ONE_WORKER)
pytestmark = pytest.mark.long

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"
SLEEPY = """version 1.1
workflow sleepy {
  call nap
}
task nap {
  command <<< echo "napping"; sleep 300 >>>
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


@pytest.fixture(scope="module")
def cli(local_cli):
    from miniwdl_fargate.local.cli import seed

    seed([str(REPO / "examples" / "s3")])
    return local_cli


@pytest.fixture(scope="module")
def finished_run(cli):
    proc = cli("submit", str(EXAMPLE / "workflow.wdl"), str(EXAMPLE / "inputs.json"), "--name", "cli-hello", "--follow")
    assert proc.returncode == 0, proc.stderr
    return proc


def test_submit_follow_shows_progress_and_ends_with_the_outputs(finished_run):
    doc = json.loads(finished_run.stdout)
    assert doc["outputs"]["hello.reference_words"] == 9
    assert len(doc["outputs"]["hello.greetings"]) == 3
    lines = finished_run.stderr.splitlines()
    assert lines[0].startswith(f"submitted run {doc['run_id']} (s3://")
    assert any("RUNNING" in line for line in lines)
    assert lines[-1].startswith("[########################] 4/4 done · 0 running · 0 failed · 0 queued  SUCCEEDED")


def test_status_and_list(cli, finished_run):
    run_id = json.loads(finished_run.stdout)["run_id"]
    proc = cli("status", run_id)
    assert proc.returncode == 0, proc.stderr
    assert f"run        {run_id}  (cli-hello, from s3)" in proc.stdout
    assert "status     SUCCEEDED" in proc.stdout
    assert "report     s3://" in proc.stdout
    doc = json.loads(cli("status", run_id, "--json").stdout)
    assert doc["status"] == "SUCCEEDED" and doc["tasks"]["succeeded"] == 4 and doc["outputs"]["hello.reference_words"] == 9
    listed = cli("list", "--name", "cli-hello")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0].split() == ["RUN", "STATUS", "SUBMITTED", "DURATION", "TASKS"]
    assert run_id in listed.stdout and "4/4 done, 0 failed" in listed.stdout


def test_logs_of_the_driver_and_of_tasks(cli, finished_run):
    run_id = json.loads(finished_run.stdout)["run_id"]
    driver = cli("logs", run_id)
    assert driver.returncode == 0, driver.stderr
    assert f"run {run_id} succeeded" in driver.stdout
    tasks = cli("logs", run_id, "--task", "greet")
    assert tasks.returncode == 0, tasks.stderr
    assert tasks.stdout.count("== call-greet-") == 3
    assert "greeted Alyssa P. Hacker" in tasks.stdout and "greeted Cy D. Fect" in tasks.stdout
    missing = cli("logs", run_id, "--task", "nosuch")
    assert missing.returncode == 2
    assert "has no task matching 'nosuch' (its tasks: call-gather, call-greet-0" in missing.stderr


def test_outputs_and_download(cli, finished_run, tmp_path):
    run_id = json.loads(finished_run.stdout)["run_id"]
    proc = cli("outputs", run_id, "--download", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hello.reference_words"] == 9
    assert "downloaded 4 file(s)" in proc.stderr
    assert (tmp_path / "out" / "greetings" / "1" / "greeting.txt").read_text() == "Hello, Ben Bitdiddle!\n"
    assert (tmp_path / "out" / "summary" / "summary.txt").read_text().count("Hello") == 3


def test_cancel_a_running_run(cli, stack, tmp_path):
    (tmp_path / "sleepy.wdl").write_text(SLEEPY)
    (tmp_path / "inputs.json").write_text("{}")
    proc = cli("submit", str(tmp_path / "sleepy.wdl"), str(tmp_path / "inputs.json"), "--name", "cli-sleepy")
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    wait_for(lambda: "napping" in cli("logs", run_id, "--task", "nap").stdout, 120, what="'napping' in the task's log", interval=1)
    cancelled = cli("cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stderr.strip().splitlines()[-1] == f"run {run_id} CANCELLED"
    said = cli("status", run_id).stdout
    assert "status     CANCELLED" in said
    # its task was cancelled with it, not failed (it may stop before its driver hears of the
    # cancel); the driver writes the counts as it stops, which on a loaded machine may come a
    # moment after the cancel returned
    counted = "0/1 done · 0 running · 0 failed · 1 cancelled · 0 queued  CANCELLED"
    last = [said]

    def settled() -> bool:
        last[0] = cli("status", run_id).stdout
        return counted in last[0]

    wait_for(settled, 60, what=lambda: f"{counted!r} in {last[0]!r}", interval=0.5)
    wait_for(lambda: not stack.runtime.running_tasks(), 60, what=lambda: f"end of {stack.runtime.running_tasks()}", interval=0.5)
    assert stack.runtime.running_tasks() == []
    # the report its driver wrote as it stopped is the run's, as a failed run's is (no finalize
    # step reads a cancelled run's error.json: its execution was stopped)
    wait_for(lambda: json.loads(cli("status", run_id, "--json").stdout).get("report"), 60, what="the cancelled run's report", interval=0.5)
    described = json.loads(cli("status", run_id, "--json").stdout)
    assert described["report"].endswith("/report.html") and described["status"] == "CANCELLED"
    assert described["report"] == described["error"].get("report", described["report"])
    again = cli("cancel", run_id)
    assert again.returncode == 2 and "already CANCELLED" in again.stderr
    outputs = cli("outputs", run_id)
    assert outputs.returncode == 2 and "is CANCELLED: no outputs" in outputs.stderr
    # the command it suggests works as written: against the same local stack
    assert f"(see `miniwdl-fargate status {run_id} --local=" in outputs.stderr


def test_a_submission_the_pipeline_refuses_is_not_reported_as_submitted(cli):
    """The hello example's gather task asks for 2 vCPUs, more than a run of max_vcpus=1 may hold:
    the submit step refuses the run. `submit` waits for that answer (it printed a run id and
    exited 0), says why and exits 2, as `--follow` does; `status` of that run id says it was not
    started and why (it said "no run")."""
    args = (str(EXAMPLE / "workflow.wdl"), str(EXAMPLE / "inputs.json"), "--name", "cli-refused", "--option", "max_vcpus=1")
    for follow in ((), ("--follow",)):
        proc = cli("submit", *args, *follow)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        # one line, `error: …`, as every bad input is answered
        said = proc.stderr.strip().splitlines()
        assert len(said) == 2 and said[0].startswith("submitted run "), proc.stderr
        assert said[1].startswith("error: run cli-refused-") and " was refused: " in said[1]
        assert "task gather: runtime.cpu = 2 is more than the run's max_vcpus of 1" in said[1]
    run_id = proc.stderr.split("submitted run ", 1)[1].split()[0]
    said = cli("status", run_id)
    assert said.returncode == 2
    assert said.stderr.startswith(f"error: run {run_id} was not started: the submission was refused: ")
    assert "is more than the run's max_vcpus of 1" in said.stderr and f"/runs/cli-refused/results/{run_id}/error.json)" in said.stderr


def test_errors_are_plain(cli):
    proc = cli("status", "nope-0123abcd")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no run nope-0123abcd in s3://")
    proc = run_forked(cli_main, ["status", "x-0123abcd", "--local=/nonexistent/local.json"], env=dict(os.environ), cwd=REPO)
    assert proc.returncode == 2
    assert "no local stack running (/nonexistent/local.json not found): start one with `miniwdl-fargate local up`" in proc.stderr
