"""Without a container engine, a WDL task runs as a host process, but strictly: an unprivileged
uid, a root filesystem it cannot write, its EFS volume writable (files owned as the access
point's user would own them), a private /tmp. The driver is not sandboxed."""

import os

import pytest

from tests.local_ecs import efs_dir, fresh_dir, log_of, register, run, stopped
from tests.identity import IDENTITY, SHOW, shown
from tests.waiting import wait_for


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "new-process"])
def test_a_wdl_task_without_an_engine_cannot_write_outside_efs_and_tmp(stack, forked, monkeypatch, caplog):
    """The same sandbox whether the task is forked from ``task_zygote`` or set up by new
    processes (``remount.py sandbox``: where a fork server cannot start)."""
    assert stack.runtime.engine is None
    runner = stack.runtime.ecs_runner
    if forked and not runner.task_zygote.enabled:
        pytest.skip("no fork servers here (no pidfds)")
    monkeypatch.setattr(runner.task_zygote, "enabled", forked)
    caplog.set_level("INFO", logger="miniwdl-fargate.local")
    container_path, host_path = fresh_dir(stack)
    td = register(stack, "ubuntu:22.04")  # never pulled: no engine
    script = (
        f"cd {container_path} && id -u > uid && echo data > out.txt && mkdir sub"
        " && (touch /etc/sandbox-probe 2>/dev/null && echo etc-writable || echo etc-read-only)"
        " && (touch /mnt/sandbox-probe 2>/dev/null && echo mnt-writable || echo mnt-read-only)"
        " && echo scratch > /tmp/scratch && cat /tmp/scratch && pwd -P"
        # a container's process starts with no signal ignored, and with only its own environment
        " && grep SigIgn: /proc/self/status && (printenv LC_CTYPE || echo no-LC_CTYPE)"
    )
    arn = run(stack, td, [script])
    task = stopped(stack, arn)
    output = log_of(stack, arn, td)
    assert task["containers"][0]["exitCode"] == 0, output
    *seen, ignored, locale = output.split("\n")[:-1]
    assert " ".join(seen).split() == ["etc-read-only", "mnt-read-only", "scratch", container_path]
    sigpipe, sigxfsz = 1 << (13 - 1), 1 << (25 - 1)  # (SigIgn: a mask, bit N-1 for signal N)
    assert int(ignored.split()[1], 16) & (sigpipe | sigxfsz) == 0, ignored
    assert locale == stack.runtime.base_environment().get("LC_CTYPE", "no-LC_CTYPE")
    with open(os.path.join(host_path, "uid")) as infile:
        assert infile.read().strip() != "0"
    owner = os.stat(efs_dir(stack)).st_uid
    assert os.stat(os.path.join(host_path, "out.txt")).st_uid == owner
    assert os.stat(os.path.join(host_path, "sub")).st_uid == owner
    assert not os.path.exists("/etc/sandbox-probe")
    assert not os.path.exists("/tmp/scratch")  # the task's /tmp was its own
    said = [r.getMessage() for r in caplog.records if "forked from its fork server" in r.getMessage()]
    assert bool([m for m in said if arn in m]) is forked


@pytest.fixture
def task_zygote(stack, tmp_path):
    """A task fork server of the test's own (as the stack's runner starts one)."""
    from miniwdl_fargate.local.forkserver import LazyForkServer

    if not stack.runtime.ecs_runner.task_zygote.enabled:
        pytest.skip("no fork servers here (no pidfds)")
    zygote = LazyForkServer("miniwdl_fargate.local.task_zygote", str(tmp_path / "zygote"), stack.runtime.base_environment, True)
    yield zygote
    zygote.stop()


def forked_task(stack, zygote, argv, log_path, identity=True, user_namespace=None):
    """A task forked from ``zygote`` into the stack's sandbox (``identity``: as the sandbox's
    unprivileged user, else as the root of its namespaces; ``user_namespace``: the child makes a
    user namespace of its own first, None: as the stack's runner asks it)."""
    from miniwdl_fargate.local.jobs import ForkedJob

    sandbox = stack.runtime.sandbox()
    env = {**stack.runtime.base_environment(), "HOME": "/tmp"}
    spec = sandbox.setup([], env=env)
    if not identity:
        spec = {key: value for key, value in spec.items() if key not in ("become", "user_namespace")}
    runner = stack.runtime.ecs_runner
    request = runner._task_request(spec, argv, env, "a test's task")
    if user_namespace is not None:
        request["user_namespace"] = user_namespace
    job = ForkedJob(zygote.get, request, ["false"], "/", env)
    with open(log_path, "ab") as log:
        job.start(log)
    assert job.pid is not None  # (forked, not started as a new process)
    return job


