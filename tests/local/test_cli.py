"""The README's first command, as a user runs it: `miniwdl-fargate local run WDL INPUTS`."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import processes_naming
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "miniwdl_fargate.cli"]
#: CLI as a terminal starts it: with the stop signals' default actions, whatever this process
#: inherited (a job a non-interactive shell puts in the background ignores SIGINT, one under
#: ``nohup`` SIGHUP, and ignored signals stay ignored across exec: local mode keeps them so)
CLI_FROM_A_TERMINAL = [
    sys.executable, "-c",
    "import os, signal, sys\n"
    "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP): signal.signal(s, signal.SIG_DFL)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'miniwdl_fargate.cli', *sys.argv[1:]])",
]


def task_started(state: Path) -> bool:
    """Whether the call-nap task of the stack in ``state`` has started its command (its run's
    folder on the stack's "EFS"; the stack renames and removes folders elsewhere in ``state``
    as it works, which a walk of all of it could find gone mid-walk)."""
    try:
        return next((state / "efs").glob("*/*/runs/*/*/call-nap/work/started"), None) is not None
    except FileNotFoundError:  # (not made yet)
        return False


def run_cli(*args, timeout=300):
    # WDL tasks as sandboxed host processes, as `make demo` runs them (ubuntu:22.04 is not to be
    # had offline; tests/containers runs real images)
    env = {**os.environ, "MINIWDL_FARGATE_LOCAL_ENGINE": "none"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


@pytest.mark.long
def test_local_run_prints_outputs_and_where_they_landed(tmp_path):
    proc = run_cli(
        "local", "run", "examples/hello/workflow.wdl", "examples/hello/inputs.json",
        "--seed-s3", "examples/s3", "--state-dir", str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    outputs = doc["outputs"]
    assert outputs["hello.reference_words"] == 9
    assert all(uri.startswith(doc["results"] + "out/") for uri in outputs["hello.greetings"])
    assert f"[local] outputs: {doc['results']}outputs.json" in proc.stderr
    # the results were copied out of the in-memory bucket for the user to look at
    bucket_and_prefix = doc["results"][len("s3://"):]
    local_copy = tmp_path / "s3" / bucket_and_prefix
    assert json.loads((local_copy / "outputs.json").read_text())["outputs"] == outputs
    assert (local_copy / "out" / "summary" / "summary.txt").read_text().count("Hello") == 3
    # and the run report with them: its last lines say where
    assert f"[local] run report: {local_copy / 'report.html'} (estimated cost " in proc.stderr
    assert (local_copy / "timeline.svg").read_text().startswith("<svg")


def test_local_run_with_a_missing_input_file_starts_nothing(tmp_path):
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"hello.names": ["x"], "hello.reference": "no/such/file.txt"}))
    proc = run_cli("local", "run", "examples/hello/workflow.wdl", str(inputs), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 2
    # (where it was looked for: beside the inputs file, then in the current folder, as miniwdl looks)
    assert f"error: {inputs}: hello.reference: file no/such/file.txt not found (looked for {tmp_path}/no/such/file.txt and " in proc.stderr
    assert not (tmp_path / "state").exists()  # checked before local mode started anything


def test_local_run_with_missing_files_fails_before_starting(tmp_path):
    proc = run_cli("local", "run", "nope.wdl", "examples/hello/inputs.json", "--state-dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: WDL file nope.wdl not found"
    assert not any(tmp_path.iterdir())


SLEEPING_WDL = """
version 1.1
workflow sleeping {
  call nap
}
task nap {
  command <<< touch started; sleep 617 >>>
  runtime { docker: "ubuntu:22.04" }
}
"""


@pytest.mark.long
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_local_run_stopped_by_a_signal_leaves_nothing_running(tmp_path, stop):
    """`kill`, `timeout`, a cancelled CI job (SIGTERM), Ctrl-C (SIGINT) or a closed terminal
    (SIGHUP) while a task runs: local run stops the run and everything it started (the driver, the
    task's processes, their mounts) and says so; SIGTERM used to end it at once, leaving the task
    and the fork servers running, and SIGHUP the task's idmapped mount."""
    wdl = tmp_path / "sleeping.wdl"
    wdl.write_text(SLEEPING_WDL)
    state = tmp_path / "state"
    env = {**os.environ, "MINIWDL_FARGATE_LOCAL_ENGINE": "none"}
    proc = subprocess.Popen(
        [*CLI_FROM_A_TERMINAL, "local", "run", str(wdl), "--state-dir", str(state)], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: task_started(state), timeout=120, what="the task's command started")
        proc.send_signal(getattr(signal, stop))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # (the test failed first) a SIGTERM: local run stops what it started
            proc.terminate()
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()  # (leaves what local mode started: docs/local-mode.md)
    said = "interrupted" if stop == "SIGINT" else f"terminated ({stop})"
    assert proc.returncode == 128 + getattr(signal, stop), err
    assert f"[local] {said}: local mode stopped the run and everything it started" in err
    assert "Traceback" not in err
    wait_for(lambda: not processes_naming(state), timeout=30, what=lambda: f"end of {processes_naming(state)}")
    assert str(state) not in Path("/proc/self/mountinfo").read_text()


FAILING_WDL = """
version 1.1
workflow failing {
  call breaks
}
task breaks {
  command <<< echo "samtools: truncated file" >&2; exit 3 >>>
  runtime { docker: "ubuntu:22.04" }
}
"""


@pytest.mark.long
def test_a_failing_local_run_says_which_task_failed_and_nothing_of_motos_internals(tmp_path):
    wdl = tmp_path / "failing.wdl"
    wdl.write_text(FAILING_WDL)
    proc = run_cli("local", "run", str(wdl), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.rstrip().endswith("[local] FAILED: call-breaks failed with exit status 3")
    assert "samtools: truncated file" in proc.stderr  # the task's stderr, in error.json as printed
    # moto's Step Functions interpreter logs the state machine's Fail state at ERROR, with its
    # objects' reprs: the run's normal end, not something for a user to read
    assert "FailureEventException" not in proc.stderr and " object at 0x" not in proc.stderr



OLD_WDL = """version 1.0
workflow old {
  input { String? who }
  call greet { input: who = who }
  output { String said = greet.said }
}
task greet {
  input { String who }
  command <<< echo "hello ~{who}" >>>
  output { String said = read_string(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def test_local_run_with_no_quant_check_runs_older_wdl_as_miniwdl_run_does(tmp_path):
    """Older WDL passes a String? where a String goes, which `miniwdl run --no-quant-check` runs:
    refused before anything starts without it; with it (the run option quant_check false), the
    submit step, the driver and miniwdl all take it."""
    (tmp_path / "old.wdl").write_text(OLD_WDL)
    (tmp_path / "in.json").write_text(json.dumps({"old.who": "draft"}))
    refused = run_cli("local", "run", str(tmp_path / "old.wdl"), str(tmp_path / "in.json"), "--state-dir", str(tmp_path / "s1"))
    assert refused.returncode == 2 and "String?" in refused.stderr, refused.stderr[-2000:]
    assert not (tmp_path / "s1").exists()
    ran = run_cli("local", "run", str(tmp_path / "old.wdl"), str(tmp_path / "in.json"), "--no-quant-check",
                  "--state-dir", str(tmp_path / "s2"))
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads(ran.stdout)["outputs"]["old.said"] == "hello draft"
