"""A run's options (run_options): one model for the API body, the S3 drop's sidecar and the CLI."""

import json

import pytest

from miniwdl_fargate import run_options
from miniwdl_fargate.run_options import OptionsProblems, RunOptions


def test_nothing_given_is_every_default():
    options = run_options.parse({})
    assert options.given() == {}
    assert (options.cache_get, options.cache_put) == (None, None)


@pytest.mark.parametrize("mode, get, put", [(True, True, True), (False, False, False), ("read", True, False), ("write", False, True)])
def test_call_cache_modes(mode, get, put):
    options = run_options.parse({"call_cache": mode})
    assert (options.cache_get, options.cache_put) == (get, put)
    assert options.given() == {"call_cache": mode}


def test_every_option_round_trips_through_the_record():
    raw = {"call_cache": "read", "max_run_hours": 2.5, "max_cost_usd": 20, "max_concurrent_tasks": 8, "max_vcpus": 64,
           "task": "count_lines", "labels": {"project": "rnaseq-2026", "cost center": "lab:42/a+b=c@d", "empty": ""}}
    options = run_options.parse(raw)
    assert run_options.parse(json.loads(json.dumps(options.given()))) == options


@pytest.mark.parametrize(
    "raw, where, says",
    [
        ({"max_cost_usd": -1}, "options.max_cost_usd", "greater than 0"),
        ({"max_cost_usd": float("inf")}, "options.max_cost_usd", ""),
        ({"max_concurrent_tasks": 0}, "options.max_concurrent_tasks", "greater than or equal to 1"),
        ({"max_vcpus": "lots"}, "options.max_vcpus", "number"),
        ({"max_run_hours": 0}, "options.max_run_hours", "greater than 0"),
        ({"call_cache": "sometimes"}, "options.call_cache", "must be true, false, \"read\" or \"write\", not 'sometimes'"),
        ({"call_cache": "true"}, "options.call_cache", "not 'true'"),
        ({"budget": 3}, "options.budget", "unknown option; the options are call_cache, max_run_hours"),
        ({"labels": {"aws:team": "x"}}, "options.labels", "'aws:team': the key starts with 'aws:'"),
        ({"labels": {"AWS:team": "x"}}, "options.labels", "reserves"),
        ({"labels": {"miniwdl-fargate:run": "x"}}, "options.labels", "the run's own tags use"),
        ({"labels": {"": "x"}}, "options.labels", "the key must not be empty"),
        ({"labels": {"team": "a;b"}}, "options.labels", "the value has ';'"),
        ({"labels": {"k" * 129: "x"}}, "options.labels", "129 characters; AWS tags allow at most 128"),
        ({"labels": {"k": "v" * 257}}, "options.labels", "257 characters; AWS tags allow at most 256"),
        ({"labels": {f"k{i}": "v" for i in range(run_options.MAX_LABELS + 1)}}, "options.labels", "at most 45"),
        ({"labels": {"team": 3}}, "options.labels.team", "string"),
        ({"labels": ["team=x"]}, "options.labels", "dictionary"),
        ({"task": "count-lines"}, "options.task", "should match pattern"),
        ({"task": 3}, "options.task", "string"),
    ],
)
def test_a_bad_option_is_named_with_what_is_wrong(raw, where, says):
    with pytest.raises(OptionsProblems) as caught:
        run_options.parse(raw)
    [problem] = caught.value.problems
    assert problem["where"] == where and says in problem["problem"], problem


def test_every_bad_option_is_named_at_once():
    with pytest.raises(OptionsProblems) as caught:
        run_options.parse({"max_cost_usd": 0, "max_vcpus": -2, "labels": {"aws:x": "y"}})
    assert [p["where"] for p in caught.value.problems] == ["options.max_cost_usd", "options.max_vcpus", "options.labels"]


def test_unicode_letters_and_numbers_are_valid_tag_text():
    assert run_options.parse({"labels": {"Projekt": "Größe ٣"}}).labels == {"Projekt": "Größe ٣"}


def test_options_that_are_not_an_object():
    with pytest.raises(OptionsProblems, match="options: must be a JSON object, not list"):
        run_options.parse([1])


@pytest.mark.parametrize(
    "body, says",
    [(b"{oops", "not valid JSON"), (b"[]", "must be a JSON object"), (b"\xff", "not valid JSON"),
     (b" " * (run_options.SIDECAR_MAX_BYTES + 1), "bytes; at most")],
)
def test_a_bad_sidecar_names_itself(body, says):
    with pytest.raises(OptionsProblems) as caught:
        run_options.parse_sidecar(body, "s3://runs/runs/x/options.json")
    assert caught.value.problems[0]["where"] == "s3://runs/runs/x/options.json" and says in caught.value.problems[0]["problem"]


