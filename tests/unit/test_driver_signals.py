"""The driver notes a stop signal, and miniwdl's tasks see it, while its main thread is blocked.

Python runs signal handlers on the main thread only; miniwdl's workflow loop blocks that thread on
its queue of finished calls with no timeout. A SIGTERM that landed just before the block (or on
another thread) waited for ever: the driver never stopped its tasks (seen once in a loaded run of
tests/integration/test_driver_stop.py). Here the signal is sent to another thread on purpose
once the main thread waits (``tests.processes.signal_while_the_main_thread_waits``), which
reproduces that every time: the main thread is never interrupted.
Each case runs in a forked process of its own (tests/forked.py): its signal handlers and wakeup fd
are the driver's, not pytest's.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading

from tests.forked import run_forked
from tests.processes import signal_while_the_main_thread_waits

WAIT = 5.0  # seconds the signalled thread gives the stop to be seen (it is seen at once)


def _stopped_while_the_main_thread_waits(argv: list[str]) -> int:
    from WDL._util import TerminationSignalFlag

    from miniwdl_fargate.lifecycle import StopSignals

    main_waits = threading.Lock()
    main_waits.acquire()
    seen: dict[str, object] = {}
    with StopSignals() as stop:
        # miniwdl's own nested flag, as its runner and tasks open it: it shares the driver's
        with TerminationSignalFlag(logging.getLogger("test")) as terminating:

            def signalled() -> None:
                try:
                    seen["noted"] = stop.wait(WAIT)
                    seen.update(terminating=terminating(), signal=stop.signal_name)
                finally:
                    main_waits.release()

            signal_while_the_main_thread_waits(signal.Signals[argv[0]], then=signalled)
            main_waits.acquire()  # blocked, as miniwdl's loop is on its queue: no handler runs here meanwhile
    seen["watcher_threads_left"] = sum(t.name == "signal-watcher" for t in threading.enumerate())
    seen["wakeup_fd_after"] = signal.set_wakeup_fd(-1)
    print(json.dumps(seen))
    return 0


def test_a_stop_signal_reaches_miniwdls_tasks_while_the_drivers_main_thread_is_blocked():
    for name in ("SIGTERM", "SIGINT"):
        done = run_forked(_stopped_while_the_main_thread_waits, [name], timeout=60)
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen == {
            "noted": True, "terminating": True, "signal": name, "watcher_threads_left": 0, "wakeup_fd_after": -1,
        }, done.stderr[-3000:]
        assert f"{name} received while starting: stopping the run" in done.stderr


def _forks_while_watching(argv: list[str]) -> int:
    from miniwdl_fargate.lifecycle import StopSignals

    with StopSignals() as stop:
        pid = os.fork()
        if pid == 0:  # the forked copy: neither the watcher's pipe nor the wakeup fd came with it
            wakeup_fd = signal.set_wakeup_fd(-1)
            reused = os.pipe()  # (the lowest free numbers: those the watcher's pipe had)
            stop.__exit__(None, None, None)  # (a child that leaves the driver's block closes none of them)
            for fd in reused:
                os.fstat(fd)
            os._exit(0 if wakeup_fd == -1 else 1)
        _, status = os.waitpid(pid, 0)
    print(json.dumps({"child": os.waitstatus_to_exitcode(status)}))
    return 0


def test_a_process_forked_while_the_driver_watches_for_signals_does_not_write_to_its_wakeup_fd():
    done = run_forked(_forks_while_watching, [], timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"child": 0}


def _enters_with_no_thread_to_be_had(argv: list[str]) -> int:
    from miniwdl_fargate import lifecycle

    def no_thread(self):
        raise RuntimeError("can't start new thread")

    threading.Thread.start = no_thread  # (this forked process's own)
    seen: dict[str, object] = {}
    with lifecycle.StopSignals() as stop:
        seen["wakeup_fd"] = signal.set_wakeup_fd(-1)  # (none: the watcher's pipe did not stay set)
        seen["watchers"] = len(lifecycle._WATCHERS)
        os.kill(os.getpid(), signal.SIGTERM)  # (the main thread's handler alone notes it)
        seen["requested"] = stop.requested
    seen["handler_after"] = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    print(json.dumps(seen))
    return 0


def test_a_driver_with_no_thread_for_its_signal_watcher_still_stops_on_a_signal():
    """A watcher that cannot start (no thread to be had) leaves nothing set and the driver runs
    on with the main thread's handlers alone, as before the watcher: it does not die before it
    could write its error.json."""
    done = run_forked(_enters_with_no_thread_to_be_had, [], timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"wakeup_fd": -1, "watchers": 0, "requested": True, "handler_after": True}, done.stderr[-3000:]
    assert "stop signals are seen only when the main thread's handler runs (no watcher: can't start new thread)" in done.stderr
    assert "SIGTERM received while starting: stopping the run" in done.stderr
