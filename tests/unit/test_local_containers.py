"""Local mode's container runner, alone: the engine command line for a task definition and its
overrides, the engine choice, and the strict sandbox's script (pure functions, no engine)."""

import subprocess

import pytest

from miniwdl_fargate.local.containers import ENGINE_ENV, NETWORK_ENV, ContainerSpec, Engine, Mount, choice, engine_argv
from miniwdl_fargate.local.sandbox import Identity, strict_script


def wdl_task_spec(**changes):
    """What the aws_fargate backend's task definition + RunTask overrides become."""
    spec = ContainerSpec(
        name="miniwdl-fargate-abc",
        image="quay.io/biocontainers/samtools:1.17",
        entry_point=["/bin/sh", "-c"],
        command=["cd /mnt/efs/runs/r1/call-x/work && echo hi"],
        environment={"AWS_REGION": "us-east-1", "A": "b c"},
        mounts=[Mount("/state/efs/fs-1/miniwdl", "/mnt/efs")],
        memory_mib=2048,
        cpu_units=1024,
        init=True,
        stop_timeout=120,
    )
    for key, value in changes.items():
        setattr(spec, key, value)
    return spec


def test_argv_runs_the_entry_point_and_command_with_the_task_size_and_no_network():
    argv = engine_argv("podman", wdl_task_spec())
    assert argv[:8] == ["podman", "run", "--name", "miniwdl-fargate-abc", "--pull", "never", "--network", "none"]
    assert argv[-3:] == ["quay.io/biocontainers/samtools:1.17", "-c", "cd /mnt/efs/runs/r1/call-x/work && echo hi"]
    assert argv[argv.index("--entrypoint") + 1] == "/bin/sh"
    assert argv[argv.index("--memory") + 1] == "2048m" and argv[argv.index("--memory-swap") + 1] == "2048m"
    assert argv[argv.index("--cpus") + 1] == "1"
    assert argv[argv.index("--stop-timeout") + 1] == "120"
    assert "--init" in argv
    assert argv[argv.index("--volume") + 1] == "/state/efs/fs-1/miniwdl:/mnt/efs"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--env"] == ["AWS_REGION=us-east-1", "A=b c"]
    assert "--user" not in argv  # the image's own USER
    assert "--rm" not in argv  # kept until its exit code is read


def test_argv_without_an_entry_point_keeps_the_images_and_replaces_only_cmd():
    argv = engine_argv("docker", wdl_task_spec(entry_point=None, command=["echo", "x"], init=False))
    assert "--entrypoint" not in argv and "--init" not in argv
    assert argv[-3:] == ["quay.io/biocontainers/samtools:1.17", "echo", "x"]


def test_argv_honours_user_workdir_read_only_root_and_read_only_mounts():
    spec = wdl_task_spec(
        user="1000:1000", working_directory="/data", read_only_root=True,
        mounts=[Mount("/h/in", "/mnt/in", read_only=True)], network="host", cgroup_parent="/x/1",
    )
    argv = engine_argv("podman", spec)
    assert argv[argv.index("--user") + 1] == "1000:1000"
    assert argv[argv.index("--workdir") + 1] == "/data"
    assert "--read-only" in argv and "--read-only-tmpfs=false" in argv  # Fargate adds no tmpfs
    assert argv[argv.index("--volume") + 1] == "/h/in:/mnt/in:ro"
    assert argv[argv.index("--network") + 1] == "host"
    assert argv[argv.index("--cgroup-parent") + 1] == "/x/1"
    docker = engine_argv("docker", spec)
    assert "--read-only-tmpfs=false" not in docker


def test_a_path_the_engine_cannot_mount_is_a_clear_error():
    with pytest.raises(ValueError, match="'/h/a:b'.*':' or ','"):
        engine_argv("podman", wdl_task_spec(mounts=[Mount("/h/a:b", "/mnt/efs")]))


def test_engine_choice_is_checked():
    assert Engine.detect({ENGINE_ENV: "none"}) is None
    with pytest.raises(ValueError, match=f"{ENGINE_ENV}='rkt': expected one of podman, docker, none, auto"):
        Engine.detect({ENGINE_ENV: "rkt"})
    assert choice({}, NETWORK_ENV, ("none", "host"), "none") == "none"
    with pytest.raises(ValueError, match=f"{NETWORK_ENV}='bridge'"):
        choice({NETWORK_ENV: "bridge"}, NETWORK_ENV, ("none", "host"), "none")


