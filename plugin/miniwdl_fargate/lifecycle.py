"""The driver's life: it stops cleanly whenever it is told to, and it keeps the state machine's
wait for it alive while it runs.

Stopping. ECS stops a task with SIGTERM, then SIGKILL after the container's ``stopTimeout``
(the driver's task definition gives it the maximum, 120 s:
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html#container_definition_timeout).
``StopSignals`` is held for the driver's whole life. It opens miniwdl's own termination flag
(``WDL._util.TerminationSignalFlag``) first, so miniwdl's nested flags, which install handlers
only when none is open, share it: a SIGTERM during the run reaches miniwdl, whose backends stop
their tasks (aws_fargate: StopTask) and raise ``Terminated``. On top of miniwdl's handlers it
notes which signal came, so the phases miniwdl does not run (fetching and staging inputs,
uploading outputs) stop at their next checkpoint (``check``, and every chunk of an S3 transfer)
with ``DriverStopped``. miniwdl's own SIGUSR1 (its fail-fast abort after a task failed) is not a
stop of the driver and is not noted. Python runs a signal's handler on the main thread only, and
miniwdl's main thread waits for its calls with no timeout: a stop signal is also noted, and
miniwdl's flag set, from a thread of its own the moment it is delivered (``SignalWatcher``).

Heartbeat. The state machine waits for the driver with a task token and ``HeartbeatSeconds``;
``Heartbeat`` sends SendTaskHeartbeat from a daemon thread (it dies with the driver, which is the
point: a driver that is gone stops heartbeating, and the wait ends in States.HeartbeatTimeout
instead of hanging until its maximum duration).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any, Callable

log = logging.getLogger("miniwdl-fargate.driver")

#: the signals that stop the driver (ECS sends SIGTERM; a terminal, SIGINT)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
PAUSE_AT_ENV = "MINIWDL_FARGATE_PAUSE_AT"  # tests: "<phase>:<directory>"
PAUSE_LIMIT_SECONDS = 120.0


class DriverStopped(Exception):
    """The driver was told to stop (a signal) while in ``phase``."""

    def __init__(self, signal_name: str, phase: str) -> None:
        self.signal_name, self.phase = signal_name, phase
        super().__init__(f"the driver received {signal_name} while {phase}")


class SignalWatcher:
    """Calls ``delivered(signum)`` on a thread of its own for each signal this process's Python
    handlers catch, the moment it is delivered, whatever the main thread is doing. Created and
    closed on the main thread.

    Python runs a signal's handler on the main thread only, between two of its bytecodes
    (https://docs.python.org/3/library/signal.html#execution-of-python-signal-handlers). A signal
    that lands just before the main thread begins to wait on a lock, or on another thread while
    it waits, interrupts no wait: its handler waits for whatever wakes that thread next, and with
    nothing to wake it, for ever (python/cpython#98140, #85300). miniwdl's workflow loop waits on
    its queue of finished calls with no timeout, so a driver stopped just then never stopped its
    tasks (seen in a loaded test run: SIGTERM, and no handler ran in two minutes). CPython's own
    handler, which runs on whichever thread the signal lands, writes the signal's number to the
    wakeup fd (https://docs.python.org/3/library/signal.html#signal.set_wakeup_fd); this
    watcher's thread reads it. A wakeup fd set before is given each number too, and set again at
    ``close``."""

    def __init__(self, delivered: Callable[[int], None]) -> None:
        self._delivered = delivered
        #: closed (``close``) or let go of in a forked child (``forget_in_child``)
        self._closed = False
        self._read, self._write = os.pipe()
        #: the wakeup fd set before this watcher's (None until this watcher's is set)
        self._previous: int | None = None
        try:
            os.set_blocking(self._write, False)  # (set_wakeup_fd requires it: a full pipe drops a number, never blocks)
            self._previous = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
            _WATCHERS.add(self)
            self._thread = threading.Thread(target=self._watch, name="signal-watcher", daemon=True)
            self._thread.start()
        except BaseException:  # (e.g. no thread to be had: nothing of this stays behind)
            self._let_go()
            raise

    def _watch(self) -> None:
        while True:
            try:
                numbers = os.read(self._read, 64)
            except OSError:  # (closed under it: a ``close`` that gave up waiting for this thread)
                return
            if not numbers:  # (``close`` closed the other end)
                return
            if self._previous is not None and self._previous >= 0:
                with contextlib.suppress(OSError):
                    os.write(self._previous, numbers)
            for signum in numbers:
                try:
                    self._delivered(signum)
                except Exception:  # noqa: BLE001 (the watcher goes on; the main thread's handler still runs)
                    log.exception("handling signal %d off the main thread failed", signum)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Give the wakeup fd back, end the thread and close the pipe (the read end stays open if
        the thread does not end: ``delivered`` hangs, and its fd is never reused under it)."""
        if self._closed:  # (twice, or in a forked child that let go of it)
            return
        self._closed = True
        self._restore_wakeup_fd()
        _WATCHERS.discard(self)
        os.close(self._write)  # (the thread's read ends)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            os.close(self._read)

    def forget_in_child(self) -> None:
        """(a forked child: its copy of the pipe and of the wakeup fd go, the watcher thread was not
        copied, and a ``close`` after this closes nothing: those numbers may be reused by then)"""
        if not self._closed:
            self._let_go()

    def _let_go(self) -> None:
        self._closed = True
        self._restore_wakeup_fd()
        _WATCHERS.discard(self)
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _restore_wakeup_fd(self) -> None:
        """The wakeup fd set before this watcher, or none if that one cannot be (closed since):
        never this watcher's pipe, whose number is closed next and may be reused."""
        if self._previous is None:  # (never set)
            return
        try:
            signal.set_wakeup_fd(self._previous)
        except (ValueError, OSError):
            signal.set_wakeup_fd(-1)


#: the watchers this process has open (a forked child lets go of its copies: ``_forget_in_child``)
_WATCHERS: set[SignalWatcher] = set()


def _forget_in_child() -> None:
    for watcher in list(_WATCHERS):
        watcher.forget_in_child()
    _WATCHERS.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class StopSignals:
    """For the driver's whole life (a context manager, entered on the main thread): stop signals
    set miniwdl's termination flag and are remembered for ``check``, the moment they come
    (``SignalWatcher``) as well as when the main thread's handler runs.

    A handler runs between two bytecodes of whatever the main thread was doing, and that may be
    inside ``wait`` holding the event's own lock (not reentrant: setting the event there would
    wait for ever) or inside a write to the log. So while the watcher runs, the main thread's
    handler only notes the signal (``signal_name``, which ``requested``, ``check`` and ``wait``
    read, under a reentrant lock) and calls the handler it chained (miniwdl's, which sets its flag
    and logs); the watcher's thread logs the stop and sets the event."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.received_at: float | None = None
        #: why the driver stopped itself (``abandon``), if it did
        self.abandoned: str | None = None
        self.phase = "starting"
        self._event = threading.Event()
        self._flag: Any = None
        self._previous: dict[int, Any] = {}
        #: the handlers miniwdl's flag installed (what sets its termination flag), by signal
        self._flag_handlers: dict[int, Callable[[int, FrameType | None], None]] = {}
        self._watcher: SignalWatcher | None = None
        # (reentrant: the main thread's handler may run inside ``_note`` on the same thread; a fork
        # while the watcher holds it leaves it held in the child, where nothing but this driver's
        # own code would take it: the driver forks only to exec)
        self._noted = threading.RLock()
        self._logged = False

    def __enter__(self) -> "StopSignals":
        from WDL._util import TerminationSignalFlag

        if self._flag is not None or self._previous:
            raise RuntimeError("StopSignals is entered once")
        if threading.current_thread() is not threading.main_thread():
            return self  # (signal handlers belong to the main thread: a test driving in a thread; entered once or more)
        before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        self._flag = TerminationSignalFlag(log)
        self._flag.__enter__()
        try:
            for sig in STOP_SIGNALS:
                chained = signal.getsignal(sig)
                if chained is not before[sig] and callable(chained):
                    self._flag_handlers[sig] = chained
                self._previous[sig] = signal.signal(sig, self._noting(chained))
            if not self._flag_handlers:
                log.warning(
                    "miniwdl's termination flag was open already (its handlers are not the driver's):"
                    " a stop signal reaches miniwdl's tasks only when the main thread's handler runs"
                )
        except BaseException as exn:
            self.__exit__(type(exn), exn, exn.__traceback__)
            raise
        try:
            self._watcher = SignalWatcher(self._delivered)
        except (OSError, RuntimeError, ValueError) as exn:  # (no pipe or no thread to be had: handlers alone, as before)
            log.warning("stop signals are seen only when the main thread's handler runs (no watcher: %s)", exn)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._watcher is not None:
                self._watcher.close()
                self._watcher = None
        finally:
            try:
                for sig, handler in self._previous.items():
                    signal.signal(sig, handler)
                self._previous.clear()
                self._flag_handlers.clear()
            finally:
                if self._flag is not None:
                    self._flag.__exit__(*exc)
                    self._flag = None

    def _noting(self, chained: Any) -> Callable[[int, FrameType | None], None]:
        def handler(sig: int, frame: FrameType | None) -> None:
            self._note(sig)
            if self._watcher is None or self._watcher.closed:
                self._log_stop()
            if callable(chained):
                chained(sig, frame)

        return handler

    def _delivered(self, sig: int) -> None:
        """(the watcher's thread) A stop signal, as it is delivered: noted (for ``check``), logged,
        miniwdl's flag set by its own handler, so that its tasks stop while its main thread waits,
        and whoever waits woken. The main thread's handler notes it again when it runs, and calls
        miniwdl's again (``_note`` does nothing the second time; miniwdl's handler sets its flag
        again, and may log its "aborting" line twice)."""
        if sig not in STOP_SIGNALS or self._flag is None:  # (a watcher outliving ``__exit__``: miniwdl's flag is shut)
            return
        self._note(sig)
        self._log_stop()
        if sig in self._flag_handlers:
            self._flag_handlers[sig](sig, None)
        self._event.set()

    def _note(self, sig: int) -> None:
        name = signal.Signals(sig).name
        with self._noted:
            if self.signal_name is None:
                self.signal_name, self.received_at = name, time.time()

    def _log_stop(self) -> None:
        with self._noted:
            if self._logged:
                return
            self._logged = True
        log.warning("%s received while %s: stopping the run", self.signal_name, self.phase)

    @property
    def requested(self) -> bool:
        """A stop signal came (or ``abandon``): what ``check`` raises on."""
        return self.signal_name is not None

    def abandon(self, reason: str) -> None:
        """Stop the driver as ECS would (SIGTERM to itself, through miniwdl's handlers: its tasks
        stopped, error.json written) because nothing waits for it any more (``reason``): its
        execution was stopped from outside (StopExecution runs no Catch, so neither finalize nor
        the timeout's cleanup would ever stop it), timed out, or answered."""
        self.abandoned = reason
        if self._previous:
            os.kill(os.getpid(), signal.SIGTERM)
        else:  # (no handlers: a test driving in a thread)
            self._note(signal.SIGTERM)
            self._event.set()

    def enter(self, phase: str) -> None:
        """Now in ``phase`` (for the error message); stop here if told to already."""
        self.phase = phase
        pause_for_test(phase, self)
        self.check()

    def check(self, *_: Any) -> None:
        """Raise DriverStopped if a stop signal came (usable as a boto3 transfer Callback)."""
        if self.signal_name is not None:
            raise DriverStopped(self.signal_name, self.phase)

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for a stop; whether one came."""
        return self._event.wait(timeout) or self.requested


def pause_for_test(phase: str, stop: StopSignals) -> None:
    """Tests only (``MINIWDL_FARGATE_PAUSE_AT=<phase>:<directory>``): on reaching ``phase``, write
    ``<directory>/<phase>`` and wait (at most two minutes) for a stop signal, or for the test to
    write ``<directory>/<phase>.resume``, so a test can stop the driver exactly there, or change
    the run's state there (a cancel whose signal has not come) and let it go on."""
    spec = os.environ.get(PAUSE_AT_ENV, "")
    wanted, _, folder = spec.partition(":")
    if wanted != phase or not folder:
        return
    with open(os.path.join(folder, phase), "w") as marker:
        marker.write(str(os.getpid()))
    deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
    resume = os.path.join(folder, phase + ".resume")
    while not stop.requested and not os.path.exists(resume) and time.monotonic() < deadline:
        stop.wait(0.05)


# -- how the driver was stopped -------------------------------------------------------------------


def ecs_stop_facts() -> dict[str, str]:
    """Why ECS is stopping this task, when it says: ``stopCode`` (UserInitiated, SpotInterruption,
    TerminationNotice, ...) and ``stoppedReason`` of the task (DescribeTasks on its own ARN, from
    the task metadata endpoint; ECS sets both when the stop is requested:
    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Task.html). Empty outside ECS
    or if ECS cannot be asked."""
    from . import aws, sweep

    arn = sweep.own_task_arn()
    if not arn:
        return {}
    try:
        cluster = arn.split(":", 5)[-1].split("/")[1]
        task = aws.client("ecs").describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
    except Exception as exn:  # the error says "SIGTERM" alone
        log.warning("cannot describe the driver's own task %s: %s", arn, exn)
        return {}
    return {k: str(task[k]) for k in ("stopCode", "stoppedReason") if task.get(k)}


def stopped_message(stop: DriverStopped | StopSignals, facts: dict[str, str]) -> str:
    abandoned = getattr(stop, "abandoned", None)
    if abandoned:
        return f"the state machine no longer waits for this run ({abandoned}): the driver stopped itself while {stop.phase}"
    why = f"{facts['stopCode']}: {facts.get('stoppedReason', '')}".rstrip(": ") if facts.get("stopCode") else ""
    return f"the driver was stopped ({stop.signal_name}{'; ECS ' + why if why else ''}) while {stop.phase}"


# -- the heartbeat ------------------------------------------------------------------------------


class Heartbeat:
    """SendTaskHeartbeat every ``interval`` seconds from a daemon thread, until ``stop()`` or the
    process ends. A failed heartbeat is logged and the next one tried: a missed beat or two is
    what ``HeartbeatSeconds`` (several intervals) absorbs. A token the state machine no longer
    waits on (timed out, answered) ends the heartbeat."""

    MAX_INTERVAL = 60.0

    def __init__(
        self, task_token: str, heartbeat_seconds: float, on_abandoned: Callable[[str], None] | None = None
    ) -> None:
        self.task_token = task_token
        #: called (with why) once the state machine no longer waits on the token
        self.on_abandoned = on_abandoned
        # four beats per heartbeat period: three can be lost before the state machine gives up
        self.interval = max(0.2, min(self.MAX_INTERVAL, heartbeat_seconds / 4))
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Heartbeat | None":
        env = os.environ if environ is None else environ
        token = env.get("SFN_TASK_TOKEN")
        if not token:
            return None
        try:
            seconds = float(env.get("SFN_HEARTBEAT_SECONDS") or 0)
        except ValueError:
            seconds = 0
        from .runs import DEFAULT_HEARTBEAT_SECONDS

        return cls(token, seconds if seconds > 0 else DEFAULT_HEARTBEAT_SECONDS)

    def start(self) -> "Heartbeat":
        self._thread = threading.Thread(target=self._loop, name="sfn-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """No beat after this returns: a beat in flight is waited for (at most ``timeout``
        seconds; not from the heartbeat's own thread)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def beat(self) -> bool:
        """One heartbeat; False when the state machine no longer waits on the token (then
        ``on_abandoned`` is called with why)."""
        from . import aws

        sfn = aws.client("stepfunctions")
        try:
            sfn.send_task_heartbeat(taskToken=self.task_token)
            self.sent += 1
            return True
        except (sfn.exceptions.TaskTimedOut, sfn.exceptions.TaskDoesNotExist, sfn.exceptions.InvalidToken) as exn:
            # (https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskHeartbeat.html:
            # a token timed out, of an execution that ended, or not one at all; none passes)
            log.warning("the state machine no longer waits for this driver (%s): heartbeat ended", exn)
            if self.on_abandoned is not None:
                self.on_abandoned(exn.response["Error"].get("Code", "") or str(exn))
            return False
        except Exception as exn:  # never fatal: the next beat may pass
            log.warning("heartbeat to the state machine failed: %s", exn)
            return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.beat():
                return
            self._stop.wait(self.interval)
