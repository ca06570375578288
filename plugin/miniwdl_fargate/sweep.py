"""Stopping tasks that should not be running: every task of a run (cancel, a dead driver), and
orphans (WDL tasks whose driver task has stopped).

Every WDL task the aws_fargate backend launches carries two tags: ``miniwdl-fargate:run`` (the run
id) and ``miniwdl-fargate:driver`` (the ECS task ARN of the driver that launched it, or
``host:<name>:<pid>`` for a standalone ``miniwdl run``). A task whose driver is an ECS task that is
no longer running is an orphan: nothing will ever collect its result, and it bills until stopped.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.request
from typing import Any, Iterable, Iterator

from . import aws, run_options, runs

log = logging.getLogger(__name__)

RUN_TAG = run_options.TAG_RUN
DRIVER_TAG = run_options.TAG_DRIVER
DESCRIBE_BATCH = 100


def own_task_arn() -> str:
    """This process's ECS task ARN from the task metadata endpoint (v4), or "" outside ECS."""
    uri = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if not uri:
        return ""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/task", timeout=5) as response:
            return str(json.load(response).get("TaskARN", ""))
    except (OSError, ValueError) as exn:
        log.warning("cannot read the ECS task metadata at %s: %s", uri, exn)
        return ""


def own_vcpus() -> float | None:
    """The vCPUs this process's own ECS task holds of the account's Fargate On-Demand vCPU quota
    (DescribeTasks of ``own_task_arn``: its size in cpu units, when it runs on FARGATE), which its
    tasks cannot have: 0 outside ECS or on other capacity, None without an answer (ask again)."""
    arn = own_task_arn()
    if not arn:
        return 0.0
    try:
        cluster = arn.split(":task/", 1)[1].rsplit("/", 1)[0]
        (task,) = aws.client("ecs").describe_tasks(cluster=cluster, tasks=[arn])["tasks"]
    except Exception as exn:  # noqa: BLE001 (a help for an error message only)
        log.info("cannot tell this task's own vCPUs (%s)", exn)
        return None
    on_demand = (task.get("capacityProviderName") or task.get("launchType")) == "FARGATE"
    return int(task.get("cpu") or 0) / 1024 if on_demand else 0.0


def driver_identity() -> str:
    """What the ``miniwdl-fargate:driver`` tag of the tasks this process launches says."""
    return own_task_arn() or f"host:{socket.gethostname()}:{os.getpid()}"


def tags_of(task: dict[str, Any]) -> dict[str, str]:
    return {t.get("key", ""): t.get("value", "") for t in task.get("tags") or []}


def running_tasks(cluster: str, pace: float = 0.0) -> Iterator[dict[str, Any]]:
    """Descriptions (with tags) of the cluster's tasks that are meant to be running; ``pace``:
    seconds between its calls (ListTasks pages, DescribeTasks of a hundred), so that a look at a
    cluster of thousands of tasks takes little of the account's ECS request rate at once, which
    every driver's polls share (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/request-throttling.html)."""
    ecs = aws.client("ecs")
    arns: list[str] = []
    for n, page in enumerate(ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus="RUNNING")):
        if n and pace:
            time.sleep(pace)
        arns.extend(page.get("taskArns", []))
    for i in range(0, len(arns), DESCRIBE_BATCH):
        if pace:
            time.sleep(pace)
        found = ecs.describe_tasks(cluster=cluster, tasks=arns[i : i + DESCRIBE_BATCH], include=["TAGS"])
        yield from found.get("tasks", [])


#: StopTask calls in flight at once: one at a time, a cancel of a run with hundreds of tasks ran
#: past API Gateway's 29 s; ECS's API rate (its token buckets, per account) bounds them all the
#: same, and botocore's retries take its throttling
STOP_THREADS = 8


def stop_tasks(cluster: str, arns: Iterable[str], reason: str, errors: list[str] | None = None) -> list[str]:
    """StopTask each of ``arns`` (``STOP_THREADS`` at a time); the ARNs stopped, in order. A
    failure is logged (and added to ``errors``) and the rest are stopped still."""
    ecs = aws.client("ecs")
    arns = list(arns)

    def stop(arn: str) -> str | None:
        try:
            ecs.stop_task(cluster=cluster, task=arn, reason=reason[:255])
            return None
        except ecs.exceptions.ClientError as exn:
            log.error("StopTask %s failed: %s", arn, exn)
            return f"{arn}: {exn}"

    failures = aws.each(stop, arns, STOP_THREADS)
    if errors is not None:
        errors.extend(f for f in failures if f)
    return [arn for arn, failure in zip(arns, failures, strict=True) if failure is None]


