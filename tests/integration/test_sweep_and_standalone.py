"""Sweeping orphaned tasks, stopping a run's tasks, and standalone set-up (aegea) against moto."""

import logging

import pytest
from WDL.runtime import config as wdl_config

from miniwdl_fargate.local.moto import fixes
from miniwdl_fargate import aws, runs, sweep
from miniwdl_fargate.backend import standalone
from miniwdl_fargate.config import FargateSettings

LOG = logging.getLogger("test")


@pytest.fixture
def cluster(moto_aws):
    fixes.list_tasks_filters()  # as ECS: startedBy alone, RUNNING by default
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="wdl")
    ecs.register_task_definition(
        family="driver", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        containerDefinitions=[{"name": "driver", "image": "d", "memory": 512}],
    )
    ecs.register_task_definition(
        family="task", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        containerDefinitions=[{"name": "task", "image": "t", "memory": 512}],
    )
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]

    def run(family, tags):
        return ecs.run_task(
            cluster="wdl", taskDefinition=family, launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}},
            tags=[{"key": k, "value": v} for k, v in tags.items()],
            # (as the backend and the launch step start a run's tasks and driver)
            **({"startedBy": runs.started_by(tags[sweep.RUN_TAG])} if sweep.RUN_TAG in tags else {}),
        )["tasks"][0]["taskArn"]

    return run


def test_tasks_of_a_stopped_driver_are_swept_and_a_live_drivers_are_kept(cluster):
    dead = cluster("driver", {sweep.RUN_TAG: "run-a"})
    alive = cluster("driver", {sweep.RUN_TAG: "run-b"})
    orphans = [cluster("task", {sweep.RUN_TAG: "run-a", sweep.DRIVER_TAG: dead}) for _ in range(3)]
    kept = [cluster("task", {sweep.RUN_TAG: "run-b", sweep.DRIVER_TAG: alive}) for _ in range(2)]
    standalone_task = cluster("task", {sweep.RUN_TAG: "standalone", sweep.DRIVER_TAG: "host:laptop:123"})
    aws.client("ecs").stop_task(cluster="wdl", task=dead, reason="driver crashed")

    stopped = sweep.sweep_orphans("wdl")

    assert sorted(stopped) == sorted(orphans)
    running = {t["taskArn"] for t in sweep.running_tasks("wdl")}
    assert running == {alive, *kept, standalone_task}  # a standalone driver cannot be checked: kept


def test_a_drivers_sweep_of_the_whole_cluster_is_paced(cluster, monkeypatch):
    """A driver's start looked at every task of the cluster at once (some 600 calls for ten runs
    of 3,000 tasks, taken from every other driver's polls); its calls are now spread out."""
    tasks = [cluster("task", {sweep.RUN_TAG: f"run-{n}"}) for n in range(3)]
    monkeypatch.setattr(sweep, "DESCRIBE_BATCH", 2)
    naps: list[float] = []
    monkeypatch.setattr(sweep.time, "sleep", naps.append)
    assert sorted(t["taskArn"] for t in sweep.running_tasks("wdl", pace=0.5)) == sorted(tasks)
    assert naps == [0.5, 0.5]  # (before each DescribeTasks of two: none before the first ListTasks page)


def test_stop_run_stops_every_task_of_the_run_but_the_excluded(cluster):
    driver = cluster("driver", {sweep.RUN_TAG: "run-a"})
    tasks = [cluster("task", {sweep.RUN_TAG: "run-a", sweep.DRIVER_TAG: driver}) for _ in range(2)]
    other = cluster("task", {sweep.RUN_TAG: "run-b", sweep.DRIVER_TAG: driver})
    stopped = sweep.stop_run("wdl", "run-a", "cancelled by the user", exclude=[driver])
    assert sorted(stopped) == sorted(tasks)
    assert {t["taskArn"] for t in sweep.running_tasks("wdl")} == {driver, other}
    described = aws.client("ecs").describe_tasks(cluster="wdl", tasks=tasks)["tasks"]
    assert {t["stoppedReason"] for t in described} == {"cancelled by the user"}


