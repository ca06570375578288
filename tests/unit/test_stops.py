"""The tables of stops.py: every ECS stop code classified, image pull errors told apart."""

import botocore.session
import pytest

from miniwdl_fargate.backend import stops
from miniwdl_fargate.backend.stops import Outcome, Pull


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
        ("CannotPullContainerError: no space left on device", Pull.PERMANENT),  # no pattern: as before
    ],
)
def test_pull_errors_are_told_apart(reason, kind):
    assert stops.pull_error(reason).kind is kind


def test_other_start_failures_are_not_pull_errors():
    assert stops.pull_error("ResourceInitializationError: failed to configure ENI") is None
