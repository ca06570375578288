"""`miniwdl-fargate local up` and `local run`, their answers to what goes wrong, without deploying a
stack (a stand-in for LocalStack: tests/local runs them whole)."""

import argparse

import pytest

from miniwdl_fargate import upload
from miniwdl_fargate.local import cli as local_cli
from miniwdl_fargate.local import stack as local_stack


class StandInStack:
    """What `local up` and `local run` use of a LocalStack, without deploying one."""

    stack_name, endpoint = "s", "http://127.0.0.1:1"
    outputs = {"BucketName": "b", "StateMachineArn": "arn:sm"}
    state_dir = "/nonexistent"

    def __init__(self, **_):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False

    def write_connection(self, path):
        path.write_text("{}")


def test_local_up_with_its_api_port_taken_says_so_and_writes_no_connection_file(monkeypatch, tmp_path, capsys):
    """`local up --api-port N` with N taken: an error naming the port, exit 2, before it says it is
    up or writes the file the other commands would then find (and fail to reach)."""
    import socket

    monkeypatch.setattr(local_stack, "LocalStack", StandInStack)
    from miniwdl_fargate.local.gateway import Gateway, Routes

    # (the stand-in stack has no API to read routes from: none)
    monkeypatch.setattr(Gateway, "for_stack", classmethod(lambda cls, name, host="127.0.0.1", port=0: cls("api", Routes([]), host, port)))
    said = []
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        args = argparse.Namespace(file=str(tmp_path / "stack.json"), state_dir=None, template=None, parameter=[],
                                  seed_s3=None, api_port=port)
        assert local_cli.up(args, said.append) == 2
    finally:
        taken.close()
    assert capsys.readouterr().err.startswith(f"error: --api-port {port}: Address already in use: give another port")
    assert not (tmp_path / "stack.json").exists()
    assert not any("up at" in line for line in said)


def test_a_local_run_the_pipeline_refuses_says_why_on_one_line_and_exits_2(monkeypatch, tmp_path, capsys):
    """`local run` of a submission the submit step refuses (a GPU task on a stack without managed
    instances, say: tests/local/test_beyond_fargate_local.py runs that one): one `error:` line,
    exit 2, as `submit` says it; not error.json and exit 1."""
    class Refused:
        name = "gpu"
        refusal = {"error": "InvalidSubmission", "problems": [
            {"where": "s3://b/runs/gpu/workflow.wdl:9:1", "problem": "task train cannot run on Fargate: runtime.gpu = true"},
            {"where": "s3://b/runs/gpu/inputs.json: gpu.n", "problem": "expected Int"},
        ]}

        def upload(self, bucket, interval, pause=None):
            return "gpu", "gpu-0123abcd"

    monkeypatch.setattr(local_stack, "LocalStack", StandInStack)
    monkeypatch.setattr(upload, "prepare", lambda *a, **k: Refused())
    monkeypatch.setattr(upload, "wait", lambda *a, **k: pytest.fail("a refused run is not waited for"))
    args = argparse.Namespace(wdl="w.wdl", inputs=None, name=None, zip=False, state_dir=None, template=None,
                              parameter=[], seed_s3=None, timeout=60)
    assert local_cli.run_once(args, lambda message: None, 0.0, local_cli.StopSignals()) == 2
    assert capsys.readouterr().err == (
        "error: run gpu-0123abcd was refused: s3://b/runs/gpu/workflow.wdl:9:1: task train cannot run on Fargate: "
        "runtime.gpu = true; s3://b/runs/gpu/inputs.json: gpu.n: expected Int\n"
    )


def test_a_local_run_looks_at_its_run_when_the_stack_changed_and_stops_waiting_at_a_signal(monkeypatch, tmp_path):
    """`local run` waits for its run through the stack's count of its runs' changes (local.changes),
    not every 0.05 s; a stop signal noted meanwhile ends the wait at the count's next read."""
    import signal

    from miniwdl_fargate.local import changes

    class Counting(StandInStack):
        state_dir = str(tmp_path)

    changes.ChangeCount(str(tmp_path), changes.RUN_FILE, 1 + changes.RUN_SLOTS)
    seen = {}

    class Submission:
        name, refusal, inputs_version = "n", None, "v1"

        def upload(self, bucket, interval, pause=None):
            seen["upload"] = (interval, pause)
            return "n", "n-0123abcd"

    def wait(*args, interval, pause, check, **kwargs):
        seen["wait"] = (interval, pause)
        raise TimeoutError("stopped here")

    monkeypatch.setattr(local_stack, "LocalStack", Counting)
    monkeypatch.setattr(upload, "prepare", lambda *a, **k: Submission())
    monkeypatch.setattr(upload, "wait", wait)
    args = argparse.Namespace(wdl="w.wdl", inputs=None, name=None, zip=False, state_dir=None, template=None,
                              parameter=[], seed_s3=None, timeout=60)
    signals = local_cli.StopSignals()
    assert local_cli.run_once(args, lambda message: None, 0.0, signals) == 1
    assert seen["upload"][0] == seen["wait"][0] == changes.LOOK_SECONDS
    pause = seen["wait"][1]
    assert pause.func.__self__.path == str(tmp_path / changes.RUN_FILE)  # (the count of the runs' changes,
    assert pause.func.__self__.slot == changes.run_slot("n")  # its run's: runs named n)
    signals.noted.append(signal.SIGTERM)
    with pytest.raises(local_cli.Terminated):
        pause(changes.LOOK_SECONDS)


