"""The launch Lambda's RunTask of the driver is idempotent: a retried invocation for the same run
and Step Functions task token gets the driver the first one started."""

import datetime

import botocore.session
import pytest
from botocore.validate import ParamValidator

from backend_support import driver_side

from miniwdl_fargate import aws, runs
from miniwdl_fargate.local.moto import fixes
from miniwdl_fargate.pipeline import launch
from miniwdl_fargate.pipeline.settings import LaunchSettings


@pytest.fixture
def settings(moto_aws):
    fixes.run_task_client_token()  # as in local mode: moto alone ignores the token
    fixes.list_tasks_filters()  # as ECS: startedBy alone, RUNNING by default
    # (a number: in-process moto's Service Quotas knows no Fargate quota, which takes one run at a time)
    return LaunchSettings.from_env({**driver_side(), "MAX_CONCURRENT_RUNS": "100"})


def record(run_id="run-1"):
    return runs.RunRecord(
        run_id=run_id, name="n", bucket="runs", workflow="s3://runs/w.wdl", inputs="s3://runs/i.json",
        results="s3://runs/results/run-1/", submitted_at="2026-01-01T00:00:00+00:00",
    )


def test_a_retried_launch_for_the_same_attempt_starts_one_driver(settings):
    first = launch.launch_driver(settings, record(), "sfn-task-token-A")
    again = launch.launch_driver(settings, record(), "sfn-task-token-A")
    assert again == first
    assert len(aws.client("ecs").list_tasks(cluster="c")["taskArns"]) == 1
    # another state-machine attempt (another task token) or another run: another driver
    assert launch.launch_driver(settings, record(), "sfn-task-token-B") != first
    assert launch.launch_driver(settings, record("run-2"), "sfn-task-token-A") != first


def test_a_new_attempt_stops_the_driver_an_unanswered_run_task_may_have_started(settings):
    """A RunTask whose answer was lost (DriverLaunchFailed) is retried by the state machine with a
    new task token, so a new clientToken: the driver the lost call started holds a spent token
    and would run the workflow beside the new one. The new attempt stops it first; a retried
    invocation of the same attempt finds its own driver and starts nothing."""
    ecs = aws.client("ecs")
    lost = launch.launch_driver(settings, record(), "sfn-task-token-A")  # (its answer "lost")
    new = launch.launch_driver(settings, record(), "sfn-task-token-B")
    assert new != lost
    states = {t["taskArn"]: t["desiredStatus"] for t in ecs.describe_tasks(cluster="c", tasks=[lost, new])["tasks"]}
    assert states == {lost: "STOPPED", new: "RUNNING"}
    assert launch.launch_driver(settings, record(), "sfn-task-token-B") == new  # (its own retry)
    running = ecs.list_tasks(cluster="c", desiredStatus="RUNNING")["taskArns"]
    assert running == [new]


def test_a_new_attempt_finds_the_earlier_driver_among_many_tasks_of_its_run(settings):
    """ECS lists by startedBy only with no other filter: the run's WDL tasks (started by the run
    too) are listed with its drivers, a page at a time, and described 100 at a time."""
    ecs = aws.client("ecs")
    ecs.register_task_definition(
        family="stack-task-0123", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        containerDefinitions=[{"name": "task", "image": "ubuntu"}],
    )
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    lost = launch.launch_driver(settings, record(), "sfn-task-token-A")
    for i in range(13):  # (RunTask starts at most 10 a call)
        ecs.run_task(cluster="c", taskDefinition="stack-task-0123", launchType="FARGATE", count=10, clientToken=f"w-{i}",
                     startedBy=runs.started_by("run-1"),
                     networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}})
    described = []
    ecs.meta.events.register("provide-client-params.ecs.DescribeTasks", lambda params, **_: described.append(len(params["tasks"])))
    new = launch.launch_driver(settings, record(), "sfn-task-token-B")
    assert desired(lost) == "STOPPED" and desired(new) == "RUNNING"
    assert sorted(described)[-1] <= 100 and sum(described) >= 131
    assert len(ecs.list_tasks(cluster="c")["taskArns"]) == 131  # the WDL tasks left as they were, and the new driver


