"""moto's Step Functions emulator against what local mode needs of it: TimeoutSecondsPath,
HeartbeatSecondsPath and SendTaskHeartbeat work as documented; the name of a heartbeat timeout
needs the fix fixes.heartbeat_timeout_name (the first test says when it no longer does)."""

import json
import os
import threading
import time
from types import SimpleNamespace

import pytest
import requests

from miniwdl_fargate import aws
from miniwdl_fargate.lifecycle import Heartbeat
from miniwdl_fargate.local.moto import fixes, patching
from tests.waiting import wait_for


def test_moto_still_names_a_heartbeat_timeout_states_timeout():
    """When this fails, moto names heartbeat timeouts itself: remove fixes.heartbeat_timeout_name."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda import (
        StateTaskServiceLambda,
    )
    from moto.stepfunctions.parser.asl.eval.callback.callback import HeartbeatTimeoutError

    own = patching.unpatched("heartbeat_timeout_name", StateTaskServiceCallback, "_from_error")
    state = StateTaskServiceLambda.__new__(StateTaskServiceLambda)
    state.resource = SimpleNamespace(service_name="lambda", api_action="invoke", condition="waitForTaskToken", resource_arn="x")
    env = SimpleNamespace(next_state_name="Wait", event_history_context=SimpleNamespace(source_event_id=0))
    event = own(state, env, HeartbeatTimeoutError())
    assert event.error_name.error_name == "States.Timeout"


@pytest.fixture
def step_functions(moto_server):
    """The moto server, executing state machines, with the heartbeat-timeout name fixed."""
    endpoint = moto_server["AWS_ENDPOINT_URL"]
    requests.post(f"{endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)
    fixes.heartbeat_timeout_name()
    return endpoint


@pytest.fixture
def waiting_machine(step_functions):
    """A state machine that waits on a task token (as LaunchDriver does) with the run record's
    limits, and reports the error its Catch saw; the token arrives on a queue."""
    sqs, sfn = aws.client("sqs"), aws.client("stepfunctions")
    queue = sqs.create_queue(QueueName="tokens")["QueueUrl"]
    asl = {
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
                "TimeoutSecondsPath": "$.max_run_seconds", "HeartbeatSecondsPath": "$.heartbeat_seconds",
                "Catch": [{"ErrorEquals": ["States.Timeout", "States.HeartbeatTimeout"], "ResultPath": "$.error", "Next": "TimedOut"}],
                "End": True,
            },
            "TimedOut": {"Type": "Pass", "End": True},
        },
    }
    arn = sfn.create_state_machine(name="wait", definition=json.dumps(asl), roleArn="arn:aws:iam::123456789012:role/r")["stateMachineArn"]

    def run(max_run_seconds, heartbeat_seconds, heartbeat=False):
        execution = sfn.start_execution(
            stateMachineArn=arn, name=f"run-{time.monotonic_ns()}",
            input=json.dumps({"max_run_seconds": max_run_seconds, "heartbeat_seconds": heartbeat_seconds}),
        )["executionArn"]
        message = wait_for(lambda: sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages"), 30.0, "task token")[0]
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        beating = Heartbeat(json.loads(message["Body"])["token"], heartbeat_seconds).start() if heartbeat else None
        done = wait_for(lambda: (d := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" and d, 30.0, "end")
        if beating is not None:
            beating.stop()
        return json.loads(done["output"])["error"]["Error"], beating

    return run


def test_a_wait_without_heartbeats_ends_in_a_heartbeat_timeout(waiting_machine):
    error, _ = waiting_machine(max_run_seconds=60, heartbeat_seconds=1)
    assert error == "States.HeartbeatTimeout"


def test_a_heartbeating_wait_ends_at_its_maximum_duration(waiting_machine):
    error, beating = waiting_machine(max_run_seconds=3, heartbeat_seconds=1, heartbeat=True)
    assert error == "States.Timeout"
    assert beating.sent >= 2  # it kept the 1 s heartbeat alive past it, until the 3 s limit


def test_moto_still_shares_which_keys_a_response_includes():
    """When this fails, moto keeps ``include`` per request and
    ``fixes.response_transformer_race`` can go."""
    from moto.ecs.responses import EC2ContainerServiceResponse

    from moto.core.responses import BaseResponse

    fixes.response_transformer_race()
    include = patching.unpatched("response_transformer_race", BaseResponse, "_include_in_response")
    exclude = patching.unpatched("response_transformer_race", BaseResponse, "_exclude_from_response")
    with_tags, without = EC2ContainerServiceResponse(), EC2ContainerServiceResponse()
    include(with_tags, "DescribeTasksResponse.tasks.Task.tags")
    exclude(without, "DescribeTasksResponse.tasks.Task.tags")
    leaked = with_tags.RESPONSE_KEY_PATH_TO_TRANSFORMER["DescribeTasksResponse.tasks.Task.tags"]
    assert leaked("kept") != "kept", "moto no longer shares include/exclude between requests"
    # and with the fix, each request keeps its own
    fixed_with, fixed_without = EC2ContainerServiceResponse(), EC2ContainerServiceResponse()
    fixed_with._include_in_response("DescribeTasksResponse.tasks.Task.tags")
    fixed_without._exclude_from_response("DescribeTasksResponse.tasks.Task.tags")
    assert fixed_with.RESPONSE_KEY_PATH_TO_TRANSFORMER["DescribeTasksResponse.tasks.Task.tags"]("kept") == "kept"


def test_moto_still_drops_a_task_failures_cause():
    """When this fails, moto passes SendTaskFailure's cause on itself: remove
    fixes.send_task_failure_cause."""
    from moto.stepfunctions.responses import StepFunctionResponse

    sent = []
    params = {"taskToken": "token", "error": "DriverFailed", "cause": "why it failed"}
    request = SimpleNamespace(
        _get_param=params.get,
        stepfunction_backend=SimpleNamespace(send_task_failure=lambda token, **kwargs: sent.append(kwargs)),
    )
    patching.unpatched("send_task_failure_cause", StepFunctionResponse, "send_task_failure")(request)
    assert sent == [{"error": "DriverFailed"}]
    fixes.send_task_failure_cause()
    StepFunctionResponse.send_task_failure(request)
    assert sent[-1] == {"error": "DriverFailed", "cause": "why it failed"}


def test_the_cause_fix_leaves_moto_s_non_executing_backend_working():
    """moto's backend when state machines are not executed takes no cause: with the fix
    installed (by an earlier test in the same process), SendTaskFailure still reaches it."""
    from moto.stepfunctions.responses import StepFunctionResponse

    sent = []

    def without_cause(token, error=None):
        sent.append(error)

    fixes.send_task_failure_cause()
    params = {"taskToken": "token", "error": "DriverFailed", "cause": "why it failed"}
    StepFunctionResponse.send_task_failure(
        SimpleNamespace(_get_param=params.get, stepfunction_backend=SimpleNamespace(send_task_failure=without_cause))
    )
    assert sent == ["DriverFailed"]


@pytest.fixture
def token_wait(step_functions):
    """Start an execution that waits on a task token (for at most 3 s) and return its ARN once it
    waits."""
    sqs, sfn = aws.client("sqs"), aws.client("stepfunctions")
    queue = sqs.create_queue(QueueName="stop-tokens")["QueueUrl"]
    asl = {
        "StartAt": "Wait",
        "States": {"Wait": {
            "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "TimeoutSeconds": 3,
            "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}}, "End": True,
        }},
    }
    arn = sfn.create_state_machine(name="stop", definition=json.dumps(asl), roleArn="arn:aws:iam::123456789012:role/r")["stateMachineArn"]

    def start():
        execution = sfn.start_execution(stateMachineArn=arn, name=f"run-{time.monotonic_ns()}")["executionArn"]
        wait_for(lambda: sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages"), 30.0, "task token")
        return execution

    return start


def stop_and_wait(execution):
    sfn = aws.client("stepfunctions")
    sfn.stop_execution(executionArn=execution, error="RunCancelled", cause="cancelled")
    return wait_for(lambda: (d := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" and d, 30.0, "end")


def test_a_stopped_execution_waiting_on_a_token_is_aborted(token_wait):
    fixes.stop_execution_aborts()
    assert stop_and_wait(token_wait())["status"] == "ABORTED"


def test_moto_still_leaves_a_stopped_waiting_execution_running(token_wait, monkeypatch):
    """When this fails, moto aborts a stopped execution itself: remove fixes.stop_execution_aborts."""
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

    monkeypatch.setattr(Execution, "stop", patching.unpatched("stop_execution_aborts", Execution, "stop"))
    monkeypatch.setattr(
        BaseExecutionWorkerCommunication, "_reflect_execution_status",
        patching.unpatched("stop_execution_aborts", BaseExecutionWorkerCommunication, "_reflect_execution_status"),
    )
    assert stop_and_wait(token_wait())["status"] != "ABORTED"  # (it ends as its wait does: timed out)


def test_moto_still_sends_events_in_its_own_envelope(moto_aws, monkeypatch):
    """When this fails, moto's events look like EventBridge's: remove fixes.as_delivered (the
    event_envelope fix the events hook applies)."""
    from moto.events.models import Rule

    from miniwdl_fargate.local.moto.fixes import as_delivered

    seen = []
    monkeypatch.setattr(Rule, "send_to_targets", lambda self, event, transform_input=True: seen.append(event))
    s3, events = aws.client("s3"), aws.client("events")
    s3.create_bucket(Bucket="drop")
    s3.put_bucket_notification_configuration(Bucket="drop", NotificationConfiguration={"EventBridgeConfiguration": {}})
    events.put_rule(Name="all", EventPattern=json.dumps({"source": ["aws.s3"]}))
    s3.put_object(Bucket="drop", Key="a", Body=b"a")
    s3.put_object(Bucket="drop", Key="b", Body=b"b")
    first, second = [event for event in of_the_drop_bucket(seen) if event.get("detail-type") == "Object Created"]
    assert isinstance(first["time"], float) and first["id"] == second["id"] and "eTag" in first["detail"]["object"]
    fixed = [as_delivered(event) for event in (first, second)]
    assert fixed[0]["time"].endswith("Z") and fixed[0]["id"] != fixed[1]["id"]
    assert "etag" in fixed[0]["detail"]["object"] and "eTag" not in fixed[0]["detail"]["object"]


def s3_events(monkeypatch, writes) -> list[tuple[str, str]]:
    """(detail type, key) of each S3 event EventBridge gets while ``writes(s3)`` runs
    against a bucket ("drop", EventBridge notifications on, holding the object "a")."""
    from moto.events.models import Rule

    seen = []
    monkeypatch.setattr(Rule, "send_to_targets", lambda self, event, transform_input=True: seen.append(event))
    s3, events = aws.client("s3"), aws.client("events")
    s3.create_bucket(Bucket="drop")
    s3.put_object(Bucket="drop", Key="a", Body=b"a")
    s3.put_bucket_notification_configuration(Bucket="drop", NotificationConfiguration={"EventBridgeConfiguration": {}})
    events.put_rule(Name="all", EventPattern=json.dumps({"source": ["aws.s3"]}))
    writes(s3)
    return [(event["detail-type"], event["detail"]["object"]["key"]) for event in of_the_drop_bucket(seen)]


def of_the_drop_bucket(events: list[dict]) -> list[dict]:
    """The S3 events of the bucket "drop": the tests patch ``send_to_targets`` on moto's Rule class,
    and a thread an earlier test left running in this process can send its own rules' events
    meanwhile (seen once: an event with no object among them)."""
    return [e for e in events if e.get("source") == "aws.s3" and e.get("detail", {}).get("bucket", {}).get("name") == "drop"]


def multipart_upload(s3, key: str) -> None:
    """``key`` written in one part by a multipart upload."""
    upload = s3.create_multipart_upload(Bucket="drop", Key=key)["UploadId"]
    etag = s3.upload_part(Bucket="drop", Key=key, UploadId=upload, PartNumber=1, Body=b"m" * 100)["ETag"]
    s3.complete_multipart_upload(
        Bucket="drop", Key=key, UploadId=upload, MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]},
    )


def test_moto_still_sends_more_than_one_event_per_write(moto_aws, monkeypatch):
    """When this fails, moto sends "Object Tags Added" for PutObjectTagging only and one "Object
    Created" per multipart upload, as S3 does: remove (or trim) fixes.s3_one_event_per_write."""
    from moto.s3 import notifications
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    for owner, name in ((S3Response, "put_object_tagging"), (S3Backend, "complete_multipart_upload"), (notifications, "send_event")):
        monkeypatch.setattr(owner, name, patching.unpatched("s3_one_event_per_write", owner, name))
    put = [kind for kind, _ in s3_events(monkeypatch, lambda s3: s3.put_object(Bucket="drop", Key="b", Body=b"b"))]
    assert put == ["Object Created", "Object Tags Added"], "moto no longer sends Object Tags Added for a PutObject"
    events = s3_events(monkeypatch, lambda s3: multipart_upload(s3, "m"))
    created = [kind for kind, key in events if kind == "Object Created" and key == "m"]
    assert len(created) == 2, "moto no longer sends Object Created twice for a multipart upload"


