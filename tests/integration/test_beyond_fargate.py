"""Tasks beyond Fargate with the aws_fargate backend: on ECS Managed Instances (big ones on the
CPU-only providers, GPU ones on the GPU providers, Spot first for preemptible tasks), with an EBS scratch volume, and through the image cache. Every
request is checked against botocore's ECS model; tasks run against moto (and, end to end through
`miniwdl run`, the simulated ECS endpoint)."""

import json
import logging
import math
import os
import re

import pytest
import WDL
from WDL.runtime import config as wdl_config

from miniwdl_fargate import attempts, aws
from miniwdl_fargate.backend.fargate import FargateJob, FargateTaskContainer
from miniwdl_fargate.local.moto import fixes
from backend_support import runtime, validate
from tests.local_ecs import every_task_arn
from sim_support import finish, start_miniwdl
from tests.waiting import wait_for

LOG = logging.getLogger("test")
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
ROLE = "arn:aws:iam::123456789012:role/ecs-volumes"


BEYOND = {
    "MANAGED_INSTANCES_CAPACITY_PROVIDER": "wdl-managed",
    "MANAGED_INSTANCES_SPOT_CAPACITY_PROVIDER": "wdl-managed-spot",
    "MANAGED_INSTANCES_GPU_CAPACITY_PROVIDER": "wdl-gpu",
    "MANAGED_INSTANCES_GPU_SPOT_CAPACITY_PROVIDER": "wdl-gpu-spot",
    "MANAGED_INSTANCES_MAX_GPUS": "4",
    "EBS_VOLUME_ROLE": ROLE,
    "IMAGE_CACHE": f"docker.io={ECR}/docker-hub,quay.io={ECR}/quay",
}


@pytest.fixture
def configure(moto_aws, tmp_path, monkeypatch):
    """``configure(**settings)``: the backend initialised against moto with the beyond-Fargate
    settings (``BEYOND``, changed by ``settings``); returns ``new(name, **runtime)``."""
    fixes.ecs_managed_instances()
    fixes.run_task_volume_configurations()
    fixes.ecs_image_digest()
    ec2 = aws.client("ec2")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"][:2]]
    ec2.create_security_group(GroupName="aegea.efs", Description="efs")
    aws.client("ecs").create_cluster(clusterName="wdl")
    for name in ("wdl-managed", "wdl-managed-spot", "wdl-gpu", "wdl-gpu-spot"):  # as the stack's template makes them
        fixes.managed_instances_provider(name, "wdl")
    efs = tmp_path / "efs"

    def configure(**settings):
        env = {
            "CLUSTER": "wdl", "SUBNETS": ",".join(subnets), "EFS_ID": "fs-12345678", "EFS_MOUNTPOINT": str(efs),
            "EXECUTION_ROLE": "arn:aws:iam::123456789012:role/exec", "LOG_GROUP": "/wdl/tasks",
            "POLL_INTERVAL": "0.1", "PROVISION": "false", "RUN_ID": "run-1", **BEYOND, **settings,
        }
        for key, value in env.items():
            monkeypatch.setenv(f"MINIWDL__AWS_FARGATE__{key}", value)
        cfg = wdl_config.Loader(LOG, filenames=[])
        FargateTaskContainer._task_definitions.clear()
        FargateTaskContainer.global_init(cfg, LOG)

        def new(name="call-big", docker="ubuntu:22.04", **values):
            host_dir = efs / "runs" / "r1" / name
            os.makedirs(host_dir)
            container = FargateTaskContainer(cfg, name, str(host_dir))
            container.process_runtime(LOG, runtime(docker=docker, **values))
            return container

        return new

    return configure


def requests(container):
    """The task's RunTask request and its task definition's RegisterTaskDefinition request, both
    checked against botocore's model."""
    request = container.run_task_request(LOG, container.task_script())
    validate("RunTask", request)
    size = container.fargate_size()
    spec = FargateTaskContainer.task_definition_spec(container.image_uri(), None, size)
    validate("RegisterTaskDefinition", {"family": "f", **spec})
    return request, spec


