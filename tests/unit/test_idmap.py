"""Idmapped bind mounts (root only): one user namespace per mapping, however many mounts use it."""

import os

import pytest

from miniwdl_fargate.local import idmap

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="idmapped mounts need root")


def test_mounts_of_one_mapping_share_one_user_namespace(tmp_path):
    problem = idmap.supported(str(tmp_path))
    if problem is not None:
        pytest.skip(f"no idmapped mounts here: {problem}")
    source = tmp_path / "source"
    source.mkdir()
    owner = (os.stat(source).st_uid, os.stat(source).st_gid)
    user = (43210, 43210)
    targets = [str(tmp_path / f"target-{i}") for i in range(2)]
    try:
        for target in targets:
            idmap.idmapped_bind(str(source), target, owner, user)
        key = (*owner, *user)
        assert list(idmap._namespaces).count(key) == 1
        for target in targets:
            assert (os.stat(target).st_uid, os.stat(target).st_gid) == user
    finally:
        for target in targets:
            idmap.unmount(target)
