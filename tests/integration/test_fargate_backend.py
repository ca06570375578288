"""The aws_fargate backend's ECS requests, checked against botocore's ECS model and moto."""

import logging
import os

import pytest
import WDL
from WDL.runtime import config as wdl_config

from miniwdl_fargate import aws
from miniwdl_fargate.backend.fargate import FargateJob, FargateTaskContainer
from backend_support import runtime, validate
from tests.local_ecs import every_task_arn

LOG = logging.getLogger("test")


@pytest.fixture
def backend(moto_aws, tmp_path, monkeypatch):
    ec2 = aws.client("ec2")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"][:2]]
    sg = ec2.create_security_group(GroupName="aegea.efs", Description="efs")["GroupId"]
    aws.client("ecs").create_cluster(clusterName="wdl")
    efs = tmp_path / "efs"
    env = {
        "CLUSTER": "wdl",
        "SUBNETS": ",".join(subnets),
        "EFS_ID": "fs-12345678",
        "EFS_MOUNTPOINT": str(efs),
        "EXECUTION_ROLE": "arn:aws:iam::123456789012:role/exec",
        "LOG_GROUP": "/wdl/tasks",
        "POLL_INTERVAL": "0.1",
        "PROVISION": "false",
    }
    for key, value in env.items():
        monkeypatch.setenv(f"MINIWDL__AWS_FARGATE__{key}", value)
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__RUN_ID", "run-1")
    cfg = wdl_config.Loader(LOG, filenames=[])
    FargateTaskContainer._task_definitions.clear()
    FargateTaskContainer.global_init(cfg, LOG)

    def new(name="call-align", **values):
        host_dir = efs / "runs" / "r1" / name
        os.makedirs(host_dir)
        container = FargateTaskContainer(cfg, name, str(host_dir))
        container.process_runtime(LOG, runtime(docker="biocontainers/bwa:0.7.17", **values))
        return container

    return new, sg, subnets


def test_run_task_request_matches_the_ecs_model(backend):
    new, sg, subnets = backend
    container = new(cpu=2, memory="3 GiB")
    request = container.run_task_request(LOG, container.task_script())
    validate("RunTask", request)
    assert request["launchType"] == "FARGATE"
    # WDL runtime cpu 2 / memory 3 GiB -> the smallest Fargate size: 2 vCPU with 4 GB
    assert request["overrides"]["cpu"] == "2048"
    assert request["overrides"]["memory"] == "4096"
    assert "ephemeralStorage" not in request["overrides"]
    assert request["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": subnets,
        "securityGroups": [sg],  # aegea.efs resolved to its id
        "assignPublicIp": "ENABLED",
    }
    # the script goes to the task definition's entryPoint (/bin/sh -c) and runs the command in
    # the task's real directory on EFS, mounted at the driver's own path
    (script,) = request["overrides"]["containerOverrides"][0]["command"]
    # (its first command marks that it ran, beside stdout.txt: ``script_ran``), then its work directory
    assert script.splitlines()[2].startswith(f"cd {container.host_work_dir()} ")
    assert script.splitlines()[1] == 'command : 2>/dev/null > "${stdout_txt%/*}/".miniwdl-fargate-started.0'
    # where the marker cannot be written (an image user who may not write the task's folder), the
    # script goes on, silently, in every shell an image may have
    import shutil
    import subprocess

    first = 'stdout_txt=/nonexistent/folder/stdout.txt\n' + script.splitlines()[1] + '\necho went on\n'
    for shell in (["dash"], ["busybox", "sh"], ["bash", "--posix"]):
        if shutil.which(shell[0]):
            ran = subprocess.run([*shell, "-c", first], capture_output=True, text=True)
            assert (ran.returncode, ran.stdout, ran.stderr) == (0, "went on\n", ""), (shell, ran)
    assert "miniwdl_task_container" not in script and "ln -s" not in script
    tags = {t["key"]: t["value"] for t in request["tags"]}
    assert tags["miniwdl-fargate:run"] == "run-1"
    assert tags["miniwdl-fargate:call"] == "call-align"
    assert tags["miniwdl-fargate:driver"].startswith("host:")  # not in an ECS task: the host and pid
    assert request["startedBy"] == "run-1"


