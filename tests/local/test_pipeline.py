"""The whole pipeline in local mode: S3 / API -> EventBridge -> submit -> Step Functions ->
launch -> driver (a Fargate task) -> one Fargate task per WDL task, on EFS -> driver STOPPED
event -> driver_stopped -> finalize. Each test goes in the way a user would."""

import json
import os
from pathlib import Path

import pytest

from miniwdl_fargate import aws, runs
from miniwdl_fargate import upload as local_run
from miniwdl_fargate.local.cli import seed
from miniwdl_fargate.client import api_function
from tests.local_ecs import every_task_arn
from tests.waiting import run_end

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EVENTS = REPO / "tests" / "events"

FAILING_WDL = """
version 1.1
workflow failing {
  input { Array[Int] xs = [1, 2] }
  scatter (x in xs) { call ok { input: x = x } }
  call breaks { input: n = length(ok.out) }
  output { Int never = breaks.out }
}
task ok {
  input { Int x }
  command <<< echo ~{x} >>>
  output { Int out = read_int(stdout()) }
}
task breaks {
  input { Int n }
  command <<<
    echo "counting ~{n} things" >&2
    echo "samtools: truncated file" >&2
    exit 7
  >>>
  output { Int out = read_int(stdout()) }
}
"""


def read(s3, uri):
    bucket, key = uri[len("s3://"):].split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def execution_history(stack, run_id):
    arn = runs.execution_arn(stack.outputs["StateMachineArn"], run_id)
    return aws.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]


def run_through_bucket(stack, wdl, inputs, name):
    bucket = stack.outputs["BucketName"]
    name, run_id = local_run.submit(bucket, wdl, inputs, name=name)
    return run_end(stack, name, run_id, timeout=300)


def test_inputs_json_in_the_bucket_runs_the_example_to_success(stack, s3):
    seed([str(REPO / "examples" / "s3")])
    result = run_through_bucket(stack, EXAMPLE / "workflow.wdl", EXAMPLE / "inputs.json", "hello-s3")
    assert result.status == "SUCCEEDED", result.document
    outputs = result.document["outputs"]
    assert outputs["hello.reference_words"] == 9
    assert read(s3, outputs["hello.greetings"][1]) == b"Hello, Ben Bitdiddle!\n"
    assert read(s3, outputs["hello.summary"]).decode().splitlines() == [
        "Hello, Alyssa P. Hacker!",
        "Hello, Ben Bitdiddle!",
        "Hello, Cy D. Fect!",
    ]
    for uri in outputs["hello.greetings"] + [outputs["hello.summary"]]:
        assert uri.startswith(result.results + "out/")
    assert json.loads(read(s3, result.results + "run.json"))["run_id"] == result.run_id
    assert b"NOTICE done" in read(s3, result.results + "workflow.log")
    # every WDL task ran as its own Fargate task, with the cpu/memory its runtime asked for
    ecs = aws.client("ecs")
    cluster = stack.outputs["ClusterName"]
    arns = every_task_arn(cluster)
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
    wdl_tasks = [t for t in tasks if "-task-" in t["taskDefinitionArn"]]
    assert len(wdl_tasks) >= 4  # 3 greet + 1 gather
    assert {(t["overrides"]["cpu"], t["overrides"]["memory"]) for t in wdl_tasks} >= {("1024", "2048"), ("2048", "4096")}
    assert all(t["lastStatus"] == "STOPPED" for t in tasks)
    assert stack.runtime.running_tasks() == []
    # a stopped task's metadata endpoint is gone with it (a folder per task ever run piled up)
    left = set(os.listdir(os.path.join(stack.state_dir, "ecs-metadata")))
    assert not left & {t["taskArn"].rsplit("/", 1)[-1] for t in tasks}
    # fan-out stays in the driver: the execution history is a handful of events
    assert len(execution_history(stack, result.run_id)) < 40


