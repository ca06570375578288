"""The local Lambda runner alone (no moto): warm environments, timeouts, errors, concurrency."""

import json
import os
import threading

import pytest

from miniwdl_fargate.local.lambda_runner import FunctionSpec, LambdaRunner
from tests.waiting import wait_for

HANDLERS = '''
import json, os, threading, time

calls = 0
barrier = threading.Event()

def count(event, context):
    global calls
    calls += 1
    print(f"call {calls} request {context.aws_request_id}")
    return {"calls": calls, "pid": os.getpid()}

def fail(event, context):
    raise ValueError("bad input: " + event.get("why", ""))

def slow(event, context):
    if event.get("gate"):
        # wait (bounded) until the other invocation has written its own start mark
        open(event["mine"], "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(event["other"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"saw_other": os.path.exists(event["other"]), "pid": os.getpid()}
    if event.get("mark"):
        open(event["mark"], "w").close()
    time.sleep(event.get("seconds", 0))
    return {"slept": event.get("seconds", 0), "pid": os.getpid()}

def env(event, context):
    if "set" in event:
        os.environ["LEAKED"] = event["set"]
    return {"LEAKED": os.environ.get("LEAKED"), "OWN": os.environ.get("OWN"),
            "name": context.function_name, "remaining_ok": context.get_remaining_time_in_millis() > 0}

def die(event, context):
    os._exit(3)
'''


@pytest.fixture
def code(tmp_path):
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "handlers.py").write_text(HANDLERS)
    return str(folder)


@pytest.fixture(params=[True, False], ids=["zygote", "interpreter"])
def runner(tmp_path, request):
    """Environments forked from the zygote, or each a new interpreter: both behave the same."""
    found = LambdaRunner(str(tmp_path / "work"), str(tmp_path / "logs"), {"PATH": os.environ["PATH"]}, zygote=request.param)
    yield found
    found.shutdown()


def spec(code, handler, name="fn", timeout=30.0, **environment):
    return FunctionSpec(
        name=name, arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}", handler=f"handlers.{handler}",
        code_digest="digest-1", code=code, environment=environment, timeout=timeout,
    )


def test_module_globals_persist_between_invocations(runner, code):
    first = runner.invoke(spec(code, "count"), {})
    second = runner.invoke(spec(code, "count"), {})
    assert not first.errored and not second.errored
    one, two = json.loads(first.result), json.loads(second.result)
    assert (one["calls"], two["calls"]) == (1, 2)
    assert one["pid"] == two["pid"]
    assert "call 1 request" in first.logs and "call 2" not in first.logs
    assert "call 2 request" in second.logs and "call 1" not in second.logs
    assert runner.workers() == 1


def test_invocation_logs_are_appended_to_the_function_log(runner, code, tmp_path):
    runner.invoke(spec(code, "count", name="logged"), {})
    runner.invoke(spec(code, "count", name="logged"), {})
    text = (tmp_path / "logs" / "lambda-logged.log").read_text()
    assert text.count("--- invoke (") == 2
    assert text.count(", environment 1)") == 2  # the same warm environment served both
    assert "call 1 request" in text and "call 2 request" in text


def test_handler_exception_answers_lambda_error_shape(runner, code):
    answer = runner.invoke(spec(code, "fail"), {"why": "no name"})
    assert answer.errored
    body = json.loads(answer.result)
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "bad input: no name"
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]
    assert "ValueError: bad input: no name" in answer.logs
    # the environment survives a handler exception, as in Lambda
    assert not runner.invoke(spec(code, "fail"), {"why": "again"}).result.startswith('{"errorType": "Runtime')
    assert runner.workers() == 1


def test_import_error_answers_the_exception(runner, code):
    missing = FunctionSpec(name="missing", arn="arn", handler="no_such_module.handler", code_digest="d", code=code)
    answer = runner.invoke(missing, {})
    assert answer.errored
    assert json.loads(answer.result)["errorType"] == "ModuleNotFoundError"
    assert "no_such_module" in answer.logs


def test_timeout_answers_sandbox_timedout_and_the_next_invocation_works(runner, code):
    answer = runner.invoke(spec(code, "slow", timeout=0.5), {"seconds": 60})
    assert answer.errored
    assert json.loads(answer.result) == {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 0.50 seconds"}
    assert runner.workers() == 0  # the timed-out environment is discarded
    after = runner.invoke(spec(code, "slow", timeout=0.5), {"seconds": 0})
    assert not after.errored and json.loads(after.result)["slept"] == 0


def test_a_worker_that_dies_answers_runtime_exit_error(runner, code):
    answer = runner.invoke(spec(code, "die"), {})
    assert answer.errored
    body = json.loads(answer.result)
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].startswith("handler process died")
    if not runner.use_zygote:  # (a forked environment's exit status is the zygote's to know)
        assert "exit status 3" in body["errorMessage"]
    assert not runner.invoke(spec(code, "count"), {}).errored


