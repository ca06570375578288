"""The README's first command, as a user runs it: `miniwdl-fargate local run WDL INPUTS`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "miniwdl_fargate.cli"]


def run_cli(*args, timeout=300):
    # WDL tasks as sandboxed host processes, as `make demo` runs them (ubuntu:22.04 is not to be
    # had offline; tests/containers runs real images)
    env = {**os.environ, "MINIWDL_FARGATE_LOCAL_ENGINE": "none"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


@pytest.mark.long
def test_local_run_prints_outputs_and_where_they_landed(tmp_path):
    proc = run_cli(
        "local", "run", "examples/hello/workflow.wdl", "examples/hello/inputs.json",
        "--seed-s3", "examples/s3", "--state-dir", str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    outputs = doc["outputs"]
    assert outputs["hello.reference_words"] == 9
    assert all(uri.startswith(doc["results"] + "out/") for uri in outputs["hello.greetings"])
    assert f"[local] outputs: {doc['results']}outputs.json" in proc.stderr
    # the results were copied out of the in-memory bucket for the user to look at
    bucket_and_prefix = doc["results"][len("s3://"):]
    local_copy = tmp_path / "s3" / bucket_and_prefix
    assert json.loads((local_copy / "outputs.json").read_text())["outputs"] == outputs
    assert (local_copy / "out" / "summary" / "summary.txt").read_text().count("Hello") == 3
    # and the run report with them: its last lines say where
    assert f"[local] run report: {local_copy / 'report.html'} (estimated cost " in proc.stderr
    assert (local_copy / "timeline.svg").read_text().startswith("<svg")


def test_local_run_with_a_missing_input_file_starts_nothing(tmp_path):
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"hello.names": ["x"], "hello.reference": "no/such/file.txt"}))
    proc = run_cli("local", "run", "examples/hello/workflow.wdl", str(inputs), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2
    assert f"error: inputs: file no/such/file.txt not found (looked for {tmp_path}/no/such/file.txt)" in proc.stderr
    assert not (tmp_path / "state").exists()  # checked before local mode started anything


def test_local_run_with_missing_files_fails_before_starting(tmp_path):
    proc = run_cli("local", "run", "nope.wdl", "examples/hello/inputs.json", "--state-dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: WDL file nope.wdl not found"
    assert not any(tmp_path.iterdir())
