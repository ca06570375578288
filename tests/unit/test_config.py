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