def test_a_task_that_fits_fargate_runs_there_as_before(configure):
    new = configure()
    request, spec = requests(new("call-small", cpu=2, memory="4 GiB", disks="100 GiB"))
    assert request["launchType"] == "FARGATE" and "capacityProviderStrategy" not in request
    assert "volumeConfigurations" not in request
    assert request["overrides"]["ephemeralStorage"] == {"sizeInGiB": 110}  # (and room for the image)
    assert spec["requiresCompatibilities"] == ["FARGATE"]
    container = spec["containerDefinitions"][0]
    assert "resourceRequirements" not in container and "environment" not in container
    assert [v["name"] for v in spec["volumes"]] == ["efs"]
    # the same task definition as without any beyond-Fargate settings
    assert spec == FargateTaskContainer.task_definition_spec(f"{ECR}/docker-hub/library/ubuntu:22.04")


def test_miniwdl_clamps_runtime_values_to_the_managed_instances_not_to_fargate(configure):
    configure()
    limits = FargateTaskContainer.detect_resource_limits(None, LOG)
    assert limits == {"cpu": 64, "mem_bytes": (512 * 1024 - math.ceil(0.05 * 512 * 1024)) * 1024**2}  # less the agent's share
    configure(**NO_MANAGED_INSTANCES)
    assert FargateTaskContainer.detect_resource_limits(None, LOG) == {"cpu": 16, "mem_bytes": 120 * 1024**3}


NO_MANAGED_INSTANCES = {
    f"MANAGED_INSTANCES_{kind}CAPACITY_PROVIDER": "" for kind in ("", "SPOT_", "GPU_", "GPU_SPOT_")
}
NO_GPU_PROVIDERS = {"MANAGED_INSTANCES_GPU_CAPACITY_PROVIDER": "", "MANAGED_INSTANCES_GPU_SPOT_CAPACITY_PROVIDER": "",
                    "MANAGED_INSTANCES_MAX_GPUS": "0"}


