"""Idmapped bind mounts (root only): one user namespace per mapping, however many mounts use it;
the mounts of a stack killed outright unmounted by the next."""

import os

import pytest

from miniwdl_fargate.local import idmap, owners
from tests.processes import dead_pid

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


def own_table_under(folder) -> str:
    """This process's mount table, the lines of mounts under ``folder`` only (a test sweeps its
    own mounts, never the machine's)."""
    lines = open("/proc/self/mountinfo").read().splitlines()
    return "\n".join(line for line in lines if f" {folder}/" in line)


@root_only
def test_a_stack_killed_outright_has_its_tasks_mounts_unmounted_by_the_next_one(tmp_path):
    """Only idmapped task mounts of a stack of this boot and PID namespace whose process ended are
    unmounted: a live stack's, an unclaimed folder's, another PID namespace's and a plain bind
    mount at a task mount's place are left; the run's files are never touched."""
    import subprocess

    problem = idmap.supported(str(tmp_path))
    if problem is not None:
        pytest.skip(f"no idmapped mounts here: {problem}")
    source = tmp_path / "efs"
    source.mkdir()
    (source / "data.txt").write_text("the run's own")
    owner = (os.stat(source).st_uid, os.stat(source).st_gid)
    live = idmap.claim(str(tmp_path / "live" / "idmapped"))
    killed = idmap.claim(str(tmp_path / "killed" / "idmapped"))
    namespace, boot = owners._context()
    (tmp_path / "killed" / "idmapped" / os.path.basename(killed) / idmap.OWNER_FILE).write_text(f"{dead_pid()} 1 {namespace} {boot}\n")
    elsewhere = idmap.claim(str(tmp_path / "elsewhere" / "idmapped"))  # (a stack of another PID namespace)
    (tmp_path / "elsewhere" / "idmapped" / os.path.basename(elsewhere) / idmap.OWNER_FILE).write_text(f"{dead_pid()} 1 pid:[1] {boot}\n")
    unclaimed = str(tmp_path / "unclaimed" / "idmapped" / "123-456")
    points = {folder: [os.path.join(folder, "1b2c3d4e-task", str(i)) for i in range(2)] for folder in (live, killed, elsewhere, unclaimed)}
    plain = os.path.join(killed, "plain-task", "0")  # (a bind mount, not idmapped, where a task's would be)
    try:
        for folder in points:
            for point in points[folder]:
                idmap.idmapped_bind(str(source), point, owner, (43210, 43210))
        os.makedirs(plain)
        subprocess.run(["mount", "--bind", str(source), plain], check=True)
        swept = idmap.sweep(own_table_under(tmp_path))
        assert sorted(swept) == sorted(points[killed])
        mounted = [point for point, _ in idmap.mounts(own_table_under(tmp_path))]
        assert not set(points[killed]) & set(mounted)
        assert set(points[live] + points[elsewhere] + points[unclaimed] + [plain]) <= set(mounted)
        assert not os.path.exists(os.path.join(killed, "1b2c3d4e-task"))
        assert (source / "data.txt").read_text() == "the run's own"  # (unmounted, never emptied)
        assert idmap.sweep(own_table_under(tmp_path)) == []
    finally:
        for folder in points:
            for point in points[folder]:
                idmap.unmount(point)
        idmap.unmount(plain)


def test_mount_tables_are_read_with_their_escapes_and_options():
    table = (
        "36 35 98:0 / /mnt/a\\040b/idmapped/s/t/0 rw,noatime,idmapped master:1 - ext3 /dev/root rw\n"
        "37 35 98:0 /x /tmp/tab\\011and\\134slash rw - tmpfs tmpfs rw\n"
    )
    assert idmap.mounts(table) == [("/mnt/a b/idmapped/s/t/0", {"rw", "noatime", "idmapped"}), ("/tmp/tab\tand\\slash", {"rw"})]


@root_only  # (an owner file is believed only if it is root's: only root makes idmapped mounts)
def test_an_owner_is_gone_only_where_that_is_sure(tmp_path):
    owner = tmp_path / idmap.OWNER_FILE
    assert not idmap.owner_gone(str(tmp_path))  # (no owner named: left alone)
    folder = idmap.claim(str(tmp_path / "idmapped"))
    assert os.path.basename(folder) == f"{os.getpid()}-{owners.process_started('self')}"
    assert not idmap.owner_gone(folder)  # (this process)
    pid, started, namespace, boot = open(os.path.join(folder, idmap.OWNER_FILE)).read().split()
    for text, gone in (
        (f"{pid} {int(started) + 1} {namespace} {boot}", True),  # (the pid, used again since)
        (f"{dead_pid()} {started} {namespace} {boot}", True),
        (f"{dead_pid()} {started} pid:[1] {boot}", False),  # (another PID namespace's pid)
        (f"{dead_pid()} {started} {namespace} another-boot", False),
        ("abc 1 x y", False),
        ("", False),
    ):
        owner.write_text(text + "\n")
        assert idmap.owner_gone(str(tmp_path)) is gone, text
    owner.unlink()
    os.mkfifo(owner)  # (never read: it could block)
    assert not idmap.owner_gone(str(tmp_path))
    owner.unlink()
    os.symlink(os.path.join(folder, idmap.OWNER_FILE), owner)
    assert not idmap.owner_gone(str(tmp_path))


def test_a_tasks_mount_that_will_not_unmount_leaves_its_folder_and_what_is_in_it(tmp_path, monkeypatch):
    """(a mount still there would be the run's EFS directory: never removed with its content)"""
    from types import SimpleNamespace

    from miniwdl_fargate.local.ecs_runner import EcsRunner

    mount = tmp_path / "stack" / "task-1" / "0"
    mount.mkdir(parents=True)
    (mount / "result.txt").write_text("a run's file")

    def refuse(target):
        raise OSError(16, f"umount {target}: busy")

    monkeypatch.setattr(idmap, "unmount", refuse)
    EcsRunner._unmount_idmapped(SimpleNamespace(_idmapped_dir=str(tmp_path / "stack")), SimpleNamespace(id="task-1"))
    assert (mount / "result.txt").read_text() == "a run's file"