def test_the_driver_token_fits_run_task(settings):
    token = launch.driver_client_token("run-1", "x" * 5000)
    assert len(token) <= 64 and all(33 <= ord(c) <= 126 for c in token)
    model = botocore.session.get_session().get_service_model("ecs")
    request = {"cluster": "c", "taskDefinition": "td", "clientToken": token}
    assert not ParamValidator().validate(request, model.operation_model("RunTask").input_shape).has_errors()


# -- cancel and the end of a run always stop the work (issue 11, item 4) -------------------------

from miniwdl_fargate import s3io, status  # noqa: E402
from miniwdl_fargate.driver import DriverRun, claim_success  # noqa: E402
from miniwdl_fargate.pipeline import driver_slots, finalize, manage  # noqa: E402

SFN = "arn:aws:states:us-east-1:123456789012:stateMachine:run"


def submitted(run_id="run-1"):
    status.update("runs", run_id, lambda current: current, initial=status.new(record(run_id)))
    return record(run_id)


def desired(arn):
    return aws.client("ecs").describe_tasks(cluster="c", tasks=[arn])["tasks"][0]["desiredStatus"]


def valid(operation, request):
    model = botocore.session.get_session().get_service_model("ecs")
    return not ParamValidator().validate(request, model.operation_model(operation).input_shape).has_errors()


def test_launch_refuses_a_run_cancelled_while_submitted(settings):
    run = submitted()
    manage.cancel_run("runs", SFN, "c", run.run_id)
    with pytest.raises(launch.RunAlreadyEnded, match="run run-1 is CANCELLED: its driver is not launched"):
        launch.launch_driver(settings, run, "token")
    assert aws.client("ecs").list_tasks(cluster="c")["taskArns"] == []


def test_a_driver_launched_as_its_run_is_cancelled_is_stopped(settings, monkeypatch):
    run = submitted()
    requests = []
    real = launch._run_driver

    def cancelled_during_run_task(ecs, *args):
        answer = real(ecs, *args)
        manage.cancel_run("runs", SFN, "", run.run_id)  # (no cluster: the driver is not listed yet)
        ecs.meta.events.register("provide-client-params.ecs.StopTask", lambda params, **_: requests.append(dict(params)))
        return answer

    monkeypatch.setattr(launch, "_run_driver", cancelled_during_run_task)
    with pytest.raises(launch.RunAlreadyEnded, match="was stopped as it started"):
        launch.launch_driver(settings, run, "token")
    (arn,) = aws.client("ecs").list_tasks(cluster="c", desiredStatus="STOPPED")["taskArns"]
    assert desired(arn) == "STOPPED"
    assert requests and all(valid("StopTask", r) for r in requests)
    assert status.read("runs", run.run_id).status == "CANCELLED"


def test_success_and_cancel_exclude_each_other(settings):
    driver_run = DriverRun("run-1", "s3://runs/w.wdl", "s3://runs/i.json", "s3://runs/results/run-1/", "/nonexistent")
    submitted()
    assert claim_success(driver_run)  # the driver got there first: the cancel is too late
    with pytest.raises(manage.RunFinished, match="already SUCCEEDED: its driver is writing its outputs"):
        manage.cancel_run("runs", SFN, "c", "run-1")
    assert status.read("runs", "run-1").status == "SUBMITTED"
    assert s3io.find_json("runs", "results/run-1/error.json") is None
    submitted("run-2")
    manage.cancel_run("runs", SFN, "c", "run-2")  # the cancel got there first: no success claimed
    other = DriverRun("run-2", "s3://runs/w.wdl", "s3://runs/i.json", "s3://runs/results/run-2/", "/nonexistent")
    assert not claim_success(other)
    assert status.read("runs", "run-2").outputs is None