def test_each_write_sends_one_event_and_tagging_its_own(moto_aws, monkeypatch):
    """S3 sends one "Object Created" per object written, and
    "Object Tags Added" when tags are added with PutObjectTagging, not when an object is written
    (with tags or without, copied with new ones, or completed from parts)."""
    fixes.s3_one_event_per_write()

    def writes(s3):
        s3.put_object(Bucket="drop", Key="b", Body=b"b")
        s3.put_object(Bucket="drop", Key="c", Body=b"c", Tagging="k=v")
        s3.copy_object(Bucket="drop", Key="d", CopySource={"Bucket": "drop", "Key": "c"}, TaggingDirective="REPLACE", Tagging="k=w")
        multipart_upload(s3, "m")
        s3.put_object_tagging(Bucket="drop", Key="a", Tagging={"TagSet": [{"Key": "k", "Value": "x"}]})

    assert s3_events(monkeypatch, writes) == [
        ("Object Created", "b"), ("Object Created", "c"), ("Object Created", "d"), ("Object Created", "m"),
        ("Object Tags Added", "a"),
    ]
    assert aws.client("s3").get_object_tagging(Bucket="drop", Key="d")["TagSet"] == [{"Key": "k", "Value": "w"}]


def test_moto_still_looks_up_the_service_of_every_request(monkeypatch):
    """When this fails, moto's server no longer lists its package folder to find the service of
    each request it serves: remove fixes.backend_lookup_cached. With the fix, each host is looked
    up once, with the same answers."""
    import os

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    fixes.backend_lookup_cached()
    listings = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path=".": listings.append(path) or real_listdir(path))
    dispatcher = DomainDispatcherApplication(create_app=lambda service: None)
    own = patching.unpatched("backend_lookup_cached", DomainDispatcherApplication, "get_backend_for_host")
    hosts = ["ecs", "ecs.us-east-1.amazonaws.com", "s3.us-east-1.amazonaws.com"]
    expected = [own(dispatcher, host) for host in hosts]
    assert expected == ["ecs", "ecs", "s3"]
    assert len(listings) == len(hosts), "moto no longer lists its folder for every request"
    listings.clear()
    assert [dispatcher.get_backend_for_host(host) for host in hosts * 3] == expected * 3
    assert len(listings) <= len(hosts)  # (once per host at most: none for a host looked up before)


