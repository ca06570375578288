"""The gc task: ``miniwdl-fargate gc --here`` where the stack's EFS is mounted (a task of the
driver's task definition, whose image has the plugin, whose task mounts the EFS that only tasks
in the VPC reach, and whose role reads the runs bucket and writes the report), launched at once by
``miniwdl-fargate gc`` (client.collect_remotely) or when a run's leftovers fall due (``schedule``).

Why a schedule: a driver collects what earlier runs left (a failed run's directory after
KeepFailedRunDays, the shared cache's entries unused for keep_unused_cache_days) when it starts,
so after a team's last run what it left would stay on EFS, billed by the GB-month, for good. The
finalize step of every run therefore makes sure a gc task runs once that run's leftovers are due:
a one-time EventBridge Scheduler schedule, one per day (every run ending that day shares it),
that deletes itself once it has run (ActionAfterCompletion DELETE), in the stack's own schedule
group (deleting the stack deletes the group and every schedule in it). It calls ECS RunTask as a
universal target, with the request below as its input:
https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-targets-universal.html
https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html
"""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass
from typing import Any, Iterable

from . import aws
from .driver_task import DriverTask

log = logging.getLogger(__name__)

#: the reports of ``gc`` tasks in the runs bucket (expired after 30 days: template.yaml)
GC_PREFIX = "gc/"
#: a gc task stops collecting after this long (what is left waits for the next collection), and
#: ends a little after it whatever it is doing (a call stuck on NFS): no gc task bills for good
MAX_SECONDS = 6 * 3600.0
EXIT_GRACE_SECONDS = 300.0
#: a scheduled gc task's schedule: this prefix and the day it runs (``efs-gc-2026-12-08``)
SCHEDULE_PREFIX = "efs-gc-"
#: a scheduled gc runs at this hour (UTC) of the day after its leftovers fall due, within
#: FLEXIBLE_MINUTES after it (EventBridge Scheduler spreads what falls due at once)
SCHEDULE_HOUR = 1
FLEXIBLE_MINUTES = 60


def run_task_request(
    task: DriverTask, bucket: str, report_key: str, dry_run: bool = False, keep_days: float | None = None,
    latest: bool = False,
) -> dict[str, Any]:
    """RunTask of ``miniwdl-fargate gc --here`` in a task of the driver's task definition (with
    ``latest``, its family's latest revision: ``DriverTask.family``), the command as a container
    override (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerOverride.html)."""
    command = ["miniwdl-fargate", "gc", "--here", "--bucket", bucket, "--report", report_key]
    if keep_days is not None:
        command += ["--keep-failed-days", f"{keep_days:g}"]
    if dry_run:
        command.append("--dry-run")
    return {
        "cluster": task.cluster,
        "taskDefinition": task.family if latest else task.task_definition,
        "launchType": "FARGATE",
        "count": 1,
        "networkConfiguration": task.network_configuration(),
        "overrides": {"containerOverrides": [{"name": task.container, "command": command}]},
        "startedBy": "miniwdl-fargate-gc",
    }


@dataclass(frozen=True)
class Collection:
    """What a run's finalize step needs to have its leftovers collected when they fall due: where
    the gc task runs, the stack's schedule group and the role EventBridge Scheduler runs it with,
    and how long the stack keeps what a run leaves."""

    driver_task: DriverTask
    schedule_group: str
    scheduler_role_arn: str
    keep_failed_run_days: float
    keep_unused_cache_days: float

    def due(self, finished: datetime.datetime, failed: bool) -> list[datetime.datetime]:
        """When what a run that ended at ``finished`` left falls due: the shared cache's entries
        it used; its own directory too if it failed (a successful run's goes at its end)."""
        days = [self.keep_unused_cache_days] + ([self.keep_failed_run_days] if failed else [])
        return sorted({finished + datetime.timedelta(days=d) for d in days})


def run_day(due: datetime.datetime) -> datetime.date:
    """The day a gc task runs for leftovers due at ``due``: the day after (its SCHEDULE_HOUR is
    then past ``due`` whatever the hour of ``due``)."""
    return due.astimezone(datetime.timezone.utc).date() + datetime.timedelta(days=1)


def schedule_request(collection: Collection, bucket: str, day: datetime.date) -> dict[str, Any]:
    """CreateSchedule of the gc task on ``day``: a one-time schedule (``at()``, in UTC) whose
    target is ECS RunTask (a universal target: arn:<partition>:scheduler:::aws-sdk:ecs:runTask,
    its input the request's JSON with the SDKs' member names, ``aws.sdk_parameters``), deleted
    once it has run. It runs the family's latest task definition: a pending schedule outlives a
    stack update."""
    name = f"{SCHEDULE_PREFIX}{day.isoformat()}"
    partition = collection.scheduler_role_arn.split(":")[1] if collection.scheduler_role_arn.startswith("arn:") else "aws"
    request = run_task_request(collection.driver_task, bucket, f"{GC_PREFIX}scheduled-{day.isoformat()}.json", latest=True)
    return {
        "Name": name,
        "GroupName": collection.schedule_group,
        "ScheduleExpression": f"at({day.isoformat()}T{SCHEDULE_HOUR:02d}:00:00)",
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": FLEXIBLE_MINUTES},
        "ActionAfterCompletion": "DELETE",
        "Description": "miniwdl-fargate: collect what runs left on EFS once due (failed runs' directories, unused cache entries)",
        "Target": {
            "Arn": f"arn:{partition}:scheduler:::aws-sdk:ecs:runTask",
            "RoleArn": collection.scheduler_role_arn,
            "Input": json.dumps(aws.sdk_parameters("ecs", "RunTask", request)),
        },
    }


def schedule(collection: Collection, bucket: str, dues: Iterable[datetime.datetime]) -> list[str]:
    """Make sure a gc task runs after each of ``dues``: the schedules made (one a day; a day's
    that exists already, made by a run that ended earlier, serves this one too). A schedule that
    cannot be made is logged, never raised: the run has ended, and the next driver's start or
    ``miniwdl-fargate gc`` still collects."""
    from botocore.exceptions import BotoCoreError, ClientError

    scheduler = aws.client("scheduler")
    made = []
    for day in sorted({run_day(d) for d in dues}):
        request = schedule_request(collection, bucket, day)
        try:
            scheduler.create_schedule(**request)
        except (ClientError, BotoCoreError) as exn:
            if aws.error_code(exn) == "ConflictException":
                continue  # that day's gc task is scheduled already
            log.warning(
                "could not schedule the collection of what runs left on EFS on %s (%s); the next run's driver "
                "collects it at its start, or run `miniwdl-fargate gc`", day, exn,
            )
            continue
        made.append(request["Name"])
    return made
