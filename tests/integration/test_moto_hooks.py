"""local/moto/hooks.py and local/moto/ecs_state.py against in-process moto: RunTask hands the runner a
plain TaskSpec and StopTask the task's ARN; what ecs_state writes is what DescribeTasks and the
"ECS Task State Change" events show. (Without a runtime, the hooks leave the work to moto.)"""

import collections
import json

import pytest

from miniwdl_fargate import aws, runs, sweep
from miniwdl_fargate.local.ecs_runner import TaskSpec
from miniwdl_fargate.local import changes
from miniwdl_fargate.local.moto.ecs_state import MotoTaskState
from miniwdl_fargate.local.faults import Faults
from miniwdl_fargate.local.moto import hooks
from tests.waiting import wait_for


class FakeRuntime:
    def __init__(self):
        self.faults = Faults(describe_missing=0)
        self.started: list[TaskSpec] = []
        self.stops: list[tuple[str, str]] = []

    def ecs_task_started(self, task):
        self.started.append(task)

    def ecs_stop_task(self, task_arn, reason):
        self.stops.append((task_arn, reason))
        return True


@pytest.fixture
def hooked(moto_aws):
    """The ECS hooks, with a fake runtime and moto's tasks changing status only as ecs_state says."""
    from moto.moto_api import state_manager

    hooks._ecs_run_and_stop()
    runtime, state = FakeRuntime(), MotoTaskState("us-east-1")
    hooks._current.update(runtime=runtime, state=state)
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    yield runtime, state
    state_manager.unset_transition("ecs::task")
    hooks._current.clear()


def run_task(family="mwf-task-x", **kwargs):
    ecs, ec2 = aws.client("ecs"), aws.client("ec2")
    ecs.create_cluster(clusterName="wdl")
    ecs.register_task_definition(
        family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="1024", memory="2048",
        containerDefinitions=[{"name": "task", "image": "ubuntu:22.04", "command": ["true"]}],
        volumes=[{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}],
    )
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    return ecs.run_task(
        cluster="wdl", taskDefinition=family, launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}}, **kwargs,
    )["tasks"][0]


def test_run_task_hands_the_runner_a_plain_task_spec(hooked):
    runtime, _ = hooked
    overrides = {"containerOverrides": [{"name": "task", "command": ["echo", "hi"]}], "memory": "4096"}
    tags = [{"key": sweep.RUN_TAG, "value": "r1"}]
    answer = run_task(overrides=overrides, tags=tags)
    (spec,) = runtime.started
    assert isinstance(spec, TaskSpec)
    assert (spec.task_arn, spec.cluster_arn, spec.task_definition_arn) == (
        answer["taskArn"], answer["clusterArn"], answer["taskDefinitionArn"],
    )
    assert spec.id == answer["taskArn"].rsplit("/", 1)[-1]
    assert (spec.family, spec.cpu, spec.memory) == ("mwf-task-x", "1024", "2048")
    assert {k: spec.container[k] for k in ("name", "image", "command")} == {
        "name": "task", "image": "ubuntu:22.04", "command": ["true"],
    }
    assert spec.overrides == overrides and spec.tags == tags
    assert [v["name"] for v in spec.volumes] == ["efs"]


def test_stop_task_hands_the_runner_the_task_arn_and_reason(hooked):
    runtime, _ = hooked
    arn = run_task()["taskArn"]
    stopped = aws.client("ecs").stop_task(cluster="wdl", task=arn.rsplit("/", 1)[-1], reason="run cancelled")
    assert runtime.stops == [(arn, "run cancelled")] and stopped["task"]["taskArn"] == arn


