"""The task script's log forwarder (``stream_logs``: the command's stdout/stderr also go to the
container's own, which Fargate's log driver sends to CloudWatch Logs), run for real with ``sh``,
with ``bash``, and with ``busybox sh`` in a PATH of busybox tools only (an image without GNU coreutils): every
line the command wrote reaches the container's output, in order, exactly once, and the
stdout.txt/stderr.txt files stay exactly as the command wrote them; and a stopped task's script
exits with its command's own status."""

import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from WDL.runtime import config as wdl_config

from miniwdl_fargate.backend.base import BaseTaskContainer
from tests.waiting import wait_for

LOG = logging.getLogger("test")
LINES = 200_000
BUSYBOX = shutil.which("busybox")
# what the script and the command use, as busybox applets
TOOLS = ("cat", "sleep", "mktemp", "rm", "seq", "tail", "kill", "sh", "mv")


class ScriptOnly(BaseTaskContainer):
    """Only ``task_script``: these tests run it themselves."""

    stream_logs = True

    def _start(self, logger, script, terminating):
        raise NotImplementedError("not launched: the test runs task_script itself")

    def _poll(self, logger, job, wait):
        raise NotImplementedError("not launched: the test runs task_script itself")

    def _stop(self, logger, job, reason):
        raise NotImplementedError("not launched: the test runs task_script itself")


def container(tmp_path: Path, command: str) -> ScriptOnly:
    host_dir = tmp_path / "call-loud"
    host_dir.mkdir()
    made = ScriptOnly(wdl_config.Loader(LOG, filenames=[]), "call-loud", str(host_dir))
    made.runtime_values = {}
    made.write_command(command)
    for stream in (made.host_stdout_txt(), made.host_stderr_txt()):
        open(stream, "a").close()
    return made


def end_of_container(proc: subprocess.Popen) -> None:
    """What is left of the script's process group once the script ended (its command's
    ``sleep 100``) is killed, as the end of a container's main process ends every process in it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def busybox_path(tmp_path: Path) -> str:
    """A PATH holding busybox's applets and nothing else."""
    bin_dir = tmp_path / "busybox-bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        os.symlink(BUSYBOX, bin_dir / tool)
    return str(bin_dir)


SHELLS = [pytest.param(["/bin/sh"], None, id="sh")]
if shutil.which("bash"):  # (/bin/sh is bash in some images: Amazon Linux, CentOS)
    SHELLS.append(pytest.param([shutil.which("bash")], None, id="bash"))
if BUSYBOX:
    SHELLS.append(pytest.param([BUSYBOX, "sh"], "busybox", id="busybox-sh"))


def script_env(tmp_path: Path, tools: str | None) -> dict[str, str]:
    """The task script's environment: TMPDIR in tmp_path, and busybox's applets only on its PATH
    if ``tools``."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    if tools:
        env["PATH"] = busybox_path(tmp_path)
    return env


def run_script(made: ScriptOnly, tmp_path: Path, shell: list[str], tools: str | None, timeout: int = 60):
    """The task script of ``made`` run by ``shell`` to its end (``script_env``)."""
    return subprocess.run([*shell, "-c", made.task_script()], env=script_env(tmp_path, tools), capture_output=True, timeout=timeout)


def start_script(made: ScriptOnly, folder: Path, shell: list[str], tools: str | None) -> subprocess.Popen:
    """The task script of ``made`` started by ``shell`` (``script_env``) in a session of its own,
    as a container's processes are: ``end_of_container`` ends what is left of it."""
    return subprocess.Popen(
        [*shell, "-c", made.task_script()], env=script_env(folder, tools), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )


