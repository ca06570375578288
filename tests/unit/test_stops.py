"""The tables of stops.py: every ECS stop code classified, image pull errors told apart; and
``stops.ending``, what a stopped task means, on real DescribeTasks answers (tests/events/describe_tasks)."""

import json
from datetime import datetime
from pathlib import Path

import botocore.session
import pytest

from miniwdl_fargate import attempts, runs
from miniwdl_fargate.backend import stops
from miniwdl_fargate.backend.stops import Outcome, Pull, Verdict


def test_every_stop_code_in_botocores_model_is_classified():
    codes = botocore.session.get_session().get_service_model("ecs").shape_for("TaskStopCode").enum
    print("TaskStopCode:", codes)
    unclassified = sorted(set(codes) - set(stops.STOP_CODES))
    assert not unclassified, f"classify these ECS stop codes in stops.STOP_CODES (and the table in docs/architecture.md): {unclassified}"


@pytest.mark.parametrize(
    "code, outcome",
    [
        ("EssentialContainerExited", Outcome.EXIT_CODE),
        ("TaskFailedToStart", Outcome.FAILED_TO_START),
        ("SpotInterruption", Outcome.INTERRUPTED),
        ("TerminationNotice", Outcome.INTERRUPTED),
        ("InfrastructureHealth", Outcome.INTERRUPTED),
        ("UserInitiated", Outcome.STOPPED),
        ("ServiceSchedulerInitiated", Outcome.STOPPED),
    ],
)
def test_what_each_stop_code_does(code, outcome):
    assert stops.stop_code(code).outcome is outcome


def test_an_unknown_stop_code_has_no_entry():
    assert stops.stop_code("SomethingNew") is None and stops.stop_code(None) is None


P = "CannotPullContainerError: pull image manifest has been retried 5 time(s): "


@pytest.mark.parametrize(
    "reason, kind",
    [
        (P + "unexpected status code 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit.", Pull.TRANSIENT),
        (P + 'failed to do request: Head "https://registry-1.docker.io/v2/x/manifests/1": dial tcp 34.205.13.154:443: i/o timeout', Pull.TRANSIENT),
        (P + "failed to resolve ref: context deadline exceeded", Pull.TRANSIENT),
        (P + "failed to do request: net/http: TLS handshake timeout", Pull.TRANSIENT),
        (P + "read tcp 10.0.0.1:4000->1.2.3.4:443: read: connection reset by peer", Pull.TRANSIENT),
        (P + "failed to resolve ref docker.io/library/ubuntu:nope: docker.io/library/ubuntu:nope: not found", Pull.PERMANENT),
        (P + "failed to resolve ref 1.dkr.ecr.us-east-1.amazonaws.com/x:1: manifest unknown", Pull.PERMANENT),
        ("CannotPullContainerError: Error response from daemon: repository biocontainers/nope does not exist", Pull.PERMANENT),
        ("CannotPullContainerError: Error response from daemon: pull access denied for nope, repository does not exist or may require 'docker login'", Pull.PERMANENT),
        ("CannotPullContainerError: invalid reference format", Pull.PERMANENT),
        (P + "failed to authorize: unexpected status: 401 Unauthorized", Pull.PERMANENT),
        ("CannotPullContainerError: no space left on device", Pull.PERMANENT),
    ],
)
def test_pull_errors_are_told_apart(reason, kind):
    assert stops.pull_error(reason).kind is kind


@pytest.mark.parametrize("reason", [
    P + "failed to find a descriptor for platform {linux/amd64}",
    "CannotPullContainerError: image Manifest does not contain descriptor matching platform 'linux/amd64'",
    P + 'failed to pull and unpack image "ghcr.io/x/y:1": no match for platform in manifest: not found',
    P + "image with reference x:1 was found but does not match the specified platform: wanted linux/amd64, actual: linux/arm64",
])
def test_an_image_built_for_another_platform_only_is_said_so(reason):
    """An arm64-only image (built on an Apple-silicon Mac): said as what it is, not as a missing one."""
    found = stops.pull_error(reason)
    assert found.kind is Pull.PERMANENT and "no variant for the task's platform, linux/amd64" in found.what


@pytest.mark.parametrize("reason, said", [
    # quay.io answers a tag that does not exist (biocontainers' without its build suffix) with 401, as
    # for a private repository: not a matter of the stack's credentials
    (P + 'failed to resolve ref quay.io/biocontainers/samtools:1.17: unexpected status from HEAD request to '
     'https://quay.io/v2/biocontainers/samtools/manifests/1.17: 401 UNAUTHORIZED', "no such image or tag, or it is private"),
    # Docker Hub's answer for a private repository and a missing one alike
    ("CannotPullContainerError: Error response from daemon: pull access denied for me/tools, repository does not "
     "exist or may require authorization: server message: insufficient_scope", "no such image, or it is private"),
    # ECR of another account: the stack parameter and the repository policy
    (P + "failed to resolve ref 222233334444.dkr.ecr.us-east-1.amazonaws.com/tools:1: unexpected status: 403 Forbidden",
     "PullableEcrRepositoryArns"),
    # the image does not fit the task's storage
    (P + "failed to extract layer sha256:ab: write /var/lib/containerd/x: no space left on device", "runtime.bootDiskSizeGb"),
    # Docker Hub's rate limit: the image cache is the remedy
    (P + "unexpected status code 429 Too Many Requests - Server message: toomanyrequests", "ImageCache=Enabled"),
])
def test_a_pull_failure_says_what_to_do(reason, said):
    found = stops.pull_error(reason)
    assert said in found.after(found.what), found


