"""The driver's run report and call cache, against moto S3 with the host_process backend standing
in for Fargate: report.html / timeline.svg / cost.json next to outputs.json or error.json, and a
rerun that takes its results from the call cache unless the data changed or the run says not to."""

import json
import xml.etree.ElementTree as ET

import pytest
from test_driver import WDL, inputs_and_settings

from miniwdl_fargate import aws, driver
from miniwdl_fargate.report import cost as report_cost
from miniwdl_fargate.report import render
from miniwdl_fargate.report import run as report_run

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def bucket(moto_aws, monkeypatch, tmp_path):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    s3.put_object(Bucket="runs", Key="runs/t/workflow.wdl", Body=WDL.encode())
    inputs_and_settings(s3, monkeypatch, tmp_path, "unset")
    return s3


def drive(tmp_path, run_id, reference=None, cache=True):
    s3 = aws.client("s3")
    if reference is not None:
        s3.put_object(Bucket="runs", Key="data/ref.txt", Body=reference.encode())
    run = driver.DriverRun(
        run_id=run_id,
        workflow="s3://runs/runs/t/workflow.wdl",
        inputs="s3://runs/runs/t/inputs.json",
        results=f"s3://runs/runs/t/results/{run_id}/",
        workdir=str(tmp_path / "efs" / "runs" / run_id),
        cache_dir=str(tmp_path / "efs" / "cache") if cache else "",
    )
    return driver.drive(run)


def get(run_id, name):
    body = aws.client("s3").get_object(Bucket="runs", Key=f"runs/t/results/{run_id}/{name}")["Body"].read()
    return json.loads(body) if name.endswith(".json") else body.decode()


def bars(svg_text):
    """(call, attempt, outcome, segment classes, fill of the last segment) per bar of the SVG."""
    root = ET.fromstring(svg_text)
    found = []
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != "attempt":
            continue
        segments = [r for r in g.iter(f"{SVG}rect") if "segment" in (r.get("class") or "")]
        label = next(t.text for t in g.iter(f"{SVG}text") if t.get("class") == "label")
        found.append(
            (label, g.get("data-attempt"), g.get("data-outcome"),
             [r.get("class").split()[1] for r in segments], segments[-1].get("fill"))
        )
    return found


def test_the_driver_and_miniwdl_load_the_workflow_once_for_staging_running_and_uploading(bucket, tmp_path, monkeypatch):
    """A workflow of many imports takes seconds to load and check: the driver reads it once (the
    inputs' types to stage, the outputs' to upload) and miniwdl runs that document, loading it
    no more (miniwdl_fixes.py ``workflow_loaded_once``)."""
    import WDL
    import WDL.CLI

    loads = []
    original = WDL.load

    def load(*args, **kwargs):
        loads.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(WDL, "load", load)
    monkeypatch.setattr(WDL.CLI, "load", load)  # (miniwdl's runner loads through its own name of it)
    assert drive(tmp_path, "t-once", reference="one two three") == 0
    assert get("t-once", "outputs.json")["outputs"]
    assert len(loads) == 1, loads


def test_a_successful_run_has_a_report_next_to_its_outputs(bucket, tmp_path):
    assert drive(tmp_path, "t-ok", reference="one two three") == 0
    doc = get("t-ok", "outputs.json")
    assert doc["report"] == "s3://runs/runs/t/results/t-ok/report.html"
    assert doc["cost"] == "s3://runs/runs/t/results/t-ok/cost.json"
    found = bars(get("t-ok", "timeline.svg"))
    assert sorted((label, outcome) for label, _a, outcome, _s, _f in found) == [
        ("call-fail_maybe", "succeeded"), ("call-greet-0-a", "succeeded"), ("call-greet-1-b", "succeeded"),
    ]
    assert all(fill == render.COLOURS["succeeded"] for *_rest, fill in found)
    assert all(segments[0] == "queued" and segments[-1] == "running" for _l, _a, _o, segments, _f in found)
    page = get("t-ok", "report.html")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "call-greet-1-b" in page
    cost = get("t-ok", "cost.json")
    assert cost["run_id"] == "t-ok" and cost["status"] == "SUCCEEDED"
    assert len(cost["attempts"]) == 3
    # host processes are not Fargate: no price applies
    assert cost["total_usd"] == 0 and cost["unpriced_capacity"] == ["local"]


def test_a_failed_run_has_a_report_showing_the_failure(bucket, tmp_path):
    assert drive(tmp_path, "t-fail", reference="FAIL") == 1
    error = get("t-fail", "error.json")
    assert error["report"] == "s3://runs/runs/t/results/t-fail/report.html"
    found = {label: (outcome, fill) for label, _a, outcome, _s, fill in bars(get("t-fail", "timeline.svg"))}
    assert found["call-fail_maybe"] == ("failed", render.COLOURS["failed"])
    assert "failed (exit 3)" in get("t-fail", "timeline.svg")


