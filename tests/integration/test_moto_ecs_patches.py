"""The ECS fixes of local/moto/fixes.py (and the DescribeTasks fault of local/moto/hooks.py): what
they make moto do, and tests that fail once moto does it itself (then drop the fix)."""

import pytest
from botocore.exceptions import ClientError
from moto.ecs.responses import EC2ContainerServiceResponse

from miniwdl_fargate import aws
from miniwdl_fargate.local.moto.ecs_state import LOCAL_RUNTIME_AGENT
from miniwdl_fargate.local.moto import fixes, hooks, patching


@pytest.fixture
def ecs(moto_aws):
    fixes.run_task_client_token()
    fixes.task_lookup_by_key()
    hooks.describe_tasks_faults()  # (with fixes.describe_tasks_missing)
    client = aws.client("ecs")
    client.create_cluster(clusterName="c")
    client.register_task_definition(
        family="t", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        containerDefinitions=[{"name": "task", "image": "ubuntu"}],
    )
    return client


def run(ecs, token, command="true"):
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    return ecs.run_task(
        cluster="c", taskDefinition="t", launchType="FARGATE", clientToken=token,
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}},
        overrides={"containerOverrides": [{"name": "task", "command": [command]}]},
    )["tasks"]


def test_the_same_client_token_returns_the_same_task(ecs):
    first = run(ecs, "token-1")
    again = run(ecs, "token-1")
    assert [t["taskArn"] for t in again] == [t["taskArn"] for t in first]
    assert len(ecs.list_tasks(cluster="c")["taskArns"]) == 1
    assert run(ecs, "token-2")[0]["taskArn"] != first[0]["taskArn"]
    with pytest.raises(ClientError, match="ConflictException"):
        run(ecs, "token-1", command="other")


def test_moto_itself_still_ignores_client_tokens(ecs, monkeypatch):
    monkeypatch.setattr(
        EC2ContainerServiceResponse, "run_task",
        patching.unpatched("run_task_client_token", EC2ContainerServiceResponse, "run_task"),
    )
    run(ecs, "token-1")
    run(ecs, "token-1")
    # when this fails, moto honours clientToken: drop fixes.run_task_client_token
    assert len(ecs.list_tasks(cluster="c")["taskArns"]) == 2


def test_describe_tasks_reports_unknown_tasks_missing(ecs):
    (task,) = run(ecs, "t")
    gone = task["taskArn"].rsplit("/", 1)[0] + "/0123456789abcdef"
    answer = ecs.describe_tasks(cluster="c", tasks=[task["taskArn"], gone])
    assert [t["taskArn"] for t in answer["tasks"]] == [task["taskArn"]]
    assert answer["failures"] == [{"arn": gone, "reason": "MISSING"}]


def test_moto_itself_still_leaves_unknown_tasks_out(ecs, monkeypatch):
    monkeypatch.setattr(
        EC2ContainerServiceResponse, "describe_tasks",
        patching.unpatched("describe_tasks_missing", EC2ContainerServiceResponse, "describe_tasks"),
    )
    (task,) = run(ecs, "t")
    gone = task["taskArn"].rsplit("/", 1)[0] + "/0123456789abcdef"
    # when this fails, moto reports MISSING itself: drop fixes.describe_tasks_missing
    assert ecs.describe_tasks(cluster="c", tasks=[gone])["failures"] == []


def test_describe_tasks_looks_up_each_name_in_the_named_cluster_only(ecs):
    (task,) = run(ecs, "t")
    arn = task["taskArn"]
    task_id = arn.rsplit("/", 1)[-1]
    ecs.create_cluster(clusterName="other")
    answer = ecs.describe_tasks(cluster="c", tasks=[arn, task_id, task_id[:8], f"c/{task_id}"])
    assert [t["taskArn"] for t in answer["tasks"]] == [arn]  # (named twice: described once)
    assert answer["failures"] == [{"arn": task_id[:8], "reason": "MISSING"}, {"arn": f"c/{task_id}", "reason": "MISSING"}]
    elsewhere = ecs.describe_tasks(cluster="other", tasks=[arn, task_id])
    assert elsewhere["tasks"] == [] and [f["arn"] for f in elsewhere["failures"]] == [arn, task_id]


