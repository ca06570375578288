"""Launch the driver task of a run, carrying the Step Functions task token."""

from __future__ import annotations

import hashlib
import logging
import posixpath

from botocore.exceptions import BotoCoreError, ClientError

from .. import aws, driver_task, run_options, runs, status
from . import driver_slots as slots_module
from .settings import LaunchSettings

log = logging.getLogger(__name__)


class DriverCapacityUnavailable(RuntimeError):
    """RunTask answered with failures[] (e.g. no Fargate capacity): the state machine retries."""


class DriverSlotUnavailable(RuntimeError):
    """As many runs have drivers as the stack lets at once (``slot_count``): the run waits its
    turn, the state machine trying again, up to every minute (its TakeDriverSlot step)."""


class DriverLaunchFailed(RuntimeError):
    """RunTask of the driver raised (throttled beyond botocore's retries, a network failure, a
    permission missing): the state machine retries a few times, then fails the run with this."""


def driver_environment(record: runs.RunRecord, task_token: str) -> list[dict[str, str]]:
    return [
        {"name": "RUN_ID", "value": record.run_id},
        {"name": "RUN_WORKFLOW", "value": record.workflow},
        {"name": "RUN_INPUTS", "value": record.inputs},
        {"name": "RUN_RESULTS", "value": record.results},
        {"name": "SFN_TASK_TOKEN", "value": task_token},
        # not the run's options: their labels alone may pass RunTask's 8,192 characters of overrides
        # (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_TaskOverride.html); the
        # driver reads them from the run record (run.json) beside its results
        # the driver heartbeats well within this (driver.Heartbeat)
        {"name": "SFN_HEARTBEAT_SECONDS", "value": str(record.heartbeat_seconds)},
    ]


def workflow_name(record: runs.RunRecord) -> str:
    """The run's workflow, as its tag names it: the WDL's workflow (or only task) as submit found
    it, else (a record from before that) the WDL file's name without its extension."""
    return record.workflow_name or posixpath.basename(record.workflow).rsplit(".", 1)[0]


def driver_tags(record: runs.RunRecord) -> list[dict[str, str]]:
    """The driver task's tags: the run id (sweep.py finds a run's tasks by it), call "driver", the
    run's name and workflow, and its labels (at most 45: ``run_options.MAX_LABELS``), so the
    driver's cost is the run's in Cost Explorer. RunTask needs ``ecs:TagResource`` for them
    (template.yaml: TagDriverAtLaunch;
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/supported-iam-actions-tagging.html).
    The task definition's own tags are propagated too (``propagateTags``: the stack's tags, where
    it has some), unless they and these are over ECS's 50 (``launch_driver``)."""
    labels = dict((record.options or {}).get("labels") or {})
    own = {run_options.TAG_RUN: record.run_id, run_options.TAG_CALL: "driver"}
    return run_options.ecs_tags({**own, **run_options.run_tags(labels, record.name, workflow_name(record))})


def driver_client_token(run_id: str, task_token: str) -> str:
    """RunTask's clientToken for the driver of one state-machine attempt: the same for every
    invocation of the launch Lambda that carries the same run and Step Functions task token, so
    a retried invocation gets the driver the first one started instead of a second driver. 64 hex
    characters: RunTask allows up to 64 ASCII characters 33-126 and treats a token as idempotent
    within its cluster (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/ECS_Idempotency.html)."""
    return hashlib.sha256(f"{run_id}\n{task_token}".encode()).hexdigest()


class RunAlreadyEnded(RuntimeError):
    """The run was cancelled (or otherwise ended) before its driver ran: no driver is left
    running for it. The state machine catches this and records the run's end, which keeps the
    state it already has (``status.update``)."""


def refuse_ended_run(record: runs.RunRecord) -> None:
    """Launch no driver for a run that has ended (cancelled while SUBMITTED)."""
    current = status.read(record.bucket, record.run_id)
    if current is not None and current.finished:
        raise RunAlreadyEnded(f"run {record.run_id} is {current.status}: its driver is not launched")


