"""StopTimedOutRun (pipeline/timeout.py) against moto: a run whose wait timed out has its driver
and every task stopped and ends FAILED saying which limit and after how long; a driver that had
finished, whose end was lost, ends SUCCEEDED; a driver's own error.json is kept."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from miniwdl_fargate import aws, runs, s3io, status, sweep
from miniwdl_fargate.pipeline import timeout
from tests.function_env import LambdaContext, set_environment

RUN = "late-0123abcd"


def record(**limits):
    return runs.RunRecord(
        run_id=RUN, name="late", bucket="runs", workflow="s3://runs/runs/late/workflow.wdl",
        inputs="s3://runs/runs/late/inputs.json", results=f"s3://runs/runs/late/results/{RUN}/",
        submitted_at=(datetime.now(timezone.utc) - timedelta(seconds=100)).isoformat(timespec="seconds"), **limits,
    )


@pytest.fixture
def run_tasks(moto_aws):
    """The run's driver and two WDL tasks running in cluster wdl, and one task of another run."""
    aws.client("s3").create_bucket(Bucket="runs")
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="wdl")
    ecs.register_task_definition(
        family="t", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        containerDefinitions=[{"name": "t", "image": "t", "memory": 512}],
    )
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]

    def run(tags):
        return ecs.run_task(
            cluster="wdl", taskDefinition="t", launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}},
            tags=[{"key": k, "value": v} for k, v in tags.items()],
            # (as the backend and the launch step start a run's tasks and driver)
            **({"startedBy": runs.started_by(tags[sweep.RUN_TAG])} if sweep.RUN_TAG in tags else {}),
        )["tasks"][0]["taskArn"]

    driver = run({sweep.RUN_TAG: RUN})
    tasks = [run({sweep.RUN_TAG: RUN, sweep.DRIVER_TAG: driver}) for _ in range(2)]
    other = run({sweep.RUN_TAG: "other-run"})
    return {"driver": driver, "tasks": tasks, "other": other}


def stored(name):
    return s3io.find_json("runs", f"runs/late/results/{RUN}/{name}")


def start(rec):
    status.update("runs", RUN, lambda current: current.model_copy(update={"status": "RUNNING"}), initial=status.new(rec))


def test_at_its_maximum_duration_the_run_is_stopped_and_fails_saying_so(run_tasks):
    rec = record(max_run_seconds=60, heartbeat_seconds=30)
    start(rec)
    answer = timeout.stop_timed_out_run(rec, {"Error": "States.Timeout", "Cause": ""}, "wdl")
    assert answer == {"status": "FAILED"}
    running = {t["taskArn"] for t in sweep.running_tasks("wdl")}
    assert running == {run_tasks["other"]}, "the driver and both tasks are stopped, nothing else"
    error = stored("error.json")
    assert error["error"] == "TimedOut" and error["limit"] == "max_duration"
    assert error["message"].startswith("the run timed out: it was still running at its maximum duration of 1m00s (0.01667 h")
    assert error["elapsed_s"] >= 100
    assert sorted(error["stopped_tasks"]) == sorted([run_tasks["driver"], *run_tasks["tasks"]])
    final = status.read("runs", RUN)
    assert final.status == "FAILED" and final.error["error"] == "TimedOut"


def test_a_lost_heartbeat_is_told_apart_even_when_named_states_timeout(run_tasks):
    rec = record(max_run_seconds=3600, heartbeat_seconds=30)
    start(rec)
    for name in ("States.HeartbeatTimeout", "States.Timeout"):  # (100 s into a one-hour limit)
        assert timeout.which_limit(name, rec, 100.0) == timeout.HEARTBEAT
    timeout.stop_timed_out_run(rec, {"Error": "States.Timeout"}, "wdl")
    error = stored("error.json")
    assert error["limit"] == "heartbeat"
    assert "its driver sent no heartbeat for 30 s" in error["message"]


def test_a_finished_driver_whose_end_was_lost_succeeded(run_tasks):
    rec = record()
    start(rec)
    s3io.put_json("runs", f"runs/late/results/{RUN}/outputs.json", {"status": "SUCCEEDED", "outputs": {}})
    assert timeout.stop_timed_out_run(rec, {"Error": "States.HeartbeatTimeout"}, "wdl") == {"status": "SUCCEEDED"}
    assert stored("error.json") is None
    assert status.read("runs", RUN).status == "RUNNING"  # (RecordSuccess finalizes it)


def test_a_run_whose_driver_claimed_success_is_not_failed_under_it(run_tasks):
    """The driver claims success in status.json just before writing outputs.json; a timeout that
    lands between the two leaves that run to succeed (no FAILED beside an outputs.json), and
    stops nothing: the driver is writing its last object."""
    rec = record(max_run_seconds=60, heartbeat_seconds=30)
    start(rec)
    claimed = rec.results + "outputs.json"
    status.update("runs", RUN, lambda current: current.model_copy(update={"outputs": claimed}))
    assert timeout.stop_timed_out_run(rec, {"Error": "States.Timeout"}, "wdl") == {"status": "SUCCEEDED"}
    assert stored("error.json") is None
    assert status.read("runs", RUN).status == "RUNNING"  # (RecordSuccess finalizes it)
    assert run_tasks["driver"] in {t["taskArn"] for t in sweep.running_tasks("wdl")}


def test_a_drivers_own_error_is_kept(run_tasks):
    rec = record()
    start(rec)
    own = {"run_id": RUN, "status": "FAILED", "error": "CommandFailed", "message": "call-x failed with exit status 3"}
    s3io.put_json("runs", f"runs/late/results/{RUN}/error.json", own)
    assert timeout.stop_timed_out_run(rec, {"Error": "States.HeartbeatTimeout"}, "wdl") == {"status": "FAILED"}
    assert stored("error.json") == own
    assert {t["taskArn"] for t in sweep.running_tasks("wdl")} == {run_tasks["other"]}


def test_the_handler_parses_the_state_machines_payload(run_tasks, monkeypatch):
    import run_timed_out

    set_environment(monkeypatch, CLUSTER="wdl")
    rec = record(max_run_seconds=60, heartbeat_seconds=30)
    start(rec)
    payload = {"run": json.loads(rec.model_dump_json()) | {"error": {"Error": "States.Timeout", "Cause": ""}},
               "error": {"Error": "States.Timeout", "Cause": ""}}

    assert run_timed_out.handler(payload, LambdaContext()) == {"status": "FAILED"}
    assert stored("error.json")["limit"] == "max_duration"