def test_moto_still_builds_the_url_table_for_every_in_process_request(moto_aws, monkeypatch):
    """When this fails, moto answers a request in the same process without building the URL
    table of its service again: remove fixes.backend_urls_kept. With the fix, the table is built
    once for a backend's class and settings, with moto's own entries, and still follows
    MOTO_S3_CUSTOM_ENDPOINTS."""
    import moto.s3.models as s3_models
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.core.base_backend import BaseBackend

    builds = []  # (each build of a table reads its URL bases: S3's after executing moto.s3.urls again)
    url_bases = vars(BaseBackend)["url_bases"]
    monkeypatch.setattr(BaseBackend, "url_bases", property(lambda self: builds.append(type(self).__name__) or url_bases.fget(self)))
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="urls")
    kept = vars(BaseBackend)["urls"]
    own = patching.unpatched("backend_urls_kept", BaseBackend, "urls")
    monkeypatch.setattr(BaseBackend, "urls", own)
    builds.clear()
    for body in (b"1", b"2", b"3"):
        s3.put_object(Bucket="urls", Key="k", Body=body)
    assert builds.count("S3Backend") >= 3, "moto no longer builds the URL table for every in-process request"

    monkeypatch.setattr(BaseBackend, "urls", kept)
    builds.clear()
    for body in (b"4", b"5", b"6"):
        s3.put_object(Bucket="urls", Key="k", Body=body)
    assert s3.get_object(Bucket="urls", Key="k")["Body"].read() == b"6"
    assert len(builds) <= 1  # (none where an earlier test built the table)
    backend = s3_models.s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    assert dict(backend.urls) == own.fget(backend)
    with pytest.raises(TypeError):
        backend.urls["https?://elsewhere"] = None  # (read-only: every request shares it)
    monkeypatch.setenv("MOTO_S3_CUSTOM_ENDPOINTS", "https://s3.example.test")
    try:
        custom = dict(backend.urls)
        assert custom == own.fget(backend) and any("s3.example.test" in url for url in custom)
    finally:
        monkeypatch.delenv("MOTO_S3_CUSTOM_ENDPOINTS")
        own.fget(backend)  # (moto.s3.urls executed again without the custom endpoint, as it was)
    assert not any("s3.example.test" in url for url in own.fget(backend))


def test_moto_still_builds_the_error_table_for_every_error(monkeypatch):
    """When this fails, moto builds the table of a service's error shapes once, not for each
    error it answers: remove fixes.error_lookup_kept. With the fix, each service's table is
    built once, and errors are found in it as before."""
    from moto.core.errors import ErrorLookupFactory, get_error_model
    from moto.core.utils import get_service_model
    from moto.s3.exceptions import MissingKey

    built = []
    real = ErrorLookupFactory._create_error_lut
    monkeypatch.setattr(ErrorLookupFactory, "_create_error_lut", staticmethod(lambda model: built.append(1) or real(model)))
    s3 = get_service_model("s3")
    monkeypatch.setattr(ErrorLookupFactory, "__init__", patching.unpatched("error_lookup_kept", ErrorLookupFactory, "__init__"))
    answers = [get_error_model(MissingKey(key="k"), s3).error_code for _ in range(3)]
    assert len(built) >= 3, "moto no longer builds the error table for every error"
    monkeypatch.undo()
    monkeypatch.setattr(ErrorLookupFactory, "_create_error_lut", staticmethod(lambda model: built.append(1) or real(model)))
    fixes.error_lookup_kept()
    built.clear()
    assert [get_error_model(MissingKey(key="k"), s3).error_code for _ in range(3)] == answers == ["NoSuchKey"] * 3
    assert len(built) <= 2  # (once per service model looked in: S3's, and the exception's own)


