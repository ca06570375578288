"""local/moto/direct.py: clients of this process's moto that skip HTTP. They see what the
server's clients see (one moto), go through botocore (a request the model refuses is refused
here), and never open a connection, to moto or to AWS."""

import contextlib
import socket
import time

import botocore.exceptions
import pytest
from botocore.awsrequest import AWSPreparedRequest

from miniwdl_fargate import aws
from miniwdl_fargate.local.moto import direct


@contextlib.contextmanager
def refusing_connections():
    """Any connection this process opens meanwhile fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection was opened: {args}")

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(socket, "create_connection", refuse)
        patched.setattr(socket.socket, "connect", refuse)
        yield


@pytest.fixture
def no_connections():
    with refusing_connections():
        yield


def test_a_direct_client_and_the_servers_clients_share_one_moto(moto_server):
    aws.client("logs").create_log_group(logGroupName="by-http")
    logs = direct.client("logs", "us-east-1")
    with refusing_connections():
        logs.create_log_stream(logGroupName="by-http", logStreamName="s")
        logs.put_log_events(logGroupName="by-http", logStreamName="s", logEvents=[{"timestamp": int(time.time() * 1000), "message": "said"}])
    events = aws.client("logs").get_log_events(logGroupName="by-http", logStreamName="s")["events"]
    assert [e["message"] for e in events] == ["said"]


def test_a_direct_client_sends_nothing_and_says_its_user_agent(moto_server, no_connections):
    seen = []
    ecs = direct.client("ecs", "us-east-1", "the-agent-said")
    ecs.meta.events.register("before-send", lambda request, **kw: seen.append(request.headers["User-Agent"]))
    assert ecs.list_clusters()["clusterArns"] == []
    assert seen and b"the-agent-said" in seen[0]
    assert direct.client("ecs", "us-east-1", "the-agent-said") is ecs  # (made once)


def test_a_request_the_model_refuses_is_refused_before_moto(moto_server, no_connections):
    with pytest.raises(botocore.exceptions.ParamValidationError):
        direct.client("logs", "us-east-1").put_log_events(logGroupName="g", logStreamName="s", logEvents=[{"message": "no time"}])


def test_a_request_no_handler_of_moto_takes_is_never_sent(no_connections):
    handler = direct._InProcess()
    request = AWSPreparedRequest("GET", "https://nothing.example.com/", {}, b"", False)
    with pytest.raises(RuntimeError, match="no handler of the embedded moto takes GET https://nothing.example.com/"):
        handler("before-send.nothing", request)


def test_the_logs_writer_writes_what_the_servers_clients_read_and_refuses_what_the_model_refuses(moto_server):
    logs = direct.LogsWriter("us-east-1")
    with refusing_connections():
        logs.create_log_group(logGroupName="by-writer")
        with pytest.raises(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName="by-writer")
        with pytest.raises(logs.exceptions.ResourceNotFoundException):
            logs.create_log_stream(logGroupName="no-such-group", logStreamName="s")
        logs.create_log_stream(logGroupName="by-writer", logStreamName="s")
        now = int(time.time() * 1000)
        logs.put_log_events(logGroupName="by-writer", logStreamName="s", logEvents=[{"timestamp": now, "message": "said"}])
        with pytest.raises(botocore.exceptions.ParamValidationError):
            logs.put_log_events(logGroupName="by-writer", logStreamName="s", logEvents=[{"timestamp": now, "message": ""}])
        with pytest.raises(botocore.exceptions.ParamValidationError):
            logs.create_log_stream(logGroupName="by-writer")
    events = aws.client("logs").get_log_events(logGroupName="by-writer", logStreamName="s")["events"]
    assert [e["message"] for e in events] == ["said"]


def test_the_logs_writer_writes_into_the_backend_moto_has_now(moto_server):
    """A reset of moto (its server's /moto-api/reset) replaces the Logs backend: a writer made
    before it writes into the new one, where the server's clients look."""
    from moto.logs.models import logs_backends

    logs = direct.LogsWriter("us-east-1")
    before = logs.backend
    logs_backends.reset()
    logs.create_log_group(logGroupName="after-reset")
    assert logs.backend is not before
    assert [g["logGroupName"] for g in aws.client("logs").describe_log_groups(logGroupNamePrefix="after-reset")["logGroups"]] == ["after-reset"]
