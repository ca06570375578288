"""The driver refreshes its NFS view of a task's directory after the task stops and before miniwdl
reads its outputs (nfs, BaseTaskContainer.refresh_task_dir)."""

import logging
import os

from WDL.runtime import config as wdl_config

from miniwdl_fargate import nfs
from miniwdl_fargate.backend import base

LOG = logging.getLogger("test")


def recording_open(monkeypatch, events):
    """Record, in ``events``, every path nfs opens (as an absolute path)."""
    real = nfs._open

    def _open(path, flags, dir_fd=None):
        fd = real(path, flags, dir_fd)
        events.append(("open", os.path.realpath(f"/proc/self/fd/{fd}")))
        return fd

    monkeypatch.setattr(nfs, "_open", _open)


def make_tree(root):
    for rel in ("out", "out/deep/er", "empty"):
        os.makedirs(os.path.join(root, rel))
    for rel in ("a.txt", "out/b.txt", "out/deep/er/c.txt"):
        with open(os.path.join(root, rel), "w") as outfile:
            outfile.write(rel)
    return tree_dirs(root)


def tree_dirs(root):
    """``root`` and every directory under it."""
    return sorted({root} | {os.path.join(r, d) for r, ds, _f in os.walk(root) for d in ds})


def test_revalidate_tree_opens_every_directory_and_follows_no_link(tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere"
    os.makedirs(outside / "big")
    work = str(tmp_path / "work")
    dirs = make_tree(work)
    os.symlink(outside, os.path.join(work, "out", "link-to-elsewhere"))
    os.mkfifo(os.path.join(work, "out", "a-fifo"))  # never opened: it would block
    events = []
    recording_open(monkeypatch, events)
    assert nfs.revalidate_tree(work) == len(dirs) == 5
    assert sorted(path for _, path in events) == dirs


def test_revalidate_file_refreshes_a_regular_file_and_never_blocks(tmp_path):
    log = tmp_path / "stdout.txt"
    log.write_text("hello\n")
    os.mkfifo(tmp_path / "fifo")
    assert nfs.revalidate_file(str(log)) is True
    assert nfs.revalidate_file(str(tmp_path / "missing")) is False
    assert nfs.revalidate_file(str(tmp_path / "fifo")) is True  # opened non-blocking, not read
    assert nfs.revalidate_tree(str(tmp_path / "missing")) == 0


class FakeTask(base.BaseTaskContainer):
    """A backend whose 'container' writes its outputs when it stops, recording what happens."""

    def __init__(self, cfg, run_id, host_dir, events):
        super().__init__(cfg, run_id, host_dir)
        self.events = events

    def view_dir(self):
        return os.path.join(self.host_dir, "container")

    def _start(self, logger, script, terminating):
        return base.Job()

    def _poll(self, logger, job, wait):
        make_tree(self.host_work_dir())  # the container's writes
        self.events.append(("stopped", job))
        return base.JobStatus(stopped=True, exit_code=0)

    def _stop(self, logger, job, reason):
        self.events.append(("stop", job))

    def _exit_code(self, logger, job, status):
        self.events.append(("exit code", status.exit_code))
        return super()._exit_code(logger, job, status)


def test_the_task_directory_is_refreshed_after_the_task_stops_and_before_its_exit_code(tmp_path, monkeypatch):
    events = []
    host_dir = tmp_path / "runs" / "r1" / "call-t"
    os.makedirs(host_dir)  # (miniwdl makes work/)
    task = FakeTask(wdl_config.Loader(LOG, filenames=[]), "call-t", str(host_dir), events)
    recording_open(monkeypatch, events)
    assert task._run(LOG, lambda: False, "true") == 0
    kinds = [kind for kind, _ in events]
    stopped, exit_code = kinds.index("stopped"), kinds.index("exit code")
    refreshed = [path for kind, path in events[stopped:exit_code] if kind == "open"]
    work = str(host_dir / "work")
    assert sorted(p for p in refreshed if p.startswith(work)) == tree_dirs(work)
    assert {str(host_dir / "stdout.txt"), str(host_dir / "stderr.txt")} <= set(refreshed)
    assert "open" not in kinds[:stopped]  # nothing refreshed before the task stopped


def test_a_failed_refresh_never_fails_the_task(tmp_path, monkeypatch):
    def broken(root):
        raise OSError(5, "Input/output error", root)

    monkeypatch.setattr(nfs, "revalidate_tree", broken)
    host_dir = tmp_path / "call-t"
    os.makedirs(host_dir)  # (miniwdl makes work/)
    task = FakeTask(wdl_config.Loader(LOG, filenames=[]), "call-t", str(host_dir), [])
    assert task._run(LOG, lambda: False, "true") == 0