def test_moto_still_works_out_each_members_names_for_every_object(moto_aws, monkeypatch):
    """When this fails, moto works out the names it looks each member of an answer up by once,
    not for every object it serializes: remove fixes.serializer_member_names_kept. With the fix,
    an ECS answer serializes as moto serialized it, and once each member's names are known, a
    second answer works none of them out again."""
    from moto.core import serialize

    fixes.serializer_member_names_kept()
    kept_names = serialize.XFormedAttributePicker.get_possible_keys
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="c")
    ecs.register_task_definition(
        family="t", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        containerDefinitions=[{"name": "task", "image": "ubuntu", "essential": True}],
    )
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    arns = [
        ecs.run_task(
            cluster="c", taskDefinition="t", launchType="FARGATE", tags=[{"key": "run", "value": str(i)}],
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}},
            overrides={"containerOverrides": [{"name": "task", "command": [f"echo {i}"]}], "cpu": "1024"},
        )["tasks"][0]["taskArn"]
        for i in range(3)
    ]
    asked: list[str] = []
    moto_has_alias = serialize.NoAlias.has_alias
    monkeypatch.setattr(serialize.NoAlias, "has_alias", lambda self, key: asked.append(key) or moto_has_alias(self, key))

    def described() -> list:
        """The tasks as DescribeTasks answers (each but its lastStatus: moto moves a task on
        through its states as it is described)."""
        tasks = ecs.describe_tasks(cluster="c", tasks=arns, include=["TAGS"])["tasks"]
        assert all(task.pop("lastStatus") for task in tasks)
        return tasks

    monkeypatch.setattr(
        serialize.XFormedAttributePicker, "get_possible_keys",
        patching.unpatched("serializer_member_names_kept", serialize.XFormedAttributePicker, "get_possible_keys"),
    )
    by_moto = described()
    worked_out = len(asked)
    by_moto_again = described()
    assert worked_out >= 3 * 20 and len(asked) == 2 * worked_out, "moto no longer works out each member's names for every object"
    monkeypatch.setattr(serialize.XFormedAttributePicker, "get_possible_keys", kept_names)
    assert described() == by_moto == by_moto_again
    asked.clear()
    assert described() == by_moto
    assert asked == []
    assert {t["tags"][0]["value"] for t in by_moto} == {"0", "1", "2"} and all(t["overrides"]["cpu"] == "1024" for t in by_moto)


def test_moto_still_reads_a_json_template_as_yaml(monkeypatch):
    """When this fails, moto reads a JSON template without PyYAML's loader: remove
    fixes.json_template_read_as_json. With the fix, a JSON template reads as moto read it,
    without PyYAML, and a YAML one still goes to PyYAML."""
    import yaml
    from moto.cloudformation.models import Stack

    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {"Size": {"Type": "Number", "Default": 2}},
        "Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Fn::Sub": "b-${AWS::Region}"},
                                                                          "Tags": [{"Key": "on", "Value": "yes"}]}}},
    }
    body = json.dumps(template, indent=1)
    loads = []
    real_load = yaml.load
    monkeypatch.setattr(yaml, "load", lambda stream, Loader: loads.append(stream) or real_load(stream, Loader=Loader))
    own = patching.unpatched("json_template_read_as_json", Stack, "parse_template").__func__
    assert own(body) == template
    assert loads == [body], "moto no longer reads a JSON template with PyYAML"
    loads.clear()
    fixes.json_template_read_as_json()
    assert Stack.parse_template(body) == template and loads == []
    yaml_body = "Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n"
    assert Stack.parse_template(yaml_body) == {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}}}
    assert Stack.parse_template("{a: 1}") == {"a": 1}  # (a YAML flow mapping, not JSON: PyYAML's)
    assert len(loads) == 2


def _imported_anew(monkeypatch, module_name: str, fix_name: str, install, fixed: bool):
    """moto's module ``module_name`` imported anew, with the fix ``fix_name`` (``install``, which
    imports it) or without; this process's own copy of the module, the one moto's backends were
    built from, is put back after the test (monkeypatch)."""
    import importlib
    import sys

    importlib.import_module(module_name)
    monkeypatch.delitem(sys.modules, module_name)
    monkeypatch.delitem(patching.originals, fix_name, raising=False)
    if fixed:
        install()
        module = sys.modules[module_name]
    else:
        module = importlib.import_module(module_name)
    del sys.modules[module_name]
    return module


def _ec2_regions_imported(monkeypatch, fixed: bool) -> tuple[int, int, list, dict]:
    """moto's module of EC2 regions imported anew (``_imported_anew``), with or without the fix:
    how many times botocore's endpoints were read (one EndpointResolver each), how many times a
    session asked for EC2's service model, and the regions and zones moto listed."""
    import importlib

    import botocore.regions
    import botocore.session
    from boto3.session import Session

    importlib.import_module(fixes.EC2_REGIONS_MODULE)  # (before the reads are counted)
    reads, models = [], []
    own_init = botocore.regions.EndpointResolver.__init__
    monkeypatch.setattr(botocore.regions.EndpointResolver, "__init__",
                        lambda self, *args, **kwargs: reads.append(1) or own_init(self, *args, **kwargs))
    own_service_data = botocore.session.Session.get_service_data
    monkeypatch.setattr(botocore.session.Session, "get_service_data",
                        lambda self, name, *args, **kwargs: (name == "ec2" and models.append(1)) or own_service_data(self, name, *args, **kwargs))
    own_method = Session.get_available_regions
    module = _imported_anew(monkeypatch, fixes.EC2_REGIONS_MODULE, "ec2_regions_read_once", fixes.ec2_regions_read_once, fixed)
    assert Session.get_available_regions is own_method, "boto3's own method is not back"
    table = module.RegionsAndZonesBackend
    zones = {region: [(z.name, z.zone_id) for z in found] for region, found in table.zones.items()}
    return len(reads), len(models), [(r.name, r.endpoint) for r in table.regions], zones


