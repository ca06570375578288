"""Settings of the aws_fargate backend, read from miniwdl's configuration.

Defaults live in one place, the packaged ``aws_fargate.cfg`` (which doubles as the user
documentation); miniwdl's own loader supplies the user's cfg files and ``MINIWDL__AWS_FARGATE__*``
environment variables on top. Every ``[aws_fargate]`` option is read here, through ``option``:
the backend's settings (``FargateSettings``), the run id and tags the driver gives the backend
(``run_id``, ``tags``), and what the driver needs outside miniwdl (``loader``, ``backend_cluster``,
and the stack's own values apart from any file's, ``environment_value``), so a
miniwdl.cfg file configures everything environment variables do (``efs_link_limit`` and
``link_spares_dir``, which both backends use, too: ``backend.links.LinkPolicy.from_cfg``).
"""

from __future__ import annotations

import configparser
import functools
import json
import logging
import math
import os
import re
from dataclasses import dataclass, fields
from importlib import resources

from WDL.runtime import config as wdl_config

from . import images, run_options, sizes
from .limits import RunLimits
from .report.cost import Prices

SECTION = "aws_fargate"


RUN_CFG = "miniwdl.cfg"  # in a workflow bundle (the WDL's folder): that run's miniwdl configuration


class InvalidConfig(ValueError):
    """A miniwdl configuration file miniwdl could not read: ``where`` it is and ``problem``."""

    def __init__(self, where: str, problem: str) -> None:
        self.where, self.problem = where, problem
        super().__init__(f"{where}: not a valid miniwdl configuration file: {problem}")


class InvalidSetting(ValueError):
    """An ``[aws_fargate]`` setting (``name``) whose value ``option`` cannot take; the message says
    which, where it may be set, the value and what is wrong with it."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


#: what a run's own miniwdl.cfg (its workflow folder's, read by the pipeline's driver) may not set:
#: by section, its options (None: the whole section). The stack's: where tasks run and with what
#: network, roles and file system; what the runs share (the call cache's store and key, the spare
#: links, the account's request rates, the budget's prices); and what would let a run read another's
#: files (miniwdl's allow_any_input and root: inputs by any path of the file system every run is on)
#: or keep a result under a key that does not say how it was made (command_shell is in no key).
RUN_CFG_REFUSED: dict[str, frozenset[str] | None] = {
    SECTION: frozenset({
        "cluster", "run_id", "tags", "call_cache_uri", "subnets", "efs_security_group", "security_groups",
        "assign_public_ip", "efs_id", "efs_mountpoint", "efs_access_point", "execution_role", "task_role",
        "log_group", "task_definition_prefix", "poll_interval", "describe_budget", "launch_rate", "launch_burst",
        "launch_retry_delay", "max_tasks_per_run", "budget_check_seconds", "provision", "prices", "efs_link_limit",
        "link_spares_dir",
        "keep_unused_cache_days", "status_interval", "managed_instances_capacity_provider",
        "managed_instances_spot_capacity_provider", "managed_instances_gpu_capacity_provider",
        "managed_instances_gpu_spot_capacity_provider", "managed_instances_max_cpu",
        "managed_instances_max_memory_gib", "managed_instances_max_gpus", "ebs_volume_role", "image_cache",
    }),
    "file_io": frozenset({"allow_any_input", "root"}),
    "call_cache": frozenset({"dir", "backend"}),
    "download_cache": frozenset({"dir"}),
    "scheduler": frozenset({"container_backend"}),
    "task_runtime": frozenset({"command_shell"}),
    "plugins": None,
}


def refused_in_a_run(parser: configparser.ConfigParser) -> list[str]:
    """The options of a run's own miniwdl.cfg it may not set (``RUN_CFG_REFUSED``), each said."""
    found = [  # ([DEFAULT]'s options reach every section of the merged file: the refused ones too)
        f"[DEFAULT] {option}: a run's miniwdl.cfg may not set options for every section" for option in parser.defaults()
    ]
    for section in parser.sections():
        refused = RUN_CFG_REFUSED.get(section, frozenset())
        for option in parser.options(section):
            if option in parser.defaults():
                continue  # (said above)
            if refused is None or option in refused:
                found.append(f"[{section}] {option}: a run's miniwdl.cfg may not set it (the stack's, or the driver's)")
    return found


