"""The one module that writes ECS task state into moto: what ECS itself would record of a task as
the local runner runs it (status transitions, the container's exit code and reason, the stop code
and reason, the times, the version), and the "ECS Task State Change" events it emits.

The runner (``ecs_runner``) calls it with a task's ARN and plain values, through the
``ecs_runner.TaskState`` protocol; only this module touches moto's Task objects (which
``moto.hooks`` hands it at RunTask, ``register``).
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

#: the local runtime's own ECS calls carry this in their User-Agent: "ECS itself" always knows
#: its tasks, so DescribeTasks hides nothing from it (``moto.hooks``)
LOCAL_RUNTIME_AGENT = "miniwdl-fargate-local-runtime"

log = logging.getLogger("miniwdl-fargate.local")

#: held while a task's state is written (several attributes: exit code, stop code, status ...) and
#: while an answer takes its copy of a task (``snapshot``): ECS answers DescribeTasks from one
#: consistent record, but moto serializes its answer attribute by attribute after the handler
#: returns (a task's ``containers`` before its ``lastStatus``), so without a copy taken under this
#: lock an answer could say STOPPED without the exit code written just before it
WRITE_LOCK = threading.RLock()


def snapshot(task: Any) -> Any:
    """A copy of moto's task (and of its containers) as it is between two writes, for an answer."""
    with WRITE_LOCK:
        copied = copy.copy(task)
        copied.containers = [copy.copy(c) for c in task.containers]
        return copied


#: how long a stopped task stays known to ECS: "Currently, stopped tasks appear in the returned
#: results for at least one hour" (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTasks.html).
#: Local mode forgets it then, as moto never does: a stack that stays up keeps an hour of tasks,
#: not every task it ever ran
STOPPED_TASKS_KEPT_SECONDS = 3600.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _release_network_interfaces(task: Any) -> None:
    """The network interfaces moto's RunTask made for an awsvpc task, out of moto's EC2."""
    from moto.ec2.models import ec2_backends

    enis = ec2_backends[task._account_id][task.region_name].enis
    for attachment in getattr(task, "attachments", None) or []:
        for detail in attachment.get("details") or []:
            if detail.get("name") == "networkInterfaceId":
                enis.pop(detail.get("value"), None)


class MotoTaskState:
    """The state of the tasks RunTask created in moto, by task ARN."""

    def __init__(
        self, region: str, kept_seconds: float = STOPPED_TASKS_KEPT_SECONDS, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.region = region
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._kept_seconds, self._clock = kept_seconds, clock
        self._stopped: collections.deque[tuple[float, str]] = collections.deque()  # (when, ARN), oldest first

    def register(self, task: Any) -> None:
        """A task moto's RunTask just created (from ``moto.hooks``); and the tasks stopped longer
        ago than ECS shows them are forgotten."""
        with self._lock:
            self._tasks[task.task_arn] = task
        self.forget_stopped()

    def forget_stopped(self) -> int:
        """Take the tasks that stopped ``kept_seconds`` ago or more out of moto (DescribeTasks,
        ListTasks and StopTask no longer know them; the network interface moto made for each
        goes too, long gone on ECS by then) and out of this registry; how many."""
        now, gone = self._clock(), []
        with self._lock:
            while self._stopped and now - self._stopped[0][0] >= self._kept_seconds:
                arn = self._stopped.popleft()[1]
                task = self._tasks.pop(arn, None)
                if task is not None:
                    gone.append((arn, task))
        with WRITE_LOCK:
            for arn, task in gone:
                task._backend.tasks.get(task.cluster_name, {}).pop(arn, None)
                _release_network_interfaces(task)
        return len(gone)

    def _task(self, task_arn: str) -> Any:
        with self._lock:
            return self._tasks[task_arn]

    def provisioning(self, task_arn: str) -> None:
        """Just launched: PROVISIONING, version 1, its container PENDING without an exit code."""
        task = self._task(task_arn)
        with WRITE_LOCK:
            task.created_at = _now()
            task.status = "PROVISIONING"
            task.stop_code = None
            task.version = 1
            for container in task.containers:
                container.exitCode = None
                container.last_status = "PENDING"

    def set_status(self, task_arn: str, status: str) -> None:
        """The task's last status (and its container's), one version on; RUNNING sets its start time."""
        task = self._task(task_arn)
        with WRITE_LOCK:
            if status == "RUNNING":
                task.started_at = _now()
            task.status = status
            task.version = getattr(task, "version", 1) + 1
            for container in task.containers:
                container.last_status = status if status in ("RUNNING", "STOPPED") else "PENDING"

    def last_status(self, task_arn: str) -> str:
        return self._task(task_arn).last_status

    def stop_requested(self, task_arn: str, reason: str) -> None:
        """StopTask: as ECS does, from the request on the task itself can read why it is being stopped."""
        task = self._task(task_arn)
        with WRITE_LOCK:
            task.desired_status = "STOPPED"
            task.stop_code, task.stopped_reason = "UserInitiated", reason

    def stopping(self, task_arn: str) -> None:
        """Its container was sent SIGTERM."""
        self._task(task_arn).stopping_at = _now()

    def stopped(
        self, task_arn: str, stop_code: str, reason: str, exit_code: int | None = None, container_reason: str | None = None,
    ) -> None:
        """The task ended: STOPPED with its stop code and reason, its container's exit code (and
        reason, where it has one)."""
        task = self._task(task_arn)
        with WRITE_LOCK:  # (one change: an answer sees all of it or none of it)
            task.containers[0].exitCode = exit_code
            if container_reason:
                for container in task.containers:
                    container.reason = container_reason
            task.stop_code = stop_code
            task.stopped_reason = reason
            task.stopped_at = _now()
            task.desired_status = "STOPPED"
            self.set_status(task_arn, "STOPPED")
        with self._lock:
            self._stopped.append((self._clock(), task_arn))

    def ecs(self) -> Any:
        """The runtime's own ECS client: "ECS itself", which always knows its tasks (DescribeTasks
        hides nothing from it, see ``moto.hooks``), answered by moto in this process (``moto.direct``)."""
        from .moto import direct

        return direct.client("ecs", self.region, LOCAL_RUNTIME_AGENT)

    def emit(self, task_arn: str) -> None:
        """An "ECS Task State Change" event with the task as DescribeTasks shows it now, into
        moto's EventBridge (where ``moto.hooks`` delivers it to the rules' targets)."""
        task = self._task(task_arn)
        try:
            desc = self.ecs().describe_tasks(cluster=task.cluster_arn, tasks=[task_arn])["tasks"][0]
        except Exception:
            log.exception("cannot describe %s for its state change event", task_arn)
            return
        desc["version"] = task.version
        desc["updatedAt"] = _now()
        detail = json.dumps(desc, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))
        from moto.events.models import events_backends

        account = task.cluster_arn.split(":")[4]
        events_backends[account][self.region].put_events(
            [{"Source": "aws.ecs", "DetailType": "ECS Task State Change", "Detail": detail, "Resources": [task_arn]}]
        )
