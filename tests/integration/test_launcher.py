"""RunTask pacing and retries, over HTTP against the simulated ECS endpoint (bench/ecs_sim.py)."""

import copy

import boto3
import botocore.config
import pytest

from miniwdl_fargate import aws
from miniwdl_fargate.backend.launcher import LaunchFailed, Launcher

SUBNETS = ["subnet-a", "subnet-b"]




@pytest.fixture(autouse=True)
def short_throttling_backoff(monkeypatch):
    """botocore's standard retry mode waits up to 1 s x 2^n after a throttle; these tests count
    the retries and the launcher's pacing, not botocore's waits: a hundredth of that."""
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setitem(ExponentialBackoff._DEFAULT_BACKOFF_CONFIG, "throttling_base_scale", 0.01)


def ecs_client(sim, max_attempts=8):
    config = aws.RETRY_CONFIG.merge(botocore.config.Config(retries={"mode": "standard", "max_attempts": max_attempts}))
    return boto3.client(
        "ecs", endpoint_url=sim.endpoint, region_name="us-east-1",
        aws_access_key_id="t", aws_secret_access_key="t", config=config,
    )


def request(ecs, spot=False):
    arn = ecs.register_task_definition(family="t", containerDefinitions=[{"name": "task", "image": "ubuntu"}])[
        "taskDefinition"]["taskDefinitionArn"]
    req = {
        "cluster": "c",
        "taskDefinition": arn,
        "count": 1,
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": list(SUBNETS), "securityGroups": ["sg-1"]}},
    }
    if spot:
        req["capacityProviderStrategy"] = [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
    else:
        req["launchType"] = "FARGATE"
    return req


def test_throttled_attempts_are_retried_and_every_attempt_is_paced(sim):
    ecs = ecs_client(sim)
    launcher = Launcher(ecs, rate=50, burst=1, backoff_base=0.01)
    sim.faults.script.extend(["throttle", "throttle", "ok"])
    task = launcher.launch(request(ecs))
    assert task["taskArn"] in sim.tasks
    assert sim.count("RunTask", "throttled") == 2
    assert launcher.stats["throttled"] == 2  # seen through botocore's retries
    assert launcher.stats["attempts"] == 3  # each attempt, retries included, took a token
    launcher.close()


def test_when_botocore_gives_up_on_throttling_the_launcher_keeps_going(sim):
    ecs = ecs_client(sim, max_attempts=2)  # botocore retries once
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01)
    sim.faults.script.extend(["throttle"] * 5 + ["ok"])
    task = launcher.launch(request(ecs))
    assert task["lastStatus"] == "PROVISIONING"
    assert sim.count("RunTask", "throttled") == 5
    assert sim.count("RunTask", "ok") == 1
    launcher.close()


def test_capacity_failures_retry_one_subnet_at_a_time(sim):
    ecs = ecs_client(sim)
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01)
    sim.faults.script.extend(["capacity", "capacity", "capacity", "ok"])
    launcher.launch(request(ecs))
    subnets = [r["networkConfiguration"]["awsvpcConfiguration"]["subnets"] for r in sim.run_task_requests]
    assert subnets == [SUBNETS, ["subnet-a"], ["subnet-b"], ["subnet-a"]]
    assert launcher.stats["capacity_failures"] == 3
    launcher.close()


def test_spot_without_capacity_anywhere_falls_back_to_on_demand(sim):
    ecs = ecs_client(sim)
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01)
    sim.faults.script.extend(["capacity"] * 3 + ["ok"])
    req = request(ecs, spot=True)
    task = launcher.launch(req)
    sent = sim.run_task_requests
    assert [r.get("capacityProviderStrategy", [{}])[0].get("capacityProvider") for r in sent[:3]] == ["FARGATE_SPOT"] * 3
    assert sent[3]["launchType"] == "FARGATE" and "capacityProviderStrategy" not in sent[3]
    assert task["capacityProviderName"] == "FARGATE"
    assert req["launchType"] == "FARGATE"  # the caller sees what ran
    assert launcher.stats["spot_fallbacks"] == 1
    launcher.close()


