"""Resuming a failed or cancelled run (pipeline/resume.py, POST /runs/{run_id}/resume), against
moto: the new run's record and copies, the links between the two runs, each refusal, and the
client token. Every S3 and Step Functions request is checked against botocore's model."""

import json
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import ParamValidator

from miniwdl_fargate import aws, runs, s3io, status
from miniwdl_fargate.pipeline import manage, resume, start
from miniwdl_fargate.pipeline.settings import ApiSettings
from tests.function_env import LambdaContext, environment, set_environment

WDL = """version 1.1
workflow hello {
  input { String who  File reference }
  call greet { input: who = who, reference = reference }
  output { String out = greet.out }
}
task greet {
  input { String who  File reference }
  command <<< echo "~{who}" >>>
  output { String out = read_string(stdout()) }
}
"""
INPUTS = {"hello.who": "Ann", "hello.reference": "s3://data/ref.txt"}
OPTIONS = {"call_cache": "write", "max_cost_usd": 5, "labels": {"team": "genomics"}}
EVENT = Path(__file__).resolve().parents[1] / "events" / "apigw_post_runs.json"
MODELS = {name: botocore.session.get_session().get_service_model(name) for name in ("s3", "stepfunctions")}


@pytest.fixture
def stack(moto_aws):
    """A bucket, a state machine and one run submitted through the API; every S3 and Step
    Functions request made afterwards is validated against botocore's model."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="data", Key="ref.txt", Body=b"reference")
    s3.put_object(Bucket="runs", Key="workflows/hello/hello.wdl", Body=WDL.encode())
    machine = aws.client("stepfunctions").create_state_machine(
        name="run", definition=json.dumps({"StartAt": "a", "States": {"a": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/run",
    )["stateMachineArn"]
    settings = ApiSettings.from_env(environment(STATE_MACHINE_ARN=machine))
    first = start.from_request(settings, "hello", "s3://runs/workflows/hello/hello.wdl", INPUTS, "first", options=OPTIONS)
    sent = []
    for name in MODELS:
        aws.client(name).meta.events.register(
            f"provide-client-params.{name}.*", lambda params, model, name=name, **_: sent.append((name, model.name, dict(params)))
        )
    yield settings, first.record
    for name, operation, params in sent:
        report = ParamValidator().validate(params, MODELS[name].operation_model(operation).input_shape)
        assert not report.has_errors(), (operation, report.generate_report())


def executions(settings):
    return aws.client("stepfunctions").list_executions(stateMachineArn=settings.state_machine_arn)["executions"]


def result_ids(record):
    """The run ids with anything under runs/<name>/results/."""
    prefix = f"runs/{record.name}/results/"
    return {o["Key"][len(prefix):].split("/", 1)[0] for o in s3io.list_keys("runs", prefix)}


def read(uri):
    bucket, key = s3io.split(uri)
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def ended(record, state="FAILED"):
    status.set_state("runs", record.run_id, state)


def test_a_failed_run_resumes_as_a_new_run_of_its_own_copies_with_its_options_and_the_cache_read(stack):
    settings, old = stack
    ended(old)
    resumed = resume.resume(settings, old.run_id, "again", {"labels": {"attempt": "2"}, "max_run_hours": 2})
    new = resumed.record
    assert not resumed.duplicate
    assert new.run_id != old.run_id and new.name == old.name and new.resumed_from == old.run_id
    assert new.submitted == {"workflow": old.workflow, "inputs": old.inputs, "resumed_from": old.run_id}
    # the same workflow and inputs, copied beside the new run's results
    assert new.workflow == new.results + "source/hello.wdl" and read(new.workflow) == read(old.workflow) == WDL.encode()
    assert new.inputs == new.results + "inputs.json" and read(new.inputs) == read(old.inputs)
    # the earlier run kept its calls ("write"): the resumed run reads them and keeps its own
    assert new.options == {"call_cache": True, "max_cost_usd": 5, "max_run_hours": 2, "labels": {"team": "genomics", "attempt": "2"}}
    assert new.max_run_seconds == 7200
    assert runs.RunRecord.model_validate_json(read(new.results + "run.json")) == new
    assert sorted(e["name"] for e in executions(settings)) == sorted([new.run_id, old.run_id])
    described = aws.client("stepfunctions").describe_execution(executionArn=resumed.execution_arn)
    assert runs.RunRecord.model_validate_json(described["input"]) == new
    # the two runs point at each other; the earlier one is still FAILED
    assert status.read("runs", new.run_id).resumed_from == old.run_id
    before = status.read("runs", old.run_id)
    assert before.status == "FAILED" and before.resumed_by == [new.run_id]


def test_a_bundle_run_resumes_from_its_unpacked_copy_and_its_merged_inputs(stack):
    """A run submitted as a `miniwdl zip` bundle: its copy is a folder like any run's, its inputs
    already the bundle's defaults under the given ones; the resumed run copies both."""
    import io
    import zipfile

    settings, _ = stack
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("MANIFEST.json", json.dumps({"mainWorkflowURL": "hello.wdl", "inputFileURLs": ["d.json"]}))
        archive.writestr("d.json", json.dumps(INPUTS))
        archive.writestr("hello.wdl", WDL)
    old = start.from_request(settings, "zipped", None, {"who": "Bob"}, "zip-first", workflow_zip=bundle.getvalue()).record
    ended(old)
    new = resume.resume(settings, old.run_id, "zip-again").record
    assert new.workflow == new.results + "source/hello.wdl" and read(new.workflow) == WDL.encode()
    assert read(new.results + "source/MANIFEST.json") == read(old.results + "source/MANIFEST.json")
    assert json.loads(read(new.inputs)) == json.loads(read(old.inputs)) == {"hello.reference": "s3://data/ref.txt", "who": "Bob"}


