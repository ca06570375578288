"""RunTask at the rate ECS allows, and through the failures it answers with.

One ``Launcher`` per driver process, shared by every task thread:

- a token bucket matching the account's Fargate quotas (default: bursts of 100, then 19.8 per second,
  a little under the 20/s quota), so a 2,000-task scatter launches as fast as ECS lets it. Every
  RunTask *attempt* takes a token, botocore's own retries included (a ``before-send`` hook on the
  client), so retries never push the account over its quota;
- ``ThrottlingException``: botocore's "standard" retry mode retries it with jittered backoff; when
  throttles come in clusters (another driver shares the quota) the bucket slows down
  (multiplicative decrease) and recovers gradually; if botocore gives up (its retry quota drains
  when many threads are throttled at once) the launcher backs off with full jitter and tries again;
- ``failures[]`` in a 200 answer (Fargate capacity): retried with backoff, narrowing the request
  to one subnet at a time in turn; a Spot request that finds no capacity in any subnet falls back
  to on-demand FARGATE; the account's concurrent vCPU quota in use: waited out, however long
  (the run's other tasks will free it), unless the task needs more vCPUs than the whole quota
  (asked of Service Quotas once, at the first such answer): it fails at once saying so, a Spot
  task goes On-Demand;
- no answer (the connection broke, a read timed out, a 5xx) once botocore's retries are spent:
  sent again with the same ``clientToken`` and parameters, so a request ECS did handle returns
  the task it started rather than starting a second one. Each new round after a definite "not
  started" answer (throttled, no capacity, another subnet or Spot fallback) gets a token of its
  own (derived from the request's), since ECS answers ConflictException to a token reused with
  other parameters (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/ECS_Idempotency.html);
- anything else (a bad request, a missing cluster, access denied) fails at once, saying why.
"""

from __future__ import annotations

import collections
import copy
import logging
import random
import threading
import time
from typing import Any, Callable

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..aws import error_code, throttled
from ..limits import LaunchCancelled, check_interval  # (one story for a stopped wait: the run's gate's too)

log = logging.getLogger(__name__)

# Fargate: "Capacity is unavailable at this time. Please try again later or in a different availability zone"
CAPACITY_MARKERS = ("capacity",)
# the account's concurrent Fargate vCPU quota: "You've reached the limit on the number of vCPUs you
# can run concurrently". Other tasks of the run will finish and free vCPUs: wait, however long.
QUOTA_MARKERS = ("limit on the number of vcpus",)
#: the account's concurrent vCPU quota of each Fargate placement: (Service Quotas' quota code, its
#: name) under service code "fargate" (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-quotas.html);
#: a Managed Instances capacity provider's tasks count against EC2's quotas instead (none here)
VCPU_QUOTAS = {
    "FARGATE": ("L-3032A538", "Fargate On-Demand vCPU resource count"),
    "FARGATE_SPOT": ("L-36FBB829", "Fargate Spot vCPU resource count"),
}


def decreased_rate(rate: float, factor: float, floor: float = 1.0) -> float:
    """The launch rate after a cluster of throttles: multiplied by ``factor`` (< 1), not below
    ``floor``. Every driver sharing an account's quota is throttled in proportion to what it
    sends, so the fastest gives up the most: with ``recovered_rate``, an AIMD controller, and
    drivers sharing one quota converge on equal shares of it."""
    return max(floor, rate * factor)


def recovered_rate(rate: float, max_rate: float, elapsed: float, step: float) -> float:
    """The launch rate ``elapsed`` seconds later: ``step`` per second more (the same for every
    driver, whatever its rate), up to ``max_rate``."""
    return min(max_rate, rate + max(0.0, elapsed) * step)


def is_contention(throttles: int, attempts: int, cluster: int = 3, share: float = 0.1) -> bool:
    """Whether ``throttles`` among ``attempts`` (both within the recent window) say someone else
    is using the quota: at least ``cluster`` of them, and at least ``share`` of the attempts. A
    few throttles scattered among many launches are ECS's own noise: botocore's retries are
    enough, and slowing down for them would only lose launch slots."""
    return throttles >= cluster and throttles >= share * attempts


