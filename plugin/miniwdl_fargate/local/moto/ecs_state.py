"""The one module that writes ECS task state into moto: what ECS itself would record of a task as
the local runner runs it (status transitions, the container's exit code and reason, the stop code
and reason, the times, the version), and the "ECS Task State Change" events it emits.

The runner (``ecs_runner``) calls it with a task's ARN and plain values, through the
``ecs_runner.TaskState`` protocol; only this module changes moto's Task objects once they exist
(``moto.hooks`` hands each over at RunTask, ``register``). What moto leaves out of a new task as
it creates one (its cpu and memory, capacity provider, volume configurations, image digest) is
filled in by ``moto.fixes``, in moto's RunTask.
"""

from __future__ import annotations

import collections
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
    """A copy of moto's task (and of its containers) as it is between two writes, for an answer
    (one moto does not keep: ``moto.tracking``)."""
    from .tracking import untracked_copy

    with WRITE_LOCK:
        copied = untracked_copy(task)
        copied.containers = [untracked_copy(c) for c in task.containers]
        return copied


#: how long a stopped task stays known to ECS: "Currently, stopped tasks appear in the returned
#: results for at least one hour" (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTasks.html).
#: Local mode forgets it then, as moto never does: a stack that stays up keeps an hour of tasks,
#: not every task it ever ran
STOPPED_TASKS_KEPT_SECONDS = 3600.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _release_network_interfaces(task: Any) -> list[Any]:
    """Take the network interfaces moto's RunTask made for an awsvpc task out of moto's EC2; return them."""
    from moto.ec2.models import ec2_backends

    enis = ec2_backends[task._account_id][task.region_name].enis
    released = []
    for attachment in getattr(task, "attachments", None) or []:
        for detail in attachment.get("details") or []:
            if detail.get("name") == "networkInterfaceId":
                eni = enis.pop(detail.get("value"), None)
                if eni is not None:
                    released.append(eni)
    return released


class MotoTaskState:
    """The state of the tasks RunTask created in moto, by task ARN."""

    def __init__(
        self, region: str, kept_seconds: float = STOPPED_TASKS_KEPT_SECONDS, clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.region = region
        #: called once a task's new status is in place (``local.changes``: what clients watch)
        self.on_change = on_change
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
                if arn in self._tasks:
                    gone.append((arn, self._tasks[arn]))
        if not gone:  # (each RunTask asks: most find nothing to forget, and take no other lock)
            return 0
        from .tracking import untrack

        forgotten: list[Any] = []
        with WRITE_LOCK:  # (out of moto first: a StopTask then finds nothing, not a task this forgot)
            for arn, task in gone:
                task._backend.tasks.get(task.cluster_name, {}).pop(arn, None)
                forgotten += [task, *task.containers, *_release_network_interfaces(task)]
            untrack(forgotten)  # (moto's last reference to them)
        with self._lock:
            for arn, _task in gone:
                self._tasks.pop(arn, None)
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
        self.on_change()

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
        self.on_change()

    def last_status(self, task_arn: str) -> str | None:
        """The task's last status; None for a task this registry forgot (or never had)."""
        with self._lock:
            task = self._tasks.get(task_arn)
        return None if task is None else task.last_status

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
        from . import direct

        return direct.client("ecs", self.region, LOCAL_RUNTIME_AGENT)

    def emit(self, task_arn: str) -> None:
        """An "ECS Task State Change" event with the task as DescribeTasks shows it now, into
        moto's EventBridge (where ``moto.hooks`` delivers it to the rules' targets): where a rule
        of the default bus may match it (``_heard``). An event no rule matches reaches no one, on
        EventBridge as here; building its detail (a DescribeTasks) was most of its cost, two per
        WDL task, whose events no rule of the stack matches."""
        task = self._task(task_arn)
        from moto.events.models import events_backends

        account = task.cluster_arn.split(":")[4]
        try:
            heard = _heard(events_backends[account][self.region].describe_event_bus("default"), _event_head(task, account, self.region))
        except Exception:  # (then the whole event, and moto's matching decides)
            log.exception("cannot tell whether a rule may match the state change event of %s", task_arn)
            heard = True
        if not heard:
            return
        try:
            desc = self.ecs().describe_tasks(cluster=task.cluster_arn, tasks=[task_arn])["tasks"][0]
        except Exception:
            log.exception("cannot describe %s for its state change event", task_arn)
            return
        desc["version"] = task.version
        desc["updatedAt"] = _now()
        detail = json.dumps(desc, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))
        events_backends[account][self.region].put_events(
            [{"Source": "aws.ecs", "DetailType": "ECS Task State Change", "Detail": detail, "Resources": [task_arn]}]
        )


#: the fields of an "ECS Task State Change" event's detail known without describing the task (by
#: their names in DescribeTasks' answer, and the Task attributes moto keeps them in)
HEAD_FIELDS = {
    "clusterArn": "cluster_arn", "taskArn": "task_arn", "taskDefinitionArn": "task_definition_arn",
    "group": "group", "lastStatus": "last_status", "desiredStatus": "desired_status",
    "launchType": "launch_type", "stopCode": "stop_code",
}
#: the envelope fields of an event known before EventBridge takes it
HEAD_ENVELOPE = ("source", "detail-type", "account", "region", "resources")


def _event_head(task: Any, account: str, region: str) -> dict[str, Any]:
    """The event as far as it is known without a DescribeTasks: its envelope and ``HEAD_FIELDS``
    of its detail (those moto holds; the answer leaves out a field it does not hold, as this does)."""
    with WRITE_LOCK:
        detail = {name: getattr(task, attribute, None) for name, attribute in HEAD_FIELDS.items()}
    return {
        "source": "aws.ecs", "detail-type": "ECS Task State Change", "account": account, "region": region,
        "resources": [detail["taskArn"]], "detail": {k: v for k, v in detail.items() if v is not None},
    }


def _heard(bus: Any, head: dict[str, Any]) -> bool:
    """Whether a rule of ``bus`` may match the event ``head`` begins. An event matches a pattern
    when it matches each of the pattern's fields (``$or`` is one more such condition), so a rule
    whose fields that the head holds do not match cannot match the whole event either; any other
    rule may (moto's own matching then decides, on the whole event)."""
    from moto.events.models import EventPattern

    for rule in list(bus.rules.values()):
        pattern = rule.event_pattern.get_pattern() or {}
        known = {key: value for key, value in pattern.items() if key in HEAD_ENVELOPE}
        detail = pattern.get("detail")
        if isinstance(detail, dict) and any(key in HEAD_FIELDS for key in detail):
            known["detail"] = {key: value for key, value in detail.items() if key in HEAD_FIELDS}
        if not known or EventPattern.load(json.dumps(known)).matches_event(head):
            return True
    return False
