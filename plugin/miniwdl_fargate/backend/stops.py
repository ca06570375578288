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
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


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


def stop_code(code: str | None) -> StopCode | None:
    """The table's entry for ``code``; None for a code it does not know (the exit code decides)."""
    return STOP_CODES.get(code or "")


class Pull(enum.Enum):
    TRANSIENT = "retried with backoff"
    PERMANENT = "fails at once"


PULL_ERROR_PREFIX = "CannotPullContainerError"

#: (pattern in ECS's stoppedReason, lower case; what it is; transient or not). Permanent ones are
#: tried first: "not found" after a timeout-looking prefix is still a missing image.
PULL_ERRORS: tuple[tuple[str, str, Pull], ...] = (
    (r"manifest unknown", "the tag or digest does not exist", Pull.PERMANENT),
    (r"\bnot found\b", "the image, tag or digest does not exist", Pull.PERMANENT),
    (r"repository \S+ does not exist|repository does not exist", "the repository does not exist", Pull.PERMANENT),
    (r"pull access denied", "the registry refuses the pull (no such image, or no access)", Pull.PERMANENT),
    (r"invalid reference format", "the image name is not a valid reference", Pull.PERMANENT),
    (r"\bunauthorized\b|\b403\b|access ?denied|forbidden", "the registry refuses the credentials (execution role, secret)", Pull.PERMANENT),
    (r"toomanyrequests|too many requests|\b429\b|rate limit", "the registry's pull rate limit", Pull.TRANSIENT),
    (r"i/o timeout|timeout|timed out|context deadline exceeded", "the registry did not answer in time", Pull.TRANSIENT),
    (r"tls handshake", "a TLS handshake with the registry failed", Pull.TRANSIENT),
    (r"connection reset|connection refused|broken pipe|\beof\b", "the connection to the registry broke", Pull.TRANSIENT),
    (r"\b50[0234]\b|service unavailable|internal server error", "the registry had a server error", Pull.TRANSIENT),
)


@dataclass(frozen=True)
class PullError:
    kind: Pull
    what: str


def pull_error(reason: str) -> PullError | None:
    """How to treat a stopped task's reason, if it is an image pull failure. A pull failure that
    matches no pattern is treated as permanent (as ECS's own retries of the pull already failed)."""
    if not reason.startswith(PULL_ERROR_PREFIX):
        return None
    text = reason.lower()
    for pattern, what, kind in PULL_ERRORS:
        if re.search(pattern, text):
            return PullError(kind, what)
    return PullError(Pull.PERMANENT, "the image could not be pulled")
