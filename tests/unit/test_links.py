"""Hard links of inputs within EFS's limit of 177 links per file (backend.links): spares past the
limit, the same path for the filesystem's own EMLINK, concurrency, Directory inputs, bad
settings."""

import concurrent.futures
import errno
import logging
import math
import os
import threading
from types import SimpleNamespace

import pytest
from WDL.runtime import config as wdl_config

from miniwdl_fargate import sweep
from miniwdl_fargate.backend import links
from miniwdl_fargate.backend.host_process import HostProcessTaskContainer
from miniwdl_fargate.local.runtime import LocalRuntime

LOG = logging.getLogger("test")
LIMIT = "MINIWDL__AWS_FARGATE__EFS_LINK_LIMIT"
SPARES = "MINIWDL__AWS_FARGATE__LINK_SPARES_DIR"


def data_file(path, text="ACGT" * 100):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as outfile:
        outfile.write(text)
    return str(path)


def files_under(root):
    return sorted(os.path.join(r, f) for r, _d, fs in os.walk(root) for f in fs)


def link_many(source, targets_dir, count, policy):
    """Link ``source`` at ``count`` targets; return (stats, targets)."""
    os.makedirs(targets_dir, exist_ok=True)
    stats = links.LinkStats()
    targets = [os.path.join(targets_dir, f"t{i}") for i in range(count)]
    for target in targets:
        links.link_or_copy(source, target, source, stats, policy)
    return stats, targets


def expected_spares(links_wanted, limit):
    """Spares needed for ``links_wanted`` links, ``limit - 1`` per file besides its own name."""
    return max(0, math.ceil((links_wanted - (limit - 1)) / (limit - 1)))


def test_links_past_the_limit_come_from_spares_made_once_per_limit(tmp_path):
    source = data_file(tmp_path / "store" / "ref.fa")
    policy = links.LinkPolicy(limit=4, spares=str(tmp_path / "spares"))
    stats, targets = link_many(source, tmp_path / "tasks", 20, policy)
    # the source takes 3 links, each spare 3 more: 17 links from ceil(17/3) = 6 spares, no copies
    assert (stats.linked, stats.spares, stats.copied) == (20, 6, 0)
    spares = files_under(tmp_path / "spares")
    assert len(spares) == expected_spares(20, 4) == 6
    inodes = {os.stat(t).st_ino for t in targets}
    assert inodes == {os.stat(p).st_ino for p in [source] + spares}
    assert all(os.stat(p).st_nlink <= 4 for p in [source] + spares)
    assert all(open(t).read() == open(source).read() for t in targets)
    assert not [p for p in os.listdir(tmp_path / "store") if p != "ref.fa"]  # nothing beside the store copy


def test_the_filesystems_own_emlink_takes_the_same_path(tmp_path, monkeypatch):
    """No configured limit: EFS itself refuses the 178th link (here a fake refusing the 4th)."""
    real_link = os.link

    def efs_link(src, dst, **kwargs):
        if os.stat(src).st_nlink >= 4:
            raise OSError(errno.EMLINK, "Too many links", src)
        return real_link(src, dst, **kwargs)

    monkeypatch.setattr(links.os, "link", efs_link)
    source = data_file(tmp_path / "store" / "ref.fa")
    stats, targets = link_many(source, tmp_path / "tasks", 20, links.LinkPolicy(spares=str(tmp_path / "spares")))
    assert (stats.linked, stats.spares, stats.copied) == (20, 6, 0)
    assert len({os.stat(t).st_ino for t in targets}) == 7


def test_concurrent_tasks_never_pass_the_limit_nor_make_a_spare_twice(tmp_path):
    source = data_file(tmp_path / "store" / "ref.fa")
    policy = links.LinkPolicy(limit=5, spares=str(tmp_path / "spares"))
    workers = 8

    def task(n):
        return link_many(source, tmp_path / f"task{n}", 25, policy)[0]

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(task, range(workers)))
    spares = files_under(tmp_path / "spares")
    assert sum(r.linked for r in results) == 200 and sum(r.copied for r in results) == 0
    assert sum(r.spares for r in results) == len(spares) == expected_spares(200, 5)
    assert max(os.stat(p).st_nlink for p in [source] + spares) <= 5
    assert not [p for p in spares if ".part." in p]  # no half-made spare left behind


