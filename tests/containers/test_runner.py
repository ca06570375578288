"""The local Fargate runner with a container engine, task by task: RunTask on a task definition
shaped like the aws_fargate backend's, and what ECS then reports."""

import os

import pytest

from miniwdl_fargate import aws
from tests.local_ecs import efs_dir, fresh_dir, image, log_of, register, run, stopped
from tests.processes import dead_pid
from tests.waiting import wait_for


def test_a_non_root_image_writes_its_task_directory_as_the_access_points_user(stack):
    container_path, host_path = fresh_dir(stack)
    for name in ("nonroot", "named"):
        td = register(stack, image(name))
        arn = run(stack, td, [f"cd {container_path} && id -u > {name}.uid && mkdir {name}.d && touch /made-in-root 2>/dev/null; echo done"])
        task = stopped(stack, arn)
        assert task["containers"][0]["exitCode"] == 0, log_of(stack, arn, td)
        assert task["stopCode"] == "EssentialContainerExited"
        with open(os.path.join(host_path, f"{name}.uid")) as infile:
            assert infile.read().strip() == "1000"  # the image's own USER
        owner = os.stat(efs_dir(stack)).st_uid  # the access point's user, locally
        assert os.stat(os.path.join(host_path, f"{name}.uid")).st_uid == owner
        assert os.stat(os.path.join(host_path, f"{name}.d")).st_uid == owner


def test_an_images_entrypoint_is_replaced_by_the_task_definitions(stack):
    container_path, host_path = fresh_dir(stack)
    td = register(stack, image("entrypoint"))
    arn = run(stack, td, [f"cd {container_path} && echo ran > out.txt"])
    task = stopped(stack, arn)
    assert task["containers"][0]["exitCode"] == 0, log_of(stack, arn, td)
    with open(os.path.join(host_path, "out.txt")) as infile:
        assert infile.read() == "ran\n"
    # without the task definition's entryPoint, the image's (a program, not a shell) takes the command
    td = register(stack, image("entrypoint"), entry_point=None)
    arn = run(stack, td, ["/bin/sh", "-c", "echo never"])
    task = stopped(stack, arn)
    assert task["containers"][0]["exitCode"] == 252
    assert "this is the ENTRYPOINT, not the task command: /bin/sh -c echo never" in log_of(stack, arn, td)


def test_an_image_without_bash_runs_a_command_that_needs_only_sh(stack):
    container_path, host_path = fresh_dir(stack)
    td = register(stack, image("sh-only"))
    arn = run(stack, td, [f"cd {container_path} && (command -v bash || echo no-bash) > which.txt"])
    task = stopped(stack, arn)
    assert task["containers"][0]["exitCode"] == 0, log_of(stack, arn, td)
    with open(os.path.join(host_path, "which.txt")) as infile:
        assert infile.read() == "no-bash\n"


def test_a_missing_image_fails_to_start_naming_it(stack):
    td = register(stack, "miniwdl-fargate-test/never-built:9")
    arn = run(stack, td, ["true"])
    task = stopped(stack, arn)
    assert task["stopCode"] == "TaskFailedToStart"
    assert task["stoppedReason"].startswith(
        "CannotPullContainerError: failed to resolve ref miniwdl-fargate-test/never-built:9: "
    )
    assert "exitCode" not in task["containers"][0]
    assert stack.runtime.running_tasks() == [] or arn not in stack.runtime.running_tasks()


def test_no_network_by_default(stack):
    td = register(stack, image("bash"))
    arn = run(stack, td, ["ls /sys/class/net; wget -T 2 -q -O- http://127.0.0.1:1/ 2>&1; exit 0"])
    stopped(stack, arn)
    interfaces = log_of(stack, arn, td).split()
    assert "lo" in interfaces and "eth0" not in interfaces


