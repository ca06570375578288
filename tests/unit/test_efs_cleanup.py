"""Run directories on EFS: which go and which stay (``decide``: status x age x marker, with
reasons), and removing one robustly (read-only folders, links, busy NFS files, a deadline)."""

import errno
import os
import stat
from datetime import datetime, timedelta, timezone

import pytest

from miniwdl_fargate import efs_cleanup
from miniwdl_fargate.efs_cleanup import Seen, decide

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
RUN = "hello-1a2b3c4d"


def ago(days):
    return NOW - timedelta(days=days)


@pytest.mark.parametrize(
    "seen, keep_days, remove, reason",
    [
        # finished runs: a success goes at once, a failure or cancel after the days kept
        (Seen(RUN, "SUCCEEDED", ago(0)), 3, True, "the run SUCCEEDED"),
        (Seen(RUN, "FAILED", ago(1)), 3, False, "the run FAILED; kept until 2026-12-02T12:00:00+00:00"),
        (Seen(RUN, "FAILED", ago(4)), 3, True, "the run FAILED at 2026-11-26T12:00:00+00:00, more than 3 day(s) ago"),
        (Seen(RUN, "CANCELLED", ago(0.5)), 3, False, "the run CANCELLED; kept until"),
        (Seen(RUN, "CANCELLED", ago(0)), 0, True, "the run CANCELLED at"),
        # a success its driver kept on purpose (keep_run_dirs) is kept like a failure
        (Seen(RUN, "SUCCEEDED", ago(1), kept=True), 3, False, "the run SUCCEEDED; kept until"),
        (Seen(RUN, "SUCCEEDED", ago(3), kept=True), 3, True, "the run SUCCEEDED at"),
        # a finished run without its end time: the directory's last change stands in
        (Seen(RUN, "FAILED", None, changed_at=ago(5)), 3, True, "the run FAILED at 2026-11-25"),
        # never a run still going, however old or whatever the days
        (Seen(RUN, "RUNNING", None, pipeline=True, changed_at=ago(400)), 0, False, "the run is RUNNING"),
        (Seen(RUN, "STARTING", None, pipeline=True, changed_at=ago(400)), 0, False, "the run is STARTING"),
        (Seen(RUN, "SUBMITTED", None), 0, False, "the run is SUBMITTED"),
        # no status.json: only a pipeline driver's directory, and only once unchanged for the days
        (Seen(RUN, None, pipeline=True, changed_at=ago(4)), 3, True, "no status.json (results deleted?); unchanged since"),
        (Seen(RUN, None, pipeline=True, changed_at=ago(2)), 3, False, "no status.json; kept until"),
        (Seen(RUN, None, pipeline=False, changed_at=ago(400)), 0, False, "no status.json, and no pipeline driver made it"),
        # not ours to judge
        (Seen(RUN, efs_cleanup.UNREADABLE, changed_at=ago(400)), 0, False, "its status.json cannot be read"),
        (Seen("my-analysis", "SUCCEEDED", ago(9)), 0, False, "not a run directory (its name is not a run id)"),
        (Seen("2024-05-01T10-00-00_hello", None, changed_at=ago(400)), 0, False, "not a run directory"),
    ],
)
def test_what_goes_and_why(seen, keep_days, remove, reason):
    verdict = decide(seen, NOW, keep_days)
    assert (verdict.remove, verdict.reason[: len(reason)]) == (remove, reason), verdict


def tree(root):
    """A run directory as tasks leave it: read-only inputs in a read-only folder, an output, a
    symlink out of the tree, a hard link of a shared input."""
    work = root / "call-x" / "work"
    (work / "_miniwdl_inputs" / "0").mkdir(parents=True)
    shared = root.parent / "shared-input.txt"
    shared.write_text("shared data\n")
    os.link(shared, work / "_miniwdl_inputs" / "0" / "input.txt")
    (work / "_miniwdl_inputs" / "0" / "input.txt").chmod(0o444)
    (work / "_miniwdl_inputs" / "0").chmod(0o555)
    (work / "_miniwdl_inputs").chmod(0o555)
    (work / "out.bin").write_bytes(b"x" * 100_000)
    (work / "outside").symlink_to(root.parent)
    return shared


