"""What a stopped ECS task means for the WDL task it ran: one table per question.

``STOP_CODES``: every ``stopCode`` ECS reports (botocore's ``TaskStopCode``; a test fails when
botocore learns a value this table does not classify), with what it means per AWS and what the
backend does. AWS's meanings: "Stopped tasks error codes" and the ``Task.stopCode`` field of the
ECS API reference, https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Task.html, and
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/stopped-task-error-codes.html

``PULL_ERRORS``: how to read a ``CannotPullContainerError`` (stop code TaskFailedToStart), per
"CannotPullContainer task errors",
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_cannot_pull_image.html : a
registry's rate limit (Docker Hub answers 429 ``toomanyrequests``) or a network timeout passes,
so the pull is tried again with backoff; an image that does not exist or may not be pulled will
not appear by retrying, so the task fails at once naming the image.

``ending``: the one decision, a pure function of the stopped task ECS described (its stop code,
stopped reason, and its container's exit code and reason): what the attempt's outcome is, its
exit code, what to say, and whether another try may succeed. The backend acts on it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from .. import attempts, runs


class Outcome(enum.Enum):
    EXIT_CODE = "the command's exit code decides"
    FAILED_TO_START = "failed to start: an image pull error is read with PULL_ERRORS; any other reason is retried as an interruption"
    INTERRUPTED = "interrupted: retried while the task's preemptible budget lasts (miniwdl's Interrupted)"
    STOPPED = "stopped from outside: the task fails, saying who stopped it and why"


@dataclass(frozen=True)
class StopCode:
    meaning: str  # what AWS says it means
    outcome: Outcome


STOP_CODES: dict[str, StopCode] = {
    "EssentialContainerExited": StopCode("the task's essential container exited (the command ended)", Outcome.EXIT_CODE),
    "TaskFailedToStart": StopCode(
        "the task could not start: image pull, network interface, volume or secrets set-up failed", Outcome.FAILED_TO_START
    ),
    "SpotInterruption": StopCode("Fargate Spot took its capacity back (after a two-minute SIGTERM warning)", Outcome.INTERRUPTED),
    "TerminationNotice": StopCode(
        "the task was stopped by a termination notice (e.g. Fargate retiring the platform it ran on)", Outcome.INTERRUPTED
    ),
    "InfrastructureHealth": StopCode("ECS stopped the task because the infrastructure under it was unhealthy", Outcome.INTERRUPTED),
    "UserInitiated": StopCode("someone called StopTask (a user, a script, a sweep of orphaned tasks)", Outcome.STOPPED),
    "ServiceSchedulerInitiated": StopCode("an ECS service's scheduler stopped the task", Outcome.STOPPED),
}


#: ECS's stoppedReason of a task it stopped for maintenance of the infrastructure under it, which
#: AWS says tells such a stop, whatever the stop code
#: (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-maintenance.html)
MAINTENANCE_REASON = "ECS is performing maintenance on the underlying infrastructure hosting the task"
#: the reasons (a task's stoppedReason, or its container's reason) of a task that never ran its
#: command, whatever its stop code says
START_FAILURE_PREFIXES = ("CannotPullContainerError", "CannotStartContainerError", "CannotCreateContainerError")


def stop_code(code: str | None) -> StopCode | None:
    """The table's entry for ``code``; None for a code it does not know (the exit code decides)."""
    return STOP_CODES.get(code or "")


class Pull(enum.Enum):
    TRANSIENT = "retried with backoff"
    PERMANENT = "fails at once"


PULL_ERROR_PREFIX = "CannotPullContainerError"