def events_to_a_queue(rule: str, pattern: dict) -> tuple:
    """An EventBridge rule of the default bus sending what it matches to an SQS queue of its own:
    (the SQS client, the queue's URL)."""
    sqs, events = aws.client("sqs"), aws.client("events")
    queue = sqs.create_queue(QueueName=f"{rule}-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn}])
    return sqs, queue


def test_what_ecs_state_writes_is_what_describe_tasks_and_the_events_show(hooked):
    _, state = hooked
    sqs, queue = events_to_a_queue("ecs", {"source": ["aws.ecs"]})
    arn = run_task()["taskArn"]
    ecs = aws.client("ecs")

    def described():
        return ecs.describe_tasks(cluster="wdl", tasks=[arn])["tasks"][0]

    state.provisioning(arn)
    assert (described()["lastStatus"], described()["version"]) == ("PROVISIONING", 1)
    state.set_status(arn, "RUNNING")
    task = described()
    assert (task["lastStatus"], task["containers"][0]["lastStatus"], task["version"]) == ("RUNNING", "RUNNING", 2)
    assert "startedAt" in task
    state.stop_requested(arn, "run cancelled")
    assert (described()["desiredStatus"], described()["stopCode"], described()["stoppedReason"]) == (
        "STOPPED", "UserInitiated", "run cancelled",
    )
    state.stopped(arn, "UserInitiated", "run cancelled", exit_code=143, container_reason="killed")
    task = described()
    assert (task["lastStatus"], task["stopCode"], task["stoppedReason"], task["version"]) == (
        "STOPPED", "UserInitiated", "run cancelled", 3,
    )
    assert (task["containers"][0]["exitCode"], task["containers"][0]["reason"]) == (143, "killed")
    assert "stoppedAt" in task
    state.emit(arn)
    message = wait_for(lambda: sqs.receive_message(QueueUrl=queue).get("Messages"), 30.0, "the state change event")[0]
    event = json.loads(message["Body"])
    assert event["detail-type"] == "ECS Task State Change" and event["resources"] == [arn]
    assert (event["detail"]["lastStatus"], event["detail"]["version"], event["detail"]["containers"][0]["exitCode"]) == (
        "STOPPED", 3, 143,
    )


def test_without_a_runtime_the_hooks_leave_run_and_stop_task_to_moto(moto_aws):
    hooks._ecs_run_and_stop()
    hooks._current.clear()
    arn = run_task(family="plain")["taskArn"]
    stopped = aws.client("ecs").stop_task(cluster="wdl", task=arn, reason="by moto")["task"]
    assert (stopped["taskArn"], stopped["desiredStatus"], stopped["stoppedReason"]) == (arn, "STOPPED", "by moto")


def test_a_managed_instances_task_reaches_the_runner_with_its_provider_and_its_volumes(hooked):
    from miniwdl_fargate.local.moto import fixes

    fixes.ecs_managed_instances()
    fixes.run_task_volume_configurations()
    runtime, _ = hooked
    ecs, ec2 = aws.client("ecs"), aws.client("ec2")
    ecs.create_cluster(clusterName="wdl")
    fixes.managed_instances_provider("wdl-managed", "wdl")
    ecs.register_task_definition(
        family="mwf-task-mi", requiresCompatibilities=["MANAGED_INSTANCES"], networkMode="awsvpc", cpu="32768",
        memory="65536", volumes=[{"name": "scratch", "configuredAtLaunch": True}],
        containerDefinitions=[{"name": "task", "image": "ubuntu:22.04", "command": ["true"],
                               "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/mnt/scratch"}]}],
    )
    volumes = [{"name": "scratch", "managedEBSVolume": {"sizeInGiB": 500, "roleArn": "arn:aws:iam::123456789012:role/v"}}]
    answer = ecs.run_task(
        cluster="wdl", taskDefinition="mwf-task-mi", capacityProviderStrategy=[{"capacityProvider": "wdl-managed", "weight": 1}],
        networkConfiguration={"awsvpcConfiguration": {"subnets": [ec2.describe_subnets()["Subnets"][0]["SubnetId"]], "securityGroups": ["sg-1"]}},
        volumeConfigurations=volumes,
    )["tasks"][0]
    (spec,) = runtime.started
    assert spec.task_arn == answer["taskArn"]
    assert spec.capacity_provider_name == "wdl-managed" == answer["capacityProviderName"]
    assert spec.volume_configurations == volumes
    assert spec.volumes == [{"name": "scratch", "configuredAtLaunch": True}]


