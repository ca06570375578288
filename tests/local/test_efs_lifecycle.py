"""EFS holds nothing between runs, through the whole local pipeline: a successful run leaves no
directory, a failed one is kept (saying until when), and ``miniwdl-fargate gc`` (a task of the
driver's task definition, as on AWS) removes the failed one with no days kept, never a run
still going."""

import json
from pathlib import Path

from miniwdl_fargate import client, efs_cleanup, status
from miniwdl_fargate import upload as local_run
from miniwdl_fargate.local.stack import REGION
from miniwdl_fargate.pipeline import manage
from tests.waiting import wait_for

WDL = """version 1.1
workflow tiny {
  input { Int code = 0  Int nap = 0 }
  call step { input: code = code, nap = nap }
  output { String said = step.said }
}
task step {
  input { Int code  Int nap }
  command <<< echo said; sleep ~{nap}; exit ~{code} >>>
  output { String said = read_string(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def runs_root(stack):
    """The stack's <efs>/runs on this machine (local EFS: one folder per access point root)."""
    return wait_for(lambda: next(Path(stack.runtime.efs_root).glob("*/miniwdl/runs"), None), 30, "the local EFS's runs folder")


def submit(stack, tmp_path, name, **inputs):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "tiny.wdl").write_text(WDL)
    (folder / "inputs.json").write_text(json.dumps({f"tiny.{k}": v for k, v in inputs.items()}))
    return local_run.submit(stack.outputs["BucketName"], folder / "tiny.wdl", folder / "inputs.json", name=name)


def run(stack, tmp_path, name, **inputs):
    name, run_id = submit(stack, tmp_path, name, **inputs)
    return local_run.wait(stack.outputs["BucketName"], stack.outputs["StateMachineArn"], name, run_id, timeout=300)


def test_efs_keeps_no_successful_run_a_failed_one_for_a_while_and_gc_never_a_running_one(stack, tmp_path):
    bucket = stack.outputs["BucketName"]
    # a run held running: its task naps far longer than this test
    _, held = submit(stack, tmp_path, "efs-held", nap=600)
    current = lambda: status.read(bucket, held)  # noqa: E731
    wait_for(lambda: current() is not None and current().status == "RUNNING", 120, "the held run RUNNING")
    root = runs_root(stack)
    assert (root / held).is_dir()

    ok = run(stack, tmp_path, "efs-ok")
    assert ok.status == "SUCCEEDED", ok.document
    assert ok.document["outputs"]["tiny.said"] == "said"
    assert not (root / ok.run_id).exists()  # its outputs are in S3; nothing of it stays on EFS

    failed = run(stack, tmp_path, "efs-failed", code=3)
    assert failed.status == "FAILED", failed.document
    kept = json.loads((root / failed.run_id / efs_cleanup.EXPIRES_MARKER).read_text())
    assert kept["status"] == "FAILED" and kept["expires_at"] > kept["finished_at"]  # the stack keeps it 3 days

    deployment = client.Deployment(stack.stack_name, REGION, stack.outputs, local=True)
    report = client.collect_remotely(deployment, keep_days=0, timeout=120)
    by_name = {d["name"]: d for d in report["directories"]}
    assert by_name[failed.run_id]["action"] == "removed", by_name[failed.run_id]
    assert by_name[failed.run_id]["reason"].startswith("the run FAILED at")
    assert (by_name[held]["action"], by_name[held]["reason"]) == ("kept", "the run is RUNNING")
    assert ok.run_id not in by_name
    assert not (root / failed.run_id).exists() and (root / held).is_dir()
    assert current().status == "RUNNING"

    manage.cancel_run(bucket, stack.outputs["StateMachineArn"], stack.outputs["ClusterName"], held)