def test_a_forked_task_asked_for_a_user_namespace_makes_it_before_its_sandbox(stack, task_zygote, tmp_path):
    """Where local mode is not root, a forked task's child makes the user namespace ``unshare
    --user --map-root-user`` would (its root mapped onto the user running local mode), then its
    mount namespace and sandbox in it. Seen as that namespace's root (no identity of the
    sandbox's: that would be a user namespace of its own, nested in this one)."""
    job = forked_task(stack, task_zygote, ["cat", "/proc/self/uid_map", "/proc/self/setgroups"], tmp_path / "task.log",
                      identity=False, user_namespace=True)
    assert job.wait(30) == 0, (tmp_path / "task.log").read_text()
    uid_map, setgroups = (tmp_path / "task.log").read_text().splitlines()
    assert (uid_map.split(), setgroups) == (["0", str(os.geteuid()), "1"], "deny")


def test_a_forked_task_stopped_as_soon_as_it_starts_gets_the_sigterm(stack, task_zygote, tmp_path):
    """StopTask right after RunTask: the child may not have made its own session yet (its first
    step), so there is no process group to signal: the signal goes to the child itself."""
    for attempt in range(10):
        job = forked_task(stack, task_zygote, ["sleep", "30"], tmp_path / f"{attempt}.log")
        job.terminate()
        assert job.wait(10) == -15  # (not after the stop timeout: 137)


def test_a_forked_task_whose_fork_server_died_is_killed_and_the_server_starts_again(stack, task_zygote, tmp_path):
    import signal

    job = forked_task(stack, task_zygote, ["sleep", "30"], tmp_path / "task.log")
    wait_for(lambda: "sleep" in open(f"/proc/{job.pid}/cmdline").read(), 10, what="the task's command")
    first = task_zygote.get()
    first.proc.send_signal(signal.SIGKILL)
    assert job.wait(15) == -signal.SIGKILL
    assert not os.path.exists(f"/proc/{job.pid}") or "Z" in open(f"/proc/{job.pid}/stat").read().split(")")[1][:3]
    # (its descriptors close as it exits, a moment before it can be reaped)
    wait_for(lambda: first.proc.poll() is not None, 10, what="the fork server's end", interval=0.01)
    again = task_zygote.get()
    assert again is not first and again.proc.poll() is None
    job = forked_task(stack, task_zygote, ["true"], tmp_path / "after.log")
    assert job.wait(10) == 0


def visible_dir() -> str:
    """A directory a sandboxed task could read if nothing hid it: outside /tmp, /var/tmp and
    /dev/shm (the sandbox gives a task its own) and searchable by any user all the way down (the
    task runs as another uid). The working directory may be under /tmp (CI's clone) and a home
    is often private, so as root /var/lib serves."""
    import stat

    def open_to_all(path: str) -> bool:
        while True:
            if not os.stat(path).st_mode & stat.S_IXOTH:
                return False
            if path == "/":
                return True
            path = os.path.dirname(path)

    candidates = [os.getcwd(), os.path.expanduser("~")]
    if os.geteuid() == 0:
        os.makedirs("/var/lib/miniwdl-fargate-tests", mode=0o755, exist_ok=True)
        candidates.append("/var/lib/miniwdl-fargate-tests")
    for path in candidates:
        private = ("/tmp", "/var/tmp", "/dev/shm")
        if not any(path == p or path.startswith(p + "/") for p in private) and open_to_all(path) and os.access(path, os.W_OK):
            return path
    pytest.skip(f"no directory readable by every user outside /tmp to try from (tried {candidates})")


def test_local_modes_state_is_hidden_from_a_sandboxed_task(stack):
    """Wherever local mode keeps its state (here outside /tmp, which the sandbox replaces
    anyway), a sandboxed task cannot read it by its host path."""
    import subprocess
    import tempfile

    sandbox = stack.runtime.sandbox()
    assert sandbox is not None
    state = tempfile.mkdtemp(prefix=".isolation-state-", dir=visible_dir())
    try:
        with open(os.path.join(state, "other-run.txt"), "w") as outfile:
            outfile.write("secret\n")
        os.chmod(state, 0o755)
        os.chmod(os.path.join(state, "other-run.txt"), 0o644)
        probe = ["sh", "-c", f"cat {state}/other-run.txt 2>/dev/null || echo hidden"]
        seen = subprocess.run(sandbox.wrap([], probe), capture_output=True, text=True, timeout=60).stdout
        assert seen.split() == ["secret"]  # (without hiding: readable; the test sees the difference)
        hidden = subprocess.run(sandbox.wrap([], probe, hidden=(state,)), capture_output=True, text=True, timeout=60).stdout
        assert hidden.split() == ["hidden"]
    finally:
        import shutil

        shutil.rmtree(state)


