"""The user's command line: submit, status, list, logs, outputs, cancel, resume, cost, gc, cache explain.

It talks to a deployed stack (found by name: ``--stack``, ``MINIWDL_FARGATE_STACK``, or
samconfig.toml) or to local mode (``--local``: the stack ``miniwdl-fargate local up`` serves),
the same way: boto3 against the stack's bucket, state machine, cluster and log groups.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import botocore.exceptions

from . import aws, driver_task, gc_task, run_options, runs, s3io, status
from .pipeline import manage
from .report.cost import sum_by_label, task_name
from .upload import Submission, rejection

LOCAL_FILE = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "miniwdl-fargate" / "local.json"
FOLLOW_SECONDS = 2.0
#: a local-mode stack's runs are looked at this often (reading moto costs next to nothing)
LOCAL_FOLLOW_SECONDS = 0.05


class ClientError(RuntimeError):
    """Something the user can fix: no stack, no run, a bad argument."""


@dataclass
class Deployment:
    stack_name: str
    region: str
    outputs: dict[str, str]
    local: bool = False
    #: a local stack's state folder (its connection file says), where it counts its changes
    state_dir: str | None = None

    @property
    def bucket(self) -> str:
        return self.outputs["BucketName"]

    @property
    def state_machine_arn(self) -> str:
        return self.outputs["StateMachineArn"]

    @property
    def cluster(self) -> str:
        return self.outputs.get("ClusterName", "")


def samconfig_defaults(start: Path | None = None) -> dict[str, str]:
    """stack_name and region from the nearest samconfig.toml (the [default] environment), as
    `sam deploy` reads them: its own section first (where `sam deploy --guided` saves the answers),
    then the global one."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        path = folder / "samconfig.toml"
        if path.is_file():
            try:
                config = tomllib.loads(path.read_text()).get("default", {})
            except (OSError, ValueError) as exn:
                raise ClientError(f"{path}: cannot read it: {exn}") from None
            found: dict[str, str] = {}
            for command in ("deploy", "global"):
                params = config.get(command, {}).get("parameters", {})
                for key in ("stack_name", "region"):
                    if key in params and key not in found:
                        found[key] = str(params[key])
            return found
    return {}