def test_an_image_ecs_cannot_run_fails_the_task_before_registering_and_is_not_retried(backend):
    """An image from a WDL input (unchecked at submit) that ECS refuses (a sha512 digest): the task
    fails naming the image and why, as a BuildError (not retried), with nothing registered or run;
    one with spaces around it runs as the image it names."""
    from miniwdl_fargate.backend.fargate import ImageUnusable

    new, _, _ = backend
    container = new("call-digest")
    container.runtime_values["docker"] = "ubuntu@sha512:" + "ab" * 64
    with pytest.raises(ImageUnusable) as refused:
        container.run_task_request(LOG, container.task_script())
    assert str(refused.value) == (
        "task call-digest: image 'ubuntu@sha512:" + "ab" * 64 + "' is not one ECS can run: its digest 'sha512:"
        + "ab" * 64 + "' is not one ECS takes (sha256: and exactly 64 hex digits)"
    )
    assert aws.client("ecs").list_task_definitions()["taskDefinitionArns"] == [] and every_task_arn("wdl") == []
    spaced = new("call-spaced")
    spaced.runtime_values["docker"] = " ubuntu:22.04 "
    request = spaced.run_task_request(LOG, spaced.task_script())
    registered = aws.client("ecs").describe_task_definition(taskDefinition=request["taskDefinition"])["taskDefinition"]
    assert registered["containerDefinitions"][0]["image"] == "ubuntu:22.04"


def test_a_docker_uri_runs_its_image_and_an_inline_dockerfile_is_refused_saying_so(backend):
    """WDL 1.1's ``container: "docker://ubuntu:22.04"`` names the image ubuntu:22.04 (ECS would
    take the whole for a repository and fail its pull); ``inlineDockerfile`` (which miniwdl's
    Docker backend builds) fails the task at once, saying what to do, not run in the default image."""
    from miniwdl_fargate.backend.fargate import ImageUnusable

    new, _, _ = backend
    uri = new("call-uri")
    uri.runtime_values["docker"] = "docker://ubuntu:22.04"
    request = uri.run_task_request(LOG, uri.task_script())
    registered = aws.client("ecs").describe_task_definition(taskDefinition=request["taskDefinition"])["taskDefinition"]
    assert registered["containerDefinitions"][0]["image"] == "ubuntu:22.04"
    inline = new("call-inline")
    inline.runtime_values["inlineDockerfile"] = "FROM ubuntu:22.04\nRUN apt-get install -y samtools"
    with pytest.raises(ImageUnusable, match=r"^task call-inline: runtime.inlineDockerfile is not supported by aws_fargate"):
        inline.run_task_request(LOG, inline.task_script())


@pytest.mark.parametrize("container, image", [
    ("*", "ubuntu:22.04"),  # (WDL 1.2: any environment, the default image; it failed the task as "'*'")
    (["https://gcr.io/standard-images/ubuntu:latest", "quay.io/biocontainers/samtools:1.17--h00cdaf9_0"],
     "quay.io/biocontainers/samtools:1.17--h00cdaf9_0"),  # (another protocol is skipped, as WDL says)
    (["*", "docker://ubuntu:24.04"], "ubuntu:24.04"),
    (["ubuntu:24.04", "debian:12"], "ubuntu:24.04"),
])
def test_the_image_of_a_container_is_the_first_ecs_can_pull(backend, container, image):
    new, _, _ = backend
    chosen = new("call-chosen", container=container)
    request = chosen.run_task_request(LOG, chosen.task_script())
    registered = aws.client("ecs").describe_task_definition(taskDefinition=request["taskDefinition"])["taskDefinition"]
    assert registered["containerDefinitions"][0]["image"] == image


@pytest.mark.parametrize("memory", ["4g", "4 gb", "3.73 gib", "4 Gb"])
def test_a_memory_unit_in_any_case_is_read_as_wdl_says(backend, memory):
    """WDL's units of storage are case-insensitive; miniwdl refused "4g" ("invalid setting of
    runtime.memory") and the task failed."""
    new, _, _ = backend
    container = new(cpu=1, memory=memory)
    assert container.fargate_size().memory == 4096
    assert container.runtime_values["memory_reservation"] >= 4 * 10**9 * 0.99  # (miniwdl took it too)