def test_a_sidecar_with_a_byte_order_mark_is_read():
    assert run_options.parse_sidecar(b'\xef\xbb\xbf{"labels": {"a": "b"}}', "x").labels == {"a": "b"}


def test_command_line_assignments():
    options = run_options.parse_assignments(
        ["project=rnaseq", "note=a=b"], ["call_cache=read", "max_cost_usd=12.5", "max_concurrent_tasks=4"]
    )
    assert options == RunOptions(call_cache="read", max_cost_usd=12.5, max_concurrent_tasks=4,
                                 labels={"project": "rnaseq", "note": "a=b"})


@pytest.mark.parametrize(
    "labels, options, where",
    [(["project"], [], "--label project"), ([], ["max_cost_usd"], "--option max_cost_usd"),
     ([], ["max_cost_usd=-3"], "options.max_cost_usd"), (["aws:x=1"], [], "options.labels")],
)
def test_bad_command_line_assignments(labels, options, where):
    with pytest.raises(OptionsProblems) as caught:
        run_options.parse_assignments(labels, options)
    assert caught.value.problems[0]["where"] == where


def test_the_task_to_run_from_the_command_line():
    """``--task NAME`` (as `miniwdl run --task`) is the option ``task``; ``--option task=`` too,
    but not naming another task."""
    assert run_options.parse_assignments([], [], "shout").given() == {"task": "shout"}
    assert run_options.parse_assignments([], ["task=shout"], "shout").task == "shout"
    assert run_options.task_of(run_options.parse_assignments([], ["task=shout"]).given()) == "shout"
    assert run_options.task_of({}) is None
    with pytest.raises(OptionsProblems, match=r"^--option task=whisper: --task names another task \(shout\)$"):
        run_options.parse_assignments([], ["task=whisper"], "shout")


# -- a resumed run's options (pipeline/resume.py) -------------------------------------------------


@pytest.mark.parametrize(
    "original, stack, resumed",
    [
        (None, "true", True),  # the stack's default: reads and keeps, as a cached run does by default
        (None, "write", True),
        (None, "false", "read"),  # a stack that keeps no calls: nor does a run resumed there
        (None, "read", "read"),
        (True, "false", True),  # the run's own option wins over the stack's
        ("write", "true", True),  # it kept its calls: the resumed run reads them
        ("read", "true", "read"),  # it asked not to keep its calls: neither does the resumed run
        (False, "true", "read"),
    ],
)
def test_a_resumed_run_reads_the_cache_and_keeps_calls_as_the_original_did(original, stack, resumed):
    from miniwdl_fargate.pipeline.resume import resumed_options

    given = {} if original is None else {"call_cache": original}
    assert resumed_options({**given, "max_vcpus": 4}, {}, stack) == {"call_cache": resumed, "max_vcpus": 4}


def test_options_given_to_resume_override_the_original_labels_one_by_one():
    from miniwdl_fargate.pipeline.resume import resumed_options

    original = {"call_cache": "write", "max_cost_usd": 5, "labels": {"team": "a", "project": "p"}}
    given = {"call_cache": False, "max_cost_usd": 8, "labels": {"team": "b"}}
    assert resumed_options(original, given, "true") == {
        "call_cache": False, "max_cost_usd": 8, "labels": {"team": "b", "project": "p"},
    }
    with pytest.raises(run_options.OptionsProblems) as info:
        resumed_options(original, {"labels": {f"k{i}": "v" for i in range(run_options.MAX_LABELS)}}, "true")
    assert [p["where"] for p in info.value.problems] == ["options.labels"]


def test_quant_check_is_a_boolean_option_off_only_when_set_false():
    """`miniwdl run --no-quant-check`: `submit --no-quant-check`, `--option quant_check=false`, or
    options.quant_check false; anything but a boolean refused, saying where."""
    assert run_options.parse_assignments([], [], no_quant_check=True).given() == {"quant_check": False}
    assert run_options.parse_assignments([], ["quant_check=false"]).given() == {"quant_check": False}
    assert run_options.check_quant_of({"quant_check": False}) is False
    assert run_options.check_quant_of({}) is True and run_options.check_quant_of(None) is True
    with pytest.raises(run_options.OptionsProblems) as info:
        run_options.parse({"quant_check": "maybe"}, "options")
    assert [p["where"] for p in info.value.problems] == ["options.quant_check"]
    with pytest.raises(run_options.OptionsProblems, match="--no-quant-check says otherwise"):
        run_options.parse_assignments([], ["quant_check=true"], no_quant_check=True)