class TokenBucket:
    """Thread-safe token bucket: ``rate`` tokens per second, at most ``burst`` saved up.

    Waiters queue in FIFO order and only the head of the queue sleeps on the clock, for the time
    until the next token at the *current* rate; it hands the head on when it leaves. So a
    thousand threads waiting to launch cost one timed wait, not a stampede, a rate change applies
    at once to everyone waiting, and a late wake-up never turns into a burst beyond ``burst``.

    ``throttled()`` reports a throttle from the server: a cluster of them (``cluster`` within
    ``window`` seconds, and at least ``share`` of the tokens taken in that window:
    ``is_contention``) cuts the rate by ``decrease`` (not below 1/s); the rate then climbs back
    to its maximum at ``recovery`` x maximum per second.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        cluster: int = 3,
        window: float = 2.0,
        decrease: float = 0.75,
        recovery: float = 0.05,
        share: float = 0.1,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"token bucket needs rate > 0 and burst >= 1 (got rate={rate}, burst={burst})")
        self.max_rate = self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()
        self._queue: collections.deque[threading.Event] = collections.deque()
        self._cluster, self._window, self._decrease, self._recovery = cluster, window, decrease, recovery
        self._share = share
        self._throttles: collections.deque[float] = collections.deque()
        #: when each token of the last ``window`` seconds was taken
        self._taken: collections.deque[float] = collections.deque()
        self.decreases = 0

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self.rate = recovered_rate(self.rate, self.max_rate, elapsed, self.max_rate * self._recovery)
        self._stamp = now

    def acquire(self, cancelled: Callable[[], bool] | None = None) -> float:
        """Take one token, waiting for it in turn; return the seconds waited. Raises
        LaunchCancelled if ``cancelled()`` turns true while waiting: the head of the queue checks
        every second, and when it leaves the next one checks at once, so a run's termination
        empties the queue in a chain; the others also check every ``check_interval`` of the
        queue's length."""
        started = self._clock()
        me = threading.Event()
        with self._lock:
            self._queue.append(me)
            if self._queue[0] is me:
                me.set()
        try:
            while True:
                if cancelled is not None and cancelled():
                    raise LaunchCancelled()
                if not me.wait(check_interval(len(self._queue))):
                    continue  # not at the head of the queue yet
                with self._lock:
                    self._refill(self._clock())
                    if self._tokens >= 1 - 1e-9:  # (tolerance: float drift must not spin)
                        self._tokens -= 1
                        self._taken.append(self._clock())
                        self._forget_before(self._taken, self._clock() - self._window)
                        return self._clock() - started
                    delay = (1 - self._tokens) / self.rate
                self._sleep(min(delay, 1.0))
        finally:
            with self._lock:
                at_head = self._queue[0] is me
                self._queue.remove(me)
                if at_head and self._queue:
                    self._queue[0].set()

    @staticmethod
    def _forget_before(times: collections.deque[float], cutoff: float) -> None:
        while times and times[0] < cutoff:
            times.popleft()

    def throttled(self) -> None:
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._throttles.append(now)
            self._forget_before(self._throttles, now - self._window)
            self._forget_before(self._taken, now - self._window)
            if is_contention(len(self._throttles), len(self._taken), self._cluster, self._share):
                self._throttles.clear()
                self.rate = decreased_rate(self.rate, self._decrease)
                self._tokens = min(self._tokens, 0.0)
                self.decreases += 1
                log.warning("RunTask throttled repeatedly: launching at %.1f/s for now", self.rate)


class LaunchFailed(RuntimeError):
    """RunTask could not start the task; the message says why."""

    def __init__(self, message: str, capacity: bool = False) -> None:
        super().__init__(message)
        self.capacity = capacity


def is_unanswered(exn: BaseException) -> bool:
    """Whether RunTask may have been handled though no answer came back: the connection failed
    or ECS answered with a server error."""
    if isinstance(exn, (BotoConnectionError, HTTPClientError)):
        return True
    return isinstance(exn, ClientError) and exn.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500


def round_token(base: str, round_: int) -> str:
    """The clientToken of the ``round_``-th new RunTask round of one launch (at most 64 chars)."""
    return base if round_ == 0 else f"{base[:56]}.{round_}"


def is_capacity_failure(failure: dict[str, Any]) -> bool:
    text = f"{failure.get('reason', '')} {failure.get('detail', '')}".lower()
    return any(marker in text for marker in CAPACITY_MARKERS)


def is_quota_failure(failure: dict[str, Any]) -> bool:
    text = f"{failure.get('reason', '')} {failure.get('detail', '')}".lower()
    return any(marker in text for marker in QUOTA_MARKERS)


#: seconds before a vCPU quota Service Quotas did not answer is asked for again
QUOTA_ASKED_AGAIN_SECONDS = 300

SPOT = "FARGATE_SPOT"
#: quota waits of a Spot request before it falls back to On-Demand (whose quota is another)
SPOT_QUOTA_WAITS = 3


