"""A WDL task mounts only its run's directory: each run gets its own EFS access point (rooted at
``<stack access point root>/runs/<run id>``) and its own task definitions, mounted at the path
the driver sees the run at, all removed when the run ends. Requests checked against botocore's
ECS and EFS models and moto."""

import json
import logging
import os

import botocore.session
import pytest
from botocore.validate import ParamValidator
from WDL.runtime import config as wdl_config

from miniwdl_fargate import aws
from miniwdl_fargate.backend import fargate
from miniwdl_fargate.backend.fargate import FargateTaskContainer, RunVolumeError
from tests.integration.test_fargate_backend import runtime

SESSION = botocore.session.get_session()
LOG = logging.getLogger("test")
IMAGE = "biocontainers/bwa:0.7.17"


def validate(service, operation, params):
    model = SESSION.get_service_model(service).operation_model(operation).input_shape
    report = ParamValidator().validate(params, model)
    assert not report.has_errors(), report.generate_report()


@pytest.fixture
def stack_efs(moto_aws, tmp_path, monkeypatch):
    """A filesystem and the stack's access point (as template.yaml makes them), and the
    backend set up in a run's driver (its run id set, as the driver sets it)."""
    ec2 = aws.client("ec2")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"][:2]]
    ec2.create_security_group(GroupName="aegea.efs", Description="efs")
    aws.client("ecs").create_cluster(clusterName="wdl")
    efs = aws.client("efs")
    fs_id = efs.create_file_system(CreationToken="t")["FileSystemId"]
    stack_ap = efs.create_access_point(
        FileSystemId=fs_id, PosixUser={"Uid": 1000, "Gid": 1000},
        RootDirectory={"Path": "/miniwdl", "CreationInfo": {"OwnerUid": 1000, "OwnerGid": 1000, "Permissions": "0755"}},
    )["AccessPointId"]
    mount = tmp_path / "efs"
    env = {
        "CLUSTER": "wdl", "SUBNETS": ",".join(subnets), "EFS_ID": fs_id, "EFS_ACCESS_POINT": stack_ap,
        "EFS_MOUNTPOINT": str(mount), "PROVISION": "false", "POLL_INTERVAL": "0.1", "LOG_GROUP": "",
    }
    for key, value in env.items():
        monkeypatch.setenv(f"MINIWDL__AWS_FARGATE__{key}", value)
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__RUN_ID", "align-3f2a9c01")
    monkeypatch.setattr(fargate, "REGISTER_INTERVAL", 0.0)
    FargateTaskContainer._task_definitions.clear()
    FargateTaskContainer._run_volume = None
    FargateTaskContainer._run_volume_failure = None
    cfg = wdl_config.Loader(LOG, filenames=[])
    FargateTaskContainer.global_init(cfg, LOG)

    def task(run_id, name="call-align"):
        host_dir = mount / "runs" / run_id / name
        os.makedirs(host_dir)
        container = FargateTaskContainer(cfg, name, str(host_dir))
        container.process_runtime(LOG, runtime(docker=IMAGE))
        return container

    yield task, stack_ap, str(mount)
    FargateTaskContainer._task_definitions.clear()
    FargateTaskContainer._run_volume = None
    FargateTaskContainer._run_volume_failure = None


def volume_of(arn):
    td = aws.client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
    return td["volumes"][0]["efsVolumeConfiguration"], td["containerDefinitions"][0]["mountPoints"][0]


def test_a_runs_tasks_mount_only_the_runs_directory_at_the_drivers_path(stack_efs):
    task, stack_ap, mount = stack_efs
    container = task("align-3f2a9c01")
    request = container.run_task_request(LOG, container.task_script())
    validate("ecs", "RunTask", request)
    volume = FargateTaskContainer.run_volume(LOG, "align-3f2a9c01")
    validate("ecs", "RegisterTaskDefinition", {"family": "f", **FargateTaskContainer.task_definition_spec(IMAGE, volume)})
    efs_config, mount_point = volume_of(request["taskDefinition"])
    run_ap = efs_config["authorizationConfig"]["accessPointId"]
    assert run_ap != stack_ap and efs_config.get("rootDirectory", "/") == "/"
    assert mount_point["containerPath"] == f"{mount}/runs/align-3f2a9c01"
    described = aws.client("efs").describe_access_points(AccessPointId=run_ap)["AccessPoints"][0]
    assert described["RootDirectory"]["Path"] == "/miniwdl/runs/align-3f2a9c01"
    assert described["PosixUser"]["Uid"] == 1000 and described["PosixUser"]["Gid"] == 1000
    assert {"Key": "miniwdl-fargate:run", "Value": "align-3f2a9c01"} in described["Tags"]
    # the same run and image: one task definition, one access point, however many tasks
    again = task("align-3f2a9c01", "call-again").run_task_request(LOG, "true")
    assert again["taskDefinition"] == request["taskDefinition"]
    assert len(aws.client("efs").describe_access_points(FileSystemId=efs_config["fileSystemId"])["AccessPoints"]) == 2