def test_out_of_memory_is_exit_137_with_fargates_reason(stack, tmp_path, monkeypatch):
    if stack.runtime.ecs_runner.engine.limits_ignored:
        pytest.skip("rootless podman here cannot hold a container to its memory limit (local mode warns so)")
    monkeypatch.chdir(tmp_path)  # (where local mode was started: the user's own folder)
    td = register(stack, image("bash"))
    arn = run(stack, td, ['x=$(head -c 400000000 /dev/zero | tr "\\0" a); echo ${#x}'], memory=64)
    task = stopped(stack, arn)
    assert task["containers"][0]["exitCode"] == 137
    assert task["containers"][0]["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert task["stopCode"] == "EssentialContainerExited"
    # nothing of the engine's in the user's folder (podman's conmon writes an "oom" file into its
    # working directory, which is local mode's own: <state dir>/engine)
    assert list(tmp_path.iterdir()) == []


def test_stop_task_stops_the_container_as_ecs_would(stack):
    td = register(stack, image("bash"))
    arn = run(stack, td, ["trap 'echo got TERM; exit 143' TERM; echo started; while :; do sleep 0.1; done"])
    wait_for(lambda: "started" in log_of(stack, arn, td), what="'started' in the task's log")
    aws.client("ecs").stop_task(cluster=stack.outputs["ClusterName"], task=arn, reason="run cancelled")
    task = stopped(stack, arn)
    assert task["stopCode"] == "UserInitiated" and task["stoppedReason"] == "run cancelled"
    assert task["containers"][0]["exitCode"] == 143
    assert "got TERM" in log_of(stack, arn, td)


def test_the_containers_a_killed_stack_left_are_removed_by_the_next_stack_and_no_other(stack):
    """A stack killed outright leaves its tasks' containers (running until their command ends,
    then kept); a stack's first container has those of stacks that are gone removed, at once
    (not after their stop timeout), and only those: a live stack's, another PID namespace's and
    an unlabelled container stay. A task's container names its stack."""
    import subprocess

    from miniwdl_fargate.local import owners
    from miniwdl_fargate.local.containers import STACK_LABEL, ContainerSpec, engine_argv

    engine, runner = stack.runtime.engine, stack.runtime.ecs_runner
    ended = dead_pid()
    _pid, started, namespace, boot = owners.identity().split()
    stacks = {
        "killed": f"{ended} {started} {namespace} {boot}",
        "live": owners.identity(),
        "elsewhere": f"{ended} {started} pid:[1] {boot}",
        "unlabelled": None,
    }
    names = {which: f"miniwdl-fargate-sweep-{which}-{os.getpid()}" for which in stacks}
    running = []
    try:
        for which, identity in stacks.items():
            spec = ContainerSpec(
                name=names[which], image=image("bash"), command=["sleep", "300"], stop_timeout=120,
                labels={STACK_LABEL: identity} if identity else {},
            )
            running.append(engine.start(engine_argv(engine.program, spec), subprocess.DEVNULL))
        wait_for(lambda: all(engine.ending(n).exit_code is not None for n in names.values()),
                 what="the four containers known to the engine")  # (inspect answers: 0 while running)
        runner._containers_swept = False  # (as at the stack's start: its first container sweeps)
        td = register(stack, image("bash"))
        arn = run(stack, td, ["echo started; sleep 3"])
        wait_for(lambda: "started" in log_of(stack, arn, td), what="'started' in the task's log")
        assert engine.stack_of(f"miniwdl-fargate-{arn.rsplit('/', 1)[-1]}") == runner._identity == owners.identity()
        wait_for(lambda: engine.stack_of(names["killed"]) is None, timeout=30, what="the killed stack's container removed")
        for which in ("live", "elsewhere", "unlabelled"):
            assert engine.ending(names[which]).exit_code is not None, which
        assert stopped(stack, arn)["containers"][0]["exitCode"] == 0
    finally:
        for name in names.values():
            engine.remove_at_once(name)
        for proc in running:
            proc.kill()
            proc.wait()