def test_other_start_failures_are_not_pull_errors():
    assert stops.pull_error("ResourceInitializationError: failed to configure ENI") is None


# -- stops.ending: one decision per stopped task, from real DescribeTasks answers -------------------


PAYLOADS = Path(__file__).parent.parent / "events" / "describe_tasks"


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def conforms(shape, value, where: str) -> list[str]:
    """What in ``value`` botocore's output ``shape`` has no place for (member names, enum values,
    types): the fixtures are DescribeTasks answers as ECS sends them."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        problems = [f"{where}.{key}: not in {shape.name}" for key in value if key not in shape.members]
        for key, item in value.items():
            if key in shape.members:
                problems += conforms(shape.members[key], item, f"{where}.{key}")
        return problems
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        return [p for i, item in enumerate(value) for p in conforms(shape.member, item, f"{where}[{i}]")]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: not a string"]
        return [f"{where}: {value!r} not one of {shape.name}"] if shape.enum and value not in shape.enum else []
    if kind == "integer" or kind == "long":
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{where}: not an integer"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: not a boolean"]
    if kind == "timestamp":
        try:
            datetime.fromisoformat(value)
        except (TypeError, ValueError):
            return [f"{where}: not a timestamp"]
        return []
    return []


ENDINGS = [
    # fixture, verdict, attempt outcome, exit code, retryable
    ("success", Verdict.EXITED, "", 0, False),
    ("nonzero_exit", Verdict.EXITED, "", 3, False),
    ("out_of_memory", Verdict.OUT_OF_MEMORY, attempts.OUT_OF_MEMORY, 137, True),
    ("spot_interruption", Verdict.INTERRUPTED, attempts.INTERRUPTED, 143, True),
    ("termination_notice", Verdict.INTERRUPTED, attempts.INTERRUPTED, 143, True),
    ("infrastructure_health", Verdict.INTERRUPTED, attempts.INTERRUPTED, 137, True),
    ("user_initiated", Verdict.STOPPED, attempts.FAILED, 143, False),
    ("pull_rate_limited", Verdict.PULL_AGAIN, attempts.FAILED_TO_START, None, True),
    ("pull_not_found", Verdict.IMAGE_NOT_PULLABLE, attempts.FAILED_TO_START, None, False),
    ("start_network", Verdict.START_INTERRUPTED, attempts.FAILED_TO_START, None, True),
    ("cannot_create_container", Verdict.CANNOT_START, attempts.FAILED_TO_START, None, False),
]


@pytest.mark.parametrize("name", sorted(p.stem for p in PAYLOADS.glob("*.json")))
def test_every_fixture_is_a_describe_tasks_answer_botocore_can_read(name):
    shape = botocore.session.get_session().get_service_model("ecs").operation_model("DescribeTasks").output_shape
    assert conforms(shape, payload(name), "DescribeTasks") == []


def test_every_fixture_has_its_expected_ending():
    assert sorted(case[0] for case in ENDINGS) == sorted(p.stem for p in PAYLOADS.glob("*.json"))


@pytest.mark.parametrize("name, verdict, outcome, exit_code, retryable", ENDINGS)
def test_what_a_stopped_task_means(name, verdict, outcome, exit_code, retryable):
    task = payload(name)["tasks"][0]
    end = stops.ending(task)
    assert (end.verdict, end.outcome, end.exit_code, end.retryable) == (verdict, outcome, exit_code, retryable)
    assert end.stop_code == task["stopCode"] and end.reason == task["stoppedReason"]
    assert end.container_reason == task["containers"][0].get("reason", "")


def test_what_each_ending_says():
    said = {name: stops.ending(payload(name)["tasks"][0]) for name, *_ in ENDINGS}
    assert said["success"].detail == "" and said["nonzero_exit"].detail == ""
    assert said["out_of_memory"].detail == "OutOfMemoryError: Container killed due to memory usage"
    assert said["spot_interruption"].detail == "Spot: Your Spot Task was interrupted."
    assert said["infrastructure_health"].detail.startswith("InfrastructureHealth: Task stopped because")
    assert said["user_initiated"].detail == "UserInitiated: Task stopped by user"
    assert said["user_initiated"].meaning == stops.STOP_CODES["UserInitiated"].meaning
    assert said["pull_rate_limited"].pull.kind is Pull.TRANSIENT
    assert said["pull_rate_limited"].pull.what == "the registry's pull rate limit"
    assert said["pull_not_found"].pull.kind is Pull.PERMANENT
    for name in ("pull_rate_limited", "pull_not_found", "start_network", "cannot_create_container"):
        assert said[name].detail == said[name].reason
        assert said[name].pull is None or name.startswith("pull")


def test_an_interruption_wins_over_the_containers_out_of_memory_reason():
    task = payload("spot_interruption")["tasks"][0]
    task["containers"][0]["reason"] = "OutOfMemoryError: Container killed due to memory usage"
    assert stops.ending(task).verdict is Verdict.INTERRUPTED


def test_out_of_memory_without_an_exit_code_counts_as_killed():
    task = payload("out_of_memory")["tasks"][0]
    del task["containers"][0]["exitCode"]
    assert stops.ending(task).exit_code == stops.OOM_EXIT_CODE


def test_a_task_stopped_without_an_exit_code_for_no_known_reason():
    task = payload("success")["tasks"][0]
    del task["containers"][0]["exitCode"]
    task["stopCode"] = "SomethingNew"
    end = stops.ending(task)
    assert (end.verdict, end.outcome, end.exit_code, end.retryable) == (Verdict.NO_EXIT_CODE, attempts.FAILED, None, False)
    assert end.detail == "SomethingNew: Essential container in task exited"


def test_an_exit_code_decides_for_a_stop_code_ecs_adds_later():
    task = payload("nonzero_exit")["tasks"][0]
    task["stopCode"] = "SomethingNew"
    assert stops.ending(task).verdict is Verdict.EXITED and stops.ending(task).exit_code == 3


def test_a_task_stopped_because_its_run_was_cancelled_is_cancelled_not_failed():
    """The cancel's StopTask reason comes back as stoppedReason: the attempt is cancelled (the
    task may stop before its driver hears of the cancel). Another user's stop, or one whose
    reason merely mentions a cancel, is a failure as before."""
    task = payload("user_initiated")["tasks"][0]
    task["stoppedReason"] = f"{runs.CANCELLED_STOP_REASON}: cancelled by miniwdl-fargate cancel"
    end = stops.ending(task)
    assert (end.verdict, end.outcome, end.retryable) == (Verdict.STOPPED, attempts.CANCELLED, False)
    task["stoppedReason"] = "tidying up: run cancelled elsewhere"
    assert stops.ending(task).outcome == attempts.FAILED
    task["stopCode"], task["stoppedReason"] = "TaskFailedToStart", f"{runs.CANCELLED_STOP_REASON}: x"
    assert stops.ending(task).outcome != attempts.CANCELLED


@pytest.mark.parametrize("reason, said", [
    ('CannotStartContainerError: Error response from daemon: failed to create shim task: OCI runtime create failed: runc '
     'create failed: unable to start container process: exec: "/bin/sh": stat /bin/sh: no such file or directory: unknown',
     "the image has no /bin/sh"),
    ("CannotStartContainerError: ResourceInitializationError: failed to start: exec /bin/sh: exec format error",
     "built for another CPU than the task's, linux/amd64"),
])
def test_an_image_that_cannot_run_the_command_fails_its_task_saying_why_not_retried(reason, said):
    end = stops.ending({"stopCode": "TaskFailedToStart", "stoppedReason": reason, "containers": [{}]})
    assert end.verdict is stops.Verdict.CANNOT_START and not end.retryable
    assert said in end.detail and end.detail.endswith("ECS: " + reason)


def test_another_start_failure_may_pass():
    end = stops.ending({"stopCode": "TaskFailedToStart", "stoppedReason": "CannotStartContainerError: API error (500)", "containers": [{}]})
    assert end.verdict is stops.Verdict.START_INTERRUPTED and end.retryable


def test_a_start_failure_said_only_by_the_container_is_read_as_one():
    """DescribeTasks often gives the container's "CannotStartContainerError: ..." beside a general
    stoppedReason (aws/containers-roadmap#1133): the image without a shell was retried as a task
    stopped without an exit code."""
    shell = 'CannotStartContainerError: failed to create shim task: exec: "/bin/sh": stat /bin/sh: no such file or directory: unknown'
    task = {"stopCode": "EssentialContainerExited", "stoppedReason": "Essential container in task exited",
            "containers": [{"reason": shell}]}
    end = stops.ending(task)
    assert end.verdict is Verdict.CANNOT_START and not end.retryable and "the image has no /bin/sh" in end.detail
    pull = {"stopCode": "TaskFailedToStart", "stoppedReason": "Task failed to start",
            "containers": [{"reason": "CannotPullContainerError: pull image manifest has been retried 5 time(s): "
                                      "docker.io/library/ubuntu:nope: not found"}]}
    assert stops.ending(pull).verdict is Verdict.IMAGE_NOT_PULLABLE


@pytest.mark.parametrize("code", ["UserInitiated", "ServiceSchedulerInitiated", None])
def test_a_task_stopped_for_ecs_maintenance_is_an_interruption_whatever_its_stop_code(code):
    """AWS tells a task-maintenance stop by its stoppedReason, not its stop code
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-maintenance.html)."""
    task = {"stopCode": code, "containers": [{"exitCode": 143}],
            "stoppedReason": "Task stopped: ECS is performing maintenance on the underlying infrastructure hosting the task"}
    end = stops.ending(task)
    assert end.verdict is Verdict.INTERRUPTED and end.retryable and end.outcome == attempts.INTERRUPTED