def test_spot_held_back_by_its_own_vcpu_quota_runs_on_demand_and_on_demand_waits_its_turn(sim):
    """Fargate Spot's vCPU quota is its own: a Spot task kept back by it runs On-Demand after a few
    waits; an On-Demand one waits for vCPUs to be freed (other tasks end), however long."""
    ecs = ecs_client(sim)
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01)
    sim.faults.script.extend(["quota"] * 3 + ["ok"])
    req = request(ecs, spot=True)
    task = launcher.launch(req)
    sent = sim.run_task_requests
    assert [r.get("capacityProviderStrategy", [{}])[0].get("capacityProvider") for r in sent[:3]] == ["FARGATE_SPOT"] * 3
    assert sent[3]["launchType"] == "FARGATE" and task["capacityProviderName"] == "FARGATE"
    assert launcher.stats["spot_fallbacks"] == 1 and launcher.stats["quota_waits"] == 3
    sim.faults.script.extend(["quota"] * 5 + ["ok"])
    # (the same task definition: RegisterTaskDefinition allows 1 call/s, and a second within the
    # second was throttled past botocore's retries on a loaded machine)
    on_demand = {k: v for k, v in copy.deepcopy(req).items() if k != "capacityProviderStrategy"}
    on_demand["launchType"] = "FARGATE"
    launcher.launch(on_demand)
    assert on_demand["launchType"] == "FARGATE" and launcher.stats["quota_waits"] == 8 and launcher.stats["spot_fallbacks"] == 1
    launcher.close()


class Quotas:
    """The account's whole vCPU quotas as Service Quotas would answer them, and how often asked."""

    def __init__(self, **values):
        self.values, self.asked = values, []

    def __call__(self, placement):
        self.asked.append(placement)
        return self.values.get(placement)


def sized(req, vcpus):
    req = copy.deepcopy(req)  # (one task definition: RegisterTaskDefinition allows 1 call/s)
    req["overrides"] = {"cpu": str(int(vcpus * 1024)), "memory": str(int(vcpus * 2048))}
    return req


def test_a_task_larger_than_the_whole_vcpu_quota_fails_at_once_saying_what_to_ask_for(sim):
    """A task needing more vCPUs than the account's whole quota could wait for ever (until the
    run's MaxRunHours): at its first quota answer the launcher asks Service Quotas, once, and
    fails it naming the quota and the increase to request. One that fits waits its turn."""
    ecs = ecs_client(sim)
    slept = []
    quotas = Quotas(FARGATE=6.0)
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01, sleep=slept.append, vcpu_quota=quotas)
    sim.faults.script.extend(["quota"] * 3)
    base = request(ecs)
    with pytest.raises(LaunchFailed) as failed:
        launcher.launch(sized(base, 8))
    message = str(failed.value)
    assert "needs 8 vCPUs" in message and "Fargate On-Demand vCPU resource count" in message and "L-3032A538: 6)" in message
    assert "--quota-code L-3032A538 --desired-value 12" in message and not failed.value.capacity
    assert sim.count("RunTask", "quota") == 1 and slept == [] and launcher.stats["quota_waits"] == 0
    sim.faults.script.clear()
    sim.faults.script.extend(["quota"] * 2 + ["ok"])
    launcher.launch(sized(base, 4))  # (fits the quota: the run's other tasks will free it)
    assert launcher.stats["quota_waits"] == 2 and quotas.asked == ["FARGATE"]  # asked once
    launcher.close()


def test_a_spot_task_larger_than_spots_whole_quota_goes_on_demand_at_once(sim):
    ecs = ecs_client(sim)
    quotas = Quotas(FARGATE_SPOT=4.0, FARGATE=16.0)
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01, vcpu_quota=quotas)
    sim.faults.script.extend(["quota", "ok"])
    req = sized(request(ecs, spot=True), 8)
    task = launcher.launch(req)
    assert req["launchType"] == "FARGATE" and task["capacityProviderName"] == "FARGATE"
    assert launcher.stats["spot_fallbacks"] == 1 and launcher.stats["quota_waits"] == 0
    assert quotas.asked == ["FARGATE_SPOT"]
    launcher.close()


def test_without_an_answer_from_service_quotas_a_task_waits_as_before(sim):
    ecs = ecs_client(sim)
    quotas = Quotas()  # (no permission, no endpoint: unknown)
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01, vcpu_quota=quotas)
    sim.faults.script.extend(["quota"] * 3 + ["ok"])
    launcher.launch(sized(request(ecs), 64))
    assert launcher.stats["quota_waits"] == 3 and quotas.asked == ["FARGATE"]
    launcher.close()


