import os
from pathlib import Path

import pytest

from miniwdl_fargate import aws
from miniwdl_fargate.cli import main as cli_main
from miniwdl_fargate.local.containers import ENGINE_ENV
from miniwdl_fargate.local.stack import LocalStack
from tests.forked import run_forked

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The whole pipeline, deployed from template.yaml into an embedded moto server. WDL tasks
    run as sandboxed host processes (no container engine: their images, e.g. ubuntu:22.04, are
    not available offline; tests/containers runs real images)."""
    saved = os.environ.get(ENGINE_ENV)
    os.environ[ENGINE_ENV] = "none"
    try:
        with LocalStack(state_dir=str(tmp_path_factory.mktemp("local-mode"))) as deployed:
            yield deployed
    finally:
        if saved is None:
            os.environ.pop(ENGINE_ENV, None)
        else:
            os.environ[ENGINE_ENV] = saved


@pytest.fixture
def s3(stack):
    return aws.client("s3")


@pytest.fixture
def sfn(stack):
    return aws.client("stepfunctions")


@pytest.fixture(scope="session")
def local_cli(stack, tmp_path_factory):
    """``miniwdl-fargate ARGS... --local=<the stack's connection file>`` as a user runs it against
    the stack, forked from this process (``tests/forked.py``): ``local_cli(*args, timeout=300)``
    -> its CompletedProcess."""
    connection = stack.write_connection(tmp_path_factory.mktemp("client") / "local.json")

    def run(*args: str, timeout: float = 300):
        return run_forked(cli_main, [*args, f"--local={connection}"], env=dict(os.environ), cwd=REPO, timeout=timeout)

    return run
