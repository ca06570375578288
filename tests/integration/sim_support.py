"""Running `miniwdl run` with the aws_fargate backend against the simulated ECS endpoint."""

import json
import os
import subprocess
import sys
import textwrap


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
            "MINIWDL__AWS_FARGATE__RUN_ID": "sim-run",
        }
    )
    args = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in inputs.items()]
    cmd = [sys.executable, "-m", "WDL", "run", str(wdl), *args, "--dir", str(tmp_path / "runs") + "/",
           "-o", str(tmp_path / "result.json"), "--verbose"]
    return subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=60):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out
