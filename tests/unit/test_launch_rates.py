"""The launcher's AIMD rate control, as pure functions (no clock, no threads)."""

from miniwdl_fargate.backend.launcher import decreased_rate, recovered_rate


def test_a_cluster_of_throttles_cuts_the_rate_by_the_factor_not_below_the_floor():
    assert decreased_rate(20.0, 0.5) == 10.0
    assert decreased_rate(1.5, 0.5) == 1.0
    assert decreased_rate(4.0, 0.5, floor=0.25) == 2.0


def test_the_rate_climbs_back_by_the_same_step_per_second_up_to_its_maximum():
    assert recovered_rate(10.0, 19.5, elapsed=2.0, step=0.5) == 11.0
    assert recovered_rate(19.0, 19.5, elapsed=10.0, step=0.5) == 19.5
    assert recovered_rate(10.0, 19.5, elapsed=-1.0, step=0.5) == 10.0  # a clock going back adds nothing


def test_drivers_sharing_a_quota_converge_on_equal_shares():
    """Two drivers, one far ahead: each round both climb by the same step until together they
    exceed the quota, and then each is throttled and cut by the same factor. The gap between them
    shrinks by that factor at every cut."""
    quota, rates = 20.0, [19.5, 1.0]
    gaps = []
    for _ in range(1000):
        rates = [recovered_rate(r, 19.5, elapsed=0.1, step=1.0) for r in rates]
        if sum(rates) > quota:
            rates = [decreased_rate(r, 0.75) for r in rates]
            gaps.append(abs(rates[0] - rates[1]))
    assert len(gaps) > 5
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 0.05 * gaps[0]


def test_scattered_throttles_are_noise_and_a_cluster_among_few_launches_is_contention():
    from miniwdl_fargate.backend.launcher import is_contention

    assert not is_contention(throttles=2, attempts=2)  # fewer than the cluster
    assert not is_contention(throttles=3, attempts=39)  # 1 in 13 launches at 19.5/s: ECS's noise
    assert is_contention(throttles=4, attempts=39)
    assert is_contention(throttles=3, attempts=0)  # throttled with nothing sent: someone else
    assert is_contention(throttles=3, attempts=10, share=0.3)


def test_a_bucket_does_not_slow_down_for_a_few_throttles_among_many_launches():
    from miniwdl_fargate.backend.launcher import TokenBucket

    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

    clock = Clock()
    bucket = TokenBucket(rate=20, burst=100, clock=clock, sleep=clock.sleep)
    for _ in range(38):
        bucket.acquire()
        clock.now += 0.05
    for _ in range(3):
        bucket.throttled()
    assert bucket.decreases == 0 and bucket.rate == 20
    for _ in range(2):
        bucket.throttled()
    assert bucket.decreases == 1 and bucket.rate == 15


def test_waiting_threads_check_every_second_while_few_wait_and_about_100_times_a_second_in_all():
    from miniwdl_fargate.backend.launcher import check_interval

    assert check_interval(0) == 1.0
    assert check_interval(100) == 1.0
    assert check_interval(1000) == 10.0  # 1,000 threads each every 10 s: 100 wakes a second
    assert check_interval(2000) == 20.0
    assert check_interval(100000) == 30.0