def test_a_state_change_event_is_built_only_where_a_rule_may_match_it(hooked, monkeypatch):
    """No rule of the stack matches a WDL task's events: they are not built (a DescribeTasks
    each). A rule that may match one gets it, whole; a rule naming only fields of the detail that
    a DescribeTasks tells (here a container's exit code) gets every event to decide on."""
    from miniwdl_fargate.local.moto import ecs_state

    _, state = hooked
    sqs, queue = events_to_a_queue("stopped", {
        "source": ["aws.ecs"], "detail-type": ["ECS Task State Change"], "detail": {"lastStatus": ["STOPPED"], "group": ["family:mwf-task-x"]},
    })
    events = aws.client("events")
    # (a rule of another source: its detail names fields a task's event does not hold, its source decides)
    events.put_rule(Name="uploads", EventPattern=json.dumps({"source": ["aws.s3"], "detail": {"object": {"key": [{"wildcard": "runs/*"}]}}}))
    described = []
    real_ecs = state.ecs
    monkeypatch.setattr(state, "ecs", lambda: (described.append(1), real_ecs())[1])
    arn = run_task()["taskArn"]
    ecs = aws.client("ecs")
    state.provisioning(arn)
    state.set_status(arn, "RUNNING")
    state.emit(arn)
    assert described == []  # (no rule matches a RUNNING task's event: not built)
    head = ecs_state._event_head(state._task(arn), "123456789012", "us-east-1")["detail"]
    answer = ecs.describe_tasks(cluster="wdl", tasks=[arn])["tasks"][0]
    assert head == {k: answer[k] for k in ecs_state.HEAD_FIELDS if k in answer}
    state.stopped(arn, "EssentialContainerExited", "Essential container in task exited", exit_code=0)
    state.emit(arn)
    assert described == [1]
    message = wait_for(lambda: sqs.receive_message(QueueUrl=queue).get("Messages"), 30.0, "the STOPPED event")[0]
    assert json.loads(message["Body"])["detail"]["containers"][0]["exitCode"] == 0
    head = ecs_state._event_head(state._task(arn), "123456789012", "us-east-1")["detail"]
    answer = ecs.describe_tasks(cluster="wdl", tasks=[arn])["tasks"][0]
    assert head == {k: answer[k] for k in ecs_state.HEAD_FIELDS if k in answer}
    events.put_rule(Name="failed", EventPattern=json.dumps({"detail": {"containers": {"exitCode": [1]}}}))
    state.emit(arn)  # (the head cannot tell: built, and moto's matching decides)
    assert described == [1, 1]


def test_stop_task_of_a_task_it_does_not_know_is_refused_as_ecs_refuses_it(hooked):
    """A name that is neither the task's ID nor its ARN, or a task the cluster never ran (or has
    forgotten): InvalidParameterException, as ECS answers (moto would raise a bare Exception, a
    server error botocore retries, or stop the task without the runner)."""
    from botocore.exceptions import ClientError

    runtime, state = hooked
    arn = run_task()["taskArn"]
    task_id = arn.rsplit("/", 1)[-1]
    ecs = aws.client("ecs")
    for name in (f"wdl/{task_id}", task_id[-12:], arn.rsplit("/", 1)[0] + "/0123456789abcdef0123456789abcdef"):
        with pytest.raises(ClientError, match="InvalidParameterException.*referenced task was not found"):
            ecs.stop_task(cluster="wdl", task=name, reason="no such task")
    assert runtime.stops == []
    assert ecs.describe_tasks(cluster="wdl", tasks=[arn])["tasks"][0]["desiredStatus"] == "RUNNING"


def test_a_state_change_event_is_built_when_its_rules_cannot_be_judged(hooked, monkeypatch):
    """Should judging the bus's rules on what moto holds fail, the whole event is built and moto's
    own matching decides: an event is never lost to the shortcut."""
    from miniwdl_fargate.local.moto import ecs_state

    _, state = hooked
    sqs, queue = events_to_a_queue("all-ecs", {"source": ["aws.ecs"]})

    def cannot_judge(bus, head):
        raise ValueError("a pattern this cannot read")

    monkeypatch.setattr(ecs_state, "_heard", cannot_judge)
    arn = run_task()["taskArn"]
    state.provisioning(arn)
    state.set_status(arn, "RUNNING")
    state.emit(arn)
    message = wait_for(lambda: sqs.receive_message(QueueUrl=queue).get("Messages"), 30.0, "the RUNNING event")[0]
    assert json.loads(message["Body"])["detail"]["lastStatus"] == "RUNNING"


def test_each_status_ecs_state_writes_is_counted_once_in_place():
    """What clients following a run watch (local.changes): the count moves after each status is
    written, not for what a task reads of itself."""
    written = []

    class Task:
        def __init__(self):
            self.containers = [type("Container", (), {})()]

    state = MotoTaskState("us-east-1", on_change=lambda: written.append(task.status))
    task = Task()
    task.task_arn = "arn:aws:ecs:us-east-1:123456789012:task/wdl/t1"
    state._tasks[task.task_arn] = task
    state.provisioning(task.task_arn)
    state.set_status(task.task_arn, "RUNNING")
    state.stop_requested(task.task_arn, "run cancelled")
    state.stopping(task.task_arn)
    state.stopped(task.task_arn, "UserInitiated", "run cancelled", exit_code=143)
    assert written == ["PROVISIONING", "RUNNING", "STOPPED"]