def test_the_quota_is_read_from_service_quotas_with_a_request_its_model_takes():
    """account_vcpu_quota's GetServiceQuota (checked against botocore's model by the Stubber),
    and None for what it cannot answer: no applied value (AWS's default does not reflect the
    account's increases: a task is not failed as never fitting by it), a refusal, throttling past
    the retries, or a placement with no Fargate quota."""
    from botocore.stub import Stubber

    from miniwdl_fargate.backend.launcher import account_vcpu_quota

    client = boto3.client("service-quotas", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    with Stubber(client) as stub:
        stub.add_response("get_service_quota", {"Quota": {"QuotaCode": "L-36FBB829", "Value": 24.0}},
                          {"ServiceCode": "fargate", "QuotaCode": "L-36FBB829"})
        assert account_vcpu_quota(client, "FARGATE_SPOT") == 24.0
        asked = {"ServiceCode": "fargate", "QuotaCode": "L-3032A538"}
        stub.add_client_error("get_service_quota", "NoSuchResourceException", "no applied value", 404, expected_params=asked)
        assert account_vcpu_quota(client, "FARGATE") is None
        stub.add_client_error("get_service_quota", "AccessDeniedException", "not authorized")
        assert account_vcpu_quota(client, "FARGATE") is None
        stub.add_client_error("get_service_quota", "TooManyRequestsException", "slow down", 400)
        assert account_vcpu_quota(client, "FARGATE") is None
        assert account_vcpu_quota(client, "my-managed-instances") is None  # (EC2's quotas: not asked)
        stub.assert_no_pending_responses()


def test_capacity_that_never_comes_fails_as_capacity(sim):
    ecs = ecs_client(sim)
    launcher = Launcher(ecs, rate=100, burst=10, capacity_retries=2, backoff_base=0.01)
    sim.faults.script.extend(["capacity"] * 5)
    with pytest.raises(LaunchFailed, match="no Fargate capacity after 3 attempts") as info:
        launcher.launch(request(ecs))
    assert info.value.capacity
    launcher.close()


def test_a_bad_request_fails_at_once_saying_why(sim):
    ecs = ecs_client(sim)
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01)
    req = request(ecs)
    req["taskDefinition"] = "arn:aws:ecs:us-east-1:123456789012:task-definition/nope:1"
    with pytest.raises(LaunchFailed, match="TaskDefinition not found") as info:
        launcher.launch(req)
    assert not info.value.capacity
    assert sim.count("RunTask") == 0 or len(sim.run_task_requests) == 1
    launcher.close()


def test_an_answer_lost_after_botocore_gave_up_is_asked_again_with_the_same_token(sim):
    ecs = ecs_client(sim, max_attempts=0)  # botocore does not retry (max_attempts counts retries): the launcher must
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01)
    sim.faults.lost_answers = 1  # ECS started the task; the connection closed
    req = request(ecs)
    req["clientToken"] = "attempt-token"
    task = launcher.launch(req)
    assert len(sim.tasks) == 1 and task["taskArn"] in sim.tasks  # no second task
    assert [r["clientToken"] for r in sim.run_task_requests] == ["attempt-token", "attempt-token"]
    assert launcher.stats["unanswered"] == 1
    launcher.close()


def test_each_new_round_after_a_refusal_gets_its_own_token(sim):
    ecs = ecs_client(sim)
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01)
    sim.faults.script.extend(["capacity", "capacity", "ok"])
    req = request(ecs)
    req["clientToken"] = "t" * 64
    launcher.launch(req)
    tokens = [r["clientToken"] for r in sim.run_task_requests]
    # another subnet is another request: a reused token would be a ConflictException
    assert tokens == ["t" * 64, "t" * 56 + ".1", "t" * 56 + ".2"]
    assert all(len(t) <= 64 for t in tokens)
    launcher.close()


def test_without_an_answer_for_good_the_launch_fails_naming_the_token(sim):
    ecs = ecs_client(sim, max_attempts=0)
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01, unanswered_retries=1)
    sim.faults.lost_answers = 2
    req = request(ecs)
    req["clientToken"] = "lost-token"
    with pytest.raises(LaunchFailed, match="ECS RunTask did not answer after 2 tries \\(clientToken lost-token;"):
        launcher.launch(req)
    assert len(sim.tasks) == 1  # the second try found the task the first one started
    launcher.close()