def test_stopping_a_run_describes_its_own_tasks_only(cluster, monkeypatch):
    """Each stop of a run (a cancel, a driver's end, DriverStopped, Finalize) described every
    task of the cluster: ten runs of 3,000 tasks, some 300 DescribeTasks a stop, against the
    account's ECS request rate every driver's polls share."""
    mine = [cluster("task", {sweep.RUN_TAG: "run-a"}) for _ in range(2)]
    others = [cluster("task", {sweep.RUN_TAG: f"run-{n}"}) for n in range(5)]
    ecs = aws.client("ecs")
    asked: list[str] = []
    real = ecs.describe_tasks
    monkeypatch.setattr(ecs, "describe_tasks", lambda **kw: asked.extend(kw["tasks"]) or real(**kw))
    assert sorted(sweep.stop_run("wdl", "run-a", "cancelled by the user")) == sorted(mine)
    assert sorted(asked) == sorted(mine)
    assert {t["taskArn"] for t in sweep.running_tasks("wdl")} == set(others)


def test_own_task_arn_comes_from_the_task_metadata_endpoint(tmp_path, monkeypatch):
    (tmp_path / "task").write_text('{"TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/wdl/abc"}')
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", f"file://{tmp_path}")
    assert sweep.own_task_arn() == "arn:aws:ecs:us-east-1:123456789012:task/wdl/abc"
    assert sweep.driver_identity() == "arn:aws:ecs:us-east-1:123456789012:task/wdl/abc"
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4")
    assert sweep.driver_identity().startswith("host:")


def test_efs_mount_is_found_by_walking_up_from_the_run_directory(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "proc /proc proc rw 0 0\n"
        "fs-0123abcd.efs.us-east-1.amazonaws.com:/ /mnt/efs nfs4 rw,vers=4.1 0 0\n"
        "127.0.0.1:/ /mnt/other nfs4 rw 0 0\n"
    )
    assert standalone.detect_efs_mount("/mnt/efs/work/runs/x", str(mounts)) == ("/mnt/efs", "fs-0123abcd")
    assert standalone.detect_efs_mount("/mnt/other/y", str(mounts)) == ("/mnt/other", "")
    with pytest.raises(RuntimeError, match="is not on an EFS \\(NFS\\) mount"):
        standalone.detect_efs_mount("/home/me/work", str(mounts))
    # a folder of the file system mounted alone: tasks mount the root there, so paths would differ
    mounts.write_text("fs-0123abcd:/projects /mnt/projects efs rw 0 0\n")
    with pytest.raises(RuntimeError, match=r"/mnt/projects is fs-0123abcd:/projects \(a folder of the file system, not its root\)"
                                           r".* run under /mnt/efs/projects"):
        standalone.detect_efs_mount("/mnt/projects/run", str(mounts))


def settings(monkeypatch, **env):
    for key, value in env.items():
        monkeypatch.setenv(f"MINIWDL__AWS_FARGATE__{key.upper()}", value)
    return FargateSettings.from_cfg(wdl_config.Loader(LOG, filenames=[]))


@pytest.fixture
def moto_with_managed_policies(monkeypatch):
    from moto import mock_aws

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.reset()
    with mock_aws(config={"iam": {"load_aws_managed_policies": True}}):
        yield
    aws.reset()