#: (pattern in ECS's stoppedReason, lower case; what it is; transient or not; what to do, or "").
#: Permanent ones are tried first: "not found" after a timeout-looking prefix is still a missing image.
PULL_ERRORS: tuple[tuple[str, str, Pull, str], ...] = (
    # an image built for another CPU only (arm64, as on an Apple-silicon Mac): Fargate's "failed to
    # find a descriptor for platform {linux/amd64}" (https://github.com/aws/containers-roadmap/issues/1120),
    # Docker's "does not contain descriptor matching platform", containerd's "no match for platform
    # in manifest: not found" (read before "not found": the image is there); a single-platform image,
    # Docker's "was found but does not match the specified platform: wanted linux/amd64, actual: ..."
    (r"descriptor (?:for|matching) platform|no match(?:ing manifest)? for platform|no matching manifest for"
     r"|does not match the specified platform",
     "it has no variant for the task's platform, linux/amd64 (an image built only for arm64, as on an Apple-silicon "
     "Mac, has none): build and push it with --platform linux/amd64", Pull.PERMANENT, ""),
    # the image does not fit the task's storage, where both the compressed and the unpacked image
    # live (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-task-storage.html)
    (r"no space left on device", "the image does not fit the task's storage", Pull.PERMANENT,
     "The task's storage holds the image both compressed and unpacked: give it more with runtime.bootDiskSizeGb "
     "or runtime.disks."),
    # Docker Hub's answer for a private repository and for one that does not exist alike ("pull access
    # denied for x, repository does not exist or may require authorization"): read before "does not exist"
    (r"pull access denied|may require authorization", "no such image, or it is private", Pull.PERMANENT,
     "Fargate pulls public registries' images anonymously: a private image goes to your account's ECR."),
    (r"manifest unknown", "the tag or digest does not exist", Pull.PERMANENT, ""),
    (r"\bnot found\b", "the image, tag or digest does not exist", Pull.PERMANENT, ""),
    (r"repository \S+ does not exist|repository does not exist", "the repository does not exist", Pull.PERMANENT, ""),
    (r"invalid reference format", "the image name is not a valid reference", Pull.PERMANENT, ""),
    # ECR refusing the task's execution role: another account's repository needs both the stack's
    # PullableEcrRepositoryArns and that repository's policy (docs/deploy.md)
    (r"\.dkr\.ecr\.\S*(?:.*\b(?:unauthorized|403|forbidden)\b|.*access ?denied)",
     "ECR refuses the task's execution role", Pull.PERMANENT,
     "A repository of another account needs the stack's PullableEcrRepositoryArns and a repository policy that "
     "lets this account pull."),
    # other registries: quay.io answers 401 UNAUTHORIZED for a repository or tag that does not exist
    # as for a private one (biocontainers' tags carry a build suffix: samtools:1.17--h00cdaf9_0)
    (r"\bunauthorized\b|\b40[13]\b|access ?denied|forbidden",
     "the registry refuses the pull: no such image or tag, or it is private", Pull.PERMANENT,
     "Check the exact tag (quay.io answers so for a tag that does not exist; biocontainers' tags carry a build "
     "suffix); a private image goes to your account's ECR."),
    (r"toomanyrequests|too many requests|\b429\b|rate limit", "the registry's pull rate limit", Pull.TRANSIENT,
     "Docker Hub counts pulls per address: the stack's ImageCache=Enabled with a DockerHubCredentialArn pulls "
     "through your account's ECR instead."),
    (r"i/o timeout|timeout|timed out|context deadline exceeded", "the registry did not answer in time", Pull.TRANSIENT,
     "If every pull times out, the task's subnet cannot reach the registry: a subnet without a public IP needs a NAT "
     "gateway (or, for ECR alone, the stack's InterfaceEndpoints=Enabled; ImageCache=Enabled then serves public images "
     "from your account's ECR)."),
    (r"tls handshake", "a TLS handshake with the registry failed", Pull.TRANSIENT, ""),
    (r"connection reset|connection refused|broken pipe|\beof\b", "the connection to the registry broke", Pull.TRANSIENT, ""),
    (r"\b50[0234]\b|service unavailable|internal server error", "the registry had a server error", Pull.TRANSIENT, ""),
)


@dataclass(frozen=True)
class PullError:
    kind: Pull
    what: str
    #: what to do about it ("" where ``what`` says it)
    remedy: str = ""

    def after(self, message: str) -> str:
        """``message`` followed by the remedy, if there is one."""
        return f"{message}. {self.remedy}" if self.remedy else message


def pull_error(reason: str) -> PullError | None:
    """How to treat a stopped task's reason, if it is an image pull failure. A pull failure that
    matches no pattern is treated as permanent (as ECS's own retries of the pull already failed)."""
    if not reason.startswith(PULL_ERROR_PREFIX):
        return None
    text = reason.lower()
    for pattern, what, kind, remedy in PULL_ERRORS:
        if re.search(pattern, text):
            return PullError(kind, what, remedy)
    return PullError(Pull.PERMANENT, "the image could not be pulled")