def test_a_cancelled_run_resumes_too_and_each_resume_is_linked(stack):
    settings, old = stack
    ended(old, "CANCELLED")
    one = resume.resume(settings, old.run_id, "one").record
    two = resume.resume(settings, old.run_id, "two", {"call_cache": False}).record
    assert one.run_id != two.run_id
    assert two.options["call_cache"] is False  # what resume is given wins
    assert status.read("runs", old.run_id).resumed_by == [one.run_id, two.run_id]
    assert status.read("runs", old.run_id).status == "CANCELLED"


def test_a_run_on_a_stack_that_keeps_no_calls_resumes_reading_the_cache_and_keeping_none(stack):
    """A run without the option got the stack's CallCache: where that is false, the run kept no
    calls, and resuming it keeps none either (it was True: calls kept that the stack's owner
    chose not to keep)."""
    settings, _ = stack
    plain = start.from_request(settings, "plain", "s3://runs/workflows/hello/hello.wdl", INPUTS, "plain-1").record
    ended(plain)
    no_cache = settings.model_copy(update={"call_cache": "false"})
    assert resume.resume(no_cache, plain.run_id, "resume-1").record.options == {"call_cache": "read"}
    assert resume.resume(settings, plain.run_id, "resume-2").record.options == {"call_cache": True}


@pytest.mark.parametrize("state", ["SUBMITTED", "STARTING", "RUNNING"])
def test_a_run_still_going_is_not_resumed(stack, state):
    settings, old = stack
    status.set_state("runs", old.run_id, state)
    with pytest.raises(resume.NotResumable) as info:
        resume.resume(settings, old.run_id, "t")
    assert info.value.problems == [{"where": old.run_id, "problem": (
        f"run {old.run_id} is still {state}: only a FAILED or CANCELLED run can be resumed; wait for it to end, "
        f"or cancel it (miniwdl-fargate cancel {old.run_id}) and then resume it")}]
    assert len(executions(settings)) == 1 and result_ids(old) == {old.run_id}


def test_a_succeeded_run_has_nothing_to_resume(stack):
    settings, old = stack
    status.update("runs", old.run_id, lambda s: s.model_copy(update={"status": "SUCCEEDED", "outputs": old.results + "outputs.json"}))
    with pytest.raises(resume.NotResumable) as info:
        resume.resume(settings, old.run_id, "t")
    assert info.value.problems[0]["problem"] == (
        f"run {old.run_id} SUCCEEDED: there is nothing to resume (its outputs: {old.results}outputs.json); "
        "to run it again, submit it again")
    assert len(executions(settings)) == 1 and status.read("runs", old.run_id).resumed_by == []


def test_an_unknown_run_is_not_found(stack):
    settings, _ = stack
    with pytest.raises(manage.RunNotFound, match="no run hello-00000000 in s3://runs"):
        resume.resume(settings, "hello-00000000", "t")


@pytest.mark.parametrize("what", ["workflow", "inputs"])
def test_a_run_whose_copy_is_gone_is_refused_and_nothing_is_left(stack, what):
    settings, old = stack
    ended(old)
    bucket, key = s3io.split(getattr(old, what))
    aws.client("s3").delete_object(Bucket=bucket, Key=key)
    with pytest.raises(start.Refused) as info:
        resume.resume(settings, old.run_id, "t")
    assert info.value.problems == [{"where": getattr(old, what), "problem": (
        f"run {old.run_id}'s copy of its {what} is gone (deleted): it cannot be resumed; submit the run again")}]
    assert len(executions(settings)) == 1 and result_ids(old) == {old.run_id}
    assert status.read("runs", old.run_id).resumed_by == []