def earlier_drivers(ecs, settings: LaunchSettings, record: runs.RunRecord, task_token: str) -> tuple[str | None, list[str]]:
    """The run's drivers ECS still runs: (the one this state-machine attempt already launched, if
    a retried invocation finds it; those of earlier attempts). An earlier attempt's driver holds
    a task token the state machine no longer waits on: it could never report, and would run the
    workflow beside the new one. A RunTask whose answer was lost (DriverLaunchFailed, retried by
    the state machine with a new token, so a new clientToken) may have started one."""
    family = driver_task.family_of(settings.driver_task_definition)
    # startedBy alone (the run's driver and its tasks; RUNNING, ListTasks' default): ECS refuses it
    # with any other filter ("When you specify startedBy as the filter, it must be the only filter
    # that you use", API_ListTasks: InvalidParameterException "cannot specify startedBy with other
    # arguments"), so the driver's family is picked out here, among the run's WDL tasks, if an
    # earlier driver left any running (DescribeTasks: at most 100 tasks a call)
    pages = ecs.get_paginator("list_tasks").paginate(cluster=settings.cluster, startedBy=runs.started_by(record.run_id))
    listed = [arn for page in pages for arn in page.get("taskArns", [])]
    described = [
        task for i in range(0, len(listed), 100)
        for task in ecs.describe_tasks(cluster=settings.cluster, tasks=listed[i : i + 100]).get("tasks", [])
    ]
    ours, stale = None, []
    for task in [t for t in described if driver_task.family_of(t["taskDefinitionArn"]) == family]:
        overrides = (task.get("overrides") or {}).get("containerOverrides") or []
        env = {e["name"]: e["value"] for o in overrides for e in o.get("environment") or []}
        if env.get("SFN_TASK_TOKEN") == task_token:
            ours = task["taskArn"]
        else:
            stale.append(task["taskArn"])
    return ours, stale


#: with MaxConcurrentRuns 0, the drivers together hold at most this share of the account's Fargate
#: On-Demand vCPU quota: each holds its vCPUs for its whole run, and drivers holding the quota
#: leave their tasks none, each run waiting for the others for good (a new account's quota is a
#: few vCPUs: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-quotas.html)
DRIVER_QUOTA_SHARE = 0.25