def keep_run_dirs(monkeypatch):
    """The call cache on EFS points at files in earlier runs' directories: keep them (a successful
    run's directory is removed at its end otherwise, and its cache entries with it)."""
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__KEEP_RUN_DIRS", "true")


def test_a_rerun_takes_its_results_from_the_call_cache(bucket, tmp_path, monkeypatch):
    keep_run_dirs(monkeypatch)
    assert drive(tmp_path, "t-first", reference="one two three") == 0
    first = get("t-first", "outputs.json")
    assert len(get("t-first", "cost.json")["attempts"]) == 3

    # the same inputs again: every call comes from the call cache, no task runs
    assert drive(tmp_path, "t-again") == 0
    again = get("t-again", "outputs.json")
    assert again["outputs"]["w.words"] == first["outputs"]["w.words"] == 3
    assert [get_key(u) for u in again["outputs"]["w.greetings"]] == [b"hi a\n", b"hi b\n"]
    cost = get("t-again", "cost.json")
    assert cost["attempts"] == [] and cost["call_cache_hits"] == 3  # each call (a workflow has no entry)

    # the reference object overwritten at the same key: its ETag changed, so it is staged anew
    # and what read it runs again; the greetings did not read it and still come from the cache
    assert drive(tmp_path, "t-changed", reference="one two three four") == 0
    assert get("t-changed", "outputs.json")["outputs"]["w.words"] == 4
    changed = get("t-changed", "cost.json")
    assert [a["call"] for a in changed["attempts"]] == ["call-fail_maybe"]
    assert changed["call_cache_hits"] == 2  # the two greetings
    staged = sorted(p.name for p in (tmp_path / "efs" / "cache" / "s3" / "runs" / "data" / "ref.txt").iterdir())
    assert len(staged) == 2  # one copy per ETag


def test_a_run_can_turn_the_call_cache_off_with_a_miniwdl_cfg_in_its_bundle(bucket, tmp_path, monkeypatch):
    keep_run_dirs(monkeypatch)
    assert drive(tmp_path, "t-fill", reference="one two three") == 0
    aws.client("s3").put_object(Bucket="runs", Key="runs/t/miniwdl.cfg", Body=b"[call_cache]\nget = false\n")
    assert drive(tmp_path, "t-nocache") == 0
    assert len(get("t-nocache", "cost.json")["attempts"]) == 3


