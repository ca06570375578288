"""Nothing a run leaves on EFS stays for good (gc_task.schedule): every run's finalize step makes
sure a gc task runs once what the run left falls due (its directory if it failed, the shared cache's
entries it used), as a one-time EventBridge Scheduler schedule a day that deletes itself; local
mode runs schedules as they fall due (local/schedules.py). Against moto's Scheduler and ECS."""

import datetime
import json
import logging

import botocore.session
import pytest
from backend_support import driver_side, validate
from botocore.awsrequest import AWSResponse
from botocore.validate import ParamValidator

from miniwdl_fargate import aws, gc_task, runs, status
from miniwdl_fargate.local import schedules
from miniwdl_fargate.pipeline import finalize
from miniwdl_fargate.pipeline.settings import FinalizeSettings

SCHEDULER_MODEL = botocore.session.get_session().get_service_model("scheduler")
GROUP = "stack-gc"
ROLE = "arn:aws:iam::123456789012:role/stack-gc-scheduler"


#: the moment finalize sees as now (finalize.clock)
NOW = datetime.datetime(2026, 12, 3, 9, 30, tzinfo=datetime.timezone.utc)


@pytest.fixture
def collection(moto_aws, monkeypatch):
    monkeypatch.setattr(finalize, "clock", lambda: NOW)
    env = driver_side()
    aws.client("scheduler").create_schedule_group(Name=GROUP)
    settings = FinalizeSettings.from_env({**env, "GC_SCHEDULE_GROUP": GROUP, "GC_SCHEDULER_ROLE_ARN": ROLE, "KEEP_FAILED_RUN_DAYS": "3"})
    return settings.collection()


def record(run_id):
    return runs.RunRecord(
        run_id=run_id, name="n", bucket="runs", workflow="s3://runs/w.wdl", inputs="s3://runs/i.json",
        results=f"s3://runs/results/{run_id}/", submitted_at="2026-01-01T00:00:00+00:00",
    )


def names(*days_after):
    """The schedules of the days ``days_after`` the day of NOW (UTC)."""
    return [f"efs-gc-{NOW.date() + datetime.timedelta(days=d)}" for d in days_after]


def scheduled():
    listed = aws.client("scheduler").list_schedules(GroupName=GROUP)["Schedules"]
    return sorted(s["Name"] for s in listed)


def end(collection, run_id, state):
    """A run's finalize step, as the state machine's RecordSuccess / RecordFailure calls it."""
    if state == "SUCCEEDED":
        aws.client("s3").put_object(Bucket="runs", Key=f"results/{run_id}/outputs.json", Body=b'{"outputs": {}}')
    error = None if state == "SUCCEEDED" else {"Error": "RunFailed", "Cause": "{\"message\": \"call-x failed\"}"}
    return finalize.finalize(record(run_id), state, error, "c", "", lambda: collection)


