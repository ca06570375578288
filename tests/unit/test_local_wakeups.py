"""``local.wakeups``: the local ECS runner tells a driver's process through a FIFO in its
metadata folder that one of its tasks changed; the driver's listener wakes its pollers."""

import os
import select
import threading

from miniwdl_fargate.local import wakeups
from tests.waiting import wait_for


class Counter:
    def __init__(self):
        self.count = 0
        self.named = []  # what each wake named (None: every task)
        self.lock = threading.Lock()

    def __call__(self, arns):
        with self.lock:
            self.count += 1
            self.named.append(arns)


def test_a_notice_wakes_the_listener(tmp_path):
    woken = Counter()
    wakeups.listen(str(tmp_path), woken)
    assert wakeups.notify(str(tmp_path))
    wait_for(lambda: woken.count >= 1, what="the listener's wake")
    assert wakeups.notify(str(tmp_path))  # a writer's close is no end of file for the listener
    wait_for(lambda: woken.count >= 2, what="the second wake")


def test_without_a_listener_a_notice_is_dropped_at_once(tmp_path):
    assert not wakeups.notify(str(tmp_path))  # no FIFO: a driver that does not listen
    os.mkfifo(tmp_path / wakeups.FIFO)
    assert not wakeups.notify(str(tmp_path))  # a FIFO nobody reads: a driver that ended


def test_a_listener_that_fails_to_wake_keeps_listening(tmp_path):
    calls = Counter()

    def wake(arns):
        calls(arns)
        if calls.count == 1:
            raise RuntimeError("the first wake fails")

    wakeups.listen(str(tmp_path), wake)
    wakeups.notify(str(tmp_path))
    wait_for(lambda: calls.count >= 1, what="the failing wake")
    wakeups.notify(str(tmp_path))
    wait_for(lambda: calls.count >= 2, what="the next wake")


def test_a_notice_names_its_task_and_one_naming_none_wakes_for_every_task(tmp_path):
    woken = Counter()
    wakeups.listen(str(tmp_path), woken)
    arn = "arn:aws:ecs:us-east-1:123456789012:task/c/t1"
    assert wakeups.notify(str(tmp_path), arn)
    wait_for(lambda: woken.count >= 1, what="the named wake")
    assert woken.named == [[arn]]
    assert wakeups.notify(str(tmp_path))
    wait_for(lambda: woken.count >= 2, what="the wake for every task")
    assert woken.named[1] is None


def test_notices_written_at_once_from_many_threads_arrive_whole(tmp_path):
    """Each notice is one write of at most PIPE_BUF bytes: whole or not at all, never interleaved."""
    woken = Counter()
    wakeups.listen(str(tmp_path), woken)
    arns = [f"arn:aws:ecs:us-east-1:123456789012:task/c/{'t' * 60}{i}" for i in range(200)]
    threads = [threading.Thread(target=wakeups.notify, args=(str(tmp_path), a)) for a in arns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: sum(len(n) for n in woken.named) >= len(arns), what="every notice")
    assert sorted(a for n in woken.named for a in n) == sorted(arns)


def test_a_notice_that_is_no_single_line_is_not_sent_and_the_listener_survives_garbage(tmp_path, caplog):
    woken = Counter()
    wakeups.listen(str(tmp_path), woken)
    for bad in ("arn:one\narn:two", "x" * 5000):
        assert not wakeups.notify(str(tmp_path), bad)
    assert "not a task ARN a wake can name" in caplog.text
    fifo = os.open(tmp_path / wakeups.FIFO, os.O_WRONLY)
    try:
        os.write(fifo, b"\xff\xfe not UTF-8\n")  # (decoded as it can be: wakes for no task watched)
        wait_for(lambda: woken.count >= 1, what="the wake of the undecodable line")
        os.write(fifo, b"y" * (select.PIPE_BUF + 1))  # (longer than any notice, no end: a wake for every task)
        wait_for(lambda: woken.count >= 2, what="the wake for every task")
        assert woken.named[1] is None
    finally:
        os.close(fifo)
    arn = "arn:aws:ecs:us-east-1:123456789012:task/c/t2"
    assert wakeups.notify(str(tmp_path), arn)
    wait_for(lambda: woken.count >= 3, what="the next notice")
    assert woken.named[2] == [arn]