def test_a_task_stopped_an_hour_ago_is_forgotten_with_its_client_token(ecs, monkeypatch):
    """ECS shows a stopped task for at least an hour (DescribeTasks); local mode forgets it then,
    and the tokens of the tasks it forgot, so a stack that stays up does not keep every task."""
    from moto.ecs.models import ecs_backends

    from miniwdl_fargate.local.moto import ecs_state

    monkeypatch.setattr(fixes, "TOKENS_KEPT", 1)  # (every RunTask looks for tokens to forget)
    now = [0.0]
    state = ecs_state.MotoTaskState("us-east-1", clock=lambda: now[0])
    backend = ecs_backends["123456789012"]["us-east-1"]

    def started(token):
        (task,) = run(ecs, token)
        state.register(backend.tasks["c"][task["taskArn"]])  # (as moto.hooks does at each RunTask)
        state.provisioning(task["taskArn"])
        return task["taskArn"]

    old = started("old")
    state.stopped(old, "EssentialContainerExited", "Essential container in task exited", exit_code=0)
    now[0] = ecs_state.STOPPED_TASKS_KEPT_SECONDS - 1
    kept = started("kept")
    assert ecs.describe_tasks(cluster="c", tasks=[old])["tasks"][0]["lastStatus"] == "STOPPED"
    assert run(ecs, "old")[0]["taskArn"] == old  # (its token still answers with it)
    now[0] = ecs_state.STOPPED_TASKS_KEPT_SECONDS
    ec2 = aws.client("ec2")
    (attachment,) = ecs.describe_tasks(cluster="c", tasks=[old])["tasks"][0]["attachments"]
    (eni,) = [d["value"] for d in attachment["details"] if d["name"] == "networkInterfaceId"]
    assert ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"]
    newer = started("newer")
    assert ecs.describe_tasks(cluster="c", tasks=[old])["failures"] == [{"arn": old, "reason": "MISSING"}]
    assert eni not in [i["NetworkInterfaceId"] for i in ec2.describe_network_interfaces()["NetworkInterfaces"]]
    assert sorted(ecs.list_tasks(cluster="c")["taskArns"]) == sorted([kept, newer])
    assert state.forget_stopped() == 0 and state.last_status(old) is None and state.last_status(kept) == "PROVISIONING"
    # and moto lets go of it: a forgotten task was still in moto's instances_tracked, for good
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface
    from moto.ecs.models import Container, Task

    assert old not in [t.task_arn for t in Task.instances_tracked] and kept in [t.task_arn for t in Task.instances_tracked]
    assert not [c for c in Container.instances_tracked if getattr(c, "task_arn", None) == old]
    assert eni not in [n.id for n in NetworkInterface.instances_tracked]
    again = started("old")  # the token went with its task: a new task
    assert again != old and sorted(ecs.list_tasks(cluster="c")["taskArns"]) == sorted([kept, newer, again])
    started("last")
    kept_tokens = backend._miniwdl_fargate_client_tokens
    assert sorted(token for _cluster, token in kept_tokens) == ["kept", "last", "newer", "old"]
    assert kept_tokens[("c", "old")][1] == [again]


def test_describing_a_running_task_leaves_moto_nothing_more_to_keep(ecs):
    """A DescribeTasks answer is a copy of each task (``ecs_state.snapshot``); copy.copy makes it
    through moto's BaseModel.__new__, which keeps every instance in its class's
    instances_tracked: a local stack grew by about 0.7 MB per task-minute (five copies a second
    of each running task)."""
    from moto.ecs.models import Container, Task

    (task,) = run(ecs, "watched")
    before = (len(Task.instances_tracked), len(Container.instances_tracked))
    for _ in range(20):
        assert ecs.describe_tasks(cluster="c", tasks=[task["taskArn"]])["tasks"]
    assert (len(Task.instances_tracked), len(Container.instances_tracked)) == before


