import logging

import pytest
from WDL.runtime import config as wdl_config

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
    with pytest.raises(ValueError, match=r"default_memory_mb \(or MINIWDL__AWS_FARGATE__DEFAULT_MEMORY_MB\)"):
        load(monkeypatch, default_memory_mb="lots")


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