def test_a_gpu_task_runs_on_the_gpu_provider_with_its_gpus(configure):
    new = configure()
    container = new("call-gpu", cpu=8, memory="32 GiB", gpu=True, gpuCount=2)
    request, spec = requests(container)
    assert request["capacityProviderStrategy"] == [{"capacityProvider": "wdl-gpu", "weight": 1}]
    assert "launchType" not in request and "ephemeralStorage" not in request["overrides"]
    assert (request["overrides"]["cpu"], request["overrides"]["memory"]) == ("8192", "32768")
    assert spec["requiresCompatibilities"] == ["MANAGED_INSTANCES"] and spec["networkMode"] == "awsvpc"
    assert spec["containerDefinitions"][0]["resourceRequirements"] == [{"type": "GPU", "value": "2"}]
    # an awsvpc task on an instance gets a private address only (a Fargate task keeps its public one)
    assert request["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"
    facts = container.attempt_facts()
    assert facts["public_ip"] is False
    assert (facts["capacity"], facts["gpus"], facts["scratch_gib"]) == ("MANAGED_INSTANCES", 2, None)
    # its own task definition: never the Fargate one of the same image
    fargate = new("call-cpu", cpu=1)
    assert container.task_definition(LOG, container.image_uri(), "", container.fargate_size()) != fargate.task_definition(
        LOG, fargate.image_uri(), "", fargate.fargate_size()
    )


@pytest.mark.parametrize("values, gpus", [
    (dict(acceleratorType="nvidia-l4", acceleratorCount=2), 2),  # (AWS HealthOmics's keys)
    (dict(acceleratorType="nvidia-l4"), 1),
    (dict(gpuCount="2"), 2),  # (as `gpuCount: "~{n}"` makes it)
    (dict(gpuCount=None, gpu=False), 0),  # (an optional count left unset)
    (dict(acceleratorType="nvidia-l4", acceleratorCount=0), 0),
])
def test_a_task_asking_for_gpus_as_other_engines_write_it_gets_them(configure, values, gpus):
    """`acceleratorType: "nvidia-l4" acceleratorCount: 1` (HealthOmics) ran on Fargate without a
    GPU, its CUDA tool failing or crawling after its image's pull; a count given as a string
    failed the task."""
    container = configure()("call-gpu", cpu=8, memory="32 GiB", **values)
    facts = container.attempt_facts()
    assert (facts["capacity"], facts["gpus"]) == (("MANAGED_INSTANCES", gpus) if gpus else ("FARGATE", 0))


def test_a_big_cpu_only_task_runs_on_the_cpu_provider_even_with_gpu_providers(configure):
    """The GPU providers' instances all have GPUs: a task without GPUs never goes there."""
    new = configure()
    container = new("call-align", cpu=32, memory="64 GiB")
    request, spec = requests(container)
    assert request["capacityProviderStrategy"] == [{"capacityProvider": "wdl-managed", "weight": 1}]
    assert "resourceRequirements" not in spec["containerDefinitions"][0]
    assert spec["requiresCompatibilities"] == ["MANAGED_INSTANCES"]
    assert (container.capacity(), container.attempt_facts()["gpus"]) == ("MANAGED_INSTANCES", 0)


def test_a_preemptible_gpu_task_tries_the_gpu_spot_provider_then_gpu_on_demand(configure):
    new = configure()
    container = new("call-gpu", cpu=8, memory="32 GiB", gpu=True, preemptible=2)
    providers = []
    for interruptions in (0, 1, 2):
        container._interruptions = interruptions
        request, spec = requests(container)
        providers.append((request["capacityProviderStrategy"][0]["capacityProvider"], container.capacity()))
        assert spec["containerDefinitions"][0]["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    # (the capacity names stay those of managed instances: the cost report prices the GPUs by count)
    assert providers == [
        ("wdl-gpu-spot", "MANAGED_INSTANCES_SPOT"),
        ("wdl-gpu-spot", "MANAGED_INSTANCES_SPOT"),
        ("wdl-gpu", "MANAGED_INSTANCES"),
    ]


def test_without_a_gpu_spot_provider_a_preemptible_gpu_task_runs_on_gpu_on_demand(configure):
    new = configure(MANAGED_INSTANCES_GPU_SPOT_CAPACITY_PROVIDER="")
    container = new("call-gpu", gpu=True, preemptible=2)
    request, _ = requests(container)
    assert request["capacityProviderStrategy"] == [{"capacityProvider": "wdl-gpu", "weight": 1}]
    assert container.capacity() == "MANAGED_INSTANCES"
    # (the CPU-only Spot provider is still there for big CPU-only tasks)
    assert requests(new("call-big", cpu=32, preemptible=1))[0]["capacityProviderStrategy"][0]["capacityProvider"] == "wdl-managed-spot"


def test_without_gpu_providers_a_gpu_task_is_refused_before_launch_and_big_ones_still_run(configure):
    new = configure(**NO_GPU_PROVIDERS)
    assert FargateTaskContainer.capacities.managed_instances.max_gpus == 0
    with pytest.raises(WDL.Error.RuntimeError, match=r"the managed instances allow no GPUs \(stack parameters ManagedInstancesGpuKinds"):
        new("call-gpu", gpu=True)
    assert every_task_arn("wdl") == []
    assert requests(new("call-big", cpu=32))[0]["capacityProviderStrategy"][0]["capacityProvider"] == "wdl-managed"


def test_a_big_preemptible_task_tries_the_spot_provider_then_on_demand(configure):
    new = configure()
    container = new("call-big", cpu=32, memory="256 GiB", preemptible=2)
    providers = []
    for interruptions in (0, 1, 2):
        container._interruptions = interruptions
        request, _ = requests(container)
        providers.append((request["capacityProviderStrategy"][0]["capacityProvider"], container.capacity()))
    assert providers == [
        ("wdl-managed-spot", "MANAGED_INSTANCES_SPOT"),
        ("wdl-managed-spot", "MANAGED_INSTANCES_SPOT"),
        ("wdl-managed", "MANAGED_INSTANCES"),
    ]


def test_the_launcher_waits_to_try_a_runtask_again_as_launch_retry_delay_says(configure):
    configure()
    assert FargateTaskContainer._launcher.backoff_base == 1.0  # (the packaged default)
    configure(LAUNCH_RETRY_DELAY="0.25")
    assert FargateTaskContainer._launcher.backoff_base == 0.25


def test_the_attempt_records_the_capacity_its_request_ran_on_after_the_launchers_fallback(configure):
    new = configure()
    container = new("call-big", cpu=32, preemptible=1)
    assert FargateTaskContainer._launcher.spot_fallbacks["wdl-managed-spot"] == {
        "capacityProviderStrategy": [{"capacityProvider": "wdl-managed", "weight": 1}]
    }
    # each Spot provider falls back to its own On-Demand twin: a GPU task never to CPU-only instances
    assert FargateTaskContainer._launcher.spot_fallbacks["wdl-gpu-spot"] == {
        "capacityProviderStrategy": [{"capacityProvider": "wdl-gpu", "weight": 1}]
    }

    def ran(provider=None):
        return container._capacity_of({"capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1}]} if provider else {"launchType": "FARGATE"})

    assert [ran("wdl-managed-spot"), ran("wdl-managed"), ran("wdl-gpu-spot"), ran("wdl-gpu"), ran("FARGATE_SPOT"), ran()] == [
        "MANAGED_INSTANCES_SPOT", "MANAGED_INSTANCES", "MANAGED_INSTANCES_SPOT", "MANAGED_INSTANCES", "FARGATE_SPOT", "FARGATE",
    ]


def test_without_a_spot_provider_a_preemptible_big_task_runs_on_demand(configure):
    new = configure(MANAGED_INSTANCES_SPOT_CAPACITY_PROVIDER="")
    container = new("call-big", cpu=32, preemptible=2)
    request, _ = requests(container)
    assert request["capacityProviderStrategy"] == [{"capacityProvider": "wdl-managed", "weight": 1}]
    assert container.capacity() == "MANAGED_INSTANCES"
    # (a Fargate-sized preemptible task still goes to FARGATE_SPOT)
    assert requests(new("call-small", cpu=1, preemptible=1))[0]["capacityProviderStrategy"][0]["capacityProvider"] == "FARGATE_SPOT"


@pytest.mark.parametrize(
    "values, capacity",
    [
        (dict(cpu=2, memory="4 GiB", disks="1000 GiB"), "FARGATE"),
        (dict(cpu=32, memory="64 GiB", disks="local-disk 500 SSD"), "MANAGED_INSTANCES"),
    ],
)
def test_disks_beyond_the_capacity_get_an_ebs_scratch_volume_that_is_the_tmpdir(configure, values, capacity):
    new = configure()
    container = new("call-scratch", **values)
    request, spec = requests(container)
    size = container.fargate_size()
    assert size.capacity == capacity and size.scratch_gib == (1000 if capacity == "FARGATE" else 500)
    assert "ephemeralStorage" not in request["overrides"]
    (volume,) = request["volumeConfigurations"]
    tags = {t["key"]: t["value"] for t in volume["managedEBSVolume"]["tagSpecifications"][0]["tags"]}
    assert volume == {
        "name": "scratch",
        "managedEBSVolume": {
            "sizeInGiB": size.scratch_gib, "volumeType": "gp3", "encrypted": True, "roleArn": ROLE,
            "filesystemType": "ext4", "terminationPolicy": {"deleteOnTermination": True},
            # the task's tags but its driver and run name (ECS adds two of its own to the volume:
            # at most 50 in all, fargate.volume_tags)
            "tagSpecifications": [{"resourceType": "volume", "tags": [
                t for t in request["tags"] if t["key"] not in ("miniwdl-fargate:driver", "miniwdl-fargate:run-name")]}],
        },
    }
    assert tags["miniwdl-fargate:run"] == "run-1"
    assert tags["miniwdl-fargate:call"] == "call-scratch"
    assert {"name": "scratch", "configuredAtLaunch": True} in spec["volumes"]
    (definition,) = spec["containerDefinitions"]
    assert {"sourceVolume": "scratch", "containerPath": "/mnt/scratch", "readOnly": False} in definition["mountPoints"]
    assert definition["environment"] == [{"name": "TMPDIR", "value": "/mnt/scratch"}]
    assert spec["requiresCompatibilities"] == [capacity]
    assert container.attempt_facts()["scratch_gib"] == size.scratch_gib


def test_a_scratch_volume_is_mounted_at_the_disks_mount_points_in_a_task_definition_of_their_own(configure):
    """ECS attaches one EBS volume to a task: it is mounted at /mnt/scratch (the TMPDIR) and at each
    mount point the disks name; tasks of another mount point get another task definition, and a
    mount point over the EFS file system's is refused before anything is registered."""
    new = configure()
    request, spec = requests(new("call-data", cpu=2, memory="4 GiB", disks="/mnt/data 1000 SSD"))
    (definition,) = spec["containerDefinitions"]
    scratch = [m["containerPath"] for m in definition["mountPoints"] if m["sourceVolume"] == "scratch"]
    assert scratch == ["/mnt/scratch", "/mnt/data"]
    assert definition["environment"] == [{"name": "TMPDIR", "value": "/mnt/scratch"}]
    other, _ = requests(new("call-plain", cpu=2, memory="4 GiB", disks="1000 GiB"))
    assert other["taskDefinition"] != request["taskDefinition"]
    again, _ = requests(new("call-data-2", cpu=4, memory="8 GiB", disks="/mnt/data 900 SSD"))
    assert again["taskDefinition"] == request["taskDefinition"]  # (same image, same mounts)
    efs = next(m["containerPath"] for m in definition["mountPoints"] if m["sourceVolume"] != "scratch")
    with pytest.raises(WDL.Error.RuntimeError, match=rf"mount point {efs}/x overlaps {efs} \(the EFS file system's mount point"):
        requests(new("call-efs", cpu=2, memory="4 GiB", disks=f"{efs}/x 1000 SSD"))


def test_the_task_definition_runs_the_image_through_the_cache_and_the_attempt_says_both(configure):
    new = configure()
    container = new("call-quay", docker="quay.io/biocontainers/samtools:1.17--h00cdaf9_0", cpu=1)
    request, spec = requests(container)
    assert spec["containerDefinitions"][0]["image"] == f"{ECR}/quay/biocontainers/samtools:1.17--h00cdaf9_0"
    td = aws.client("ecs").describe_task_definition(taskDefinition=request["taskDefinition"])["taskDefinition"]
    assert td["containerDefinitions"][0]["image"] == f"{ECR}/quay/biocontainers/samtools:1.17--h00cdaf9_0"
    facts = container.attempt_facts()
    assert facts["image"] == "quay.io/biocontainers/samtools:1.17--h00cdaf9_0"
    assert facts["image_uri"] == f"{ECR}/quay/biocontainers/samtools:1.17--h00cdaf9_0"
    # no rule for the registry: as given
    assert new("call-ecr", docker="public.ecr.aws/lts/ubuntu:22.04", cpu=1).image_uri() == "public.ecr.aws/lts/ubuntu:22.04"


def test_a_managed_instances_task_with_scratch_runs_against_moto_and_its_image_digest_is_recorded(configure):
    new = configure()
    container = new("call-run", cpu=32, memory="64 GiB", gpu=True, disks="500 GiB")
    attempt = container._attempt = attempts.LOG.begin(call="call-run", attempt=1, run="run-1", **container.attempt_facts())
    job = container._start(LOG, container.task_script(), lambda: False)
    try:
        assert job.capacity == "MANAGED_INSTANCES" and attempt.capacity == "MANAGED_INSTANCES"
        task = aws.client("ecs").describe_tasks(cluster="wdl", tasks=[job.arn])["tasks"][0]
        assert task["capacityProviderName"] == "wdl-gpu"
        td = aws.client("ecs").describe_task_definition(taskDefinition=job.task_definition)["taskDefinition"]
        assert td["requiresCompatibilities"] == ["MANAGED_INSTANCES"]
        assert td["containerDefinitions"][0]["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
        wait_for(lambda: job.watch.description is not None, 30.0, "the poller's first description")
        container._poll(LOG, job, 0.1)
        assert attempt.image_digest == fixes.local_image_digest(f"{ECR}/docker-hub/library/ubuntu:22.04")
        assert attempt.image_uri == f"{ECR}/docker-hub/library/ubuntu:22.04" and attempt.image == "ubuntu:22.04"
        assert (attempt.gpus, attempt.scratch_gib) == (1, 500)
    finally:
        container._stop(LOG, job, "test over")


def out_of_memory() -> FargateJob:
    """An attempt's job as ``_exit_code`` leaves it when ECS stopped the task for its memory."""
    return FargateJob(None, "", "", "MANAGED_INSTANCES", 0.0, out_of_memory=True)  # type: ignore[arg-type]


def test_an_out_of_memory_retry_stays_on_managed_instances(configure):
    new = configure()
    container = new("call-oom", cpu=32, memory="200 GiB")
    assert container._retry_attempt(LOG, out_of_memory(), 137)
    size = container.fargate_size()
    assert (size.capacity, size.memory) == ("MANAGED_INSTANCES", 400 * 1024)
    assert container._retry_attempt(LOG, out_of_memory(), 137) is False  # (oom_retries = 1)


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(cpu=128), "the managed instances allow at most 64 vCPU (stack parameter ManagedInstancesMaxVCpu; alone: [aws_fargate] managed_instances_max_cpu)"),
        (dict(gpuCount=8), "the managed instances allow at most 4 GPUs"),
        (dict(gpuCount="two"), "runtime.gpuCount = \"two\": expected a whole number of GPUs"),
    ],
)
def test_what_the_managed_instances_cannot_give_fails_before_launch(configure, values, message):
    new = configure()
    with pytest.raises(WDL.Error.RuntimeError, match=re.escape(message)):
        new("call-huge", **values)
    assert every_task_arn("wdl") == []


def test_without_a_volume_role_big_disks_are_refused_naming_the_option(configure):
    new = configure(EBS_VOLUME_ROLE="")
    with pytest.raises(WDL.Error.RuntimeError, match=r"set \[aws_fargate\] ebs_volume_role"):
        new("call-disk", disks="1000 GiB")


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(MANAGED_INSTANCES_CAPACITY_PROVIDER=""), "managed_instances_spot_capacity_provider needs managed_instances_capacity_provider"),
        (dict(MANAGED_INSTANCES_GPU_CAPACITY_PROVIDER=""),
         "managed_instances_gpu_spot_capacity_provider needs managed_instances_gpu_capacity_provider"),
        (dict(MANAGED_INSTANCES_CAPACITY_PROVIDER="", MANAGED_INSTANCES_SPOT_CAPACITY_PROVIDER=""),
         "managed_instances_gpu_capacity_provider needs managed_instances_capacity_provider"),
        (dict(MANAGED_INSTANCES_MAX_GPUS="0"),
         r"managed_instances_gpu_capacity_provider and managed_instances_max_gpus go together: .*got provider 'wdl-gpu', max_gpus 0"),
        (dict(MANAGED_INSTANCES_GPU_CAPACITY_PROVIDER="", MANAGED_INSTANCES_GPU_SPOT_CAPACITY_PROVIDER=""),
         r"managed_instances_gpu_capacity_provider and managed_instances_max_gpus go together: .*got provider '', max_gpus 4"),
        (dict(EBS_VOLUME_ROLE="ecs-volumes"), "ebs_volume_role must be the ARN"),
        (dict(IMAGE_CACHE="docker.io=nowhere"), r"image_cache \(or MINIWDL__AWS_FARGATE__IMAGE_CACHE\)"),
    ],
)
def test_settings_that_cannot_work_fail_the_backend_at_init(configure, settings, message):
    with pytest.raises((RuntimeError, ValueError), match=message):
        configure(**settings)


