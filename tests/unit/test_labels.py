"""A run's labels as AWS tags (the driver's, every task's, their EBS volumes' and the run's access
point's) and its cost grouped by task and by label (issue 14, item 5)."""

import json

import pytest

import os

from miniwdl_fargate import config, driver, run_options, runs
from miniwdl_fargate.attempts import SUCCEEDED, Attempt
from miniwdl_fargate.backend.fargate import task_tags, volume_tags
from miniwdl_fargate.driver import DriverRun
from miniwdl_fargate.pipeline import launch
from miniwdl_fargate.report import cost as report_cost
from miniwdl_fargate.report import render
from miniwdl_fargate.report.cost import Prices

RUN_NAME, WORKFLOW = run_options.TAG_RUN_NAME, run_options.TAG_WORKFLOW
T = 1_800_000_000.0


def record(**changes):
    facts = dict(
        run_id="hello-3f2a9c01", name="hello", bucket="runs", workflow="s3://runs/runs/hello/results/x/source/hello.wdl",
        inputs="s3://runs/i.json", results="s3://runs/results/", submitted_at="2026-01-01T00:00:00+00:00",
        options={"labels": {"project": "rnaseq", "team": "lab 42"}}, workflow_name="hello",
    )
    return runs.RunRecord(**{**facts, **changes})


def as_dict(tags):
    keyed = {t["key"]: t["value"] for t in tags}
    assert len(keyed) == len(tags)  # each key once
    return keyed


# -- the tags -------------------------------------------------------------------------------------


def test_the_drivers_tags_are_the_run_its_call_name_workflow_and_labels():
    assert as_dict(launch.driver_tags(record())) == {
        run_options.TAG_RUN: "hello-3f2a9c01", run_options.TAG_CALL: "driver", RUN_NAME: "hello", WORKFLOW: "hello",
        "project": "rnaseq", "team": "lab 42",
    }


def test_a_record_without_the_workflows_name_tags_the_wdl_files_name():
    tags = as_dict(launch.driver_tags(record(workflow_name="", options={})))
    assert tags[WORKFLOW] == "hello" and "project" not in tags


def test_at_most_45_labels_make_at_most_50_tags_on_every_resource():
    labels = {f"label{i}": "v" for i in range(run_options.MAX_LABELS)}
    driver = launch.driver_tags(record(options={"labels": labels}))
    assert len(driver) == run_options.MAX_TAGS_PER_RESOURCE - 1  # (no driver tag: it is the driver)
    tags = run_options.run_tags(labels, "hello", "hello")
    task = task_tags("hello-3f2a9c01", "arn:aws:ecs:us-east-1:1:task/c/d", "call-greet-0", tags)
    assert len(task) == run_options.MAX_TAGS_PER_RESOURCE
    # ECS adds AmazonECSCreated and AmazonECSManaged to a volume, which has at most 50 tags
    assert len(volume_tags(task)) == run_options.MAX_TAGS_PER_RESOURCE - 2


def test_a_tasks_tags_name_its_call_and_carry_the_runs():
    tags = run_options.run_tags({"project": "rnaseq"}, "hello", "hello")
    task = as_dict(task_tags("hello-3f2a9c01", "arn:driver", "call-greet-0", tags))
    assert task == {
        run_options.TAG_RUN: "hello-3f2a9c01", run_options.TAG_DRIVER: "arn:driver", run_options.TAG_CALL: "call-greet-0",
        RUN_NAME: "hello", WORKFLOW: "hello", "project": "rnaseq",
    }
    volume = as_dict(volume_tags(task_tags("hello-3f2a9c01", "arn:driver", "call-greet-0", tags)))
    assert volume == {run_options.TAG_RUN: "hello-3f2a9c01", run_options.TAG_CALL: "call-greet-0", WORKFLOW: "hello",
                      "project": "rnaseq"}


def test_run_tags_leave_out_what_is_not_known():
    assert run_options.run_tags({"a": "b"}) == {"a": "b"}
    assert run_options.run_tags({}, "n", "w" * 300) == {RUN_NAME: "n", WORKFLOW: "w" * 256}