def test_aegea_provisions_what_standalone_use_needs(moto_with_managed_policies, monkeypatch):
    s = settings(monkeypatch, cluster="miniwdl", efs_id="fs-1", efs_mountpoint="/mnt/efs")
    assert s.provision and s.efs_security_group == "aegea.efs" and not s.subnets and not s.execution_role

    standalone.provision(s, LOG)

    ecs, ec2 = aws.client("ecs"), aws.client("ec2")
    cluster = ecs.describe_clusters(clusters=["miniwdl"])["clusters"][0]
    assert set(cluster["capacityProviders"]) == {"FARGATE", "FARGATE_SPOT"}
    groups = aws.client("logs").describe_log_groups(logGroupNamePrefix="miniwdl-fargate-tasks")["logGroups"]
    assert [g["logGroupName"] for g in groups] == ["miniwdl-fargate-tasks"]
    # (kept for good, every run's task output would bill its storage forever)
    assert groups[0]["retentionInDays"] == standalone.LOG_RETENTION_DAYS
    role = aws.client("iam").get_role(RoleName=standalone.EXECUTION_ROLE_NAME)["Role"]
    assert s.execution_role == role["Arn"]
    assert "ecs-tasks.amazonaws.com" in str(role["AssumeRolePolicyDocument"])
    attached = aws.client("iam").list_attached_role_policies(RoleName=standalone.EXECUTION_ROLE_NAME)
    assert [p["PolicyArn"] for p in attached["AttachedPolicies"]] == [
        "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
    ]
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(SubnetIds=s.subnets)["Subnets"]
    assert subnets and {x["VpcId"] for x in subnets} == {default_vpc}
    group = ec2.describe_security_groups(GroupIds=[s.efs_security_group])["SecurityGroups"][0]
    assert group["GroupName"] == "aegea.efs"
    nfs = [p for p in group["IpPermissions"] if p.get("FromPort") == 2049]
    assert nfs and nfs[0]["UserIdGroupPairs"][0]["GroupId"] == group["GroupId"]  # NFS from itself

    # a second run finds everything and changes nothing (a retention its owner chose included)
    aws.client("logs").put_retention_policy(logGroupName="miniwdl-fargate-tasks", retentionInDays=7)
    again = settings(monkeypatch, cluster="miniwdl", efs_id="fs-1", efs_mountpoint="/mnt/efs")
    standalone.provision(again, LOG)
    assert aws.client("logs").describe_log_groups(logGroupNamePrefix="miniwdl-fargate-tasks")["logGroups"][0]["retentionInDays"] == 7
    assert again.efs_security_group == s.efs_security_group and again.execution_role == s.execution_role
    assert len(ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["aegea.efs"]}])["SecurityGroups"]) == 1


def test_without_provisioning_a_missing_security_group_is_a_clear_error(moto_aws):
    with pytest.raises(RuntimeError, match="security group 'aegea.efs' not found; create it"):
        standalone.resolve_security_group("aegea.efs")


def test_sweep_command_lists_then_stops_orphans(cluster, capsys):
    from miniwdl_fargate.cli import main

    dead = cluster("driver", {sweep.RUN_TAG: "run-a"})
    orphan = cluster("task", {sweep.RUN_TAG: "run-a", sweep.DRIVER_TAG: dead})
    aws.client("ecs").stop_task(cluster="wdl", task=dead, reason="driver crashed")
    assert main(["sweep", "--cluster", "wdl", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{orphan}\trun=run-a\tdriver={dead}")
    assert "1 task(s) would be stopped (dry run)" in err
    assert [t["taskArn"] for t in sweep.running_tasks("wdl")] == [orphan]
    assert main(["sweep", "--cluster", "wdl"]) == 0
    assert "stopped 1 of 1 task(s) in cluster wdl" in capsys.readouterr().err
    assert list(sweep.running_tasks("wdl")) == []


@pytest.mark.parametrize("hidden", [1, 2])  # known by the second look, or not even then
def test_stop_run_stops_a_task_describe_tasks_does_not_know_yet(cluster, monkeypatch, hidden):
    from types import SimpleNamespace

    from miniwdl_fargate.local.faults import Faults
    from miniwdl_fargate.local.moto import hooks

    hooks.describe_tasks_faults()
    ecs = aws.client("ecs")
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    arn = ecs.run_task(
        cluster="wdl", taskDefinition="task", launchType="FARGATE", startedBy="run-a",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}},
        tags=[{"key": sweep.RUN_TAG, "value": "run-a"}],
    )["tasks"][0]["taskArn"]
    # launched a moment ago: ListTasks lists it, DescribeTasks does not know it yet (MISSING)
    monkeypatch.setitem(hooks._current, "runtime", SimpleNamespace(faults=Faults(describe_missing=hidden)))
    assert sweep.stop_run("wdl", "run-a", "run cancelled") == [arn]
    assert ecs.list_tasks(cluster="wdl", desiredStatus="RUNNING")["taskArns"] == []