SIM_TASK = """
    version 1.1
    workflow w { call t output { String out = t.out } }
    task t {
      command <<< echo hi >>>
      output { String out = "done" }
      runtime { docker: "ubuntu:22.04" cpu: 32 memory: "128 GiB" gpu: true preemptible: 1 }
    }
"""


def test_miniwdl_runs_a_preemptible_gpu_task_on_spot_managed_instances_then_on_demand(sim, tmp_path, monkeypatch):
    """End to end through `miniwdl run`: the GPU Spot provider first; interrupted, the task runs
    again on the GPU On-Demand provider, and the run succeeds."""
    for key, value in {**BEYOND, "EBS_VOLUME_ROLE": ""}.items():
        monkeypatch.setenv(f"MINIWDL__AWS_FARGATE__{key}", value)
    sim.faults.script.extend(["spot_interruption", "ok"])
    code, out = finish(start_miniwdl(sim, tmp_path, SIM_TASK))
    assert code == 0, out
    asked = [(r["capacityProviderStrategy"][0]["capacityProvider"], r["overrides"]["cpu"]) for r in sim.run_task_requests]
    assert asked == [("wdl-gpu-spot", "32768"), ("wdl-gpu", "32768")]
    for request in sim.run_task_requests:
        validate("RunTask", request)
    (definition,) = sim.task_definitions.values()
    assert definition["requiresCompatibilities"] == ["MANAGED_INSTANCES"]
    assert definition["containerDefinitions"][0]["image"] == f"{ECR}/docker-hub/library/ubuntu:22.04"


