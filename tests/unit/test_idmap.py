"""Idmapped bind mounts (root only): one user namespace per mapping, however many mounts use it;
the mounts of a stack killed outright unmounted by the next."""

import os

import pytest

from miniwdl_fargate.local import idmap

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="idmapped mounts need root")


@root_only
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


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@root_only
def test_a_stack_killed_outright_has_its_tasks_mounts_unmounted_by_the_next_one(tmp_path):
    problem = idmap.supported(str(tmp_path))
    if problem is not None:
        pytest.skip(f"no idmapped mounts here: {problem}")
    source = tmp_path / "efs"
    source.mkdir()
    (source / "data.txt").write_text("the run's own")
    owner = (os.stat(source).st_uid, os.stat(source).st_gid)
    killed, live, unclaimed = (tmp_path / name / "idmapped" for name in ("killed", "live", "unclaimed"))
    points = {}
    for folder in (killed, live, unclaimed):
        points[folder] = [str(folder / "1b2c3d4e-task" / str(index)) for index in range(2)]
        for point in points[folder]:
            idmap.idmapped_bind(str(source), point, owner, (43210, 43210))
    idmap.claim(str(live))  # (this process: alive)
    (killed / idmap.OWNER_FILE).write_text(f"{dead_pid()} 1\n")
    try:
        swept = idmap.sweep()
        assert sorted(swept) == sorted(points[killed])
        mounted = idmap.mount_points(open("/proc/self/mountinfo").read())
        assert not set(points[killed]) & set(mounted)
        assert set(points[live] + points[unclaimed]) <= set(mounted)
        assert not (killed / "1b2c3d4e-task").exists()
        assert (source / "data.txt").read_text() == "the run's own"  # (unmounted, never emptied)
        assert idmap.sweep() == []
    finally:
        for folder in (killed, live, unclaimed):
            for point in points[folder]:
                idmap.unmount(point)


def test_mount_points_undo_the_mount_tables_escapes_and_owners_are_told_apart(tmp_path):
    table = (
        "36 35 98:0 / /mnt/a\\040b/idmapped/t/0 rw,noatime master:1 - ext3 /dev/root rw\n"
        "37 35 98:0 /x /tmp/tab\\011and\\134slash rw - tmpfs tmpfs rw\n"
    )
    assert idmap.mount_points(table) == ["/mnt/a b/idmapped/t/0", "/tmp/tab\tand\\slash"]
    assert not idmap.owner_gone(str(tmp_path))  # (no owner named: left alone)
    idmap.claim(str(tmp_path))
    assert not idmap.owner_gone(str(tmp_path))
    pid, started = (tmp_path / idmap.OWNER_FILE).read_text().split()
    (tmp_path / idmap.OWNER_FILE).write_text(f"{pid} {int(started) + 1}\n")  # (the pid, used again since)
    assert idmap.owner_gone(str(tmp_path))
    (tmp_path / idmap.OWNER_FILE).write_text(f"{dead_pid()} {started}\n")
    assert idmap.owner_gone(str(tmp_path))
