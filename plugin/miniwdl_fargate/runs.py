"""Runs: the S3 key layout and the run record every stage passes along (docs/CONTRACTS.md)."""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

RUNS_PREFIX = "runs/"
INPUTS_NAME = "inputs.json"
#: the run record, beside its results (RunRecord)
RECORD_NAME = "run.json"
#: an S3 drop's run options, next to its inputs.json (run_options.parse_sidecar); not part of the bundle
OPTIONS_NAME = "options.json"
#: the submit step's refusal of a run name's last submission, beside its inputs.json (refusal_key)
REFUSAL_NAME = "error.json"
#: a submission's claim on its run name while it uploads (upload.name_claimed); not part of the bundle
CLAIM_NAME = ".submitting"
RESULTS_DIR = "results"
#: the call cache in the runs bucket: entries under cache/call/, their files under cache/files/
CACHE_PREFIX = "cache/"
#: beside a run's report: the calls it looked up in the call cache, their keys' parts and outcome
CALLS_NAME = "call_cache.json"
DEFAULT_WDL = "workflow.wdl"
#: an S3 drop's workflow as a `miniwdl zip` bundle, beside inputs.json (instead of workflow.wdl)
DEFAULT_ZIP = "workflow.zip"
# A run name is a key segment (runs/<name>/) and the stem of the Step Functions execution name
# (<name>-<8 hex>): S3's safe key characters less those an execution name may not hold, and no
# '/' or '..' segment (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html;
# execution names: 1-80 characters, no whitespace, brackets, wildcards, "#%\\^|~`$&,;:/" or
# control characters, https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}-[0-9a-f]{8}$")
#: where a list of runs goes on from (``manage.list_runs``): after a run name's runs, or inside a
#: name: after its run submitted at <ms> (epoch milliseconds) whose id ends <8 hex> (``<name>~<ms>~<hex>``:
#: newer runs of the name since do not shift the pages), or after its first N runs (``<name>:<N>``,
#: the tokens of earlier versions); a name holds no ":" or "~"
PAGE_TOKEN_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})(?::(?P<skip>[0-9]{1,9})|~(?P<ms>[0-9]{1,15})~(?P<id>[0-9a-f]{8}))?$"
)
TRIGGER_RE = re.compile(r"^runs/(?P<name>[^/]+)/inputs\.json$")

#: how the StopTask reason of each task of a cancelled run begins: ECS hands the reason back as
#: the task's ``stoppedReason``, which is how its driver tells a cancel from another stop
#: (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_StopTask.html)
CANCELLED_STOP_REASON = "run cancelled"
#: how long a run may take (template parameter MaxRunHours; per run: options.max_run_hours)
DEFAULT_MAX_RUN_HOURS = 72.0
#: within a Standard workflow's own maximum duration, one year (8,760 hours), with room for what
#: the state machine does beside the driver's wait: its retries of a driver that failed to start
#: (each retry's TimeoutSeconds starts anew), then stopping the run and finalizing it. A run that
#: reached the year itself would end TIMED_OUT, which no Catch handles: nothing would stop its
#: tasks or write its error.json (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html)
MAX_RUN_HOURS_LIMIT = 8700.0
#: seconds the state machine waits for a heartbeat of the driver (DriverHeartbeatSeconds)
DEFAULT_HEARTBEAT_SECONDS = 900


class RunRecord(BaseModel):
    """What a run is: the state machine input, ``run.json``, and the driver's environment."""

    run_id: str
    name: str
    bucket: str
    workflow: str = Field(description="s3:// URI of the main WDL file")
    inputs: str = Field(description="s3:// URI of the inputs JSON")
    results: str = Field(description="s3:// URI prefix (ending in /) for this run's results")
    submitted_at: str
    source: Literal["s3", "api", "cli"] = "s3"
    options: dict[str, Any] = Field(default_factory=dict, description="run options, e.g. {\"call_cache\": false}")
    workflow_name: str = Field(
        default="", description="the WDL's workflow (or its only task) by name: the runs' tag miniwdl-fargate:workflow"
    )
    #: what the run was submitted from (workflow, inputs, inputs_version); ``workflow`` and
    #: ``inputs`` above are the run's own copies of them, the only thing its driver reads
    submitted: dict[str, str] = Field(default_factory=dict, description="the objects the run was created from")
    #: the run this one resumes (``miniwdl-fargate resume``, ``POST /runs/{run_id}/resume``): the same
    #: workflow copy, inputs and options, its finished calls taken from the call cache
    resumed_from: str | None = Field(default=None, description="the id of the failed or cancelled run this one resumes")
    #: the state machine's limits for this run (its TimeoutSecondsPath / HeartbeatSecondsPath)
    max_run_seconds: int = Field(default=int(DEFAULT_MAX_RUN_HOURS * 3600), gt=0)
    heartbeat_seconds: int = Field(default=DEFAULT_HEARTBEAT_SECONDS, gt=0)

    @property
    def results_prefix(self) -> str:
        return self.results.split("/", 3)[3]

    def results_key(self, name: str) -> str:
        return self.results_prefix + name


