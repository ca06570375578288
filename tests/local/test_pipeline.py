"""The whole pipeline in local mode: S3 / API -> EventBridge -> submit -> Step Functions ->
launch -> driver (Fargate task) -> per-task Fargate tasks on EFS -> STOPPED event -> outputs."""

import json
from pathlib import Path

import pytest

from miniwdl_fargate import aws, runs
from miniwdl_fargate.local import run as local_run
from miniwdl_fargate.local.cli import seed

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def read(s3, uri):
    bucket, key = uri[len("s3://"):].split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_inputs_json_in_the_bucket_runs_the_example_to_success(stack, s3):
    seed([str(REPO / "examples" / "s3")])
    bucket = stack.outputs["BucketName"]
    name, run_id = local_run.submit(bucket, EXAMPLE / "workflow.wdl", EXAMPLE / "inputs.json", name="hello-s3")
    result = local_run.wait(bucket, stack.outputs["StateMachineArn"], name, run_id, timeout=300)
    assert result.status == "SUCCEEDED", result.document
    outputs = result.document["outputs"]
    assert outputs["hello.reference_words"] == 9
    assert len(outputs["hello.greetings"]) == 3
    assert read(s3, outputs["hello.greetings"][1]) == b"Hello, Ben Bitdiddle!\n"
    assert read(s3, outputs["hello.summary"]).decode().splitlines() == [
        "Hello, Alyssa P. Hacker!",
        "Hello, Ben Bitdiddle!",
        "Hello, Cy D. Fect!",
    ]
    prefix = f"runs/{name}/results/{run_id}/"
    assert result.results == f"s3://{bucket}/{prefix}"
    assert json.loads(read(s3, result.results + "run.json"))["run_id"] == run_id
    # every output file is under the run's results prefix
    for uri in outputs["hello.greetings"] + [outputs["hello.summary"]]:
        assert uri.startswith(result.results + "out/")
    # nothing left running
    assert stack.runtime.running_tasks() == []
    history = aws.client("stepfunctions").get_execution_history(
        executionArn=stack.outputs["StateMachineArn"].replace(":stateMachine:", ":execution:") + ":" + run_id
    )["events"]
    assert len(history) < 60  # fan-out stays in the driver, not in the state machine history
