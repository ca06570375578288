"""A run's budget through the whole local pipeline: a task that would sleep ten minutes, priced so
that it spends the run's budget (options.max_cost_usd) within seconds; the run ends FAILED with
BudgetExceeded, its cost.json written and nothing of it left running."""

import json

from test_report_cache_oom import wdl_tasks_of

from miniwdl_fargate import run_options, upload
from tests.waiting import run_end, wait_for

SLEEPER = """
version 1.1
workflow sleeper {
  call nap
  output { String said = nap.said }
}
task nap {
  command <<< sleep 600 && echo awake >>>
  output { String said = read_string(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" disks: "21 GiB" }
}
"""
# only the task's one GB of ephemeral storage beyond Fargate's 20 has a price: 0.01 USD a second
# (the driver and the vCPUs cost nothing here, so the budget is the task's alone)
CFG = """
[aws_fargate]
prices = {"FARGATE": {"vcpu_hour": 0, "gb_hour": 0}, "ephemeral_gb_hour": 36, "public_ipv4_hour": 0, "minimum_seconds": 1}
budget_check_seconds = 0.5
"""


def test_a_run_that_reaches_its_budget_is_stopped_and_fails_saying_so(stack, s3, tmp_path):
    (tmp_path / "sleeper.wdl").write_text(SLEEPER)
    (tmp_path / "miniwdl.cfg").write_text(CFG)
    (tmp_path / "inputs.json").write_text("{}")
    bucket = stack.outputs["BucketName"]
    prepared = upload.prepare(
        tmp_path / "sleeper.wdl", tmp_path / "inputs.json", name="budget", options=run_options.RunOptions(max_cost_usd=0.02)
    )
    name, run_id = prepared.upload(bucket)
    result = run_end(stack, name, run_id, timeout=120)
    assert result.status == "FAILED", result.document
    doc = result.document
    assert doc["error"] == "BudgetExceeded", doc
    assert doc["limit_source"] == "options.max_cost_usd" and doc["max_cost_usd"] == 0.02
    assert doc["spent_usd"] >= 0.02
    assert doc["message"].startswith("the run reached its budget: it had spent about")
    cost = json.loads(s3.get_object(Bucket=bucket, Key=doc["cost"].split("/", 3)[3])["Body"].read())
    assert cost["status"] == "FAILED" and cost["total_usd"] >= 0.02
    assert [a["call"] for a in cost["attempts"] if a["call"] != "driver"] == ["call-nap"]
    # the task was stopped long before its ten minutes, and nothing of the run is left running
    tasks = wdl_tasks_of(stack, run_id)
    assert len(tasks) == 1
    wait_for(lambda: all(t["lastStatus"] == "STOPPED" for t in wdl_tasks_of(stack, run_id)), 30, what="the task stopped")
    assert stack.runtime.running_tasks() == []
