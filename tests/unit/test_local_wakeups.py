"""``local.wakeups``: the local ECS runner tells a driver's process through a FIFO in its
metadata folder that one of its tasks changed; the driver's listener wakes its pollers."""

import os
import threading

from miniwdl_fargate.local import wakeups
from tests.waiting import wait_for


class Counter:
    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.count += 1


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

    def wake():
        calls()
        if calls.count == 1:
            raise RuntimeError("the first wake fails")

    wakeups.listen(str(tmp_path), wake)
    wakeups.notify(str(tmp_path))
    wait_for(lambda: calls.count >= 1, what="the failing wake")
    wakeups.notify(str(tmp_path))
    wait_for(lambda: calls.count >= 2, what="the next wake")