def test_an_engine_asked_for_that_does_not_work_is_an_error_naming_it(tmp_path, monkeypatch):
    fake = tmp_path / "podman"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Podman socket' >&2\nexit 125\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"MINIWDL_FARGATE_LOCAL_ENGINE=podman, but `podman info` failed: Cannot connect"):
        Engine.detect({ENGINE_ENV: "podman"})
    # left to choose, a broken engine is just not chosen (docker is not on this PATH either)
    assert Engine.detect({}) is None


def test_strict_script_mounts_efs_writable_over_a_read_only_root_and_drops_privileges():
    script = strict_script([("/mnt/efs", "/state/efs/fs-1")], Identity("setpriv", 1001, 1001))
    lines = script.splitlines()
    assert "mount --rbind / /mnt/.root" in lines
    assert lines.index("mount --rbind / /mnt/.root") < lines.index("mount --bind /state/efs/fs-1 /mnt/.root/mnt/efs")
    assert any("remount,bind,ro" in line for line in lines)
    assert "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /mnt/.root/tmp" in lines
    assert lines[-1].startswith("exec setpriv --reuid=1001 --regid=1001 --clear-groups --inh-caps=-all")
    userns = strict_script([], Identity("userns", 1000, 1000)).splitlines()[-1]
    assert userns == 'exec unshare --user --map-user=1000 --map-group=1000 -- "$@"'
    with pytest.raises(ValueError, match="under /mnt only, not /data"):
        strict_script([("/data", "/x")], Identity("userns", 1000, 1000))


def test_strict_script_hides_local_modes_state_before_binding_the_volumes():
    script = strict_script([("/mnt/efs/runs/r-1", "/state/efs/fs-1/miniwdl/runs/r-1")], Identity("userns", 1000, 1000), hidden=("/state",))
    lines = script.splitlines()
    hide = "if [ -d /mnt/.root/state ]; then mount -t tmpfs -o ro,mode=0555,size=4k tmpfs /mnt/.root/state; fi"
    assert hide in lines
    # the bind's source is the namespace's own /state, which the hiding (under the new root) leaves alone
    assert lines.index(hide) < lines.index("mount --bind /state/efs/fs-1/miniwdl/runs/r-1 /mnt/.root/mnt/efs/runs/r-1")