def test_a_tree_with_read_only_folders_is_removed_and_what_it_freed_counted(tmp_path):
    root = tmp_path / "runs" / RUN
    shared = tree(root)
    removal = efs_cleanup.remove_tree(str(root))
    assert removal.complete and not root.exists()
    assert (removal.busy, removal.failed, removal.problems, removal.unfinished) == (0, 0, [], False)
    assert removal.files == 3 and removal.dirs == 5
    # the output's blocks came back; the shared input's did not (its other link remains), and the
    # symlink's target was not followed
    assert 100_000 <= removal.freed_bytes < 200_000
    assert shared.read_text() == "shared data\n" and tmp_path.exists()


def test_busy_nfs_files_are_counted_and_left_never_raised(tmp_path, monkeypatch):
    root = tmp_path / "runs" / RUN
    (root / "work").mkdir(parents=True)
    (root / "work" / ".nfs000000000123").write_text("held open")
    (root / "work" / "done.txt").write_text("ok")
    unlink = os.unlink

    def busy(path, *args, **kwargs):
        if os.path.basename(path).startswith(".nfs"):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", busy)
    removal = efs_cleanup.remove_tree(str(root))
    assert not removal.complete
    assert (removal.busy, removal.failed, removal.files) == (1, 0, 1)
    assert removal.problems == [f"{root}/work/.nfs000000000123: Device or resource busy"]
    assert os.listdir(root / "work") == [".nfs000000000123"]
    assert "1 busy and 0 failed entries left" in removal.summary()


def test_a_deadline_stops_a_removal_leaving_the_rest(tmp_path):
    root = tmp_path / "runs" / RUN
    (root / "a").mkdir(parents=True)
    removal = efs_cleanup.remove_tree(str(root), deadline=0.0)
    assert removal.unfinished and not removal.complete and (root / "a").is_dir()
    assert "out of time" in removal.summary()


def test_a_folder_that_cannot_be_opened_is_a_problem_not_an_exception(tmp_path, monkeypatch):
    root = tmp_path / "runs" / RUN
    (root / "locked").mkdir(parents=True)

    def refuse(path):
        raise PermissionError(errno.EPERM, "Operation not permitted", path)

    monkeypatch.setattr(efs_cleanup, "_open_up", lambda folder: refuse(folder) if folder.endswith("locked") else None)
    removal = efs_cleanup.remove_tree(str(root))
    assert removal.failed == 1 and removal.problems == [f"{root}/locked: Operation not permitted"]
    assert (root / "locked").is_dir()


def test_only_a_run_directory_the_driver_makes_is_its_own():
    assert efs_cleanup.owns("/mnt/efs/runs/hello-1a2b3c4d", "hello-1a2b3c4d")
    assert efs_cleanup.owns("/mnt/efs/runs/hello-1a2b3c4d/", "hello-1a2b3c4d")
    assert not efs_cleanup.owns("/tmp/work", "hello-1a2b3c4d")
    assert not efs_cleanup.owns("/mnt/efs/runs/other-1a2b3c4d", "hello-1a2b3c4d")
    assert not efs_cleanup.owns("/mnt/efs/cache/hello-1a2b3c4d", "hello-1a2b3c4d")


def test_a_kept_directory_says_until_when(tmp_path):
    until = efs_cleanup.mark_kept(str(tmp_path), "FAILED", 3, "the run FAILED", now=NOW)
    assert until == "2026-12-03T12:00:00+00:00"
    marker = (tmp_path / efs_cleanup.EXPIRES_MARKER).read_text()
    assert '"expires_at": "2026-12-03T12:00:00+00:00"' in marker and '"status": "FAILED"' in marker
    assert stat.S_ISREG(os.stat(tmp_path / efs_cleanup.EXPIRES_MARKER).st_mode)


def test_a_directory_its_driver_kept_is_decided_by_its_marker_without_asking_s3(tmp_path, monkeypatch):
    """The marker is written once the run's end is: its state and time are the run's, and no
    status.json is read for them (a driver's start-up collection read one for every kept run)."""
    asked = []
    monkeypatch.setattr(efs_cleanup.status_doc, "read", lambda bucket, run_id: asked.append(run_id))
    for run_id, state, ended in [("kept-00000001", "FAILED", ago(1)), ("gone-00000002", "CANCELLED", ago(4)),
                                 ("mine-00000003", "SUCCEEDED", ago(0))]:
        (tmp_path / run_id).mkdir()
        efs_cleanup.mark_kept(str(tmp_path / run_id), state, 3, "why", now=ended)
    seen = {name: efs_cleanup.look(str(tmp_path), name, "runs", NOW) for name in sorted(os.listdir(tmp_path))}
    assert asked == []
    assert {name: (s.state, s.finished_at, s.kept) for name, s in seen.items()} == {
        "gone-00000002": ("CANCELLED", ago(4), True), "kept-00000001": ("FAILED", ago(1), True),
        "mine-00000003": ("SUCCEEDED", ago(0), True),
    }
    verdicts = {name: decide(s, NOW, 3) for name, s in seen.items()}
    assert {name: v.remove for name, v in verdicts.items()} == {
        "gone-00000002": True, "kept-00000001": False, "mine-00000003": False,
    }
    assert verdicts["kept-00000001"].reason == "the run FAILED; kept until 2026-12-02T12:00:00+00:00"


