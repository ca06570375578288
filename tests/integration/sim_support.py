"""Running `miniwdl run` with the aws_fargate backend against the simulated ECS endpoint."""

import functools
import json
import os
import subprocess
import textwrap

import pytest
import WDL.CLI

from miniwdl_fargate import aws
from miniwdl_fargate.local import forkserver
from tests.forked import ForkedProcess


def one_task(runtime: str) -> str:
    """A workflow of one task that echoes and succeeds, with ``runtime`` (its runtime section's
    body): what the simulated endpoint's behaviours act on."""
    return f"""
    version 1.1
    workflow w {{ call t output {{ String out = t.out }} }}
    task t {{
      command <<< echo hi >>>
      output {{ String out = "done" }}
      runtime {{ docker: "ubuntu:22.04" {runtime} }}
    }}
"""


def start_miniwdl(sim, tmp_path, source, *, settings=None, **inputs):
    """`miniwdl run` of ``source`` against ``sim``, with ``inputs``; ``settings`` (environment
    variables) over the backend's usual ones."""
    wdl = tmp_path / "w.wdl"
    wdl.write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env.update(
        {
            "AWS_ENDPOINT_URL_ECS": sim.endpoint,
            **aws.FAKE_CREDENTIALS,
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
            "MINIWDL__AWS_FARGATE__POLL_INTERVAL": "0.1",
            "MINIWDL__AWS_FARGATE__RUN_ID": "sim-run",
            **(settings or {}),
        }
    )
    args = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in inputs.items()]
    argv = ["run", str(wdl), *args, "--dir", str(tmp_path / "runs") + "/", "-o", str(tmp_path / "result.json"), "--verbose"]
    # `miniwdl run`'s main in a fork of the test process (tests/forked.py), not a new interpreter
    # importing miniwdl, boto3 and the plugin and building the WDL parsers (about a second of CPU)
    _parsers_built()
    return ForkedProcess(WDL.CLI.main, argv, env=env, cwd=tmp_path)


@functools.cache
def _parsers_built() -> None:
    """miniwdl's WDL parsers built once in this process, before its forks (each would build its own)."""
    forkserver.build_wdl_parsers()


def finish(proc, timeout=60):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exn:  # (its output ends with every thread's stack: tests/forked.py)
        pytest.fail(f"miniwdl did not end within {timeout} s; its output's end:\n{(exn.output or '')[-12000:]}")
    return proc.returncode, out