def test_tasks_wanting_the_same_spare_wait_for_one_copy_instead_of_each_copying(tmp_path, monkeypatch):
    """Two tasks find the source full and its spare missing at once: one copies, the other waits
    and links (a 50 GB input must not be copied by every task of a scatter at once)."""
    source = data_file(tmp_path / "store" / "ref.fa")
    policy = links.LinkPolicy(limit=3, spares=str(tmp_path / "spares"))  # room for both on one spare
    link_many(source, tmp_path / "first", 2, policy)  # the source is now full
    both_missed = threading.Event()
    misses = []
    real_hard_link, real_copy2 = links.hard_link, links.shutil.copy2

    def hard_link(src, dst, limit):
        try:
            return real_hard_link(src, dst, limit)
        except FileNotFoundError:
            misses.append(src)
            if len(misses) >= 2:
                both_missed.set()
            raise

    copies = []

    def copy2(src, dst):
        copies.append(dst)
        both_missed.wait(timeout=10)  # (bounded: holds the first copy until the other task missed too)
        return real_copy2(src, dst)

    monkeypatch.setattr(links, "hard_link", hard_link)
    monkeypatch.setattr(links.shutil, "copy2", copy2)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda n: link_many(source, tmp_path / f"task{n}", 1, policy)[0], range(2)))
    assert both_missed.is_set()
    assert len(copies) == 1 and sum(r.spares for r in results) == 1
    assert sum(r.linked for r in results) == 2 and sum(r.copied for r in results) == 0


def test_a_changed_source_never_gets_an_old_spare(tmp_path):
    source = data_file(tmp_path / "store" / "ref.fa", "first version\n")
    policy = links.LinkPolicy(limit=2, spares=str(tmp_path / "spares"))
    _, (first, second) = link_many(source, tmp_path / "run1", 2, policy)
    assert open(second).read() == "first version\n" and os.stat(second).st_ino != os.stat(source).st_ino
    with open(source, "w") as outfile:  # rewritten in place: same inode, new size and mtime
        outfile.write("second version, longer\n")
    _, (third,) = link_many(source, tmp_path / "run2", 1, policy)
    assert open(third).read() == "second version, longer\n"


def test_without_room_for_spares_a_task_gets_its_own_copy(tmp_path):
    source = data_file(tmp_path / "store" / "ref.fa")
    blocker = data_file(tmp_path / "not-a-dir")  # spares "directory" under a file: cannot be made
    policy = links.LinkPolicy(limit=2, spares=os.path.join(blocker, "spares"))
    stats, targets = link_many(source, tmp_path / "tasks", 3, policy)
    assert (stats.linked, stats.spares, stats.copied) == (1, 0, 2)
    assert all(open(t).read() == open(source).read() for t in targets)