@pytest.mark.parametrize("marker", [
    "not json", "[]", '{"status": "FAILED"}', '{"status": "FAILED", "finished_at": "yesterday"}',
    '{"status": "FAILED", "finished_at": "2026-11-29T12:00:00"}',  # (no zone: not what a driver writes)
    '{"status": "RUNNING", "finished_at": "2026-11-29T12:00:00+00:00"}', '{"status": 3, "finished_at": "2026-11-29T12:00:00+00:00"}',
])
def test_a_marker_that_cannot_say_how_the_run_ended_leaves_it_to_the_runs_status(tmp_path, monkeypatch, marker):
    from miniwdl_fargate import status

    monkeypatch.setattr(efs_cleanup.status_doc, "read", lambda bucket, run_id: status.RunStatus(
        run_id=run_id, name="hello", status="FAILED", submitted_at=ago(3).isoformat(), finished_at=ago(2).isoformat()))
    (tmp_path / RUN).mkdir()
    (tmp_path / RUN / efs_cleanup.EXPIRES_MARKER).write_text(marker)
    seen = efs_cleanup.look(str(tmp_path), RUN, "runs", NOW)
    assert (seen.state, seen.finished_at, seen.kept) == ("FAILED", ago(2), True)


def test_a_link_to_a_directory_is_removed_never_what_it_points_at(tmp_path):
    target = tmp_path / "precious"
    (target / "inside").mkdir(parents=True)
    (target / "inside" / "data.txt").write_text("keep me")
    (tmp_path / "runs").mkdir()
    link = tmp_path / "runs" / RUN
    link.symlink_to(target)
    removal = efs_cleanup.remove_tree(str(link))
    assert removal.complete and removal.files == 1 and removal.freed_bytes == 0
    assert (target / "inside" / "data.txt").read_text() == "keep me"


def run_tree(root, calls=300):
    """A run's directory as miniwdl leaves it: ``<run>/<yyyymmdd_hhmmss_wf>/call-*/`` with each
    call's files and its work folder (one read-only)."""
    top = root / "20261201_120000_wf"
    for i in range(calls):
        call = top / f"call-echo-{i}"
        (call / "work" / "_miniwdl_inputs" / "0").mkdir(parents=True)
        for name in ("stdout.txt", "stderr.txt", "command", "task.log"):
            (call / name).write_text(name)
        (call / "work" / "out.txt").write_text(str(i))
        (call / "work" / "_miniwdl_inputs" / "0" / "in.txt").write_text("in")
        os.chmod(call / "work" / "_miniwdl_inputs" / "0", 0o555)
    (top / "workflow.log").write_text("log")
    (root / efs_cleanup.RUN_MARKER).write_text("{}")
    return 4 * calls + 2 * calls + 2, 4 * calls + 2  # (files; folders, the run's own and the workflow's among them)


def test_a_run_of_many_calls_is_removed_by_several_threads_counting_everything_once(tmp_path, monkeypatch):
    """On EFS each entry removed is a round trip to the server: the driver removed a run's tens of
    thousands one after another, on the run's critical path; the calls' folders now go at once."""
    import threading

    files, folders = run_tree(tmp_path / "parallel")
    by = set()
    subtree = efs_cleanup._remove_subtree

    def noted(path, deadline):
        by.add(threading.current_thread().name)
        return subtree(path, deadline)

    monkeypatch.setattr(efs_cleanup, "_remove_subtree", noted)
    removal = efs_cleanup.remove_tree(str(tmp_path / "parallel"), threads=8)
    assert len(by) > 1 and all(name.startswith("remove") for name in by)
    assert removal.complete and (removal.files, removal.dirs, removal.failed, removal.busy) == (files, folders, 0, 0)
    run_tree(tmp_path / "serial")
    serial = efs_cleanup.remove_tree(str(tmp_path / "serial"), threads=1)
    assert (serial.files, serial.dirs, serial.freed_bytes) == (removal.files, removal.dirs, removal.freed_bytes)