def test_a_drivers_sweep_waits_for_a_task_describe_tasks_does_not_know_yet_to_tell_whose_it_is(cluster, monkeypatch):
    """Only its tags say which driver launched a task: a MISSING one (launched a moment ago) is
    described again until ECS knows it; the new driver's is then left running, the old one's
    stopped."""
    from types import SimpleNamespace

    from miniwdl_fargate.local.faults import Faults
    from miniwdl_fargate.local.moto import hooks

    hooks.describe_tasks_faults()
    monkeypatch.setattr(sweep, "KNOWN_WITHIN", (0.0, 0.0))
    ecs = aws.client("ecs")
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]

    def launched_by(driver):
        return ecs.run_task(
            cluster="wdl", taskDefinition="task", launchType="FARGATE", startedBy="run-a",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": ["sg-1"]}},
            tags=[{"key": sweep.RUN_TAG, "value": "run-a"}, {"key": sweep.DRIVER_TAG, "value": driver}],
        )["tasks"][0]["taskArn"]

    old, new = launched_by("arn:old-driver"), launched_by("arn:new-driver")
    monkeypatch.setitem(hooks._current, "runtime", SimpleNamespace(faults=Faults(describe_missing=2)))
    assert sweep.stop_run("wdl", "run-a", "its driver stopped", driver="arn:old-driver") == [old]
    assert ecs.list_tasks(cluster="wdl", desiredStatus="RUNNING")["taskArns"] == [new]


def operator_cfg(tmp_path, monkeypatch, cluster_name="wdl"):
    """The driver configured by an operator's cfg file alone (MINIWDL_CFG), no
    MINIWDL__AWS_FARGATE__* variables."""
    import os

    for key in list(os.environ):
        if key.startswith("MINIWDL__AWS_FARGATE__") or key == "MINIWDL__SCHEDULER__CONTAINER_BACKEND":
            monkeypatch.delenv(key)
    path = tmp_path / "operator.cfg"
    path.write_text(f"[scheduler]\ncontainer_backend = aws_fargate\n\n[aws_fargate]\ncluster = {cluster_name}\n")
    monkeypatch.setenv("MINIWDL_CFG", str(path))


def test_the_driver_sweeps_the_cluster_its_cfg_file_names(cluster, tmp_path, monkeypatch):
    from miniwdl_fargate import driver

    dead = cluster("driver", {sweep.RUN_TAG: "run-a"})
    orphan = cluster("task", {sweep.RUN_TAG: "run-a", sweep.DRIVER_TAG: dead})
    aws.client("ecs").stop_task(cluster="wdl", task=dead, reason="driver crashed")
    operator_cfg(tmp_path, monkeypatch)
    monkeypatch.setattr(driver, "ORPHAN_SWEEP_PACE", 0.0)
    sweeper = driver.sweep_orphans()  # (in the background: the run's start does not wait for it)
    sweeper.join(30)
    assert orphan not in {t["taskArn"] for t in sweep.running_tasks("wdl")}


def test_the_driver_stops_its_runs_tasks_in_the_cluster_its_cfg_file_names(cluster, tmp_path, monkeypatch):
    """Its own tasks of the run: not another run's, nor those a later driver of the same run
    launched (an attempt of the state machine after this one's, which stopped this driver)."""
    from miniwdl_fargate import driver

    monkeypatch.setattr(sweep, "own_task_arn", lambda: "arn:driver")
    tasks = [cluster("task", {sweep.RUN_TAG: "run-a", sweep.DRIVER_TAG: "arn:driver"}) for _ in range(2)]
    other = cluster("task", {sweep.RUN_TAG: "run-b", sweep.DRIVER_TAG: "arn:driver"})
    later = cluster("task", {sweep.RUN_TAG: "run-a", sweep.DRIVER_TAG: "arn:later-driver"})
    operator_cfg(tmp_path, monkeypatch)
    run = driver.DriverRun("run-a", "s3://b/w.wdl", "s3://b/i.json", "s3://b/r/", str(tmp_path / "work"))
    driver.stop_run_tasks(run, "the run is cancelled")
    assert {t["taskArn"] for t in sweep.running_tasks("wdl")} == {other, later}
    assert {t["stoppedReason"] for t in aws.client("ecs").describe_tasks(cluster="wdl", tasks=tasks)["tasks"]} == {
        "the run is cancelled"
    }