def test_post_to_the_api_runs_the_workflow(stack, s3):
    """An API Gateway proxy event (POST /runs) delivered to the API function."""
    bucket = stack.outputs["BucketName"]
    s3.upload_file(str(EXAMPLE / "workflow.wdl"), bucket, "workflows/hello.wdl")
    event = json.loads((EVENTS / "apigw_post_runs.json").read_text())
    event["body"] = json.dumps(
        {
            "name": "hello-api",
            "workflow": f"s3://{bucket}/workflows/hello.wdl",
            "inputs": {"hello.names": ["Dee"], "hello.reference": "s3://example-data/hello/reference.txt"},
            "client_token": "req-1",
        }
    )
    seed([str(REPO / "examples" / "s3")])
    functions = api_function(stack.stack_name)
    response = aws.client("lambda").invoke(FunctionName=functions, Payload=json.dumps(event).encode())
    answer = json.loads(response["Payload"].read())
    assert answer["statusCode"] == 202, answer
    accepted = json.loads(answer["body"])
    run_id = accepted["run_id"]
    result = run_end(stack, "hello-api", run_id, timeout=300)
    assert result.status == "SUCCEEDED", result.document
    assert read(s3, result.document["outputs"]["hello.greetings"][0]) == b"Hello, Dee!\n"
    # the same request again (same client token) starts nothing new
    again = aws.client("lambda").invoke(FunctionName=functions, Payload=json.dumps(event).encode())
    answer = json.loads(again["Payload"].read())
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["duplicate"] is True

    event["body"] = json.dumps({"name": "bad name!", "workflow": "http://x"})
    bad = json.loads(aws.client("lambda").invoke(FunctionName=functions, Payload=json.dumps(event).encode())["Payload"].read())
    assert bad["statusCode"] == 400
    problems = json.loads(bad["body"])["problems"]
    assert {p["where"] for p in problems} == {"name", "workflow"}


def test_failing_task_ends_failed_with_error_json(stack, s3, tmp_path):
    wdl = tmp_path / "failing.wdl"
    wdl.write_text(FAILING_WDL)
    result = run_through_bucket(stack, wdl, {}, "failing")
    assert result.status == "FAILED"
    error = result.document
    assert error["status"] == "FAILED"
    assert error["message"] == "call-breaks failed with exit status 7"
    failed = error["failed_task"]
    assert failed["task"] == "call-breaks"
    assert failed["exit_status"] == 7
    assert failed["stderr_tail"] == ["counting 2 things", "samtools: truncated file"]
    assert failed["log_stream"].startswith("miniwdl/task/")
    assert failed["log_group"] and failed["log_url"].startswith("https://us-east-1.console.aws.amazon.com/cloudwatch/")
    assert failed["ecs_task"].startswith("arn:aws:ecs:") and failed["capacity"] == "FARGATE"
    assert result.outputs_uri.endswith("/error.json")
    sfn = aws.client("stepfunctions")
    arn = runs.execution_arn(stack.outputs["StateMachineArn"], result.run_id)
    assert sfn.describe_execution(executionArn=arn)["status"] == "FAILED"
    assert stack.runtime.running_tasks() == []


def test_miniwdl_self_test_workflow_passes_through_the_pipeline(stack, s3):
    seed([str(FIXTURES / "s3")])
    result = run_through_bucket(
        stack, FIXTURES / "self_test" / "test.wdl", FIXTURES / "self_test" / "inputs.json", "self-test"
    )
    assert result.status == "SUCCEEDED", result.document
    outputs = result.document["outputs"]
    names = ("Alyssa P. Hacker", "Ben Bitdiddle")
    assert outputs["hello_caller.messages"] == [f"Hello, {n}!" for n in names]
    assert outputs["hello_caller.reference_file_counts"] == [2, 2]
    assert outputs["hello_caller.remote_names_lines"] == 3
    for name, directory in zip(names, outputs["hello_caller.message_directories"], strict=True):
        assert directory.startswith(result.results + "out/message_directories/")
        assert read(s3, directory.rstrip("/") + "/message.txt").decode().rstrip() == f"Hello, {name}!"


def test_bad_inputs_dropped_in_the_bucket_are_rejected_before_anything_starts(stack, s3):
    """The user uploads a workflow and inputs that name an s3:// object that is not there."""
    bucket = stack.outputs["BucketName"]
    s3.upload_file(str(EXAMPLE / "workflow.wdl"), bucket, "runs/rejected/workflow.wdl")
    s3.put_object(
        Bucket=bucket, Key="runs/rejected/inputs.json",
        Body=json.dumps({"hello.names": "Ann", "hello.reference": "s3://example-data/hello/nope.txt"}).encode(),
    )
    result = run_end(stack, "rejected", "rejected-none", timeout=120)
    assert result.status == "FAILED"
    assert result.outputs_uri == f"s3://{bucket}/runs/rejected/error.json"
    assert result.document["error"] == "InvalidSubmission"
    assert [(p["where"], p["problem"]) for p in result.document["problems"]] == [
        (f"s3://{bucket}/runs/rejected/inputs.json: hello.names",
         "expected Array[String], got \"Ann\" (couldn't construct 'Array[String]' from \"Ann\" (in names))"),
    ]
    executions = aws.client("stepfunctions").list_executions(stateMachineArn=stack.outputs["StateMachineArn"])["executions"]
    assert not [e for e in executions if e["name"].startswith("rejected-")]