@pytest.mark.parametrize("values, ephemeral", [
    (dict(bootDiskSizeGb=50), 50),  # (Cromwell's disk for a large image: room for it)
    (dict(disks="local-disk 100 HDD", bootDiskSizeGb=25), 125),
    (dict(disks="local-disk 100 HDD", bootDiskSizeGb=5), 110),  # (never less than IMAGE_ROOM_GIB)
    (dict(disk="100 GB"), 104),  # (the TES backends' key: 100 GB is 93.1 GiB)
    (dict(disks="local-disk 30 HDD", disk="100 GB"), 40),  # (disks first)
    (dict(bootDiskSizeGb=10), None),  # (within the default 20 GiB)
])
def test_other_engines_disk_keys_size_the_tasks_storage(backend, values, ephemeral):
    """A task naming its image's disk (bootDiskSizeGb) or its scratch as the TES backends do
    (disk) got Fargate's default 20 GiB: the large image's pull, or the command, ran out of room."""
    new, _, _ = backend
    container = new(cpu=1, memory="2 GiB", **values)
    request = container.run_task_request(LOG, container.task_script())
    assert request["overrides"].get("ephemeralStorage") == ({"sizeInGiB": ephemeral} if ephemeral else None)


def test_a_boot_disk_that_is_not_a_number_fails_the_task_naming_it(backend):
    new, _, _ = backend
    with pytest.raises(WDL.Error.RuntimeError, match=r'runtime.bootDiskSizeGb = "big": expected a whole number of GB'):
        new(cpu=1, bootDiskSizeGb="big")


def test_disks_become_ephemeral_storage(backend):
    new, _, _ = backend
    container = new(cpu=1, memory="2 GiB", disks="local-disk 150 SSD")
    request = container.run_task_request(LOG, container.task_script())
    validate("RunTask", request)
    assert request["overrides"]["ephemeralStorage"] == {"sizeInGiB": 160}  # (and room for the image: sizes.IMAGE_ROOM_GIB)


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(cpu=32), "task call-align cannot run on Fargate: runtime.cpu = 32; Fargate allows at most 16 vCPU"),
        (dict(memory="256 GiB"), "runtime.memory = 256 GiB; Fargate allows at most 120 GiB"),
        (dict(gpu=True), "runtime.gpu = true; Fargate has no GPUs"),
        (dict(disks="1000 GiB"), "runtime.disks = 1000 GiB; Fargate ephemeral storage is at most 200 GiB"),
    ],
)
def test_a_request_fargate_cannot_meet_fails_before_launch(backend, values, message):
    new, _, _ = backend
    with pytest.raises(WDL.Error.RuntimeError, match=message.replace(".", r"\.")):
        new(**values)
    assert every_task_arn("wdl") == []


