"""Fault injection for local mode: what AWS does on a bad day, on demand.

Set ``MINIWDL_FARGATE_LOCAL_FAULTS`` to a JSON object (or pass ``--faults`` to
``miniwdl-fargate local run``, or assign ``LocalStack.runtime.faults`` in a test), e.g.::

    {"run_task_throttles": 3, "run_task_capacity": 2, "spot_interruptions": 1,
     "kill_driver_after_tasks": 2, "duplicate_events": true,
     "lambda_errors": {"LaunchDriver": 2}, "lambda_crashes": {"Finalize": 5}}

- ``run_task_throttles``: the next N RunTask calls of WDL tasks answer ThrottlingException;
- ``run_task_capacity``: the next N RunTask calls of WDL tasks answer ``failures[]`` "Capacity is
  unavailable" (the driver's own launch is retried by the state machine: see ``lambda_errors``);
- ``fargate_vcpu_quota``: the account's concurrent Fargate vCPU quota (On-Demand and Spot each):
  RunTask of a WDL task that would take the tasks not yet stopped (drivers too) over it answers
  ``failures[]`` "You've reached the limit on the number of vCPUs you can run concurrently", and
  Service Quotas' GetServiceQuota answers it (local mode has no quota otherwise);
- ``run_task_lost_answers``: the next N RunTask calls of WDL tasks start their task, then answer
  with a server error, as if the answer were lost (botocore retries with the same clientToken);
- ``pull_failures``: the next N WDL tasks stop before starting with stop code TaskFailedToStart
  and the stopped reason ``CannotPullContainerError: <pull_error>`` (default: Docker Hub's rate
  limit; e.g. "... manifest unknown" for an image that does not exist);
- ``unrunnable_images``: the next N WDL tasks start, but their image cannot run the task's script
  (an image built only for arm64, or one with no /bin/sh): the container exits 1 at once, having run
  nothing of it, the runtime's "exec /bin/sh: exec format error" in its log, as Fargate's does;
- ``describe_missing`` (default 1, on unless set to 0): ECS is eventually consistent, so each WDL
  task is MISSING for the first N DescribeTasks calls that name it;
- ``spot_interruptions``: the next N tasks on FARGATE_SPOT are reclaimed a moment after they start
  (SIGTERM, stop code SpotInterruption);
- ``kill_driver_after_tasks``: a driver is killed (SIGKILL) once it has launched N WDL tasks;
- ``lose_driver_stopped_events``: the STOPPED events of the next N drivers never reach EventBridge
  (as when the event, or the function handling it, is lost for good): only the state machine's
  heartbeat timeout can then end the run;
- ``duplicate_events``: every EventBridge delivery to a Lambda or Step Functions target happens
  twice;
- ``lambda_errors``: the next N invocations of functions whose name contains the key fail as the
  Lambda service does (``Lambda.ServiceException``); ``lambda_crashes``: their handler raises.
  The launch function's TakeDriverSlot invocations are named by their step, ``take_slot``.

The counters run down as faults are injected; ``injected`` records what happened.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

ENV = "MINIWDL_FARGATE_LOCAL_FAULTS"
#: RunTask's failure reason when the account's concurrent vCPU quota is reached
#: (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-quotas.html)
VCPU_QUOTA_REASON = "You've reached the limit on the number of vCPUs you can run concurrently"
CAPACITY_REASON = "Capacity is unavailable at this time. Please try again later or in a different availability zone"
#: what a container whose image cannot run its command does (``unrunnable_images``): the runtime
#: says so in its log and it exits 1, nothing of the task's script run
UNRUNNABLE_SCRIPT = "echo 'exec /bin/sh: exec format error' >&2; exit 1"
RATE_LIMITED_PULL = (
    "pull image manifest has been retried 5 time(s): unexpected status code 429 Too Many Requests - "
    "Server message: toomanyrequests: You have reached your pull rate limit."
)


@dataclass
class Faults:
    run_task_throttles: int = 0
    run_task_capacity: int = 0
    run_task_lost_answers: int = 0
    fargate_vcpu_quota: float | None = None
    pull_failures: int = 0
    pull_error: str = RATE_LIMITED_PULL
    unrunnable_images: int = 0
    describe_missing: int = 1
    spot_interruptions: int = 0
    kill_driver_after_tasks: int | None = None
    lose_driver_stopped_events: int = 0
    duplicate_events: bool = False
    lambda_errors: dict[str, int] = field(default_factory=dict)
    lambda_crashes: dict[str, int] = field(default_factory=dict)
    injected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str | None) -> "Faults":
        if not text:
            return cls()
        try:
            spec = json.loads(text)
            if not isinstance(spec, dict):
                raise ValueError("expected a JSON object")
            unknown = set(spec) - {f for f in cls.__dataclass_fields__ if f != "injected"}
            if unknown:
                raise ValueError(f"unknown fault(s) {sorted(unknown)}")
            return cls(**spec)
        except (ValueError, TypeError) as exn:
            raise ValueError(f"{ENV} / --faults: {exn} (see miniwdl_fargate/local/faults.py)") from None

    @classmethod
    def from_env(cls) -> "Faults":
        return cls.parse(os.environ.get(ENV))

    def take(self, counter: str) -> bool:
        """Whether to inject one fault of the counter's kind now (and count it down)."""
        with self._lock:
            left = getattr(self, counter)
            if left and left > 0:
                setattr(self, counter, left - 1)
                self.injected.append(counter)
                return True
            return False

    def take_lambda(self, function_name: str) -> str | None:
        """"error" / "crash" when an invocation of ``function_name`` should fail, else None."""
        with self._lock:
            for kind, table in (("error", self.lambda_errors), ("crash", self.lambda_crashes)):
                for key, left in table.items():
                    if key in function_name and left > 0:
                        table[key] = left - 1
                        self.injected.append(f"lambda_{kind}:{key}")
                        return kind
            return None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {k: v for k, v in asdict(self).items() if k != "injected"}
