"""What a forked child keeps of its parent's AWS clients and backend state: nothing that is the
parent's run (local mode forks drivers and Lambda environments; tests fork commands)."""

import os

from miniwdl_fargate import aws
from miniwdl_fargate.backend.fargate import FargateTaskContainer
from tests.forked import run_forked


def test_a_forked_child_makes_its_own_clients_and_runs_global_init_again(monkeypatch):
    monkeypatch.setattr(FargateTaskContainer, "_global_init", True, raising=False)
    monkeypatch.setattr(FargateTaskContainer, "_task_definitions", {"ubuntu:22.04": "arn:aws:ecs:us-east-1:1:task-definition/x:1"})
    parents = aws.client("s3")

    def child(argv):
        fresh = aws.client("s3")
        problems = []
        if fresh is parents:
            problems.append("the parent's S3 client")
        if vars(FargateTaskContainer).get("_global_init"):
            problems.append("global_init marked done")
        if FargateTaskContainer._task_definitions:
            problems.append(f"task definitions {FargateTaskContainer._task_definitions}")
        print("; ".join(problems))
        return 1 if problems else 0

    result = run_forked(child, [], env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    # the parent keeps its own
    assert aws.client("s3") is parents and FargateTaskContainer._task_definitions


def test_every_backend_runs_global_init_again_in_a_forked_child(monkeypatch):
    from miniwdl_fargate.backend.host_process import HostProcessTaskContainer

    monkeypatch.setattr(HostProcessTaskContainer, "_global_init", True, raising=False)

    def child(argv):
        return 1 if vars(HostProcessTaskContainer).get("_global_init") else 0

    assert run_forked(child, [], env=dict(os.environ)).returncode == 0
    assert HostProcessTaskContainer._global_init  # (the parent's stays)
