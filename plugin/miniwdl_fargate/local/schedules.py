"""EventBridge Scheduler in local mode: moto keeps schedules and never runs them; this runs the
one-time schedules whose time has come as EventBridge Scheduler does. A universal target
(``arn:<partition>:scheduler:::aws-sdk:<service>:<apiAction>``) is that API called with the
schedule's Input as its request, its members named as the AWS SDKs name them (PascalCase:
``aws.sdk_parameters``; the stack's gc task: ``aws-sdk:ecs:runTask``), and a schedule
whose ActionAfterCompletion is DELETE is then deleted
(https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-targets-universal.html,
https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html).

It talks to the stack as any client does (its API, through ``aws.client``): it knows nothing of
moto. Recurring (``rate()``/``cron()``) schedules and templated targets are not run (the stack
makes none); a schedule it cannot run is logged and left, as AWS would retry it.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from typing import Any

from botocore import xform_name

from .. import aws

log = logging.getLogger("miniwdl-fargate.local")

AT = re.compile(r"^at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)$")
UNIVERSAL = re.compile(r"^arn:[a-z-]+:scheduler:::aws-sdk:([a-z0-9-]+):([A-Za-z0-9]+)$")


def due_at(schedule: dict[str, Any]) -> datetime.datetime | None:
    """When a one-time schedule falls due (its ``at()`` in its time zone), or None (recurring)."""
    found = AT.match(schedule.get("ScheduleExpression", ""))
    if not found:
        return None
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(schedule.get("ScheduleExpressionTimezone") or "UTC")
    return datetime.datetime.fromisoformat(found.group(1)).replace(tzinfo=zone)


def call_target(target: dict[str, Any]) -> Any:
    """Call a universal target's API with its Input as the request (ValueError: not a universal
    target)."""
    found = UNIVERSAL.match(target.get("Arn", ""))
    if not found:
        raise ValueError(f"not a universal target: {target.get('Arn')!r}")
    service, action = found.groups()
    api = aws.client(service)
    operation = api.meta.method_to_api_mapping[xform_name(action)]
    request = aws.sdk_parameters(service, operation, json.loads(target.get("Input") or "{}"), to_sdk=False)
    return getattr(api, xform_name(action))(**request)


def fire_due(now: datetime.datetime | None = None) -> list[str]:
    """Run every one-time schedule due by ``now`` (this moment): ``group/name`` of each run."""
    from botocore.exceptions import ClientError

    now = now or datetime.datetime.now(datetime.timezone.utc)
    scheduler = aws.client("scheduler")
    fired = []
    for page in scheduler.get_paginator("list_schedules").paginate(State="ENABLED"):
        for listed in page.get("Schedules", []):
            group, name = listed.get("GroupName") or "default", listed["Name"]
            schedule = scheduler.get_schedule(GroupName=group, Name=name)
            due = due_at(schedule)
            if due is None or due > now:
                continue
            try:
                call_target(schedule["Target"])
            except (ClientError, ValueError, TypeError) as exn:
                log.warning("local mode: schedule %s/%s: its target failed: %s", group, name, exn)
                continue
            if schedule.get("ActionAfterCompletion") == "DELETE":
                scheduler.delete_schedule(GroupName=group, Name=name)
            fired.append(f"{group}/{name}")
    return fired
