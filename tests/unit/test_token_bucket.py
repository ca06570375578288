"""The launcher's token bucket, on a fake clock."""

import threading
import time

import pytest

from miniwdl_fargate.backend.launcher import LaunchCancelled, TokenBucket


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.lock = threading.Lock()

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        with self.lock:
            self.now += seconds


def test_burst_then_steady_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=100, clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(300)]
    assert waits[:100] == [0.0] * 100  # the burst goes at once
    # then one slot every 1/20 s: the 300th launch is (300 - 100) / 20 = 10 s after the start
    assert clock.now == pytest.approx(10.0)
    assert all(w > 0 for w in waits[100:])


def test_many_threads_take_turns_at_the_rate():
    """Never faster than the bucket allows: by any moment t after it was made, at most ``burst``
    + ``rate`` x t tokens were taken. (Each time is noted after its token was taken, so a busy
    machine only makes them later; the tokens that come back while the threads are starting are
    taken at once, so the gaps between takes are not each 1/rate.)"""
    made = time.monotonic()
    bucket = TokenBucket(rate=200, burst=5)
    times = []
    lock = threading.Lock()

    def take():
        bucket.acquire()
        with lock:
            times.append(time.monotonic())

    threads = [threading.Thread(target=take) for _ in range(45)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(times) == 45
    times.sort()
    for taken, when in enumerate(times, start=1):
        assert when - made >= (taken - 5) / 200 - 1e-3, f"token {taken} taken {when - made:.4f} s after the start"
    # 5 at once, then 40 more at 200/s: about 0.2 s
    assert times[-1] - made >= 40 / 200 - 1e-3


def test_a_slower_rate_applies_at_once_to_those_already_waiting():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=1, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    bucket.rate = bucket.max_rate = 1  # e.g. cut by throttling while others queue
    waited = bucket.acquire()
    assert waited == pytest.approx(1.0)


def test_a_cluster_of_throttles_slows_the_rate_and_it_recovers():
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=100, clock=clock, sleep=clock.sleep)
    bucket.throttled()
    bucket.throttled()
    assert bucket.rate == 20  # isolated throttles: botocore's retries are enough
    bucket.throttled()  # the third within 2 s: someone else is using the quota
    assert bucket.rate == 15 and bucket.decreases == 1
    clock.now += 1.0
    bucket.acquire()
    assert bucket.rate == pytest.approx(16.0)  # recovers at 5% of the maximum per second
    clock.now += 60
    bucket.acquire()
    assert bucket.rate == 20


def test_throttles_spread_out_do_not_slow_it():
    clock = FakeClock()
    bucket = TokenBucket(rate=20, burst=100, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        bucket.throttled()
        clock.now += 1.5
    assert bucket.rate == 20 and bucket.decreases == 0


def test_rate_never_drops_below_one_per_second():
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=1, clock=clock, sleep=clock.sleep)
    for _ in range(30):
        bucket.throttled()
    assert bucket.rate == 1.0


def test_waiting_is_cancelled_when_the_run_terminates():
    clock = FakeClock()
    bucket = TokenBucket(rate=0.1, burst=1, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    with pytest.raises(LaunchCancelled):
        bucket.acquire(cancelled=lambda: clock.now > 3)
    assert clock.now < 5  # gave up within a second of being told, not after its 10 s slot


def test_bad_parameters():
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(rate=0, burst=10)