def test_without_a_configured_cluster_the_driver_stops_nothing(cluster, tmp_path, monkeypatch):
    from miniwdl_fargate import driver

    task = cluster("task", {sweep.RUN_TAG: "run-a", sweep.DRIVER_TAG: "arn:driver"})
    operator_cfg(tmp_path, monkeypatch)
    (tmp_path / "operator.cfg").write_text("[scheduler]\ncontainer_backend = aws_fargate\n")
    driver.stop_run_tasks(driver.DriverRun("run-a", "s3://b/w.wdl", "s3://b/i.json", "s3://b/r/", str(tmp_path)), "x")
    assert driver.sweep_orphans() is None
    assert task in {t["taskArn"] for t in sweep.running_tasks("wdl")}


def test_the_drivers_run_directory_is_under_the_efs_mountpoint_of_its_cfg_file(tmp_path, monkeypatch):
    from miniwdl_fargate import driver

    operator_cfg(tmp_path, monkeypatch)
    with open(tmp_path / "operator.cfg", "a") as cfg:
        cfg.write("efs_mountpoint = /mnt/from-file\n")
    environ = {"RUN_ID": "hello-1a2b3c4d", "RUN_WORKFLOW": "s3://b/w.wdl", "RUN_INPUTS": "s3://b/i.json", "RUN_RESULTS": "s3://b/r"}
    run = driver.DriverRun.from_env(environ)
    assert (run.workdir, run.cache_dir) == ("/mnt/from-file/runs/hello-1a2b3c4d", "/mnt/from-file/cache")
    environ["MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT"] = "/mnt/from-env"
    assert driver.DriverRun.from_env(environ).workdir == "/mnt/from-env/runs/hello-1a2b3c4d"


def test_a_drivers_stop_sweeps_only_the_tasks_it_launched(cluster):
    """A run's earlier driver (stopped as a new attempt launched the next) must not stop the new
    driver's tasks when its own STOPPED event comes, late: the sweep of a driver's end takes the
    tasks tagged with that driver only."""
    old, new = cluster("driver", {sweep.RUN_TAG: "run-a"}), cluster("driver", {sweep.RUN_TAG: "run-a"})
    olds = [cluster("task", {sweep.RUN_TAG: "run-a", sweep.DRIVER_TAG: old}) for _ in range(2)]
    news = [cluster("task", {sweep.RUN_TAG: "run-a", sweep.DRIVER_TAG: new}) for _ in range(2)]
    assert sorted(sweep.stop_run("wdl", "run-a", "its driver stopped", exclude=[old], driver=old)) == sorted(olds)
    assert {t["taskArn"] for t in sweep.running_tasks("wdl")} == {old, new, *news}


def test_a_runs_tasks_are_stopped_several_at_once_each_said_if_it_could_not_be(cluster, monkeypatch):
    """One StopTask after another, a cancel of a run with hundreds of tasks ran past API
    Gateway's 29 s: they go STOP_THREADS at a time, in order in the answer, a failure said."""
    import threading

    tasks = [cluster("task", {sweep.RUN_TAG: "run-a", sweep.DRIVER_TAG: "host:x:1"}) for _ in range(12)]
    ecs = aws.client("ecs")
    real, threads = ecs.stop_task, set()

    def stop(**kwargs):
        threads.add(threading.get_ident())
        if kwargs["task"] == tasks[5]:
            raise ecs.exceptions.ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "StopTask")
        return real(**kwargs)

    monkeypatch.setattr(ecs, "stop_task", stop)
    errors: list[str] = []
    stopped = sweep.stop_tasks("wdl", tasks, "cancelled by the user", errors)
    assert stopped == tasks[:5] + tasks[6:] and len(errors) == 1 and errors[0].startswith(tasks[5])
    assert len(threads) > 1 and threading.get_ident() not in threads