def test_without_a_cache_dir_the_driver_leaves_the_call_cache_to_miniwdl(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL__CALL_CACHE__PUT", "false")
    monkeypatch.setenv("MINIWDL__CALL_CACHE__GET", "false")
    assert drive(tmp_path, "t-plain-1", reference="one", cache=False) == 0
    assert drive(tmp_path, "t-plain-2", cache=False) == 0
    assert len(get("t-plain-2", "cost.json")["attempts"]) == 3
    assert not (tmp_path / "efs" / "cache").exists()


def get_key(uri):
    bucket, key = uri[len("s3://"):].split("/", 1)
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_error_json_says_when_a_task_ran_out_of_memory():
    run = driver.DriverRun("r-1", "s3://b/w.wdl", "s3://b/i.json", "s3://b/res/", "/tmp/x")
    cause = {
        "error": "CommandFailed", "run": "call-big", "exit_status": 137,
        "container_reason": "OutOfMemoryError: Container killed due to memory usage",
        "out_of_memory": "killed for exceeding its memory at 16 vCPU / 120 GiB, and 120 GiB is already "
        "Fargate's largest memory size: not retried",
    }
    doc = driver.describe_error(run, {"error": "RunFailed", "cause": cause})
    assert doc["message"].startswith("call-big ran out of memory (exit status 137): killed for exceeding")
    assert doc["failed_task"]["out_of_memory"] == cause["out_of_memory"]


def test_error_json_names_a_sub_workflows_failed_call_by_its_directory():
    """miniwdl's error names the call by its id alone (call-boom), which both copies of a
    scattered sub-workflow share: error.json names it as status.json and cost.json do."""
    run = driver.DriverRun("r-1", "s3://b/w.wdl", "s3://b/i.json", "s3://b/res/", "/tmp/x")
    cause = {"error": "CommandFailed", "run": "call-boom", "exit_status": 7,
             "dir": "/mnt/efs/runs/r-1/20261201_034029_main/call-inner_s-0-Alice/call-boom"}
    doc = driver.describe_error(run, {"error": "RunFailed", "cause": cause})
    assert doc["failed_task"]["task"] == "call-inner_s-0-Alice/call-boom"
    assert doc["message"] == "call-inner_s-0-Alice/call-boom failed with exit status 7"


def test_error_json_says_what_a_full_disk_or_a_kill_commonly_means(tmp_path):
    run = driver.DriverRun("r-1", "s3://b/w.wdl", "s3://b/i.json", "s3://b/res/", "/tmp/x")
    stderr = tmp_path / "stderr.txt"
    stderr.write_text("sorting...\nsamtools sort: couldn't write to /tmp/x.bam: No space left on device\n")
    doc = driver.describe_error(run, {"error": "RunFailed", "cause": {
        "error": "CommandFailed", "run": "call-sort", "exit_status": 1, "stderr_file": str(stderr)}})
    assert doc["message"].startswith("call-sort failed with exit status 1 (its storage is full") and "runtime.disks" in doc["message"]
    doc = driver.describe_error(run, {"error": "RunFailed", "cause": {"error": "CommandFailed", "run": "call-big", "exit_status": 137}})
    assert doc["message"] == ("call-big failed with exit status 137 (killed by SIGKILL: a possible indication that it ran out "
                              "of memory; give it more with runtime.memory)")


def test_error_json_says_why_a_call_failed_that_never_ran_its_command():
    """An image that cannot be pulled, a task that could not start, an interruption: no exit
    status, and miniwdl's RunFailed around the cause has no message. The top-level message (what
    status, WES and the console print) carries the cause's, not only its exception's name."""
    run = driver.DriverRun("r-1", "s3://b/w.wdl", "s3://b/i.json", "s3://b/res/", "/tmp/x")
    said = "image 'ubuntu:2204' cannot be pulled (the image, tag or digest does not exist); not retried"
    cause = {"error": "ImageUnusable", "run": "call-align", "message": said}
    doc = driver.describe_error(run, {"error": "RunFailed", "cause": cause})
    assert doc["message"] == f"call-align failed: ImageUnusable: {said}"
    # (a failure of no call keeps miniwdl's own message)
    doc = driver.describe_error(run, {"error": "EvalError", "message": "no such input", "pos": {}})
    assert doc["message"] == "no such input"


class FakeECS:
    def __init__(self, task):
        self.task = task

    def describe_tasks(self, cluster, tasks):
        assert cluster == "wdl" and tasks == [self.task["taskArn"]]
        return {"tasks": [self.task]}


def test_the_driver_itself_is_a_row_of_the_report_when_ecs_knows_its_size(monkeypatch):
    from datetime import datetime, timezone

    arn = "arn:aws:ecs:us-east-1:123456789012:task/wdl/0123abcd"
    task = {
        "taskArn": arn, "cpu": "1024", "memory": "2048", "launchType": "FARGATE",
        "createdAt": datetime.fromtimestamp(1000, timezone.utc), "pullStartedAt": datetime.fromtimestamp(1010, timezone.utc),
        "startedAt": datetime.fromtimestamp(1030, timezone.utc),
    }
    monkeypatch.setattr(report_run.sweep, "own_task_arn", lambda: arn)
    monkeypatch.setattr(report_run.aws, "client", lambda service: FakeECS(task))
    run = driver.DriverRun("r-1", "s3://b/w.wdl", "s3://b/i.json", "s3://b/res/", "/tmp/x")
    own = report_run.driver_attempt(run, started=1040, status="SUCCEEDED", now=1130)
    assert (own.call, own.cpu, own.memory, own.capacity) == ("driver", 1024, 2048, "FARGATE")
    assert (own.queued, own.billing_start, own.running, own.stopped) == (1000, 1010, 1030, 1130)
    cost = report_cost.estimate_cost([own], report_cost.Prices())
    assert cost["attempts"][0]["billed_seconds"] == 120  # from its image pull until the report
    # a size ECS does not give (moto's does not) leaves the driver out rather than price it at 0
    task.update(cpu=None)
    assert report_run.driver_attempt(run, started=1040, status="SUCCEEDED", now=1130) is None


# -- the driver's own task, and public IPv4 addresses, in cost.json --------------------------------


def fargate_task(cluster="wdl", family="mwf-driver", overrides=None):
    """RunTask of a Fargate task (1 vCPU, 2 GiB unless overridden) in moto: its description."""
    ecs, ec2 = aws.client("ecs"), aws.client("ec2")
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="1024", memory="2048",
        containerDefinitions=[{"name": "driver", "image": "driver:latest", "essential": True}],
    )
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    arn = ecs.run_task(
        cluster=cluster, taskDefinition=family, launchType="FARGATE", overrides=overrides or {},
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group], "assignPublicIp": "ENABLED"}},
    )["tasks"][0]["taskArn"]
    return ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]


