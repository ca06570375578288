"""EFS's limit of 177 hard links per file, through the driver: a 300-way scatter over one staged
s3:// input, and one staged input reused by several runs, with the local_process backend standing
in for Fargate and ``[aws_fargate] efs_link_limit`` making the limit real on this filesystem."""

import json
import os

import pytest

from miniwdl_fargate import aws, driver
from miniwdl_fargate.backend import links

SCATTER_WDL = """
version 1.1
workflow w {
  input {
    File reference
    Int width
  }
  scatter (i in range(width)) {
    call look { input: reference = reference }
  }
  output {
    Array[String] seen = look.seen
  }
}
task look {
  input { File reference }
  command <<<
    set -e
    cat "$(realpath "~{reference}")"
  >>>
  output { String seen = read_string(stdout()) }
}
"""
REFERENCE = "ACGT" * 1000
LIMIT = "MINIWDL__AWS_FARGATE__EFS_LINK_LIMIT"


@pytest.fixture
def bucket(moto_aws, monkeypatch, tmp_path):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    s3.put_object(Bucket="runs", Key="runs/t/workflow.wdl", Body=SCATTER_WDL.encode())
    s3.put_object(Bucket="runs", Key="data/ref.txt", Body=REFERENCE.encode())
    monkeypatch.setenv("MINIWDL__SCHEDULER__CONTAINER_BACKEND", "local_process")
    monkeypatch.setenv("MINIWDL__SCHEDULER__TASK_CONCURRENCY", "16")
    monkeypatch.setenv("RUN_ID", "unset")  # drive() sets it; restored after the test
    monkeypatch.chdir(tmp_path)
    return s3


def drive(tmp_path, run_id, width):
    aws.client("s3").put_object(
        Bucket="runs",
        Key=f"runs/t/{run_id}.json",
        Body=json.dumps({"w.reference": "s3://runs/data/ref.txt", "w.width": width}).encode(),
    )
    run = driver.DriverRun(
        run_id=run_id,
        workflow="s3://runs/runs/t/workflow.wdl",
        inputs=f"s3://runs/runs/t/{run_id}.json",
        results=f"s3://runs/runs/t/results/{run_id}/",
        workdir=str(tmp_path / "efs" / "runs" / run_id),
        cache_dir=str(tmp_path / "efs" / "cache"),
        options={"call_cache": False},  # every run links its inputs anew
    )
    return driver.drive(run)


def outputs(run_id):
    body = aws.client("s3").get_object(Bucket="runs", Key=f"runs/t/results/{run_id}/outputs.json")["Body"].read()
    return json.loads(body)["outputs"]


def staged_reference(tmp_path):
    """The staged copy of s3://runs/data/ref.txt in the store."""
    found = [os.path.join(r, f) for r, _d, fs in os.walk(tmp_path / "efs" / "cache" / "s3") for f in fs]
    assert len(found) == 1, found
    return found[0]


def spare_copies(tmp_path):
    spares = tmp_path / "efs" / "cache" / "links"
    return sorted(os.path.join(r, f) for r, _d, fs in os.walk(spares) for f in fs) if spares.exists() else []


def task_inputs(tmp_path, run_id):
    """Every task's linked copy of the reference."""
    root = tmp_path / "efs" / "runs" / run_id
    return [
        os.path.join(r, f)
        for r, _d, fs in os.walk(root)
        for f in fs
        if f == "ref.txt" and "_miniwdl_inputs" in r
    ]


def test_a_300_way_scatter_over_one_input_makes_one_spare_copy_not_300(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv(LIMIT, str(links.EFS_LINK_LIMIT))
    assert drive(tmp_path, "wide", 300) == 0
    seen = outputs("wide")["w.seen"]
    assert len(seen) == 300 and set(seen) == {REFERENCE}  # every task read its input (by realpath)
    inputs = task_inputs(tmp_path, "wide")
    assert len(inputs) == 300
    staged = staged_reference(tmp_path)
    spares = spare_copies(tmp_path)
    # the staged file takes 176 links (177 with itself), one spare the other 124: ceil(300/176) inodes
    assert len(spares) == 1
    inodes = {os.stat(path).st_ino for path in inputs}
    assert inodes == {os.stat(staged).st_ino, os.stat(spares[0]).st_ino}
    assert os.stat(staged).st_nlink == links.EFS_LINK_LIMIT
    assert os.stat(spares[0]).st_nlink == 1 + 300 - (links.EFS_LINK_LIMIT - 1)


def test_runs_reusing_one_staged_input_share_its_spares(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv(LIMIT, "5")  # 4 links per file besides its own name
    for run_id in ("r1", "r2", "r3"):
        assert drive(tmp_path, run_id, 6) == 0
        assert outputs(run_id)["w.seen"] == [REFERENCE] * 6
    # 18 links in all: 4 on the staged file, 4 on each spare -> 4 spares, made once for all runs
    # (a spare per run and per file at its limit would be 1 + 2 + 2 = 5)
    spares = spare_copies(tmp_path)
    assert len(spares) == 4
    for path in [staged_reference(tmp_path)] + spares:
        assert os.stat(path).st_nlink <= 5
    inputs = [p for run_id in ("r1", "r2", "r3") for p in task_inputs(tmp_path, run_id)]
    assert len(inputs) == 18
    assert len({os.stat(path).st_ino for path in inputs}) == 5
