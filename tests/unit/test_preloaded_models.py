"""Local mode's fork servers parse botocore's models once, before they fork
(forkserver.preload_aws: aws.share_data_loaders, aws.preload_models): a client made afterwards,
in a new session as each Lambda environment and driver makes, reads no JSON."""

import re
from pathlib import Path

import boto3
import botocore.loaders
import pytest

from miniwdl_fargate import aws
from miniwdl_fargate.local import forkserver

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def files_read(monkeypatch):
    """The botocore data files read from now on."""
    read = []
    original = botocore.loaders.JSONFileLoader.load_file

    def load_file(self, file_path):
        read.append(file_path)
        return original(self, file_path)

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", load_file)
    return read


def test_a_client_of_a_preloaded_service_in_a_new_session_reads_no_file(files_read):
    aws.share_data_loaders()  # (as the tests' process already does, and each fork server does)
    aws.preload_models(["sqs"])
    assert any("sqs" in path for path in files_read)  # read once, here
    files_read.clear()
    client = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="eu-west-1").client("sqs")
    assert client.meta.service_model.service_name == "sqs"
    assert files_read == []


def test_a_new_session_does_not_grow_the_shared_loaders_search_paths():
    aws.share_data_loaders()
    boto3.session.Session(region_name="us-east-1").client("s3")
    paths = boto3.session.Session(region_name="us-east-1")._loader.search_paths
    assert len(paths) == len(set(paths))


def test_the_fork_servers_preload_every_service_the_product_calls():
    called = set()
    for source in [*(REPO / "plugin" / "miniwdl_fargate").rglob("*.py"), *(REPO / "functions").rglob("*.py")]:
        called |= set(re.findall(r'aws\.client\("([a-z0-9-]+)"', source.read_text()))
    assert called, "no aws.client(...) call found"
    assert called <= set(forkserver.AWS_SERVICES), called - set(forkserver.AWS_SERVICES)
