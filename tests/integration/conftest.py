import os

import pytest
from moto import mock_aws

from miniwdl_fargate import aws, status
from miniwdl_fargate.local.moto import fixes
from tests.pollers import pollers_idle


def aws_environment() -> tuple:
    """The AWS_* variables, which decide what a client is made for (endpoint, region, credentials)."""
    return tuple(sorted((key, value) for key, value in os.environ.items() if key.startswith("AWS_")))


def handlers(client) -> tuple[int, ...]:
    """Every event handler registered on ``client`` (botocore keeps them in a prefix trie): a test
    that registers one, or removes one, changes this."""
    events = client.meta.events
    nodes, found = [getattr(events, "_emitter", events)._handlers._root], []
    while nodes:
        node = nodes.pop()
        found.extend(id(handler) for handler in node.get("values") or ())
        nodes.extend(node["children"].values())
    return tuple(found)


class MadeClients(dict):
    """``aws._clients`` while an in-process moto test runs: it notes each client's handlers as
    the client is made."""

    def __init__(self, kept: dict, made_with: dict) -> None:
        super().__init__(kept)
        self.made_with = dict(made_with)

    def __setitem__(self, key, client) -> None:
        self.made_with[key] = handlers(client)
        super().__setitem__(key, client)


class KeptClients:
    """The clients the last in-process moto test left, for the next one. Making a botocore
    session and its clients again for every test was a fifth of the integration tier's CPU; moto
    intercepts any client made after it was imported, and a client holds no moto state. A test's
    clients are kept only as they were made: for the same AWS environment, with the handlers they
    were made with (a test that registered or removed one gets new clients after it)."""

    def __init__(self) -> None:
        self.environment: tuple | None = None
        self.session = None
        self.clients = MadeClients({}, {})

    def take(self, monkeypatch) -> None:
        """Before a test: its aws.client()s are the kept ones, else new ones."""
        aws.reset()
        kept = self.environment == aws_environment()
        monkeypatch.setattr(aws, "_clients", MadeClients(self.clients, self.clients.made_with) if kept else MadeClients({}, {}))
        if kept:
            aws._session = self.session

    def keep(self, environment: tuple) -> None:
        """After a test that began in ``environment``: keep its clients that are as they were made."""
        self.environment, self.session, self.clients = None, None, MadeClients({}, {})
        made = aws._clients
        if aws_environment() != environment or not isinstance(made, MadeClients):
            return
        try:
            same = {key: found for key, found in made.items() if handlers(found) == made.made_with.get(key)}
        except AttributeError:  # (botocore keeps its handlers otherwise now: new clients for every test)
            return
        self.clients = MadeClients(same, {key: made.made_with[key] for key in same})
        self.environment, self.session = environment, aws._session


KEPT = KeptClients()


@pytest.fixture
def moto_aws(monkeypatch):
    """In-process moto (no server): every client from miniwdl_fargate.aws talks to it."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    environment = aws_environment()
    KEPT.take(monkeypatch)
    fixes.ecs_resource_requirements()
    fixes.response_transformer_race()
    fixes.replaced_object_readable()
    fixes.conditional_write_atomic()
    fixes.backend_urls_kept()
    fixes.serializer_member_names_kept()
    # (what this process remembers of the status.json it wrote is of the last test's moto, not this one's)
    monkeypatch.setattr(status, "WRITTEN", status._Written())
    with mock_aws():
        yield
        pollers_idle()
    KEPT.keep(environment)
    aws.reset()


@pytest.fixture
def bucket(moto_aws):
    """The runs bucket, empty, in in-process moto (a module with more to put there has its own)."""
    aws.client("s3").create_bucket(Bucket="runs")
    return "runs"


@pytest.fixture
def moto_server(monkeypatch):
    """A moto server in this process (a driver subprocess or Step Functions' service
    integrations reach it by URL), emptied first: moto's state is per process. Yields the
    environment that points boto3 at it."""
    import requests

    from miniwdl_fargate.local.moto import server as local_moto_server

    fixes.replaced_object_readable()
    fixes.conditional_write_atomic()
    monkeypatch.setattr(status, "WRITTEN", status._Written())
    server = local_moto_server.start()
    host, port = server.get_host_and_port()
    env = {**aws.local_environment(f"http://{host}:{port}", "us-east-1"), "MOTO_PORT": str(port)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    aws.reset()
    requests.post(f"{env['AWS_ENDPOINT_URL']}/moto-api/reset", timeout=10).raise_for_status()
    yield env
    pollers_idle()
    local_moto_server.stop(server)
    aws.reset()


@pytest.fixture
def sim():
    """A simulated ECS endpoint (bench/ecs_sim.py) with fast tasks and no faults unless a test adds them."""
    from bench.ecs_sim import Faults, SimulatedECS

    sim = SimulatedECS(start_latency=(0.02, 0.05), run_time=(0.1, 0.15), faults=Faults())
    sim.endpoint = sim.start()
    yield sim
    pollers_idle()
    sim.stop()


@pytest.fixture(autouse=True)
def registrations_paced_per_test():
    """Each test's backend paces its RegisterTaskDefinition calls from nothing, as each driver
    process does (its token bucket is per process): not from what an earlier test's registrations left."""
    from miniwdl_fargate.backend.fargate import REGISTER_BURST, FargateTaskContainer

    FargateTaskContainer._registration_tokens = (REGISTER_BURST, 0.0)
    yield
