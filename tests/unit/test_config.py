import logging
from dataclasses import fields

import pytest
from WDL.runtime import config as wdl_config

from miniwdl_fargate import config
from miniwdl_fargate.config import FargateSettings, default_cfg_text


def load(monkeypatch, **env):
    for key, value in env.items():
        monkeypatch.setenv(f"MINIWDL__AWS_FARGATE__{key.upper()}", value)
    return FargateSettings.from_cfg(wdl_config.Loader(logging.getLogger("test"), filenames=[]))


def test_defaults_come_from_the_commented_cfg(monkeypatch):
    s = load(monkeypatch)
    assert s.default_cpu_shares == 1024
    assert s.default_memory_mb == 2048
    assert s.efs_security_group == "aegea.efs"
    assert s.subnets == []
    assert s.assign_public_ip is True
    for key in ("default_cpu_shares", "default_memory_mb", "efs_id", "efs_mountpoint", "efs_security_group"):
        assert f"\n{key} =" in default_cfg_text()


def test_environment_overrides(monkeypatch):
    s = load(
        monkeypatch,
        subnets="subnet-a, subnet-b",
        security_groups='["sg-1","sg-2"]',
        efs_id="fs-123",
        efs_mountpoint="/mnt/efs/",
        assign_public_ip="false",
        default_cpu_shares="2048",
        poll_interval="0.5",
    )
    assert s.subnets == ["subnet-a", "subnet-b"]
    assert s.security_groups == ["sg-1", "sg-2"]
    assert s.efs_id == "fs-123"
    assert s.efs_mountpoint == "/mnt/efs"
    assert s.assign_public_ip is False
    assert s.default_cpu_shares == 2048
    assert s.poll_interval == 0.5


def test_bad_value_names_the_option(monkeypatch):
    with pytest.raises(config.InvalidSetting, match=r"default_memory_mb \(or MINIWDL__AWS_FARGATE__DEFAULT_MEMORY_MB\)") as caught:
        load(monkeypatch, default_memory_mb="lots")
    assert caught.value.name == "default_memory_mb" and isinstance(caught.value, ValueError)