@pytest.mark.parametrize(("shell", "tools"), SHELLS)
def test_every_line_reaches_the_container_output_once_in_order(tmp_path, shell, tools):
    made = container(tmp_path, f"seq 1 {LINES}; seq 1 {LINES} >&2; echo last line; echo last error >&2\n")
    proc = run_script(made, tmp_path, shell, tools, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = "".join(f"{i}\n" for i in range(1, LINES + 1))
    assert proc.stdout.decode() == expected + "last line\n"
    assert proc.stderr.decode() == expected + "last error\n"
    assert Path(made.host_stdout_txt()).read_text() == expected + "last line\n"
    assert Path(made.host_stderr_txt()).read_text() == expected + "last error\n"


def test_the_exit_status_and_a_command_writing_nothing(tmp_path):
    made = container(tmp_path, "exit 3\n")
    proc = subprocess.run(["/bin/sh", "-c", made.task_script()], capture_output=True, timeout=60)
    # (all three in one assertion, so that a failure shows what the script said: it failed once,
    # in a full suite, and did not again in 3,600 runs under load)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b"", b"")


@pytest.mark.parametrize(("shell", "tools"), SHELLS)
def test_the_script_ends_without_waiting_out_the_forwarders_nap(tmp_path, shell, tools):
    """The forwarder naps an hour between copies here: told to stop, it ends at once (were it
    to wait out its nap, the run would hit the subprocess timeout), having copied every line."""
    made = container(tmp_path, "echo first; sleep 0.2; echo second\n")
    made.log_forward_seconds = 3600
    proc = run_script(made, tmp_path, shell, tools)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.decode() == "first\nsecond\n"


#: a ``cat`` whose first call (the forwarder's first copy) returns only once the command has
#: ended and the script removed its scratch directory, the step right before it tells the
#: forwarder to stop: that TERM then arrives while the forwarder is copying, not napping
SLOW_FIRST_CAT = """#!/bin/sh
if [ ! -e "$FIRST_CAT_MARK" ]; then
  : > "$FIRST_CAT_MARK"
  while [ -d "$TMPDIR" ]; do :; done
fi
exec {cat} "$@"
"""


def test_a_stop_during_a_copy_ends_the_forwarder_without_a_nap(tmp_path):
    """Told to stop while it copies (the command ends while the forwarder copies what it wrote),
    the forwarder ends after that copy instead of napping once more: the script ends at once (a
    nap of an hour would hit the subprocess timeout), having copied everything. (stdout.txt
    holds a line before the script starts, so the forwarder's first copy has something to copy.)"""
    made = container(tmp_path, "echo out; echo err >&2\n")
    made.log_forward_seconds = 3600 + (os.getpid() % 997 + 1) / 1000  # (its nap's own command line)
    nap = f"sleep {made.log_forward_seconds:g}"
    Path(made.host_stdout_txt()).write_text("before\n")
    bin_dir = tmp_path / "slow-cat"
    bin_dir.mkdir()
    (bin_dir / "cat").write_text(SLOW_FIRST_CAT.format(cat=shutil.which("cat")))
    (bin_dir / "cat").chmod(0o755)
    env = {**os.environ, "TMPDIR": str(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "FIRST_CAT_MARK": str(tmp_path / "first-cat")}
    proc = subprocess.run(["/bin/sh", "-c", made.task_script()], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "first-cat").exists()
    assert proc.stdout.decode() == "before\nout\n"
    assert proc.stderr.decode() == "err\n"
    # and no nap is left behind (one started once told to stop, or reached by TERM before it
    # was `sleep`, was: it then slept out the hour). A nap killed as the script ended may still be
    # on its way out on a busy machine (SIGKILL sent, not yet acted on): it is gone within moments,
    # where one left behind stays for the hour
    def naps() -> list[str]:
        return [pid for pid in filter(str.isdigit, os.listdir("/proc")) if command_line(pid) == nap]

    wait_for(lambda: not naps(), 10, what=lambda: f"the end of the naps {naps()} ({nap})", interval=0.05)


def command_line(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:  # (ended meanwhile)
        return ""


#: a ``cat`` that notes which file it copies (its stdin) before it does
NOTING_CAT = """#!/bin/sh
readlink "/proc/$$/fd/0" >> "$CAT_LOG"
exec {cat} "$@"
"""


@pytest.mark.parametrize(("command", "copied"), [
    pytest.param("exit 0\n", set(), id="writes-nothing"),
    pytest.param("echo only out\n", {"stdout.txt"}, id="writes-stdout"),
    pytest.param("echo only err >&2\n", {"stderr.txt"}, id="writes-stderr"),
])
def test_a_file_the_command_left_empty_is_never_copied(tmp_path, command, copied):
    """The forwarder starts no ``cat`` for a file that is still empty: a short task whose command
    writes nothing starts no program to copy its logs, one that writes to stdout only copies
    stdout.txt (once, or twice if the forwarder's first copy came after the write)."""
    made = container(tmp_path, command)
    made.log_forward_seconds = 3600
    bin_dir = tmp_path / "noting-cat"
    bin_dir.mkdir()
    (bin_dir / "cat").write_text(NOTING_CAT.format(cat=shutil.which("cat")))
    (bin_dir / "cat").chmod(0o755)
    log = tmp_path / "cats.log"
    env = {**os.environ, "TMPDIR": str(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}", "CAT_LOG": str(log)}
    proc = subprocess.run(["/bin/sh", "-c", made.task_script()], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    read = log.read_text().split() if log.exists() else []
    assert {os.path.basename(path) for path in read} == copied
    assert len(read) <= 2 * len(copied)
    assert proc.stdout.decode() == ("only out\n" if "stdout.txt" in copied else "")
    assert proc.stderr.decode() == ("only err\n" if "stderr.txt" in copied else "")


@pytest.mark.parametrize(("shell", "tools"), SHELLS)
def test_a_command_that_renames_its_own_stdout_file_still_has_it_copied(tmp_path, shell, tools):
    """The command's stdout.txt renamed under it: what it writes afterwards goes to the same open
    file, and is copied (the forwarder asks the file open on its descriptor, not only the path)."""
    made = container(tmp_path, "echo before; mv ../stdout.txt ../stdout.old; echo after\n")
    made.log_forward_seconds = 3600
    proc = run_script(made, tmp_path, shell, tools)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.decode() == "before\nafter\n"


@pytest.mark.parametrize(("shell", "tools"), SHELLS)
@pytest.mark.parametrize(("command", "status"), [
    pytest.param("trap 'exit 7' TERM; echo started; sleep 100 & wait\n", 7, id="traps-TERM"),
    pytest.param("echo started; sleep 100 & wait\n", 128 + signal.SIGTERM, id="killed-by-TERM"),
])
def test_a_stopped_task_exits_with_its_commands_own_status(tmp_path, shell, tools, command, status):
    """TERM to the script (ECS stopping the task) is passed on to the command, and the script
    exits with the command's status: its trap's, or 143 where TERM killed it. (The shell may reap
    the command before the script looks again: in busybox sh the script said 143 for a command
    that exited 7 about one time in three, so the stop is tried ten times.)"""
    for attempt in range(10):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        made = container(folder, command)
        made.log_forward_seconds = 3600
        proc = start_script(made, folder, shell, tools)
        try:
            stdout = Path(made.host_stdout_txt())
            wait_for(lambda out=stdout: "started" in out.read_text(), 30, "the command's start", interval=0.01)
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        finally:
            end_of_container(proc)
        assert proc.returncode == status, f"attempt {attempt}"


@pytest.mark.parametrize(("shell", "tools"), SHELLS)
def test_a_stop_that_comes_as_the_command_starts_is_passed_on(tmp_path, shell, tools):
    """TERM may reach the script between starting the command and learning its process id
    (ECS's StopTask at any moment): it is passed on as soon as the script knows whom to, and the
    task ends at once, not when the command would have (it once ran on until ECS's SIGKILL: the
    stop went to no one). Here the command's shell itself sends the TERM as it starts, ten times."""
    wrapper = tmp_path / "stopping-shell"
    wrapper.write_text('#!/bin/sh\nkill -TERM $PPID\nexec /bin/sh "$@"\n')
    wrapper.chmod(0o755)
    for attempt in range(10):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        made = container(folder, "trap 'exit 7' TERM; echo started; sleep 100 & wait\n")
        made.cfg.override({"task_runtime": {"command_shell": str(wrapper)}})
        made.log_forward_seconds = 3600
        proc = start_script(made, folder, shell, tools)
        try:
            proc.communicate(timeout=30)
        finally:
            end_of_container(proc)
        assert proc.returncode in (7, 128 + signal.SIGTERM), f"attempt {attempt}: {proc.returncode}"
