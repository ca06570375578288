"""A run runs exactly what it was submitted with, and a client token names one request.

Against moto with a versioned bucket, as the stack's: the submit handler's pieces are driven
directly with the S3 event the upload makes (tests/events/s3_object_created.json, its key,
etag and version-id set to the upload's), then the driver's ``fetch`` shows what the run reads.
"""

import copy
import json
from pathlib import Path

import botocore.session
import pytest
from botocore.validate import ParamValidator

from miniwdl_fargate import aws, driver
from miniwdl_fargate.pipeline import start
from miniwdl_fargate.pipeline.settings import ApiSettings
from tests.function_env import environment
from tests.workflows import HELLO

EVENT = json.loads((Path(__file__).resolve().parents[1] / "events" / "s3_object_created.json").read_text())
S3_MODEL = botocore.session.get_session().get_service_model("s3")
WDL = HELLO
OTHER_WDL = WDL.replace('echo "~{who}"', 'echo "someone else"')


@pytest.fixture
def pipeline(moto_aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    s3.put_bucket_versioning(Bucket="runs", VersioningConfiguration={"Status": "Enabled"})
    machine = aws.client("stepfunctions").create_state_machine(
        name="run",
        definition=json.dumps({"StartAt": "a", "States": {"a": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/run",
    )["stateMachineArn"]
    sent = []  # every S3 request the pipeline makes, checked against botocore's model below
    s3.meta.events.register("provide-client-params.s3.*", lambda params, model, **_: sent.append((model.name, dict(params))))
    yield ApiSettings.from_env(environment(STATE_MACHINE_ARN=machine)), sent
    for operation, params in sent:
        report = ParamValidator().validate(params, S3_MODEL.operation_model(operation).input_shape)
        assert not report.has_errors(), (operation, report.generate_report())


def upload(key, body):
    """Put an object as a user would; the EventBridge event S3 sends for that upload."""
    put = aws.client("s3").put_object(Bucket="runs", Key=key, Body=body.encode() if isinstance(body, str) else body)
    event = copy.deepcopy(EVENT)
    event["detail"]["bucket"]["name"] = "runs"
    event["detail"]["object"].update(key=key, etag=put["ETag"].strip('"'), **{"version-id": put["VersionId"]})
    return event


def deliver(settings, event):
    obj = event["detail"]["object"]
    return start.from_object(settings, event["detail"]["bucket"]["name"], obj["key"], obj["etag"], obj["version-id"])


def fetched(record, tmp_path):
    """(WDL source, inputs) as the run's driver downloads them."""
    run = driver.DriverRun(record.run_id, record.workflow, record.inputs, record.results, str(tmp_path / record.run_id))
    (tmp_path / record.run_id).mkdir()
    wdl_path, inputs_path = driver.fetch(run)
    return Path(wdl_path).read_text(), json.loads(Path(inputs_path).read_text())


def test_five_quick_uploads_of_one_inputs_json_are_five_runs_each_with_its_own_inputs(pipeline, tmp_path):
    settings, _ = pipeline
    upload("runs/quick/workflow.wdl", WDL)
    # all five land before the first event is handled, as uploads within a second do
    events = [upload("runs/quick/inputs.json", json.dumps({"hello.who": f"user-{i}"})) for i in range(5)]
    started = [deliver(settings, event) for event in events]
    assert all(s is not None and not s.duplicate for s in started)
    assert len({s.record.run_id for s in started}) == 5
    for i, submitted in enumerate(started):
        source, inputs = fetched(submitted.record, tmp_path)
        assert inputs == {"hello.who": f"user-{i}"}
        assert source == WDL
        assert submitted.record.submitted["inputs_version"] == events[i]["detail"]["object"]["version-id"]
    # a redelivered event is the same run, bound to the same upload
    again = deliver(settings, events[2])
    assert again.duplicate and again.record.run_id == started[2].record.run_id
    assert len(aws.client("stepfunctions").list_executions(stateMachineArn=settings.state_machine_arn)["executions"]) == 5


def test_a_workflow_replaced_after_submit_does_not_change_the_run(pipeline, tmp_path):
    settings, _ = pipeline
    upload("runs/pinned/workflow.wdl", WDL)
    upload("runs/pinned/lib/notes.txt", "first")
    started = deliver(settings, upload("runs/pinned/inputs.json", json.dumps({"hello.who": "Ann"})))
    upload("runs/pinned/workflow.wdl", OTHER_WDL)
    upload("runs/pinned/lib/notes.txt", "second")
    source, inputs = fetched(started.record, tmp_path)
    assert source == WDL and inputs == {"hello.who": "Ann"}
    assert (tmp_path / started.record.run_id).joinpath(*next((tmp_path / started.record.run_id).glob("source-*")).parts[-1:], "lib", "notes.txt").read_text() == "first"
    assert started.record.workflow == started.record.results + "source/workflow.wdl"
    assert started.record.submitted["workflow"] == "s3://runs/runs/pinned/workflow.wdl"


def test_a_rejected_submission_names_the_users_keys_and_leaves_no_copy(pipeline):
    settings, _ = pipeline
    upload("runs/broken/workflow.wdl", WDL.replace("call greet", "call nothing"))
    event = upload("runs/broken/inputs.json", json.dumps({"hello.who": "Ann"}))
    assert deliver(settings, event) is None
    error = json.loads(aws.client("s3").get_object(Bucket="runs", Key="runs/broken/error.json")["Body"].read())
    assert [p["where"] for p in error["problems"]] == ["s3://runs/runs/broken/workflow.wdl:4:3"]
    assert error["inputs_version"] == event["detail"]["object"]["version-id"]
    # no copy of the workflow: only the refusal, kept under the run id it would have had
    left = aws.client("s3").list_objects_v2(Bucket="runs", Prefix="runs/broken/results/").get("Contents", [])
    assert [o["Key"] for o in left] == [f"runs/broken/results/{error['run_id']}/error.json"]


def test_an_upload_replaced_in_a_bucket_without_versions_is_refused_not_mixed_up(moto_aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="plain")
    machine = aws.client("stepfunctions").create_state_machine(
        name="run", definition=json.dumps({"StartAt": "a", "States": {"a": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/run",
    )["stateMachineArn"]
    settings = ApiSettings.from_env(environment(RUNS_BUCKET="plain", STATE_MACHINE_ARN=machine))
    s3.put_object(Bucket="plain", Key="runs/plain/workflow.wdl", Body=WDL.encode())
    first = s3.put_object(Bucket="plain", Key="runs/plain/inputs.json", Body=b'{"hello.who": "Ann"}')
    s3.put_object(Bucket="plain", Key="runs/plain/inputs.json", Body=b'{"hello.who": "Bob"}')
    assert start.from_object(settings, "plain", "runs/plain/inputs.json", first["ETag"].strip('"'), None) is None
    error = json.loads(s3.get_object(Bucket="plain", Key="runs/plain/error.json")["Body"].read())
    assert error["problems"] == [{
        "where": "s3://plain/runs/plain/inputs.json",
        "problem": "was replaced before this upload could be read "
                   "(the bucket keeps no versions): upload it again",
    }]


def test_a_bundle_drop_runs_its_unpacked_copy_and_its_merged_inputs_whatever_is_uploaded_after(pipeline, tmp_path):
    """runs/<name>/workflow.zip (a `miniwdl zip` bundle): the driver fetches the bundle's main
    WDL from the run's source/ (unpacked at submit), the inputs with the bundle's defaults under
    the uploaded ones; a later upload of another bundle changes nothing."""
    import io
    import zipfile

    def bundle(wdl: str) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("MANIFEST.json", json.dumps({"mainWorkflowURL": "main.wdl", "inputFileURLs": ["d.json"]}))
            archive.writestr("d.json", json.dumps({"hello.who": "default"}))
            archive.writestr("main.wdl", wdl)
        return out.getvalue()

    settings, sent = pipeline
    upload("runs/zipped/workflow.zip", bundle(WDL))
    run = deliver(settings, upload("runs/zipped/inputs.json", "{}"))
    upload("runs/zipped/workflow.zip", bundle(OTHER_WDL))
    source, inputs = fetched(run.record, tmp_path)
    assert source == WDL and inputs == {"hello.who": "default"}
    assert {"GetObject", "PutObject"} <= {operation for operation, _ in sent}  # (validated by the fixture)


def test_a_bundle_whose_main_wdl_is_in_a_subfolder_imports_its_siblings(pipeline, tmp_path):
    """Amazon Genomics CLI's bundles name a main WDL in a subfolder (``workflows/main.wdl``)
    importing ``../tasks/...``, which miniwdl's own unpack and load take: the submit step refused it
    as outside the workflow's folder, and the driver fetched only the main WDL's folder."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("MANIFEST.json", json.dumps({"mainWorkflowURL": "workflows/main.wdl"}))
        archive.writestr("workflows/main.wdl", 'version 1.1\nimport "../tasks/greet.wdl" as g\n'
                         "workflow hello { input { String who } call g.greet { input: who = who } }\n")
        archive.writestr("tasks/greet.wdl", "version 1.1\ntask greet { input { String who } command <<< echo ~{who} >>> }\n")
    settings, _ = pipeline
    upload("runs/agc/workflow.zip", out.getvalue())
    run = deliver(settings, upload("runs/agc/inputs.json", '{"hello.who": "agc"}'))
    assert run is not None, aws.client("s3").get_object(Bucket="runs", Key="runs/agc/error.json")["Body"].read()
    source, inputs = fetched(run.record, tmp_path)
    assert source.startswith("version 1.1\nimport \"../tasks/greet.wdl\"") and inputs == {"hello.who": "agc"}
    fetched_dir = next((tmp_path / run.record.run_id).glob("source-*"))
    assert (fetched_dir / "tasks" / "greet.wdl").is_file()  # (the sibling the main WDL imports)


def copy_in_place(key, **kwargs):
    """The console's "Edit storage class" of ``key`` (a CopyObject onto itself: a new version of the
    same bytes); the EventBridge event S3 sends for it (reason CopyObject)."""
    copied = aws.client("s3").copy_object(Bucket="runs", Key=key, CopySource=f"runs/{key}", **kwargs)
    event = copy.deepcopy(EVENT)
    event["detail"]["bucket"]["name"] = "runs"
    event["detail"]["reason"] = "CopyObject"
    event["detail"]["object"].update(key=key, etag=copied["CopyObjectResult"]["ETag"].strip('"'), **{"version-id": copied["VersionId"]})
    return event


def test_an_inputs_json_copied_onto_itself_is_not_a_second_run(pipeline):
    """A storage-class or encryption edit of runs/ copies each inputs.json onto itself: a new
    version of the same bytes, which the run of those bytes answers for; bytes copied from
    elsewhere onto the key are a submission like any other."""
    settings, _ = pipeline
    upload("runs/edited/workflow.wdl", WDL)
    first = deliver(settings, upload("runs/edited/inputs.json", json.dumps({"hello.who": "Ann"})))
    for storage_class in ("STANDARD_IA", "GLACIER_IR"):
        event = copy_in_place("runs/edited/inputs.json", StorageClass=storage_class, MetadataDirective="COPY")
        obj = event["detail"]["object"]
        again = start.from_object(settings, "runs", obj["key"], obj["etag"], obj["version-id"], reason="CopyObject")
        assert again.duplicate and again.record.run_id == first.record.run_id
    aws.client("s3").put_object(Bucket="runs", Key="elsewhere/inputs.json", Body=json.dumps({"hello.who": "Bob"}).encode())
    copied = aws.client("s3").copy_object(Bucket="runs", Key="runs/edited/inputs.json", CopySource="runs/elsewhere/inputs.json")
    other = start.from_object(settings, "runs", "runs/edited/inputs.json", copied["CopyObjectResult"]["ETag"].strip('"'),
                              copied["VersionId"], reason="CopyObject")
    assert not other.duplicate and other.record.run_id != first.record.run_id
    executions = aws.client("stepfunctions").list_executions(stateMachineArn=settings.state_machine_arn)["executions"]
    assert len(executions) == 2


def test_a_finished_run_submitted_again_is_not_started_again(pipeline):
    """Step Functions takes a closed execution's name again after 90 days: a late duplicate of a
    finished run (its client token again, an event redelivered) answers duplicate without a
    StartExecution."""
    from miniwdl_fargate import status

    settings, _ = pipeline
    aws.client("s3").put_object(Bucket="runs", Key="workflows/hello.wdl", Body=WDL.encode())
    first = start.from_request(settings, "api-late", "s3://runs/workflows/hello.wdl", {"hello.who": "Ann"}, "late")
    status.set_state("runs", first.record.run_id, "SUCCEEDED")
    started = []
    sfn = aws.client("stepfunctions")
    sfn.meta.events.register("provide-client-params.stepfunctions.StartExecution", lambda params, **_: started.append(params))
    again = start.from_request(settings, "api-late", "s3://runs/workflows/hello.wdl", {"hello.who": "Ann"}, "late")
    assert again.duplicate and again.record.run_id == first.record.run_id and started == []


def test_a_run_started_under_its_dotted_execution_name_is_not_started_again_under_the_new_one(pipeline):
    """Runs started before execution names had their "." made "_" have an execution of the old
    name (status.json says which): a late duplicate of one still running must not start a second
    execution (and driver) under the new name."""
    from miniwdl_fargate import status

    settings, _ = pipeline
    aws.client("s3").put_object(Bucket="runs", Key="workflows/hello.wdl", Body=WDL.encode())
    first = start.from_request(settings, "my.data", "s3://runs/workflows/hello.wdl", {"hello.who": "Ann"}, "dotted")
    old_arn = settings.state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + first.record.run_id
    status.update("runs", first.record.run_id, lambda c: c.model_copy(update={"execution_arn": old_arn, "status": "RUNNING"}))
    started = []
    aws.client("stepfunctions").meta.events.register("provide-client-params.stepfunctions.StartExecution", lambda params, **_: started.append(params))
    again = start.from_request(settings, "my.data", "s3://runs/workflows/hello.wdl", {"hello.who": "Ann"}, "dotted")
    assert again.duplicate and again.execution_arn == old_arn and started == []


# -- the API: one client token, one request ------------------------------------------------------


def test_an_api_run_reads_its_own_copy_of_the_workflow_folder(pipeline, tmp_path):
    settings, _ = pipeline
    aws.client("s3").put_object(Bucket="runs", Key="workflows/hello/hello.wdl", Body=WDL.encode())
    accepted = start.from_request(settings, "api-pin", "s3://runs/workflows/hello/hello.wdl", {"hello.who": "Ann"}, "t-pin")
    aws.client("s3").put_object(Bucket="runs", Key="workflows/hello/hello.wdl", Body=OTHER_WDL.encode())
    source, inputs = fetched(accepted.record, tmp_path)
    assert source == WDL and inputs == {"hello.who": "Ann"}


@pytest.mark.parametrize(
    "change, differs",
    [
        ({"inputs": {"hello.who": "Bob"}}, ["inputs"]),
        ({"name": "api-other"}, ["name"]),
        ({"options": {"call_cache": False}}, ["options"]),
        ({"workflow": None, "wdl": WDL, "inputs": {"hello.who": "Bob"}}, ["workflow", "wdl", "inputs"]),
    ],
)
def test_the_same_client_token_with_another_request_is_a_conflict_naming_what_differs(pipeline, change, differs):
    settings, _ = pipeline
    aws.client("s3").put_object(Bucket="runs", Key="workflows/hello.wdl", Body=WDL.encode())
    request = {"name": "api-token", "workflow": "s3://runs/workflows/hello.wdl", "inputs": {"hello.who": "Ann"}, "wdl": None, "options": None}
    first = start.from_request(settings, client_token="tok", **request)
    with pytest.raises(start.TokenConflict) as info:
        start.from_request(settings, client_token="tok", **dict(request, **change))
    assert [p["where"] for p in info.value.problems] == differs
    assert all(first.record.run_id in p["problem"] for p in info.value.problems)
    again = start.from_request(settings, client_token="tok", **request)
    assert again.duplicate and again.record.run_id == first.record.run_id
    assert len(aws.client("stepfunctions").list_executions(stateMachineArn=settings.state_machine_arn)["executions"]) == 1


def test_a_rejected_request_does_not_use_up_its_token(pipeline):
    settings, _ = pipeline
    aws.client("s3").put_object(Bucket="runs", Key="workflows/hello.wdl", Body=WDL.encode())
    with pytest.raises(start.Refused) as info:
        start.from_request(settings, "api-fix", "s3://runs/workflows/hello.wdl", {"hello.who": 3}, "fix-1")
    assert not isinstance(info.value, start.TokenConflict)
    fixed = start.from_request(settings, "api-fix", "s3://runs/workflows/hello.wdl", {"hello.who": "Ann"}, "fix-1")
    assert not fixed.duplicate


def test_an_s3_drop_takes_its_options_from_the_sidecar_and_the_driver_reads_them_from_the_record(pipeline, tmp_path):
    settings, _ = pipeline
    upload("runs/opts/workflow.wdl", WDL)
    upload("runs/opts/options.json", json.dumps({"labels": {"project": "rnaseq"}, "max_cost_usd": 5, "call_cache": "read"}))
    started = deliver(settings, upload("runs/opts/inputs.json", json.dumps({"hello.who": "Ann"})))
    given = {"labels": {"project": "rnaseq"}, "max_cost_usd": 5.0, "call_cache": "read"}
    assert started.record.options == given
    run = driver.DriverRun(started.record.run_id, started.record.workflow, started.record.inputs, started.record.results,
                           str(tmp_path / "opts"))
    assert run.read_options() == given
    # the sidecar is not part of the workflow's bundle
    keys = [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket="runs", Prefix="runs/opts/results/")["Contents"]]
    assert any(k.endswith("/source/workflow.wdl") for k in keys) and not any(k.endswith("/source/options.json") for k in keys), keys


def test_a_bad_sidecar_is_refused_naming_it_and_each_bad_option_and_starts_nothing(pipeline):
    settings, _ = pipeline
    upload("runs/badopts/workflow.wdl", WDL)
    upload("runs/badopts/options.json", json.dumps({"labels": {"aws:team": "x"}, "max_cost_usd": -1}))
    assert deliver(settings, upload("runs/badopts/inputs.json", json.dumps({"hello.who": "Ann"}))) is None
    error = json.loads(aws.client("s3").get_object(Bucket="runs", Key="runs/badopts/error.json")["Body"].read())
    assert [p["where"] for p in error["problems"]] == [
        "s3://runs/runs/badopts/options.json.max_cost_usd", "s3://runs/runs/badopts/options.json.labels"]
    assert "aws:" in error["problems"][1]["problem"]
    assert aws.client("stepfunctions").list_executions(stateMachineArn=settings.state_machine_arn)["executions"] == []
    left = aws.client("s3").list_objects_v2(Bucket="runs", Prefix="runs/badopts/results/").get("Contents", [])
    assert [o["Key"] for o in left] == [f"runs/badopts/results/{error['run_id']}/error.json"]  # (the refusal only)


def test_the_record_names_the_workflow_its_tags_name_whichever_way_it_came(pipeline):
    """The driver's and every task's tag miniwdl-fargate:workflow: the WDL's workflow, from an S3
    drop, an API request by s3:// URI, or inline WDL."""
    settings, _ = pipeline
    upload("runs/named/workflow.wdl", WDL)
    dropped = deliver(settings, upload("runs/named/inputs.json", json.dumps({"hello.who": "Ann"})))
    aws.client("s3").put_object(Bucket="runs", Key="workflows/hello.wdl", Body=WDL.encode())
    by_uri = start.from_request(settings, "api-named", "s3://runs/workflows/hello.wdl", {"hello.who": "Ann"}, "named-1")
    inline = start.from_request(settings, "api-inline", None, {"hello.who": "Ann"}, "named-2", wdl=WDL)
    assert [s.record.workflow_name for s in (dropped, by_uri, inline)] == ["hello"] * 3
    recorded = json.loads(aws.client("s3").get_object(Bucket="runs", Key=inline.record.results_key("run.json"))["Body"].read())
    assert recorded["workflow_name"] == "hello"
