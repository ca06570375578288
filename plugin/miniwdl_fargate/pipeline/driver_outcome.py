"""The driver task stopped: report the run's outcome to the waiting state machine."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from pydantic import BaseModel

from .. import aws, gc_task, s3io, status, sweep
from . import finalize

log = logging.getLogger(__name__)

CAUSE_LIMIT = 32000  # Step Functions allows 32768 characters


class EcsContainer(BaseModel):
    name: str = ""
    image: str = ""
    exitCode: int | None = None
    reason: str | None = None


class EcsOverride(BaseModel):
    name: str = ""
    environment: list[dict[str, str]] = []


class EcsOverrides(BaseModel):
    containerOverrides: list[EcsOverride] = []


class EcsTaskStateChange(BaseModel):
    """The part of an "ECS Task State Change" event detail we read."""

    taskArn: str
    lastStatus: str
    containers: list[EcsContainer] = []
    overrides: EcsOverrides = EcsOverrides()
    stopCode: str | None = None
    stoppedReason: str | None = None
    memory: str | None = None  # (MiB, as the task's size)
    version: int | None = None

    def environment(self, container: str) -> dict[str, str]:
        for override in self.overrides.containerOverrides:
            if override.name == container:
                return {e["name"]: e["value"] for e in override.environment if "name" in e and "value" in e}
        return {}


def outcome(detail: EcsTaskStateChange, container: str) -> tuple[str, dict[str, Any]] | None:
    """("success"|"failure", payload) for a stopped driver, or None if the event is not ours."""
    if detail.lastStatus != "STOPPED":
        return None
    env = detail.environment(container)
    if not env.get("SFN_TASK_TOKEN") or not env.get("RUN_RESULTS"):
        return None
    bucket, prefix = s3io.split(env["RUN_RESULTS"])
    exit_code = next((c.exitCode for c in detail.containers if c.name == container), None)
    outputs = s3io.find_json(bucket, prefix + "outputs.json")
    if exit_code == 0 and outputs is not None:
        return "success", {
            "run_id": env.get("RUN_ID"),
            "status": "SUCCEEDED",
            "outputs": s3io.uri(bucket, prefix + "outputs.json"),
        }
    error = s3io.find_json(bucket, prefix + "error.json")
    if error is not None:
        return "failure", {
            "error": "WorkflowFailed",
            "cause": json.dumps(
                {k: error[k] for k in ("message", "failed_task", "error") if k in error}
                | {"error_json": s3io.uri(bucket, prefix + "error.json")}
            )[:CAUSE_LIMIT],
        }
    own = next((c for c in detail.containers if c.name == container), EcsContainer())
    facts = {"task": detail.taskArn, "exit_code": exit_code, "stop_code": detail.stopCode,
             "stopped_reason": detail.stoppedReason, "container_reason": own.reason}
    name, message = driver_ending(detail, own)
    # DriverFailedToStart: safe to launch again (the state machine's Retry of it): the driver never
    # ran, and what kept it from starting may pass (an EFS mount, a network interface, an image pull
    # timing out); an image that cannot be pulled or run will not, and ends the run
    return "failure", {"error": name, "cause": json.dumps({"message": message, **facts})[:CAUSE_LIMIT]}


def driver_ending(detail: EcsTaskStateChange, own: EcsContainer) -> tuple[str, str]:
    """(error name, message) for a driver that stopped without writing outputs.json or
    error.json, read by ``stops`` (the table the WDL tasks' ends are read by), each message naming
    ECS's reason and what to change."""
    from ..backend import stops

    end = stops.ending({"stopCode": detail.stopCode, "stoppedReason": detail.stoppedReason,
                        "containers": [{"exitCode": own.exitCode, "reason": own.reason}]})
    said = f"{end.stop_code or 'no stop code'}: {end.reason or end.container_reason or 'no reason given'}"
    if end.verdict in (stops.Verdict.PULL_AGAIN, stops.Verdict.START_INTERRUPTED):
        remedy = stops.start_remedy(end.reason or end.container_reason)
        return "DriverFailedToStart", f"the driver task failed to start (ECS: {said})" + (f". {remedy}" if remedy else "")
    if end.verdict in (stops.Verdict.IMAGE_NOT_PULLABLE, stops.Verdict.CANNOT_START):
        what = end.pull.what if end.pull else (stops.start_error(end.reason) or "it could not be started")
        return "DriverImageUnusable", (
            f"the driver's image {own.image or '(the stack’s DriverImage)'} cannot be used ({what}): push it to this "
            f"Region's ECR (make push-image) and give its URI as the stack's DriverImage (ECS: {said})"
        )
    if end.verdict is stops.Verdict.OUT_OF_MEMORY:
        size = f" of {detail.memory} MiB" if detail.memory else ""
        return "DriverOutOfMemory", (
            f"the driver ran out of its memory{size} (ECS: {end.container_reason}): give the stack a larger DriverMemory "
            "(with DriverCpu): a run of many tasks or many input files needs more"
        )
    return "DriverStopped", (
        f"the driver task stopped without writing outputs.json or error.json (exit code {own.exitCode}; ECS: {said})"
    )


def send_outcome(
    detail: EcsTaskStateChange, container: str, cluster: str = "", file_system_id: str = "",
    collection: Callable[[], gc_task.Collection] | None = None,
) -> str:
    """Stop what the driver launched that is still running, then send the outcome to Step Functions.

    In that order: the answer moves the state machine on to finalize, which stops what it still
    finds running with its own reason; stopping first leaves it nothing to race for (both would
    otherwise list the same tasks as running and each StopTask would give them its reason).

    Safe to repeat, whatever the order: only a STOPPED driver counts (earlier states are
    ignored), its task token accepts one answer (a duplicate event finds it spent), and stopping
    tasks that are stopped already changes nothing. Only this driver's tasks (their driver tag):
    the STOPPED event of a driver an earlier attempt launched can come after a new attempt
    launched the run's next driver, whose tasks it must leave alone (ECS delivers events at least
    once and in no set order: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs_cwe_events.html).
    """
    found = outcome(detail, container)
    if found is None:
        return "ignored"
    kind, payload = found
    env = detail.environment(container)
    try:
        if cluster and env.get("RUN_ID"):
            # a driver that died (killed, out of memory, its host lost) leaves its WDL tasks running
            # and billing: nothing else would ever stop them
            stopped = sweep.stop_run(
                cluster, env["RUN_ID"], f"the run's driver stopped ({detail.stopCode or 'exit'}): stopping its tasks",
                exclude=[detail.taskArn], driver=detail.taskArn,  # (its own: not a later attempt's driver and tasks)
            )
            if stopped:
                log.warning("stopped %d task(s) left running by the driver of run %s", len(stopped), env["RUN_ID"])
    finally:  # (the state machine gets its answer even if stopping failed; the error is raised after)
        result = answer(env, kind, payload)
    if env.get("RUN_ID"):
        # and its run's own EFS access point, if it could not delete it itself (killed, or its
        # run cancelled: a cancelled run's state machine never reaches finalize); its own only,
        # as with its tasks
        sweep.release_leftovers(file_system_id, env["RUN_ID"], driver=detail.taskArn)
        ended_without_finalize(env, collection)
    return result


def ended_without_finalize(env: dict[str, str], collection: Callable[[], gc_task.Collection] | None) -> None:
    """A run that has ended as its driver stops (cancelled: its execution stopped, no finalize
    step follows) gives its driver slot back and has its leftovers' collection scheduled here, as
    finalize would (both idempotent: a run that finalize ends meanwhile is done twice, harmlessly)."""
    results = env.get("RUN_RESULTS", "")
    if not results.startswith("s3://"):
        return
    bucket, _ = s3io.split(results)
    try:
        current = status.read(bucket, env["RUN_ID"])
    except Exception as exn:  # noqa: BLE001 (the answer is sent: a slot is taken over, a later run schedules)
        log.warning("run %s: could not read its status to give back its slot (%s)", env["RUN_ID"], exn)
        return
    if current is None or not current.finished:
        return  # (its finalize step comes: the state machine waits on this driver's answer)
    # (its tasks stopped and its access point deleted above, this driver's own only)
    finalize.after_end(bucket, current.run_id, current.status, current.driver_slot, collection=collection, stop=False)


def answer(env: dict[str, str], kind: str, payload: dict[str, Any]) -> str:
    """SendTaskSuccess or SendTaskFailure with the driver's task token: ``kind``, or "duplicate"
    when the token no longer waits (a duplicate event, a run that timed out)."""
    sfn = aws.client("stepfunctions")
    try:
        if kind == "success":
            sfn.send_task_success(taskToken=env["SFN_TASK_TOKEN"], output=json.dumps(payload))
        else:
            sfn.send_task_failure(taskToken=env["SFN_TASK_TOKEN"], error=payload["error"], cause=payload["cause"])
    except (sfn.exceptions.TaskDoesNotExist, sfn.exceptions.TaskTimedOut, sfn.exceptions.InvalidToken) as exn:
        log.info("task token no longer waiting (duplicate event?): %s", exn)
        return "duplicate"
    return kind