def _held_in_provisioning(container, job, waited):
    """The task as ECS shows it while it waits for an instance, launched ``waited`` seconds ago
    (the poller stops following it, so the description stays as set here)."""
    container._poller.forget(job.arn)
    task = aws.client("ecs").describe_tasks(cluster="wdl", tasks=[job.arn])["tasks"][0]
    job.watch._update(dict(task, lastStatus="PROVISIONING"))
    job.launched_at -= waited


def test_a_task_no_instance_takes_within_the_provisioning_timeout_is_stopped_and_retried(configure):
    """On managed instances a task waits in PROVISIONING for an instance that fits: one that no
    allowed instance type can take would wait for good; past provisioning_timeout it is stopped
    and the attempt ends as an infrastructure failure (Interrupted: retried as preemptible allows)."""
    new = configure(PROVISIONING_TIMEOUT="600")
    container = new("call-wait", cpu=32, memory="64 GiB", gpu=True)
    attempt = container._attempt = attempts.LOG.begin(call="call-wait", attempt=1, run="run-1", **container.attempt_facts())
    job = container._start(LOG, container.task_script(), lambda: False)
    _held_in_provisioning(container, job, 599)
    assert not container._poll(LOG, job, 0).stopped  # still within the timeout: it waits
    job.launched_at -= 2
    with pytest.raises(WDL.runtime.Interrupted) as info:
        container._poll(LOG, job, 0)
    assert str(info.value).startswith(
        "no managed instance took task call-wait within provisioning_timeout (600s; it asked for 32 vCPU, 64 GiB, 1 GPU on MANAGED_INSTANCES)"
    )
    task = aws.client("ecs").describe_tasks(cluster="wdl", tasks=[job.arn])["tasks"][0]
    assert task["lastStatus"] == "STOPPED" and task["stoppedReason"] == "miniwdl-fargate: no instance within provisioning_timeout"
    assert attempt.outcome == attempts.FAILED_TO_START and "provisioning_timeout" in attempt.detail


