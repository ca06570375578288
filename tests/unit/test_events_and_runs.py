"""Real event payloads (tests/events/) through the handlers' models, and the run naming rules."""

import json
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

from driver_stopped import EcsTaskStateChangeEvent
from miniwdl_fargate import runs
from miniwdl_fargate.pipeline.driver_outcome import outcome

EVENTS = Path(__file__).resolve().parents[1] / "events"


def load(name):
    return json.loads((EVENTS / name).read_text())


def test_s3_object_created_event_parses():
    event = parse(event=load("s3_object_created.json"), model=S3EventNotificationEventBridgeModel)
    assert event.detail.bucket.name == "miniwdl-fargate-runsbucket-example"
    assert event.detail.object.key == "runs/hello/inputs.json"
    assert event.detail.object.etag == "b1946ac92492d2347c6235b4d2611184"


def test_ecs_task_state_change_event_carries_the_run():
    event = parse(event=load("ecs_driver_stopped.json"), model=EcsTaskStateChangeEvent)
    env = event.detail.environment("driver")
    assert env["RUN_ID"] == "hello-1a2b3c4d"
    assert env["SFN_TASK_TOKEN"].startswith("AQCE")
    assert event.detail.containers[0].exitCode == 0
    assert event.detail.version == 5


def test_events_that_are_not_a_stopped_driver_are_ignored():
    detail = parse(event=load("ecs_driver_stopped.json"), model=EcsTaskStateChangeEvent).detail
    assert outcome(detail.model_copy(update={"lastStatus": "RUNNING"}), "driver") is None
    assert outcome(detail, "some-other-container") is None


@pytest.mark.parametrize(
    "key, name",
    [
        ("runs/hello/inputs.json", "hello"),
        ("runs/hello/results/hello-1234abcd/inputs.json", None),
        ("runs/inputs.json", None),
        ("other/hello/inputs.json", None),
        ("runs/hello/inputs.json.bak", None),
    ],
)
def test_only_runs_name_inputs_json_triggers_a_run(key, name):
    match = runs.TRIGGER_RE.match(key)
    assert (match.group("name") if match else None) == name


def test_run_id_is_stable_and_depends_on_every_part():
    a = runs.run_id_for("hello", "runs/hello/inputs.json", "etag1", "wdl1")
    assert a == runs.run_id_for("hello", "runs/hello/inputs.json", "etag1", "wdl1")
    assert a.startswith("hello-") and len(a) == len("hello-") + 8
    assert a != runs.run_id_for("hello", "runs/hello/inputs.json", "etag2", "wdl1")
    assert a != runs.run_id_for("hello", "runs/hello/inputs.json", "etag1", "wdl2")


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "../etc", "..", "-x", "a/b"])
def test_bad_run_names_are_refused(name):
    with pytest.raises(ValueError, match="run name"):
        runs.check_name(name)


def test_started_by_is_the_run_id_within_what_list_tasks_takes():
    """ECS's startedBy (how ListTasks finds a run's tasks): the run id where it fits in 36
    characters, else its start and its random last 9 (``-<8 hex digits>``): runs of one long
    name stay apart; characters ECS does not take become ``_``."""
    assert runs.started_by("hello-0f11e0f1") == "hello-0f11e0f1"
    long_a, long_b = "a" * 64 + "-0123abcd", "a" * 64 + "-89efcdab"
    assert runs.started_by(long_a) == "a" * 27 + "-0123abcd" != runs.started_by(long_b)
    assert all(len(runs.started_by(r)) <= runs.STARTED_BY_CHARS for r in (long_a, "x" * 200))
    assert runs.started_by("run.1-0f11e0f1") == "run_1-0f11e0f1"