class CountingRuntime:
    """The runtime's counts of changes (local.changes), as numbers: every change, the runs', and
    each run name's (``by_name``)."""

    def __init__(self):
        self.count = self.of_runs = 0
        self.by_name = collections.Counter()

    def changed(self, of_a_run=False, run_name=None):
        self.count += 1
        self.of_runs += of_a_run
        if run_name is not None:
            assert of_a_run  # (only a run's change names its run)
            self.by_name[run_name] += 1


@pytest.fixture
def counted(moto_server):
    """The hooks that count changes, with a runtime that counts them, on a moto server that runs
    state machines, with moto's fixes in place as local mode has them (among them StopExecution
    ending an execution ABORTED at once: without it, whether a stop is ABORTED when its answer
    comes depended on the race with moto's worker thread, and on which tests this process ran before)."""
    from miniwdl_fargate.local.moto import fixes, server

    fixes.install()
    server.execute_state_machines(moto_server["AWS_ENDPOINT_URL"])
    hooks._changes_counted()
    runtime = CountingRuntime()
    hooks._current.update(runtime=runtime)
    yield runtime
    hooks._current.clear()


def test_each_object_written_or_removed_and_each_execution_started_or_ended_is_a_change(counted):
    s3, sfn = aws.client("s3"), aws.client("stepfunctions")
    s3.create_bucket(Bucket="runs")

    def moved(action):
        before = counted.count
        action()
        return counted.count - before

    assert moved(lambda: s3.put_object(Bucket="runs", Key="runs/r/status.json", Body=b"{}")) >= 1
    assert moved(lambda: s3.get_object(Bucket="runs", Key="runs/r/status.json")["Body"].read()) == 0
    assert moved(lambda: s3.list_objects_v2(Bucket="runs")) == 0
    assert moved(lambda: s3.copy_object(Bucket="runs", Key="runs/r/copy.json", CopySource={"Bucket": "runs", "Key": "runs/r/status.json"})) >= 1
    assert moved(lambda: s3.delete_object(Bucket="runs", Key="runs/r/copy.json")) >= 1
    assert moved(lambda: s3.delete_objects(Bucket="runs", Delete={"Objects": [{"Key": "runs/r/status.json"}]})) >= 1

    asl = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 1, "End": True}}}
    machine = sfn.create_state_machine(name="m", definition=json.dumps(asl), roleArn="arn:aws:iam::123456789012:role/r")
    assert moved(lambda: sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])) == 0
    started = counted.count
    ended = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="ends")["executionArn"]
    assert counted.count > started  # (its start, before the answer)
    after_start = counted.count
    wait_for(lambda: sfn.describe_execution(executionArn=ended)["status"] == "SUCCEEDED", 30, "the execution's end")
    wait_for(lambda: counted.count > after_start, 10, "the end counted")
    stopped = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="stopped")["executionArn"]
    assert moved(lambda: sfn.stop_execution(executionArn=stopped)) >= 1
    assert sfn.describe_execution(executionArn=stopped)["status"] == "ABORTED"


def test_objects_under_runs_and_executions_are_changes_of_runs_other_objects_only_changes(counted):
    """What a client following a run watches (local.changes, RUN_FILE): not the call cache's
    objects (one a task), nor anything else outside runs/."""
    s3, sfn = aws.client("s3"), aws.client("stepfunctions")
    s3.create_bucket(Bucket="runs")

    def moved(action):
        before = (counted.count, counted.of_runs)
        action()
        return counted.count - before[0], counted.of_runs - before[1]

    every, of_runs = moved(lambda: s3.put_object(Bucket="runs", Key="cache/call/t/k.json", Body=b"{}"))
    assert every >= 1 and of_runs == 0
    assert moved(lambda: s3.delete_object(Bucket="runs", Key="cache/call/t/k.json"))[1] == 0
    assert moved(lambda: s3.put_object(Bucket="runs", Key="runsx/r/status.json", Body=b"{}"))[1] == 0
    for action in (
        lambda: s3.put_object(Bucket="runs", Key="runs/r/results/r-0123abcd/status.json", Body=b"{}"),
        lambda: s3.put_object(Bucket="runs", Key="runs/r/error.json", Body=b"{}"),
        lambda: s3.delete_object(Bucket="runs", Key="runs/r/error.json"),
    ):
        every, of_runs = moved(action)
        assert every >= 1 and of_runs >= 1
    assert set(counted.by_name) == {"r"} and counted.by_name["r"] >= 3  # (each named by its run: runs/<name>/)
    asl = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 60, "End": True}}}
    machine = sfn.create_state_machine(name="m2", definition=json.dumps(asl), roleArn="arn:aws:iam::123456789012:role/r")
    started = {}
    # an execution is named by its run id, <name>-<8 hex> ("." made "_": runs.execution_name)
    execution = runs.execution_name("my.run-0123abcd")
    assert moved(lambda: started.update(sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name=execution)))[1] >= 1
    assert moved(lambda: sfn.stop_execution(executionArn=started["executionArn"]))[1] >= 1
    assert counted.by_name["my_run"] >= 2 and set(counted.by_name) == {"r", "my_run"}
    assert changes.run_slot("my_run") == changes.run_slot("my.run")  # (what a client following run my.run watches)