def test_a_settings_default_is_the_packaged_cfgs_parsed(monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__STATUS_INTERVAL", "often")  # (not the default's business)
    assert config.default("status_interval") == 10.0
    assert config.default("subnets") == []
    assert config.default("assign_public_ip") is True


@pytest.mark.parametrize("option, value", [
    ("poll_interval", "nan"), ("missing_grace", "nan"), ("max_cost_usd", "nan"), ("max_vcpus", "inf"),
    ("oom_memory_factor", "nan"), ("stop_timeout", "-5"), ("stop_timeout", "0"), ("capacity_retries", "-1"),
    ("launch_rate", "0"), ("launch_burst", "0"), ("default_cpu_shares", "0"), ("default_cpu_shares", "99999"),
    ("default_memory_mb", "-1"), ("default_memory_mb", "200000"),
    ("status_interval", "0"), ("status_interval", "nan"), ("transfer_concurrency", "0"), ("transfer_concurrency", "65"),
    ("run_id", "exp#1"), ("run_id", ".hidden"), ("run_id", "a" * 74),
])
def test_a_value_out_of_range_is_refused_naming_the_option(monkeypatch, option, value):
    """Refused as the run starts, naming the option: NaN passed every "at least" check (NaN
    compares false), a negative stop timeout reached the task definition, a zero launch rate
    failed later in the token bucket without naming the option."""
    with pytest.raises(ValueError, match=rf"invalid \[aws_fargate\] {option} \(or MINIWDL__AWS_FARGATE__{option.upper()}\)"):
        load(monkeypatch, **{option: value})


def test_oom_retry_and_prices_options(monkeypatch, tmp_path):
    s = load(monkeypatch)
    assert (s.oom_retries, s.oom_memory_factor) == (1, 2.0)
    assert s.prices.rate("FARGATE") == {"vcpu_hour": 0.04048, "gb_hour": 0.004445}
    prices = tmp_path / "prices.json"
    prices.write_text('{"FARGATE": {"vcpu_hour": 0.05, "gb_hour": 0.005}}')
    s = load(monkeypatch, oom_retries="2", oom_memory_factor="1.5", prices=str(prices))
    assert (s.oom_retries, s.oom_memory_factor) == (2, 1.5)
    assert s.prices.rate("FARGATE")["vcpu_hour"] == 0.05
    with pytest.raises(ValueError, match=r"oom_memory_factor .*must be more than 1"):
        load(monkeypatch, oom_memory_factor="1")
    for key in ("oom_retries", "oom_memory_factor", "prices"):
        assert f"\n{key} =" in default_cfg_text()


def test_missing_grace_and_pull_retries(monkeypatch):
    s = load(monkeypatch)
    assert (s.missing_grace, s.pull_retries, s.pull_retry_delay) == (60.0, 4, 15.0)
    for key in ("missing_grace", "pull_retries", "pull_retry_delay"):
        assert f"\n{key} =" in default_cfg_text()
    s = load(monkeypatch, missing_grace="5", pull_retries="0", pull_retry_delay="0.5")
    assert (s.missing_grace, s.pull_retries, s.pull_retry_delay) == (5.0, 0, 0.5)
    with pytest.raises(ValueError, match=r"invalid \[aws_fargate\] pull_retries .*must be at least 0 \(got -1\)"):
        load(monkeypatch, pull_retries="-1")


def test_max_tasks_per_run(monkeypatch):
    assert load(monkeypatch).max_tasks_per_run == 10000
    assert load(monkeypatch, max_tasks_per_run="25").max_tasks_per_run == 25
    with pytest.raises(ValueError, match=r"invalid \[aws_fargate\] max_tasks_per_run .*must be at least 1 \(got 0\)"):
        load(monkeypatch, max_tasks_per_run="0")


def test_efs_link_limit_and_link_spares_dir(monkeypatch):
    s = load(monkeypatch)
    assert (s.efs_link_limit, s.link_spares_dir) == (None, "")
    s = load(monkeypatch, efs_link_limit="177", link_spares_dir="/mnt/efs/cache/links")
    assert (s.efs_link_limit, s.link_spares_dir) == (177, "/mnt/efs/cache/links")
    with pytest.raises(ValueError, match=r"invalid \[aws_fargate\] efs_link_limit .*expected a whole number"):
        load(monkeypatch, efs_link_limit="lots")
    with pytest.raises(ValueError, match=r"invalid \[aws_fargate\] efs_link_limit .*at least 2 links"):
        load(monkeypatch, efs_link_limit="1")


# -- one settings reader: a cfg file works as well as MINIWDL__AWS_FARGATE__* ----------------------

CFG_FILE = """
[scheduler]
container_backend = aws_fargate

[aws_fargate]
cluster = wdl-from-file
subnets = subnet-f1, subnet-f2
security_groups = ["sg-f1"]
efs_id = fs-0f11e
efs_mountpoint = /mnt/file-efs/
efs_access_point = fsap-0f11e
execution_role = arn:aws:iam::123456789012:role/from-file
log_group = /from/file
launch_rate = 7.5
spot = false
run_id = hello-0f11e0f1
"""


@pytest.fixture
def no_environment(monkeypatch):
    """Nothing configured by environment: only the cfg file the test writes counts."""
    import os

    for key in list(os.environ):
        if key.startswith("MINIWDL__") or key == "MINIWDL_CFG":
            monkeypatch.delenv(key)


def test_a_cfg_file_alone_configures_the_backend(tmp_path, no_environment):
    path = tmp_path / "miniwdl.cfg"
    path.write_text(CFG_FILE)
    cfg = config.loader(str(path))
    s = FargateSettings.from_cfg(cfg)
    assert (s.cluster, s.subnets, s.security_groups) == ("wdl-from-file", ["subnet-f1", "subnet-f2"], ["sg-f1"])
    assert (s.efs_id, s.efs_mountpoint, s.efs_access_point) == ("fs-0f11e", "/mnt/file-efs", "fsap-0f11e")
    assert (s.execution_role, s.log_group, s.launch_rate, s.spot) == ("arn:aws:iam::123456789012:role/from-file", "/from/file", 7.5, False)
    assert config.run_id(cfg) == "hello-0f11e0f1"
    assert config.backend_cluster(cfg) == "wdl-from-file"


def test_the_file_miniwdl_cfg_names_is_read_when_none_is_given(tmp_path, no_environment, monkeypatch):
    path = tmp_path / "operator.cfg"
    path.write_text(CFG_FILE)
    monkeypatch.setenv("MINIWDL_CFG", str(path))
    assert config.backend_cluster(config.loader()) == "wdl-from-file"


def test_environment_variables_win_over_the_file(tmp_path, no_environment, monkeypatch):
    path = tmp_path / "miniwdl.cfg"
    path.write_text(CFG_FILE)
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__CLUSTER", "wdl-from-env")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__RUN_ID", "hello-0e0e0e0e")
    cfg = config.loader(str(path))
    assert FargateSettings.from_cfg(cfg).cluster == "wdl-from-env" == config.backend_cluster(cfg)
    assert config.run_id(cfg) == "hello-0e0e0e0e"
    given = config.loader(str(path), environ={"MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT": "/given/", "OTHER": "x"})
    assert config.option(given, "efs_mountpoint") == "/given"


