"""The one environment that points AWS clients at local mode's moto server (aws.local_environment),
as the CLI's connect, the local stack and the local runners all set it."""

import boto3

from miniwdl_fargate import aws


def test_it_names_the_endpoint_fake_credentials_and_the_region():
    env = aws.local_environment("http://127.0.0.1:5000", "eu-west-1")
    assert env == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",
    }


def test_a_client_made_in_it_talks_to_that_endpoint_with_those_keys(monkeypatch):
    for key, value in aws.local_environment("http://127.0.0.1:5000", "eu-west-1").items():
        monkeypatch.setenv(key, value)
    for key in aws.SHARED_CONFIG_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    session = boto3.session.Session()
    client = session.client("s3")
    assert client.meta.endpoint_url == "http://127.0.0.1:5000"
    assert client.meta.region_name == "eu-west-1"
    assert session.get_credentials().access_key == "testing"


def test_the_transfer_concurrency_is_read_when_used_not_at_import(monkeypatch):
    """A driver forked from ``driver_zygote`` imported s3io before it had its own environment."""
    from miniwdl_fargate import s3io

    monkeypatch.delenv("MINIWDL_CFG", raising=False)
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__TRANSFER_CONCURRENCY", "7")
    assert s3io.transfer_concurrency() == 7
    monkeypatch.delenv("MINIWDL__AWS_FARGATE__TRANSFER_CONCURRENCY")
    assert s3io.transfer_concurrency() == 32
