"""Run a command's Python entry point in a forked copy of the test process.

A test that must see what a user sees of a command (its exit status, its stdout and stderr, that
nothing is left behind) needs the command in a process of its own, but not a fresh interpreter:
starting one and importing boto3, botocore's models and miniwdl again costs most of a second of
CPU per case, which the test process has already paid. A fork gets a process of its own (its own
exit status, file descriptors, working directory and environment) with all of that imported.
Tests of how the console script starts and leaves keep running it for real.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any, Callable

import pytest


#: a child past its deadline is sent this first: it writes every thread's stack to its stderr
DUMP_SIGNAL = signal.SIGUSR2
DUMP_SECONDS = 2.0


def run_forked(
    main: Callable[[list[str]], int | None], argv: list[str], env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """``main(argv)`` in a forked process with ``env`` as its whole environment and ``cwd`` as its
    working directory; its exit status (main's return value, or SystemExit's code) and what it
    wrote to stdout and stderr, as ``subprocess.run(..., capture_output=True, text=True)`` gives."""
    proc = ForkedProcess(main, argv, env, cwd, stderr_apart=True)
    try:
        out, err = proc.communicate(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv} did not end within {timeout} s; stderr: {proc.read(proc.errors)[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class ForkedProcess:
    """``main(argv)`` started in a forked process, handled as ``subprocess.Popen(...,
    stdout=PIPE, stderr=STDOUT, text=True)`` is (or ``stderr=PIPE``, ``stderr_apart``): ``pid``,
    ``returncode``, ``poll``, ``wait``, ``communicate`` (the output as text), ``send_signal``,
    ``kill``. A ``communicate`` or ``wait`` past its ``timeout`` raises
    ``subprocess.TimeoutExpired``, as Popen's do, after killing the child (a test never leaves one
    behind)."""

    def __init__(
        self, main: Callable[[list[str]], int | None], argv: list[str], env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None, stderr_apart: bool = False,
    ) -> None:
        self.args = [main.__module__, *argv]
        self.returncode: int | None = None
        self.output = tempfile.TemporaryFile()
        self.errors = tempfile.TemporaryFile() if stderr_apart else None
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into pytest
            _child(main, argv, env, cwd, self.output.fileno(), (self.errors or self.output).fileno())

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                _, status = _wait(self.pid, timeout)
            except TimeoutError:
                # every thread's stack first, onto its stderr (``_child`` registers the dump): a
                # child that hangs says where
                os.kill(self.pid, DUMP_SIGNAL)
                with contextlib.suppress(TimeoutError):
                    _wait(self.pid, DUMP_SECONDS)
                self.kill()
                os.waitpid(self.pid, 0)
                self.returncode = -9
                said = self.read(self.output) + (self.read(self.errors) if self.errors is not None else "")
                expired = subprocess.TimeoutExpired(self.args, timeout, output=said)
                # (pytest shows an exception's notes, not its output: the end of what the child
                # said, its threads' stacks last, goes in the failure's report)
                expired.add_note(f"the child's last output, its threads' stacks last:\n{said[-12000:]}")
                raise expired from None
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        self.wait(timeout)
        return self.read(self.output), (self.read(self.errors) if self.errors is not None else None)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(9)

    @staticmethod
    def read(captured: Any) -> str:
        captured.seek(0)
        return captured.read().decode(errors="replace")


def _child(
    main: Callable[[list[str]], int | None], argv: list[str], env: dict[str, str] | None, cwd: str | os.PathLike | None,
    out: int, err: int,
) -> None:
    """In a forked child: run ``main(argv)`` with stdout on ``out`` and stderr on ``err``, then
    leave the process with its exit status (never returning into pytest)."""
    code = 70
    try:
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdout = open(1, "w", closefd=False)  # not pytest's capture objects
        sys.stderr = open(2, "w", closefd=False)
        faulthandler.register(DUMP_SIGNAL, file=sys.stderr, all_threads=True)
        logging.root.handlers.clear()  # (pytest's log capture: the command configures its own)
        if cwd is not None:
            os.chdir(cwd)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        try:
            code = main(argv) or 0
        except SystemExit as exn:
            code = exn.code if isinstance(exn.code, int) else (0 if exn.code is None else 1)
            if not isinstance(exn.code, (int, type(None))):
                print(exn.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 (anything: report it as the child's stderr)
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(pid: int, timeout: float) -> tuple[int, int]:
    """waitpid with a deadline (a pidfd: woken when the child ends, no polling)."""
    import select

    fd = os.pidfd_open(pid)
    try:
        if not select.select([fd], [], [], timeout)[0]:
            raise TimeoutError
        return os.waitpid(pid, 0)
    finally:
        os.close(fd)