def test_a_file_system_full_of_access_points_fails_the_run_saying_so(stack_efs, monkeypatch):
    """EFS allows 10,000 access points a file system: AccessPointLimitExceeded is said as what it
    is, not as a raw AWS error on every task of the run."""
    from botocore.stub import Stubber

    from miniwdl_fargate.backend.fargate import RunVolumeError

    task, stack_ap, _ = stack_efs
    efs = aws.client("efs")
    base = efs.describe_access_points(AccessPointId=stack_ap)
    with Stubber(efs) as stub:
        stub.add_response("describe_access_points", base, {"AccessPointId": stack_ap})
        stub.add_client_error("create_access_point", "AccessPointLimitExceeded", "You have reached the maximum number of access points")
        with pytest.raises(RunVolumeError, match="holds as many access points as EFS allows: too many runs at once"):
            FargateTaskContainer.run_volume(LOG, "full-3f2a9c01")


def test_the_create_access_point_request_matches_the_efs_model(stack_efs):
    base = {"RootDirectory": {"Path": "/miniwdl"}, "PosixUser": {"Uid": 1000, "Gid": 1000}}
    request = FargateTaskContainer.run_access_point_request(base, "align-3f2a9c01")
    validate("efs", "CreateAccessPoint", request)
    assert request["RootDirectory"] == {"Path": "/miniwdl/runs/align-3f2a9c01"}


def test_a_run_directory_too_long_for_an_access_point_root_is_a_clear_error(stack_efs):
    base = {"RootDirectory": {"Path": "/a/b/c"}}
    with pytest.raises(RunVolumeError, match="at most 100 characters and 4 levels"):
        FargateTaskContainer.run_access_point_request(base, "x" * 60 + "-3f2a9c01")


def test_another_run_gets_its_own_access_point_and_task_definition(stack_efs, monkeypatch):
    task, _, mount = stack_efs
    first = task("align-3f2a9c01").run_task_request(LOG, "true")["taskDefinition"]
    first_efs, _ = volume_of(first)  # (before the run ends: its task definitions are deleted then)
    FargateTaskContainer.release_run(LOG)
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__RUN_ID", "other-0badcafe")
    second = task("other-0badcafe").run_task_request(LOG, "true")["taskDefinition"]
    assert first != second
    second_efs, second_mount = volume_of(second)
    assert first_efs["authorizationConfig"]["accessPointId"] != second_efs["authorizationConfig"]["accessPointId"]
    assert second_mount["containerPath"] == f"{mount}/runs/other-0badcafe"


def test_the_end_of_a_run_deregisters_and_deletes_its_task_definitions_and_deletes_its_access_point(stack_efs, monkeypatch):
    task, stack_ap, _ = stack_efs
    arn = task("align-3f2a9c01").run_task_request(LOG, "true")["taskDefinition"]
    run_ap = volume_of(arn)[0]["authorizationConfig"]["accessPointId"]
    ecs, efs = aws.client("ecs"), aws.client("efs")
    calls = []
    ecs.meta.events.register("provide-client-params.ecs.*", lambda params, model, **_: calls.append(model.name))
    monkeypatch.setattr(aws, "client", lambda service, **kw: ecs if service == "ecs" else efs)
    FargateTaskContainer.release_run(LOG)
    # deregistered (INACTIVE), then deleted: an INACTIVE revision would stay in the account for ever
    assert calls == ["DeregisterTaskDefinition", "DeleteTaskDefinitions"]
    # (DELETE_IN_PROGRESS while a task uses it, then gone: listed neither ACTIVE nor INACTIVE)
    listed = [a for status in ("ACTIVE", "INACTIVE") for a in ecs.list_task_definitions(status=status)["taskDefinitionArns"]]
    assert arn not in listed
    remaining = [ap["AccessPointId"] for ap in efs.describe_access_points()["AccessPoints"]]
    assert run_ap not in remaining and stack_ap in remaining