def test_the_driver_is_forked_from_the_preloaded_python_zygote(stack, tmp_path, caplog, monkeypatch):
    """The driver is not a new Python process: it is forked from ``python_zygote`` (its
    libraries imported, its parsers built), the one fork server that makes the stack's Lambda
    environments too, and the run goes as any other."""
    from miniwdl_fargate.local.forkserver import ForkServer
    from miniwdl_fargate.local.jobs import children

    if not stack.runtime.ecs_runner.fork_drivers:
        pytest.skip("no fork servers here (no pidfds)")
    server = stack.runtime.python_zygote.get()
    asked = []
    fork = ForkServer.fork
    monkeypatch.setattr(ForkServer, "fork", lambda s, request, fds: asked.append((s, request.get("kind"))) or fork(s, request, fds))
    wdl = tmp_path / "forked.wdl"
    wdl.write_text('version 1.1\nworkflow forked {\n  output { String said = "warm" }\n}\n')
    caplog.set_level("INFO", logger="miniwdl-fargate.local")
    result = run_through_bucket(stack, wdl, {}, "forked")
    assert result.status == "SUCCEEDED", result.document
    assert result.document["outputs"] == {"forked.said": "warm"}
    assert any("miniwdl-fargate driver forked from its fork server" in r.getMessage() for r in caplog.records)
    assert (server, "driver") in asked
    # the warm Lambda environments are its children too, and no other server forks Python children
    names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in children(server.proc.pid)}
    assert "lambda" in names, names
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children(os.getpid())]
    assert not [c for c in commands if b"lambda_zygote" in c or b"driver_zygote" in c]


USER_NAMESPACE_WDL = """
version 1.1
workflow userns {
  call look
  output { String seen = look.seen }
}
task look {
  command <<< echo "$(id -u) $(cat /proc/self/uid_map)" >>>
  output { String seen = read_string(stdout()) }
  runtime { docker: "ubuntu:22.04" }
}
"""


def test_where_local_mode_is_not_root_drivers_and_tasks_are_forked_into_user_namespaces(stack, tmp_path, monkeypatch):
    """Local mode run by a user (most machines: not root) makes each Fargate task's namespaces in
    a user namespace (``unshare --user --map-root-user``); its drivers and sandboxed tasks are
    forked from the fork servers all the same, each child making that user namespace itself,
    rather than started as new processes (each driver then imported its libraries anew: a warm
    stack's run of hello took 4.2-4.7 s as a user against 2.4-2.7 s as root). Here the stack's
    runner takes the namespace prefix it takes as a user, and the run goes as any other."""
    import shutil
    import subprocess

    from miniwdl_fargate.local.ecs_runner import NamespaceSupport
    from miniwdl_fargate.local.forkserver import ForkServer

    runner = stack.runtime.ecs_runner
    if not runner.fork_drivers:
        pytest.skip("no fork servers here (no pidfds)")
    prefix = [shutil.which("unshare") or "unshare", *NamespaceSupport.AS_USER]
    if subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("user namespaces are not allowed here")
    monkeypatch.setattr(runner, "namespaces", NamespaceSupport(prefix))
    monkeypatch.setattr(runner, "_sandbox_checked", False)  # (the sandbox found again, for that prefix)
    monkeypatch.setattr(runner, "_sandbox", None)
    asked = []  # (what the driver and task fork servers are asked: the Lambda environments' have no "argv")
    fork = ForkServer.fork
    monkeypatch.setattr(ForkServer, "fork", lambda server, request, fds: asked.append(request) or fork(server, request, fds))
    wdl = tmp_path / "userns.wdl"
    wdl.write_text(USER_NAMESPACE_WDL)
    result = run_through_bucket(stack, wdl, {}, "userns")
    assert result.status == "SUCCEEDED", result.document
    # the task: uid 1000 of the sandbox's user namespace, mapped onto the root of its parent's
    assert result.document["outputs"]["userns.seen"].split() == ["1000", "1000", "0", "1"]
    forked = {("task" if "spec" in r else r["argv"][0], r["user_namespace"]) for r in asked if "argv" in r}
    assert forked >= {("miniwdl-fargate", True), ("task", True)}
    assert {user_namespace for _what, user_namespace in forked} == {True}


def test_the_stacks_moto_makes_no_default_images(stack):
    """The stack's moto runs with MOTO_SETTINGS (local/moto/server.py): nothing in the stack uses an
    AMI, so EC2 serves the stack's own network without making moto's default images."""
    ec2 = aws.client("ec2")
    assert ec2.describe_images(Owners=["amazon"])["Images"] == []
    assert ec2.describe_snapshots()["Snapshots"] == []
    assert ec2.describe_subnets()["Subnets"]  # (the stack's VPC and the default one are there)