def test_moto_itself_still_keeps_every_copy_of_a_model(moto_aws):
    """When this fails, moto no longer tracks every model object it makes (``moto.tracking``):
    local mode's untracked copies and its untracking of forgotten tasks can go."""
    import copy

    from moto.ecs.models import Task

    from miniwdl_fargate.local.moto.tracking import untracked_copy

    some = object.__new__(Task)
    before = len(Task.instances_tracked)
    copied = copy.copy(some)
    assert len(Task.instances_tracked) == before + 1 and Task.instances_tracked[-1] is copied
    untracked_copy(some)
    assert len(Task.instances_tracked) == before + 1


def test_moto_itself_still_describes_tasks_of_other_clusters(ecs, monkeypatch):
    from moto.ecs.models import EC2ContainerServiceBackend

    monkeypatch.setattr(
        EC2ContainerServiceBackend, "describe_tasks",
        patching.unpatched("task_lookup_by_key", EC2ContainerServiceBackend, "describe_tasks"),
    )
    (task,) = run(ecs, "t")
    ecs.create_cluster(clusterName="other")
    # when this fails, moto looks in the named cluster only (then check that it looks tasks up by
    # key, not by scanning them all, and drop fixes.task_lookup_by_key)
    assert [t["taskArn"] for t in ecs.describe_tasks(cluster="other", tasks=[task["taskArn"]])["tasks"]] == [task["taskArn"]]


def test_a_new_wdl_task_is_missing_for_its_first_describes_but_not_to_ecs_itself(ecs, monkeypatch):
    import boto3
    import botocore.config
    from types import SimpleNamespace

    from miniwdl_fargate.local.faults import Faults

    monkeypatch.setitem(hooks._current, "runtime", SimpleNamespace(faults=Faults(describe_missing=2)))
    (task,) = run(ecs, "t")
    arn = task["taskArn"]
    itself = boto3.client("ecs", config=botocore.config.Config(user_agent_extra=LOCAL_RUNTIME_AGENT))
    assert [t["taskArn"] for t in itself.describe_tasks(cluster="c", tasks=[arn])["tasks"]] == [arn]
    answers = [ecs.describe_tasks(cluster="c", tasks=[arn]) for _ in range(3)]
    assert [a["failures"] for a in answers[:2]] == [[{"arn": arn, "reason": "MISSING"}]] * 2
    assert [t["taskArn"] for t in answers[2]["tasks"]] == [arn] and answers[2]["failures"] == []


def test_moto_itself_still_needs_container_memory():
    """When this fails, moto runs a Fargate task whose container has no memory of its own: remove
    fixes.ecs_resource_requirements."""
    from types import SimpleNamespace

    from moto.ecs.models import EC2ContainerServiceBackend

    own = patching.unpatched("ecs_resource_requirements", EC2ContainerServiceBackend, "_calculate_task_resource_requirements")
    task_definition = SimpleNamespace(container_definitions=[{"name": "task", "image": "ubuntu"}])
    with pytest.raises(TypeError):
        getattr(own, "__func__", own)(task_definition)
    fixes.ecs_resource_requirements()
    assert EC2ContainerServiceBackend._calculate_task_resource_requirements(task_definition)["MEMORY"] == 0


