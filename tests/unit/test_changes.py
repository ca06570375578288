"""local/changes.py: a local stack counts its changes in a file of its state folder; a client
following a run reads the count and looks at the run when it moved (at most every
SHORTEST_SECONDS), or every LOOK_SECONDS whatever it says. Time here is a fake clock."""

import io

import pytest

from miniwdl_fargate import client, status
from miniwdl_fargate.local import changes


class Clock:
    """``time`` for changes.py: sleeping moves the clock; ``during_sleep`` runs at a sleep."""

    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []
        self.during_sleep = lambda: None

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds
        self.during_sleep()


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(changes, "time", fake)
    return fake


def test_a_change_made_before_the_pause_ends_it_after_the_shortest_time(tmp_path, clock):
    count = changes.ChangeCount(str(tmp_path))
    watch = changes.ChangeWatch(str(tmp_path))
    count.bump()
    watch.pause(changes.LOOK_SECONDS)
    assert clock.slept == [changes.SHORTEST_SECONDS]


def test_without_a_change_the_pause_lasts_its_longest_reading_the_count_as_it_goes(tmp_path, clock, monkeypatch):
    changes.ChangeCount(str(tmp_path))
    watch = changes.ChangeWatch(str(tmp_path))
    reads = []
    count = watch._count
    monkeypatch.setattr(watch, "_count", lambda: reads.append(1) or count())
    watch.pause(1.0)
    assert sum(clock.slept) == pytest.approx(1.0)
    assert max(clock.slept) <= changes.SHORTEST_SECONDS
    assert len(reads) >= (1.0 - changes.SHORTEST_SECONDS) / changes.CHECK_SECONDS


def test_a_change_during_the_pause_ends_it_at_the_next_read(tmp_path, clock):
    count = changes.ChangeCount(str(tmp_path))
    watch = changes.ChangeWatch(str(tmp_path))
    clock.during_sleep = lambda: count.bump() if clock.now >= 100.3 else None
    watch.pause(changes.LOOK_SECONDS)
    assert clock.now - 100.0 == pytest.approx(0.3 + changes.CHECK_SECONDS, abs=changes.CHECK_SECONDS)
    # the change is seen once: the next pause waits for another
    clock.during_sleep = lambda: None
    start = clock.now
    watch.pause(0.5)
    assert clock.now - start == pytest.approx(0.5)


def test_the_check_is_called_at_each_read_and_stops_the_pause_by_raising(tmp_path, clock):
    changes.ChangeCount(str(tmp_path))
    watch = changes.ChangeWatch(str(tmp_path))
    checks = []

    def check():
        checks.append(clock.now)
        if len(checks) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        watch.pause(changes.LOOK_SECONDS, check)
    assert len(checks) == 3 and clock.now < 100.0 + changes.LOOK_SECONDS


def test_a_stack_started_again_on_its_folder_counts_on_and_a_closed_count_is_left_alone(tmp_path, clock):
    first = changes.ChangeCount(str(tmp_path))
    first.bump()
    first.bump()
    first.close()
    first.bump()  # (a moto hook after the stack stopped)
    again = changes.ChangeCount(str(tmp_path))
    watch = changes.ChangeWatch(str(tmp_path))
    again.bump()
    assert watch._count() == 3
    watch.pause(changes.LOOK_SECONDS)
    assert clock.slept == [changes.SHORTEST_SECONDS]


def test_a_count_file_gone_is_a_change_the_client_looks_into(tmp_path, clock):
    changes.ChangeCount(str(tmp_path))
    watch = changes.ChangeWatch(str(tmp_path))
    (tmp_path / changes.FILE).unlink()  # (the stack's folder removed under its client)
    watch.pause(changes.LOOK_SECONDS)
    assert clock.slept == [changes.SHORTEST_SECONDS]


def test_a_stack_that_keeps_no_count_gives_no_watch(tmp_path):
    assert changes.watch(None) is None
    assert changes.watch(str(tmp_path)) is None  # (a stack of an earlier version: no count file)
    assert changes.watch(str(tmp_path / "gone")) is None
    changes.ChangeCount(str(tmp_path))
    assert isinstance(changes.watch(str(tmp_path)), changes.ChangeWatch)


def test_a_client_of_a_local_stack_that_counts_waits_for_its_changes(tmp_path):
    deployed = client.Deployment("stack", "us-east-1", {"BucketName": "b"})
    assert client.pace(deployed) == (client.FOLLOW_SECONDS, client.time.sleep)
    uncounted = client.Deployment("stack", "us-east-1", {"BucketName": "b"}, local=True, state_dir=str(tmp_path))
    assert client.pace(uncounted) == (client.LOCAL_FOLLOW_SECONDS, client.time.sleep)
    changes.ChangeCount(str(tmp_path))
    counted = client.Deployment("stack", "us-east-1", {"BucketName": "b"}, local=True, state_dir=str(tmp_path))
    longest, pause = client.pace(counted, of_runs=False)  # (as for an ECS task: any change)
    assert longest == changes.LOOK_SECONDS
    assert isinstance(pause.__self__, changes.ChangeWatch)
    assert pause.__self__.path == str(tmp_path / changes.FILE)
    # a stack that counts no runs' changes (an earlier version): a run is followed at the old pace
    assert client.pace(counted) == (client.LOCAL_FOLLOW_SECONDS, client.time.sleep)
    changes.ChangeCount(str(tmp_path), changes.RUN_FILE)
    longest, pause = client.pace(counted)
    assert longest == changes.LOOK_SECONDS
    assert pause.__self__.path == str(tmp_path / changes.RUN_FILE)


