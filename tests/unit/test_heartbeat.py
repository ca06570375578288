"""The driver's heartbeat (``lifecycle.Heartbeat``): once ``stop()`` has returned, no heartbeat is
sent, not even one that was in flight as it was called (a stopped heartbeat's last beat used to
reach whatever Step Functions answered next: in the tests, the next test's moto)."""

from __future__ import annotations

import threading

from miniwdl_fargate import aws, lifecycle
from tests.waiting import wait_for


class HeldStepFunctions:
    """A Step Functions client whose SendTaskHeartbeat waits until ``release`` is set."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.release = threading.Event()

    def send_task_heartbeat(self, taskToken: str) -> dict:  # noqa: N803 (boto3's argument name)
        self.started += 1
        assert self.release.wait(30), "the test never released the heartbeat"
        self.finished += 1
        return {}


def test_stop_returns_once_the_beat_in_flight_is_done_and_none_follows(monkeypatch):
    sfn = HeldStepFunctions()
    monkeypatch.setattr(aws, "client", lambda service: sfn)
    heartbeat = lifecycle.Heartbeat("token", heartbeat_seconds=0.8).start()  # (a beat every 0.2 s)
    wait_for(lambda: sfn.started == 1, 10.0, "the first beat")
    stopped = threading.Event()
    stopper = threading.Thread(target=lambda: (heartbeat.stop(), stopped.set()))
    stopper.start()
    # stop() waits for the beat in flight: it has not returned while that beat is held
    assert not stopped.wait(0.5)
    sfn.release.set()
    stopper.join(10)
    assert stopped.is_set()
    assert (sfn.started, sfn.finished, heartbeat.sent) == (1, 1, 1)
    assert heartbeat._thread is not None and not heartbeat._thread.is_alive()


def test_stop_from_the_heartbeats_own_thread_does_not_wait_for_itself(monkeypatch):
    """(``on_abandoned`` runs on the heartbeat's thread; a stop from there must not join it.)"""
    calls = []

    class Refusing:
        class exceptions:  # noqa: N801 (botocore's name)
            class InvalidToken(Exception):
                response = {"Error": {"Code": "InvalidToken"}}

            TaskTimedOut = TaskDoesNotExist = InvalidToken

        def send_task_heartbeat(self, taskToken: str) -> dict:  # noqa: N803
            raise self.exceptions.InvalidToken("Invalid Token")

    monkeypatch.setattr(aws, "client", lambda service: Refusing())
    heartbeat = lifecycle.Heartbeat("token", heartbeat_seconds=0.8)
    heartbeat.on_abandoned = lambda why: (heartbeat.stop(), calls.append(why))
    heartbeat.start()
    heartbeat._thread.join(10)
    assert not heartbeat._thread.is_alive()
    assert calls == ["InvalidToken"]