def test_an_s3_input_deleted_since_is_refused_where_the_inputs_name_it(stack):
    settings, old = stack
    ended(old)
    aws.client("s3").delete_object(Bucket="data", Key="ref.txt")
    with pytest.raises(start.Refused) as info:
        resume.resume(settings, old.run_id, "t")
    assert [p["where"] for p in info.value.problems] == [f"{old.inputs}: hello.reference"]
    assert "s3://data/ref.txt" in info.value.problems[0]["problem"]
    assert len(executions(settings)) == 1 and result_ids(old) == {old.run_id}  # (the copied source removed)


def test_bad_options_are_refused_naming_each(stack):
    settings, old = stack
    ended(old)
    with pytest.raises(start.Refused) as info:
        resume.resume(settings, old.run_id, "t", {"max_cost_usd": -1, "labels": {"aws:x": "1"}})
    assert sorted(p["where"] for p in info.value.problems) == ["options.labels", "options.max_cost_usd"]
    assert len(executions(settings)) == 1


# -- the API ------------------------------------------------------------------------------------


@pytest.fixture
def api(stack, monkeypatch):
    import api

    settings, old = stack
    set_environment(monkeypatch, STATE_MACHINE_ARN=settings.state_machine_arn)
    monkeypatch.setattr(api.metrics.provider, "namespace", "test")  # (the template sets it)

    def call(method, path, body=None):
        event = json.loads(EVENT.read_text())
        resource = "/runs/{run_id}/resume" if path.endswith("/resume") else "/runs/{run_id}"
        event.update(path=path, httpMethod=method, resource=resource, pathParameters={"run_id": path.split("/")[2]},
                     body=json.dumps(body) if body is not None else None)
        event["requestContext"].update(httpMethod=method, resourcePath=resource, path="/v1" + path)
        answer = api.handler(event, LambdaContext())
        return answer["statusCode"], json.loads(answer["body"])

    return call, settings, old


def test_the_api_resumes_once_per_client_token_and_get_shows_the_links(api):
    call, settings, old = api
    ended(old)
    code, first = call("POST", f"/runs/{old.run_id}/resume", {"client_token": "t-1", "options": {"max_cost_usd": 9}})
    assert code == 202 and not first["duplicate"]
    code, again = call("POST", f"/runs/{old.run_id}/resume", {"client_token": "t-1", "options": {"max_cost_usd": 9}})
    assert code == 200 and again["duplicate"] and again["run_id"] == first["run_id"]
    code, other = call("POST", f"/runs/{old.run_id}/resume", {"client_token": "t-1", "options": {"max_cost_usd": 10}})
    assert code == 409 and other["error"] == "ClientTokenConflict" and [p["where"] for p in other["problems"]] == ["options"]
    code, bare = call("POST", f"/runs/{old.run_id}/resume")  # no body: a new resumed run
    assert code == 202 and bare["run_id"] not in (first["run_id"], old.run_id)
    assert len(executions(settings)) == 3
    code, doc = call("GET", f"/runs/{old.run_id}")
    assert code == 200 and doc["status"] == "FAILED" and doc["resumed_by"] == [first["run_id"], bare["run_id"]]
    code, doc = call("GET", f"/runs/{first['run_id']}")
    assert code == 200 and doc["resumed_from"] == old.run_id and doc["status"] == "SUBMITTED"


def test_the_api_refuses_with_409_404_and_400(api):
    call, settings, old = api
    code, body = call("POST", f"/runs/{old.run_id}/resume", {})
    assert code == 409 and body["error"] == "NotResumable"
    assert body["message"].startswith(f"run {old.run_id} is still SUBMITTED")
    assert body["problems"] == [{"where": old.run_id, "problem": body["message"]}]
    code, body = call("POST", "/runs/hello-00000000/resume", {})
    assert code == 404 and body["error"] == "NotFound"
    ended(old)
    code, body = call("POST", f"/runs/{old.run_id}/resume", {"options": {"call_cache": "sometimes"}})
    assert code == 400 and body["error"] == "InvalidRequest" and body["problems"][0]["where"] == "options.call_cache"
    assert len(executions(settings)) == 1


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def command(stack, monkeypatch):
    """``miniwdl-fargate resume|status ... --stack s`` against the moto stack (its settings as the
    stack's API function has them)."""
    from miniwdl_fargate import cli, client

    settings, old = stack
    monkeypatch.setattr(client, "connect", lambda *a, **k: client.Deployment("s", "us-east-1", {"BucketName": "runs"}))
    monkeypatch.setattr(client, "stack_settings", lambda deployment: settings)
    return (lambda *args: cli.main([*args, "--stack", "s"])), settings, old