def test_a_failed_run_has_a_gc_task_scheduled_for_when_its_directory_and_its_cache_entries_fall_due(collection):
    result = end(collection, "run-1", "FAILED")
    # kept 3 days (KeepFailedRunDays), then collected the day after; the cache entries it used
    # are unused for 7 days (aws_fargate.cfg's keep_unused_cache_days), collected the day after
    assert result["gc_scheduled"] == names(4, 8) == ["efs-gc-2026-12-07", "efs-gc-2026-12-11"]
    assert scheduled() == result["gc_scheduled"]
    assert status.read("runs", "run-1").status == "FAILED"

    schedule = aws.client("scheduler").get_schedule(GroupName=GROUP, Name=result["gc_scheduled"][0])
    day = schedule["Name"].removeprefix("efs-gc-")
    assert schedule["ScheduleExpression"] == f"at({day}T01:00:00)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["ActionAfterCompletion"] == "DELETE"  # nothing of it stays once it has run
    assert schedule["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 60}
    target = schedule["Target"]
    assert target["Arn"] == "arn:aws:scheduler:::aws-sdk:ecs:runTask" and target["RoleArn"] == ROLE
    # the universal target's input: ECS RunTask's request, its members named as the AWS SDKs
    # name them (PascalCase, where ECS's own API is camelCase)
    sent = json.loads(target["Input"])
    assert sent["Overrides"]["ContainerOverrides"][0]["Name"] == "driver" and sent["Cluster"] == "c"
    request = aws.sdk_parameters("ecs", "RunTask", sent, to_sdk=False)
    validate("RunTask", request)
    assert aws.sdk_parameters("ecs", "RunTask", request) == sent
    # the family: its latest revision, whatever stack update came between
    assert request["taskDefinition"] == "stack-driver" != collection.driver_task.task_definition
    assert request["overrides"]["containerOverrides"] == [{"name": "driver", "command": [
        "miniwdl-fargate", "gc", "--here", "--bucket", "runs", "--report", f"gc/scheduled-{day}.json",
    ]}]  # the days kept are the driver's own (its task definition's environment)


def test_the_schedule_request_is_valid_and_runs_after_what_it_collects_falls_due(collection):
    for due in ("2026-12-03T00:00:01+00:00", "2026-12-03T23:59:59+00:00", "2026-12-03T22:30:00-05:00"):
        at = datetime.datetime.fromisoformat(due)
        request = gc_task.schedule_request(collection, "runs", gc_task.run_day(at))
        report = ParamValidator().validate(request, SCHEDULER_MODEL.operation_model("CreateSchedule").input_shape)
        assert not report.has_errors(), report.generate_report()
        runs_at = schedules.due_at(request)
        assert at < runs_at <= at + datetime.timedelta(days=2), (due, runs_at)
    # a schedule's name: 1 to 64 of [0-9a-zA-Z-_.] (CreateSchedule's Name)
    assert request["Name"] == "efs-gc-2026-12-05" and len(request["Name"]) <= 64


def test_runs_ending_the_same_day_share_its_schedules_and_a_successful_run_needs_only_its_cache_collected(collection):
    first = end(collection, "run-1", "SUCCEEDED")
    assert first["gc_scheduled"] == names(8)
    assert scheduled() == first["gc_scheduled"]  # its directory went at its end: only its cache entries
    failed = end(collection, "run-2", "FAILED")
    assert failed["gc_scheduled"] == names(4)  # the day after its cache entries fall due is scheduled already
    again = end(collection, "run-3", "FAILED")
    assert again["gc_scheduled"] == []  # both of its days are
    assert scheduled() == sorted(names(4, 8))


def test_local_mode_runs_a_schedule_that_fell_due_as_the_scheduler_does_and_it_is_gone(collection):
    end(collection, "run-1", "FAILED")
    ecs = aws.client("ecs")
    assert schedules.fire_due(NOW) == []  # nothing is due yet
    assert ecs.list_tasks(cluster="c")["taskArns"] == []
    first, last = scheduled()
    week = NOW + datetime.timedelta(days=6)
    assert schedules.fire_due(week) == [f"{GROUP}/{first}"]
    (arn,) = ecs.list_tasks(cluster="c")["taskArns"]
    task = ecs.describe_tasks(cluster="c", tasks=[arn])["tasks"][0]
    assert task["startedBy"] == "miniwdl-fargate-gc"
    assert task["overrides"]["containerOverrides"][0]["command"][:3] == ["miniwdl-fargate", "gc", "--here"]
    assert scheduled() == [last]  # ActionAfterCompletion DELETE: run once, then gone


def test_a_pending_schedule_runs_the_driver_task_definition_a_stack_update_registered_since(collection):
    end(collection, "run-1", "FAILED")
    ecs = aws.client("ecs")
    newer = ecs.register_task_definition(
        family="stack-driver", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="1024", memory="4096",
        containerDefinitions=[{"name": "driver", "image": "driver:2"}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.deregister_task_definition(taskDefinition=collection.driver_task.task_definition)  # (as CloudFormation does)
    schedules.fire_due(NOW + datetime.timedelta(days=30))
    started = ecs.describe_tasks(cluster="c", tasks=ecs.list_tasks(cluster="c")["taskArns"])["tasks"]
    assert [t["taskDefinitionArn"] for t in started] == [newer, newer]


def test_a_schedule_that_cannot_be_made_leaves_the_runs_end_recorded_and_says_what_collects_instead(collection, caplog):
    # as AWS answers a role an SCP denies scheduler:CreateSchedule
    denied = {"Error": {"Code": "AccessDeniedException", "Message": "explicit deny in a service control policy"}}
    events = aws.client("scheduler").meta.events
    deny = lambda **_: (AWSResponse("https://scheduler", 403, {}, None), denied)  # noqa: E731
    events.register("before-call.scheduler.CreateSchedule", deny)
    try:
        with caplog.at_level(logging.WARNING):
            result = end(collection, "run-1", "FAILED")
    finally:
        events.unregister("before-call.scheduler.CreateSchedule", deny)
    assert result["status"] == "FAILED" and result["gc_scheduled"] == []
    assert status.read("runs", "run-1").status == "FAILED"
    assert "explicit deny in a service control policy" in caplog.text
    assert "the next run's driver collects it at its start, or run `miniwdl-fargate gc`" in caplog.text
    assert scheduled() == []


def test_nothing_in_making_the_collection_fails_the_runs_end(collection, caplog):
    def broken():
        raise ValueError("[aws_fargate] keep_unused_cache_days: not a number")

    with caplog.at_level(logging.WARNING):
        result = finalize.finalize(record("run-1"), "FAILED", None, "c", "", broken)
    assert result["status"] == "FAILED" and result["gc_scheduled"] == []
    assert "keep_unused_cache_days: not a number" in caplog.text and "run `miniwdl-fargate gc`" in caplog.text