@pytest.fixture
def stop_signals_as_from_a_terminal():
    """The stop signals' default actions for the test, whatever pytest inherited (a job a
    non-interactive shell puts in the background ignores SIGINT: local mode keeps it ignored)."""
    import signal

    before = {s: signal.getsignal(s) for s in local_cli.STOP_SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


@pytest.mark.usefixtures("stop_signals_as_from_a_terminal")
@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_is_only_noted_where_it_lands_and_raised_at_the_next_check(signum):
    """Ctrl-C, SIGTERM and SIGHUP (a closed terminal) to `local run` raise nothing where they land
    (a KeyboardInterrupt raised inside a `with lock:` it interrupted left the lock held and the
    stack's stop waiting for ever; SIGTERM and SIGHUP ended the process at once, leaving a task's
    mount behind): the run's follower raises at its next check; a Ctrl-C after it raises at once."""
    import os
    import signal

    sig = getattr(signal, signum)
    raised = KeyboardInterrupt if sig == signal.SIGINT else local_cli.Terminated
    before = [signal.getsignal(s) for s in local_cli.STOP_SIGNALS]
    with pytest.raises(raised) as leaving:  # (leaving the block raises what was noted: not dropped)
        with local_cli.stop_signals_noted() as signals:
            signals.check()  # nothing noted: nothing raised
            os.kill(os.getpid(), sig)  # (the handler runs in the main thread, before the next bytecode)
            with pytest.raises(raised) as checked:
                signals.check()
            assert getattr(checked.value, "signum", signal.SIGINT) == sig
            assert not signals.forced
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
            assert signals.forced
    assert getattr(leaving.value, "signum", signal.SIGINT) == sig
    assert [signal.getsignal(s) for s in local_cli.STOP_SIGNALS] == before  # (put back)


@pytest.mark.usefixtures("stop_signals_as_from_a_terminal")
def test_a_stop_signal_noted_after_the_last_check_is_raised_on_leaving():
    """A Ctrl-C while the results are copied or the stack stops (after the follower's last
    check) still ends `local run` as interrupted, not as if nothing came (said as late)."""
    import os
    import signal

    with pytest.raises(local_cli.Terminated):
        with local_cli.stop_signals_noted() as signals:
            os.kill(os.getpid(), signal.SIGTERM)
            assert not signals.late
    assert signals.late


@pytest.mark.usefixtures("stop_signals_as_from_a_terminal")
def test_a_signal_after_the_run_ended_is_said_so(monkeypatch, capsys):
    """The run ended (its outputs printed) and then SIGTERM came, while the stack stopped: local
    run ends as terminated, saying that the run had ended, not that it stopped the run."""
    import os
    import signal

    def run_once(args, say, started, signals):
        signals.submitting = True
        signals.check()
        os.kill(os.getpid(), signal.SIGTERM)  # (after the last check)
        return 0

    monkeypatch.setattr(local_cli, "run_once", run_once)
    args = argparse.Namespace(local_command="run", wdl=__file__, inputs=None, state_dir=None, faults=None, parameter=[], template=None)
    assert local_cli.run(args) == 128 + signal.SIGTERM
    assert "[local] terminated (SIGTERM) after the run ended: local mode stopped its stack" in capsys.readouterr().err


@pytest.mark.usefixtures("stop_signals_as_from_a_terminal")
def test_a_signal_before_the_run_was_submitted_is_said_so(monkeypatch, capsys):
    """A Ctrl-C while the stack deploys: local run stopped its stack, and no run had started
    (it said it had stopped the run and everything it started)."""
    import os
    import signal

    def run_once(args, say, started, signals):
        os.kill(os.getpid(), signal.SIGINT)  # (as the stack deploys: its next step checks)
        signals.check()

    monkeypatch.setattr(local_cli, "run_once", run_once)
    args = argparse.Namespace(local_command="run", wdl=__file__, inputs=None, state_dir=None, faults=None, parameter=[], template=None)
    assert local_cli.run(args) == 128 + signal.SIGINT
    err = capsys.readouterr().err
    assert "[local] interrupted before the run was submitted: local mode stopped its stack" in err
    assert "stopped the run" not in err


def test_a_signal_ignored_before_stays_ignored():
    """A shell starts a background job (`local run ... &`) with SIGINT ignored: a Ctrl-C meant
    for the shell's foreground does not stop it."""
    import os
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with local_cli.stop_signals_noted() as signals:
            os.kill(os.getpid(), signal.SIGINT)
            signals.check()
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def _waits_for_a_signal_landing_on_another_thread(argv: list[str]) -> int:
    import json
    import signal

    from tests.processes import signal_while_the_main_thread_waits

    with pytest.raises(local_cli.Terminated):
        with local_cli.stop_signals_noted() as signals:
            signal_while_the_main_thread_waits(signal.SIGTERM, waits=("lock", "sleep"))
            signals.wait()
    print(json.dumps({"noted": signals.noted}))
    return 0


@pytest.mark.usefixtures("stop_signals_as_from_a_terminal")
def test_local_up_ends_on_a_stop_signal_that_interrupted_no_wait():
    """`local up` waits for a stop signal on its main thread. Python runs the signal's handler
    there once the thread is back from its wait; a signal that lands just before the wait begins,
    or on another thread (as here), interrupts nothing, and a wait with no end waited for ever."""
    import json
    import signal

    from tests.forked import run_forked

    done = run_forked(_waits_for_a_signal_landing_on_another_thread, [], timeout=20)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"noted": [signal.SIGTERM]}