def test_an_answer_never_shows_half_of_one_write_of_the_runner(ecs):
    """The runner writes a task's end in several attributes (exit code, stop code, status); moto
    serializes DescribeTasks after its handler returns, containers before lastStatus. An answer is
    a copy taken under ecs_state.WRITE_LOCK, so it shows a write whole or not at all (a driver once
    saw STOPPED without the exit code written just before it, and failed the task)."""
    import concurrent.futures

    from moto.ecs.models import ecs_backends

    from miniwdl_fargate.local.moto import ecs_state

    (task,) = run(ecs, "half")
    arn = task["taskArn"]
    (moto_task,) = [t for t in ecs_backends["123456789012"]["us-east-1"].tasks["c"].values() if t.task_arn == arn]
    state = ecs_state.MotoTaskState("us-east-1")
    state.register(moto_task)
    state.provisioning(arn)
    state.set_status(arn, "RUNNING")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with ecs_state.WRITE_LOCK:  # a write in progress: the exit code is there, STOPPED not yet
            moto_task.containers[0].exitCode = 0
            answer = pool.submit(ecs.describe_tasks, cluster="c", tasks=[arn])
            moto_task.stop_code, moto_task.stopped_reason = "EssentialContainerExited", "Essential container in task exited"
            moto_task.status = "STOPPED"
            for container in moto_task.containers:
                container.last_status = "STOPPED"
        described = answer.result()["tasks"][0]
    assert (described["lastStatus"], described["containers"][0].get("exitCode")) == ("STOPPED", 0)
    assert described["stopCode"] == "EssentialContainerExited"


def test_a_snapshot_is_its_own_copy(ecs):
    from moto.ecs.models import ecs_backends

    from miniwdl_fargate.local.moto import ecs_state

    run(ecs, "copy")
    (moto_task,) = ecs_backends["123456789012"]["us-east-1"].tasks["c"].values()
    before = (moto_task.last_status, moto_task.containers[0].exitCode)
    copied = ecs_state.snapshot(moto_task)
    moto_task.containers[0].exitCode = 3
    moto_task.status = "STOPPED"
    assert copied.containers[0] is not moto_task.containers[0]
    assert (copied.last_status, copied.containers[0].exitCode) == before != ("STOPPED", 3)


# -- tasks beyond Fargate: managed instances, EBS volumes configured at launch, image digests -------

MANAGED = dict(
    family="mi", requiresCompatibilities=["MANAGED_INSTANCES"], networkMode="awsvpc", cpu="32768", memory="131072",
    containerDefinitions=[{
        "name": "task", "image": "ubuntu:22.04", "resourceRequirements": [{"type": "GPU", "value": "1"}],
        "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/mnt/scratch"}],
    }],
    volumes=[{"name": "scratch", "configuredAtLaunch": True}],
)
SCRATCH = [{"name": "scratch", "managedEBSVolume": {
    "sizeInGiB": 500, "volumeType": "gp3", "roleArn": "arn:aws:iam::123456789012:role/volumes",
    "terminationPolicy": {"deleteOnTermination": True},
}}]


def run_managed(ecs, provider="c-managed", **extra):
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    ecs.register_task_definition(**MANAGED)
    if not any(c["clusterName"] == "other" for c in ecs.describe_clusters(clusters=["other"])["clusters"]):
        ecs.create_cluster(clusterName="other")
        fixes.managed_instances_provider("c-managed", "c")
        fixes.managed_instances_provider("other-managed", "other")
    return ecs.run_task(
        cluster="c", taskDefinition="mi", capacityProviderStrategy=[{"capacityProvider": provider, "weight": 1}],
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}}, **extra,
    )["tasks"]


def test_a_managed_instances_task_runs_on_its_capacity_provider(ecs):
    fixes.ecs_managed_instances()
    (task,) = run_managed(ecs)
    assert task["capacityProviderName"] == "c-managed"
    described = ecs.describe_tasks(cluster="c", tasks=[task["taskArn"]])["tasks"][0]
    assert described["capacityProviderName"] == "c-managed"