def test_a_cfg_file_sets_the_drivers_own_settings_as_well_as_their_variables(tmp_path, no_environment, monkeypatch):
    """status_interval and transfer_concurrency (the driver's status.json updates, the objects the
    driver and the commands move at once) were environment variables only."""
    from miniwdl_fargate import s3io

    path = tmp_path / "operator.cfg"
    path.write_text("[aws_fargate]\nstatus_interval = 2.5\ntransfer_concurrency = 8\n")
    monkeypatch.setenv("MINIWDL_CFG", str(path))
    assert config.option(config.loader(), "status_interval") == 2.5
    assert s3io.transfer_concurrency() == 8
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__TRANSFER_CONCURRENCY", "16")
    assert s3io.transfer_concurrency() == 16
    monkeypatch.delenv("MINIWDL_CFG")
    monkeypatch.delenv("MINIWDL__AWS_FARGATE__TRANSFER_CONCURRENCY")
    assert (config.option(config.loader(), "status_interval"), s3io.transfer_concurrency()) == (10.0, 32)


def test_no_run_id_and_no_cluster_when_nothing_says_so(no_environment):
    cfg = config.loader(None)
    assert config.run_id(cfg) == ""
    assert config.backend_cluster(cfg) == ""  # nothing set: no tasks of ours to stop
    assert config.option(cfg, "cluster") == "default"  # (what the backend would use)


def test_no_cluster_to_sweep_unless_aws_fargate_is_the_backend(tmp_path, no_environment, monkeypatch):
    path = tmp_path / "miniwdl.cfg"
    path.write_text(CFG_FILE.replace("container_backend = aws_fargate", "container_backend = host_process"))
    assert config.backend_cluster(config.loader(str(path))) == ""
    monkeypatch.setenv("MINIWDL__SCHEDULER__CONTAINER_BACKEND", "aws_fargate")
    assert config.backend_cluster(config.loader(str(path))) == "wdl-from-file"


def test_every_option_of_the_packaged_cfg_has_one_reader():
    import configparser

    parser = configparser.ConfigParser()
    parser.read_string(default_cfg_text())
    documented = set(parser[config.SECTION])
    read = {f.name for f in fields(FargateSettings)}
    assert documented == read