def run_listed(cluster: str, run_id: str) -> list[str]:
    """The ARNs ListTasks gives under the run's ``startedBy`` (those meant to be running)."""
    pages = aws.client("ecs").get_paginator("list_tasks").paginate(cluster=cluster, startedBy=runs.started_by(run_id))
    return [arn for page in pages for arn in page.get("taskArns", [])]


def run_tasks(cluster: str, run_id: str) -> list[dict[str, Any]]:
    """Descriptions (with tags) of the run's tasks that are meant to be running (``run_listed``,
    whose tags name the run)."""
    ecs, arns = aws.client("ecs"), run_listed(cluster, run_id)
    found: list[dict[str, Any]] = []
    for i in range(0, len(arns), DESCRIBE_BATCH):
        answer = ecs.describe_tasks(cluster=cluster, tasks=arns[i : i + DESCRIBE_BATCH], include=["TAGS"])
        found += [t for t in answer.get("tasks", []) if tags_of(t).get(RUN_TAG) == run_id]
    return found


#: a driver's sweep describes again, after each of these waits (seconds), a task of its run that
#: DescribeTasks does not know yet: whose it is, only its tags say (ECS comes to know a task it
#: started within seconds: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html)
KNOWN_WITHIN = (0.5, 1.0, 2.0, 4.0, 8.0)


def run_task_arns(cluster: str, run_id: str, driver: str | None = None) -> list[str]:
    """The ARNs of the run's tasks that are meant to be running: those whose tags name the run,
    and those listed under the run's ``startedBy`` that DescribeTasks does not know yet. ECS is
    eventually consistent: a task launched a moment ago may be listed and still be MISSING to
    DescribeTasks (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html),
    and it must be stopped with the rest. With ``driver``: only the tasks that driver launched
    (their ``miniwdl-fargate:driver`` tag), a MISSING one described again until it is known
    (``KNOWN_WITHIN``); one still unknown then is left to the run's end or the orphan sweep."""

    def ours(task: dict[str, Any]) -> bool:
        tags = tags_of(task)
        return tags.get(RUN_TAG) == run_id and (driver is None or tags.get(DRIVER_TAG) == driver)

    ecs = aws.client("ecs")

    def described(arns: list[str]) -> tuple[list[str], list[str]]:
        """(those of ``arns`` that are ours, those DescribeTasks does not know yet)"""
        found, missing = [], []
        for i in range(0, len(arns), DESCRIBE_BATCH):
            answer = ecs.describe_tasks(cluster=cluster, tasks=arns[i : i + DESCRIBE_BATCH], include=["TAGS"])
            found += [t["taskArn"] for t in answer.get("tasks", []) if ours(t)]
            missing += [f["arn"] for f in answer.get("failures", []) if f.get("reason") == "MISSING" and f.get("arn")]
        return found, missing

    # the run's own tasks only (every one is started by its run: the backend's RunTask, the launch
    # step's): not the cluster's, whose other runs' thousands of tasks each sweep would describe,
    # against the account's ECS request rate that every driver's polls share
    # (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/request-throttling.html).
    # startedBy alone: ECS refuses it with any other filter ("When you specify startedBy as the
    # filter, it must be the only filter that you use", API_ListTasks; InvalidParameterException
    # "cannot specify startedBy with other arguments"); the desired status it lists is RUNNING
    found, missing = described(run_listed(cluster, run_id))
    if driver is None:
        return found + missing
    for wait in KNOWN_WITHIN:
        if not missing:
            break
        time.sleep(wait)
        more, missing = described(missing)
        found += more
    if missing:
        log.warning("run %s: %d task(s) not yet known to DescribeTasks, whose driver cannot be told: left to the run's "
                    "end or the orphan sweep", run_id, len(missing))
    return found


