"""``aws.preload_models``: botocore's models read once into a loader every later session of the
process shares (what ``driver_zygote`` does before it forks drivers); clients made with it work
as any other (their requests validate against the same service model)."""

import botocore.loaders
import botocore.session
import pytest
from botocore.validate import ParamValidator

from miniwdl_fargate import aws


@pytest.fixture
def fresh(monkeypatch):
    """No clients and no preloaded loader before the test, none left after it; botocore's own
    loaders (not the one the test suite shares, ``tests/conftest.py``)."""
    monkeypatch.setattr(botocore.session, "create_loader", botocore.loaders.create_loader)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
    monkeypatch.setattr(aws, "_loader", None)
    aws.reset()
    yield
    aws.reset()


def loader_of(client):
    return client._loader


def test_without_preloading_each_session_has_a_loader_of_its_own(fresh):
    first = loader_of(aws.client("ecs"))
    aws.reset()
    assert loader_of(aws.client("ecs")) is not first


def test_after_preloading_every_session_shares_the_preloaded_models(fresh):
    aws.preload_models(("ecs", "s3"))
    preloaded = aws._loader[1]
    ecs = aws.client("ecs")
    assert loader_of(ecs) is preloaded
    assert ecs.meta.service_model.service_name == "ecs"
    aws.reset()
    assert loader_of(aws.client("s3")) is preloaded
    aws.reset()
    aws.client("s3")
    # boto3 adds its data folder to the search path of each session's loader: once, here
    assert len(preloaded.search_paths) == len(set(preloaded.search_paths))


def test_a_client_of_the_shared_loader_validates_requests_as_any_other(fresh):
    aws.preload_models(("ecs",))
    model = aws.client("ecs").meta.service_model.operation_model("DescribeTasks").input_shape
    assert not ParamValidator().validate({"cluster": "c", "tasks": ["arn"]}, model).has_errors()
    assert ParamValidator().validate({"cluster": "c"}, model).has_errors()  # tasks is required


def test_a_process_whose_data_path_changed_does_not_use_the_preloaded_loader(fresh, monkeypatch, tmp_path):
    aws.preload_models(("ecs",))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    aws.reset()
    assert loader_of(aws.client("ecs")) is not aws._loader[1]