#: stoppedReason prefixes of a task that failed to start for reasons retrying will not fix
#: (CannotPullContainerError is read with PULL_ERRORS instead)
PERMANENT_START_FAILURES = ("CannotCreateContainerError", "InvalidParameter")
#: (pattern in a CannotStartContainerError's reason, lower case; what it is): an image that cannot
#: run the task's command however often it is tried (the container runtime's "exec: "/bin/sh":
#: stat /bin/sh: no such file or directory", "exec format error"); other start failures may pass
START_ERRORS: tuple[tuple[str, str], ...] = (
    (r'"?/bin/sh"?: (?:stat /bin/sh: )?no such file or directory',
     "the image has no /bin/sh, which runs the task's command (a distroless or scratch image): use an image with a shell"),
    (r"exec format error",
     "the image's programs are built for another CPU than the task's, linux/amd64 (e.g. arm64, as on an Apple-silicon "
     "Mac): build and push it with --platform linux/amd64"),
)


#: (pattern in a start failure's reason, lower case; what to look at): the network a task starts in.
#: A Fargate task reaches ECR, Secrets Manager and CloudWatch Logs from its subnet (through an
#: internet gateway with a public IP, a NAT gateway, or interface endpoints:
#: https://repost.aws/knowledge-center/ecs-fargate-pull-container-error), and mounts EFS through
#: a mount target in its subnet's Availability Zone, by DNS name, NFS on TCP 2049
#: (https://docs.aws.amazon.com/efs/latest/ug/troubleshooting-efs-mounting.html)
START_REMEDIES: tuple[tuple[str, str], ...] = (
    (r"efs|mount\.nfs|nfs4",
     "EFS could not be mounted: the task's subnet needs a mount target of the file system in its Availability Zone, "
     "its VPC DNS resolution on, and a security group that lets NFS (TCP 2049) in from the tasks' (the stack's own "
     "VPC has all three: check SubnetIds and VpcId)"),
    (r"unable to pull secrets or registry auth|registry auth|unable to retrieve|secretsmanager|ssm",
     "the task could not reach ECR or Secrets Manager from its subnet: a subnet without a public IP needs a NAT "
     "gateway or the stack's InterfaceEndpoints=Enabled (AssignPublicIp=ENABLED needs a route to an internet gateway)"),
    (r"\beni\b|network interface|ip address|free address|subnet",
     "no network interface or address could be had in the subnet: larger subnets (SubnetIds), or fewer tasks at once "
     "(the stack's MaxRunConcurrentTasks)"),
)


def start_remedy(reason: str) -> str:
    """What to look at for a task that could not start (``START_REMEDIES``), or ""."""
    text = reason.lower()
    return next((what for pattern, what in START_REMEDIES if re.search(pattern, text)), "")


def start_error(reason: str) -> str | None:
    """What a CannotStartContainerError that retrying will not fix is (``START_ERRORS``), or None."""
    if not reason.startswith("CannotStartContainerError"):
        return None
    text = reason.lower()
    return next((what for pattern, what in START_ERRORS if re.search(pattern, text)), None)
#: how Fargate says a container was killed for exceeding its memory (the container's ``reason``)
OOM_REASON = "OutOfMemoryError"
OOM_EXIT_CODE = 137  # SIGKILL


class Verdict(enum.Enum):
    """What the backend does with a stopped task."""

    EXITED = "the command ended: its exit code decides (against the task's returnCodes)"
    OUT_OF_MEMORY = "killed for exceeding its memory: run again with more memory while oom_retries lasts"
    INTERRUPTED = "interrupted (Spot, a termination notice, unhealthy infrastructure): retried as an interruption"
    PULL_AGAIN = "the image pull failed for a passing reason: started again after a backoff"
    IMAGE_NOT_PULLABLE = "the image cannot be pulled: the task fails at once, naming it"
    START_INTERRUPTED = "failed to start for a reason that may pass: retried as an interruption"
    CANNOT_START = "failed to start for a reason retrying will not fix: the task fails"
    STOPPED = "stopped from outside: the task fails, saying who stopped it and why"
    NO_EXIT_CODE = "stopped without an exit code, for no reason the tables know: the task fails"