@pytest.mark.parametrize(
    "text, tags",
    [
        ("", {}),
        ('{"project": "rnaseq", "miniwdl-fargate:workflow": "hello"}', {"project": "rnaseq", WORKFLOW: "hello"}),
        ("project=rnaseq, cost center = lab:42/a+b=c@d", {"project": "rnaseq", "cost center": "lab:42/a+b=c@d"}),
        ('["project=x", "empty="]', {"project": "x", "empty": ""}),
    ],
)
def test_the_tags_setting_is_a_json_object_or_key_value_pairs(text, tags):
    assert config.parse_tags(text) == tags


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"aws:team": "x"}', "'aws:team': the key starts with 'aws:'"),
        ("miniwdl-fargate:run=x", "'miniwdl-fargate:run': the key starts with 'miniwdl-fargate:'"),
        ("team=a;b", "'team': the value has ';'"),
        ("team", "'team' is not key=value"),
        ('{"team": 3}', "a JSON object of strings"),
        (json.dumps({f"k{i}": "v" for i in range(46)}), "46 labels; at most 45"),
        ('{"miniwdl-fargate:workflow": "a;b"}', "'miniwdl-fargate:workflow': the value has ';'"),
    ],
)
def test_a_bad_tags_setting_is_refused_naming_the_setting_and_the_tag(monkeypatch, text, problem):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__TAGS", text)
    with pytest.raises(ValueError) as caught:
        config.tags(config.loader())
    assert "invalid [aws_fargate] tags (or MINIWDL__AWS_FARGATE__TAGS)" in str(caught.value)
    assert problem in str(caught.value)


@pytest.fixture(autouse=True)
def no_stack_limits_kept(monkeypatch):
    """The driver keeps the stack's limits as its process first finds them: each test starts with
    none kept, and leaves none for the next."""
    monkeypatch.setattr(driver, "_STACK_LIMITS", {})


def test_the_driver_gives_the_backend_the_runs_labels_name_and_workflow(tmp_path):
    run = DriverRun("hello-3f2a9c01", "s3://runs/w.wdl", "s3://runs/i.json", "s3://runs/results/", "/tmp/x")
    run.record = record().model_dump()
    assert run.tags() == {RUN_NAME: "hello", WORKFLOW: "hello", "project": "rnaseq", "team": "lab 42"}
    # (in the run's configuration file, which miniwdl and the backend read)
    cfg = driver.run_cfg(str(tmp_path), "", str(tmp_path), {}, own=driver.run_own_settings(run))
    assert config.tags(config.loader(cfg)) == run.tags()
    assert config.run_id(config.loader(cfg)) == "hello-3f2a9c01"
    hand = DriverRun("r-1", "s3://runs/w.wdl", "s3://runs/i.json", "s3://runs/results/", "/tmp/x", options={})
    hand.record = {}  # a driver run by hand: no record, no tags
    assert hand.tags() == {}


def test_the_runs_own_settings_are_not_overridden_by_variables_left_in_the_drivers_environment(monkeypatch, tmp_path):
    """miniwdl takes a variable over a configuration file: a MINIWDL__AWS_FARGATE__RUN_ID or
    __TAGS in the driver's environment (an operator's, a test's) would give every task of the run
    another run's id or tags. The driver takes them out as it sets the run up."""
    stray = {"MINIWDL__AWS_FARGATE__RUN_ID": "another-0badcafe", "MINIWDL__AWS_FARGATE__TAGS": '{"team": "other"}'}
    monkeypatch.setattr(os, "environ", {**os.environ, **stray})
    monkeypatch.chdir(tmp_path)  # (set_up goes into the run's folder)
    run = DriverRun("hello-3f2a9c01", "s3://runs/w.wdl", "s3://runs/i.json", "s3://runs/results/", str(tmp_path / "run"))
    run.record = record().model_dump()
    driver.set_up(run)
    assert not set(stray) & set(os.environ)
    cfg = config.loader(driver.run_cfg(run.workdir, "", str(tmp_path), {}, own=driver.run_own_settings(run)))
    assert (config.run_id(cfg), config.tags(cfg)) == ("hello-3f2a9c01", run.tags())


# -- cost by task and by label --------------------------------------------------------------------


def attempt(call, number, seconds, cpu=1024):
    return Attempt(call=call, attempt=number, cpu=cpu, memory=2048, capacity="FARGATE", queued=T, launched=T,
                   running=T + 1, stopped=T + seconds, billing_start=T, outcome=SUCCEEDED, exit_code=0)


