"""A run's limits: its maximum duration (options.max_run_hours, else the stack's MaxRunHours) and
the driver's heartbeat, as the run record carries them to the state machine."""

import pytest
from pydantic import ValidationError

from miniwdl_fargate import runs
from miniwdl_fargate.pipeline import start
from miniwdl_fargate.pipeline.settings import ApiSettings
from tests.function_env import environment


def settings(**env):
    return ApiSettings.from_env(environment(**env))


def test_the_stacks_default_applies_unless_the_run_says_otherwise():
    stack = settings(MAX_RUN_HOURS="12", DRIVER_HEARTBEAT_SECONDS="600")
    assert stack.run_limits({}) == {"max_run_seconds": 12 * 3600, "heartbeat_seconds": 600}
    assert stack.run_limits({"max_run_hours": 0.5}) == {"max_run_seconds": 1800, "heartbeat_seconds": 600}
    assert stack.run_limits({"max_run_hours": None, "call_cache": False})["max_run_seconds"] == 12 * 3600


def test_a_limit_shorter_than_the_heartbeat_keeps_the_heartbeat_below_it():
    """Step Functions wants HeartbeatSeconds below TimeoutSeconds."""
    assert runs.limits(0.001, 900) == {"max_run_seconds": 4, "heartbeat_seconds": 3}
    assert runs.limits(1e-9, 900) == {"max_run_seconds": 2, "heartbeat_seconds": 1}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0, "must be more than 0 and at most 8700 hours (within the year a Step Functions execution may take), not 0"),
        (-2, "must be more than 0 and at most 8700 hours (within the year a Step Functions execution may take), not -2"),
        (9000, "must be more than 0 and at most 8700 hours (within the year a Step Functions execution may take), not 9000"),
        ("12", "must be a number of hours, e.g. 12 or 0.5, not '12'"),
        (True, "must be a number of hours, e.g. 12 or 0.5, not True"),
        (float("nan"), "must be a number of hours, e.g. 12 or 0.5, not nan"),
    ],
)
def test_a_bad_max_run_hours_says_what_is_wrong_and_where(value, problem):
    with pytest.raises(start.Refused) as failed:
        start.from_request(settings(), "ok", "s3://b/wf/w.wdl", {}, "token", options={"max_run_hours": value})
    assert failed.value.problems == [{"where": "options.max_run_hours", "problem": problem}]


def test_the_api_model_refuses_a_bad_max_run_hours_too():
    import api

    with pytest.raises(ValidationError) as failed:
        api.RunRequest.model_validate({"name": "x", "wdl": "version 1.1", "options": {"max_run_hours": 0}})
    assert failed.value.errors()[0]["loc"] == ("options", "max_run_hours")
    ok = api.RunRequest.model_validate({"name": "x", "wdl": "version 1.1", "options": {"max_run_hours": 2.5}})
    assert ok.options.given() == {"max_run_hours": 2.5}


def test_an_old_run_record_gets_the_default_limits():
    record = runs.RunRecord.model_validate(
        {"run_id": "a-01234567", "name": "a", "bucket": "b", "workflow": "s3://b/wf/w.wdl", "inputs": "s3://b/i.json",
         "results": "s3://b/r/", "submitted_at": "2026-11-22T12:00:00+00:00"}
    )
    assert record.max_run_seconds == runs.DEFAULT_MAX_RUN_HOURS * 3600
    assert record.heartbeat_seconds == runs.DEFAULT_HEARTBEAT_SECONDS