def test_a_watch_of_the_runs_changes_is_not_ended_by_other_changes(tmp_path, clock):
    every, of_runs = changes.ChangeCount(str(tmp_path)), changes.ChangeCount(str(tmp_path), changes.RUN_FILE)
    watch = changes.ChangeWatch(str(tmp_path), changes.RUN_FILE)
    every.bump()  # (an ECS task's status, the call cache's object)
    clock.during_sleep = lambda: (every.bump(), of_runs.bump() if clock.now >= 100.4 else None)
    watch.pause(changes.LOOK_SECONDS)
    assert clock.now - 100.0 == pytest.approx(0.4 + changes.CHECK_SECONDS, abs=changes.CHECK_SECONDS)


def test_follow_pauses_at_the_stacks_pace(tmp_path, monkeypatch):
    running = status.RunStatus(run_id="r", name="n", status="RUNNING", submitted_at="2026-01-01T00:00:00+00:00")
    answers = iter([None, running, running.model_copy(update={"status": "SUCCEEDED"})])
    paused = []
    monkeypatch.setattr(client.status, "read", lambda bucket, run_id: next(answers))
    monkeypatch.setattr(client.manage, "describe_run", lambda bucket, run_id: {"run_id": run_id, "status": "SUCCEEDED"})
    local = client.Deployment("stack", "us-east-1", {"BucketName": "b"}, local=True, state_dir=str(tmp_path))
    monkeypatch.setattr(client, "pace", lambda deployment, **following: (changes.LOOK_SECONDS, paused.append))
    assert client.follow(local, "r", out=io.StringIO())["status"] == "SUCCEEDED"
    assert paused == [changes.LOOK_SECONDS] * 2


def test_a_watch_of_one_runs_changes_is_ended_by_its_runs_changes_not_another_runs(tmp_path, clock):
    """Ten runs at once: a client following one looks at it when that run changed, not at each
    change of the nine others (the stack counts each run name's changes, ``run_slot``)."""
    ours, theirs = "burst-000", next(f"other-{i}" for i in range(100) if changes.run_slot(f"other-{i}") != changes.run_slot("burst-000"))
    of_runs = changes.ChangeCount(str(tmp_path), changes.RUN_FILE, 1 + changes.RUN_SLOTS)
    watch = changes.watch(str(tmp_path), changes.RUN_FILE, run=ours)
    every_run = changes.watch(str(tmp_path), changes.RUN_FILE)
    of_runs.bump(changes.run_slot(theirs))
    clock.during_sleep = lambda: of_runs.bump(changes.run_slot(theirs if clock.now < 100.4 else ours))
    watch.pause(changes.LOOK_SECONDS)
    assert clock.now - 100.0 == pytest.approx(0.4 + changes.CHECK_SECONDS, abs=changes.CHECK_SECONDS)
    clock.during_sleep = lambda: None
    started = clock.now
    every_run.pause(changes.LOOK_SECONDS)  # (every run's count moved all along: over at once)
    assert clock.now - started == pytest.approx(changes.SHORTEST_SECONDS)
    # an execution's changes count as its run's: its name is the run id with "." made "_"
    assert changes.run_slot("my.run") == changes.run_slot("my_run")


def test_a_run_change_count_file_of_an_earlier_stack_is_watched_whole(tmp_path, clock):
    """A stack of an earlier version keeps one count of every run's changes (8 bytes): a client
    following one run watches that count, as before."""
    older = changes.ChangeCount(str(tmp_path), changes.RUN_FILE)
    watch = changes.watch(str(tmp_path), changes.RUN_FILE, run="burst-000")
    assert watch.slot == 0
    older.bump()
    watch.pause(changes.LOOK_SECONDS)
    assert clock.slept == [changes.SHORTEST_SECONDS]


def test_a_stack_started_again_on_its_folder_counts_each_run_on(tmp_path):
    first = changes.ChangeCount(str(tmp_path), changes.RUN_FILE, 1 + changes.RUN_SLOTS)
    slot = changes.run_slot("r")
    first.bump(slot)
    first.bump(slot)
    first.close()
    again = changes.ChangeCount(str(tmp_path), changes.RUN_FILE, 1 + changes.RUN_SLOTS)
    watch = changes.ChangeWatch(str(tmp_path), changes.RUN_FILE, slot)
    assert watch._count() == 2 and changes.ChangeWatch(str(tmp_path), changes.RUN_FILE)._count() == 2
    again.bump(slot)
    assert watch._count() == 3
