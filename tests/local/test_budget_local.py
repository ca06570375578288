"""A run's budget through the whole local pipeline (`local run` on a stack of its own, whose Prices
and MaxRunCostUsd parameters price a task that would sleep ten minutes so that it spends the
budget within seconds); the run ends FAILED with BudgetExceeded, its cost.json written and nothing
of it left running. The run's options.max_cost_usd is the unit tests' (test_limits_gate.py)."""

import json

import pytest
from test_cli import run_cli

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
# only the task's ephemeral storage beyond Fargate's 20 GB has a price: its 11 GB (21 asked, and
# room for the image) at 0.011 USD a second (the driver and the vCPUs cost nothing here, so the
# budget is the task's alone; its one-second minimum, 0.011, lets it launch). The prices are the
# stack's (its Prices parameter): a run's own miniwdl.cfg cannot set them
PRICES = '{"FARGATE": {"vcpu_hour": 0, "gb_hour": 0}, "ephemeral_gb_hour": 3.6, "public_ipv4_hour": 0, "minimum_seconds": 1}'


@pytest.mark.long
def test_a_run_that_reaches_its_budget_is_stopped_and_fails_saying_so(tmp_path):
    (tmp_path / "sleeper.wdl").write_text(SLEEPER)
    # (a bundle's own prices or budget checks are refused at submit: test_config's RUN_CFG_REFUSED)
    proc = run_cli(
        "local", "run", str(tmp_path / "sleeper.wdl"), "--state-dir", str(tmp_path / "state"),
        "--parameter", f"Prices={PRICES}", "--parameter", "MaxRunCostUsd=0.02", timeout=180,
    )
    assert proc.returncode == 1, proc.stderr
    assert "[local] FAILED: the run reached its budget: it had spent about" in proc.stderr
    results = next((tmp_path / "state" / "s3").glob("*/runs/sleeper-*/results/*/"))
    doc = json.loads((results / "error.json").read_text())
    assert doc["error"] == "BudgetExceeded", doc
    assert doc["limit_source"] == "the stack's MaxRunCostUsd" and doc["max_cost_usd"] == 0.02
    # halted once what it had spent, and what its running task would have billed by the time the
    # next check (BudgetCheckSeconds: 1 s in local mode) had stopped it, reached the budget
    # (each figure rounded to 6 places)
    assert doc["spent_usd"] + doc.get("committed_usd", 0) + doc.get("coming_usd", 0) >= 0.02 - 1e-5, doc
    cost = json.loads((results / "cost.json").read_text())
    # (cost.json bills the task to its end, after the halt: at least what the halt saw spent; the
    # budget is a cap, not a notice after the fact, so the total may stay under it)
    assert cost["status"] == "FAILED" and cost["total_usd"] >= doc["spent_usd"] > 0
    assert cost["prices"]["ephemeral_gb_hour"] == 3.6  # (the stack's, not the bundle's)
    naps = [a for a in cost["attempts"] if a["call"] != "driver"]
    # the task was stopped long before its ten minutes (`local run` ends with nothing left running)
    assert [a["call"] for a in naps] == ["call-nap"] and naps[0]["billed_seconds"] < 120