def test_preemptible_tasks_run_on_spot_until_the_budget_is_spent(backend):
    new, _, _ = backend
    container = new(cpu=1, preemptible=2)
    for interruptions, expected in ((0, "FARGATE_SPOT"), (1, "FARGATE_SPOT"), (2, "FARGATE")):
        container._interruptions = interruptions
        request = container.run_task_request(LOG, container.task_script())
        validate("RunTask", request)
        if expected == "FARGATE_SPOT":
            assert request["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
            assert "launchType" not in request
        else:
            assert request["launchType"] == "FARGATE" and "capacityProviderStrategy" not in request
    assert "capacityProviderStrategy" not in new("call-plain", cpu=1).run_task_request(LOG, "true")


def test_task_definition_mounts_efs_at_the_driver_path_and_is_reused(backend):
    new, _, _ = backend
    container = new()
    spec = FargateTaskContainer.task_definition_spec("biocontainers/bwa:0.7.17")
    validate("RegisterTaskDefinition", {"family": "f", **spec})
    arn = container.task_definition(LOG, "biocontainers/bwa:0.7.17")
    td = aws.client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
    assert td["volumes"] == [
        {"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-12345678", "rootDirectory": "/", "transitEncryption": "ENABLED"}}
    ]
    mount = td["containerDefinitions"][0]["mountPoints"][0]
    assert mount["containerPath"] == FargateTaskContainer.settings.efs_mountpoint
    assert td["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-group"] == "/wdl/tasks"
    assert td["containerDefinitions"][0]["stopTimeout"] == 120  # Spot's two-minute warning
    # the image's ENTRYPOINT never swallows the command; PID 1 is an init that forwards SIGTERM
    assert td["containerDefinitions"][0]["entryPoint"] == ["/bin/sh", "-c"]
    assert td["containerDefinitions"][0]["linuxParameters"]["initProcessEnabled"] is True
    assert "user" not in td["containerDefinitions"][0]  # the image's own USER
    assert (td["cpu"], td["memory"]) == ("1024", "2048")  # (the defaults, a Fargate size)
    # a second request for the same image reuses it, also across processes (looked up by family)
    FargateTaskContainer._task_definitions.clear()
    assert container.task_definition(LOG, "biocontainers/bwa:0.7.17") == arn
    # another image: one more task definition, never one per task
    new("call-other").task_definition(LOG, "ubuntu:24.04")
    new("call-third").task_definition(LOG, "ubuntu:24.04")
    assert len(aws.client("ecs").list_task_definitions()["taskDefinitionArns"]) == 2


def test_launch_records_a_tagged_fargate_task_and_its_log_stream(backend):
    new, _, _ = backend
    container = new(cpu=2, memory="3 GiB")
    watch = container._start(LOG, container.task_script(), lambda: False)
    task = aws.client("ecs").describe_tasks(cluster="wdl", tasks=[watch.arn], include=["TAGS"])["tasks"][0]
    assert task["overrides"]["cpu"] == "2048"
    assert task["overrides"]["memory"] == "4096"
    assert {"key": "miniwdl-fargate:run", "value": "run-1"} in task["tags"]
    task_id = watch.arn.rsplit("/", 1)[1]
    assert container.failure_info["log_group"] == "/wdl/tasks"
    assert container.failure_info["log_stream"] == f"miniwdl/task/{task_id}"
    assert container.failure_info["log_url"].startswith("https://us-east-1.console.aws.amazon.com/cloudwatch/home")
    assert "$252Fwdl$252Ftasks" in container.failure_info["log_url"]
    container._stop(LOG, watch, "test over")


def test_an_attempt_is_a_fargate_job_holding_what_it_was_launched_with(backend):
    new, _, _ = backend
    container = new()
    job = container._start(LOG, container.task_script(), lambda: False)
    assert isinstance(job, FargateJob)
    task = aws.client("ecs").describe_tasks(cluster="wdl", tasks=[job.arn])["tasks"][0]
    assert job.task_definition == task["taskDefinitionArn"] == container.task_definition(LOG, container.image())
    assert job.family == task["taskDefinitionArn"].rsplit("/", 1)[1].split(":")[0]
    assert job.family.startswith("miniwdl-task-")
    assert 0 < len(job.client_token) <= 64 and job.capacity == "FARGATE"
    assert job.launched_at > 0 and job.seen_version == 0 and job.last_state is None
    container._stop(LOG, job, "test over")
    container._stop(LOG, job, "again")  # sent once
    assert job.stop_sent
    assert vars(job.watch).keys() == vars(type(job.watch)(job.arn)).keys()  # nothing set on the poller's Watch


def test_every_run_task_request_carries_a_client_token(backend):
    new, _, _ = backend
    container = new()
    request = container.run_task_request(LOG, container.task_script(), "attempt-token-1")
    validate("RunTask", request)
    assert request["clientToken"] == "attempt-token-1"
    fresh = container.run_task_request(LOG, container.task_script())["clientToken"]
    assert 0 < len(fresh) <= 64 and all(33 <= ord(c) <= 126 for c in fresh)


