import pytest
from moto import mock_aws

from miniwdl_fargate import aws
from miniwdl_fargate.local.moto import fixes


@pytest.fixture
def moto_aws(monkeypatch):
    """In-process moto (no server): every client from miniwdl_fargate.aws talks to it."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    aws.reset()
    fixes.ecs_resource_requirements()
    fixes.response_transformer_race()
    with mock_aws():
        yield
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
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}", "MOTO_PORT": str(port), "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    aws.reset()
    requests.post(f"{env['AWS_ENDPOINT_URL']}/moto-api/reset", timeout=10).raise_for_status()
    yield env
    server.stop()
    aws.reset()


@pytest.fixture
def sim():
    """A simulated ECS endpoint (bench/ecs_sim.py) with fast tasks and no faults unless a test adds them."""
    from bench.ecs_sim import Faults, SimulatedECS

    sim = SimulatedECS(start_latency=(0.02, 0.05), run_time=(0.1, 0.15), faults=Faults())
    sim.endpoint = sim.start()
    yield sim
    sim.stop()


@pytest.fixture(autouse=True)
def registrations_paced_per_test():
    """Each test's backend paces its RegisterTaskDefinition calls from nothing, as each driver
    process does (REGISTER_INTERVAL is per process): not from an earlier test's last registration."""
    from miniwdl_fargate.backend.fargate import FargateTaskContainer

    FargateTaskContainer._last_registration = 0.0
    yield
