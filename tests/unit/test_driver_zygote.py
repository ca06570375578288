"""Drivers forked from the preloaded ``driver_zygote`` (no moto): the job through the child's
pidfd and status pipe (exit code, SIGTERM, SIGKILL, memory), the container the child becomes
(environment, private mounts), and the fresh process where no fork is possible."""

import os
import signal
import subprocess
import sys
import uuid

import pytest

from miniwdl_fargate.local.forkserver import ForkServer
from miniwdl_fargate.local.jobs import ForkedJob
from tests.waiting import wait_for

#: what local mode asks of a child here: a user namespace of its own where it is not root
NOT_ROOT = os.geteuid() != 0
pytestmark = [
    pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="drivers are forked only with pidfds"),
    pytest.mark.skipif(
        NOT_ROOT and subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True).returncode != 0,
        reason="not root, and user namespaces are not allowed here",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zygote")
    # RUN_WORKFLOW is the zygote's own: no child may see it
    env = {"PATH": os.environ["PATH"], "RUN_WORKFLOW": "the-zygote-s"}
    server = ForkServer("miniwdl_fargate.local.driver_zygote", str(folder), env, "zygote.out")
    yield server
    server.stop()


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


class Started:
    def __init__(self, server, tmp_path, argv, env=None, mounts=(), user_namespace=NOT_ROOT):
        env = {"PATH": os.environ["PATH"], **(env or {})}
        request = {
            "argv": argv, "cwd": str(tmp_path), "env": env, "mounts": [list(m) for m in mounts],
            "user_namespace": user_namespace,
        }
        self.log_path = tmp_path / f"{uuid.uuid4().hex}.log"
        self.job = ForkedJob(lambda: server, request, argv, str(tmp_path), env)
        with open(self.log_path, "ab") as log:
            self.job.start(log)

    def log(self) -> str:
        return self.log_path.read_text()

    def outcome(self):
        codes = []
        wait_for(lambda: codes.append(self.job.wait(0.5)) or codes[-1] is not None, what="the job's end")
        return self.job.finish(codes[-1], stop_requested=False)


def test_a_forked_job_reports_its_exit_code(server, tmp_path):
    started = Started(server, tmp_path, python("print('hello'); import sys; sys.exit(3)"))
    assert started.job.pid is not None  # forked, not a new process
    assert started.outcome().exit_code == 3
    assert started.log() == "hello\n"
    assert not started.job.running()


def test_sigterm_ends_a_forked_job_as_a_signal(server, tmp_path):
    started = Started(server, tmp_path, python("import time; print('up', flush=True); time.sleep(600)"))
    wait_for(lambda: "up" in started.log(), what="the job to start")
    assert started.job.running()
    started.job.terminate()
    assert started.outcome().exit_code == 128 + signal.SIGTERM


def test_kill_ends_a_job_that_ignores_sigterm(server, tmp_path):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    started = Started(server, tmp_path, python(code))
    wait_for(lambda: "up" in started.log(), what="the job to start")
    started.job.terminate()
    assert started.job.wait(0) is None and started.job.running()
    started.job.kill()
    assert started.outcome().exit_code == 128 + signal.SIGKILL


def test_memory_counts_the_forked_process(server, tmp_path):
    code = "import time; block = bytearray(64 << 20); print('up', flush=True); time.sleep(600)"
    started = Started(server, tmp_path, python(code))
    wait_for(lambda: "up" in started.log(), what="the job to allocate")
    assert started.job.memory() > 64 << 20
    started.job.kill_for_memory()
    outcome = started.outcome()
    assert (outcome.exit_code, outcome.out_of_memory) == (137, True)
    assert started.job.memory() == 0


def test_the_driver_command_runs_in_the_fork_with_the_task_environment_only(server, tmp_path):
    started = Started(server, tmp_path, ["miniwdl-fargate", "driver"], env={"RUN_ID": "r-1"})
    assert started.outcome().exit_code == 2
    # the request's environment replaced the zygote's: RUN_WORKFLOW is missing, RUN_ID is not
    assert "driver: missing environment variable(s) RUN_WORKFLOW, RUN_INPUTS, RUN_RESULTS" in started.log()


def test_the_child_has_private_mounts(server, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "hello").write_text("from the volume\n")
    mount = f"/mnt/zygote-test-{uuid.uuid4().hex[:8]}"
    started = Started(server, tmp_path, ["cat", f"{mount}/hello"], mounts=[(mount, str(volume))])
    assert started.outcome().exit_code == 0
    assert started.log() == "from the volume\n"
    assert not os.path.exists(f"{mount}/hello")  # the host's /mnt is untouched