def test_a_blocked_registration_of_one_image_holds_up_no_other_image(backend, monkeypatch):
    import threading

    new, _, _ = backend
    known = new().task_definition(LOG, "ubuntu:22.04")  # registered already
    ecs = aws.client("ecs")
    original = ecs.describe_task_definition
    entered, release = threading.Event(), threading.Event()

    def slow_describe(**kwargs):  # the new image's registration hangs (throttled, 1/s)
        entered.set()
        release.wait(30)
        return original(**kwargs)

    monkeypatch.setattr(ecs, "describe_task_definition", slow_describe)
    blocked = threading.Thread(target=FargateTaskContainer.task_definition, args=(LOG, "biocontainers/new:1"))
    blocked.start()
    assert entered.wait(10)
    found = []
    other = threading.Thread(target=lambda: found.append(FargateTaskContainer.task_definition(LOG, "ubuntu:22.04")))
    other.start()
    other.join(10)
    finished = not other.is_alive()
    release.set()
    blocked.join(30)
    other.join(30)
    assert finished, "the known image waited for another image's registration"
    assert found == [known]


def test_registrations_go_a_few_at_once_then_one_a_second_as_ecs_throttles_them(backend, monkeypatch):
    """RegisterTaskDefinition's token bucket (a burst, then its sustained rate of one a second):
    a workflow's first images register side by side, without waiting; more wait their token."""
    from miniwdl_fargate.backend import fargate

    new, _, _ = backend
    new()  # (the backend set up)
    clock, slept, registered = [1000.0], [], []
    monkeypatch.setattr(fargate, "_registration_clock", lambda: clock[0])

    def sleep(seconds):
        slept.append(round(seconds, 3))
        clock[0] += seconds

    monkeypatch.setattr(fargate, "_registration_wait", sleep)
    ecs = aws.client("ecs")
    original = ecs.register_task_definition

    def register(**request):
        registered.append(round(clock[0], 3))
        return original(**request)

    monkeypatch.setattr(ecs, "register_task_definition", register)
    for n in range(fargate.REGISTER_BURST + 2):
        FargateTaskContainer.task_definition(LOG, f"biocontainers/tool{n}:1")
    assert slept == [1.0, 1.0] and registered == [1000.0] * fargate.REGISTER_BURST + [1001.0, 1002.0]
    clock[0] += 2.5  # (two tokens and a half back)
    for n in range(3):
        FargateTaskContainer.task_definition(LOG, f"quay.io/other{n}:1")
    assert slept[2:] == [0.5] and registered[-3:] == [1004.5, 1004.5, 1005.0]


