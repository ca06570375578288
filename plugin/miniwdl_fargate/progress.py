"""The driver's part of a run's status.json: RUNNING when it starts, then the task counts (and
which ECS tasks each call ran as, for `miniwdl-fargate logs --task`) as they change, at most
every ``interval`` seconds: a few small S3 writes per minute, nothing on EFS."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from . import attempts, runs, status

log = logging.getLogger(__name__)


def task_counts(
    recorded: list[attempts.Attempt], cached: int = 0, failed_call: str = ""
) -> tuple[status.TaskCounts, dict[str, list[str]]]:
    """Counts per call (its latest attempt decides), and each call's ECS tasks in attempt order.
    ``failed_call``: the call (``Attempt.call_path``) that failed the run, failed whatever its
    container did (a command that exited 0 and left an output missing fails in miniwdl, after)."""
    latest: dict[str, attempts.Attempt] = {}
    calls: dict[str, list[str]] = {}
    for attempt in recorded:
        key = attempt.path or attempt.call
        if key not in latest or attempt.attempt >= latest[key].attempt:
            latest[key] = attempt
        if attempt.task_arn:  # (by directory: sub-workflows' calls of one name kept apart)
            calls.setdefault(attempt.call_path(), []).append(attempt.task_arn)
    counts = status.TaskCounts(total=len(latest) + cached, retried=len(recorded) - len(latest), cached=cached)
    for attempt in latest.values():
        if failed_call and attempt.outcome == attempts.SUCCEEDED and attempt.call_path() == failed_call:
            counts.failed += 1
        elif attempt.outcome == attempts.SUCCEEDED:
            counts.succeeded += 1
        elif attempt.outcome == attempts.CANCELLED:
            counts.cancelled += 1
        elif attempt.outcome and attempt.outcome != attempts.RUNNING:
            counts.failed += 1
        elif attempt.running is not None:
            counts.running += 1
        else:
            counts.queued += 1
    return counts, calls


class StatusReporter:
    """Keeps the run's status.json current while miniwdl runs (a background thread)."""

    def __init__(self, bucket: str, run_id: str, interval: float) -> None:
        self.bucket, self.run_id, self.interval = bucket, run_id, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: tuple[Any, ...] | None = None

    def _attempts(self) -> list[attempts.Attempt]:
        return attempts.LOG.snapshot(run=self.run_id)

    def started(self, driver_task: str = "") -> None:
        def running(current: status.RunStatus) -> status.RunStatus:
            fields: dict[str, Any] = {"status": "RUNNING", "started_at": current.started_at or runs.now_iso()}
            if driver_task:
                fields["driver_task"] = driver_task
            return current.model_copy(update=fields)

        self._write(running)
        self._thread = threading.Thread(target=self._loop, name="status-reporter", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.publish()

    def publish(self, cached: int = 0, failed_call: str = "") -> None:
        counts, calls = task_counts(self._attempts(), cached, failed_call)
        fingerprint = (counts.model_dump_json(), sum(len(v) for v in calls.values()))
        if fingerprint == self._last:
            return
        self._last = fingerprint
        update: dict[str, Any] = {"tasks": counts, "calls": calls}
        if calls:  # (before its first task, the run is still fetching or staging: that phase stands)
            update["phase"] = "running the workflow"
        self._write(lambda current: current.model_copy(update=update))

    def stop(self, cached: int = 0, failed_call: str = "") -> None:
        """The background thread stopped; the last counts written."""
        self.halt()
        self.publish(cached, failed_call)

    def halt(self) -> None:
        """The background thread stopped (whatever the phase the run ended in), nothing written."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def counter(self, phase: str) -> "TransferCounter":
        """A ``s3io.Counted`` for a transfer phase ("staging inputs", "uploading outputs") that
        keeps status.json's phase and counts current, written at most every ``interval``."""
        return TransferCounter(self, phase)

    def _write(self, change: Any) -> None:
        try:
            status.update(self.bucket, self.run_id, change)
        except Exception:  # progress is a courtesy: never let it fail a run
            log.exception("could not update the status of run %s", self.run_id)


class TransferCounter:
    """Counts of a transfer phase, as s3transfer reports them from its threads: status.json gets
    them at most every ``interval`` seconds (a write in progress is not waited for: the next
    count writes), and ``flush`` writes the last ones."""

    def __init__(self, reporter: StatusReporter, phase: str) -> None:
        self.reporter, self.phase = reporter, phase
        self.done = self.total = 0
        self._written: tuple[int, int] | None = None
        self._last = float("-inf")
        self._writing = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = max(self.done, done), max(self.total, total)
        if time.monotonic() - self._last >= self.reporter.interval and self._writing.acquire(blocking=False):
            try:
                self._publish()
            finally:
                self._writing.release()

    def flush(self) -> None:
        with self._writing:
            self._publish()

    def _publish(self) -> None:
        now = (self.done, self.total)
        if now == self._written:
            return
        self._written, self._last = now, time.monotonic()
        counts = status.TransferCounts(done=now[0], total=now[1])

        def change(current: status.RunStatus) -> status.RunStatus:
            transfers = {**current.transfers, self.phase: counts}
            return current.model_copy(update={"phase": f"{self.phase} {now[0]}/{now[1]}", "transfers": transfers})

        self.reporter._write(change)


def cancelled(bucket: str, run_id: str) -> status.RunStatus | None:
    """The run's status if it was cancelled (the driver then reports that, not a failure)."""
    current = ended(bucket, run_id)
    return current if current is not None and current.status == "CANCELLED" else None


def ended(bucket: str, run_id: str) -> status.RunStatus | None:
    """The run's status if something already ended it (cancelled, timed out), else None."""
    try:
        current = status.read(bucket, run_id)
    except Exception:
        return None
    return current if current is not None and current.finished else None