def test_a_spot_provider_given_a_fallback_goes_on_demand_there_once_no_subnet_has_capacity(sim):
    """The managed-instances Spot provider falls back to its On-Demand provider exactly as
    FARGATE_SPOT falls back to FARGATE."""
    ecs = ecs_client(sim)
    on_demand = {"capacityProviderStrategy": [{"capacityProvider": "wdl-managed", "weight": 1}]}
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01, spot_fallbacks={"wdl-managed-spot": on_demand})
    sim.faults.script.extend(["capacity"] * 3)
    req = request(ecs)
    req.pop("launchType")
    req["capacityProviderStrategy"] = [{"capacityProvider": "wdl-managed-spot", "weight": 1}]
    launcher.launch(req)
    sent = [r["capacityProviderStrategy"][0]["capacityProvider"] for r in sim.run_task_requests]
    # each subnet tried on Spot, then On-Demand; the caller's request says what ran
    assert sent == ["wdl-managed-spot"] * 3 + ["wdl-managed"]
    assert req["capacityProviderStrategy"] == on_demand["capacityProviderStrategy"] and "launchType" not in req
    assert launcher.stats["spot_fallbacks"] == 1
    launcher.close()


def test_a_quota_service_quotas_did_not_answer_is_asked_for_again_later(sim, monkeypatch):
    """A throttled or timed-out question (None) was kept for the driver's life: the check was off
    for every later task. It is asked again after QUOTA_ASKED_AGAIN_SECONDS; an answer is kept."""
    from miniwdl_fargate.backend import launcher as launcher_module

    answers = iter([None, 6.0])
    asked = []

    def quota(placement):
        asked.append(placement)
        return next(answers)

    launcher = Launcher(ecs_client(sim), vcpu_quota=quota)
    assert launcher._whole_quota("FARGATE") is None and launcher._whole_quota("FARGATE") is None  # (not yet)
    monkeypatch.setattr(launcher_module, "QUOTA_ASKED_AGAIN_SECONDS", 0)
    assert launcher._whole_quota("FARGATE") == 6.0 and launcher._whole_quota("FARGATE") == 6.0
    assert asked == ["FARGATE", "FARGATE"]
    launcher.close()


def test_the_drivers_own_vcpus_count_against_the_on_demand_quota(sim):
    """A pipeline driver runs On-Demand on the same quota its tasks wait for: a task needing
    between the quota less the driver's vCPUs and the quota could never start either."""
    ecs = ecs_client(sim)
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01, sleep=lambda s: None,
                        vcpu_quota=Quotas(FARGATE=6.0), own_vcpus=lambda: 1.0)
    sim.faults.script.extend(["quota"])
    with pytest.raises(LaunchFailed, match=r"L-3032A538: 6, of which this run's driver holds 1\): it could never start.*--desired-value 12") as failed:
        launcher.launch(sized(request(ecs), 6))
    # (cpu: 2 with memory: "32 GB" is 8 vCPUs on Fargate: the memory is named as a cause too)
    assert "Ask for fewer vCPUs or less memory (runtime cpu, memory" in str(failed.value)
    launcher.close()


def test_the_drivers_vcpus_unanswered_are_asked_for_again(sim, monkeypatch):
    from miniwdl_fargate.backend import launcher as launcher_module

    answers = iter([None, 1.0])
    ecs = ecs_client(sim)
    launcher = Launcher(ecs, rate=100, burst=10, backoff_base=0.01, sleep=lambda s: None,
                        vcpu_quota=Quotas(FARGATE=6.0), own_vcpus=lambda: next(answers))
    base = request(ecs)
    sim.faults.script.extend(["quota", "ok"])
    launcher.launch(sized(base, 6))  # (the driver's share unknown: it waits, as before)
    monkeypatch.setattr(launcher_module, "QUOTA_ASKED_AGAIN_SECONDS", 0)
    sim.faults.script.extend(["quota"])
    with pytest.raises(LaunchFailed, match="of which this run's driver holds 1"):
        launcher.launch(sized(base, 6))
    launcher.close()