def test_the_command_resumes_and_status_shows_both_links(command, capsys):
    run, settings, old = command
    ended(old)
    assert run("resume", old.run_id, "--label", "attempt=2", "--option", "max_cost_usd=7") == 0
    # (the command prints the new run's id as JSON to the stdout it started with, which capsys does not see)
    (new,) = result_ids(old) - {old.run_id}
    assert capsys.readouterr().err == f"resumed run {old.run_id} as run {new}\n"
    record = runs.RunRecord.model_validate_json(read(f"s3://runs/runs/hello/results/{new}/run.json"))
    assert record.source == "cli" and record.options["labels"] == {"team": "genomics", "attempt": "2"}
    assert record.options["max_cost_usd"] == 7
    assert run("status", old.run_id) == 0
    assert f"resumed by {new}" in capsys.readouterr().out
    assert run("status", new) == 0
    assert f"resumes    {old.run_id}" in capsys.readouterr().out


def test_the_command_refuses_with_exit_status_2_saying_why(command, capsys):
    run, settings, old = command
    assert run("resume", old.run_id) == 2
    assert capsys.readouterr().err == (
        f"error: run {old.run_id} is still SUBMITTED: only a FAILED or CANCELLED run can be resumed; wait for it to end, "
        f"or cancel it (miniwdl-fargate cancel {old.run_id}) and then resume it\n")
    assert run("resume", "hello-00000000") == 2
    assert capsys.readouterr().err.startswith("error: no run hello-00000000 in s3://runs")
    ended(old)
    assert run("resume", old.run_id, "--option", "call_cache=sometimes") == 2
    assert 'options.call_cache: must be true, false, "read" or "write"' in capsys.readouterr().err
    assert len(executions(settings)) == 1


def test_the_command_reads_the_stack_settings_from_its_api_function(moto_aws):
    """The requests it sends (checked by botocore's Stubber against the models), and what it says
    when the stack has no API function or the caller may not read it."""
    from botocore.stub import Stubber

    from miniwdl_fargate import client

    deployment = client.Deployment("stk", "us-east-1", {"BucketName": "runs"})
    cfn, lam = aws.client("cloudformation"), aws.client("lambda")
    with Stubber(cfn) as cfn_stub, Stubber(lam) as lambda_stub:
        summary = {"LogicalResourceId": "ApiFunction", "PhysicalResourceId": "stk-ApiFunction-X", "ResourceType": "AWS::Lambda::Function",
                   "LastUpdatedTimestamp": "2026-11-30T00:00:00Z", "ResourceStatus": "CREATE_COMPLETE"}
        cfn_stub.add_response("list_stack_resources", {"StackResourceSummaries": [summary]}, {"StackName": "stk"})
        lambda_stub.add_response("get_function_configuration", {"Environment": {"Variables": environment(MAX_RUN_HOURS="5")}},
                                 {"FunctionName": "stk-ApiFunction-X"})
        assert client.stack_settings(deployment) == ApiSettings.from_env(environment(MAX_RUN_HOURS="5"))
        cfn_stub.add_response("list_stack_resources", {"StackResourceSummaries": []}, {"StackName": "stk"})
        with pytest.raises(client.ClientError, match="^stack stk has no ApiFunction: is it a miniwdl-fargate stack[?]$"):
            client.stack_settings(deployment)
        cfn_stub.add_response("list_stack_resources", {"StackResourceSummaries": [summary]}, {"StackName": "stk"})
        lambda_stub.add_response("get_function_configuration", {"Environment": {"Variables": {"MAX_RUN_HOURS": "5"}}},
                                 {"FunctionName": "stk-ApiFunction-X"})
        with pytest.raises(client.ClientError, match="^stack stk: its ApiFunction lacks settings a run needs: ApiSettings: "
                           "environment variable DRIVER_HEARTBEAT_SECONDS is not set"):
            client.stack_settings(deployment)
        cfn_stub.add_response("list_stack_resources", {"StackResourceSummaries": [summary]}, {"StackName": "stk"})
        lambda_stub.add_client_error("get_function_configuration", "AccessDeniedException", "not allowed to read it")
        with pytest.raises(client.ClientError, match="^stack stk: cannot read its ApiFunction's settings: not allowed to read it$"):
            client.stack_settings(deployment)