def test_concurrent_invocations_run_in_separate_environments_at_once(runner, code, tmp_path):
    marks = [str(tmp_path / "a"), str(tmp_path / "b")]
    answers = {}

    def call(mine, other):
        answers[mine] = runner.invoke(spec(code, "slow"), {"gate": True, "mine": mine, "other": other})

    threads = [threading.Thread(target=call, args=(marks[0], marks[1])), threading.Thread(target=call, args=(marks[1], marks[0]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    results = [json.loads(answers[m].result) for m in marks]
    assert all(r["saw_other"] for r in results)  # each saw the other start while it ran
    assert results[0]["pid"] != results[1]["pid"]
    assert runner.workers() == 2
    # both stay warm for what comes next
    assert not runner.invoke(spec(code, "slow"), {"seconds": 0}).errored
    assert runner.workers() == 2


def test_an_environment_idle_beside_a_newer_one_is_reclaimed(runner, code, tmp_path, monkeypatch):
    """Lambda reclaims idle environments: a burst of concurrent invocations left local mode a
    pool of warm processes for good. Past IDLE_SECONDS unused, all but the function's most
    recently used one go; that one stays warm."""
    from miniwdl_fargate.local import lambda_runner

    marks = [str(tmp_path / "a"), str(tmp_path / "b")]
    threads = [threading.Thread(target=runner.invoke, args=(spec(code, "slow"), {"gate": True, "mine": m, "other": o}))
               for m, o in (marks, marks[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert runner.workers() == 2
    monkeypatch.setattr(lambda_runner, "IDLE_SECONDS", 0.0)
    first = json.loads(runner.invoke(spec(code, "slow"), {"seconds": 0}).result)
    assert runner.workers() == 1
    again = json.loads(runner.invoke(spec(code, "slow"), {"seconds": 0}).result)
    assert again["pid"] == first["pid"]  # (the warm one stays)


def test_environments_do_not_leak_between_functions(runner, code):
    one = json.loads(runner.invoke(spec(code, "env", name="one", OWN="first"), {"set": "from one"}).result)
    assert one == {"LEAKED": "from one", "OWN": "first", "name": "one", "remaining_ok": True}
    two = json.loads(runner.invoke(spec(code, "env", name="two", OWN="second"), {}).result)
    assert two == {"LEAKED": None, "OWN": "second", "name": "two", "remaining_ok": True}
    # a changed configuration is a new environment too
    changed = json.loads(runner.invoke(spec(code, "env", name="one", OWN="changed"), {}).result)
    assert changed["LEAKED"] is None and changed["OWN"] == "changed"


def test_code_package_zip_is_unpacked_once(runner, code, tmp_path):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handlers.py", HANDLERS)
    zipped = FunctionSpec(name="zipped", arn="arn", handler="handlers.count", code_digest="abc", code=buf.getvalue())
    assert json.loads(runner.invoke(zipped, {}).result)["calls"] == 1
    assert (tmp_path / "work" / "zipped-abc" / "handlers.py").is_file()


def test_prewarm_starts_an_environment_the_first_invocation_uses(runner, code):
    runner.prewarm([spec(code, "count")]).join(60)
    assert runner.workers() == 1
    answer = json.loads(runner.invoke(spec(code, "count"), {}).result)
    assert answer["calls"] == 1
    assert runner.workers() == 1


@pytest.mark.parametrize("zygote", [True, False], ids=["zygote", "interpreter"])
def test_shutdown_stops_every_worker(tmp_path, code, zygote):
    runner = LambdaRunner(str(tmp_path / "work"), str(tmp_path / "logs"), {"PATH": os.environ["PATH"]}, zygote=zygote)
    pid = json.loads(runner.invoke(spec(code, "count"), {}).result)["pid"]
    runner.shutdown()
    assert runner.workers() == 0

    def gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, 10, "worker exit")
    answer = runner.invoke(spec(code, "count"), {})
    assert answer.errored and json.loads(answer.result)["errorType"] == "Runtime.ExitError"


def test_a_forked_environment_gets_only_its_own_environment_and_directory(tmp_path, code):
    runner = LambdaRunner(str(tmp_path / "work"), str(tmp_path / "logs"), {"PATH": os.environ["PATH"], "BASE": "1"})
    try:
        answer = json.loads(runner.invoke(spec(code, "env", OWN="mine"), {}).result)
        assert answer == {"LEAKED": None, "OWN": "mine", "name": "fn", "remaining_ok": True}
        where = FunctionSpec(name="where", arn="arn", handler="handlers.where", code_digest="w", code=code)
        (tmp_path / "code" / "handlers.py").write_text(HANDLERS + WHERE)
        found = json.loads(runner.invoke(where, {}).result)
        assert found["cwd"] == code and found["path0"] == code
        assert found["BASE"] == "1" and found["LAMBDA_TASK_ROOT"] == code and found["sid_is_pid"]
    finally:
        runner.shutdown()


def test_a_broken_zygote_falls_back_to_new_interpreters(tmp_path, code, monkeypatch):
    from miniwdl_fargate.local import lambda_runner

    def broken(self, *args):
        raise OSError("no zygote")

    monkeypatch.setattr(lambda_runner.Zygote, "spawn", broken)
    runner = LambdaRunner(str(tmp_path / "work"), str(tmp_path / "logs"), {"PATH": os.environ["PATH"]})
    try:
        assert json.loads(runner.invoke(spec(code, "count"), {}).result)["calls"] == 1
        assert not runner.use_zygote
    finally:
        runner.shutdown()


WHERE = """
import sys

def where(event, context):
    return {"cwd": os.getcwd(), "path0": sys.path[0], "BASE": os.environ.get("BASE"),
            "LAMBDA_TASK_ROOT": os.environ.get("LAMBDA_TASK_ROOT"), "sid_is_pid": os.getsid(0) == os.getpid()}
"""


def test_the_zygote_starts_ahead_of_the_first_environment(tmp_path, code):
    runner = LambdaRunner(str(tmp_path / "work"), str(tmp_path / "logs"), {"PATH": os.environ["PATH"]})
    try:
        runner.start_zygote()
        assert runner.workers() == 0
        assert (tmp_path / "work" / "zygote.out").exists()
        assert json.loads(runner.invoke(spec(code, "count"), {}).result)["calls"] == 1
        assert runner.use_zygote  # the environment came from it, no fallback
    finally:
        runner.shutdown()


def test_an_invoke_after_the_stack_stopped_is_an_error_and_starts_no_environment(tmp_path, code):
    """A state machine still running as local mode stops invokes a Lambda: it is told the
    service is gone; no new environment (nor runner) starts that nothing would stop."""
    from miniwdl_fargate.local.runtime import LocalRuntime

    runtime = LocalRuntime(str(tmp_path / "state"), "http://127.0.0.1:9", "us-east-1")
    runtime.shutdown()
    result, errored, _logs = runtime.invoke_lambda(spec(code, "count"), {})
    assert errored and "shut down" in json.loads(result)["errorMessage"]
    assert runtime.lambdas.workers() == 0
    assert not (tmp_path / "state" / "lambda" / "zygote.out").exists()


def test_an_invocation_in_flight_as_the_stack_stops_ends_as_its_environment_dies(runner, code, tmp_path, monkeypatch):
    """The stack stops while a state machine's Lambda task runs: the environment is killed and the
    invocation answers Runtime.ExitError. Its descriptors are closed by the invoking thread alone:
    the stop closed them too, under it (an OSError "Bad file descriptor" out of the invocation, or
    a read of whatever file took the descriptor's number next)."""
    mark, answers, raised = tmp_path / "started", [], []
    closed_by_the_stop = []
    close = os.close

    def recorded_close(fd):
        if threading.current_thread() is threading.main_thread():
            closed_by_the_stop.append(fd)
        close(fd)

    def invoke():
        try:
            answers.append(runner.invoke(spec(code, "slow"), {"seconds": 60, "mark": str(mark)}))
        except BaseException as exn:  # noqa: BLE001 (what the test looks for)
            raised.append(exn)

    thread = threading.Thread(target=invoke)
    thread.start()
    wait_for(mark.exists, 30, "the handler's start")
    [worker] = runner._workers
    busy = {worker._requests, worker._responses}
    monkeypatch.setattr(os, "close", recorded_close)
    runner.shutdown()
    thread.join(60)
    monkeypatch.undo()
    assert not thread.is_alive() and raised == []
    assert busy.isdisjoint(closed_by_the_stop)
    [answer] = answers
    assert answer.errored and json.loads(answer.result)["errorType"] == "Runtime.ExitError"
    assert runner.workers() == 0
