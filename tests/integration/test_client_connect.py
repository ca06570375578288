"""How the command line finds a deployed stack: --stack, MINIWDL_FARGATE_STACK, samconfig.toml."""

import json

import pytest

from miniwdl_fargate import aws, client

TEMPLATE = {
    "Resources": {"RunsBucket": {"Type": "AWS::S3::Bucket"}},
    "Outputs": {
        "BucketName": {"Value": {"Ref": "RunsBucket"}},
        "StateMachineArn": {"Value": "arn:aws:states:us-east-1:123456789012:stateMachine:run"},
        "ClusterName": {"Value": "wdl"},
    },
}


@pytest.fixture
def deployed(moto_aws):
    aws.client("cloudformation").create_stack(StackName="my-wdl", TemplateBody=json.dumps(TEMPLATE))


def test_samconfig_names_the_stack_and_region(tmp_path, monkeypatch):
    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "my-wdl"\n'
        '[default.deploy.parameters]\nregion = "eu-west-1"\n'
    )
    (tmp_path / "sub").mkdir()
    assert client.samconfig_defaults(tmp_path / "sub") == {"stack_name": "my-wdl", "region": "eu-west-1"}


def test_the_answers_sam_deploy_guided_saved_win_over_the_global_section(tmp_path):
    """`sam deploy --guided` saves the stack name and region the user chose in the deploy
    section, which sam reads before the global one: the command line read the global one first,
    and looked for a stack the user had renamed."""
    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "miniwdl-fargate"\nregion = "us-east-1"\n'
        '[default.deploy.parameters]\nstack_name = "wdl-prod"\nregion = "eu-west-1"\n'
    )
    assert client.samconfig_defaults(tmp_path) == {"stack_name": "wdl-prod", "region": "eu-west-1"}


def test_the_repositorys_samconfig_names_the_stack_where_sam_deploy_guided_saves_it():
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[2] / "samconfig.toml").read_text())["default"]
    assert "global" not in config or "stack_name" not in config["global"].get("parameters", {})
    assert config["deploy"]["parameters"]["stack_name"] == "miniwdl-fargate"


def test_connect_reads_the_stack_outputs(deployed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no samconfig.toml here
    monkeypatch.delenv("MINIWDL_FARGATE_STACK", raising=False)
    monkeypatch.delenv("MINIWDL_FARGATE_LOCAL", raising=False)
    with pytest.raises(client.ClientError, match="which stack"):
        client.connect()
    found = client.connect(stack="my-wdl")
    assert found.stack_name == "my-wdl" and not found.local
    assert found.bucket.startswith("my-wdl-runsbucket-")
    assert found.cluster == "wdl"
    monkeypatch.setenv("MINIWDL_FARGATE_STACK", "my-wdl")
    assert client.connect().outputs == found.outputs
    with pytest.raises(client.ClientError, match="stack nope: "):
        client.connect(stack="nope")


def test_the_region_given_wins_over_the_aws_configurations(moto_aws, tmp_path, monkeypatch):
    """--region (else samconfig.toml's) is where the stack is looked for, even with
    AWS_DEFAULT_REGION exported (it was looked for there instead)."""
    monkeypatch.chdir(tmp_path)
    for key in ("MINIWDL_FARGATE_STACK", "MINIWDL_FARGATE_LOCAL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    aws.reset()
    aws.client("cloudformation", region="us-west-2").create_stack(StackName="west", TemplateBody=json.dumps(TEMPLATE))
    found = client.connect(stack="west", region="us-west-2")
    assert found.region == "us-west-2" and found.cluster == "wdl"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "west"\n[default.deploy.parameters]\nregion = "us-west-2"\n'
    )
    aws.reset()
    assert client.connect().region == "us-west-2"