class CreatingThenAvailable:
    """An EFS client whose new access point is ``creating`` for a few describes."""

    def __init__(self, describes_creating):
        self.left = describes_creating
        self.calls = 0

    def describe_access_points(self, AccessPointId):
        self.calls += 1
        self.left -= 1
        return {"AccessPoints": [{"AccessPointId": AccessPointId, "LifeCycleState": "creating" if self.left >= 0 else "available"}]}


def test_tasks_wait_until_the_runs_access_point_is_available(monkeypatch):
    monkeypatch.setattr(fargate.time, "sleep", lambda seconds: None)
    efs = CreatingThenAvailable(2)
    FargateTaskContainer._wait_available(efs, "fsap-1", "creating")
    assert efs.calls == 3


def test_an_access_point_that_never_becomes_available_fails_the_run_clearly(monkeypatch):
    monkeypatch.setattr(fargate.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(fargate, "ACCESS_POINT_WAIT", -1.0)
    with pytest.raises(RunVolumeError, match="fsap-1 is creating, not available"):
        FargateTaskContainer._wait_available(CreatingThenAvailable(5), "fsap-1", "creating")


def test_the_runs_end_deletes_the_access_point_a_dead_driver_left(moto_aws):
    """Finalize (every end of a run) deletes the run's own access point if its driver died
    before it could: only that run's, never another run's nor the stack's."""
    from miniwdl_fargate import sweep
    from miniwdl_fargate.sweep import release_leftovers

    efs = aws.client("efs")
    fs_id = efs.create_file_system(CreationToken="leftovers")["FileSystemId"]

    def access_point(tags):
        return efs.create_access_point(
            FileSystemId=fs_id, RootDirectory={"Path": "/miniwdl"}, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
        )["AccessPointId"]

    stack = access_point({"Name": "stack"})
    dead = access_point({sweep.RUN_TAG: "run-dead", sweep.RUN_ACCESS_POINT_TAG: "true"})
    other = access_point({sweep.RUN_TAG: "run-other", sweep.RUN_ACCESS_POINT_TAG: "true"})
    not_ours = access_point({sweep.RUN_TAG: "run-dead"})  # tagged with the run, but not made for it
    release_leftovers(fs_id, "run-dead")
    left = {p["AccessPointId"] for p in efs.describe_access_points(FileSystemId=fs_id)["AccessPoints"]}
    assert left == {stack, other, not_ours} and dead not in left
    release_leftovers("", "run-other")  # (no file system configured: nothing to do, no error)
    release_leftovers("fs-00000000", "run-other")  # (an unknown file system: logged, never raised)


def test_a_run_volume_that_could_not_be_made_fails_every_task_at_once_and_leaves_nothing(stack_efs, monkeypatch):
    """An access point that never becomes available is deleted, and the run's later tasks get
    the same error at once instead of each creating (and waiting for) another one."""
    task, stack_ap, _ = stack_efs
    monkeypatch.setattr(fargate.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(fargate, "ACCESS_POINT_WAIT", -1.0)
    efs = aws.client("efs")
    created = []
    real_create = efs.create_access_point

    def create_stuck(**request):
        made = real_create(**request)
        created.append(made["AccessPointId"])
        return {**made, "LifeCycleState": "creating"}

    monkeypatch.setattr(aws.client("efs"), "create_access_point", create_stuck)
    monkeypatch.setattr(
        aws.client("efs"), "describe_access_points",
        lambda **kw: {"AccessPoints": [{"AccessPointId": kw.get("AccessPointId", stack_ap), "LifeCycleState": "creating",
                                         "RootDirectory": {"Path": "/miniwdl"}, "PosixUser": {"Uid": 1000, "Gid": 1000}}]},
    )
    for _task in ("call-a", "call-b", "call-c"):  # three tasks of the run
        with pytest.raises(RunVolumeError, match="not available"):
            FargateTaskContainer.run_volume(LOG, "align-3f2a9c01")
    assert len(created) == 1  # made (and failed) once for the run
    monkeypatch.undo()
    left = {p["AccessPointId"] for p in efs.describe_access_points(FileSystemId=FargateTaskContainer.settings.efs_id)["AccessPoints"]}
    assert created[0] not in left and stack_ap in left


def test_a_stopped_driver_releases_its_runs_access_point(moto_aws):
    """The driver's STOPPED event (a real payload) releases the access point of its run when the
    driver could not (killed, or its run cancelled: then finalize never runs)."""
    import json
    from pathlib import Path

    from aws_lambda_powertools.utilities.parser import parse
    from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

    from miniwdl_fargate import sweep
    from miniwdl_fargate.pipeline import driver_outcome

    class Stopped(EventBridgeModel):
        detail: driver_outcome.EcsTaskStateChange

    event = json.loads((Path(__file__).parents[1] / "events" / "ecs_driver_stopped.json").read_text())
    detail = parse(event=event, model=Stopped).detail
    aws.client("s3").create_bucket(Bucket="miniwdl-fargate-runsbucket-example")  # (no outputs.json: a dead driver)
    efs = aws.client("efs")
    fs_id = efs.create_file_system(CreationToken="stopped")["FileSystemId"]

    def access_point(driver: str = "") -> str:
        tags = {sweep.RUN_TAG: "hello-1a2b3c4d", sweep.RUN_ACCESS_POINT_TAG: "true"} | ({sweep.DRIVER_TAG: driver} if driver else {})
        return efs.create_access_point(
            FileSystemId=fs_id, RootDirectory={"Path": "/miniwdl/runs/hello-1a2b3c4d"},
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )["AccessPointId"]

    left = access_point(detail.taskArn)
    untagged = access_point()  # (made before access points carried their driver: released as before)
    next_attempt = access_point(detail.taskArn.rsplit("/", 1)[0] + "/5c1d0b8e9f7a4e2b8c3d4e5f6a7b8c9d")
    driver_outcome.send_outcome(detail, "driver", "", fs_id)  # (the task token is not waited on here: a duplicate)
    remaining = {p["AccessPointId"] for p in efs.describe_access_points(FileSystemId=fs_id)["AccessPoints"]}
    # the run's next attempt (its own driver, launched after this one was stopped) keeps its access
    # point: this driver's STOPPED event may come late, while that driver's tasks mount it
    assert remaining == {next_attempt} and left not in remaining and untagged not in remaining


def test_the_runs_access_point_carries_the_runs_tags_within_50(stack_efs, monkeypatch):
    """Its storage is the run's: the access point is tagged with the run's labels, name and workflow
    (``[aws_fargate] tags``) beside its own three, 50 at most."""
    task, _, _ = stack_efs
    labels = {f"label{i}": "v" for i in range(45)}
    tags = {"miniwdl-fargate:run-name": "align", "miniwdl-fargate:workflow": "align", **labels}
    base = {"RootDirectory": {"Path": "/miniwdl"}, "PosixUser": {"Uid": 1000, "Gid": 1000}}
    driver = "arn:aws:ecs:us-east-1:123456789012:task/wdl/0f9de17bbe5a4c4c8fb2ac3e7f8a3c1d"
    request = FargateTaskContainer.run_access_point_request(base, "align-3f2a9c01", tags, driver)
    validate("efs", "CreateAccessPoint", request)
    assert len(request["Tags"]) == 50  # (the console's Name left out: the driver's tag matters more)
    assert {t["Key"]: t["Value"] for t in request["Tags"]}["miniwdl-fargate:driver"] == driver
    fewer = FargateTaskContainer.run_access_point_request(base, "align-3f2a9c01", {"project": "x"}, driver)
    assert {t["Key"]: t["Value"] for t in fewer["Tags"]}["Name"] == "miniwdl run align-3f2a9c01"
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__TAGS", json.dumps({"project": "rnaseq", "miniwdl-fargate:workflow": "align"}))
    container = task("align-3f2a9c01")
    efs_config, _ = volume_of(container.run_task_request(LOG, container.task_script())["taskDefinition"])
    ap = aws.client("efs").describe_access_points(AccessPointId=efs_config["authorizationConfig"]["accessPointId"])
    described = {t["Key"]: t["Value"] for t in ap["AccessPoints"][0]["Tags"]}
    assert described["project"] == "rnaseq" and described["miniwdl-fargate:workflow"] == "align"
    assert described["miniwdl-fargate:run"] == "align-3f2a9c01" and described["miniwdl-fargate:run-access-point"] == "true"
