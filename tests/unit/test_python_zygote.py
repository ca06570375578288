"""One fork server for a local stack's Python children (``python_zygote``, no moto): it forks
Lambda environments and drivers, each as its own module's server would (an environment named for
what it is),
refuses a kind it does not make, and the Lambda runner takes environments from it first, from a
zygote of its own where it has none to give."""

import json
import os
import uuid
from pathlib import Path

import pytest

from miniwdl_fargate.local.forkserver import ForkServer
from miniwdl_fargate.local.jobs import ForkedJob, children
from miniwdl_fargate.local.lambda_runner import LambdaRunner
from tests.unit.test_driver_zygote import NOT_ROOT, pytestmark  # noqa: F401 (its skips are this module's)
from tests.unit import test_lambda_runner
from tests.unit.test_lambda_runner import spec
from tests.waiting import wait_for

#: the folder of the Lambda runner's tests' handlers (their fixture)
code = test_lambda_runner.code


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server as the runtime starts it, but for its preload of the Lambda handlers' libraries
    (``PRELOAD_ENV``: its children's imports are their own here)."""
    server = ForkServer("miniwdl_fargate.local.python_zygote", str(tmp_path_factory.mktemp("python-zygote")),
                        {"PATH": os.environ["PATH"]}, "zygote.out")
    yield server
    server.stop()


def name_of(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_a_driver_forked_from_it_runs_as_the_driver_zygotes_child_would(server, tmp_path):
    argv = ["sh", "-c", 'echo "$OWN $PPID"; exit 4']  # (not miniwdl-fargate: exec'd in the forked child)
    env = {"PATH": os.environ["PATH"], "OWN": "the-driver-s"}
    request = {"kind": "driver", "argv": argv, "cwd": str(tmp_path), "env": env, "mounts": [], "user_namespace": NOT_ROOT}
    job = ForkedJob(lambda: server, request, argv, str(tmp_path), env)
    log = tmp_path / "driver.log"
    with open(log, "ab") as output:
        job.start(output)
    assert job.pid is not None  # forked, not a new process
    codes = []
    wait_for(lambda: codes.append(job.wait(0.5)) or codes[-1] is not None, what="the driver's end")
    assert job.finish(codes[-1], stop_requested=False).exit_code == 4
    assert log.read_text() == f"the-driver-s {server.proc.pid}\n"


def test_lambda_environments_come_from_the_shared_server_and_are_named_so(server, tmp_path, code):
    runner = LambdaRunner(str(tmp_path / "work"), str(tmp_path / "logs"), {"PATH": os.environ["PATH"]},
                          preload=True, shared_zygote=lambda: server)
    try:
        runner.start_zygote()  # (the shared one is its owner's to start: the runner starts none of its own)
        answer = json.loads(runner.invoke(spec(code, "count"), {}).result)
        assert answer["calls"] == 1
        assert answer["pid"] in children(server.proc.pid)
        assert name_of(answer["pid"]) == "lambda"
        assert not (tmp_path / "work" / "zygote.out").exists()
    finally:
        runner.shutdown()


def test_without_a_shared_server_to_give_environments_come_from_the_runners_own_zygote(server, tmp_path, code):
    stopped = ForkServer("miniwdl_fargate.local.lambda_zygote", str(tmp_path), {"PATH": os.environ["PATH"]}, "gone.out")
    stopped.stop()  # (its socket closed: every fork asked of it fails)
    for shared in (lambda: None, lambda: stopped):
        work = tmp_path / uuid.uuid4().hex
        runner = LambdaRunner(str(work), str(tmp_path / "logs"), {"PATH": os.environ["PATH"]}, shared_zygote=shared)
        try:
            answer = json.loads(runner.invoke(spec(code, "count"), {}).result)
            assert answer["calls"] == 1 and answer["pid"] not in children(server.proc.pid)
            assert (work / "zygote.out").exists() and runner.use_zygote  # (its own zygote's child)
        finally:
            runner.shutdown()


def test_a_kind_it_does_not_make_is_refused_and_it_serves_on(server, tmp_path):
    with pytest.raises(OSError, match="no child of kind 'task' here"):
        server.fork({"kind": "task", "argv": ["true"]}, [])
    with pytest.raises(OSError, match="expected 3 descriptors, got 0"):
        server.fork({"kind": "lambda", "handler": "h.h", "cwd": str(tmp_path), "env": {}}, [])
    test_a_driver_forked_from_it_runs_as_the_driver_zygotes_child_would(server, tmp_path)


def test_where_its_driver_trial_fails_drivers_start_anew_and_environments_come_from_the_runners_own(tmp_path, code, monkeypatch, caplog):
    """A stack's runtime whose fork server cannot make a driver here (its trial child, ``true``
    in a driver's namespaces, fails: ``false`` stands in for it) stops that server and says so;
    drivers are then new processes, and Lambda environments come from the Lambda runner's own
    ``lambda_zygote``, as they did before one server forked both."""
    from miniwdl_fargate.local.ecs_runner import EcsRunner
    from miniwdl_fargate.local.runtime import LocalRuntime

    trial = EcsRunner.driver_trial
    monkeypatch.setattr(EcsRunner, "driver_trial", lambda self: {**trial(self), "argv": ["false"]})
    runtime = LocalRuntime(str(tmp_path / "state"), "http://127.0.0.1:9", "us-east-1")
    try:
        runtime.python_zygote.start()
        assert runtime.python_zygote.get() is None
        assert "python_zygote cannot make its children here (its trial child ended with exit status 1" in caplog.text
        assert not runtime.ecs_runner.fork_drivers
        result, errored, _logs = runtime.invoke_lambda(spec(code, "count"), {})
        assert not errored and json.loads(result)["calls"] == 1
        assert (tmp_path / "state" / "lambda" / "zygote.out").exists()  # (the runner's own zygote's child)
    finally:
        runtime.shutdown()


def test_its_preload_builds_the_parsers_and_parses_the_models_once(monkeypatch):
    """Both kinds of child's libraries, then the parsers, the plugins and the AWS models once
    (the Lambda zygote's own preload does parsers and models too: done twice, that was 0.14 s of
    CPU more at every stack start)."""
    from types import SimpleNamespace

    from miniwdl_fargate.local import driver_zygote, forkserver, lambda_zygote, python_zygote

    done = []
    monkeypatch.setenv(lambda_zygote.PRELOAD_ENV, "1")
    monkeypatch.setattr(lambda_zygote, "importlib", SimpleNamespace(import_module=lambda name: done.append("lambda")))
    monkeypatch.setattr(driver_zygote, "importlib", SimpleNamespace(import_module=lambda name: done.append("driver")))
    monkeypatch.setattr(forkserver, "build_wdl_parsers", lambda: done.append("parsers"))
    monkeypatch.setattr(forkserver, "preload_aws", lambda: done.append("models"))
    monkeypatch.setattr(driver_zygote.driver, "cache_plugin_entry_points", lambda: None)  # (it replaces importlib's)
    monkeypatch.setattr(driver_zygote, "import_plugins", lambda: done.append("plugins"))
    python_zygote.preload()
    assert done == [
        *["lambda"] * len(lambda_zygote.LIBRARIES), *["driver"] * len(driver_zygote.LIBRARIES), "parsers", "plugins", "models",
    ]


def test_a_child_names_itself_without_looking_the_c_library_up(monkeypatch):
    """``name_process`` uses the C library the process has loaded: ``ctypes.util.find_library``
    runs ``ldconfig`` (a program started in every forked driver and Lambda environment)."""
    import ctypes.util

    from miniwdl_fargate.local import python_zygote

    def looked_up(name):
        raise AssertionError(f"find_library({name!r})")

    monkeypatch.setattr(ctypes.util, "find_library", looked_up)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # (the name is the process's: a child's, not the test worker's)
        code = 1
        try:
            python_zygote.name_process("named-child")
            os.write(write, Path("/proc/self/comm").read_bytes())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        named = answer.read().decode().strip()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and named == "named-child"
