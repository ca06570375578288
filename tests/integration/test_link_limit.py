"""EFS's limit of 177 hard links per file, through the driver: a 300-way scatter over one staged
s3:// File (and a Directory), and staged inputs reused by several runs, with the host_process backend standing
in for Fargate and ``[aws_fargate] efs_link_limit`` making the limit real on this filesystem."""

import json
import os

import pytest

from miniwdl_fargate import aws, config, driver

SCATTER_WDL = """
version development
workflow w {
  input {
    File reference
    Directory index
    Int width
  }
  scatter (i in range(width)) {
    call look { input: reference = reference, index = index }
  }
  output {
    Array[String] seen = look.seen
    Array[String] listed = look.listed
  }
}
task look {
  input {
    File reference
    Directory index
  }
  command <<<
    set -e
    cat "$(realpath "~{reference}")"
    (cd "~{index}" && find . -type f | sort | xargs cat) > listed
  >>>
  output {
    String seen = read_string(stdout())
    String listed = read_string("listed")
  }
}
"""
REFERENCE = "ACGT" * 1000
INDEX = {"a.idx": "index part a", "sub/b.idx": "index part b"}
LISTED = "index part aindex part b"  # what `cat` of the Directory's files gives, in name order
LIMIT = "MINIWDL__AWS_FARGATE__EFS_LINK_LIMIT"


@pytest.fixture
def bucket(moto_aws, monkeypatch, tmp_path):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    s3.put_object(Bucket="runs", Key="runs/t/workflow.wdl", Body=SCATTER_WDL.encode())
    s3.put_object(Bucket="runs", Key="data/ref.txt", Body=REFERENCE.encode())
    for name, body in INDEX.items():
        s3.put_object(Bucket="runs", Key=f"data/index/{name}", Body=body.encode())
    monkeypatch.setenv("MINIWDL__SCHEDULER__CONTAINER_BACKEND", "host_process")
    monkeypatch.setenv("MINIWDL__SCHEDULER__TASK_CONCURRENCY", "16")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__RUN_ID", "unset")  # (drive() takes it out of the environment; restored after the test)
    # the tests look at the tasks' linked inputs in the run directories after the runs
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__KEEP_RUN_DIRS", "true")
    monkeypatch.chdir(tmp_path)
    return s3


def drive(tmp_path, run_id, width):
    aws.client("s3").put_object(
        Bucket="runs",
        Key=f"runs/t/{run_id}.json",
        Body=json.dumps({"w.reference": "s3://runs/data/ref.txt", "w.index": "s3://runs/data/index/", "w.width": width}).encode(),
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


def staged(tmp_path, text):
    """The staged copies, in the store, of the s3:// objects holding ``text``."""
    return [p for p in files_under(tmp_path / "efs" / "cache" / "s3") if open(p).read() == text]


def spares(tmp_path, text):
    """The spare copies holding ``text``."""
    return [p for p in files_under(tmp_path / "efs" / "cache" / "links") if open(p).read() == text]


def files_under(root):
    return sorted(os.path.join(r, f) for r, _d, fs in os.walk(root) for f in fs)


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
    monkeypatch.setenv(LIMIT, str(config.EFS_LINK_LIMIT))
    assert drive(tmp_path, "wide", 300) == 0
    out = outputs("wide")
    assert out["w.seen"] == [REFERENCE] * 300  # every task read its input (by its realpath)
    assert out["w.listed"] == [LISTED] * 300  # and saw the Directory as it is, nothing added
    inputs = task_inputs(tmp_path, "wide")
    assert len(inputs) == 300
    (store,) = staged(tmp_path, REFERENCE)
    # the staged file takes 176 links (177 with its own name), one spare the other 124
    (spare,) = spares(tmp_path, REFERENCE)
    assert {os.stat(path).st_ino for path in inputs} == {os.stat(store).st_ino, os.stat(spare).st_ino}
    assert os.stat(store).st_nlink == config.EFS_LINK_LIMIT
    assert os.stat(spare).st_nlink == 1 + 300 - (config.EFS_LINK_LIMIT - 1)
    for text in INDEX.values():  # each file of the Directory input likewise
        assert len(staged(tmp_path, text)) == 1 and len(spares(tmp_path, text)) == 1
    assert len(files_under(tmp_path / "efs" / "cache" / "links")) == 3


def test_runs_reusing_staged_inputs_share_their_spares(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv(LIMIT, "5")  # 4 links per file besides its own name
    for run_id in ("r1", "r2", "r3"):
        assert drive(tmp_path, run_id, 6) == 0
        assert outputs(run_id)["w.seen"] == [REFERENCE] * 6
        assert outputs(run_id)["w.listed"] == [LISTED] * 6
    # 18 links of each file in all: 4 on the staged file, 4 on each spare -> 4 spares, made once
    # for all runs (a spare per run and per file at its limit would be 1 + 2 + 2 = 5)
    for text in [REFERENCE, *INDEX.values()]:
        copies = staged(tmp_path, text) + spares(tmp_path, text)
        assert len(copies) == 5, text
        assert all(os.stat(path).st_nlink <= 5 for path in copies)
    inputs = [p for run_id in ("r1", "r2", "r3") for p in task_inputs(tmp_path, run_id)]
    assert len(inputs) == 18
    assert len({os.stat(path).st_ino for path in inputs}) == 5