def test_a_child_asked_for_a_user_namespace_is_its_root_with_private_mounts(server, tmp_path):
    """Where local mode is not root, the child makes a user namespace of its own too (what
    ``unshare --user --map-root-user`` gives a new driver): its root, mapped onto the user the
    fork server runs as, its mounts as private as a root's."""
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "hello").write_text("from the volume\n")
    mount = f"/mnt/zygote-test-{uuid.uuid4().hex[:8]}"
    show = f"id -u; cat /proc/self/uid_map /proc/self/setgroups {mount}/hello"
    started = Started(server, tmp_path, ["sh", "-c", show], mounts=[(mount, str(volume))], user_namespace=True)
    assert started.outcome().exit_code == 0, started.log()
    uid, uid_map, setgroups, content = started.log().splitlines()
    assert (uid, uid_map.split(), setgroups) == ("0", ["0", str(os.geteuid()), "1"], "deny")
    assert content == "from the volume"
    assert not os.path.exists(f"{mount}/hello")


def test_a_fork_server_whose_trial_child_fails_is_stopped_and_new_processes_are_started(tmp_path, caplog):
    """Each server's first child is a trial (``trial_request``): where the children cannot be
    made here (here a request whose child fails to set itself up, as one whose user namespace the
    interpreter may not make would), the server is stopped and jobs start new processes, saying
    why once, rather than every driver failing."""
    from miniwdl_fargate.local.forkserver import LazyForkServer

    env = lambda: {"PATH": os.environ["PATH"]}  # noqa: E731
    good = {"argv": ["true"], "cwd": "/", "env": env(), "mounts": [], "user_namespace": NOT_ROOT}
    bad = {**good, "mounts": [["/not-under-mnt", str(tmp_path)]]}
    caplog.set_level("WARNING", logger="miniwdl-fargate.local")
    failing = LazyForkServer("miniwdl_fargate.local.driver_zygote", str(tmp_path / "bad"), env, True, lambda: bad)
    assert failing.get() is None and not failing.enabled
    (said,) = [r.getMessage() for r in caplog.records]
    assert "driver_zygote cannot make its children here (its trial child ended with exit status 1: ValueError: " in said
    assert "local mode mounts volumes under /mnt only, not /not-under-mnt): new processes instead" in said
    started = Started(failing.get(), tmp_path, python("import sys; sys.exit(6)"))
    assert started.job.pid is None and started.outcome().exit_code == 6
    working = LazyForkServer("miniwdl_fargate.local.driver_zygote", str(tmp_path / "good"), env, True, lambda: good)
    try:
        server = working.get()
        assert server is not None and working.enabled
        assert Started(server, tmp_path, python("import sys; sys.exit(7)")).outcome().exit_code == 7
    finally:
        working.stop()


def test_a_fork_server_started_ahead_does_not_wait_for_its_trial(tmp_path):
    """A stack starts the driver's fork server while it deploys (``start``): its preload and its
    trial child overlap the deploy; the first driver's fork (``get``) waits for the trial."""
    import threading

    from miniwdl_fargate.local.forkserver import LazyForkServer

    env = lambda: {"PATH": os.environ["PATH"]}  # noqa: E731
    asked, answer = threading.Event(), threading.Event()

    def trial_request():
        asked.set()
        answer.wait(60)
        return {"argv": ["true"], "cwd": "/", "env": env(), "mounts": [], "user_namespace": NOT_ROOT}

    zygote = LazyForkServer("miniwdl_fargate.local.driver_zygote", str(tmp_path / "z"), env, True, trial_request)
    try:
        zygote.start()  # (returns while its trial is still to be made)
        assert asked.wait(60) and not answer.is_set()
        got = []
        getting = threading.Thread(target=lambda: got.append(zygote.get()))
        getting.start()
        getting.join(0.5)
        assert getting.is_alive() and got == []  # (the first fork waits for the trial)
        answer.set()
        getting.join(60)
        assert got and got[0] is not None and zygote.enabled
    finally:
        answer.set()
        zygote.stop()


def test_without_a_fork_server_the_job_is_a_new_process(tmp_path):
    started = Started(None, tmp_path, python("import sys; sys.exit(4)"))
    assert started.job.pid is None
    assert started.outcome().exit_code == 4


def test_a_fork_server_that_cannot_fork_leaves_a_new_process(tmp_path):
    # (any fork server, stopped: the task one preloads nothing, the driver's about 2 s of CPU)
    broken = ForkServer("miniwdl_fargate.local.task_zygote", str(tmp_path), {"PATH": os.environ["PATH"]}, "zygote.out")
    broken.stop()
    started = Started(broken, tmp_path, python("import sys; sys.exit(5)"))
    assert started.job.pid is None
    assert started.outcome().exit_code == 5