def test_strict_script_remounts_each_mount_read_only_with_its_other_options(tmp_path):
    """The remount loop, run on a made-up mount table with ``mount`` and ``findmnt`` stubbed:
    one remount per mount but /proc, read-only, keeping every option but ``rw``; one ``sed``
    for the whole table (not one per mount)."""
    import subprocess

    script = strict_script([], Identity("setpriv", 1001, 1001), report=True)
    lines = script.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("findmnt"))
    loop = "\n".join(lines[first : lines.index("done") + 1])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    table = "/mnt/.root rw,relatime\n/mnt/.root/proc rw,nosuid\n/mnt/.root/data ro,nosuid,nodev\n/mnt/.root/b rw\n"
    (bin_dir / "findmnt").write_text(f"#!/bin/sh\nprintf '%s' '{table}'\n")
    (bin_dir / "mount").write_text('#!/bin/sh\necho "$@" >> "$LOG"\n[ "$3" != /mnt/.root/data ]\n')
    (bin_dir / "sed").write_text('#!/bin/sh\necho sed >> "$LOG"\nexec /bin/sed "$@"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    log = tmp_path / "log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log)}
    result = subprocess.run(["sh", "-c", loop], env=env, capture_output=True, text=True, check=True)
    assert log.read_text().splitlines() == [
        "sed",
        "-o remount,bind,ro,ro,nosuid,nodev /mnt/.root/data",
        "-o remount,bind,ro /mnt/.root/b",
        "-o remount,bind,ro,relatime /mnt/.root",
    ]
    assert result.stderr == "sandbox: not read-only: /data\n"


def test_strict_script_leaves_the_mounts_under_a_hidden_folder_to_its_tmpfs(tmp_path):
    """The remount loop on a made-up table holding mounts under local mode's state (the
    idmapped mounts of other running tasks): none of them is remounted one by one (the hidden
    folder's tmpfs covers them all), every other mount is; so a task's setup does not grow with
    the number of tasks running."""
    import subprocess

    script = strict_script([], Identity("setpriv", 1001, 1001), report=True, hidden=("/state",))
    lines = script.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("findmnt"))
    loop = "\n".join(lines[first : lines.index("done") + 1])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    table = (
        "/mnt/.root rw\n/mnt/.root/state rw\n/mnt/.root/state/idmapped/t1/0 rw\n"
        "/mnt/.root/state/idmapped/t2/0 rw\n/mnt/.root/stateful rw\n/mnt/.root/data rw\n"
    )
    (bin_dir / "findmnt").write_text(f"#!/bin/sh\nprintf '%s' '{table}'\n")
    (bin_dir / "mount").write_text('#!/bin/sh\necho "$3" >> "$LOG"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    log = tmp_path / "log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log)}
    subprocess.run(["sh", "-c", loop], env=env, capture_output=True, text=True, check=True)
    assert sorted(log.read_text().split()) == ["/mnt/.root", "/mnt/.root/data", "/mnt/.root/stateful"]
    assert "if [ -d /mnt/.root/state ]; then mount -t tmpfs -o ro,mode=0555,size=4k tmpfs /mnt/.root/state; fi" in lines


def test_a_sandbox_is_set_up_by_one_process_unless_pivot_roots_number_is_unknown(monkeypatch):
    import json
    import os

    from miniwdl_fargate.local import sandbox as sandboxes

    monkeypatch.setattr(sandboxes, "PIVOT_ROOT_SYSCALL", {os.uname().machine: 155})
    box = sandboxes.StrictSandbox(["unshare", "--mount"], Identity("setpriv", 1001, 1001), [])
    argv = box.wrap([("/mnt/efs", "/state/efs/fs-1")], ["bash", "-c", "echo hi"], hidden=("/state",))
    setup = argv.index(sandboxes.REMOUNT)
    assert argv[setup + 1] == "sandbox" and argv[setup + 3] == "--"
    spec = json.loads(argv[setup + 2])
    assert spec["mounts"] == [["/mnt/efs", "/state/efs/fs-1"]] and spec["hidden"] == ["/state"]
    # the identity set by the same process (remount.become), not by a setpriv it would exec
    assert argv[setup + 4:] == ["bash", "-c", "echo hi"] and spec["become"] == [1001, 1001]
    in_userns = sandboxes.StrictSandbox(["unshare", "--mount"], Identity("userns", 1000, 1000), [])
    spec = in_userns.setup([])
    assert in_userns.in_new_process(spec, ["true"])[-2:] == ["--", "true"]
    assert spec["user_namespace"] == [1000, 1000] and "become" not in spec
    reporting = box.wrap([], ["true"], report=True)
    assert json.loads(reporting[reporting.index(sandboxes.REMOUNT) + 2])["report"] is True
    monkeypatch.setattr(sandboxes, "PIVOT_ROOT_SYSCALL", {})  # (no known pivot_root number here: the script)
    assert box.wrap([], ["true"])[2:4] == ["sh", "-c"]


def test_the_engine_runs_in_a_folder_of_local_modes_own_not_the_users(tmp_path, monkeypatch):
    """podman's container monitor (conmon) drops an empty ``oom`` file into its working directory
    when a container is OOM-killed: into the folder local mode was started in, until every engine
    command ran in the state folder's ``engine``. Here a stand-in engine writes into its working
    directory at each command, as conmon does."""
    bin_dir, user_dir, workdir = tmp_path / "bin", tmp_path / "user", tmp_path / "state" / "engine"
    bin_dir.mkdir()
    user_dir.mkdir()
    fake = bin_dir / "podman"
    fake.write_text('#!/bin/sh\necho "$1" >> oom\n[ "$1" != info ] || echo "{}"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.chdir(user_dir)
    engine = Engine.detect({ENGINE_ENV: "podman"}, workdir=str(workdir))
    assert engine is not None and engine.workdir == str(workdir)
    engine.image_present("ubuntu:22.04")
    engine.start(["podman", "run", "ubuntu:22.04"], subprocess.DEVNULL).wait()
    engine.stop("task-1", 1)
    assert (workdir / "oom").read_text().split() == ["info", "image", "run", "stop"]
    assert list(user_dir.iterdir()) == []


@pytest.mark.parametrize(
    "host, parents, ignored",
    [
        ({"cgroupManager": "cgroupfs", "cgroupVersion": "v1", "security": {"rootless": False}, "cgroupControllers": ["memory"]}, True, False),
        ({"cgroupManager": "cgroupfs", "cgroupVersion": "v1", "security": {"rootless": True}, "cgroupControllers": []}, False, True),
        ({"cgroupManager": "systemd", "cgroupVersion": "v2", "security": {"rootless": False}, "cgroupControllers": ["memory"]}, False, False),
        ({"cgroupManager": "systemd", "cgroupVersion": "v2", "security": {"rootless": True}, "cgroupControllers": ["memory", "pids"]}, False, False),
        ({"cgroupManager": "systemd", "cgroupVersion": "v2", "security": {"rootless": True}, "cgroupControllers": ["pids"]}, False, True),
    ],
    ids=["root-cgroupfs-v1", "rootless-cgroupfs-v1", "root-systemd-v2", "rootless-systemd-v2", "rootless-v2-no-memory"],
)
def test_containers_go_under_local_modes_own_cgroup_only_where_podman_can_make_it(tmp_path, monkeypatch, host, parents, ignored):
    """Rootless podman may not make cgroups under /sys/fs/cgroup's roots: with a --cgroup-parent
    of local mode's own no container started ("mkdir /sys/fs/cgroup/cpuset/miniwdl-fargate-local:
    permission denied"), so every WDL task failed with CannotStartContainerError. What ``podman
    info`` says of its host decides; on cgroup v1, rootless podman ignores the limits, which
    local mode then says, as where cgroup v2's memory controller is not delegated to the user."""
    import json

    fake = tmp_path / "podman"
    fake.write_text(f"#!/bin/sh\necho '{json.dumps({'host': host})}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = Engine.detect({ENGINE_ENV: "podman"})
    assert (engine.cgroup_parents, engine.limits_ignored) == (parents, ignored)


@pytest.mark.parametrize(
    "info, for_root, for_1000",
    [
        ({"host": {"security": {"rootless": True}}, "version": {"Version": "4.3.1"}}, "", "keep-id:uid=1000,gid=1000"),
        ({"host": {"security": {"rootless": True}}, "version": {"Version": "5.2.0-dev"}}, "", "keep-id:uid=1000,gid=1000"),
        ({"host": {"security": {"rootless": True}}, "version": {"Version": "4.2.0"}}, None, None),
        ({"host": {"security": {"rootless": False}}, "version": {"Version": "4.3.1"}}, None, None),
    ],
    ids=["rootless-4.3", "rootless-5.2", "rootless-4.2", "root"],
)
def test_rootless_podman_runs_the_images_user_as_the_user_running_local_mode(tmp_path, monkeypatch, info, for_root, for_1000):
    """An EFS access point makes every file a task writes its POSIX user's, whatever the image's
    USER. Rootless podman maps the container's root onto the user running local mode (who owns
    the local EFS directories) and every other uid onto a subordinate one, which may not write
    there: a non-root image's task could not write its own directory. ``--userns=keep-id:uid=U,gid=G``
    (podman 4.3) maps the image's user onto the user running local mode instead."""
    import json

    fake = tmp_path / "podman"
    fake.write_text(f"#!/bin/sh\necho '{json.dumps(info)}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = Engine.detect({ENGINE_ENV: "podman"})
    assert (engine.keep_id((0, 0)), engine.keep_id((1000, 1000))) == (for_root, for_1000)
    spec = ContainerSpec(name="t", image="i", userns="keep-id:uid=1000,gid=1000", user="worker")
    argv = engine_argv("podman", spec)
    assert argv[argv.index("--userns") + 1] == "keep-id:uid=1000,gid=1000" and "--userns" not in engine_argv("podman", ContainerSpec("t", "i"))