@pytest.mark.parametrize("provider, said", [
    ("no-such-provider", "is not a Managed Instances capacity provider of cluster c"),
    ("other-managed", "not associated with the cluster: other-managed"),
])
def test_a_managed_instances_task_needs_a_provider_of_its_own_cluster(ecs, provider, said):
    """As ECS: a Managed Instances provider belongs to the one cluster it was made for."""
    fixes.ecs_managed_instances()
    with pytest.raises(ClientError, match=said) as info:
        run_managed(ecs, provider)
    assert info.value.response["Error"]["Code"] == "InvalidParameterException"


def test_moto_itself_still_wants_container_instances_for_managed_instances(ecs, monkeypatch):
    from moto.ecs.models import EC2ContainerServiceBackend

    fixes.ecs_managed_instances()
    monkeypatch.setattr(
        EC2ContainerServiceBackend, "run_task",
        patching.unpatched("ecs_managed_instances", EC2ContainerServiceBackend, "run_task"),
    )
    # when this fails, moto runs Managed Instances tasks itself: drop fixes.ecs_managed_instances
    with pytest.raises(Exception, match="No instances found in cluster c"):  # (moto raises it as is, in process)
        run_managed(ecs)


def test_a_tasks_volume_configurations_are_kept_and_at_hand_while_its_run_task_is_handled(ecs, monkeypatch):
    from moto.ecs.models import EC2ContainerServiceBackend

    fixes.ecs_managed_instances()
    fixes.run_task_volume_configurations()
    seen = []
    moto_run_task = EC2ContainerServiceBackend.run_task

    def watching(self, *args, **kwargs):  # what local mode's runner is given (hooks.task_spec)
        seen.append(fixes.requested("volumeConfigurations"))
        return moto_run_task(self, *args, **kwargs)

    monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", watching)
    (task,) = run_managed(ecs, volumeConfigurations=SCRATCH)
    assert seen == [SCRATCH]
    assert fixes.requested("volumeConfigurations") == []  # (only while the request is handled)
    stored = next(iter(aws_tasks(task["taskArn"])))
    assert stored.volume_configurations == SCRATCH


def aws_tasks(arn):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ecs.models import ecs_backends

    return [t for tasks in ecs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tasks.values() for a, t in tasks.items() if a == arn]


def moto_own(owner, attribute):
    """moto's own ``owner.attribute``, under however many patches of ours."""
    for candidate in [vars(owner).get(attribute)] + [saved.get(attribute) for saved in patching.originals.values()]:
        function = getattr(candidate, "__func__", candidate)
        if function is not None and function.__module__.startswith("moto."):
            return function
    raise AssertionError(f"moto's own {owner.__name__}.{attribute} not found")


def test_moto_itself_still_drops_volume_configurations():
    import inspect

    from moto.ecs.models import EC2ContainerServiceBackend

    fixes.run_task_volume_configurations()
    # when this fails, moto's RunTask takes volumeConfigurations: drop fixes.run_task_volume_configurations
    assert "volumeConfigurations" not in inspect.getsource(moto_own(EC2ContainerServiceResponse, "run_task"))
    assert not any("volume" in name for name in inspect.signature(moto_own(EC2ContainerServiceBackend, "run_task")).parameters)


def test_each_container_reports_the_digest_of_its_image(ecs):
    fixes.ecs_image_digest()
    (task,) = run(ecs, "digest")
    (container,) = ecs.describe_tasks(cluster="c", tasks=[task["taskArn"]])["tasks"][0]["containers"]
    assert container["imageDigest"] == fixes.local_image_digest("ubuntu")
    assert container["imageDigest"].startswith("sha256:") and len(container["imageDigest"]) == len("sha256:") + 64


def test_moto_itself_still_gives_no_image_digest(ecs, monkeypatch):
    from moto.ecs.models import EC2ContainerServiceBackend

    fixes.ecs_image_digest()
    monkeypatch.setattr(
        EC2ContainerServiceBackend, "run_task", patching.unpatched("ecs_image_digest", EC2ContainerServiceBackend, "run_task"),
    )
    (task,) = run(ecs, "no-digest")
    # when this fails, moto reports image digests: drop fixes.ecs_image_digest
    assert "imageDigest" not in ecs.describe_tasks(cluster="c", tasks=[task["taskArn"]])["tasks"][0]["containers"][0]