def test_the_report_counts_a_public_ipv4_address_exactly_when_the_task_gets_one(backend, monkeypatch):
    new, _, _ = backend
    container = new()
    request = container.run_task_request(LOG, container.task_script())
    assert request["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "ENABLED"
    assert container.attempt_facts()["public_ip"] is True
    monkeypatch.setattr(FargateTaskContainer.settings, "assign_public_ip", False)
    request = container.run_task_request(LOG, container.task_script())
    assert request["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"
    assert container.attempt_facts()["public_ip"] is False


def test_a_cfg_file_alone_configures_the_backend_and_names_the_run(backend, tmp_path, monkeypatch):
    _, sg, subnets = backend
    for key in list(os.environ):
        if key.startswith("MINIWDL__AWS_FARGATE__"):
            monkeypatch.delenv(key)
    aws.client("ecs").create_cluster(clusterName="wdl-file")
    efs = tmp_path / "file-efs"
    path = tmp_path / "miniwdl.cfg"
    path.write_text(
        "[aws_fargate]\ncluster = wdl-file\n"
        f"subnets = {subnets[0]}\nefs_id = fs-0f11e\nefs_mountpoint = {efs}\nprovision = false\nlog_group =\n"
        "run_id = hello-0f11e0f1\n"
    )
    cfg = wdl_config.Loader(LOG, filenames=[str(path)])
    FargateTaskContainer._task_definitions.clear()
    FargateTaskContainer.global_init(cfg, LOG)
    host_dir = efs / "runs" / "hello-0f11e0f1" / "call-align"
    os.makedirs(host_dir)
    container = FargateTaskContainer(cfg, "call-align", str(host_dir))
    container.process_runtime(LOG, runtime(docker="ubuntu:22.04"))
    request = container.run_task_request(LOG, container.task_script())
    validate("RunTask", request)
    assert request["cluster"] == "wdl-file"
    assert request["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == [subnets[0]]
    assert request["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"] == [sg]
    assert {"key": "miniwdl-fargate:run", "value": "hello-0f11e0f1"} in request["tags"]
    assert request["startedBy"] == "hello-0f11e0f1"
    job = container._start(LOG, container.task_script(), lambda: False)
    assert aws.client("ecs").describe_tasks(cluster="wdl-file", tasks=[job.arn])["tasks"][0]["taskArn"] == job.arn
    container._stop(LOG, job, "test over")


def test_a_task_started_by_a_launch_that_then_fails_is_stopped(backend, monkeypatch):
    """RunTask started the task, then the driver failed before the attempt had its job (here,
    reading what the task's log stream is): no attempt would ever follow or stop that task, which
    would run, and bill, until its command ended. It is stopped at once."""
    new, _, _ = backend
    container = new()

    def fails(*args):
        raise RuntimeError("failed after RunTask")

    monkeypatch.setattr(container, "_task_info", fails)
    with pytest.raises(RuntimeError, match="failed after RunTask"):
        container._start(LOG, container.task_script(), lambda: False)
    ecs = aws.client("ecs")
    (arn,) = ecs.list_tasks(cluster="wdl", desiredStatus="STOPPED")["taskArns"]
    task = ecs.describe_tasks(cluster="wdl", tasks=[arn])["tasks"][0]
    assert task["stoppedReason"] == "the driver failed as it launched the task"
    assert arn not in FargateTaskContainer._poller._watches  # (no longer described)


def test_a_task_the_driver_stops_is_priced_from_a_pull_its_stop_answer_tells(backend, monkeypatch):
    """A task stopped (a failed sibling, a cancel) before a poll saw its image pull was priced at
    nothing; StopTask's answer describes the task: its pullStartedAt starts the attempt's billing."""
    from datetime import datetime, timezone

    from miniwdl_fargate import attempts

    new, _, _ = backend
    container = new()
    container._attempt = attempts.LOG.begin(call=container.run_id, attempt=1)  # (as _run_attempt begins one)
    container._start(LOG, container.task_script(), lambda: False)
    arn = container._attempt.task_arn
    assert arn and container._attempt.billing_start is None  # (no poll has seen the pull)
    ecs = aws.client("ecs")
    real = ecs.stop_task
    pulled = datetime(2026, 12, 2, 12, 0, 5, tzinfo=timezone.utc)

    def answers_with_the_pull(**kwargs):
        answer = real(**kwargs)
        answer["task"]["pullStartedAt"] = pulled
        return answer

    monkeypatch.setattr(ecs, "stop_task", answers_with_the_pull)
    container._stop_task(LOG, arn, "a sibling failed")
    assert container._attempt.billing_start == pulled.timestamp()


def test_standalone_without_a_run_id_tags_its_tasks_standalone(backend, monkeypatch):
    new, _, _ = backend
    monkeypatch.delenv("MINIWDL__AWS_FARGATE__RUN_ID")
    container = new()
    assert container.pipeline_run_id == ""
    request = container.run_task_request(LOG, container.task_script())
    assert {"key": "miniwdl-fargate:run", "value": "standalone"} in request["tags"]
    assert request["startedBy"] == "standalone"


def test_the_runs_limits_hold_a_place_per_launched_attempt_and_refuse_a_task_bigger_than_max_vcpus(backend, monkeypatch, tmp_path):
    """[aws_fargate] max_vcpus (the driver sets it from the run's options, else the stack's
    MaxRunVCpus): a launched attempt holds its vCPUs until it is over; a task needing more than
    the limit on its own fails before any RunTask, naming the limit, and is not retried by miniwdl
    (a docker BuildError too, as ImageUnusable)."""
    from docker.errors import BuildError

    from miniwdl_fargate import limits
    from miniwdl_fargate.backend.fargate import RunLimitReached

    monkeypatch.setenv("MINIWDL__AWS_FARGATE__MAX_VCPUS", "2")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__RUN_ID", "run-limited")
    cfg = wdl_config.Loader(LOG, filenames=[])

    def new(name, cpu):
        host_dir = tmp_path / "efs" / "runs" / "run-limited" / name
        os.makedirs(host_dir)
        container = FargateTaskContainer(cfg, name, str(host_dir))
        container.process_runtime(LOG, runtime(docker="ubuntu:22.04", cpu=cpu))
        return container

    try:
        fits = new("call-fits", 2)
        job = fits._start(LOG, fits.task_script(), lambda: False)
        gate = limits.find("run-limited")
        assert (gate.running, gate.vcpus) == (1, 2)
        fits._stop(LOG, job, "test over")
        fits._attempt_over(job)
        assert (gate.running, gate.vcpus) == (0, 0)
        big = new("call-big", 4)
        with pytest.raises(RunLimitReached) as refused:
            big._start(LOG, big.task_script(), lambda: False)
        assert isinstance(refused.value, BuildError)
        assert str(refused.value).startswith(
            "task call-big needs 4 vCPU, more than the run's max_vcpus of 2 (options.max_vcpus or the stack's MaxRunVCpus)"
        )
        assert len(every_task_arn("wdl")) == 1  # the first task's only
        # an attempt whose launch fails gives its place back at once: it never had a job to end
        unlaunched = new("call-unlaunched", 2)

        def launch_fails(*args):
            raise RuntimeError("RunTask failed")

        monkeypatch.setattr(unlaunched, "_launch", launch_fails)
        with pytest.raises(RuntimeError, match="RunTask failed"):
            unlaunched._start(LOG, unlaunched.task_script(), lambda: False)
        assert (gate.running, gate.vcpus) == (0, 0)
    finally:
        limits.end_run("run-limited")


def test_the_task_definitions_size_is_the_defaults_snapped_to_a_fargate_size(backend, monkeypatch):
    """RunTask's overrides snap the defaults; the task definition gave them as written (1500 cpu
    units: no Fargate size; ECS refuses it)."""
    monkeypatch.setattr(FargateTaskContainer.settings, "default_cpu_shares", 1500)
    monkeypatch.setattr(FargateTaskContainer.settings, "default_memory_mb", 3000)
    spec = FargateTaskContainer.task_definition_spec("ubuntu:22.04")
    assert (spec["cpu"], spec["memory"]) == ("2048", "4096")
    validate("RegisterTaskDefinition", {"family": "f", **spec})


def test_a_tasks_log_loses_no_line_whatever_the_accounts_default_log_mode(backend):
    """ECS's default awslogs mode became non-blocking in June 2025 (an account setting), which
    drops what overflows its buffer: the task definition says blocking (only the log forwarder
    waits; the command writes to its files); the driver's says non-blocking with a large buffer
    (template.yaml): it never waits on its own log."""
    spec = FargateTaskContainer.task_definition_spec("ubuntu:22.04")
    (container,) = spec["containerDefinitions"]
    assert container["logConfiguration"]["options"]["mode"] == "blocking"
    validate("RegisterTaskDefinition", {"family": "f", **spec})


def test_a_task_deep_in_subworkflows_fits_runtasks_overrides_and_one_that_cannot_fails_saying_why(backend):
    """The script travels in RunTask's overrides (at most 8,192 characters of JSON): each path
    is written in it once, so a task deep in subworkflows and scatters, with long call names,
    still fits; one whose directory path alone is too long fails before RunTask, naming it."""
    import json

    from WDL.Error import RuntimeError as WDLRuntimeError

    from miniwdl_fargate.backend.fargate import MAX_OVERRIDES_CHARS

    new, _, _ = backend
    deep = new(name="/".join(f"call-{'step' * 26}-{i}" for i in range(5)))  # (a 580-character path below the run's)
    request = deep.run_task_request(LOG, deep.task_script())
    validate("RunTask", request)
    (script,) = request["overrides"]["containerOverrides"][0]["command"]
    assert script.count(deep.host_dir) == 4  # (the work directory, the command, stdout.txt, stderr.txt)
    length = len(json.dumps(request["overrides"], separators=(",", ":")))
    assert length < MAX_OVERRIDES_CHARS
    # (with each of the script's 10 uses of a path written out, it would not have fit)
    uses = script.count('"$stdout_txt"') + script.count('"$stderr_txt"')
    assert uses == 8 and length + (uses - 2) * len(deep.host_dir) > MAX_OVERRIDES_CHARS
    too_deep = new(name="/".join(f"call-{'x' * 240}-{i}" for i in range(7)))
    with pytest.raises(WDLRuntimeError, match=r"RunTask overrides would be \d+ characters, over ECS's 8192: the task's directory path is \d+ characters"):
        too_deep.run_task_request(LOG, too_deep.task_script())


def test_miniwdls_as_user_is_said_to_be_not_what_the_backend_does(backend, monkeypatch, caplog):
    """``[task_runtime] as_user`` (miniwdl's --as-me) runs a Docker task as the invoking user; a
    Fargate task runs as its image's user, its files on EFS the access point's: said once, not
    ignored silently."""
    import logging

    monkeypatch.setenv("MINIWDL__TASK_RUNTIME__AS_USER", "true")
    cfg = wdl_config.Loader(LOG, filenames=[])
    with caplog.at_level(logging.WARNING):
        FargateTaskContainer.global_init(cfg, LOG)
    assert any("[task_runtime] as_user is not what aws_fargate does" in r.getMessage() for r in caplog.records)


def test_without_an_access_point_the_tasks_files_are_writable_by_its_images_user(backend):
    """miniwdl run on its own mounts EFS whole: the work directory (made by the driver's user) and
    the logs are opened to whatever user the image runs as (a non-root image could not write
    them), as miniwdl's Docker backend does; through an access point nothing needs changing."""
    import stat as stat_

    new, _, _ = backend
    container = new("call-anyone")
    assert not FargateTaskContainer.settings.efs_access_point
    open(container.host_stdout_txt(), "a").close()  # (as each attempt makes its logs before it starts)
    container._start(LOG, container.task_script(), lambda: False)
    assert stat_.S_IMODE(os.stat(container.host_work_dir()).st_mode) == 0o777
    assert stat_.S_IMODE(os.stat(container.host_stdout_txt()).st_mode) == 0o666


def test_a_root_images_files_go_back_to_the_invoking_user_without_an_access_point(backend, monkeypatch, tmp_path):
    """miniwdl run on its own by a user who is not root, EFS mounted whole: a root image's command
    left root's files, which failed the task at miniwdl's chmod of its directory (EFS does not
    squash root) and the user could not remove. The script gives them back, as miniwdl's Docker
    backend does ([file_io] chown); its command's status stays its own."""
    import shlex
    import subprocess

    from miniwdl_fargate.backend import fargate

    new, _sg, _subnets = backend
    monkeypatch.setattr(fargate.os, "geteuid", lambda: 1234)
    monkeypatch.setattr(fargate.os, "getegid", lambda: 5678)
    container = new("call-owned")
    (line,) = container.after_command()
    inputs = os.path.join(container.host_work_dir(), "_miniwdl_inputs")
    assert line == (f'[ "$(id -u 2>/dev/null)" != 0 ] || find {shlex.quote(container.host_dir)} -path {shlex.quote(inputs)} '
                    "-prune -o -exec chown -h 1234:5678 {} + 2>/dev/null || true")
    assert line in container.task_script()
    if os.getuid() == 0:  # (as the task's root would run it: the files are the user's after, its inputs' are not)
        shared = tmp_path / "store" / "ref.txt"
        shared.parent.mkdir()
        shared.write_text("shared")
        os.makedirs(os.path.join(container.host_work_dir(), "sub"))
        open(os.path.join(container.host_work_dir(), "sub", "out.txt"), "w").write("x")
        os.makedirs(inputs)
        os.link(shared, os.path.join(inputs, "ref.txt"))
        assert subprocess.run(["sh", "-c", "rc=3\n" + line + "\nexit $rc\n"]).returncode == 3
        assert os.stat(os.path.join(container.host_work_dir(), "sub", "out.txt"))[4:6] == (1234, 5678)
        assert (shared.stat().st_uid, shared.stat().st_gid) == (0, 0)  # (the shared input: untouched)
    # through an access point every file is its POSIX user's already; chown = false turns it off
    monkeypatch.setattr(container.settings, "efs_access_point", "fsap-1")
    assert container.after_command() == []
