"""Resuming a failed run through the whole local pipeline, as a user does it: a run whose driver
dies after its first call is resumed with `miniwdl-fargate resume`; the new run takes the first
call from the call cache, runs only the second, and succeeds, and each run's status names the
other. (Each refusal, and the command's answers to them: tests/integration/test_resume.py.)"""

import json
import uuid

from miniwdl_fargate import aws, run_options, status, sweep
from miniwdl_fargate import upload as local_run
from miniwdl_fargate.local.faults import Faults
from tests.local_ecs import tasks_of_run
from tests.waiting import run_end, wait_for

TWO_STEPS = """version 1.1
workflow twostep {
  input { String word }
  call first { input: word = word }
  call second { input: said = first.said }
  output { String out = second.out }
}
task first {
  input { String word }
  command <<< echo "~{word}" > said.txt >>>
  output { File said = "said.txt" }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
task second {
  input { File said }
  command <<< echo "second saw $(cat '~{said}')" >>>
  output { String out = read_string(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def test_a_run_whose_driver_died_is_resumed_reusing_its_finished_call(stack, tmp_path, local_cli):
    bucket = stack.outputs["BucketName"]
    wdl = tmp_path / "twostep.wdl"
    wdl.write_text(TWO_STEPS)
    word = uuid.uuid4().hex[:8]  # inputs no other run has cached
    # the driver is killed (as by a crash) when it launches the second call: the first is done
    stack.runtime.faults = Faults(kill_driver_after_tasks=2)
    try:
        name, old = local_run.submit(bucket, wdl, {"twostep.word": word}, name="resumable")
        failed = run_end(stack, name, old, timeout=240)
    finally:
        stack.runtime.faults = Faults()
    assert failed.status == "FAILED" and failed.document["error"] == "DriverStopped", failed.document
    wait_for(lambda: stack.runtime.running_tasks() == [], 30, what=lambda: f"end of {stack.runtime.running_tasks()}")

    resumed = local_cli("resume", old, "--follow", "--label", "attempt=2")
    assert resumed.returncode == 0, resumed.stderr
    new = json.loads(resumed.stdout)["run_id"]
    assert resumed.stderr.splitlines()[0] == f"resumed run {old} as run {new}"
    assert json.loads(resumed.stdout)["outputs"] == {"twostep.out": f"second saw {word}"}
    # the first call came from the cache: only the second ran
    assert [sweep.tags_of(t)[run_options.TAG_CALL] for t in tasks_of_run(stack, new, only="wdl")] == ["call-second"]
    cost = json.loads(aws.client("s3").get_object(Bucket=bucket, Key=f"runs/{name}/results/{new}/cost.json")["Body"].read())
    assert cost["call_cache_hits"] == 1
    record = json.loads(aws.client("s3").get_object(Bucket=bucket, Key=f"runs/{name}/results/{new}/run.json")["Body"].read())
    assert record["resumed_from"] == old and record["options"] == {"call_cache": True, "labels": {"attempt": "2"}}
    # each run names the other; the first stays FAILED
    assert status.read(bucket, new).resumed_from == old
    shown = local_cli("status", old)
    assert "status     FAILED" in shown.stdout and f"resumed by {new}" in shown.stdout, shown.stderr