def test_a_forked_driver_listens_for_wakeups_in_its_metadata_folder(server, tmp_path):
    """The child makes the FIFO the local ECS runner writes to (``wakeups``) in the folder its
    task metadata URI names, before it runs the command."""
    from miniwdl_fargate.local import wakeups

    folder = tmp_path / "metadata"
    folder.mkdir()
    env = {"ECS_CONTAINER_METADATA_URI_V4": f"file://{folder}"}
    started = Started(server, tmp_path, python("import sys; sys.exit(0)"), env=env)
    assert started.outcome().exit_code == 0
    assert (folder / wakeups.FIFO).is_fifo()


def test_a_descriptor_numbered_past_select_s_limit_is_watched(tmp_path):
    """A process running hundreds of tasks holds descriptors numbered 1024 and more (a pidfd and
    a status pipe per forked task, in local mode and in each fork server): ``readable`` polls
    them, where select(2) refused them."""
    import resource

    from miniwdl_fargate.local.forkserver import readable

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"this machine allows {hard} descriptors a process")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    read, write = os.pipe()
    try:
        high = os.dup2(read, 1500)
        assert not readable(high, 0)
        os.write(write, b"!")
        assert readable(high, 1)
        os.close(high)
    finally:
        os.close(read)
        os.close(write)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_fork_server_answers_a_request_it_cannot_read_and_serves_on(server, tmp_path):
    import json
    import socket

    with server._lock:  # (what ForkServer.fork sends, but not one JSON object)
        socket.send_fds(server._socket, [b"[1, 2"], [])
        message, fds, _flags, _addr = socket.recv_fds(server._socket, 65536, 1)
    assert "not a request" in json.loads(message)["error"] and fds == []
    started = Started(server, tmp_path, ["true"])
    assert started.job.pid is not None and started.outcome().exit_code == 0



def test_a_lazy_fork_server_that_keeps_ending_is_started_again_a_few_times_only(tmp_path):
    from miniwdl_fargate.local.forkserver import LazyForkServer

    lazy = LazyForkServer("miniwdl_fargate.local.task_zygote", str(tmp_path), lambda: {"PATH": os.environ["PATH"]}, True)
    try:
        seen = []
        for _ in range(LazyForkServer.RESTARTS + 2):
            server = lazy.get()
            if server is None:
                break
            seen.append(server)
            server.proc.kill()
            server.proc.wait()
        assert len(seen) == 1 + LazyForkServer.RESTARTS and len(set(map(id, seen))) == len(seen)
        assert lazy.get() is None and not lazy.enabled  # (new processes from now on)
    finally:
        lazy.stop()


def ended(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


def test_children_left_running_when_the_servers_other_end_closes_are_killed_with_their_groups(tmp_path):
    """Whoever started the fork server ended without stopping its children (`local run` killed
    with SIGKILL, a crash: the kernel closes its end of the socket): the server kills each child
    still running, and what the child started, rather than leave a driver polling a stack that is
    gone for ever (seen after a `local run` was killed)."""
    server = ForkServer("miniwdl_fargate.local.driver_zygote", str(tmp_path), {"PATH": os.environ["PATH"]}, "zygote.out")
    try:
        started = Started(server, tmp_path, ["sh", "-c", "sleep 60 & echo $! > grandchild; sleep 60"])
        wait_for(lambda: (tmp_path / "grandchild").exists() and (tmp_path / "grandchild").read_text().strip(), what="the grandchild")
        grandchild = int((tmp_path / "grandchild").read_text())
        server.close()  # (as the kernel closes it when the process holding it ends)
        server.proc.wait(10)
        # (asked of the processes, not of the job: the job kills a child its server left, but
        # here whoever held the job is gone too)
        for pid in (started.job.pid, grandchild):
            wait_for(lambda pid=pid: ended(pid), timeout=10, what=f"the end of {pid}")
        assert started.job.wait(0) == -signal.SIGKILL  # (the server reaped it, and said so)
    finally:
        if server.proc.poll() is None:
            server.stop()


def test_a_stopped_fork_server_ends_without_the_interpreters_teardown(tmp_path):
    """A fork server holds every library its children need and nothing to finalize: once its
    socket closes it ends with ``_exit`` (the interpreter's teardown of the driver's libraries took
    about 0.5 s of each stack's stop), its output written first."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import atexit, os, sys\n"
        "atexit.register(lambda: open(os.environ['TORN_DOWN'], 'w').close())\n"
        "sys.stdout.write('server up, said unflushed\\n')\n"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(site), "TORN_DOWN": str(tmp_path / "torn-down")}
    server = ForkServer("miniwdl_fargate.local.task_zygote", str(tmp_path), env, "zygote.out")
    server.stop()
    assert server.proc.returncode == 0
    assert not (tmp_path / "torn-down").exists()  # no atexit function ran: no teardown
    assert "server up, said unflushed" in (tmp_path / "zygote.out").read_text()