def test_each_change_of_an_executions_status_is_one_event_on_the_default_bus(moto_server):
    """Step Functions sends "Step Functions Execution Status Change" at each change of a standard
    workflow's execution (the finalize function hears the ends no finalize step recorded); moto
    sends none. Local mode sends one a status: RUNNING, then its end (ABORTED at once for a stop,
    and nothing more when its worker ends after)."""
    from miniwdl_fargate.local.moto import fixes, server

    fixes.install()
    server.execute_state_machines(moto_server["AWS_ENDPOINT_URL"])
    hooks._execution_changes()
    sqs, events, sfn = aws.client("sqs"), aws.client("events"), aws.client("stepfunctions")
    queue = sqs.create_queue(QueueName="heard")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="ends", EventPattern=json.dumps({"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"]}))
    events.put_targets(Rule="ends", Targets=[{"Id": "q", "Arn": queue_arn}])
    asl = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 1, "End": True}}}
    machine = sfn.create_state_machine(name="m", definition=json.dumps(asl), roleArn="arn:aws:iam::123456789012:role/r")["stateMachineArn"]
    ends = sfn.start_execution(stateMachineArn=machine, name="ends", input=json.dumps({"run_id": "r-1"}))["executionArn"]
    stopped = sfn.start_execution(stateMachineArn=machine, name="stopped")["executionArn"]
    sfn.stop_execution(executionArn=stopped, error="Stopped", cause="in the console")
    wait_for(lambda: sfn.describe_execution(executionArn=ends)["status"] == "SUCCEEDED", 30, "the execution's end")
    heard: list[dict] = []

    def all_heard():
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            heard.append(json.loads(message["Body"]))
        return len(heard) >= 4

    wait_for(all_heard, 10, lambda: f"four status changes (heard {[e['detail']['status'] for e in heard]})")
    by_execution = {arn: [e["detail"]["status"] for e in heard if e["detail"]["executionArn"] == arn] for arn in (ends, stopped)}
    assert by_execution == {ends: ["RUNNING", "SUCCEEDED"], stopped: ["RUNNING", "ABORTED"]}
    end = next(e for e in heard if e["detail"]["status"] == "SUCCEEDED")
    assert end["source"] == "aws.states" and end["resources"] == [ends]
    assert json.loads(end["detail"]["input"]) == {"run_id": "r-1"} and end["detail"]["stateMachineArn"] == machine
    assert end["detail"]["stopDate"] >= end["detail"]["startDate"] > 0
    wait_for(lambda: sfn.describe_execution(executionArn=stopped)["status"] == "ABORTED", 10, "the stop")
    assert not sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages")  # (its worker's end: nothing more)


def test_a_state_machine_retry_waits_its_interval_times_the_runtimes_retry_scale(monkeypatch):
    """moto's Retrier waits a retry's interval with ``time.sleep``: a local stack's runtime makes
    that wait a fraction of the definition's (``LocalStack``'s RETRY_SCALE); without a runtime, or
    with a scale of 1, the interval as the definition says, as on AWS."""
    import time

    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    from miniwdl_fargate.local import stack

    hooks._retry_waits_scaled()
    waited = []
    monkeypatch.setattr(time, "sleep", waited.append)
    retrier_decl.time.sleep(4)  # (no runtime)
    runtime = FakeRuntime()
    runtime.retry_scale = stack.RETRY_SCALE
    monkeypatch.setitem(hooks._current, "runtime", runtime)
    retrier_decl.time.sleep(4)
    assert waited == [4, 4 * stack.RETRY_SCALE] and 0 < stack.RETRY_SCALE < 1
    assert retrier_decl.time.monotonic is time.monotonic  # (the rest is the time module's own)
    # (a moto whose Retrier waits otherwise makes this hook wait nothing less: it is to change then)
    import inspect

    assert "time.sleep(interval_seconds)" in inspect.getsource(retrier_decl.RetrierDecl._eval_body)