def task_vcpus(request: dict[str, Any]) -> float | None:
    """The vCPUs a RunTask request's task asks for (its overrides' task-level cpu units), or None."""
    try:
        return int(request["overrides"]["cpu"]) / 1024
    except (KeyError, TypeError, ValueError):
        return None


def read_vcpu_quota(client: Any, placement: str, default: bool = False) -> float | None:
    """The account's concurrent vCPU quota for tasks placed on ``placement`` (FARGATE or
    FARGATE_SPOT) in this region, through ``client`` (a service-quotas client): its applied
    value; with ``default``, where none was ever applied (NoSuchResourceException), AWS's
    default, which "does not reflect any quota increases"
    (https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_GetServiceQuota.html,
    https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_GetAWSDefaultServiceQuota.html):
    good for a share to hold back to, never for saying a task can never fit. None for a
    placement with no Fargate quota. Raises what Service Quotas raised: the caller decides what
    an unread quota means (``aws.passing`` tells one that may be read later)."""
    code = VCPU_QUOTAS.get(placement)
    if code is None:
        return None
    try:
        return float(client.get_service_quota(ServiceCode="fargate", QuotaCode=code[0])["Quota"]["Value"])
    except ClientError as exn:
        if not default or error_code(exn) != "NoSuchResourceException":
            raise
    return float(client.get_aws_default_service_quota(ServiceCode="fargate", QuotaCode=code[0])["Quota"]["Value"])


def account_vcpu_quota(client: Any, placement: str, logger: logging.Logger | None = None) -> float | None:
    """``read_vcpu_quota``'s applied value, or None when there is none or it cannot be read (no
    permission, no route to the endpoint, throttled): the caller then waits as it would, and
    asks again later (a task is failed as never fitting only by a quota the account has)."""
    try:
        return read_vcpu_quota(client, placement)
    except Exception as exn:  # (best effort: never what fails a launch)
        (logger or log).info("could not read the account's %s from Service Quotas (%s); waiting as usual", VCPU_QUOTAS[placement][1], exn)
        return None


def describe_placement(request: dict[str, Any]) -> str:
    """Where a RunTask request places its task: its launch type, or its capacity provider."""
    strategy = request.get("capacityProviderStrategy") or []
    return str(request.get("launchType") or (strategy[0].get("capacityProvider") if strategy else "the default capacity"))


