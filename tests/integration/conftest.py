import pytest
from moto import mock_aws

from miniwdl_fargate import aws
from miniwdl_fargate.local.moto_patches import fix_ecs_resource_requirements, fix_response_transformer_race


@pytest.fixture
def moto_aws(monkeypatch):
    """In-process moto (no server): every client from miniwdl_fargate.aws talks to it."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    aws.reset()
    fix_ecs_resource_requirements()
    fix_response_transformer_race()
    with mock_aws():
        yield
    aws.reset()


@pytest.fixture
def sim():
    """A simulated ECS endpoint (bench/ecs_sim.py) with fast tasks and no faults unless a test adds them."""
    from bench.ecs_sim import Faults, SimulatedECS

    sim = SimulatedECS(start_latency=(0.05, 0.1), run_time=(0.3, 0.4), faults=Faults())
    sim.endpoint = sim.start()
    yield sim
    sim.stop()