@dataclass(frozen=True)
class Ending:
    """How one stopped ECS task ends its attempt (``ending``)."""

    verdict: Verdict
    #: the attempt's outcome (``attempts``); "" for EXITED: succeeded or failed by the task's returnCodes
    outcome: str
    exit_code: int | None
    #: why it ended so, for the run report ("" when the exit code says it all)
    detail: str
    #: whether another try may succeed (the backend still spends its budgets on it)
    retryable: bool
    stop_code: str = ""
    reason: str = ""  # ECS's stoppedReason
    container_reason: str = ""
    pull: PullError | None = None

    @property
    def meaning(self) -> str:
        """What AWS says the stop code means ("" for a code the table does not know)."""
        known = stop_code(self.stop_code)
        return known.meaning if known else ""


def ending(task: dict[str, Any]) -> Ending:
    """What a stopped task (one DescribeTasks ``tasks`` entry, lastStatus STOPPED) means for its
    attempt, by STOP_CODES, the container's reason (out of memory) and PULL_ERRORS. An
    interruption wins over whatever the container exited with after its SIGTERM; an exit code is
    the command's only for a task stopped neither by ECS's infrastructure nor from outside."""
    container = (task.get("containers") or [{}])[0]
    code = str(task.get("stopCode") or "")
    reason = str(task.get("stoppedReason") or "")
    container_reason = str(container.get("reason") or "")
    exit_code = container.get("exitCode")
    known = stop_code(code)
    kind = known.outcome if known else Outcome.EXIT_CODE
    if MAINTENANCE_REASON.lower() in reason.lower():
        kind = Outcome.INTERRUPTED
    facts = {"stop_code": code, "reason": reason, "container_reason": container_reason}
    if kind is Outcome.INTERRUPTED:
        label = "Spot" if code == "SpotInterruption" else code
        return Ending(Verdict.INTERRUPTED, attempts.INTERRUPTED, exit_code, f"{label}: {reason}", True, **facts)
    if container_reason.startswith(OOM_REASON):
        code_or_kill = exit_code if exit_code is not None else OOM_EXIT_CODE
        return Ending(Verdict.OUT_OF_MEMORY, attempts.OUT_OF_MEMORY, code_or_kill, container_reason, True, **facts)
    if kind is Outcome.STOPPED:
        # a task of a cancelled run was cancelled with it, not failed (it may stop before its
        # driver learns of the cancel)
        cancelled = code == "UserInitiated" and reason.startswith(runs.CANCELLED_STOP_REASON)
        outcome = attempts.CANCELLED if cancelled else attempts.FAILED
        return Ending(Verdict.STOPPED, outcome, exit_code, f"{code}: {reason}", False, **facts)
    if exit_code is None:
        # what stopped it may be said by the task or by its container only (DescribeTasks often
        # gives the container's "CannotStartContainerError: ..." beside a general stoppedReason)
        said = next((r for r in (reason, container_reason) if r.startswith(START_FAILURE_PREFIXES)), None)
        if said is not None or kind is Outcome.FAILED_TO_START:
            return _failed_to_start(said or reason, facts)
    if exit_code is not None:
        return Ending(Verdict.EXITED, "", exit_code, "", False, **facts)
    return Ending(Verdict.NO_EXIT_CODE, attempts.FAILED, None, f"{code or 'no stop code'}: {reason}", False, **facts)


def _failed_to_start(reason: str, facts: dict[str, str]) -> Ending:
    """TaskFailedToStart: an image pull error by PULL_ERRORS; any other reason by START_ERRORS and
    PERMANENT_START_FAILURES (the rest may pass)."""
    pull = pull_error(reason)
    if pull is not None:
        verdict = Verdict.IMAGE_NOT_PULLABLE if pull.kind is Pull.PERMANENT else Verdict.PULL_AGAIN
        return Ending(verdict, attempts.FAILED_TO_START, None, reason, pull.kind is Pull.TRANSIENT, pull=pull, **facts)
    if (what := start_error(reason)) is not None:
        return Ending(Verdict.CANNOT_START, attempts.FAILED_TO_START, None, f"{what}. ECS: {reason}", False, **facts)
    if reason.startswith(PERMANENT_START_FAILURES):
        return Ending(Verdict.CANNOT_START, attempts.FAILED_TO_START, None, reason, False, **facts)
    return Ending(Verdict.START_INTERRUPTED, attempts.FAILED_TO_START, None, reason, True, **facts)
