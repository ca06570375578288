"""``miniwdl-fargate cost``: the runs' estimated cost per label value, their cost.json added up."""

import json

import pytest

from miniwdl_fargate import aws, cli, client, runs, s3io, status


def a_run(name, seed, by_label=None):
    """A run's status.json, and its cost.json when ``by_label`` is given (none: still running)."""
    run_id = runs.run_id_for(name, seed)
    results = runs.results_uri("runs", name, run_id)
    record = runs.RunRecord(run_id=run_id, name=name, bucket="runs", workflow=results + "source/w.wdl",
                            inputs=results + "inputs.json", results=results, submitted_at=runs.now_iso())
    status.update("runs", run_id, lambda current: current, initial=status.new(record))
    if by_label is not None:
        total = max([0.0, *(usd for values in by_label.values() for usd in values.values())])
        s3io.put_json("runs", s3io.split(results)[1] + "cost.json",
                      {"run_id": run_id, "currency": "USD", "total_usd": total, "by_label": by_label})
    return run_id


@pytest.fixture
def deployment(moto_aws, monkeypatch):
    aws.client("s3").create_bucket(Bucket="runs")
    deployed = client.Deployment("s", "us-east-1", {"BucketName": "runs"})
    monkeypatch.setattr(client, "connect", lambda *a, **k: deployed)
    return deployed


def test_cost_adds_up_the_runs_cost_per_label_value_and_names_runs_without_one(deployment, capsys):
    a_run("align", "1", {"project": {"x": 1.5}, "team": {"lab": 1.5}})
    a_run("align", "2", {"project": {"x": 0.25}})
    a_run("call", "1", {"project": {"y": 2.0}})
    a_run("plain", "1", {})  # a run without labels
    going = a_run("call", "2")  # still running: no cost.json yet
    gone = a_run("drop", "1")  # cancelled before its driver ran: it never will have one
    status.update("runs", gone, lambda current: current.model_copy(update={"status": "CANCELLED"}))
    doc = client.cost_by_label(deployment)
    assert doc == {"by_label": {"project": {"x": 1.75, "y": 2.0}, "team": {"lab": 1.5}}, "currency": "USD",
                   "runs": 4, "total_usd": 3.75, "without_cost": [going, gone], "ended_without_cost": [gone],
                   "not_counted_from": None}
    assert cli.main(["cost", "--label", "project"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[:3]] == [["LABEL", "VALUE", "USD"], ["project", "y", "2.0000"], ["project", "x", "1.7500"]]
    assert lines[3] == f"4 run(s) counted, 3.7500 USD in all (labelled or not); 1 without a cost estimate yet: {going}; 1 ended without one: {gone}"
    # a --limit that leaves runs out says so (the total is not the whole)
    assert cli.main(["cost", "--limit", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("more runs than --limit are not counted: give a larger --limit")
    assert cli.main(["cost", "--name", "align", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_label"] == {"project": {"x": 1.75}, "team": {"lab": 1.5}}