def test_cancel_of_an_ended_run_stops_what_still_runs_and_says_so(settings):
    run = submitted()
    arn = launch.launch_driver(settings, run, "token")
    status.set_state("runs", run.run_id, "FAILED")
    with pytest.raises(manage.RunFinished, match=r"^run run-1 already FAILED; stopped 1 task\(s\) of it still running$"):
        manage.cancel_run("runs", SFN, "c", run.run_id)
    assert desired(arn) == "STOPPED"
    with pytest.raises(manage.RunFinished, match=r"^run run-1 already FAILED$"):
        manage.cancel_run("runs", SFN, "c", run.run_id)


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED"])
def test_every_end_the_state_machine_records_stops_what_still_runs(settings, state):
    run = submitted()
    arn = launch.launch_driver(settings, run, "token")
    if state == "SUCCEEDED":
        s3io.put_json("runs", "results/run-1/outputs.json", {"run_id": "run-1", "status": "SUCCEEDED", "outputs": {}})
    error = {"Error": "States.TaskFailed", "Cause": "{\"errorMessage\": \"the Lambda kept failing\"}"}
    finalize.finalize(run, state, None if state == "SUCCEEDED" else error, cluster="c")
    assert desired(arn) == "STOPPED"
    assert status.read("runs", run.run_id).status == state


# -- the driver carries the run's labels as tags (issue 14, item 5) --------------------------------


def test_the_driver_is_tagged_with_the_run_its_name_workflow_and_labels(settings):
    run = record().model_copy(update={"options": {"labels": {"project": "rnaseq", "cost center": "lab:42"}},
                                      "workflow_name": "hello"})
    sent = []
    aws.client("ecs").meta.events.register("provide-client-params.ecs.RunTask", lambda params, **_: sent.append(dict(params)))
    arn = launch.launch_driver(settings, run, "token")
    assert len(sent) == 1 and valid("RunTask", sent[0])
    assert sent[0]["enableECSManagedTags"] is True and sent[0]["propagateTags"] == "TASK_DEFINITION"
    tags = {t["key"]: t["value"] for t in aws.client("ecs").list_tags_for_resource(resourceArn=arn)["tags"]}
    assert tags == {
        "miniwdl-fargate:run": "run-1", "miniwdl-fargate:call": "driver", "miniwdl-fargate:run-name": "n",
        "miniwdl-fargate:workflow": "hello", "project": "rnaseq", "cost center": "lab:42",
    }


def test_a_cancel_that_cannot_stop_every_task_says_so_and_can_be_repeated(settings, monkeypatch):
    """StopTask failures (a user without ecs:StopTask) were only logged: `cancel` said the run was
    CANCELLED while its tasks ran on. It says how many could not be stopped; a second cancel
    (once that is mended) stops the execution again and what still runs."""
    from botocore.exceptions import ClientError

    run = submitted()
    arn = launch.launch_driver(settings, run, "token")
    ecs = aws.client("ecs")
    real = ecs.stop_task

    def denied(**kwargs):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized to perform: ecs:StopTask"}}, "StopTask")

    monkeypatch.setattr(ecs, "stop_task", denied)
    with pytest.raises(manage.CancelIncomplete, match=r"^run run-1 is CANCELLED, but 1 of its task\(s\) could not be stopped"):
        manage.cancel_run("runs", SFN, "c", run.run_id)
    assert status.read("runs", run.run_id).status == "CANCELLED" and desired(arn) == "RUNNING"
    assert s3io.find_json("runs", "results/run-1/error.json")["status"] == "CANCELLED"
    # a second cancel before it is mended says so again, not only that the run is CANCELLED
    with pytest.raises(manage.CancelIncomplete, match=r"^run run-1 already CANCELLED, but 1 of its task\(s\) still running could not be stopped"):
        manage.cancel_run("runs", SFN, "c", run.run_id)
    monkeypatch.setattr(ecs, "stop_task", real)
    stopped_executions = []
    sfn = aws.client("stepfunctions")
    monkeypatch.setattr(sfn, "stop_execution", lambda **kwargs: stopped_executions.append(kwargs["executionArn"]))
    with pytest.raises(manage.RunFinished, match=r"^run run-1 already CANCELLED; stopped 1 task\(s\) of it still running$"):
        manage.cancel_run("runs", SFN, "c", run.run_id)
    assert desired(arn) == "STOPPED" and stopped_executions == [runs.execution_arn(SFN, "run-1")]