def slot_count(settings: LaunchSettings, quota: float | None) -> tuple[int, str]:
    """How many runs may have a driver at once, and why: MaxConcurrentRuns, or (0) as many as
    DRIVER_QUOTA_SHARE of ``quota`` holds at the driver's size, at least one; one when the quota
    cannot be read (never no limit: that is the deadlock this prevents)."""
    if settings.max_concurrent_runs > 0:
        return settings.max_concurrent_runs, "the stack's MaxConcurrentRuns"
    if quota is None:
        return 1, ("the account's Fargate On-Demand vCPU quota could not be read from Service Quotas: one run at a time; "
                   "the stack's MaxConcurrentRuns sets how many")
    vcpus = settings.driver_cpu / 1024
    slots = max(1, int(quota * DRIVER_QUOTA_SHARE // vcpus))
    return slots, (
        f"a quarter of the account's Fargate On-Demand vCPU quota ({quota:g}) at {vcpus:g} vCPU a driver; "
        "MaxConcurrentRuns sets it, a larger quota raises it"
    )


def fargate_vcpu_quota() -> float | None:
    """The account's Fargate On-Demand vCPU quota (``launcher.read_vcpu_quota``), asked at each
    launch (an increase counts at once); None where Service Quotas refuses (denied);
    DriverSlotUnavailable when it fails for a moment (throttled): the run looks again, rather
    than go by a default a raised quota is above."""
    from ..backend.launcher import read_vcpu_quota

    try:
        return read_vcpu_quota(aws.client("service-quotas"), "FARGATE", default=True)
    except (ClientError, BotoCoreError) as exn:
        if aws.passing(exn):
            raise DriverSlotUnavailable(f"the account's Fargate On-Demand vCPU quota could not be read for now ({exn}); trying again") from exn
        log.warning("could not read the account's Fargate On-Demand vCPU quota (%s): one run at a time", exn)
        return None


def take_a_slot(settings: LaunchSettings, record: runs.RunRecord) -> str:
    """Hold one of the stack's driver slots (``slot_count`` of them: ``driver_slots``), the run's
    status saying which: its key. DriverSlotUnavailable while runs still going hold them all,
    its status saying why it waits, or while the slots cannot be looked at (S3 throttling: the
    run waits as it would, and is not failed for it)."""
    slots, why = slot_count(settings, fargate_vcpu_quota() if settings.max_concurrent_runs == 0 else None)
    try:
        key = slots_module.take(record.bucket, settings.cluster, record.run_id, slots)
    except (ClientError, BotoCoreError) as exn:
        if aws.passing(exn):  # (throttled, S3 or ECS failing for a moment: the run waits as it would)
            raise DriverSlotUnavailable(f"run {record.run_id}: the driver slots could not be looked at ({exn}); trying again") from exn
        raise DriverLaunchFailed(f"run {record.run_id}: the driver slots could not be looked at: {exn}") from exn
    if key is not None:
        try:
            status.update(record.bucket, record.run_id, lambda current: current.model_copy(update={"driver_slot": key, "phase": None}),
                          initial=status.new(record))
        except BaseException as exn:
            # (the status names the slot a retried launch finds as the run's own: a slot it does
            # not name would be held beside the one the retry takes, until the run's end)
            slots_module.give_back(record.bucket, record.run_id, key)
            if isinstance(exn, (ClientError, BotoCoreError)) and aws.passing(exn):  # (S3 failing for a moment: it waits as it would)
                raise DriverSlotUnavailable(f"run {record.run_id}: its status could not be written ({exn}); trying again") from exn
            raise
        return key
    said = f"queued behind other runs: at most {slots} run(s) of this stack have a driver at once ({why})"

    def queued(current: status.RunStatus) -> status.RunStatus | None:
        return current.model_copy(update={"phase": said}) if current.status == "SUBMITTED" and current.phase != said else None

    status.update(record.bucket, record.run_id, queued)
    raise DriverSlotUnavailable(f"run {record.run_id} {said}")


def launch_driver(settings: LaunchSettings, record: runs.RunRecord, task_token: str) -> str:
    refuse_ended_run(record)
    ecs = aws.client("ecs")
    try:
        ours, stale = earlier_drivers(ecs, settings, record, task_token)
    except (ecs.exceptions.ClientError, BotoCoreError) as exn:
        raise DriverLaunchFailed(f"listing the drivers of run {record.run_id} failed: {exn}") from exn
    for arn in stale:
        log.warning("run %s: stopping driver %s of an earlier attempt (its task token is spent)", record.run_id, arn)
        stop_driver(ecs, settings, arn, f"run {record.run_id}: a new attempt launches its driver")
    if ours is not None:  # a retried invocation of this attempt: its driver runs already
        log.info("driver of run %s already launched for this attempt: %s", record.run_id, ours)
        return ours
    try:
        try:
            response = _run_driver(ecs, settings, record, task_token)
        except ecs.exceptions.InvalidParameterException as exn:
            if "tag" not in str(exn).lower():
                raise
            # the run's tags and its task definition's (the stack's own tags, `sam deploy --tags`:
            # CloudFormation puts them on the definition) over ECS's 50 a task: the run's are kept
            log.warning("run %s: the driver launched without its task definition's tags (%s)", record.run_id, exn)
            response = _run_driver(ecs, settings, record, task_token, propagate=False)
    except (ecs.exceptions.ClientError, BotoCoreError) as exn:
        raise DriverLaunchFailed(f"RunTask of the driver of run {record.run_id} failed: {exn}") from exn
    if response.get("failures") or not response.get("tasks"):
        raise DriverCapacityUnavailable(f"RunTask of the driver failed: {response.get('failures')}")
    arn = response["tasks"][0]["taskArn"]
    log.info("driver of run %s launched: %s", record.run_id, arn)

    def starting(current: status.RunStatus) -> status.RunStatus | None:
        if current.status not in ("SUBMITTED", "STARTING"):
            return None  # the driver already reports (or the run ended)
        # (STARTING: a driver of an earlier attempt failed to start; this one is the run's now)
        return current.model_copy(update={"status": "STARTING", "driver_task": arn, "phase": None})

    after = status.update(record.bucket, record.run_id, starting)
    if after is not None and after.finished:  # cancelled between the check above and RunTask
        stop_driver(ecs, settings, arn, f"run {record.run_id} is {after.status}")
        raise RunAlreadyEnded(f"run {record.run_id} is {after.status}: its driver {arn} was stopped as it started")
    return arn


def stop_driver(ecs, settings: LaunchSettings, arn: str, reason: str) -> None:
    """StopTask on a driver just launched for a run that ended meanwhile (its own start check
    would stop it too; this spares it the start). StopTask is ``docker stop``: SIGTERM, which
    the driver handles, then SIGKILL after the stop timeout
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_StopTask.html)."""
    try:
        ecs.stop_task(cluster=settings.cluster, task=arn, reason=reason[:255])
    except (ecs.exceptions.ClientError, BotoCoreError) as exn:  # its own start check stops it
        log.warning("StopTask of driver %s failed: %s", arn, exn)


def _run_driver(ecs, settings: LaunchSettings, record: runs.RunRecord, task_token: str, propagate: bool = True) -> dict:
    """RunTask of the driver; ``propagate``: with its task definition's tags too (a request
    without them is another request: it has a client token of its own)."""
    extra = {"propagateTags": "TASK_DEFINITION"} if propagate else {}
    return ecs.run_task(
        cluster=settings.cluster,
        taskDefinition=settings.driver_task_definition,
        launchType="FARGATE",
        count=1,
        networkConfiguration=settings.driver_task().network_configuration(),
        overrides={
            "containerOverrides": [
                {"name": settings.driver_container_name, "environment": driver_environment(record, task_token)}
            ]
        },
        startedBy=runs.started_by(record.run_id),
        tags=driver_tags(record),
        # both valid with RunTask's tags: ECS adds its aws:ecs:* tags (not counted against the 50)
        # and (propagateTags) the task definition's
        # (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html)
        enableECSManagedTags=True,
        clientToken=driver_client_token(record.run_id, task_token if propagate else task_token + "\nwithout its definition's tags"),
        **extra,
    )
