"""`miniwdl run` with the aws_fargate backend against the simulated ECS endpoint (bench/ecs_sim.py):
Spot interruptions and fallback, failed starts, cancellation (a failed sibling, SIGTERM)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bench.ecs_sim import Faults, SimulatedECS


@pytest.fixture
def sim():
    sim = SimulatedECS(start_latency=(0.05, 0.1), run_time=(0.3, 0.4), faults=Faults())
    sim.endpoint = sim.start()
    yield sim
    sim.stop()


def start_miniwdl(sim, tmp_path, source, **inputs):
    wdl = tmp_path / "w.wdl"
    wdl.write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env.update(
        {
            "AWS_ENDPOINT_URL_ECS": sim.endpoint,
            "AWS_ACCESS_KEY_ID": "t",
            "AWS_SECRET_ACCESS_KEY": "t",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MINIWDL__SCHEDULER__CONTAINER_BACKEND": "aws_fargate",
            "MINIWDL__SCHEDULER__TASK_CONCURRENCY": "8",
            "MINIWDL__CALL_CACHE__GET": "false",
            "MINIWDL__CALL_CACHE__PUT": "false",
            "MINIWDL__AWS_FARGATE__CLUSTER": "wdl",
            "MINIWDL__AWS_FARGATE__SUBNETS": "subnet-a,subnet-b",
            "MINIWDL__AWS_FARGATE__EFS_SECURITY_GROUP": "sg-0test",
            "MINIWDL__AWS_FARGATE__EFS_ID": "fs-0test",
            "MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT": str(tmp_path),
            "MINIWDL__AWS_FARGATE__EXECUTION_ROLE": "arn:aws:iam::123456789012:role/exec",
            "MINIWDL__AWS_FARGATE__PROVISION": "false",
            "MINIWDL__AWS_FARGATE__POLL_INTERVAL": "0.2",
            "RUN_ID": "sim-run",
        }
    )
    args = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in inputs.items()]
    cmd = [sys.executable, "-m", "WDL", "run", str(wdl), *args, "--dir", str(tmp_path / "runs") + "/",
           "-o", str(tmp_path / "result.json"), "--verbose"]
    return subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=60):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def wait_until(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def capacities(sim):
    return [
        (r.get("capacityProviderStrategy") or [{"capacityProvider": r.get("launchType")}])[0]["capacityProvider"]
        for r in sim.run_task_requests
    ]


ONE_TASK = """
    version 1.1
    workflow w { call t output { String out = t.out } }
    task t {
      command <<< echo hi >>>
      output { String out = "done" }
      runtime { docker: "ubuntu:22.04" preemptible: %d }
    }
"""


def test_spot_interruption_is_retried_then_the_task_runs_on_demand(sim, tmp_path):
    sim.faults.script.extend(["spot_interruption", "ok"])
    code, out = finish(start_miniwdl(sim, tmp_path, ONE_TASK % 1))
    assert code == 0, out
    # attempt 1 on Spot (interrupted, exit 143 after its SIGTERM warning: not the task's fault);
    # the budget of one interruption spent, attempt 2 runs on on-demand FARGATE
    assert capacities(sim) == ["FARGATE_SPOT", "FARGATE"]
    assert "interrupted task will be retried" in out
    assert "Fargate Spot reclaimed the task" in out


def test_spot_budget_covers_several_interruptions(sim, tmp_path):
    sim.faults.script.extend(["spot_interruption", "spot_interruption", "ok"])
    code, out = finish(start_miniwdl(sim, tmp_path, ONE_TASK % 3))
    assert code == 0, out
    assert capacities(sim) == ["FARGATE_SPOT", "FARGATE_SPOT", "FARGATE_SPOT"]


def test_an_interruption_without_a_budget_fails_the_task(sim, tmp_path):
    sim.faults.script.extend(["fail_to_start"])
    code, out = finish(start_miniwdl(sim, tmp_path, ONE_TASK % 0))
    assert code != 0
    assert "ECS task failed to start: ResourceInitializationError" in out
    assert capacities(sim) == ["FARGATE"]


def test_a_task_that_failed_to_start_is_retried_within_the_budget(sim, tmp_path):
    sim.faults.script.extend(["fail_to_start", "ok"])
    code, out = finish(start_miniwdl(sim, tmp_path, ONE_TASK % 1))
    assert code == 0, out
    assert len(sim.run_task_requests) == 2


SCATTER_WITH_A_FAILURE = """
    version 1.1
    workflow w {
      scatter (i in range(3)) { call slow { input: i = i } }
      call breaks
      output { Array[Int] out = slow.out }
    }
    task slow {
      input { Int i }
      command <<< sleep 600 >>>
      output { Int out = i }
    }
    task breaks {
      command <<< exit 3 >>>
    }
"""


def slow_or_failing(req):
    command = req["overrides"]["containerOverrides"][0]["command"][2]
    workdir = command.split("ln -sfn ", 1)[1].split(" ", 1)[0]
    if "call-breaks" in workdir:
        return {"exit_code": 3, "run_time": 1.0}
    return {"run_time": 600}


def test_a_failed_sibling_stops_every_running_task(sim, tmp_path):
    sim.behaviour = slow_or_failing
    code, out = finish(start_miniwdl(sim, tmp_path, SCATTER_WITH_A_FAILURE))
    assert code != 0
    assert "call-breaks" in out
    slow = [t for t in sim.tasks.values() if t.run_time == 600]
    assert len(slow) == 3
    assert all(t.stop_requested is not None for t in slow)
    assert sim.count("StopTask", "ok") == 3  # once each
    assert wait_until(lambda: sim.running() == 0)  # ECS takes a moment to reach STOPPED


def test_sigterm_to_the_driver_stops_every_running_task(sim, tmp_path):
    sim.run_time = (600, 600)
    proc = start_miniwdl(sim, tmp_path, SCATTER_WITH_A_FAILURE.replace("call breaks", ""))
    deadline = time.monotonic() + 30
    while sim.running() < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sim.running() == 3
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc)
    assert code != 0
    assert sim.count("StopTask", "ok") == 3
    assert wait_until(lambda: sim.running() == 0)