@pytest.mark.parametrize("line", [
    'keep_run_dirs = "true"', "max_tasks_per_run = '50'", "max_tasks_per_run = $MAXT", "max_tasks_per_run = ${MAXT}",
    "tags = '{\"a\": \"b\"}'", 'call_cache_uri = "s3://b/p/"', "prices = ~/prices.json", "spot = false",
])
def test_a_bundled_cfg_value_miniwdl_reads_is_not_refused(line):
    """``cfg_problem`` reads a value as miniwdl's Loader does (quotes around it stripped; $VARs
    and ~ left to the machine that runs it, whose environment they name)."""
    assert config.cfg_problem(f"[aws_fargate]\n{line}\n", "miniwdl.cfg") is None


def test_a_bundled_cfg_value_the_backend_cannot_read_is_refused_quoted_or_not():
    assert config.cfg_problem('[aws_fargate]\nkeep_run_dirs = "perhaps"\n', "miniwdl.cfg") == (
        "[aws_fargate] keep_run_dirs = 'perhaps': expected true or false, got 'perhaps'"
    )



def test_a_runs_own_miniwdl_cfg_may_not_set_what_the_stack_or_the_driver_owns():
    """A workflow folder's miniwdl.cfg set anything the deployment's environment did not: a run
    could read any file on the shared EFS ([file_io] allow_any_input), write the call cache
    elsewhere, change the tasks' security groups, or keep results made by another shell under the
    task's key. Those options are refused, each named; what is the run's own stays settable."""
    text = (
        "[file_io]\nallow_any_input = true\ncopy_input_files = true\n"
        "[aws_fargate]\nsecurity_groups = sg-1\ncall_cache_uri = s3://b/x/\nprices = {}\nkeep_run_dirs = true\nspot = false\n"
        "[call_cache]\ndir = /mnt/efs/runs/other\nget = true\n"
        "[task_runtime]\ncommand_shell = /bin/sh -c true\ndefaults = {\"maxRetries\": 2}\n"
        "[plugins]\ndisable_patterns = [\"*\"]\n"
    )
    problem = config.cfg_problem(text, "s3://b/runs/x/miniwdl.cfg", run=True)
    refused = [part.split(":")[0] for part in problem.split("; ")]
    assert refused == [
        "[file_io] allow_any_input", "[aws_fargate] security_groups", "[aws_fargate] call_cache_uri", "[aws_fargate] prices",
        "[call_cache] dir", "[task_runtime] command_shell", "[plugins] disable_patterns",
    ]
    assert "a run's miniwdl.cfg may not set it" in problem
    assert config.cfg_problem(text, "operator.cfg") is None  # (the operator's own file may)
    every = set(config.RUN_CFG_REFUSED[config.SECTION])
    assert every <= set(config._defaults()), every - set(config._defaults())  # (each an option of the packaged cfg)


def test_a_runs_own_miniwdl_cfg_may_not_reach_every_section_through_default():
    """[DEFAULT]'s options are every section's once the driver merges the files: a bundle's
    `[DEFAULT] launch_rate = 1000` reached [aws_fargate] past the refusal."""
    problem = config.cfg_problem("[DEFAULT]\nlaunch_rate = 1000\n[aws_fargate]\nspot = false\n", "miniwdl.cfg", run=True)
    assert problem == "[DEFAULT] launch_rate: a run's miniwdl.cfg may not set options for every section"


def test_the_environments_own_value_is_told_apart_from_a_files_and_the_default(tmp_path, no_environment, monkeypatch):
    """``environment_value``: what the environment itself sets (the stack's template, for its
    drivers), None where it sets nothing, whatever a cfg file or the default says."""
    path = tmp_path / "miniwdl.cfg"
    path.write_text("[aws_fargate]\nmax_vcpus = 64\n")
    monkeypatch.setenv("MINIWDL_CFG", str(path))
    assert config.option(config.loader(), "max_vcpus") == 64  # (the file's, in effect)
    assert config.environment_value("max_vcpus") is None and config.environment_value("max_cost_usd") is None
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__MAX_VCPUS", "16")
    assert config.environment_value("max_vcpus") == "16"