def test_moto_still_reads_the_regions_with_new_sessions_as_ec2_is_imported(monkeypatch):
    """When this fails, importing moto's EC2 reads botocore's endpoints once: remove
    fixes.ec2_regions_read_once. With the fix, they are read at most once (moto's own session's
    may have read them already), EC2's service model not at all, moto lists the same regions and
    zones, and boto3's own method is back once the module is imported."""
    unfixed_reads, unfixed_models, unfixed_regions, unfixed_zones = _ec2_regions_imported(monkeypatch, fixed=False)
    assert unfixed_reads >= 3, "moto's EC2 no longer reads the endpoints for each partition"
    assert unfixed_models >= 1  # (botocore reads EC2's model for its endpoint prefix)
    fixed_reads, fixed_models, fixed_regions, fixed_zones = _ec2_regions_imported(monkeypatch, fixed=True)
    assert fixed_reads <= 1 and fixed_models == 0
    assert fixed_regions == unfixed_regions and fixed_zones == unfixed_zones
    assert len(fixed_regions) > 20 and "us-east-1" in fixed_zones


def _offerings_imported(monkeypatch, fixed: bool) -> tuple[dict, dict]:
    """moto's module of instance types imported anew (``_imported_anew``), with or without the
    fix: how many offerings each location type held as the import ended, and moto's table of them
    (``INSTANCE_TYPE_OFFERINGS``)."""
    module = _imported_anew(
        monkeypatch, fixes.EC2_OFFERINGS_MODULE, "ec2_offerings_read_when_asked", fixes.ec2_offerings_read_when_asked, fixed,
    )
    assert module.listdir is os.listdir and os.listdir.__module__ == "posix", "the system's own listdir is not back"
    offerings = module.INSTANCE_TYPE_OFFERINGS
    at_import = {
        location: 0 if isinstance(regions, fixes.OfferingsReadWhenAsked) and not regions.read
        else sum(len(found) for found in regions.values())
        for location, regions in offerings.items()
    }
    return at_import, offerings


def test_moto_still_reads_every_instance_type_offering_as_ec2_is_imported(monkeypatch):
    """When this fails, importing moto's EC2 no longer reads every region's instance type
    offerings: remove fixes.ec2_offerings_read_when_asked. With the fix, none is read as the module
    is imported, and moto has the same offerings once asked, by .get(region) and [region]."""
    unfixed_at_import, unfixed = _offerings_imported(monkeypatch, fixed=False)
    assert sum(unfixed_at_import.values()) > 100_000, "moto's EC2 no longer reads the offerings as it is imported"
    fixed_at_import, fixed = _offerings_imported(monkeypatch, fixed=True)
    assert set(fixed_at_import) == set(unfixed_at_import) and not any(fixed_at_import.values())
    assert fixed["availability-zone"].get("us-east-1") == unfixed["availability-zone"]["us-east-1"]
    assert fixed["region"].get("no-such-region", []) == [] and "no-such-region" not in fixed["region"]
    assert {location: dict(regions) for location, regions in fixed.items()} == unfixed
    assert fixed["region"]["us-east-1"][0]["LocationType"] == "region"


KEY = "runs/shared/status.json"


@pytest.mark.parametrize(
    ("attribute", "goes"),
    [
        ("setlist", lambda s3: s3.put_object(Bucket="runs", Key=KEY, Body=b"next")),  # a write replaces it
        ("pop", lambda s3: s3.delete_object(Bucket="runs", Key=KEY)),  # DeleteObject removes it
    ],
    ids=["replaced", "deleted"],
)
def test_moto_still_closes_an_object_under_a_read_when_it_is_replaced_or_deleted(moto_aws, monkeypatch, attribute, goes):
    """When this fails, moto no longer closes an object a read has found when a write replaces it
    (``setlist``) or DeleteObject removes it (``pop``): remove that part of
    fixes.replaced_object_readable. With the fix, the read gets the content it found (S3 gives a
    read concurrent with a write the old object or the new one, and one concurrent with a delete
    the object or 404, never an error; two submissions of one run name, one releasing its claim as
    the other read it, saw moto's error)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.s3.utils import _VersionedKeyStore

    s3, backend = aws.client("s3"), s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    s3.create_bucket(Bucket="runs")
    s3.put_object(Bucket="runs", Key=KEY, Body=b"1")
    fixed = getattr(_VersionedKeyStore, attribute)
    monkeypatch.setattr(_VersionedKeyStore, attribute, patching.unpatched("replaced_object_readable", _VersionedKeyStore, attribute))
    found = backend.get_object("runs", KEY)  # a GetObject found the object...
    goes(s3)  # ...and it went before the read read it
    with pytest.raises(ValueError, match="closed file"):
        _ = found.value
    monkeypatch.setattr(_VersionedKeyStore, attribute, fixed)
    fixes.replaced_object_readable()
    s3.put_object(Bucket="runs", Key=KEY, Body=b"2")
    found = backend.get_object("runs", KEY)
    goes(s3)
    assert found.value == b"2"


def test_an_object_replaced_under_a_read_is_closed_once_its_seconds_have_passed(moto_aws, monkeypatch):
    """fixes.replaced_object_readable keeps a replaced object open for ``REPLACED_READABLE_SECONDS``
    only: it is closed at a later write once they have passed (not every object ever written stays open)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    s3, backend = aws.client("s3"), s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    fixes.replaced_object_readable()
    s3.create_bucket(Bucket="runs")
    s3.put_object(Bucket="runs", Key=KEY, Body=b"2")
    found = backend.get_object("runs", KEY)
    s3.put_object(Bucket="runs", Key=KEY, Body=b"3")
    assert found.value == b"2"
    assert s3.get_object(Bucket="runs", Key=KEY)["Body"].read() == b"3"
    monkeypatch.setattr(fixes, "REPLACED_READABLE_SECONDS", 0.0)
    s3.put_object(Bucket="runs", Key=KEY, Body=b"4")  # (the objects replaced before are closed now)
    with pytest.raises(ValueError, match="closed file"):
        _ = found.value


