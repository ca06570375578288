"""The attempts log: one ``Attempt`` per WDL task attempt, recorded by the container backends in a
process-wide ``LOG`` (the driver runs miniwdl in its own process, so the records are at hand when the
run ends and nothing extra is written on EFS while tasks run); read by the driver's progress,
metrics and run report."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SUCCEEDED = "succeeded"
FAILED = "failed"
OUT_OF_MEMORY = "out of memory"
INTERRUPTED = "interrupted"
FAILED_TO_START = "failed to start"
CANCELLED = "cancelled"
RUNNING = "running"  # not finished when the report was made
OUTCOMES = (SUCCEEDED, FAILED, OUT_OF_MEMORY, INTERRUPTED, FAILED_TO_START, CANCELLED, RUNNING)
#: miniwdl's name of a workflow's run directory (``WDL._util.provision_run_dir``)
_RUN_DIR = re.compile(r"^\d{8}_\d{6}_")


def epoch(value: Any) -> float | None:
    """An ECS timestamp (boto3 gives datetimes) as epoch seconds, as an attempt's times are."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None


def call_path_of(directory: str, call: str) -> str:
    """A call's name in what the run reports: its ``directory`` under the workflow's run
    directory (miniwdl's, named ``<yyyymmdd>_<hhmmss>_<workflow>``), ``call-inner/call-say_hi``
    for a call of a sub-workflow; ``call`` (its id) when the directory says nothing more."""
    parts = directory.rstrip("/").split("/") if directory else []
    # (the last such directory holding a call's: a run named like one is further up)
    for i in range(len(parts) - 2, -1, -1):
        if _RUN_DIR.match(parts[i]) and parts[i + 1].startswith("call-"):
            return "/".join(parts[i + 1:])
    return call


@dataclass
class Attempt:
    """One attempt of one WDL task: one ECS task (or host process), or a launch that never was.

    Times are epoch seconds. ``queued``: the task thread asked to launch (before waiting for a
    launch token); ``launched``: RunTask accepted it; ``running``: its container started (ECS
    ``startedAt``); ``stopped``: it stopped (ECS ``stoppedAt``).
    """

    call: str  # miniwdl's id of the call (the container's run_id), e.g. call-greet-2
    attempt: int  # 1, 2, ...: miniwdl's try counter
    run: str = ""  # the pipeline's run id
    path: str = ""  # the call's directory, for labels that tell sub-workflow calls apart
    image: str = ""  # as the task asked for it (runtime.docker / container)
    image_uri: str = ""  # as it ran: the image cache's rewrite of ``image``, if any
    image_digest: str = ""  # what ran, by content: ECS's imageDigest of the container (sha256:...)
    cpu: int = 0  # cpu units (1024 = 1 vCPU)
    memory: int = 0  # MiB
    ephemeral_gib: int = 20
    gpus: int = 0
    scratch_gib: int | None = None  # an EBS scratch volume of this size (None: none)
    capacity: str = ""  # FARGATE, FARGATE_SPOT, MANAGED_INSTANCES, MANAGED_INSTANCES_SPOT, or local
    queued: float = 0.0
    launched: float | None = None
    running: float | None = None
    stopped: float | None = None
    billing_start: float | None = None
    outcome: str = ""
    exit_code: int | None = None
    detail: str = ""  # why it ended so (stop reason, container reason, error)
    task_arn: str = ""
    public_ip: bool = False  # its network interface got a public IPv4 address (assignPublicIp ENABLED)
    #: what it read of the shared file system, at least (its inputs, each once: ``base.input_bytes``)
    #: and wrote (the files left in its working directory: ``base.written_bytes``): EFS Elastic
    #: throughput bills by the byte
    efs_read_bytes: int = 0
    efs_written_bytes: int = 0

    def call_path(self) -> str:
        """The call's name in what the run reports (``call_path_of``): ``call-inner/call-say_hi``
        for a sub-workflow's, which ``call`` (``call-say_hi``) does not tell from the workflow's."""
        return call_path_of(self.path, self.call)

    def outcome_text(self) -> str:
        if self.outcome in (FAILED, OUT_OF_MEMORY) and self.exit_code is not None:
            return f"{self.outcome} (exit {self.exit_code})"
        return self.outcome or RUNNING


class AttemptLog:
    """The attempts of this process's tasks: appended by task threads, read by the driver."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: list[Attempt] = []

    def begin(self, **facts: Any) -> Attempt:
        facts.setdefault("queued", time.time())
        attempt = Attempt(**facts)
        with self._lock:
            self._attempts.append(attempt)
        return attempt

    def update(self, attempt: Attempt, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(attempt, key, value)

    def finish(self, attempt: Attempt, outcome: str, **changes: Any) -> None:
        """Set the outcome unless the backend already said (it knows Spot from OOM), and the
        stop time if no better one came from ECS."""
        with self._lock:
            for key, value in changes.items():
                setattr(attempt, key, value)
            if not attempt.outcome:
                attempt.outcome = outcome
            if attempt.stopped is None:
                attempt.stopped = time.time()

    def snapshot(self, run: str | None = None) -> list[Attempt]:
        """Copies of the attempts (of one run, if given): calls in the order their first attempt
        was queued, each call's attempts together."""
        with self._lock:
            found = [dataclasses.replace(a) for a in self._attempts if run is None or a.run == run]
        first: dict[str, float] = {}
        for a in found:
            first[a.path or a.call] = min(first.get(a.path or a.call, a.queued), a.queued)
        return sorted(found, key=lambda a: (first[a.path or a.call], a.path or a.call, a.attempt))

    def latest(self, path: str) -> Attempt | None:
        """A copy of the last attempt of the call whose directory is ``path`` (None: none)."""
        with self._lock:
            found = next((a for a in reversed(self._attempts) if a.path == path), None)
            return dataclasses.replace(found) if found is not None else None

    def clear(self) -> None:
        with self._lock:
            self._attempts.clear()


#: the attempts of this process's tasks (every backend instance appends here)
LOG = AttemptLog()