def test_fargate_tasks_and_a_zero_provisioning_timeout_never_time_out_in_provisioning(configure):
    new = configure(PROVISIONING_TIMEOUT="0")
    container = new("call-patient", cpu=32, memory="64 GiB")
    job = container._start(LOG, container.task_script(), lambda: False)
    try:
        _held_in_provisioning(container, job, 10**6)
        assert not container._poll(LOG, job, 0).stopped
    finally:
        container._stop(LOG, job, "test over")
    new = configure(PROVISIONING_TIMEOUT="1")
    fargate = new("call-small", cpu=1)
    job = fargate._start(LOG, fargate.task_script(), lambda: False)
    try:
        _held_in_provisioning(fargate, job, 10**6)
        assert job.capacity == "FARGATE" and not fargate._poll(LOG, job, 0).stopped
    finally:
        fargate._stop(LOG, job, "test over")


def test_a_runs_tags_go_on_its_tasks_and_their_scratch_volumes_within_50(configure):
    """[aws_fargate] tags (the driver sets the run's labels, name and workflow) on every RunTask and
    its EBS scratch volume: at the most labels, 50 tags on the task, 48 on the volume (ECS adds two)."""
    labels = {f"label{i}": f"value {i}" for i in range(45)}
    tags = {"miniwdl-fargate:run-name": "hello", "miniwdl-fargate:workflow": "hello", **labels}
    new = configure(TAGS=json.dumps(tags))
    request, _ = requests(new("call-scratch-0", cpu=2, memory="4 GiB", disks="1000 GiB"))  # (checked by botocore)
    on_task = {t["key"]: t["value"] for t in request["tags"]}
    assert len(request["tags"]) == len(on_task) == 50
    assert on_task == {**tags, "miniwdl-fargate:run": "run-1", "miniwdl-fargate:call": "call-scratch-0",
                       "miniwdl-fargate:driver": on_task["miniwdl-fargate:driver"]}
    on_volume = request["volumeConfigurations"][0]["managedEBSVolume"]["tagSpecifications"][0]["tags"]
    assert len(on_volume) == 48 and {"key": "label44", "value": "value 44"} in on_volume
    # and ECS takes them: the task ECS started carries them
    container = new("call-tagged", cpu=1, memory="2 GiB")
    request, _ = requests(container)
    task = aws.client("ecs").run_task(**request)["tasks"][0]
    listed = aws.client("ecs").list_tags_for_resource(resourceArn=task["taskArn"])["tags"]
    assert {t["key"]: t["value"] for t in listed} == {t["key"]: t["value"] for t in request["tags"]}


def test_disks_naming_the_scratch_path_or_overlapping_paths_mount_once_or_are_refused(configure):
    new = configure()
    _request, spec = requests(new("call-s", cpu=2, memory="4 GiB", disks="/mnt/scratch 1000 SSD"))
    paths = [m["containerPath"] for m in spec["containerDefinitions"][0]["mountPoints"] if m["sourceVolume"] == "scratch"]
    assert paths == ["/mnt/scratch"]  # (named by the disks too: one mount point, not two of one path)
    with pytest.raises(WDL.Error.RuntimeError, match=r"mount point /mnt/data/sub overlaps /mnt/data \(another\)"):
        requests(new("call-o", cpu=2, memory="4 GiB", disks="/mnt/data 500 SSD, /mnt/data/sub 500 SSD"))