def test_moto_still_leaves_the_task_size_out(moto_aws, monkeypatch):
    """Why local mode fixes moto (fixes.ecs_task_size): ECS's DescribeTasks gives
    each task's cpu and memory, moto 5.2.5 does not. When this fails, moto reports them itself:
    drop the patch."""
    from moto.ecs.models import EC2ContainerServiceBackend

    from miniwdl_fargate.local.moto import patching

    monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", patching.unpatched("ecs_task_size", EC2ContainerServiceBackend, "run_task"))
    task = fargate_task()
    assert "cpu" not in task and "memory" not in task


def test_local_modes_ecs_reports_the_task_size(moto_aws):
    from miniwdl_fargate.local.moto import fixes

    fixes.ecs_task_size()
    task = fargate_task()
    assert (task["cpu"], task["memory"]) == ("1024", "2048")  # the task definition's
    bigger = fargate_task(family="mwf-task-x", overrides={"cpu": "2048", "memory": "8192"})
    assert (bigger["cpu"], bigger["memory"]) == ("2048", "8192")  # RunTask's overrides win


def test_cost_json_has_the_drivers_own_row_and_its_public_ipv4_address(bucket, tmp_path, monkeypatch):
    """Through the driver, as it runs in the stack: it finds its own ECS task from the task
    metadata endpoint, describes it for its size, and prices it (with the public IPv4 address
    the stack gives it) next to the WDL tasks."""
    from miniwdl_fargate.local.moto import fixes

    fixes.ecs_task_size()
    own = fargate_task()
    metadata = tmp_path / "metadata"
    metadata.mkdir()
    (metadata / "task").write_text(json.dumps({"TaskARN": own["taskArn"], "Cluster": own["clusterArn"]}))
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", f"file://{metadata}")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__ASSIGN_PUBLIC_IP", "ENABLED")
    assert drive(tmp_path, "t-own", reference="one") == 0

    cost = get("t-own", "cost.json")
    rows = {r["call"]: r for r in cost["attempts"]}
    driver_row = rows["driver"]
    assert (driver_row["vcpu"], driver_row["memory_gib"], driver_row["capacity"]) == (1.0, 2.0, "FARGATE")
    assert driver_row["ecs_task"] == own["taskArn"]
    assert driver_row["public_ipv4"] is True and driver_row["billed_seconds"] >= 60
    assert driver_row["public_ipv4_usd"] == pytest.approx(driver_row["billed_seconds"] * 0.005 / 3600, abs=1e-6)
    assert driver_row["usd"] > driver_row["public_ipv4_usd"] > 0
    # the WDL tasks ran as host processes here (host_process): no address, no price
    assert {r["public_ipv4"] for c, r in rows.items() if c != "driver"} == {False}
    assert cost["public_ipv4_usd"] == driver_row["public_ipv4_usd"]
    assert cost["total_usd"] == pytest.approx(driver_row["usd"], abs=1e-6)
    page = get("t-own", "report.html")
    assert "<td>driver</td>" in page and "(driver included)" in page and "<th>public IPv4</th>" in page


# -- provenance: what exactly ran, in outputs.json and error.json ----------------------------------


def test_outputs_and_error_json_say_what_exactly_ran(bucket, tmp_path):
    import hashlib

    from miniwdl_fargate import provenance

    wdl_sha256 = hashlib.sha256(WDL.encode()).hexdigest()
    expected_workflow = {
        "uri": "s3://runs/runs/t/workflow.wdl",
        "wdl_sha256": wdl_sha256,
        # the bundle is the WDL's folder less inputs.json and results/: here the WDL alone
        "bundle_sha256": hashlib.sha256(f"{wdl_sha256}  workflow.wdl\n".encode()).hexdigest(),
        "bundle_files": 1,
    }
    assert drive(tmp_path, "t-prov", reference="one two three") == 0
    said = get("t-prov", "outputs.json")["provenance"]
    assert said["workflow"] == expected_workflow
    assert sorted((t["call"], t["attempt"]) for t in said["tasks"]) == [
        ("call-fail_maybe", 1), ("call-greet-0-a", 1), ("call-greet-1-b", 1),
    ]
    assert {t["image"] for t in said["tasks"]} == {"ubuntu:22.04"}  # miniwdl's default image ([task_runtime] defaults): the WDL names none
    assert said["driver"] == provenance.versions()
    assert "ubuntu:22.04" in get("t-prov", "report.html")  # the report lists the images too
    assert drive(tmp_path, "t-prov-fail", reference="FAIL") == 1
    failed = get("t-prov-fail", "error.json")["provenance"]
    assert failed["workflow"] == expected_workflow and "call-fail_maybe" in {t["call"] for t in failed["tasks"]}