def test_replaced_object_readable_keeps_a_versioned_keys_versions_comparing_none(moto_aws):
    """A versioned bucket's key keeps each version it was written: the fix closes none of them,
    and tells kept from replaced by identity, never comparing two versions (its membership test
    was quadratic in a key's writes: status.json's are many in a long run)."""
    from moto.s3.utils import _VersionedKeyStore

    fixes.replaced_object_readable()

    class Version:
        disposed = False

        def dispose(self):
            self.disposed = True

        def __eq__(self, other):
            raise AssertionError("two versions compared")

        __hash__ = object.__hash__

    store, versions = _VersionedKeyStore(), []
    for _ in range(5):
        versions.append(Version())
        store.setlist("status.json", [*store.getlist("status.json", []), versions[-1]])
    assert [id(v) for v in store.getlist("status.json")] == [id(v) for v in versions]
    assert not any(v.disposed for v in versions)


def test_moto_still_refuses_a_heartbeat_before_the_wait_begins():
    """When this fails, moto accepts a task token's heartbeat from the state's entry on, as Step
    Functions does: remove fixes.heartbeat_while_starting."""
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    own = patching.unpatched("heartbeat_while_starting", CallbackEndpoint, "notify_heartbeat")
    starting = CallbackEndpoint(callback_id="token")  # (as the state makes it on entry, before its service call)
    assert own(starting) is False  # -> InvalidToken


def test_a_heartbeat_before_the_wait_begins_is_accepted_and_one_during_it_resets_the_clock():
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    fixes.heartbeat_while_starting()
    endpoint = CallbackEndpoint(callback_id="token")
    assert endpoint.notify_heartbeat() is True  # the service call still in flight: accepted
    clock = endpoint.setup_heartbeat_endpoint(heartbeat_seconds=5)
    assert endpoint.notify_heartbeat() is True
    assert clock._next_heartbeat_event.is_set()  # (moto's own clock reset, as before the fix)


def pass_execution_threads(step_functions) -> list:
    """The worker threads moto's interpreter started for one execution of a Pass state machine,
    once it ended (as TMP_THREADS holds them)."""
    import importlib
    import uuid

    sfn = aws.client("stepfunctions")
    name = f"pass-{uuid.uuid4().hex[:8]}"
    arn = sfn.create_state_machine(
        name=name, definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, name=name)["executionArn"]
    wait_for(lambda: sfn.describe_execution(executionArn=execution)["status"] == "SUCCEEDED", 30.0, "the execution's end")
    return importlib.import_module(fixes.TMP_THREADS_MODULES[1]).TMP_THREADS


def test_the_step_functions_interpreter_lets_go_of_the_threads_that_ended(step_functions):
    fixes.stepfunctions_finished_threads()
    first = list(pass_execution_threads(step_functions))
    assert first
    wait_for(lambda: not any(t.is_alive() for t in first), 10.0, "the first execution's threads' end")
    for _ in range(2):
        threads = pass_execution_threads(step_functions)
    assert not {id(t) for t in first} & {id(t) for t in threads}  # (only the latest execution's are left)


def test_moto_still_keeps_every_thread_of_an_execution(step_functions, monkeypatch):
    """When this fails, moto's Step Functions interpreter lets go of the threads it started:
    remove fixes.stepfunctions_finished_threads."""
    import importlib

    kept = []
    for name in fixes.TMP_THREADS_MODULES:
        monkeypatch.setattr(importlib.import_module(name), "TMP_THREADS", kept)
    pass_execution_threads(step_functions)
    pass_execution_threads(step_functions)
    wait_for(lambda: not any(t.is_alive() for t in kept), 10.0, "the threads' end")
    assert len(kept) >= 2


def racing_conditional_puts(s3, wait_seconds: float) -> dict[str, str]:
    """Two PutObjects of status.json, each If-Match the ETag both read, the second sent while
    the first is between moto's check of its condition and its write (which waits up to
    ``wait_seconds`` for the second to have written): what each got ("ok" or the error's code),
    and what the object holds after."""
    from moto.s3.models import S3Backend

    etag = s3.put_object(Bucket="runs", Key="status.json", Body=b"RUNNING")["ETag"]
    got: dict[str, str] = {}
    second_wrote = threading.Event()

    def put(body: bytes) -> None:
        try:
            s3.put_object(Bucket="runs", Key="status.json", Body=body, IfMatch=etag)
            got[body.decode()] = "ok"
        except s3.exceptions.ClientError as exn:
            got[body.decode()] = exn.response["Error"]["Code"]

    write = S3Backend.put_object
    second = threading.Thread(target=put, args=(b"CANCELLED",))

    def put_object(self, bucket_name, key_name, *args, **kwargs):
        if threading.current_thread() is second:
            try:
                return write(self, bucket_name, key_name, *args, **kwargs)
            finally:
                second_wrote.set()
        second.start()  # (the first write, past its check)
        second_wrote.wait(timeout=wait_seconds)
        return write(self, bucket_name, key_name, *args, **kwargs)

    S3Backend.put_object = put_object
    try:
        put(b"RUNNING again")
        second.join(timeout=60)
    finally:
        S3Backend.put_object = write
    got["stored"] = s3.get_object(Bucket="runs", Key="status.json")["Body"].read().decode()
    return got


