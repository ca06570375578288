"""examples/gpu through `miniwdl-fargate local run` on a stack with managed instances: a GPU task
beyond Fargate and an EBS-scratch task, end to end (issue: "Beyond Fargate's box")."""

import json
import re

import pytest

from test_cli import REPO, run_cli

from miniwdl_fargate import aws
from tests.waiting import run_end

EXAMPLE = REPO / "examples" / "gpu"

GPU_STACK = ["--parameter", "ManagedInstances=Enabled", "--parameter", "ManagedInstancesGpuKinds=t4",
             "--parameter", "ManagedInstancesMaxGpus=1", "--parameter", "ImageCache=Enabled",
             # a Docker Hub rule (with its credential): the example's ubuntu:22.04 is pulled through the cache
             "--parameter", "DockerHubCredentialArn=arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf"]
CACHED_UBUNTU = "123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub/library/ubuntu:22.04"


@pytest.mark.long
def test_the_gpu_example_runs_beyond_fargate_end_to_end(tmp_path):
    proc = run_cli("local", "run", "examples/gpu/workflow.wdl", "examples/gpu/inputs.json",
                   "--state-dir", str(tmp_path), *GPU_STACK)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["outputs"] == {"gpu.gpu_report": "no GPU here", "gpu.total": 500500}
    results = tmp_path / "s3" / doc["results"][len("s3://"):]
    rows = {row["call"]: row for row in json.loads((results / "cost.json").read_text())["attempts"]}
    # the GPU task on the managed-instances capacity, priced with its GPU and the management fee
    crunch = rows["call-crunch"]
    assert (crunch["capacity"], crunch["gpus"], crunch["vcpu"], crunch["public_ipv4"]) == ("MANAGED_INSTANCES", 1, 32.0, False)
    assert crunch["management_fee_usd"] > 0 and crunch["gpu_seconds"] >= 60
    # ... on the stack's GPU capacity provider, never the CPU-only one (whose instances have no GPUs)
    launched = {line.split(" NOTICE ")[0].rsplit(":", 1)[1]: line
                for line in (results / "workflow.log").read_text().splitlines() if "NOTICE ECS task launched" in line}
    assert set(launched) == {"call-prepare", "call-crunch"}
    assert re.search(r'capacity_provider: "[^"]*-ManagedInstancesGpuCapacityProvider-', launched["call-crunch"])
    assert "capacity_provider" not in launched["call-prepare"]  # (launch type FARGATE)
    # the 300 GiB task on Fargate with an EBS scratch volume, priced as gp3 storage
    prepare = rows["call-prepare"]
    assert (prepare["capacity"], prepare["scratch_gib"], prepare["gpus"]) == ("FARGATE", 300, 0)
    assert prepare["scratch_usd"] > 0
    # provenance: each task's image as asked, as run and by digest (local mode's stand-in digest)
    provenance = json.loads((results / "outputs.json").read_text())["provenance"]
    images = {t["call"]: t for t in provenance["tasks"]}
    assert set(images) == {"call-prepare", "call-crunch"}
    assert all(t["image"] == "ubuntu:22.04" and t["image_digest"].startswith("sha256:") for t in images.values())
    assert {t["image_uri"] for t in images.values()} == {CACHED_UBUNTU}  # as run: through the stack's cache
    assert "GPU" in proc.stderr  # local mode said it gives the GPU task none


def test_the_gpu_example_is_refused_by_a_stack_without_managed_instances(stack, s3):
    """Dropped into the default stack (no managed instances): refused before anything starts,
    naming the task, what it asked for and the stack parameter that lifts the limit."""
    bucket = stack.outputs["BucketName"]
    s3.upload_file(str(EXAMPLE / "workflow.wdl"), bucket, "runs/gpu-refused/workflow.wdl")
    s3.upload_file(str(EXAMPLE / "inputs.json"), bucket, "runs/gpu-refused/inputs.json")
    result = run_end(stack, "gpu-refused", "gpu-refused-none", timeout=120)
    assert result.status == "FAILED" and result.document["error"] == "InvalidSubmission"
    [problem] = [p["problem"] for p in result.document["problems"] if "task crunch" in p["problem"]]
    assert problem.startswith("task crunch cannot run on Fargate: runtime.gpu = true; Fargate has no GPUs; runtime.cpu = 32")
    assert "deploy the stack with ManagedInstances=Enabled" in problem
    executions = aws.client("stepfunctions").list_executions(stateMachineArn=stack.outputs["StateMachineArn"])["executions"]
    assert not [e for e in executions if e["name"].startswith("gpu-refused-")]