class Launcher:
    def __init__(
        self,
        client: Any,
        rate: float = 19.8,
        burst: float = 100,
        capacity_retries: int = 12,
        throttle_retries: int = 30,
        unanswered_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        spot_fallbacks: dict[str, dict[str, Any]] | None = None,
        vcpu_quota: Callable[[str], float | None] | None = None,
        own_vcpus: Callable[[], float | None] | None = None,
    ) -> None:
        """``client``: the boto3 ECS client RunTask goes through (its events get the hooks).
        ``spot_fallbacks``: by Spot capacity provider, the RunTask fields that place a task
        On-Demand instead once no subnet has Spot capacity (FARGATE_SPOT's, launchType FARGATE,
        always; the managed-instances Spot provider's, its On-Demand provider).
        ``vcpu_quota``: the account's whole concurrent vCPU quota of a placement (FARGATE,
        FARGATE_SPOT), or None if unknown; asked once a placement, at its first quota answer.
        ``own_vcpus``: what of the On-Demand quota the process's own task holds (a pipeline
        driver's size; 0 elsewhere), asked with it."""
        self._client = client
        self._vcpu_quota = vcpu_quota
        self._own_vcpus = own_vcpus
        #: what was asked of AWS to word a quota error (a placement's quota, the driver's vCPUs):
        #: the answer and when it was asked (``_asked``)
        self._answers: dict[str, tuple[float | None, float]] = {}
        self.spot_fallbacks = {SPOT: {"launchType": "FARGATE"}, **(spot_fallbacks or {})}
        # recovering at 2% of the maximum per second: with ten drivers sharing a quota, 5% had
        # them climb back over it within a second of every cut (40% of RunTask calls throttled)
        self.bucket = TokenBucket(rate, burst, clock=clock, sleep=sleep, recovery=0.02)
        self.capacity_retries = capacity_retries
        self.throttle_retries = throttle_retries
        self.unanswered_retries = unanswered_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._lock = threading.Lock()
        self._quota_lock = threading.Lock()  # (one Service Quotas question at a time)
        self._local = threading.local()
        #: counters read by tests, logs and the benchmark
        self.stats = {
            "attempts": 0, "launched": 0, "throttled": 0, "capacity_failures": 0, "quota_waits": 0, "spot_fallbacks": 0,
            "unanswered": 0,
        }
        events = client.meta.events
        events.register("before-send.ecs.RunTask", self._before_send)
        events.register("needs-retry.ecs.RunTask", self._after_attempt)

    def close(self) -> None:
        """Take the hooks off the client."""
        events = self._client.meta.events
        events.unregister("before-send.ecs.RunTask", self._before_send)
        events.unregister("needs-retry.ecs.RunTask", self._after_attempt)

    def _maybe_fall_back(self, request: dict[str, Any], everywhere: bool, logger: logging.Logger, what: str = "capacity") -> None:
        """A Spot request that found no capacity in any subnet (``everywhere``; or waited
        ``SPOT_QUOTA_WAITS`` times on Spot's own vCPU quota) is placed On-Demand from now on
        (``spot_fallbacks``), in place."""
        strategy = request.get("capacityProviderStrategy") or []
        provider = next((s.get("capacityProvider") for s in strategy if s.get("capacityProvider") in self.spot_fallbacks), None)
        if provider is None or not everywhere:
            return
        request.pop("capacityProviderStrategy")
        request.update(copy.deepcopy(self.spot_fallbacks[provider]))
        self._count("spot_fallbacks")
        where = "in any subnet" if what == "capacity" else "left"
        logger.warning("no %s %s %s; falling back to on-demand %s", provider, what, where, describe_placement(request))

    def _whole_quota(self, placement: str) -> float | None:
        """The account's whole vCPU quota of ``placement`` (asked once; None: unknown, asked
        again after ``QUOTA_ASKED_AGAIN_SECONDS``: a throttled or timed-out question)."""
        if self._vcpu_quota is None or placement not in VCPU_QUOTAS:
            return None
        ask = self._vcpu_quota
        return self._asked(placement, lambda: ask(placement))

    def _asked(self, what: str, ask: Callable[[], float | None]) -> float | None:
        """``ask()``'s answer, asked once (one question at a time); None (no answer: throttled,
        timed out) is asked again after ``QUOTA_ASKED_AGAIN_SECONDS``."""
        with self._quota_lock:
            known, asked = self._answers.get(what, (None, None))
            if asked is None or (known is None and time.monotonic() - asked > QUOTA_ASKED_AGAIN_SECONDS):
                known = ask()
                self._answers[what] = (known, time.monotonic())
            return known

    def _never_fits(self, request: dict[str, Any], logger: logging.Logger) -> bool:
        """After a quota answer: whether the task needs more vCPUs than the placement's whole
        quota, so no wait would ever start it. A Spot task is then placed On-Demand (True: try
        again now); an On-Demand one fails, saying what to ask for."""
        placement, vcpus = describe_placement(request), task_vcpus(request)
        quota = self._whole_quota(placement)
        if vcpus is None or quota is None:
            return False
        held = 0.0
        if placement == "FARGATE" and self._own_vcpus is not None:  # (the driver runs On-Demand, on the same quota)
            held = self._asked("the driver's vCPUs", self._own_vcpus) or 0.0
        if vcpus <= quota - held:
            return False
        code, name = VCPU_QUOTAS[placement]
        if any(s.get("capacityProvider") in self.spot_fallbacks for s in request.get("capacityProviderStrategy") or []):
            logger.warning("the task needs %g vCPUs, more than the account's whole %s (%g)", vcpus, name, quota)
            self._maybe_fall_back(request, True, logger, "vCPU quota")
            return True
        driver = f", of which this run's driver holds {held:g}" if held else ""
        raise LaunchFailed(
            f"the task needs {vcpus:g} vCPUs, more than this account's whole Fargate vCPU quota in this region "
            f"(Service Quotas: \"{name}\", service code fargate, quota code {code}: {quota:g}{driver}): it could never start. "
            f"Ask for fewer vCPUs or less memory (runtime cpu, memory: Fargate's sizes tie the two, so memory alone can "
            f"take more vCPUs: more than 30 GiB takes 8, more than 60 GiB 16), or for a larger quota "
            f"(aws service-quotas request-service-quota-increase "
            f"--service-code fargate --quota-code {code} --desired-value {max(vcpus + held, quota * 2):g})"
        )

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    # botocore hooks: every HTTP attempt of RunTask, retries included

    def _before_send(self, **kwargs: Any) -> None:
        self.bucket.acquire(getattr(self._local, "cancelled", None))
        self._count("attempts")
        return None  # let botocore send the request

    def _after_attempt(self, response: Any = None, **kwargs: Any) -> None:
        parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else None
        if isinstance(parsed, dict) and throttled(parsed):
            self._count("throttled")
            self.bucket.throttled()
        return None  # botocore's retry handler decides

    def _backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff (attempt 1, 2, ...)."""
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))

    def _wait(self, seconds: float, cancelled: Callable[[], bool] | None) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if cancelled is not None and cancelled():
                raise LaunchCancelled()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._sleep(min(left, 1.0))

    def launch(
        self,
        request: dict[str, Any],
        logger: logging.Logger | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """RunTask ``request`` (count 1) until the task is accepted; return its description.

        Capacity retries narrow the request to one subnet at a time, cycling through them; a
        FARGATE_SPOT request switches to on-demand FARGATE once every subnet has been tried
        without capacity (``request`` is updated in place, so the caller sees what ran)."""
        logger = logger or log
        subnets = list(request.get("networkConfiguration", {}).get("awsvpcConfiguration", {}).get("subnets", []))
        throttles = capacity = quota = unanswered = rounds = 0
        base_token = request.get("clientToken")
        self._local.cancelled = cancelled
        try:
            while True:
                if base_token:
                    request["clientToken"] = round_token(base_token, rounds)
                try:
                    response = self._client.run_task(**request)
                except (ClientError, BotoConnectionError, HTTPClientError) as exn:
                    if is_unanswered(exn) and base_token:
                        unanswered += 1  # the same token again: a handled request returns its task
                        self._count("unanswered")
                        if unanswered > self.unanswered_retries:
                            raise LaunchFailed(
                                f"ECS RunTask did not answer after {unanswered} tries (clientToken "
                                f"{request['clientToken']}; a task it may have started carries the run's tags): {exn}"
                            ) from exn
                        delay = self._backoff(unanswered)
                        logger.warning("RunTask got no answer (%s); sending it again with the same clientToken in %.1fs", exn, delay)
                        self._wait(delay, cancelled)
                        continue
                    rounds += 1
                    if not isinstance(exn, ClientError) or not throttled(exn):
                        raise LaunchFailed(f"ECS RunTask refused the task: {exn}") from exn
                    throttles += 1  # botocore's retries are spent: back off ourselves
                    if throttles > self.throttle_retries:
                        raise LaunchFailed(f"ECS RunTask still throttled after {throttles} rounds of retries: {exn}") from exn
                    delay = self._backoff(throttles)
                    logger.warning("RunTask throttled (round %d); retrying in %.1fs", throttles, delay)
                    self._wait(delay, cancelled)
                    continue
                failures = response.get("failures") or []
                tasks = response.get("tasks") or []
                if tasks and not failures:
                    self._count("launched")
                    return tasks[0]
                rounds += 1
                if failures and all(is_quota_failure(f) for f in failures):
                    if self._never_fits(request, logger):
                        continue  # (placed On-Demand: asked again now)
                    quota += 1
                    self._count("quota_waits")
                    # Spot's vCPU quota is its own ("Fargate Spot vCPU resource count"): a Spot
                    # task held back by it runs On-Demand instead, as one without Spot capacity does
                    # (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-quotas.html)
                    self._maybe_fall_back(request, quota >= SPOT_QUOTA_WAITS, logger, "vCPU quota")
                    delay = self._backoff(min(quota, 7))
                    log_ = logger.warning if quota == 1 or quota % 10 == 0 else logger.info
                    log_("the account's Fargate vCPU quota is in use (attempt %d: %s); retrying in %.0fs (Service Quotas, "
                         "\"Fargate On-Demand vCPU resource count\" and \"Fargate Spot vCPU resource count\")",
                         quota, failures[0].get("reason"), delay)
                    self._wait(delay, cancelled)
                    continue
                if not failures or not all(is_capacity_failure(f) for f in failures):
                    raise LaunchFailed(f"ECS RunTask failed: {failures or 'no task in the answer'}")
                capacity += 1
                self._count("capacity_failures")
                if capacity > self.capacity_retries:
                    raise LaunchFailed(
                        f"no Fargate capacity after {capacity} attempts across subnets {subnets}: {failures}",
                        capacity=True,
                    )
                self._maybe_fall_back(request, capacity > len(subnets), logger)
                if len(subnets) > 1:
                    chosen = [subnets[(capacity - 1) % len(subnets)]]
                    request["networkConfiguration"]["awsvpcConfiguration"]["subnets"] = chosen
                delay = self._backoff(capacity)
                logger.warning(
                    "no Fargate capacity (attempt %d: %s); retrying in %.1fs in subnets %s",
                    capacity, failures[0].get("reason"), delay,
                    request["networkConfiguration"]["awsvpcConfiguration"]["subnets"] if subnets else "-",
                )
                self._wait(delay, cancelled)
        finally:
            self._local.cancelled = None