def read_connection(path: Path) -> dict[str, Any]:
    """The local stack's connection file (``local up`` writes it), or ClientError saying what is
    wrong with it."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exn:
        raise ClientError(f"{path}: not a local stack connection file ({exn}); restart `miniwdl-fargate local up`") from None
    missing = [k for k in ("endpoint", "region", "stack_name", "outputs") if not isinstance(info, dict) or k not in info]
    if missing:
        raise ClientError(f"{path}: not a local stack connection file (no {', '.join(missing)}); restart `miniwdl-fargate local up`")
    return info


def connect(stack: str | None = None, region: str | None = None, local: str | None = None) -> Deployment:
    """The deployment to talk to; for local mode, point this process's AWS clients at it."""
    local = local if local is not None else os.environ.get("MINIWDL_FARGATE_LOCAL")
    if local is not None:
        path = Path(local) if local else LOCAL_FILE
        if not path.is_file():
            raise ClientError(f"no local stack running ({path} not found): start one with `miniwdl-fargate local up`")
        info = read_connection(path)
        check_listening(info["endpoint"])
        os.environ.update(aws.local_environment(info["endpoint"], info["region"]))
        for key in aws.SHARED_CONFIG_VARIABLES:
            os.environ.pop(key, None)
        aws.reset()
        return Deployment(info["stack_name"], info["region"], info["outputs"], local=True, state_dir=info.get("state_dir"))
    defaults = samconfig_defaults()
    stack = stack or os.environ.get("MINIWDL_FARGATE_STACK") or defaults.get("stack_name")
    if not stack:
        raise ClientError("which stack? give --stack NAME (or run where samconfig.toml names it)")
    region = region or defaults.get("region")
    if region:  # (--region, else samconfig.toml's, over the AWS configuration's: its variables too)
        os.environ["AWS_DEFAULT_REGION"] = region
        aws.reset()
    cfn = aws.client("cloudformation")
    try:
        found = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    except cfn.exceptions.ClientError as exn:
        raise ClientError(f"stack {stack}: {exn.response.get('Error', {}).get('Message', exn)}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
    return Deployment(stack, cfn.meta.region_name, outputs)


def check_listening(endpoint: str) -> None:
    """Fail at once, saying so, when nothing listens at a local stack's endpoint (its connection
    file outlived it), rather than after botocore's retries of every first call."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=5):
            pass
    except OSError as exn:
        raise ClientError(
            f"could not reach {endpoint} ({exn.strerror or exn}): is `miniwdl-fargate local up` still running?"
        ) from None


# -- progress ----------------------------------------------------------------------------------


def progress_line(current: status.RunStatus, now: float | None = None, width: int = 24) -> str:
    """``[#####.....] 12/40 done · 5 running · 1 failed · 3 queued  RUNNING 1m12s``"""
    t = current.tasks
    done = t.succeeded + t.cached
    total = max(t.total, done + t.failed + t.cancelled + t.running + t.queued)
    filled = int(width * done / total) if total else 0
    bar = "#" * filled + "." * (width - filled)
    parts = [f"{done}/{total} done", f"{t.running} running", f"{t.failed} failed", f"{t.queued} queued"]
    if t.cancelled:
        parts.insert(3, f"{t.cancelled} cancelled")
    if t.retried:
        parts.append(f"{t.retried} retried")
    started = current.submitted_at
    elapsed = ""
    if started:
        from datetime import datetime

        end = datetime.fromisoformat(current.finished_at).timestamp() if current.finished_at else (now or time.time())
        seconds = max(0, int(end - datetime.fromisoformat(started).timestamp()))
        elapsed = f" {seconds // 60}m{seconds % 60:02d}s"
    return f"[{bar}] {' · '.join(parts)}  {current.status}{elapsed}"


def follow_seconds(deployment: Deployment) -> float:
    """How often ``follow`` looks at a run of ``deployment``."""
    return LOCAL_FOLLOW_SECONDS if deployment.local else FOLLOW_SECONDS


def pace(deployment: Deployment, of_runs: bool = True, run_name: str | None = None) -> tuple[float, Callable[[float], None]]:
    """How a client following a run of ``deployment`` (``of_runs``, the runs named ``run_name``
    if given; else anything of the stack, as an ECS task) waits between two looks: (the longest
    wait, what waits). A sleep of ``follow_seconds``; at a local stack that counts its changes,
    until it changed (a run's S3 objects or executions, or anything: ``local.changes``),
    ``LOOK_SECONDS`` at most."""
    if deployment.local:
        from .local import changes

        name = changes.RUN_FILE if of_runs else changes.FILE  # (``run`` counts only of RUN_FILE)
        return changes.pace(deployment.state_dir, follow_seconds(deployment), name=name, run=run_name)
    return follow_seconds(deployment), time.sleep


def follow(
    deployment: Deployment, run_id: str, out: TextIO | None = None, interval: float | None = None,
    name: str | None = None, inputs_version: str | None = None, timeout: float | None = None,
) -> dict[str, Any]:
    """Show the run's progress on ``out`` (default: stderr as it is now) until it ends, looking
    every ``interval`` seconds (default: the deployment's ``pace``); return its description (with outputs
    or error). Before the run exists, a rejection of the submission (runs/<name>/error.json) ends it."""
    out = sys.stderr if out is None else out  # (not a default argument: bound once, at import)
    longest, pause = pace(deployment, run_name=name or runs.name_of(run_id)) if interval is None else (interval, time.sleep)
    tty = out.isatty()
    last = last_key = ""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        current = status.read(deployment.bucket, run_id)
        if current is None and name:
            rejected = rejection(deployment.bucket, name, inputs_version)
            if rejected is not None:
                if tty and last:
                    out.write("\n")
                return {"run_id": run_id, "status": "FAILED", "error": rejected}
        line = progress_line(current) if current else "submitting..."
        # a terminal gets one line redrawn; a log gets a line when something other than the clock moved
        key = line if tty or current is None else f"{line.rsplit('  ', 1)[0]} {current.status}"
        if key != last_key:
            out.write(("\r" + line.ljust(len(last))) if tty else line + "\n")
            out.flush()
            last, last_key = line, key
        if current is not None and current.finished:
            if tty:
                out.write("\n")
            return manage.describe_run(deployment.bucket, run_id)
        if deadline is not None and time.monotonic() > deadline:
            raise ClientError(f"run {run_id} did not finish within {timeout:.0f}s")
        pause(longest)


# -- commands ----------------------------------------------------------------------------------


def submit(deployment: Deployment, prepared: Submission) -> tuple[str, str, str | None]:
    """Stage a checked submission (``upload.prepare``) and its local inputs into the bucket
    and drop inputs.json (which starts the run). Returns (run name, run id, version of the inputs
    upload)."""
    longest, pause = pace(deployment, run_name=prepared.name)
    run_name, run_id = prepared.upload(deployment.bucket, interval=longest, pause=pause)
    return run_name, run_id, prepared.inputs_version


def describe(deployment: Deployment, run_id: str) -> dict[str, Any]:
    try:
        return manage.describe_run(deployment.bucket, run_id)
    except (manage.RunNotFound, status.UnreadableStatus) as exn:
        raise ClientError(str(exn)) from None


def explain_call(deployment: Deployment, run_id: str, call: str) -> list[str]:
    """Why call ``call`` of the run was reused or ran again (``callcache.explain``)."""
    from .callcache import explain

    doc = describe(deployment, run_id)
    try:
        return explain.explain(deployment.bucket, doc["results"], call)
    except explain.ExplainError as exn:
        raise ClientError(f"run {run_id}: {exn}") from None


def list_runs(
    deployment: Deployment, limit: int = 50, name: str | None = None, on_unreadable=None
) -> tuple[list[status.RunStatus], str | None]:
    """At most ``limit`` runs, by run name (each name's newest first), and where the list stopped
    when ``limit`` left runs out (None: it did not); one whose status.json cannot be read is left
    out, told to ``on_unreadable``."""
    return manage.list_runs(deployment.bucket, limit, name, on_unreadable=on_unreadable)


def cost_by_label(
    deployment: Deployment, limit: int = 50, name: str | None = None, on_unreadable=None
) -> dict[str, Any]:
    """The runs' estimated cost per label value, their cost.json ``by_label`` added up: ``by_label``,
    the runs counted and their ``total_usd`` (labelled or not), those without a cost.json
    (``without_cost``: still running, or ended before a report, ``ended_without_cost``), and where
    ``limit`` stopped the list (``not_counted_from``: ``manage.list_runs``'s page token; None:
    every run was counted)."""
    found, more = list_runs(deployment, limit, name, on_unreadable)
    docs, without, ended = [], [], []

    def cost_of(run: status.RunStatus) -> Any:
        return s3io.find_json(*s3io.split(run.results + "cost.json")) if run.results else None

    for run, doc in zip(found, aws.each(cost_of, found, s3io.READ_THREADS), strict=True):
        if isinstance(doc, dict):
            docs.append(doc)
        else:
            without.append(run.run_id)
            if run.finished:
                ended.append(run.run_id)
    currency = next((d.get("currency") for d in docs if d.get("currency")), "USD")
    total = round(sum(float(d.get("total_usd") or 0) for d in docs), 6)
    return {"by_label": sum_by_label(docs), "currency": currency, "runs": len(docs), "total_usd": total,
            "without_cost": without, "ended_without_cost": ended, "not_counted_from": more}


def cost_table(doc: dict[str, Any]) -> str:
    """``cost_by_label``'s answer as a table, dearest value first under each label, and a line of counts."""
    rows = [("LABEL", "VALUE", doc["currency"])]
    for key, values in doc["by_label"].items():
        rows += [(key, value, f"{usd:.4f}") for value, usd in sorted(values.items(), key=lambda kv: -kv[1])]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    counted = f"{doc['runs']} run(s) counted, {doc.get('total_usd', 0):.4f} {doc['currency']} in all (labelled or not)"
    ended = doc.get("ended_without_cost", [])
    going = [run_id for run_id in doc["without_cost"] if run_id not in ended]
    if going:
        counted += f"; {len(going)} without a cost estimate yet: {', '.join(going)}"
    if ended:  # (cancelled or refused before its driver ran, or a driver that died: never one)
        counted += f"; {len(ended)} ended without one: {', '.join(ended)}"
    if doc.get("not_counted_from"):
        counted += "; more runs than --limit are not counted: give a larger --limit"
    return "\n".join([*lines, counted])


def cancel(deployment: Deployment, run_id: str) -> status.RunStatus:
    try:
        return manage.cancel_run(deployment.bucket, deployment.state_machine_arn, deployment.cluster, run_id)
    except (manage.RunNotFound, manage.RunFinished, status.UnreadableStatus, manage.CancelIncomplete) as exn:
        raise ClientError(str(exn)) from None


def resume(deployment: Deployment, run_id: str, options: run_options.RunOptions | None = None) -> runs.RunRecord:
    """Start a new run resuming ``run_id`` (``pipeline/resume.py``), checked against the stack's
    own settings as the API checks it; the new run's record."""
    import uuid

    from .pipeline import resume as resuming
    from .pipeline import start

    settings = stack_settings(deployment)
    given = (options or run_options.RunOptions()).given()
    try:
        return resuming.resume(settings, run_id, str(uuid.uuid4()), given, source="cli").record
    except resuming.NotResumable as exn:
        raise ClientError(exn.problems[0]["problem"]) from None
    except (manage.RunNotFound, start.Refused, status.UnreadableStatus) as exn:
        raise ClientError(str(exn)) from None


#: the stack's function whose environment holds what starting a run needs (ApiSettings)
API_FUNCTION = "ApiFunction"


def api_function(stack_name: str) -> str:
    """The physical name of the stack's API function (every page of ListStackResources:
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ListStackResources.html);
    ClientError if the stack has none."""
    pages = aws.client("cloudformation").get_paginator("list_stack_resources").paginate(StackName=stack_name)
    found = [r["PhysicalResourceId"] for page in pages for r in page["StackResourceSummaries"] if r["LogicalResourceId"] == API_FUNCTION]
    if not found:
        raise ClientError(f"stack {stack_name} has no {API_FUNCTION}: is it a miniwdl-fargate stack?")
    return found[0]


def stack_settings(deployment: Deployment):
    """The stack's settings for starting a run (its state machine, run limits, what can run beyond
    Fargate): the environment of its API function, which starts runs with them
    (https://docs.aws.amazon.com/lambda/latest/api/API_GetFunctionConfiguration.html)."""
    from botocore.exceptions import ClientError as AWSError

    from .pipeline.settings import ApiSettings, SettingsError

    stack = deployment.stack_name
    try:
        function = api_function(stack)
        environment = aws.client("lambda").get_function_configuration(FunctionName=function).get("Environment", {})
        return ApiSettings.from_env(environment.get("Variables", {}))
    except AWSError as exn:
        raise ClientError(
            f"stack {stack}: cannot read its {API_FUNCTION}'s settings: {exn.response.get('Error', {}).get('Message', exn)}"
        ) from None
    except SettingsError as exn:
        raise ClientError(
            f"stack {stack}: its {API_FUNCTION} lacks settings a run needs: {exn} (a stack older than this client: "
            "update it with sam deploy)"
        ) from None

# -- gc: the EFS run directories left, collected where EFS is mounted ----------------------------

#: ``gc`` gives up waiting for its task after this long (the task's own limit, and a little more)
GC_TIMEOUT_SECONDS = gc_task.MAX_SECONDS + gc_task.EXIT_GRACE_SECONDS + 300.0


def gc_task_request(
    deployment: Deployment, report_key: str, dry_run: bool = False, keep_days: float | None = None
) -> dict[str, Any]:
    """RunTask of the gc task (gc_task.run_task_request) in the driver's network, as the stack
    says it (its outputs)."""
    needed = ("ClusterName", "DriverTaskDefinitionArn", "TaskSubnetIds", "TaskSecurityGroupId", "TaskAssignPublicIp")
    missing = [k for k in needed if not deployment.outputs.get(k)]
    if missing:
        raise ClientError(f"stack {deployment.stack_name} has no output {', '.join(missing)}: update the stack (sam deploy) to use gc")
    outputs = deployment.outputs
    task = driver_task.DriverTask(
        cluster=outputs["ClusterName"],
        task_definition=outputs["DriverTaskDefinitionArn"],
        container=driver_task.DRIVER_CONTAINER,
        subnets=tuple(s for s in outputs["TaskSubnetIds"].split(",") if s),
        security_groups=(outputs["TaskSecurityGroupId"],),
        assign_public_ip=outputs["TaskAssignPublicIp"],
    )
    return gc_task.run_task_request(task, deployment.bucket, report_key, dry_run, keep_days)


def collect_remotely(
    deployment: Deployment, dry_run: bool = False, keep_days: float | None = None, timeout: float = GC_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Run ``gc`` where the stack's EFS is mounted (``gc_task_request``), wait for its task to
    stop, and return its report (``efs_cleanup.collect``'s entries, under ``directories``)."""
    ecs = aws.client("ecs")
    report_key = f"{gc_task.GC_PREFIX}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.urandom(4).hex()}.json"
    answer = ecs.run_task(**gc_task_request(deployment, report_key, dry_run, keep_days))
    if answer.get("failures") or not answer.get("tasks"):
        raise ClientError(f"could not start the gc task: {answer.get('failures')}")
    arn = answer["tasks"][0]["taskArn"]
    stopped = wait_stopped(deployment, arn, timeout)
    report = s3io.find_json(deployment.bucket, report_key)
    if report is None:
        container = next((c for c in stopped.get("containers", []) if c.get("name") == driver_task.DRIVER_CONTAINER), {})
        raise ClientError(
            f"the gc task {arn} stopped without writing its report (exit code {container.get('exitCode')}, "
            f"{stopped.get('stoppedReason', 'no reason given')}); its log: {deployment.outputs.get('DriverLogGroupName')} "
            f"driver/{driver_task.DRIVER_CONTAINER}/{arn.rsplit('/', 1)[-1]}"
        )
    return report


def wait_stopped(deployment: Deployment, arn: str, timeout: float) -> dict[str, Any]:
    """The task once ECS says it STOPPED (DescribeTasks, at the deployment's ``pace``)."""
    ecs = aws.client("ecs")
    longest, pause = pace(deployment, of_runs=False)
    deadline = time.monotonic() + timeout
    while True:
        found = ecs.describe_tasks(cluster=deployment.cluster, tasks=[arn]).get("tasks", [])
        if found and found[0].get("lastStatus") == "STOPPED":
            return found[0]
        if time.monotonic() > deadline:
            raise ClientError(f"the gc task {arn} did not stop within {timeout:.0f}s")
        pause(longest)


def gc_lines(report: dict[str, Any]) -> list[str]:
    """A gc report as the command prints it: one line per directory, then the totals."""
    lines = []
    for entry in report.get("directories", []):
        freed = f"  {entry['freed_bytes'] / 1e9:.3f} GB" if "freed_bytes" in entry else ""
        lines.append(f"{entry['action']:<15} {entry['name']}  {entry['reason']}{freed}")
    verb = "would remove" if report.get("dry_run") else "removed"
    count = sum(1 for e in report.get("directories", []) if e["action"] in ("removed", "partly removed", "would remove"))
    for entry in report.get("cache", []):
        freed = f"  {entry['freed_bytes'] / 1e9:.3f} GB" if "freed_bytes" in entry else ""
        lines.append(f"{entry['action']:<15} cache/{entry['name']}  {entry['reason']}{freed}")
    cached = sum(1 for e in report.get("cache", []) if e["action"] in ("removed", "partly removed", "would remove"))
    lines.append(
        f"{verb} {count} of {len(report.get('directories', []))} run director(ies) and {cached} unused cache "
        f"entr(ies); {report.get('freed_bytes', 0) / 1e9:.3f} GB freed; failed runs kept "
        f"{report.get('keep_failed_run_days', 0):g} day(s), unused cache entries {report.get('keep_unused_cache_days', 0):g} day(s)"
    )
    if report.get("unfinished"):
        lines.append(f"stopped after {gc_task.MAX_SECONDS / 3600:g} hours: the rest waits for the next collection")
    return lines


def log_streams(deployment: Deployment, run_id: str, task: str | None = None) -> list[tuple[str, str, str]]:
    """(label, log group, log stream) of the driver, or of the calls ``task`` names (``names_call``)."""
    current = status.read(deployment.bucket, run_id)
    if current is None:
        raise ClientError(f"no run {run_id}")
    if task is None:
        if not current.driver_task:
            raise NotYet(f"run {run_id} has no driver task yet ({current.status})", current.finished)
        group = deployment.outputs["DriverLogGroupName"]
        return [("driver", group, f"driver/driver/{current.driver_task.rsplit('/', 1)[-1]}")]
    group = deployment.outputs["TaskLogGroupName"]
    # (a call named exactly is that call alone: the workflow's call-x, not its sub-workflows' too)
    matches = [task] if task in current.calls else sorted(call for call in current.calls if names_call(task, call))
    if not matches:
        known = ", ".join(sorted(current.calls)) or ("none" if current.finished else "none yet")
        reused = current.tasks.cached
        cached = (f"; {reused} call(s) were reused from the call cache and have no log of their own "
                  "(`cache explain` says from which run)") if reused else ""
        raise NotYet(f"run {run_id} has no task matching {task!r} (its tasks: {known}){cached}", current.finished)
    return [
        (f"{call} attempt {i}", group, f"miniwdl/task/{arn.rsplit('/', 1)[-1]}")
        for call in matches
        for i, arn in enumerate(current.calls[call], 1)
    ]


def names_call(asked: str, call: str) -> bool:
    """Whether ``--task asked`` names the call ``call`` (its directory in the run: miniwdl's call
    id, under its sub-workflows' as ``call-inner/call-x``): the whole of it, or the start of it,
    or one of its directories by its id, the start of its id up to a "-" (``call-greet-1`` for
    ``call-greet-1-BenBitdiddle``), or its call's name (``greet``: every greet call of a
    scatter; ``inner``: every call of that sub-workflow). Not any part of a name: "a" is in
    every "call-"."""
    parts = call.split("/")
    if "/" in asked:  # directories from the top, each by its id or the start of its id
        wanted = asked.rstrip("/").split("/")
        return len(wanted) <= len(parts) and all(p == w or p.startswith(w + "-") for w, p in zip(wanted, parts[: len(wanted)], strict=True))
    return any(asked in (part, task_name(part)) or part.startswith(asked + "-") for part in parts)


class NotYet(ClientError):
    """The run has no log (of the driver, or of a task matching) to show yet; ``final`` if it
    never will (the run has ended)."""

    def __init__(self, message: str, final: bool) -> None:
        super().__init__(message)
        self.final = final


LOG_PAGE_LIMIT = 1000  # pages read from one stream in one pass (a page: up to 10,000 events or 1 MB)
#: following, a stream that had nothing new is read again after 2, 4, ... passes, at most this
#: many: GetLogEvents' rate is the account's and region's, and most of a big scatter's streams
#: are of tasks that have ended (the last pass, once the run has ended, reads every stream)
QUIET_STREAM_PASSES = 8


@dataclass
class StreamRead:
    """Where reading a log stream got to: the token to go on from, and why it stopped early (if it did)."""

    token: str | None
    pages: int = 0
    stopped_early: str | None = None
    #: the stream does not exist (yet: its task has not started; or never: it never did)
    missing: bool = False


def read_stream(
    logs: Any, group: str, stream: str, token: str | None, on_events: Any, limit: int = LOG_PAGE_LIMIT,
    patient: bool = False,
) -> StreamRead:
    """Read a log stream from ``token`` (None: its head) page by page to its end, handing each
    page's events to ``on_events``. GetLogEvents pages with nextForwardToken and says the end is
    reached by returning the token it was given
    (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_GetLogEvents.html),
    so an empty page alone does not mean the end. Stops early, saying why, at ``limit`` pages or
    on an error; a stream that does not exist (yet) is an empty one. ``patient`` (following):
    throttled past botocore's retries, it stops where it is, to go on from there next time."""
    read = StreamRead(token)
    while read.pages < limit:
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        if read.token:
            kwargs["nextToken"] = read.token
        try:
            page = logs.get_log_events(**kwargs)
        except logs.exceptions.ResourceNotFoundException:
            read.missing = True  # (not started yet)
            return read
        except Exception as exn:  # throttled past the retries, expired token, no permission...
            # (GetLogEvents' request rate is shared by every caller in the account and region:
            # https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/cloudwatch_limits_cwl.html)
            if patient and aws.throttled(exn):
                return read  # (the next pass reads on from this token)
            read.stopped_early = f"{exn.__class__.__name__}: {exn}"
            return read
        read.pages += 1
        on_events(page.get("events", []))
        following = page.get("nextForwardToken")
        if not following or following == read.token:
            return read
        read.token = following
    read.stopped_early = f"read {limit} pages, the most one pass reads"
    return read


def print_logs(
    deployment: Deployment, run_id: str, task: str | None, follow_: bool, out: TextIO | None = None,
    interval: float = FOLLOW_SECONDS, page_limit: int = LOG_PAGE_LIMIT,
) -> list[str]:
    """Print the logs (every page of every stream) to ``out`` (standard output); what was cut
    short and why, one line each (an empty list: nothing was). Following, a run with no log to
    show yet (no driver task, no task matching) is waited for, as are the tasks that match
    later; each task's lines come under its own heading then, as more may come. A stream with
    nothing new is read less often (``QUIET_STREAM_PASSES``), and every stream once more after the
    run has ended."""
    out = out or sys.stdout
    logs = aws.client("logs")
    tokens: dict[tuple[str, str], str | None] = {}
    quiet: dict[tuple[str, str], tuple[int, int]] = {}  # passes with nothing new, the pass it is read again at
    passes = 0
    headed: set[str] = set()
    incomplete: list[str] = []
    waiting = False
    head_each = follow_ and task is not None
    while True:
        try:
            streams = log_streams(deployment, run_id, task)
        except NotYet as exn:
            if not follow_ or exn.final:
                raise
            if not waiting:
                print(f"{exn}: waiting", file=sys.stderr, flush=True)
                waiting = True
            streams = []
        many = len(streams) > 1 or head_each
        for label, group, stream in streams:
            key = (group, stream)
            if follow_ and quiet.get(key, (0, 0))[1] > passes:
                continue  # (quiet lately: read again a few passes on)
            written = [0]

            def write(
                events: list[dict[str, Any]], label: str = label, group: str = group, stream: str = stream, many: bool = many,
                written: list[int] = written,
            ) -> None:
                if events and many and label not in headed:
                    out.write(f"== {label} ({group} {stream})\n")
                    headed.add(label)
                for event in events:
                    out.write(event["message"].rstrip("\n") + "\n")
                written[0] += len(events)

            read = read_stream(logs, group, stream, tokens.get(key), write, page_limit, patient=follow_)
            tokens[key] = read.token
            if read.missing and not follow_ and not read.token and label not in headed:
                # (the last look: a task that never started has no log, and printing nothing said nothing)
                print(f"no log for {label}: its stream {stream} does not exist in {group} (it never started: "
                      "`status` says why; or its log expired, LogRetentionDays)", file=sys.stderr, flush=True)
            times = 0 if written[0] else quiet.get(key, (0, 0))[0] + 1
            quiet[key] = (times, passes + min(2**times, QUIET_STREAM_PASSES))
            if read.stopped_early:
                incomplete.append(f"the log of {label} ({group} {stream}) was cut short: {read.stopped_early}")
        out.flush()
        passes += 1
        if not follow_ or incomplete:
            return incomplete
        current = status.read(deployment.bucket, run_id)
        if current is None or current.finished:
            follow_ = False  # one more pass for what came last
        time.sleep(interval)


def check_download_dir(dest: str) -> None:
    """``outputs --download DIR``: DIR is a folder, or can be made one."""
    path = Path(dest)
    if path.exists() and not path.is_dir():
        raise ClientError(f"--download {dest}: exists and is not a folder; give a folder to download into")
    parent = next((p for p in (path.absolute(), *path.absolute().parents) if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ClientError(f"--download {dest}: cannot create it ({parent} is not a writable folder)")


def download_outputs(outputs: dict[str, Any], dest: str, results: str, overwrite: bool = False) -> list[str]:
    """Download every s3:// File/Directory in ``outputs`` under ``dest``, keeping their paths
    below the run's results prefix (out/<output>/...). Returns the local paths. Refuses (before
    downloading anything) a file already there, unless ``overwrite``."""
    check_download_dir(dest)
    bucket, prefix = s3io.split(results)
    targets = output_targets(outputs, dest, bucket, prefix)
    root = os.path.abspath(dest)
    blocked = sorted({str(folder) for _, t in targets for folder in Path(t.rstrip(os.sep)).parents
                      if str(folder).startswith(root + os.sep) and os.path.lexists(folder) and not folder.is_dir()})
    if blocked:  # (a file where an output's folder goes: said before anything is downloaded, --overwrite or not)
        more = f" (and {len(blocked) - 1} more)" if len(blocked) > 1 else ""
        raise ClientError(f"--download {dest}: {blocked[0]} is a file where a folder of the outputs goes{more}; "
                          "move it away, or download into another folder")
    if not overwrite:
        there = [t.rstrip(os.sep) for _, t in targets if os.path.lexists(t.rstrip(os.sep))]
        if there:
            more = f" (and {len(there) - 1} more)" if len(there) > 1 else ""
            raise ClientError(f"--download {dest}: {there[0]} already exists{more}; use --overwrite to replace")
    def cannot(exn: OSError, target: str) -> ClientError:  # (a folder that cannot be made there: /proc, a read-only mount)
        return ClientError(f"--download {dest}: {exn.filename or target}: {exn.strerror or exn}")

    got: list[str] = []
    try:  # File outputs first, many at once
        files = download_files([(u, t) for u, t in targets if not u.endswith("/")])
    except OSError as exn:
        raise cannot(exn, dest) from None
    downloaded = sum(len(paths) for paths in files.values())  # (what is on disk: said if one is missing)
    for uri_, target in targets:
        try:
            found = files.get(uri_)
            if found is None:  # (the rest: Directory outputs, each in parallel)
                found = download_output(uri_, target)
                downloaded += len(found or [])
        except OSError as exn:
            raise cannot(exn, target) from None
        if found is None:
            done = f" ({downloaded} file(s) downloaded, under {dest})" if downloaded else ""
            raise ClientError(f"--download: {uri_} is not in S3 (removed since the run ended?){done}")
        got.extend(found)
    return got


def download_files(targets: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The objects of ``targets`` (s3:// URI, local path) that are objects, downloaded
    ``s3io.transfer_concurrency()`` at a time (an Array[File] of thousands went one by one), by
    URI; a URI that is no object (a Directory output's prefix) is left out, for
    ``download_output``. An OSError is raised as it comes."""

    def one(item: tuple[str, str]) -> tuple[str, list[str] | None]:
        uri_, target = item
        bucket, key = s3io.split(uri_)
        try:
            return uri_, [s3io.download_to(bucket, key, target)]
        except botocore.exceptions.ClientError as exn:
            if not s3io.not_found(exn):
                raise
            return uri_, None

    if not targets:
        return {}
    return {uri_: found for uri_, found in aws.each(one, targets, s3io.transfer_concurrency()) if found is not None}


def download_output(uri_: str, target: str) -> list[str] | None:
    """A File output's object, or a Directory output's objects, to ``target`` (the paths
    written); None if it is not in S3. outputs.json names a Directory by its prefix without the
    ending "/" (a miniwdl Directory value has none): a URI that is no object is looked up as a
    folder, which an empty one is too (the driver leaves its "<prefix>/" marker)."""
    bucket, key = s3io.split(uri_)
    if not uri_.endswith("/"):
        try:
            return [s3io.download_to(bucket, key, target)]
        except botocore.exceptions.ClientError as exn:
            if not s3io.not_found(exn):
                raise
    prefix = key.rstrip("/") + "/"
    if not any(True for _ in s3io.list_keys(bucket, prefix)):
        return None
    os.makedirs(target.rstrip(os.sep), exist_ok=True)
    return s3io.download_prefix(bucket, prefix, target.rstrip(os.sep))


def s3_values(value: Any) -> Iterator[str]:
    """Each ``s3://`` string of an outputs document, in order: values, list items and a Map's keys
    too (Map[File, ...]); the client has no WDL types to tell a File from a String."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from s3_values(k)
            yield from s3_values(v)
    elif isinstance(value, list):
        for v in value:
            yield from s3_values(v)
    elif isinstance(value, str) and value.startswith("s3://"):
        yield value


def outside_results(outputs: dict[str, Any], results: str) -> list[str]:
    """The s3:// values of ``outputs`` that are not under the run's ``results`` (what the run
    wrote): a String that names an object, or a File output given as the URI it was: never
    downloaded."""
    return [value for value in s3_values(outputs) if not value.startswith(results)]


def output_targets(outputs: dict[str, Any], dest: str, bucket: str, prefix: str) -> list[tuple[str, str]]:
    """(s3:// URI, local path under ``dest``) of every File/Directory value in ``outputs`` that
    the run wrote (under its results, ``bucket``/``prefix``: ``outside_results`` are left);
    ClientError for one that would land outside ``dest`` (a key with '..' segments)."""
    found: list[tuple[str, str]] = []
    root = os.path.abspath(dest)
    for value in s3_values(outputs):
        src_bucket, key = s3io.split(value)
        if src_bucket != bucket or not key.startswith(prefix):
            continue  # (not the run's: outside_results)
        target = os.path.normpath(os.path.join(root, key[len(prefix):]))
        if not target.startswith(root + os.sep):
            raise ClientError(f"output {value} would land outside {dest}; not downloading it")
        found.append((value, target + (os.sep if value.endswith("/") else "")))
    return found


def status_text(doc: dict[str, Any]) -> str:
    current = status.RunStatus.model_validate({k: v for k, v in doc.items() if k in status.RunStatus.model_fields and k not in ("outputs", "error")})
    lines = [
        f"run        {current.run_id}  ({current.name}, from {current.source})",
        f"status     {current.status}",
        f"progress   {progress_line(current)}",
        f"submitted  {current.submitted_at}",
    ]
    if current.phase and not current.finished:
        lines.insert(2, f"phase      {current.phase}")
    if current.started_at:
        lines.append(f"started    {current.started_at}")
    if current.finished_at:
        lines.append(f"finished   {current.finished_at}  ({current.duration_s:g}s)")
    lines.append(f"results    {current.results}")
    if doc.get("outputs_json"):
        lines.append(f"outputs    {doc['outputs_json']}")
    error = doc.get("error")
    if isinstance(error, dict):
        lines.append(f"error      {error.get('error', '')}: {error.get('message', '')}")
        failed = error.get("failed_task") or {}
        if failed.get("stderr_tail"):
            lines.append("stderr     " + "\n           ".join(failed["stderr_tail"][-10:]))
        if failed.get("log_url"):
            lines.append(f"log        {failed['log_url']}")
    if current.report or doc.get("report"):
        lines.append(f"report     {current.report or doc.get('report')}")
    if current.resumed_from:
        lines.append(f"resumes    {current.resumed_from}")
    if current.resumed_by:
        lines.append(f"resumed by {', '.join(current.resumed_by)}")
    return "\n".join(lines)


def runs_table(found: list[status.RunStatus]) -> str:
    rows = [("RUN", "STATUS", "SUBMITTED", "DURATION", "TASKS")]
    for r in found:
        t = r.tasks
        rows.append((
            r.run_id, r.status, r.submitted_at, f"{r.duration_s:g}s" if r.duration_s is not None else "-",
            f"{t.succeeded + t.cached}/{t.total} done, {t.failed} failed" + (f", {t.cancelled} cancelled" if t.cancelled else ""),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def shown_error(error: dict[str, Any], where: str = "") -> dict[str, Any]:
    """A run's error.json as a terminal shows it: without its ``provenance`` (every task the run
    ran, and its image: seven lines a task, 3,000 lines for a run of 500), which stays in the
    document at ``where``."""
    if "provenance" not in error:
        return error
    shown = {k: v for k, v in error.items() if k != "provenance"}
    shown["provenance"] = f"(every task and image: in {where or 'error.json'})"
    return shown


def emit(doc: Any, out: TextIO | None = None) -> None:
    """``doc`` as JSON on ``out`` (default: stdout as it is now, not as it was at import)."""
    out = sys.stdout if out is None else out
    out.write(json.dumps(doc, indent=2, default=str) + "\n")

