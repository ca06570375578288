"""The integration tier's in-process moto tests share their clients (conftest.KeptClients) only as
they were made: a client a test changed, or one made for another AWS environment, is not kept."""

from miniwdl_fargate import aws
from tests.integration.conftest import KeptClients, aws_environment


def test_a_test_gets_the_clients_the_last_one_left_unless_it_changed_their_handlers(moto_aws, monkeypatch):
    kept, environment = KeptClients(), aws_environment()
    kept.take(monkeypatch)
    s3, ecs = aws.client("s3"), aws.client("ecs")
    ecs.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **_: None)
    kept.keep(environment)

    kept.take(monkeypatch)
    assert aws.client("s3") is s3  # as it was made: kept
    assert aws.client("ecs") is not ecs  # a handler was added after it was made: a new one
    aws.client("s3").list_buckets()  # (a call changes no handler)
    kept.keep(environment)

    kept.take(monkeypatch)
    assert aws.client("s3") is s3
    kept.keep(environment)

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # another environment: nothing kept for it
    kept.take(monkeypatch)
    assert aws.client("s3") is not s3
