"""A run's options: what the submitter may set for one run.

They come from the API body's ``options``, from an S3 drop's sidecar ``runs/<name>/options.json``
(read when its ``inputs.json`` lands), or from ``miniwdl-fargate submit --label K=V --option K=V``
(which writes that sidecar). Every way is checked by the one model here, so a bad option gets the
same answer whichever way it came: a problem naming where it is (``options.labels.team``) and what
is wrong, and no run.

What is not set falls back to the stack's default for it (template parameters; in the driver the
``[aws_fargate]`` settings), then to none.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import runs

#: the sidecar next to ``inputs.json`` that carries an S3 drop's options
SIDECAR_NAME = runs.OPTIONS_NAME
#: the largest sidecar read (a run's options are a few hundred bytes)
SIDECAR_MAX_BYTES = 64 * 1024

# -- labels: AWS tags on the driver and every task of the run ---------------------------------------
# Tag rules (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-using-tags.html,
# "Tag restrictions"; https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html): at most 50
# tags per resource; a key is 1-128 characters, a value 0-256; letters, numbers, spaces and
# _ . : / = + - @; keys are case-sensitive; the prefix aws: (any case) is reserved for AWS.
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
TAG_PUNCTUATION = frozenset(" _.:/=+-@")
MAX_TAGS_PER_RESOURCE = 50
#: tag keys the product sets itself on the driver and every ECS task of a run (labels may not use the
#: prefix; sweep.py finds a run's tasks, and orphans, by the first two)
TAG_PREFIX = "miniwdl-fargate:"
TAG_RUN = TAG_PREFIX + "run"  # the run id
TAG_DRIVER = TAG_PREFIX + "driver"  # the ECS task ARN of the driver that launched the task
TAG_CALL = TAG_PREFIX + "call"  # the WDL call (e.g. call-greet-0); the driver's own task: "driver"
TAG_RUN_NAME = TAG_PREFIX + "run-name"
TAG_WORKFLOW = TAG_PREFIX + "workflow"  # the workflow's name
PRODUCT_TAGS = (TAG_RUN, TAG_DRIVER, TAG_CALL, TAG_RUN_NAME, TAG_WORKFLOW)
#: the most labels a run may have: the per-resource limit less the product's own tags
MAX_LABELS = MAX_TAGS_PER_RESOURCE - len(PRODUCT_TAGS)


def tag_text_problem(text: str, what: str, longest: int, may_be_empty: bool) -> str | None:
    """What makes ``text`` not a valid tag key or value, or None."""
    if not isinstance(text, str):
        return f"{what} must be a string, not {type(text).__name__}"
    if not text and not may_be_empty:
        return f"{what} must not be empty"
    if len(text) > longest:
        return f"{what} is {len(text)} characters; AWS tags allow at most {longest}"
    bad = sorted({c for c in text if not (c.isalnum() or c in TAG_PUNCTUATION)})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        return f"{what} has {shown}: AWS tags allow letters, numbers, spaces and _ . : / = + - @"
    return None


def label_problems(labels: dict[str, str]) -> list[tuple[str, str]]:
    """Each (label key, problem) of ``labels`` as AWS tags; empty when all are valid."""
    problems = []
    if len(labels) > MAX_LABELS:
        problems.append(("", f"{len(labels)} labels; at most {MAX_LABELS} (ECS allows {MAX_TAGS_PER_RESOURCE} tags per "
                             f"task and the run's own tags take {len(PRODUCT_TAGS)})"))
    for key, value in labels.items():
        problem = tag_text_problem(key, "the key", TAG_KEY_MAX, may_be_empty=False)
        if problem is None and key.lower().startswith("aws:"):
            problem = "the key starts with 'aws:', which AWS reserves for its own tags"
        if problem is None and key.startswith(TAG_PREFIX):
            problem = f"the key starts with {TAG_PREFIX!r}, which the run's own tags use"
        if problem is None:
            problem = tag_text_problem(value, "the value", TAG_VALUE_MAX, may_be_empty=True)
        if problem:
            problems.append((key, problem))
    return problems


#: the product's tags a run's ``[aws_fargate] tags`` may carry beside its labels (the driver sets
#: them; the backend adds the run id, its driver and each task's call itself)
SETTING_PRODUCT_TAGS = (TAG_RUN_NAME, TAG_WORKFLOW)


def run_tags(labels: dict[str, str], run_name: str = "", workflow: str = "") -> dict[str, str]:
    """The tags every resource of a run carries besides the run id, its driver and its call: the
    run's name and workflow (where known; cut to a tag value's length) and its labels."""
    tags = {TAG_RUN_NAME: run_name[:TAG_VALUE_MAX], TAG_WORKFLOW: workflow[:TAG_VALUE_MAX]}
    return {**{k: v for k, v in tags.items() if v}, **labels}


def tag_setting_problems(tags: dict[str, str]) -> list[tuple[str, str]]:
    """Each (key, problem) of ``[aws_fargate] tags``: labels (``label_problems``), and the run's name
    and workflow (``SETTING_PRODUCT_TAGS``), which only need to be valid tag text."""
    labels = {k: v for k, v in tags.items() if k not in SETTING_PRODUCT_TAGS}
    problems = label_problems(labels)
    for key in SETTING_PRODUCT_TAGS:
        if key in tags:
            problem = tag_text_problem(tags[key], "the value", TAG_VALUE_MAX, may_be_empty=True)
            if problem:
                problems.append((key, problem))
    return problems


def ecs_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    """``tags`` as ECS (and EBS through ECS) take them: ``[{"key": ..., "value": ...}]``."""
    return [{"key": key, "value": value} for key, value in tags.items()]


# -- the options ------------------------------------------------------------------------------------

CallCacheMode = Union[bool, Literal["read", "write"]]


#: a WDL identifier (a task's name): https://github.com/openwdl/wdl/blob/wdl-1.1/SPEC.md#whitespace-strings-identifiers-constants
WDL_IDENTIFIER = r"^[A-Za-z][A-Za-z0-9_]*$"


class RunOptions(BaseModel):
    """One run's options; every field optional (None: the stack's default)."""

    model_config = ConfigDict(extra="forbid")

    call_cache: CallCacheMode | None = Field(
        default=None,
        description="the call cache for this run: true (reuse earlier calls' results and keep this run's), "
        "false (neither), \"read\" (reuse only) or \"write\" (keep only); default: the stack's CallCache",
    )
    max_run_hours: float | None = Field(
        default=None, gt=0, le=runs.MAX_RUN_HOURS_LIMIT, allow_inf_nan=False,
        description="the run's maximum duration in hours (default: the stack's MaxRunHours); a run still going then "
        "is stopped with its tasks and ends FAILED, its error.json saying it timed out",
    )
    max_cost_usd: float | None = Field(
        default=None, gt=0, le=1_000_000, allow_inf_nan=False,
        description="the run's budget in US dollars, as the run report estimates cost (default: the stack's "
        "MaxRunCostUsd); a run that reaches it stops launching, stops its tasks and ends FAILED (BudgetExceeded)",
    )
    max_concurrent_tasks: int | None = Field(
        default=None, ge=1, le=100_000,
        description="the most tasks of the run running at once (default: the stack's MaxRunConcurrentTasks); "
        "more wait their turn",
    )
    max_vcpus: float | None = Field(
        default=None, gt=0, le=100_000, allow_inf_nan=False,
        description="the most vCPUs the run's running tasks may hold at once (default: the stack's MaxRunVCpus); "
        "more wait their turn",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description=f"the run's labels: each becomes an AWS tag of its driver and every task (at most {MAX_LABELS}; "
        "AWS tag rules), for cost allocation; cost.json groups cost by them",
    )
    task: str | None = Field(
        default=None, pattern=WDL_IDENTIFIER, max_length=255,
        description="run this task of the WDL document rather than its workflow, as `miniwdl run --task` does (a document "
        "of several tasks and no workflow needs it); the inputs are the task's",
    )
    quant_check: bool | None = Field(
        default=None,
        description="false: relax the type checking of optional (?) and nonempty (+) type quantifiers, as `miniwdl run "
        "--no-quant-check` does, for older WDL (draft-2 workflows passing a String? where a String goes); default: true",
    )

    @field_validator("call_cache", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if value is None or value is True or value is False or value in ("read", "write"):
            return value
        raise ValueError(f'must be true, false, "read" or "write", not {value!r}')

    @field_validator("labels")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        problems = label_problems(value)
        if problems:
            raise ValueError("; ".join(f"{key!r}: {problem}" if key else problem for key, problem in problems))
        return value

    def given(self) -> dict[str, Any]:
        """The options the submitter set (what the run record keeps)."""
        return self.model_dump(exclude_none=True, exclude_defaults=True)

    @property
    def cache_get(self) -> bool | None:
        """Whether this run may reuse earlier calls (None: the stack's default)."""
        return None if self.call_cache is None else self.call_cache in (True, "read")

    @property
    def cache_put(self) -> bool | None:
        """Whether this run's calls are kept for later runs (None: the stack's default)."""
        return None if self.call_cache is None else self.call_cache in (True, "write")


class OptionsProblems(ValueError):
    """Options that are not valid; ``problems`` each say where and what."""

    def __init__(self, problems: list[dict[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p['where']}: {p['problem']}" for p in problems))


def parse(raw: Any, where: str = "options") -> RunOptions:
    """``raw`` (a JSON object) as RunOptions; OptionsProblems naming each bad field under ``where``."""
    if raw is None:
        return RunOptions()
    if not isinstance(raw, dict):
        raise OptionsProblems([{"where": where, "problem": f"must be a JSON object, not {type(raw).__name__}"}])
    try:
        return RunOptions.model_validate(raw, strict=False)
    except ValidationError as exn:
        problems = []
        for error in exn.errors():
            loc = ".".join(str(part) for part in error.get("loc", ()))
            problem = error.get("msg", "invalid")
            if error.get("type") == "extra_forbidden":
                problem = f"unknown option; the options are {', '.join(RunOptions.model_fields)}"
            elif problem.startswith("Value error, "):
                problem = problem[len("Value error, "):]
            problems.append({"where": f"{where}.{loc}" if loc else where, "problem": problem})
        raise OptionsProblems(problems) from None


def check_quant_of(options: dict[str, Any] | None) -> bool:
    """Whether a run's options (as its record keeps them) keep miniwdl's quantifier checks
    (``quant_check``: on unless set false)."""
    return (options or {}).get("quant_check") is not False


def task_of(options: dict[str, Any] | None) -> str | None:
    """The task a run's options (as its record keeps them, checked) name to run, or None: the
    document's workflow (or its only task)."""
    return (options or {}).get("task") or None


def parse_sidecar(body: bytes, where: str) -> RunOptions:
    """An ``options.json`` sidecar's bytes as RunOptions; OptionsProblems saying what is wrong."""
    if len(body) > SIDECAR_MAX_BYTES:
        raise OptionsProblems([{"where": where, "problem": f"{len(body)} bytes; at most {SIDECAR_MAX_BYTES}"}])
    try:
        raw = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exn:
        raise OptionsProblems([{"where": where, "problem": f"not valid JSON: {exn}"}]) from None
    return parse(raw, where)


def parse_assignments(
    labels: list[str], options: list[str], task: str | None = None, no_quant_check: bool = False
) -> RunOptions:
    """``--label K=V`` and ``--option K=V`` command-line arguments as RunOptions (an option's value is
    read as JSON when it is JSON, else as a string: ``--option call_cache=read``), ``--task`` and
    ``--no-quant-check``."""
    raw: dict[str, Any] = {"task": task} if task else {}
    if no_quant_check:
        raw["quant_check"] = False
    problems = []
    for text in labels:
        key, sep, value = text.partition("=")
        if not sep:
            problems.append({"where": f"--label {text}", "problem": "must be KEY=VALUE"})
        raw.setdefault("labels", {})[key] = value
    for text in options:
        key, sep, value = text.partition("=")
        if not sep or not key:
            problems.append({"where": f"--option {text}", "problem": "must be NAME=VALUE, e.g. max_cost_usd=20"})
            continue
        try:
            raw[key] = json.loads(value)
        except json.JSONDecodeError:
            raw[key] = value
        if key == "task" and task and raw[key] != task:
            problems.append({"where": f"--option {text}", "problem": f"--task names another task ({task})"})
        if key == "quant_check" and no_quant_check and raw[key] is not False:
            problems.append({"where": f"--option {text}", "problem": "--no-quant-check says otherwise"})
    if problems:
        raise OptionsProblems(problems)
    return parse(raw, "options")