def test_a_driver_whose_tags_and_its_definitions_are_over_fifty_launches_with_the_runs_own(settings, monkeypatch):
    """A stack deployed with tags (`sam deploy --tags`: CloudFormation tags the driver's task
    definition too) and a run with many labels: RunTask refuses more than 50 tags with the
    definition's propagated; the driver is launched with the run's own tags, without them."""
    from botocore.exceptions import ClientError

    ecs = aws.client("ecs")
    real, sent = ecs.run_task, []

    def fifty(**kwargs):
        sent.append(kwargs)
        if "propagateTags" in kwargs:
            raise ecs.exceptions.InvalidParameterException(
                {"Error": {"Code": "InvalidParameterException", "Message": "Tags can not be more than 50"}}, "RunTask")
        return real(**kwargs)

    monkeypatch.setattr(ecs, "run_task", fifty)
    arn = launch.launch_driver(settings, record(), "sfn-task-token-A")
    assert desired(arn) == "RUNNING" and len(sent) == 2
    assert "propagateTags" not in sent[1] and sent[1]["tags"] == sent[0]["tags"]
    assert sent[1]["clientToken"] != sent[0]["clientToken"] and valid("RunTask", sent[1])
    # a retried invocation of the same attempt finds that driver; another InvalidParameter is the launch's failure
    assert launch.launch_driver(settings, record(), "sfn-task-token-A") == arn

    def other(**kwargs):
        raise ClientError({"Error": {"Code": "InvalidParameterException", "Message": "subnet-x not found"}}, "RunTask")

    monkeypatch.setattr(ecs, "run_task", other)
    with pytest.raises(launch.DriverLaunchFailed, match="subnet-x not found"):
        launch.launch_driver(settings, record("run-2"), "sfn-task-token-B")


# -- drivers holding the account's vCPU quota leave their tasks none: runs wait their turn -------


def take_then_launch(settings, run, token):
    """The state machine's TakeDriverSlot, then LaunchDriver."""
    launch.take_a_slot(settings, run)
    return launch.launch_driver(settings, run, token)


def test_a_run_waits_its_turn_while_as_many_runs_have_drivers_as_the_stack_lets(settings):
    """MaxConcurrentRuns 1: a second run takes no slot while the first holds the stack's one, its
    status saying why; the first run's end gives the slot back, and the second takes it."""
    one = settings.model_copy(update={"max_concurrent_runs": 1})
    take_then_launch(one, submitted("run-1"), "token-1")
    assert status.read("runs", "run-1").driver_slot == "drivers/slot-0.json"
    second = submitted("run-2")
    with pytest.raises(launch.DriverSlotUnavailable, match=r"run run-2 queued behind other runs: at most 1 run\(s\) of this stack "
                       r"have a driver at once \(the stack's MaxConcurrentRuns\)"):
        launch.take_a_slot(one, second)
    assert len(aws.client("ecs").list_tasks(cluster="c")["taskArns"]) == 1
    waiting = status.read("runs", "run-2")
    assert waiting.status == "SUBMITTED" and waiting.phase.startswith("queued behind other runs")
    finalize.finalize(record("run-1"), "FAILED", None, cluster="c")  # (its end: the slot given back)
    assert driver_slots._held("runs", "drivers/slot-0.json") is None
    started = take_then_launch(one, second, "token-2")
    after = status.read("runs", "run-2")
    assert (after.status, after.driver_task, after.phase, after.driver_slot) == ("STARTING", started, None, "drivers/slot-0.json")
    assert launch.take_a_slot(one, second) == "drivers/slot-0.json"  # (a retried invocation: the same slot, no second)
    assert [o["Key"] for o in s3io.list_keys("runs", driver_slots.PREFIX)] == ["drivers/slot-0.json"]


