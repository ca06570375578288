"""``local.wakeups``: the local ECS runner tells a driver's process through a FIFO in its
metadata folder that one of its tasks changed; the driver's listener wakes its pollers."""

import os
import threading

from miniwdl_fargate.local import wakeups
from tests.waiting import wait_for


class Counter:
    def __init__(self):
        self.count = 0
        self.arns = []
        self.lock = threading.Lock()

    def __call__(self, arns=()):
        with self.lock:
            self.count += 1
            self.arns.append(list(arns))


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


def test_a_notice_names_the_task_that_changed_and_every_one_arrives(tmp_path):
    """The runner writes the stopped task's ARN; the listener hands the ARNs it read to the
    poller, every one once, however the reads split them (an empty notice: every task)."""
    woken = Counter()
    wakeups.listen(str(tmp_path), woken)
    arns = [f"arn:aws:ecs:us-east-1:123456789012:task/c/{i:032x}" for i in range(300)]
    for arn in arns:
        assert wakeups.notify(str(tmp_path), arn)
    wait_for(lambda: sum(len(a) for a in woken.arns) >= len(arns), what="every notice")
    assert sorted(arn for call in woken.arns for arn in call) == sorted(arns)
    assert wakeups.notify(str(tmp_path))
    wait_for(lambda: woken.arns[-1] == [], what="a notice for every task")
