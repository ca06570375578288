"""status.json: a finished run keeps its state, whoever writes late."""

import json

import pytest

from miniwdl_fargate import aws, runs, status
from miniwdl_fargate.pipeline import manage

RECORD = runs.RunRecord(
    run_id="st-0123abcd", name="st", bucket="runs", workflow="s3://runs/runs/st/workflow.wdl",
    inputs="s3://runs/runs/st/inputs.json", results="s3://runs/runs/st/results/st-0123abcd/",
    submitted_at="2026-11-25T12:00:00+00:00",
)


@pytest.fixture
def run(moto_aws):
    aws.client("s3").create_bucket(Bucket="runs")
    status.update("runs", RECORD.run_id, lambda current: current, initial=status.new(RECORD))
    return RECORD.run_id


def stored(run_id):
    key = status.status_key(run_id)
    return json.loads(aws.client("s3").get_object(Bucket="runs", Key=key)["Body"].read())


def test_a_finished_state_is_not_changed_by_a_late_writer(run):
    status.set_state("runs", run, "RUNNING")
    assert status.set_state("runs", run, "SUCCEEDED").status == "SUCCEEDED"
    for late in ("RUNNING", "FAILED", "CANCELLED"):
        assert status.set_state("runs", run, late).status == "SUCCEEDED"
    assert stored(run)["status"] == "SUCCEEDED"
    # counts still land (the driver's last publish)
    counted = status.update("runs", run, lambda c: c.model_copy(update={"tasks": status.TaskCounts(total=3, succeeded=3)}))
    assert counted.tasks.succeeded == 3 and stored(run)["status"] == "SUCCEEDED"


def test_cancelling_a_finished_run_refuses_and_leaves_it_as_it_was(run):
    status.set_state("runs", run, "SUCCEEDED")
    with pytest.raises(manage.RunFinished, match="already SUCCEEDED"):
        manage.cancel_run("runs", "arn:aws:states:us-east-1:123456789012:stateMachine:run", "", run)
    assert stored(run)["status"] == "SUCCEEDED" and stored(run)["error"] is None