@pytest.mark.parametrize(
    "call, name",
    [("call-greet", "greet"), ("call-greet-2", "greet"), ("call-greet-2-0", "greet"),
     ("call-greet-0-AlyssaPHacker", "greet"), ("call-pair-1-left_a-0-x1", "pair"), ("driver", "driver"), ("odd", "odd"),
     ("call-greet-x", "call-greet-x")],
)
def test_a_calls_task_name(call, name):
    assert report_cost.task_name(call) == name


def test_cost_by_task_adds_up_a_scatters_calls_and_their_retries():
    rows = [attempt("driver", 1, 300), attempt("call-greet-0", 1, 100), attempt("call-greet-1", 1, 120),
            attempt("call-greet-1", 2, 60, cpu=2048), attempt("call-gather", 1, 30)]
    cost = report_cost.estimate_cost(rows, Prices(), now=T + 400)
    groups = cost["by_task"]
    assert list(groups) == ["driver", "gather", "greet"]
    assert groups["greet"]["attempts"] == 3
    assert groups["greet"]["billed_seconds"] == 100 + 120 + 60
    assert groups["gather"]["billed_seconds"] == 60  # (the one-minute minimum)
    by_row = {}
    for row in cost["attempts"]:
        by_row.setdefault(report_cost.task_name(row["call"]), []).append(row["usd"])
    for name, group in groups.items():
        assert group["usd"] == pytest.approx(sum(by_row[name]), abs=1e-6)
    assert sum(g["usd"] for g in groups.values()) == pytest.approx(cost["total_usd"], abs=1e-5)


def test_a_sub_workflows_calls_are_rows_of_their_own_under_their_directory():
    """Three calls of one task (the workflow's, two of a sub-workflow's scatter) were three rows
    named call-say_hi, so the report's tooltips priced one by another's row."""
    run_dir = "/mnt/efs/runs/r-1/20261201_031727_outer"
    rows = []
    for path, cpu in (("call-say_hi", 1024), ("call-inner-0/call-say_hi", 4096), ("call-inner-1/call-say_hi", 1024)):
        made = attempt("call-say_hi", 1, 100, cpu=cpu)
        made.path = f"{run_dir}/{path}"
        rows.append(made)
    cost = report_cost.estimate_cost(rows, Prices(), now=T + 400)
    assert [row["call"] for row in cost["attempts"]] == ["call-say_hi", "call-inner-0/call-say_hi", "call-inner-1/call-say_hi"]
    assert cost["by_task"]["say_hi"]["attempts"] == 3
    assert cost["attempts"][1]["usd"] > cost["attempts"][2]["usd"]
    page = render.timeline_svg(rows, now=T + 400, costs=cost)
    assert 'data-call="call-inner-0/call-say_hi"' in page


def test_cost_by_label_is_the_runs_cost_under_each_label_and_adds_up_over_runs():
    assert report_cost.by_label({"project": "x", "team": "a"}, 1.25) == {"project": {"x": 1.25}, "team": {"a": 1.25}}
    assert report_cost.by_label({}, 1.25) == {}
    runs_ = [
        {"by_label": {"project": {"x": 1.25}, "team": {"a": 1.25}}},
        {"by_label": {"project": {"x": 0.5}}},
        {"by_label": {"project": {"y": 2.0}}},
        {},  # a run without labels (or a cost.json from before them)
    ]
    assert report_cost.sum_by_label(runs_) == {"project": {"x": 1.75, "y": 2.0}, "team": {"a": 1.25}}


def test_the_page_shows_the_cost_by_task_and_by_label():
    rows = [attempt("call-greet-0", 1, 100), attempt("call-greet-1", 1, 100), attempt("call-gather", 1, 100)]
    cost = report_cost.estimate_cost(rows, Prices(), now=T + 200)
    cost["by_label"] = report_cost.by_label({"project": "<x>"}, cost["total_usd"])
    page = render.report_html("<svg/>", cost, "run r-1", [("status", "SUCCEEDED")])
    assert page.count('<tr class="task">') == 2
    assert f'<tr class="task"><td>greet</td><td>2</td><td>200</td><td>{cost["by_task"]["greet"]["usd"]:.6f}</td></tr>' in page
    assert f'<tr class="label"><td>project</td><td>&lt;x&gt;</td><td>{cost["total_usd"]:.6f}</td></tr>' in page
    cost["by_label"] = {}
    assert '<tr class="label">' not in render.report_html("<svg/>", cost, "run r-1", [])