def test_moto_still_lets_two_writes_conditioned_on_one_etag_both_succeed(moto_aws, monkeypatch):
    """When this fails, moto checks a conditional write's precondition and writes in one step:
    remove fixes.conditional_write_atomic. With the fix, of two writes conditioned on one ETag the
    one that came second gets 412 (PreconditionFailed), as on S3, and the first one's content stays."""
    from moto.s3.responses import S3Response

    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    operations = ("put_object", "delete_object")
    fixes.conditional_write_atomic()
    fixed = {operation: getattr(S3Response, operation) for operation in operations}
    for operation in operations:
        monkeypatch.setattr(S3Response, operation, patching.unpatched("conditional_write_atomic", S3Response, operation))
    got = racing_conditional_puts(s3, wait_seconds=60)  # (moto's own: the second writes meanwhile)
    assert got == {"CANCELLED": "ok", "RUNNING again": "ok", "stored": "RUNNING again"}, "moto's writes are atomic now"
    for operation in operations:
        monkeypatch.setattr(S3Response, operation, fixed[operation])
    # (fixed: the second waits for the first, which waits a second for it in vain)
    got = racing_conditional_puts(s3, wait_seconds=1.0)
    assert got == {"RUNNING again": "ok", "CANCELLED": "PreconditionFailed", "stored": "RUNNING again"}
    # a conditional DeleteObject goes through the fix too: a stale ETag is refused, the current one deletes
    stale = s3.head_object(Bucket="runs", Key="status.json")["ETag"]
    s3.put_object(Bucket="runs", Key="status.json", Body=b"SUCCEEDED")
    with pytest.raises(s3.exceptions.ClientError, match="PreconditionFailed"):
        s3.delete_object(Bucket="runs", Key="status.json", IfMatch=stale)
    s3.delete_object(Bucket="runs", Key="status.json", IfMatch=s3.head_object(Bucket="runs", Key="status.json")["ETag"])
    assert "Contents" not in s3.list_objects_v2(Bucket="runs")


def asl_parses(monkeypatch) -> list:
    """Each run of ANTLR's parser over a state machine definition from now on."""
    from moto.stepfunctions.parser.asl.antlr.runtime.ASLParser import ASLParser

    parses, real = [], ASLParser.state_machine
    monkeypatch.setattr(ASLParser, "state_machine", lambda self: parses.append(1) or real(self))
    return parses


PASS_DEFINITION = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"a": 1}, "End": True}}})


def execution_worker_of(definition: str) -> SimpleNamespace:
    """What ``ExecutionWorker._get_evaluation_entrypoint`` reads of its worker: the definition."""
    return SimpleNamespace(_evaluation_details=SimpleNamespace(state_machine_details=SimpleNamespace(definition=definition)))


def test_moto_still_makes_a_client_for_every_service_call(monkeypatch):
    """When this fails, moto's Step Functions keeps the clients its task states call services
    with: remove fixes.stepfunctions_clients_kept."""
    import importlib

    from moto.core.models import botocore_stubber

    monkeypatch.setattr(botocore_stubber, "enabled", False)  # (as in moto's server)
    own = importlib.import_module(fixes.SERVICE_CLIENT_FUNCTION).boto_client_for
    assert own("us-east-1", "lambda") is not own("us-east-1", "lambda")


def test_step_functions_keeps_one_client_per_region_service_and_server(monkeypatch):
    """With stepfunctions_clients_kept, every caller of moto's ``boto_client_for`` gets one client
    per region, service, server port (the port a second stack's server listens on gets its own)
    and role the state runs as; where moto intercepts this process's calls, a new one each time."""
    import importlib

    from moto.core.models import botocore_stubber
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import StateCredentials

    fixes.stepfunctions_clients_kept()
    monkeypatch.setattr(botocore_stubber, "enabled", False)
    monkeypatch.setenv("MOTO_PORT", "5001")
    callers = [importlib.import_module(fixes._SERVICE_CLIENT_PACKAGE + caller) for caller in fixes.SERVICE_CLIENT_CALLERS]
    kept = callers[0].boto_client_for
    assert all(module.boto_client_for is kept for module in callers)
    client = kept("us-east-1", "lambda")
    assert kept("us-east-1", "lambda") is client
    assert client.meta.endpoint_url == "http://localhost:5001"
    assert kept("us-west-2", "lambda") is not client and kept("us-east-1", "sqs") is not client
    monkeypatch.setenv("MOTO_PORT", "5002")
    assert kept("us-east-1", "lambda").meta.endpoint_url == "http://localhost:5002"
    role, other = (StateCredentials(role_arn=f"arn:aws:iam::123456789012:role/{name}") for name in ("r", "o"))
    assert kept("us-east-1", "lambda", role) is kept("us-east-1", "lambda", StateCredentials(role_arn=role.role_arn))
    assert kept("us-east-1", "lambda", other) is not kept("us-east-1", "lambda", role)
    monkeypatch.setattr(botocore_stubber, "enabled", True)
    assert kept("us-east-1", "lambda") is not kept("us-east-1", "lambda")


def test_every_step_functions_module_that_makes_service_clients_gets_the_kept_ones():
    """stepfunctions_clients_kept replaces ``boto_client_for`` in every module of moto's Step
    Functions interpreter that imports it (SERVICE_CLIENT_CALLERS): when this fails, a moto
    module not in the list still makes a client for every call."""
    import importlib
    import pkgutil

    import moto.stepfunctions.parser as parser

    fixes.stepfunctions_clients_kept()
    own = importlib.import_module(fixes.SERVICE_CLIENT_FUNCTION).boto_client_for
    callers = set()
    for found in pkgutil.walk_packages(parser.__path__, parser.__name__ + "."):
        try:
            module = importlib.import_module(found.name)
        except ImportError:  # (a module of moto's that does not import: nothing of moto runs it)
            continue
        if found.name != fixes.SERVICE_CLIENT_FUNCTION and getattr(module, "boto_client_for", None) is not None:
            assert module.boto_client_for is not own, found.name
            callers.add(found.name.removeprefix(fixes._SERVICE_CLIENT_PACKAGE))
    assert callers == set(fixes.SERVICE_CLIENT_CALLERS)