def cfg(monkeypatch, **env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return wdl_config.Loader(LOG, filenames=[])


def container(cfg, host_dir, paths):
    os.makedirs(host_dir)
    c = HostProcessTaskContainer(cfg, os.path.basename(host_dir), str(host_dir))
    c.add_paths(paths)
    return c


def test_directory_inputs_link_each_file_and_keep_spares_out_of_the_tree(tmp_path, monkeypatch):
    ref = tmp_path / "store" / "abc123" / "genome"
    for rel in ("genome.fa", "genome.fa.fai", "index/bwt"):
        data_file(ref / rel, rel * 10)
    reads = data_file(tmp_path / "store" / "def456" / "reads.fq")
    config = cfg(monkeypatch, **{LIMIT: "3"})  # no spares dir configured: beside each input
    seen = []
    for n in range(5):
        task = container(config, tmp_path / "run" / f"call-align-{n}", [str(ref) + "/", reads])
        task.link_input_files(LOG)
        linked = {os.path.basename(h.rstrip("/")): task.host_work_path(c).rstrip("/") for h, c in task.input_path_map.items()}
        genome = linked["genome"]
        assert sorted(os.path.relpath(p, genome) for p in files_under(genome)) == ["genome.fa", "genome.fa.fai", "index/bwt"]
        assert open(os.path.join(genome, "index", "bwt")).read() == "index/bwt" * 10
        assert open(linked["reads.fq"]).read() == open(reads).read()
        seen.append(os.stat(os.path.join(genome, "genome.fa")).st_ino)
    # 5 links of each file, 2 per file: the originals and 2 spares each (spares beside the inputs)
    assert len(set(seen)) == 3
    assert sorted(os.listdir(ref)) == ["genome.fa", "genome.fa.fai", "index"]  # the Directory is untouched
    assert len(files_under(ref.parent / links.SPARES_NAME)) == 3 * 2
    assert len(files_under(os.path.join(os.path.dirname(reads), links.SPARES_NAME))) == 2
    for path in files_under(tmp_path / "store"):
        assert os.stat(path).st_nlink <= 3


def test_link_limit_settings_are_checked_with_where_they_come_from(tmp_path, monkeypatch):
    assert links.LinkPolicy.from_cfg(cfg(monkeypatch)) == links.LinkPolicy(None, "")
    policy = links.LinkPolicy.from_cfg(cfg(monkeypatch, **{LIMIT: "177", SPARES: "/mnt/efs/cache/links"}))
    assert policy == links.LinkPolicy(177, "/mnt/efs/cache/links")
    with pytest.raises(ValueError, match=r"\[aws_fargate\] efs_link_limit \(or MINIWDL__AWS_FARGATE__EFS_LINK_LIMIT\) = 'lots': expected a whole number"):
        HostProcessTaskContainer.global_init(cfg(monkeypatch, **{LIMIT: "lots"}), LOG)
    with pytest.raises(ValueError, match=r"efs_link_limit .* = '1': a file needs at least 2 links"):
        links.LinkPolicy.from_cfg(cfg(monkeypatch, **{LIMIT: "1"}))
    # a miniwdl.cfg file sets them as well as the environment does (read as every setting is: config.option)
    monkeypatch.delenv(LIMIT)
    monkeypatch.delenv(SPARES, raising=False)
    cfg_file = tmp_path / "miniwdl.cfg"
    cfg_file.write_text("[aws_fargate]\nefs_link_limit = 50\nlink_spares_dir = /mnt/efs/spares\n")
    assert links.LinkPolicy.from_cfg(wdl_config.Loader(LOG, filenames=[str(cfg_file)])) == links.LinkPolicy(50, "/mnt/efs/spares")


def test_local_mode_gives_drivers_efs_link_limit_and_wdl_tasks_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(LIMIT, raising=False)
    runtime = LocalRuntime(str(tmp_path), "http://127.0.0.1:1", "us-east-1")
    driver = SimpleNamespace(tags=[{"key": "miniwdl-fargate:run", "value": "r1"}])
    wdl_task = SimpleNamespace(tags=[{"key": sweep.DRIVER_TAG, "value": "arn:aws:ecs:us-east-1:123456789012:task/c/d"}])
    assert runtime.efs_environment(driver) == {LIMIT: "177"}
    assert runtime.efs_environment(wdl_task) == {}
    monkeypatch.setenv(LIMIT, "4")  # what a test asks for
    assert runtime.efs_environment(driver) == {LIMIT: "4"}


def test_a_file_that_appears_after_its_lock_could_not_be_opened_is_not_linked_unlocked(tmp_path, monkeypatch):
    """A spare another thread makes between this thread's failed open (no lock: not there yet) and
    its link-count check must not be linked without the lock: that let a spare reach limit + 1
    links when eight tasks raced (about one trial in twelve). It is FileNotFoundError, as if the
    spare were still missing: the caller makes (or waits for) it and tries again, locked."""
    spare = tmp_path / "spares" / "1"
    spare.parent.mkdir()
    real_open = links.os.open

    def open_then_appears(path, flags, *args):
        if path == str(spare) and not spare.exists():
            spare.write_text("made by another thread just now\n")
            raise FileNotFoundError(2, "No such file or directory", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(links.os, "open", open_then_appears)
    with pytest.raises(FileNotFoundError):
        links.hard_link(str(spare), str(tmp_path / "target"), 5)
    assert not (tmp_path / "target").exists()
    links.hard_link(str(spare), str(tmp_path / "target"), 5)  # the next try takes the lock and links
    assert os.stat(spare).st_nlink == 2


def test_a_directory_input_linking_outside_itself_is_refused_and_links_inside_it_are_followed(tmp_path, monkeypatch):
    """A task's Directory output holding `ln -s ../../<another run> d/x` (miniwdl checks a
    Directory's links to files, not to folders) gave the next task, as its input, every file of
    that other run hard-linked: the driver mounts all of EFS. A link leading outside the
    Directory is refused; links inside it are followed as miniwdl reads them, a cycle once."""
    from miniwdl_fargate.backend.base import InputOutsideDirectory

    victim = tmp_path / "efs" / "runs" / "victim"
    data_file(victim / "secret.txt", "secret")
    good = tmp_path / "efs" / "runs" / "mine" / "call-a" / "work" / "d"
    data_file(good / "a.txt", "a")
    (good / "sub").mkdir()
    (good / "empty").mkdir()
    os.symlink("../a.txt", good / "sub" / "a-again.txt")
    os.symlink("..", good / "sub" / "up")  # (a cycle: followed once)
    task = container(cfg(monkeypatch), tmp_path / "efs" / "runs" / "mine" / "call-b", [str(good) + "/"])
    task.link_input_files(LOG)
    (linked,) = [task.host_work_path(c).rstrip("/") for c in task.input_path_map.values()]
    assert sorted(os.path.relpath(p, linked) for p in files_under(linked)) == ["a.txt", "sub/a-again.txt"]
    assert os.path.isdir(os.path.join(linked, "empty"))

    bad = tmp_path / "efs" / "runs" / "mine" / "call-c" / "work" / "d"
    data_file(bad / "fine.txt", "f")
    os.symlink(os.path.relpath(victim, bad), bad / "x")
    task = container(cfg(monkeypatch), tmp_path / "efs" / "runs" / "mine" / "call-d", [str(bad) + "/"])
    with pytest.raises(InputOutsideDirectory, match=rf"^Directory input {bad}: x is a symbolic link leading outside it \({victim}\): refused$"):
        task.link_input_files(LOG)
    assert not any("secret" in p for p in files_under(tmp_path / "efs" / "runs" / "mine"))