def long_overrides(ecs, chars):
    """RunTask whose overrides are ``chars`` characters of compact JSON."""
    import json

    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    overrides = {"containerOverrides": [{"name": "task", "command": [""]}]}
    overrides["containerOverrides"][0]["command"] = ["x" * (chars - len(json.dumps(overrides, separators=(",", ":"))))]
    assert len(json.dumps(overrides, separators=(",", ":"))) == chars
    return ecs.run_task(
        cluster="c", taskDefinition="t", launchType="FARGATE", overrides=overrides,
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}},
    )["tasks"]


def test_moto_itself_still_takes_overrides_of_any_length(ecs, monkeypatch):
    """When this fails, moto refuses RunTask overrides over 8,192 characters itself: remove
    fixes.run_task_overrides_length."""
    monkeypatch.setattr(EC2ContainerServiceResponse, "run_task",
                        patching.unpatched("run_task_overrides_length", EC2ContainerServiceResponse, "run_task"))
    assert len(long_overrides(ecs, fixes.RUN_TASK_OVERRIDES_CHARS + 1)) == 1


def test_run_task_overrides_over_8192_characters_are_refused_as_ecs_refuses_them(ecs):
    fixes.run_task_overrides_length()
    with pytest.raises(ClientError, match="InvalidParameterException") as refused:
        long_overrides(ecs, fixes.RUN_TASK_OVERRIDES_CHARS + 1)
    assert "Container Overrides length must be at most 8192" in str(refused.value)
    assert ecs.list_tasks(cluster="c")["taskArns"] == []
    assert len(long_overrides(ecs, fixes.RUN_TASK_OVERRIDES_CHARS)) == 1


def started_and_one_stopped(ecs):
    """Two tasks started by "run-1", one of them stopped."""
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    arns = [ecs.run_task(
        cluster="c", taskDefinition="t", launchType="FARGATE", startedBy="run-1", clientToken=f"s-{i}",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}},
    )["tasks"][0]["taskArn"] for i in range(2)]
    ecs.stop_task(cluster="c", task=arns[1], reason="done")
    return arns


def test_moto_itself_still_lists_by_started_by_with_other_filters_and_stopped_tasks_by_default(ecs, monkeypatch):
    """When this fails, moto refuses startedBy with other filters and lists RUNNING tasks by
    default itself: remove fixes.list_tasks_filters."""
    monkeypatch.setattr(EC2ContainerServiceResponse, "list_tasks",
                        patching.unpatched("list_tasks_filters", EC2ContainerServiceResponse, "list_tasks"))
    arns = started_and_one_stopped(ecs)
    assert ecs.list_tasks(cluster="c", startedBy="run-1", family="t", desiredStatus="RUNNING")["taskArns"] == arns[:1]
    assert sorted(ecs.list_tasks(cluster="c")["taskArns"]) == sorted(arns)


def test_list_tasks_takes_started_by_alone_and_lists_running_tasks_unless_asked(ecs):
    fixes.list_tasks_filters()
    running, stopped = started_and_one_stopped(ecs)
    for other in ({"family": "t"}, {"desiredStatus": "RUNNING"}, {"launchType": "FARGATE"}):
        with pytest.raises(ClientError, match="InvalidParameterException") as refused:
            ecs.list_tasks(cluster="c", startedBy="run-1", **other)
        assert "cannot specify startedBy with other arguments" in str(refused.value)
    assert ecs.list_tasks(cluster="c", startedBy="run-1")["taskArns"] == [running]
    assert ecs.list_tasks(cluster="c")["taskArns"] == [running]
    assert ecs.list_tasks(cluster="c", family="t", desiredStatus="STOPPED")["taskArns"] == [stopped]