def test_a_kept_client_used_by_many_executions_at_once_logs_nothing(moto_server, caplog, monkeypatch):
    """A kept Step Functions client called by more threads at once than its connection pool
    holds (as many Lambda task states as runs at once) answers each, and local mode's stack
    (``server.quiet_loggers``) logs no full pool: the server closes each connection anyway."""
    import importlib
    import logging

    from miniwdl_fargate.local.moto import server

    fixes.stepfunctions_clients_kept()
    for name in server.QUIET_LOGGERS:  # (each put back as it was after the test)
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    server.quiet_loggers()
    client = importlib.import_module(fixes._SERVICE_CLIENT_PACKAGE + fixes.SERVICE_CLIENT_CALLERS[0]).boto_client_for("us-east-1", "sqs")
    client.create_queue(QueueName="q")
    answers = []

    def calls() -> None:
        for _ in range(5):
            answers.append(len(client.list_queues()["QueueUrls"]))

    caplog.set_level(logging.WARNING)
    threads = [threading.Thread(target=calls) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [1] * 100
    assert not [r for r in caplog.records if r.name.startswith("urllib3")]


def test_moto_still_parses_the_definition_again_for_every_execution(monkeypatch):
    """When this fails, moto's Step Functions no longer parses a state machine's definition for
    each of its executions: remove fixes.asl_parse_tree_kept."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    fixes.asl_parse_tree_kept()
    monkeypatch.setattr(AmazonStateLanguageParser, "parse", patching.unpatched("asl_parse_tree_kept", AmazonStateLanguageParser, "parse"))
    parses = asl_parses(monkeypatch)
    worker = execution_worker_of(PASS_DEFINITION)
    ExecutionWorker._get_evaluation_entrypoint(worker)
    ExecutionWorker._get_evaluation_entrypoint(worker)
    assert len(parses) == 2, "moto no longer parses the definition for every execution"


def test_a_kept_parse_tree_gives_each_execution_components_of_its_own(monkeypatch):
    """With asl_parse_tree_kept: one parse of a definition however many executions, each
    execution's program built anew from the tree and evaluating as moto's own, and a definition
    that does not parse refused every time."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    fixes.asl_parse_tree_kept()
    parses = asl_parses(monkeypatch)
    definition = PASS_DEFINITION.replace('"a": 1', '"a": 2')  # (a definition no other test parsed)
    worker = execution_worker_of(definition)
    first, second = (ExecutionWorker._get_evaluation_entrypoint(worker) for _ in range(2))
    assert len(parses) == 1
    assert first is not second and type(first) is type(second)
    own = patching.unpatched("asl_parse_tree_kept", AmazonStateLanguageParser, "parse").__func__
    assert type(own(definition)[0]) is type(first)
    for _ in range(2):
        with pytest.raises(ASLParserException):
            AmazonStateLanguageParser.parse('{"StartAt": "P", "States": ')


@pytest.fixture
def stub_function(moto_aws, monkeypatch):
    """A Lambda function in moto whose invocations are answered without running anything (moto
    would start a container); the payloads that reached it."""
    import io
    import zipfile

    from moto.awslambda.models import LambdaBackend

    reached = []
    monkeypatch.setattr(LambdaBackend, "invoke", lambda self, name, qualifier, body, headers, response_headers: reached.append(body) or b"{}")
    role = aws.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as bundle:
        bundle.writestr("f.py", "def handler(event, context):\n    return {}\n")
    aws.client("lambda").create_function(FunctionName="f", Runtime="python3.11", Role=role, Handler="f.handler",
                                         Code={"ZipFile": code.getvalue()})
    return reached


def invoke_sized(size, kind="RequestResponse"):
    payload = json.dumps("A" * (size - 2)).encode()  # (a JSON string of ``size`` bytes)
    assert len(payload) == size
    return aws.client("lambda").invoke(FunctionName="f", InvocationType=kind, Payload=payload)


def test_moto_still_invokes_with_a_request_payload_over_the_quota(stub_function, monkeypatch):
    """When this fails, moto refuses an Invoke whose request payload is over Lambda's quota
    itself: remove fixes.invoke_request_size."""
    from moto.awslambda.responses import LambdaResponse

    monkeypatch.setattr(LambdaResponse, "invoke", patching.unpatched("invoke_request_size", LambdaResponse, "invoke"))
    assert invoke_sized(fixes.INVOKE_REQUEST_BYTES["RequestResponse"] + 1)["StatusCode"] == 200
    assert len(stub_function) == 1, "moto no longer runs the function with a payload over the quota"


def test_an_invoke_over_its_types_payload_quota_is_refused_before_the_function_runs(stub_function):
    from botocore.exceptions import ClientError

    fixes.invoke_request_size()
    sync, event = fixes.INVOKE_REQUEST_BYTES["RequestResponse"], fixes.INVOKE_REQUEST_BYTES["Event"]
    assert (sync, event) == (6 * 1024 * 1024, 1024 * 1024)
    for size, kind in ((sync + 1, "RequestResponse"), (event + 1, "Event")):
        with pytest.raises(ClientError) as refused:
            invoke_sized(size, kind)
        assert refused.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
        assert f"smaller than {size - 1} bytes" in refused.value.response["Error"]["Message"]
    assert stub_function == []
    assert invoke_sized(sync)["StatusCode"] == 200
    assert invoke_sized(event, "Event")["StatusCode"] == 202
    assert len(stub_function) == 2


def test_moto_still_takes_s3_keys_over_1024_bytes(moto_aws, monkeypatch):
    """When this fails, moto refuses an S3 key over 1,024 bytes itself: remove fixes.s3_key_length."""
    from moto.s3.models import S3Backend

    for name in ("put_object", "create_multipart_upload", "copy_object"):
        monkeypatch.setattr(S3Backend, name, patching.unpatched("s3_key_length", S3Backend, name))
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="keys")
    s3.put_object(Bucket="keys", Key="k" * (fixes.S3_KEY_BYTES + 1), Body=b"x")
    assert s3.list_objects_v2(Bucket="keys")["KeyCount"] == 1


def test_an_s3_key_over_1024_bytes_is_refused_as_s3_refuses_it(moto_aws):
    from botocore.exceptions import ClientError

    fixes.s3_key_length()
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="keys")
    longest = "é" * (fixes.S3_KEY_BYTES // 2)  # (1,024 bytes of UTF-8 in 512 characters)
    s3.put_object(Bucket="keys", Key=longest, Body=b"x")
    refusals = (
        lambda key: s3.put_object(Bucket="keys", Key=key, Body=b"x"),
        lambda key: s3.copy_object(Bucket="keys", Key=key, CopySource={"Bucket": "keys", "Key": longest}),
        lambda key: s3.create_multipart_upload(Bucket="keys", Key=key),
    )
    for refused in refusals:
        with pytest.raises(ClientError) as said:
            refused(longest + "x")
        assert said.value.response["Error"]["Code"] == "KeyTooLongError"
        assert said.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="keys")["Contents"]] == [longest]
