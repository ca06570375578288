import pytest

from miniwdl_fargate import aws
from miniwdl_fargate.local.stack import LocalStack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The whole pipeline, deployed from template.yaml into an embedded moto server."""
    with LocalStack(state_dir=str(tmp_path_factory.mktemp("local-mode")), poll_seconds=0.5) as deployed:
        yield deployed


@pytest.fixture
def s3(stack):
    return aws.client("s3")


@pytest.fixture
def sfn(stack):
    return aws.client("stepfunctions")