def stop_run(
    cluster: str, run_id: str, reason: str, exclude: Iterable[str] = (), driver: str | None = None,
    errors: list[str] | None = None,
) -> list[str]:
    """Stop every running task of ``run_id`` (but those in ``exclude``; with ``driver``, only
    those that driver launched: a run's earlier driver must not stop what a later one runs);
    return their ARNs."""
    skip = set(exclude)
    arns = [arn for arn in run_task_arns(cluster, run_id, driver) if arn not in skip]
    if arns:
        log.warning("stopping %d task(s) of run %s: %s", len(arns), run_id, reason)
    return stop_tasks(cluster, arns, reason, errors)


def orphans(cluster: str, pace: float = 0.0) -> list[dict[str, Any]]:
    """Running WDL tasks whose driver is an ECS task that is no longer running (``pace``: as
    ``running_tasks`` takes it)."""
    tasks = [t for t in running_tasks(cluster, pace) if tags_of(t).get(DRIVER_TAG, "").startswith("arn:")]
    drivers = sorted({tags_of(t)[DRIVER_TAG] for t in tasks})
    alive: set[str] = set()
    ecs = aws.client("ecs")
    for i in range(0, len(drivers), DESCRIBE_BATCH):
        chunk = drivers[i : i + DESCRIBE_BATCH]
        # a driver may run in another cluster: its ARN names it (arn:...:task/<cluster>/<id>)
        by_cluster: dict[str, list[str]] = {}
        for arn in chunk:
            parts = arn.split(":", 5)[-1].split("/")
            by_cluster.setdefault(parts[1] if len(parts) == 3 else cluster, []).append(arn)
        for driver_cluster, arns in by_cluster.items():
            found = ecs.describe_tasks(cluster=driver_cluster, tasks=arns)
            alive.update(d["taskArn"] for d in found.get("tasks", []) if d.get("lastStatus") != "STOPPED")
    return [t for t in tasks if tags_of(t)[DRIVER_TAG] not in alive]


def sweep_orphans(cluster: str, reason: str = "miniwdl-fargate sweep: the task's driver has stopped", pace: float = 0.0) -> list[str]:
    found = orphans(cluster, pace)
    for task in found:
        log.warning(
            "orphaned task %s of run %s (driver %s gone)",
            task["taskArn"], tags_of(task).get(RUN_TAG), tags_of(task).get(DRIVER_TAG),
        )
    return stop_tasks(cluster, [t["taskArn"] for t in found], reason)


#: the tag of an EFS access point made for one run (``backend.fargate``); only those are deleted
RUN_ACCESS_POINT_TAG = "miniwdl-fargate:run-access-point"


def release_access_points(file_system_id: str, run_id: str, driver: str = "") -> list[str]:
    """Delete the EFS access points made for ``run_id`` that are still there (its driver
    deletes its own at the run's end; one that died leaves it: access points do not bill, but a
    file system holds at most 10,000). Returns their ids.

    With ``driver``, only that driver's (its ``miniwdl-fargate:driver`` tag; one without the tag,
    made before access points carried it, too): the run's next attempt has a driver and an
    access point of its own, which an earlier driver's late STOPPED event must leave alone."""
    efs = aws.client("efs")

    def released_now(tags: dict[str, str]) -> bool:
        if tags.get(RUN_TAG) != run_id or tags.get(RUN_ACCESS_POINT_TAG) != "true":
            return False
        return not driver or tags.get(DRIVER_TAG, driver) == driver

    released = [  # (all listed first: the listing's pages are not deleted from as they are read)
        point["AccessPointId"]
        for page in efs.get_paginator("describe_access_points").paginate(FileSystemId=file_system_id)
        for point in page.get("AccessPoints", [])
        if released_now({t["Key"]: t["Value"] for t in point.get("Tags", [])})
    ]
    for access_point in released:
        efs.delete_access_point(AccessPointId=access_point)
    if released:
        log.warning("run %s left %d EFS access point(s): deleted %s", run_id, len(released), ", ".join(released))
    return released


def release_leftovers(file_system_id: str, run_id: str, driver: str = "") -> None:
    """Delete the run's own EFS access point if its driver could not (it died, or its run was
    cancelled): every one of the run's at every end of the run (finalize), the stopped driver's
    own when a driver stops (driver_stopped: ``driver``, its task ARN). Housekeeping: never
    raises, a leftover is logged."""
    if not file_system_id:
        return
    try:
        release_access_points(file_system_id, run_id, driver)
    except Exception:  # noqa: BLE001 (the run's end stands)
        log.exception("could not release the EFS access points of run %s", run_id)
