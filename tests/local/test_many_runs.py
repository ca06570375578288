"""Many runs submitted at once through the bucket all complete: none lost, none duplicated."""

import json
import os
import time

import pytest

from miniwdl_fargate import aws, runs
from miniwdl_fargate import upload as local_run
from tests.waiting import run_end

#: 10 in `make test`; `make soak` runs 50 (the machines that run the tests have 2 cores)
RUNS = int(os.environ.get("MINIWDL_FARGATE_TEST_CONCURRENT_RUNS", "10"))

WDL = """
version 1.1
workflow echo {
  input { Int i }
  call say { input: i = i }
  output { Int out = say.out }
}
task say {
  input { Int i }
  command <<< echo ~{i} >>>
  output { Int out = read_int(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


@pytest.mark.long
def test_many_runs_dropped_at_once_all_complete_exactly_once(stack, tmp_path):
    bucket = stack.outputs["BucketName"]
    machine = stack.outputs["StateMachineArn"]
    wdl = tmp_path / "echo.wdl"
    wdl.write_text(WDL)
    prepared = [local_run.prepare(wdl, {"echo.i": i}, name=f"burst-{i:03d}") for i in range(RUNS)]
    started = time.monotonic()
    submitted = [p.upload(bucket) for p in prepared]  # as fast as a user's script would
    results = [run_end(stack, name, run_id, timeout=900) for name, run_id in submitted]
    elapsed = time.monotonic() - started
    assert [r.status for r in results] == ["SUCCEEDED"] * RUNS, [r.document for r in results if r.status != "SUCCEEDED"][:3]
    assert [r.document["outputs"]["echo.out"] for r in results] == list(range(RUNS))
    # exactly one execution per run
    sfn = aws.client("stepfunctions")
    names = [
        e["name"]
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine)
        for e in page["executions"]
        if e["name"].startswith("burst-")
    ]
    assert sorted(names) == sorted(run_id for _, run_id in submitted)
    # one run.json, one outputs.json per run, nothing else started
    s3 = aws.client("s3")
    for name, run_id in submitted:
        record = json.loads(s3.get_object(Bucket=bucket, Key=f"{runs.run_prefix(name)}results/{run_id}/run.json")["Body"].read())
        assert record["run_id"] == run_id
    assert stack.runtime.running_tasks() == []
    print(f"{RUNS} runs at once: all succeeded in {elapsed:.0f}s")