def test_a_sandbox_set_up_by_one_process_is_the_one_the_scripts_loop_makes(stack, monkeypatch):
    """A sandbox is set up by one process (``local/remount.py``: a task's, and the machine
    probe's); where pivot_root's system call number is unknown, by a script with one ``mount``
    per mount. Both leave the same mount table, with the same options, the same root a task
    cannot write, and report the same mounts as staying writable."""
    import subprocess

    from miniwdl_fargate.local import sandbox as sandboxes

    sandbox = stack.runtime.sandbox()
    assert sandbox is not None
    probe = ["sh", "-c", "findmnt -rno TARGET,VFS-OPTIONS | sort; touch /usr/sandbox-probe 2>/dev/null || echo read-only"]
    tables, reports = {}, {}
    for way in ("one process", "script"):
        if way == "script":
            monkeypatch.setattr(sandboxes, "PIVOT_ROOT_SYSCALL", {})
        script = sandbox.wrap([], probe, report=True)
        assert ("remount.py" in "\n".join(script)) is (way == "one process")
        seen = subprocess.run(script, capture_output=True, text=True, timeout=60)
        assert seen.returncode == 0, seen.stderr
        tables[way] = seen.stdout
        reports[way] = sorted(line for line in seen.stderr.splitlines() if line.startswith("sandbox: not read-only"))
    # the same options on every mount both saw (other tests' tasks mount and unmount their
    # idmapped volumes on this machine meanwhile: those come and go between the two looks)
    mounts = {way: dict(line.rsplit(" ", 1) for line in table.splitlines()[:-1]) for way, table in tables.items()}
    both = mounts["script"].keys() & mounts["one process"].keys()
    assert "/" in both and len(both) >= 0.8 * max(len(m) for m in mounts.values())
    assert {t: mounts["script"][t] for t in both} == {t: mounts["one process"][t] for t in both}
    assert tables["script"].splitlines()[-1] == tables["one process"].splitlines()[-1] == "read-only"
    assert any(line.split()[1].startswith("ro") for line in tables["one process"].splitlines()[:-1] if line.startswith("/ "))
    # and the same mounts reported writable, but for other tests' tasks' volumes: a stack mounts
    # each task's volume under its state folder's idmapped/ (and unmounts it after), so a look,
    # or the machine probe that found ``sandbox.writable``, may see one the other did not
    churn = mounts["script"].keys() ^ mounts["one process"].keys()

    def lasting(paths):
        return sorted(p for p in paths if p not in churn and "/idmapped/" not in p)

    reported = {way: lasting(line.split(": ", 2)[2] or "/" for line in lines) for way, lines in reports.items()}
    assert reported["one process"] == reported["script"]
    assert reported["one process"] == lasting(sandbox.writable)


def test_a_task_has_the_identity_setpriv_gives_whichever_process_sets_it_up(stack, monkeypatch):
    """The command runs as its uid and gid, with no supplementary group, no capability in any set
    and no new privileges (``setpriv``: local mode as root, with idmapped mounts), or as uid 1000
    of a user namespace of its own with no capability in effect (``userns``): set up by
    ``setpriv`` or ``unshare`` in the script, by ``remount`` itself in the one-process setup
    (no such process), the same either way."""
    import subprocess

    from miniwdl_fargate.local import sandbox as sandboxes

    sandbox = stack.runtime.sandbox()
    seen = {}
    for way in ("one process", "script"):
        if way == "script":
            monkeypatch.setattr(sandboxes, "PIVOT_ROOT_SYSCALL", {})
        command = sandbox.wrap([], SHOW)
        prefix = sandbox.identity.exec_prefix()[0]  # (setpriv or unshare: a process only the script starts)
        assert (f"exec {prefix} " in " ".join(command)) is (way == "script")
        ran = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stderr
        seen[way] = shown(ran.stdout)
    assert seen["one process"] == seen["script"]
    status = {name: value.split() for name, value in seen["one process"].items()}
    if sandbox.identity.mode == "setpriv":
        uid, gid = str(sandbox.identity.uid), str(sandbox.identity.gid)
        assert (status["Uid"], status["Gid"], status["Groups"]) == ([uid] * 4, [gid] * 4, [])
        assert {name: int(status[name][0], 16) for name in IDENTITY[3:8]} == dict.fromkeys(IDENTITY[3:8], 0)
        assert status["NoNewPrivs"] == ["1"]
    else:
        assert (status["Uid"], status["Gid"]) == (["1000"] * 4, ["1000"] * 4)
        assert int(status["CapEff"][0], 16) == int(status["CapPrm"][0], 16) == 0 and status["setgroups"] == ["deny"]