def now_iso() -> str:
    """UTC now, to the millisecond: a warm local run can start and finish within one second, and its
    duration (finished − submitted) must not come out as 0."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(
            f"run name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_run_id(run_id: str) -> str:
    """A run id as the pipeline makes them (``run_id_for``), or ValueError saying what one is."""
    if not RUN_ID_RE.match(run_id):
        raise ValueError(
            f"run id {run_id!r} is not one: a run id is the run's name, '-' and 8 hex digits "
            "(e.g. hello-1a2b3c4d), as submit and list print it"
        )
    return run_id


def run_prefix(name: str) -> str:
    return f"{RUNS_PREFIX}{name}/"


def name_of(run_id: str) -> str:
    """The run name of a run id (``<name>-<8 hex>``)."""
    return run_id.rsplit("-", 1)[0]


def refusal_key(name: str) -> str:
    """Where the submit step answers a refused submission of run name ``name`` (start.reject)."""
    return run_prefix(name) + REFUSAL_NAME


def run_results_prefix(run_id: str) -> str:
    """The key prefix of a run's results, from its id alone (``<name>-<8 hex>``)."""
    return f"{run_prefix(name_of(run_id))}{RESULTS_DIR}/{run_id}/"


def run_refusal_key(run_id: str) -> str:
    """Where the submit step keeps its refusal of the submission that would have been run
    ``run_id``, for good (``refusal_key``'s is the name's latest, replaced by the next)."""
    return run_results_prefix(run_id) + REFUSAL_NAME


def run_id_for(name: str, *parts: str) -> str:
    """``<name>-<8 hex>``: stable for the same parts, so a duplicate submission maps to one run.

    Step Functions execution names allow 80 characters; names are at most 64.
    """
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]
    return f"{name}-{digest}"


#: the longest ``startedBy`` the product sets: RunTask takes up to 128 characters
#: (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html), but ListTasks,
#: which finds a run's tasks by it, once refused a filter over 36 ("ownerId longer than 36",
#: https://github.com/aws/amazon-ecs-cli/issues/97) and its reference names no limit: kept within 36
STARTED_BY_CHARS = 36


def started_by(run_id: str) -> str:
    """A run id as ECS ``startedBy`` allows it (letters, digits, '-', '_' and '/') and as ListTasks
    surely takes it (``STARTED_BY_CHARS``): a longer one is its first characters and its last 9
    (``-<8 hex digits>``, random for each run: what tells runs of one name apart)."""
    text = "".join(c if c.isascii() and (c.isalnum() or c in "-_/") else "_" for c in run_id)
    return text if len(text) <= STARTED_BY_CHARS else text[: STARTED_BY_CHARS - 9] + text[-9:]


def execution_name(run_id: str) -> str:
    """The name of the run's execution: its run id, each "." made "_". A name with anything but
    letters, digits, "-" and "_" is taken, but its execution is not logged to CloudWatch Logs ("To
    enable logging with CloudWatch Logs, the name should only contain 0-9, A-Z, a-z, - and _",
    https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html); a run
    name may hold "." (an S3 folder's). Two run ids that differ only there have different digests."""
    return run_id.replace(".", "_")


def execution_arn(state_machine_arn: str, run_id: str) -> str:
    """The ARN of the run's execution (``execution_name``): the state machine's ARN with
    ``stateMachine`` read as ``execution`` and the name added,
    ``arn:<partition>:states:<region>:<account>:execution:<state machine>:<name>``
    (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsstepfunctions.html)."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + execution_name(run_id)


def results_uri(bucket: str, name: str, run_id: str) -> str:
    return f"s3://{bucket}/{run_prefix(name)}{RESULTS_DIR}/{run_id}/"


def in_bundle(rel_key: str) -> bool:
    """Whether a key (relative to the WDL's folder) belongs to the workflow bundle: not the
    run's inputs and options, nor what the pipeline and submit write there (a refusal, a claim,
    results)."""
    return not (rel_key in (INPUTS_NAME, OPTIONS_NAME, CLAIM_NAME, REFUSAL_NAME) or rel_key.startswith(RESULTS_DIR + "/"))


def max_run_hours(options: dict[str, Any], default: float = DEFAULT_MAX_RUN_HOURS) -> float:
    """``options.max_run_hours`` if given, else ``default``; ValueError saying what is wrong."""
    value = options.get("max_run_hours")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"must be a number of hours, e.g. 12 or 0.5, not {value!r}")
    if not 0 < value <= MAX_RUN_HOURS_LIMIT:
        raise ValueError(f"must be more than 0 and at most {MAX_RUN_HOURS_LIMIT:g} hours (within the year a Step Functions execution may take), not {value:g}")
    return float(value)


def limits(hours: float, heartbeat_seconds: int) -> dict[str, int]:
    """The record's ``max_run_seconds`` and ``heartbeat_seconds`` for a run of at most ``hours``.

    Step Functions wants whole positive seconds, and a heartbeat shorter than the timeout
    (https://docs.aws.amazon.com/step-functions/latest/dg/state-task.html): a run limited to less
    than the heartbeat gets a heartbeat one second short of its limit."""
    max_seconds = max(2, math.ceil(hours * 3600))
    return {"max_run_seconds": max_seconds, "heartbeat_seconds": max(1, min(heartbeat_seconds, max_seconds - 1))}