def cfg_problem(text: str, where: str, run: bool = False) -> str | None:
    """What miniwdl would find wrong reading this configuration text (an INI file, read by
    configparser with its default interpolation: a lone '%' is an error), or what the backend
    would find wrong in an ``[aws_fargate]`` value (``option``: it reads each one only when a
    task needs it, by then mid-run); with ``run`` (a run's own miniwdl.cfg), also what it may not
    set (``RUN_CFG_REFUSED``); None if nothing."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text, source=where)
        for section in parser.sections():
            for option in parser.options(section):
                parser.get(section, option)  # interpolation errors surface only here
    except configparser.Error as exn:
        return " ".join(str(exn).split())
    problems = refused_in_a_run(parser) if run else []
    if parser.has_section(SECTION):
        for name in parser.options(SECTION):
            # as miniwdl's Loader.get reads it: quotes around it stripped, then $VARs and ~
            # expanded, which only the machine that runs it can do (its value is checked there)
            value = wdl_config._strip(parser.get(SECTION, name))
            if "$" in value or value.startswith("~"):
                continue
            try:
                _PARSERS.get(name, str.strip)(value)
            except (ValueError, TypeError) as exn:
                problems.append(f"[{SECTION}] {name} = {value.strip()!r}: {exn}")
            except OSError:  # (a file it names, e.g. prices: read where the run reads it, maybe not here)
                pass
    return "; ".join(problems) or None


def check_cfg_file(path: str, where: str | None = None, run: bool = False) -> None:
    """InvalidConfig if the file at ``path`` (named ``where`` in the message) is not one miniwdl
    can read (``run``: a run's own, which may not set everything: ``cfg_problem``)."""
    where = where or path
    try:
        with open(path, encoding="utf-8") as infile:
            text = infile.read()
    except (OSError, UnicodeDecodeError) as exn:
        raise InvalidConfig(where, str(exn)) from None
    problem = cfg_problem(text, where, run)
    if problem:
        raise InvalidConfig(where, problem)


def default_cfg_text() -> str:
    return resources.files(__package__).joinpath("aws_fargate.cfg").read_text()


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read_string(default_cfg_text())
    return dict(parser[SECTION])


def parse_list(value: str) -> list[str]:
    value = value.strip()
    if not value:
        return []
    if value.startswith("["):
        items = json.loads(value)
        if not isinstance(items, list):
            raise ValueError(f"expected a JSON list, got {value!r}")
        return [str(v).strip() for v in items if str(v).strip()]
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_tags(value: str) -> dict[str, str]:
    """``[aws_fargate] tags``: a JSON object, or comma-separated ``key=value`` pairs (a comma is no
    tag character, so never part of a key or value), checked by AWS's tag rules
    (``run_options.tag_setting_problems``)."""
    value = value.strip()
    if value.startswith("{"):
        tags = json.loads(value)
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise ValueError(f"expected a JSON object of strings, got {value!r}")
    else:
        tags = {}
        for pair in parse_list(value):
            key, sep, text = pair.partition("=")
            if not sep:
                raise ValueError(f"{pair!r} is not key=value")
            tags[key.strip()] = text.strip()
    problems = run_options.tag_setting_problems(tags)
    if problems:
        raise ValueError("; ".join(f"{key!r}: {problem}" if key else problem for key, problem in problems))
    return tags


def parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "t", "yes", "y", "on", "enabled"):
        return True
    if v in ("0", "false", "f", "no", "n", "off", "disabled", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


@dataclass
class FargateSettings:
    cluster: str
    subnets: list[str]
    efs_security_group: str
    security_groups: list[str]
    assign_public_ip: bool
    efs_id: str
    efs_mountpoint: str
    efs_access_point: str
    execution_role: str
    task_role: str
    log_group: str
    task_definition_prefix: str
    default_cpu_shares: int
    default_memory_mb: int
    poll_interval: float
    describe_budget: float
    stop_timeout: int
    launch_rate: float
    launch_burst: int
    max_tasks_per_run: int
    max_concurrent_tasks: int
    max_vcpus: float
    max_cost_usd: float
    budget_check_seconds: float
    capacity_retries: int
    launch_retry_delay: float
    spot: bool
    provision: bool
    oom_retries: int
    oom_memory_factor: float
    missing_grace: float
    provisioning_timeout: float
    pull_retries: int
    pull_retry_delay: float
    start_retries: int
    start_retry_delay: float
    prices: Prices
    efs_link_limit: int | None
    link_spares_dir: str
    keep_run_dirs: bool
    keep_failed_run_days: float
    #: days the shared cache's entries on EFS are kept after their last use
    keep_unused_cache_days: float
    managed_instances_capacity_provider: str
    managed_instances_spot_capacity_provider: str
    managed_instances_gpu_capacity_provider: str
    managed_instances_gpu_spot_capacity_provider: str
    managed_instances_max_cpu: int
    managed_instances_max_memory_gib: int
    managed_instances_max_gpus: int
    ebs_volume_role: str
    image_cache: str
    #: the pipeline's run id (set by the driver for each run; read per task with ``run_id``)
    run_id: str
    #: the tags of the run's resources (set by the driver for each run; read per task with ``tags``)
    tags: dict[str, str]
    #: the call cache's default mode for a run that does not say: true, false, "read" or "write"
    call_cache: bool | str
    #: the S3 call cache's prefix (s3://bucket/prefix/); "" none
    call_cache_uri: str
    #: the shortest time in seconds between the serverless driver's updates of status.json
    status_interval: float
    #: objects moved between S3 and the filesystem at once (``s3io.Transfers``)
    transfer_concurrency: int

    @classmethod
    def from_cfg(cls, cfg: wdl_config.Loader) -> "FargateSettings":
        return cls(**{f.name: option(cfg, f.name) for f in fields(cls)})

    def capacities(self) -> sizes.Capacities:
        """Where tasks beyond Fargate can run: the managed-instances limits count only with a
        capacity provider to run them on (GPUs only with a GPU one), EBS scratch only with a role
        for ECS to manage volumes."""
        limits = sizes.ManagedInstanceLimits()
        if self.managed_instances_capacity_provider:
            gpus = self.managed_instances_max_gpus if self.managed_instances_gpu_capacity_provider else 0
            limits = sizes.ManagedInstanceLimits(self.managed_instances_max_cpu, self.managed_instances_max_memory_gib, gpus)
        return sizes.Capacities(limits, ebs_scratch=bool(self.ebs_volume_role))

    def managed_instances_providers(self, gpus: int) -> tuple[str, str]:
        """The managed-instances capacity providers (On-Demand, Spot; "" where there is none) of a
        task with ``gpus`` GPUs: the GPU ones for a GPU task, the CPU-only ones otherwise (whose
        instances have no accelerators, so a CPU-only task never pays for a GPU)."""
        if gpus:
            return self.managed_instances_gpu_capacity_provider, self.managed_instances_gpu_spot_capacity_provider
        return self.managed_instances_capacity_provider, self.managed_instances_spot_capacity_provider

    def image_rules(self) -> dict[str, str]:
        """``image_cache`` parsed: pull-through cache prefix by upstream registry."""
        return images.parse_rules(self.image_cache)


def loader(cfg_file: str | None = None, environ: dict[str, str] | None = None) -> wdl_config.Loader:
    """miniwdl's configuration as miniwdl reads it: ``cfg_file`` (None: the file ``MINIWDL_CFG``
    names, else the user's miniwdl.cfg), under ``MINIWDL__<SECTION>__<OPTION>`` environment
    variables; those of ``environ`` (a driver's environment given as a dict) win too."""
    overrides: dict[str, dict[str, str]] = {}
    for key, value in (environ or {}).items():
        parts = key.split("__")
        if len(parts) == 3 and parts[0] == "MINIWDL" and parts[1] and parts[2]:
            overrides.setdefault(parts[1].lower(), {})[parts[2].lower()] = value
    # (quiet: miniwdl's own loader, made for the run, logs which file it read)
    return wdl_config.Loader(_QUIET, filenames=[cfg_file] if cfg_file else None, overrides=overrides)


_QUIET = logging.getLogger(__name__ + ".loader")
_QUIET.setLevel(logging.WARNING)


def run_id(cfg: wdl_config.Loader) -> str:
    """The pipeline's run id, ``[aws_fargate] run_id``: the driver sets it in the run's
    configuration file; "" when miniwdl runs on its own. Read per task, from the
    task's own configuration: one process may run several runs (tests do), and miniwdl calls a
    backend's ``global_init`` only once per process."""
    return str(option(cfg, "run_id"))


def run_limits(cfg: wdl_config.Loader) -> RunLimits:
    """The run's limits, ``[aws_fargate] max_concurrent_tasks``, ``max_vcpus`` and ``max_cost_usd``
    (0: none; the driver sets each from the run's options, else the stack's default), and how often
    the budget is checked. Read per task, as ``run_id`` is."""
    return RunLimits(
        max_concurrent_tasks=int(option(cfg, "max_concurrent_tasks")),  # type: ignore[call-overload]
        max_vcpus=float(option(cfg, "max_vcpus")),  # type: ignore[arg-type]
        max_cost_usd=float(option(cfg, "max_cost_usd")),  # type: ignore[arg-type]
        check_seconds=float(option(cfg, "budget_check_seconds")),  # type: ignore[arg-type]
        stop_seconds=float(option(cfg, "stop_timeout")),  # type: ignore[arg-type]
    )

def tags(cfg: wdl_config.Loader) -> dict[str, str]:
    """The tags of a run's resources, ``[aws_fargate] tags`` (besides the run id, the driver and the
    call, which the backend adds): the driver sets them in each run's configuration file.
    Read per task, as ``run_id`` is."""
    return dict(option(cfg, "tags"))  # type: ignore[call-overload]


def backend_cluster(cfg: wdl_config.Loader) -> str:
    """The ECS cluster the aws_fargate backend runs its tasks in, when aws_fargate is the
    configured ``[scheduler] container_backend`` and a cluster is set (a cfg file or
    ``MINIWDL__AWS_FARGATE__CLUSTER``); "" otherwise: there are no tasks of ours to stop."""
    if cfg.get("scheduler", "container_backend", "") != "aws_fargate" or not cfg.has_option(SECTION, "cluster"):
        return ""
    return str(option(cfg, "cluster"))


#: the hard links one file may have on EFS (``efs_link_limit``: https://docs.aws.amazon.com/efs/latest/ug/limits.html)
EFS_LINK_LIMIT = 177


def parse_link_limit(raw: str) -> int | None:
    """``efs_link_limit``: the hard links one file may have, or None (empty: the filesystem's own)."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        limit = int(raw)
    except ValueError:
        raise ValueError(f"expected a whole number of hard links per file (EFS allows {EFS_LINK_LIMIT})") from None
    if limit < 2:
        raise ValueError("a file needs at least 2 links (its own name and one task's)")
    return limit


def env_name(name: str) -> str:
    """The environment variable of the ``[aws_fargate]`` setting ``name`` (miniwdl's naming)."""
    return f"MINIWDL__{SECTION.upper()}__{name.upper()}"


def environment_value(name: str) -> str | None:
    """The ``[aws_fargate]`` setting ``name`` as this process's environment gives it (``env_name``),
    None where it gives none: what the stack's template sets for its drivers, told apart from any
    cfg file's value and from the default (``option`` gives the one in effect). The driver keeps the
    stack's defaults of a run's limits so (``driver.stack_limits``)."""
    return os.environ.get(env_name(name))


def option(cfg: wdl_config.Loader, name: str) -> object:
    """One ``[aws_fargate]`` setting, parsed: the user's (cfg file or environment) or the default;
    ``InvalidSetting`` (a ValueError) if its value is not one the setting takes."""
    raw = str(cfg[SECTION][name]) if cfg.has_option(SECTION, name) else _defaults().get(name, "")
    try:
        return _parse(name, raw)
    except ValueError as exn:
        given = "" if repr(raw.strip()) in str(exn) else f" = {raw.strip()!r}"  # (the value, unless the problem names it)
        raise InvalidSetting(name, f"invalid [{SECTION}] {name} (or {env_name(name)}){given}: {exn}") from None


def default(name: str) -> object:
    """The ``[aws_fargate]`` setting ``name``'s default (the packaged aws_fargate.cfg's), parsed."""
    return _parse(name, _defaults().get(name, ""))


def _parse(name: str, raw: str) -> object:
    """The value ``raw`` of the setting ``name``, as its reader takes it (ValueError if it cannot)."""
    return _PARSERS.get(name, str.strip)(raw)


_PARSERS = {
    "subnets": parse_list,
    "security_groups": parse_list,
    "assign_public_ip": parse_bool,
    "efs_mountpoint": lambda v: v.strip().rstrip("/"),
    # (snapped up to a Fargate size, whose largest they may not pass)
    "default_cpu_shares": lambda v: int(_between(int(v), 1, sizes.MAX_CPU_UNITS)),
    "default_memory_mb": lambda v: int(_between(int(v), 1, sizes.MAX_MEMORY_MIB)),
    "poll_interval": lambda v: _at_least(float(v), 0.05),
    "describe_budget": lambda v: _at_least(float(v), 0.1),
    # (ECS: at most 120 s on Fargate: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html)
    "stop_timeout": lambda v: min(120, int(_at_least(int(v), 1))),
    "launch_rate": lambda v: _at_least(float(v), 0.01),
    "launch_burst": lambda v: int(_at_least(int(v), 1)),
    "max_tasks_per_run": lambda v: int(_at_least(int(v), 1)),
    "max_concurrent_tasks": lambda v: int(_at_least(int(v or 0), 0)),
    "max_vcpus": lambda v: _at_least(float(v or 0), 0.0),
    "max_cost_usd": lambda v: _at_least(float(v or 0), 0.0),
    "budget_check_seconds": lambda v: _at_least(float(v), 0.1),
    "capacity_retries": lambda v: int(_at_least(int(v), 0)),
    "launch_retry_delay": lambda v: _at_least(float(v), 0.01),
    "spot": parse_bool,
    "provision": parse_bool,
    "oom_retries": lambda v: max(0, int(v)),
    "oom_memory_factor": lambda v: _factor(float(v)),
    "missing_grace": lambda v: _at_least(float(v), 0.0),
    "provisioning_timeout": lambda v: _at_least(float(v), 0.0),
    "pull_retries": lambda v: int(_at_least(int(v), 0)),
    "pull_retry_delay": lambda v: _at_least(float(v), 0.0),
    "start_retries": lambda v: int(_at_least(int(v), 0)),
    "start_retry_delay": lambda v: _at_least(float(v), 0.0),
    "prices": Prices.parse,
    "efs_link_limit": parse_link_limit,
    "managed_instances_max_cpu": lambda v: int(_at_least(int(v), 0)),
    "managed_instances_max_memory_gib": lambda v: int(_at_least(int(v), 0)),
    "managed_instances_max_gpus": lambda v: int(_at_least(int(v), 0)),
    "image_cache": images.checked_rules_text,
    "tags": parse_tags,
    "keep_run_dirs": parse_bool,
    "keep_failed_run_days": lambda v: _days(float(v)),
    "keep_unused_cache_days": lambda v: _days(float(v)),
    "call_cache": lambda v: parse_call_cache(v),
    "call_cache_uri": lambda v: parse_s3_prefix(v),
    "run_id": lambda v: parse_run_id(v),
    "status_interval": lambda v: _at_least(float(v), 0.1),
    # (each transfer holds one of the AWS client's connections: aws.RETRY_CONFIG's pool of 64)
    "transfer_concurrency": lambda v: int(_between(int(v), 1, 64)),
}


#: a run id as a tag value of every task and a folder of the run's EFS access point take it (the
#: pipeline's are ``<name>-<8 hex digits>``: runs.RUN_ID_RE)
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,72}$")


def parse_run_id(value: str) -> str:
    """``run_id``: "" (none), or letters, digits, ``_ . -`` (at most 73, starting with a letter or
    digit): CreateAccessPoint and TagResource refused others as they launched the first task."""
    text = value.strip()
    if text and not RUN_ID_RE.match(text):
        raise ValueError(f"{text!r} is not a run id (letters, digits, _ . -; at most 73, the first a letter or digit)")
    return text


def parse_call_cache(value: str) -> bool | str:
    """A call cache mode: true, false, read or write."""
    text = value.strip().lower()
    if text in ("read", "write"):
        return text
    try:
        return parse_bool(text)
    except ValueError:
        raise ValueError(f"must be true, false, read or write (got {value.strip()!r})") from None


def parse_s3_prefix(value: str) -> str:
    """An s3://bucket/prefix/ URI ("" none), ending in /."""
    text = value.strip()
    if not text:
        return ""
    if not text.startswith("s3://") or len(text) <= len("s3://") or text[len("s3://")] == "/":
        raise ValueError(f"must be an s3://bucket/prefix/ URI (got {text!r})")
    return text if text.endswith("/") else text + "/"


def _at_least(value: float, low: float) -> float:
    if not value >= low or value == math.inf:  # (NaN compares false to everything)
        finite = "" if math.isfinite(value) else ", a finite number,"
        raise ValueError(f"must be at least {low:g}{finite} (got {value:g})")
    return value


def _between(value: float, low: float, high: float) -> float:
    if not low <= value <= high:  # (NaN too)
        raise ValueError(f"must be from {low:g} to {high:g} (got {value:g})")
    return value


def _days(value: float) -> float:
    if not 0 <= value <= 36500:  # (NaN too)
        raise ValueError(f"must be a number of days from 0 to 36500 (got {value:g})")
    return value


def _factor(value: float) -> float:
    if not 1.0 < value < math.inf:  # (NaN too)
        raise ValueError(f"must be more than 1 (got {value:g})")
    return value
