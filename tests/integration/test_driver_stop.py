"""The driver stopped (SIGTERM, as ECS stops a task) in each phase of its life: fetching and
staging inputs, running the workflow, uploading outputs. Each ends with error.json saying so,
no outputs.json, every WDL task of the run stopped, and a non-zero exit status.

The driver runs as a process of its own (its main in a fork of the test process: tests/forked.py)
against a moto server (S3) and, for the run phase, the
simulated ECS endpoint (bench/ecs_sim.py). A test reaches the staging and upload phases through
the driver's test-only pause point (MINIWDL_FARGATE_PAUSE_AT: the driver writes a marker file
there and waits for the signal); the run phase is reached when the simulated ECS has the run's
tasks running."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from miniwdl_fargate import aws, efs_cleanup, runs, status
from miniwdl_fargate.cli import main as cli_main
from tests.forked import ForkedProcess
from tests.waiting import wait_for

WDL = """
version 1.1
workflow w {
  input { File reference  Int n = 2 }
  scatter (i in range(n)) { call copy { input: reference = reference, i = i } }
  output { Array[File] copies = copy.out }
}
task copy {
  input { File reference  Int i }
  command <<< cp "~{reference}" out_~{i}.txt >>>
  output { File out = "out_~{i}.txt" }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""
RUN_ID = "stop-1a2b3c4d"
RESULTS = f"s3://runs/runs/stop/results/{RUN_ID}/"


@pytest.fixture
def moto_s3(moto_server):
    """The moto server with the run's bucket, workflow, inputs and status.json."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    s3.put_object(Bucket="runs", Key="runs/stop/workflow.wdl", Body=WDL.encode())
    s3.put_object(Bucket="runs", Key="data/ref.txt", Body=b"reference\n")
    s3.put_object(Bucket="runs", Key="runs/stop/inputs.json", Body=json.dumps({"w.reference": "s3://runs/data/ref.txt"}).encode())
    record = runs.RunRecord(
        run_id=RUN_ID, name="stop", bucket="runs", workflow="s3://runs/runs/stop/workflow.wdl",
        inputs="s3://runs/runs/stop/inputs.json", results=RESULTS, submitted_at=runs.now_iso(),
    )
    status.update("runs", RUN_ID, lambda current: current, initial=status.new(record))
    return moto_server


def start_driver(tmp_path, env: dict[str, str], pause_at: str = "", **extra: str) -> ForkedProcess:
    full = dict(os.environ)
    full.update(env)
    full.update(
        {
            "RUN_ID": RUN_ID, "RUN_WORKFLOW": "s3://runs/runs/stop/workflow.wdl",
            "RUN_INPUTS": "s3://runs/runs/stop/inputs.json", "RUN_RESULTS": RESULTS,
            "MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT": str(tmp_path / "efs"),
            "MINIWDL__SCHEDULER__CONTAINER_BACKEND": "host_process",
            "MINIWDL__SCHEDULER__TASK_CONCURRENCY": "4",
            "MINIWDL__AWS_FARGATE__STATUS_INTERVAL": "0.5",
        }
    )
    if pause_at:
        full["MINIWDL_FARGATE_PAUSE_AT"] = f"{pause_at}:{tmp_path}"
    full.update(extra)
    (tmp_path / "efs").mkdir(exist_ok=True)
    # the driver's main in a fork of the test process (tests/forked.py): a process of its own to
    # signal, without a new interpreter importing miniwdl and boto3 each time
    return ForkedProcess(cli_main, ["driver"], env=full, cwd=tmp_path)


def stop_and_collect(proc: ForkedProcess) -> tuple[int, str, dict | None, dict | None]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    prefix = RESULTS.split("/", 3)[3]
    from miniwdl_fargate import s3io

    return proc.returncode, out, s3io.find_json("runs", prefix + "error.json"), s3io.find_json("runs", prefix + "outputs.json")


def paused(tmp_path, phase: str, proc: ForkedProcess):
    def reached():
        if proc.poll() is not None:
            raise AssertionError(f"the driver ended before {phase}: {proc.communicate()[0][-3000:]}")
        return (tmp_path / phase).exists()

    wait_for(reached, what=f"driver at {phase}")


@pytest.mark.parametrize("phase", ["fetching the workflow and its inputs", "staging the inputs", "uploading the outputs"])
def test_sigterm_while_moving_data_ends_failed_saying_so(moto_s3, tmp_path, phase):
    proc = start_driver(tmp_path, moto_s3, pause_at=phase)
    paused(tmp_path, phase, proc)
    code, out, error, outputs = stop_and_collect(proc)
    assert code == 128 + signal.SIGTERM, out[-3000:]
    assert outputs is None
    assert error["status"] == "FAILED" and error["error"] == "DriverStopped", error
    assert error["signal"] == "SIGTERM" and error["phase"] == phase
    assert error["message"] == f"the driver was stopped (SIGTERM) while {phase}"
    assert error.get("report"), "the run report is written when it can be"


def test_sigterm_of_a_cancelled_run_ends_cancelled(moto_s3, tmp_path):
    proc = start_driver(tmp_path, moto_s3, pause_at="staging the inputs")
    paused(tmp_path, "staging the inputs", proc)
    status.set_state("runs", RUN_ID, "CANCELLED", error={"error": "Cancelled", "message": "cancelled by the user"})
    code, out, error, outputs = stop_and_collect(proc)
    assert code == 128 + signal.SIGTERM, out[-3000:]
    assert outputs is None
    assert error["status"] == "CANCELLED" and error["error"] == "Cancelled"
    assert error["message"] == "cancelled by the user"
    assert error["driver"] == "the driver was stopped (SIGTERM) while staging the inputs"


@pytest.fixture
def long_tasks():
    """Simulated ECS whose tasks run for five minutes unless stopped."""
    from bench.ecs_sim import Faults, SimulatedECS

    sim = SimulatedECS(start_latency=(0.05, 0.1), run_time=(300.0, 300.0), faults=Faults())
    sim.endpoint = sim.start()
    yield sim
    sim.stop()


#: the driver's aws_fargate backend (against the simulated ECS: ``long_tasks``'s endpoint)
FARGATE = {
    "MINIWDL__SCHEDULER__CONTAINER_BACKEND": "aws_fargate",
    "MINIWDL__AWS_FARGATE__CLUSTER": "wdl",
    "MINIWDL__AWS_FARGATE__SUBNETS": "subnet-a,subnet-b",
    "MINIWDL__AWS_FARGATE__EFS_SECURITY_GROUP": "sg-0test",
    "MINIWDL__AWS_FARGATE__EFS_ID": "fs-0test",
    "MINIWDL__AWS_FARGATE__EXECUTION_ROLE": "arn:aws:iam::123456789012:role/exec",
    "MINIWDL__AWS_FARGATE__PROVISION": "false",
    "MINIWDL__AWS_FARGATE__POLL_INTERVAL": "0.2",
    "MINIWDL__CALL_CACHE__GET": "false",
    "MINIWDL__CALL_CACHE__PUT": "false",
}


def test_sigterm_while_running_stops_every_task_and_ends_failed(moto_s3, long_tasks, tmp_path):
    proc = start_driver(tmp_path, moto_s3, **FARGATE, AWS_ENDPOINT_URL_ECS=long_tasks.endpoint)

    def both_running():
        if proc.poll() is not None:
            raise AssertionError(f"the driver ended early: {proc.communicate()[0][-3000:]}")
        return long_tasks.running() >= 2

    wait_for(both_running, what="two running tasks")
    code, out, error, outputs = stop_and_collect(proc)
    assert code == 128 + signal.SIGTERM, out[-3000:]
    assert outputs is None
    assert error["status"] == "FAILED" and error["error"] == "DriverStopped"
    assert error["phase"] == "running the workflow"
    not_stopped = [t.arn for t in long_tasks.tasks.values() if t.stop_requested is None and t.status(time.time()) != "STOPPED"]
    assert not_stopped == [], "tasks left running after the driver exited"
    assert len(long_tasks.tasks) >= 2


class StepFunctionsHeartbeats:
    """Step Functions' SendTaskHeartbeat, answered as AWS answers it: accepted while the execution
    waits, then TaskTimedOut once ``ended`` (an execution stopped from outside, or timed out:
    https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskHeartbeat.html).
    moto accepts any token's heartbeat, whatever became of its execution."""

    def __init__(self) -> None:
        from tests.http_servers import QuietHandler, serving

        self.ended = False
        self.beats = 0
        outer = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.body()
                assert self.headers.get("X-Amz-Target") == "AWSStepFunctions.SendTaskHeartbeat"
                outer.beats += 1
                code, body = (400, {"__type": "TaskTimedOut", "message": "Task Timed Out"}) if outer.ended else (200, {})
                self.reply(code, body, "application/x-amz-json-1.0")

        self._serving = serving(Handler)
        self.endpoint = self._serving.__enter__()

    def close(self) -> None:
        self._serving.__exit__(None, None, None)


def test_a_driver_nothing_waits_for_any_more_stops_its_tasks_and_itself(moto_s3, long_tasks, tmp_path):
    """An execution stopped from outside (the console's StopExecution runs no Catch: neither
    finalize nor the timeout's cleanup would stop the driver): its next heartbeat is refused and
    the driver stops as if ECS had stopped it, its tasks with it, saying why."""
    heartbeats = StepFunctionsHeartbeats()
    try:
        proc = start_driver(tmp_path, moto_s3, **FARGATE, AWS_ENDPOINT_URL_ECS=long_tasks.endpoint,
                            AWS_ENDPOINT_URL_SFN=heartbeats.endpoint,
                            SFN_TASK_TOKEN="token-of-the-wait", SFN_HEARTBEAT_SECONDS="2")
        wait_for(lambda: long_tasks.running() >= 2 and heartbeats.beats >= 1, what="two running tasks and a heartbeat")
        heartbeats.ended = True  # (the execution stopped from outside)
        out, _ = proc.communicate(timeout=120)
    finally:
        heartbeats.close()
    prefix = RESULTS.split("/", 3)[3]
    from miniwdl_fargate import s3io

    error = s3io.find_json("runs", prefix + "error.json")
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert error["status"] == "FAILED" and error["error"] == "DriverStopped", error
    assert error["message"] == ("the state machine no longer waits for this run (TaskTimedOut): the driver stopped "
                                "itself while running the workflow"), error
    not_stopped = [t.arn for t in long_tasks.tasks.values() if t.stop_requested is None and t.status(time.time()) != "STOPPED"]
    assert not_stopped == [], "tasks left running after the driver exited"


# -- a cancel whose signal has not reached the driver (issue 11, item 4) ------------------------


def cancel_in_status() -> None:
    """What cancel_run writes before it signals anything: status.json CANCELLED, error.json."""
    from miniwdl_fargate import s3io

    error = {"error": "Cancelled", "message": "cancelled by the user"}
    status.set_state("runs", RUN_ID, "CANCELLED", error=error)
    s3io.put_json("runs", RESULTS.split("/", 3)[3] + "error.json", {"run_id": RUN_ID, "status": "CANCELLED", **error})


def ended_files(proc: ForkedProcess) -> tuple[int, str, dict | None, dict | None]:
    out, _ = proc.communicate(timeout=120)
    prefix = RESULTS.split("/", 3)[3]
    from miniwdl_fargate import s3io

    return proc.returncode, out, s3io.find_json("runs", prefix + "error.json"), s3io.find_json("runs", prefix + "outputs.json")


def assert_cancelled_and_consistent(error: dict | None, outputs: dict | None) -> None:
    assert outputs is None
    assert error == {"run_id": RUN_ID, "status": "CANCELLED", "error": "Cancelled", "message": "cancelled by the user"}
    assert status.read("runs", RUN_ID).status == "CANCELLED"


def test_a_driver_that_starts_after_the_cancel_runs_nothing(moto_s3, tmp_path):
    cancel_in_status()
    code, out, error, outputs = ended_files(start_driver(tmp_path, moto_s3))
    assert code == 1, out[-3000:]
    assert "is CANCELLED: the driver stops while starting" in out
    assert_cancelled_and_consistent(error, outputs)
    # nothing in its directory but the driver's markers (a pipeline run's; kept until)
    run_dir = tmp_path / "efs" / "runs" / RUN_ID
    markers = {efs_cleanup.RUN_MARKER, efs_cleanup.EXPIRES_MARKER}
    assert not run_dir.exists() or not [p for p in run_dir.iterdir() if p.name not in markers]


@pytest.mark.parametrize("phase", ["staging the inputs", "running the workflow"])
def test_a_cancel_before_the_workflow_runs_stops_the_driver_before_it(moto_s3, tmp_path, phase):
    proc = start_driver(tmp_path, moto_s3, pause_at=phase)
    paused(tmp_path, phase, proc)
    cancel_in_status()
    (tmp_path / f"{phase}.resume").touch()
    code, out, error, outputs = ended_files(proc)
    assert code == 1, out[-3000:]
    assert "is CANCELLED: the driver stops while about to run the workflow" in out
    assert_cancelled_and_consistent(error, outputs)
    # miniwdl names a run directory <yyyymmdd>_<hhmmss>_<workflow> (the source-XXXXXXXX folder may end in _w too)
    ran = [p for p in (tmp_path / "efs" / "runs" / RUN_ID).iterdir() if re.match(r"^\d{8}_\d{6}_", p.name)]
    assert not ran, "miniwdl ran nothing"


def test_a_cancel_after_the_workflow_succeeded_leaves_no_outputs_json(moto_s3, tmp_path):
    proc = start_driver(tmp_path, moto_s3, pause_at="uploading the outputs")
    paused(tmp_path, "uploading the outputs", proc)
    cancel_in_status()
    (tmp_path / "uploading the outputs.resume").touch()
    code, out, error, outputs = ended_files(proc)
    assert code == 1, out[-3000:]
    assert "is CANCELLED: the driver stops while writing outputs.json" in out
    assert_cancelled_and_consistent(error, outputs)
