"""How a process of ours ends at once without the interpreter's teardown: what an interpreter
does at its end that anyone could see, then ``os._exit``. The standard library only: the task
fork server, which must stay small, uses it as well as the console script."""

from __future__ import annotations

import atexit
import sys
import threading


def flush_standard_streams() -> None:
    """What is left in ``sys.stdout`` and ``sys.stderr``, written before an ``os._exit``."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 (a closed or broken stream: nothing more to say)
            pass


def ended_as_interpreter(code: int) -> int:
    """What an interpreter does at its end before exiting with ``code``: wait for the non-daemon
    threads, run the atexit functions (logging's flush among them), flush the standard streams.
    The code to exit with (1 for 0 if a step failed, as an interpreter's exit fails)."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 (as an interpreter would: a failing exit step fails the exit)
        code = code or 1
    flush_standard_streams()
    return code