def test_a_slot_taken_whose_status_could_not_say_so_is_given_back(settings, monkeypatch):
    """The run's status names its slot (a retried launch finds it there): when that write fails,
    the launch fails with the slot given back, so the retry takes one slot, not a second (S3
    failing for a moment: the run waits its turn again, DriverSlotUnavailable, and is not failed)."""
    one = settings.model_copy(update={"max_concurrent_runs": 2})
    run = submitted("run-1")
    real_update = status.update

    def failing(bucket, run_id, change, initial=None):
        raise aws.client("s3").exceptions.ClientError(
            {"Error": {"Code": "InternalError", "Message": "S3 failed"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "PutObject")

    monkeypatch.setattr(status, "update", failing)
    with pytest.raises(launch.DriverSlotUnavailable, match="its status could not be written .*S3 failed"):
        launch.take_a_slot(one, run)
    assert list(s3io.list_keys("runs", driver_slots.PREFIX)) == []
    monkeypatch.setattr(status, "update", real_update)
    key = launch.take_a_slot(one, run)
    assert [o["Key"] for o in s3io.list_keys("runs", driver_slots.PREFIX)] == [key] == [status.read("runs", "run-1").driver_slot]


def test_launches_at_the_same_moment_never_both_take_the_last_slot(settings):
    """Counting the running drivers let runs submitted together all start theirs (each counted
    before the others' started): a slot is an object written only where there is none."""
    import concurrent.futures

    for i in range(8):
        submitted(f"run-{i}")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        taken = list(pool.map(lambda i: driver_slots.take("runs", "c", f"run-{i}", 2), range(8)))
    assert sorted(k for k in taken if k) == ["drivers/slot-0.json", "drivers/slot-1.json"]
    assert taken.count(None) == 6


def test_a_slot_whose_run_ended_without_giving_it_back_is_taken_over(settings):
    """An execution stopped from outside runs no finalize: its run's slot is taken over once its
    status says it ended (a cancel), or, once the slot is old enough to judge, ECS runs no task
    of it (its driver stops itself when its heartbeat is refused; a launch that never got one).
    A driver launched again after one that failed to start is the run's (a live run's slot kept)."""
    one = settings.model_copy(update={"max_concurrent_runs": 1})
    first = take_then_launch(one, submitted("run-1"), "token-1")
    held = driver_slots._held("runs", "drivers/slot-0.json")
    assert held.run_id == "run-1" and not driver_slots.ended("runs", "c", held)
    later = datetime.datetime.fromisoformat(held.taken_at) + datetime.timedelta(seconds=driver_slots.JUDGED_AFTER_SECONDS + 1)
    assert not driver_slots.ended("runs", "c", held, later)  # (its driver runs)
    ecs = aws.client("ecs")
    ecs.stop_task(cluster="c", task=first, reason="CannotPullContainerError")  # (failed to start: launched again)
    again = launch.launch_driver(one, record("run-1"), "token-1b")
    assert status.read("runs", "run-1").driver_task == again
    assert not driver_slots.ended("runs", "c", held, later)
    ecs.stop_task(cluster="c", task=again, reason="its execution was stopped")
    assert not driver_slots.ended("runs", "c", held)  # (too young to judge: ECS may not list a new task yet)
    assert driver_slots.ended("runs", "c", held, later)
    status.set_state("runs", "run-1", "CANCELLED")
    assert driver_slots.ended("runs", "c", held)
    take_then_launch(one, submitted("run-2"), "token-2")
    assert driver_slots._held("runs", "drivers/slot-0.json").run_id == "run-2"


@pytest.mark.parametrize("quota, driver_cpu, slots", [(6, 1024, 1), (20, 1024, 5), (6, 4096, 1), (4000, 1024, 1000), (None, 1024, 1)])
def test_by_default_drivers_hold_at_most_a_quarter_of_the_accounts_vcpu_quota(settings, quota, driver_cpu, slots):
    """A new account's Fargate On-Demand quota is a few vCPUs: six runs' drivers at 1 vCPU each
    held all six, and every task of every run waited for good. By default the drivers hold at most
    a quarter of it (at least one run goes); a quota that cannot be read takes one run at a time
    (never no limit), saying how to set it."""
    auto = settings.model_copy(update={"max_concurrent_runs": 0, "driver_cpu": driver_cpu})
    count, why = launch.slot_count(auto, quota)
    assert count == slots
    if quota is not None:
        assert f"a quarter of the account's Fargate On-Demand vCPU quota ({quota:g})" in why
    else:
        assert "could not be read from Service Quotas: one run at a time; the stack's MaxConcurrentRuns sets how many" in why


def test_the_quota_read_sets_how_many_drivers_run_and_an_increase_counts_at_once(settings, monkeypatch):
    auto = settings.model_copy(update={"max_concurrent_runs": 0})
    quota = [4.0]
    monkeypatch.setattr(launch, "fargate_vcpu_quota", lambda: quota[0])
    take_then_launch(auto, submitted("run-1"), "token-1")  # (4 vCPUs: one driver of 1 vCPU)
    with pytest.raises(launch.DriverSlotUnavailable, match=r"a quarter of the account's Fargate On-Demand vCPU quota \(4\)"):
        launch.take_a_slot(auto, submitted("run-2"))
    quota[0] = 8.0  # (an increase granted meanwhile)
    assert launch.take_a_slot(auto, submitted("run-2")) == "drivers/slot-1.json"


def test_the_quota_is_its_applied_value_else_its_default_and_a_passing_failure_is_waited_out(moto_aws):
    """GetServiceQuota answers no value for a quota never changed on some accounts
    (NoSuchResourceException): the default is read then. Denied: unknown (one run at a time,
    slot_count). Throttled: the run looks again, rather than go by a default a raised quota is above."""
    from botocore.stub import Stubber

    quotas = aws.client("service-quotas")
    asked = {"ServiceCode": "fargate", "QuotaCode": "L-3032A538"}
    with Stubber(quotas) as stub:
        stub.add_response("get_service_quota", {"Quota": {"QuotaCode": "L-3032A538", "Value": 40.0}}, asked)
        assert launch.fargate_vcpu_quota() == 40.0
        stub.add_client_error("get_service_quota", "NoSuchResourceException", "no applied value", 404, expected_params=asked)
        stub.add_response("get_aws_default_service_quota", {"Quota": {"QuotaCode": "L-3032A538", "Value": 6.0}}, asked)
        assert launch.fargate_vcpu_quota() == 6.0
        stub.add_client_error("get_service_quota", "AccessDeniedException", "an SCP denies it", 400, expected_params=asked)
        assert launch.fargate_vcpu_quota() is None
        stub.add_client_error("get_service_quota", "TooManyRequestsException", "slow down", 400, expected_params=asked)
        with pytest.raises(launch.DriverSlotUnavailable, match="could not be read for now"):
            launch.fargate_vcpu_quota()


def test_a_run_that_gave_up_waiting_says_so_and_what_to_do(settings):
    error = {"Error": "DriverSlotUnavailable",
             "Cause": '{"errorMessage": "run run-1 queued behind other runs: at most 1 run(s) of this stack have a driver at once"}'}
    finalize.finalize(submitted("run-1"), "FAILED", error, cluster="c")
    said = s3io.get_json("runs", "results/run-1/error.json")
    assert said["error"] == "DriverSlotUnavailable"
    assert said["message"].startswith("gave up waiting for a driver slot after about 3.5 days, every slot held by runs still going")
    assert "raise the stack's MaxConcurrentRuns or the account's Fargate On-Demand vCPU quota" in said["message"]
