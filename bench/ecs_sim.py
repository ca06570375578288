"""A simulated ECS endpoint that enforces the account quotas, for the benchmark and tests.

It speaks the ECS JSON protocol (what botocore sends), so the real backend code runs against it
unchanged with ``AWS_ENDPOINT_URL_ECS`` pointing here. It executes nothing: a task is a timeline
(PROVISIONING -> PENDING -> RUNNING -> STOPPED) computed from its launch time, a configurable start
latency and run time. It enforces, with token buckets, the quotas in ../shared/DESIGN.md:

- RunTask: 20 calls/s (burst 100); Fargate task launches: 20/s (burst 100) -> ThrottlingException
- DescribeTasks: at most 100 tasks per call (InvalidParameterException); reads 20/s (burst 100)
- RegisterTaskDefinition: 1/s (burst 1)

and injects faults on demand: throttles, "Capacity is unavailable" failures[], Spot
interruptions, tasks that fail to start (image pull errors among them), tasks DescribeTasks
never knows, RunTask answers lost after the task was started; either at random rates (seeded)
or as a script of outcomes for the next RunTask calls. Like ECS it is eventually consistent if
asked (``missing_describes``: a new task is MISSING for its first DescribeTasks) and honours
RunTask's ``clientToken`` (the same token and parameters in a cluster return the same task;
other parameters: ConflictException). It records every call for the benchmark's figures.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

ACCOUNT = "123456789012"
REGION = "us-east-1"
CAPACITY_REASON = "Capacity is unavailable at this time. Please try again later or in a different availability zone"
#: the account's concurrent Fargate vCPU quota reached (a "quota" script outcome)
QUOTA_REASON = "You've reached the limit on the number of vCPUs you can run concurrently"
#: stoppedReason of the script outcomes of a task that fails to start ("pull_*", "start_*"), as
#: Fargate words them
FAILED_STARTS = {
    "pull_rate_limit": (
        "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref "
        "docker.io/library/ubuntu:22.04: unexpected status code 429 Too Many Requests - Server message: "
        "toomanyrequests: You have reached your pull rate limit."
    ),
    "pull_timeout": (
        "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to do request: "
        "Head \"https://registry-1.docker.io/v2/library/ubuntu/manifests/22.04\": dial tcp 10.0.3.17:443: i/o timeout"
    ),
    "pull_not_found": (
        "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref "
        "docker.io/library/ubuntu:no-such-tag: docker.io/library/ubuntu:no-such-tag: not found"
    ),
    "start_no_shell": (
        "CannotStartContainerError: Error response from daemon: failed to create shim task: OCI runtime create failed: "
        "runc create failed: unable to start container process: exec: \"/bin/sh\": stat /bin/sh: no such file or "
        "directory: unknown"
    ),
}


class Bucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self, n: float = 1) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= n:
                self.tokens -= n
                return True
            return False


@dataclass
class Faults:
    """What goes wrong. Rates are per RunTask call (throttle, capacity, fail_to_start) or per
    Spot task (spot_interruption); ``script`` overrides them for the next calls, in order:
    "throttle", "capacity", "quota", "fail_to_start", "spot_interruption", "ok", "missing_forever" (a
    task DescribeTasks never knows) and the keys of FAILED_STARTS (the task stops failing to start:
    its image cannot be pulled, or run). ``lost_answers``: the next N successful RunTask answers
    (a repeat of a handled request included) are lost: the request is handled, then the
    connection closes."""

    throttle_rate: float = 0.0
    capacity_rate: float = 0.0
    fail_to_start_rate: float = 0.0
    spot_interruption_rate: float = 0.0
    script: deque = field(default_factory=deque)
    lost_answers: int = 0
    seed: int = 7


@dataclass
class SimTask:
    arn: str
    cluster: str
    task_definition: str
    overrides: dict[str, Any]
    capacity: str
    tags: list[dict[str, str]]
    started_by: str
    group: str
    created: float  # wall clock (epoch seconds)
    start_latency: float
    run_time: float
    exit_code: int | None = 0
    stop_code: str = "EssentialContainerExited"
    stopped_reason: str = "Essential container in task exited"
    container_reason: str = ""  # e.g. "OutOfMemoryError: Container killed due to memory usage"
    stop_requested: float | None = None
    noticed: float | None = None  # first DescribeTasks answer showing it STOPPED
    hidden_describes: int = 0  # DescribeTasks answers still to say MISSING (-1: always)

    @property
    def stopped_at(self) -> float:
        natural = self.created + self.start_latency + self.run_time
        if self.stop_requested is not None:
            return min(natural, self.stop_requested + 1.0)
        return natural

    def status(self, now: float) -> str:
        if now >= self.stopped_at:
            return "STOPPED"
        if now >= self.created + self.start_latency:
            return "RUNNING"
        if now >= self.created + self.start_latency / 2:
            return "PENDING"
        return "PROVISIONING"

    def describe(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        container: dict[str, Any] = {"name": "task", "lastStatus": status, "containerArn": self.arn + "/c"}
        desc: dict[str, Any] = {
            "taskArn": self.arn,
            "clusterArn": self.cluster,
            "taskDefinitionArn": self.task_definition,
            "lastStatus": status,
            "desiredStatus": "STOPPED" if self.stop_requested or status == "STOPPED" else "RUNNING",
            "createdAt": self.created,
            "capacityProviderName": self.capacity,
            "launchType": "FARGATE",
            "overrides": self.overrides,
            "startedBy": self.started_by,
            "group": self.group,
            "tags": self.tags,
            "version": {"PROVISIONING": 1, "PENDING": 2, "RUNNING": 3, "STOPPED": 4}[status],
            "cpu": self.overrides.get("cpu", "1024"),
            "memory": self.overrides.get("memory", "2048"),
            "containers": [container],
        }
        if status != "PROVISIONING" and self.stop_code != "TaskFailedToStart":
            desc["pullStartedAt"] = self.created + self.start_latency / 2
        if status in ("RUNNING", "STOPPED") and self.stop_code != "TaskFailedToStart":
            desc["startedAt"] = self.created + self.start_latency
        if status == "STOPPED":
            desc.update(stopCode=self.stop_code, stoppedReason=self.stopped_reason, stoppedAt=self.stopped_at)
            if self.exit_code is not None:
                container["exitCode"] = self.exit_code
            if self.container_reason:
                container["reason"] = self.container_reason
        return desc


class SimulatedECS:
    def __init__(
        self,
        start_latency: tuple[float, float] = (1.0, 3.0),
        run_time: tuple[float, float] = (5.0, 5.0),
        faults: Faults | None = None,
        run_task_quota: tuple[float, float] = (20, 100),
        launch_quota: tuple[float, float] = (20, 100),
        describe_quota: tuple[float, float] = (20, 100),
        register_quota: tuple[float, float] = (1, 1),
        behaviour: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        missing_describes: int = 0,
    ) -> None:
        """``behaviour(run_task_request)`` may return {"exit_code": int, "run_time": seconds,
        "container_reason": str, "stop_code": str, "stopped_reason": str} to make a task do
        something else than exit 0 after ``run_time`` (``container_reason`` "OutOfMemoryError: ..." with exit code 137 is how
        Fargate reports a container killed for exceeding its memory)."""
        self.start_latency = start_latency
        self.run_time = run_time
        self.faults = faults or Faults()
        self._random = random.Random(self.faults.seed)
        self.buckets = {
            "RunTask": Bucket(*run_task_quota),
            "launch": Bucket(*launch_quota),
            "read": Bucket(*describe_quota),
            "RegisterTaskDefinition": Bucket(*register_quota),
        }
        self.behaviour = behaviour
        #: DescribeTasks calls that answer MISSING for each new task (eventual consistency)
        self.missing_describes = missing_describes
        #: (cluster, clientToken) -> (the request without its token, the task's ARN)
        self.client_tokens: dict[tuple[str, str], tuple[str, str]] = {}
        self.missing_answers = 0  # DescribeTasks answers of MISSING, for tests
        self.lock = threading.Lock()
        self.tasks: dict[str, SimTask] = {}
        self.task_definitions: dict[str, dict[str, Any]] = {}
        #: (wall time, operation, tasks in the call, outcome)
        self.calls: list[tuple[float, str, int, str]] = []
        #: who made each call of ``calls`` (the startedBy of the tasks it named; "" if none)
        self.call_clients: list[str] = []
        #: every RunTask request as received (copies), for tests
        self.run_task_requests: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None

    # -- HTTP ------------------------------------------------------------------------------------

    def start(self) -> str:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)) or 0)
                op = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                status, answer = sim.handle(op, json.loads(body or b"{}"))
                if sim._answer_lost(op, status):
                    self.close_connection = True  # handled, but the client never hears of it
                    return
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # (serve_forever looks for a shutdown every poll_interval: 0.5 s by default, which every
        # stop waited out)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, name="ecs-sim", daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # -- the API ---------------------------------------------------------------------------------

    def _answer_lost(self, op: str, status: int) -> bool:
        with self.lock:
            if op == "RunTask" and status == 200 and self.faults.lost_answers > 0:
                self.faults.lost_answers -= 1
                return True
            return False

    def _record(self, op: str, n: int, outcome: str, client: str = "") -> None:
        with self.lock:
            self.calls.append((time.time(), op, n, outcome))
            self.call_clients.append(client)

    def _client_of(self, arns: list[str]) -> str:
        """The startedBy of the first task named that the simulator knows ("" if none)."""
        with self.lock:
            for arn in arns:
                task = self.tasks.get(arn)
                if task is not None:
                    return task.started_by
        return ""

    @staticmethod
    def _error(code: str, message: str) -> tuple[int, dict[str, Any]]:
        return 400, {"__type": code, "message": message}

    def handle(self, op: str, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            return self._error("InvalidParameterException", f"simulated ECS does not implement {op}")
        return handler(req)

    def _throttled(self, op: str, bucket: str, n: int = 1, client: str = "") -> tuple[int, dict[str, Any]] | None:
        if not self.buckets[bucket].take():
            self._record(op, n, "throttled", client)
            return self._error("ThrottlingException", "Rate exceeded")
        return None

    def op_RegisterTaskDefinition(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        throttled = self._throttled("RegisterTaskDefinition", "RegisterTaskDefinition")
        if throttled:
            return throttled
        family = req["family"]
        with self.lock:
            revision = 1 + sum(1 for td in self.task_definitions.values() if td["family"] == family)
            arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}"
            td = dict(req, taskDefinitionArn=arn, revision=revision, status="ACTIVE")
            self.task_definitions[arn] = td
        self._record("RegisterTaskDefinition", 0, "ok")
        return 200, {"taskDefinition": td}

    def op_DescribeTaskDefinition(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = req["taskDefinition"]
        with self.lock:
            found = [td for arn, td in self.task_definitions.items() if arn == name or td["family"] == name]
        self._record("DescribeTaskDefinition", 0, "ok" if found else "missing")
        if not found:
            return self._error("ClientException", "Unable to describe task definition.")
        return 200, {"taskDefinition": max(found, key=lambda td: td["revision"])}

    def _next_fault(self, spot: bool) -> str:
        f = self.faults
        with self.lock:
            if f.script:
                return f.script.popleft()
            roll = self._random.random()
            spot_roll = self._random.random()
        if roll < f.throttle_rate:
            return "throttle"
        if roll < f.throttle_rate + f.capacity_rate:
            return "capacity"
        if roll < f.throttle_rate + f.capacity_rate + f.fail_to_start_rate:
            return "fail_to_start"
        if spot and spot_roll < f.spot_interruption_rate:
            return "spot_interruption"
        return "ok"

    def _same_token(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """A RunTask whose clientToken this cluster has seen: the task it started (same
        parameters) or ConflictException (other parameters)."""
        token = req.get("clientToken")
        if not token:
            return None
        key = (req.get("cluster", "default"), token)
        params = json.dumps({k: v for k, v in req.items() if k != "clientToken"}, sort_keys=True)
        with self.lock:
            seen = self.client_tokens.get(key)
            if seen is None:
                return None
            task = self.tasks[seen[1]]
        if seen[0] != params:
            self._record("RunTask", 0, "conflict")
            return 400, {"__type": "ConflictException", "message": "The clientToken is already in use with a different RunTask request.", "resourceIds": [task.arn]}
        self._record("RunTask", 0, "idempotent")
        return 200, {"tasks": [task.describe(time.time())], "failures": []}

    def op_RunTask(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.run_task_requests.append(json.loads(json.dumps(req)))
        repeated = self._same_token(req)
        if repeated is not None:
            return repeated
        strategy = req.get("capacityProviderStrategy") or []
        if strategy and req.get("launchType"):
            return self._error("InvalidParameterException", "Specify either Launch Type or Capacity Provider Strategy, but not both.")
        if req.get("taskDefinition") not in self.task_definitions:
            return self._error("ClientException", f"TaskDefinition not found: {req.get('taskDefinition')}")
        if not req.get("networkConfiguration", {}).get("awsvpcConfiguration", {}).get("subnets"):
            return self._error("InvalidParameterException", "Network Configuration must be provided when networkMode 'awsvpc' is specified.")
        client = req.get("startedBy", "")
        throttled = self._throttled("RunTask", "RunTask", 1, client) or self._throttled("RunTask", "launch", 1, client)
        if throttled:
            return throttled
        capacity = strategy[0]["capacityProvider"] if strategy else "FARGATE"
        fault = self._next_fault(capacity == "FARGATE_SPOT")
        if fault == "throttle":
            self._record("RunTask", 1, "throttled", client)
            return self._error("ThrottlingException", "Rate exceeded")
        if fault in ("capacity", "quota"):
            self._record("RunTask", 1, fault, client)
            arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/none"
            return 200, {"tasks": [], "failures": [{"arn": arn, "reason": CAPACITY_REASON if fault == "capacity" else QUOTA_REASON}]}
        cluster = req.get("cluster", "default")
        cluster_arn = cluster if cluster.startswith("arn:") else f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}"
        task_id = uuid.uuid4().hex
        latency = self._random.uniform(*self.start_latency)
        run_time = self._random.uniform(*self.run_time)
        task = SimTask(
            arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster_arn.rsplit('/', 1)[-1]}/{task_id}",
            cluster=cluster_arn,
            task_definition=req["taskDefinition"],
            overrides=req.get("overrides", {}),
            capacity=capacity,
            tags=req.get("tags", []),
            started_by=req.get("startedBy", ""),
            group=req.get("group", "family:" + self.task_definitions[req["taskDefinition"]]["family"]),
            created=time.time(),
            start_latency=latency,
            run_time=run_time,
        )
        if self.behaviour is not None:
            chosen = self.behaviour(req) or {}
            task.exit_code = chosen.get("exit_code", task.exit_code)
            task.run_time = chosen.get("run_time", task.run_time)
            task.container_reason = chosen.get("container_reason", task.container_reason)
            task.stop_code = chosen.get("stop_code", task.stop_code)
            task.stopped_reason = chosen.get("stopped_reason", task.stopped_reason)
        task.hidden_describes = -1 if fault == "missing_forever" else self.missing_describes
        if fault == "fail_to_start" or fault in FAILED_STARTS:
            task.run_time, task.exit_code = 0.0, None
            task.stop_code = "TaskFailedToStart"
            task.stopped_reason = FAILED_STARTS.get(fault, "ResourceInitializationError: failed to configure ENI (simulated)")
        elif fault == "spot_interruption":
            task.run_time = run_time / 2
            task.exit_code = 143  # SIGTERM, the two-minute warning
            task.stop_code = "SpotInterruption"
            task.stopped_reason = "Your Spot Task was interrupted."
        with self.lock:
            self.tasks[task.arn] = task
            if req.get("clientToken"):
                params = json.dumps({k: v for k, v in req.items() if k != "clientToken"}, sort_keys=True)
                self.client_tokens[(cluster, req["clientToken"])] = (params, task.arn)
        self._record("RunTask", 1, "ok", client)
        return 200, {"tasks": [task.describe(time.time())], "failures": []}

    def op_DescribeTasks(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        arns = req.get("tasks", [])
        if len(arns) > 100:
            self._record("DescribeTasks", len(arns), "invalid")
            return self._error("InvalidParameterException", "Tasks cannot be more than 100.")
        if not self.buckets["read"].take():
            self._record("DescribeTasks", len(arns), "throttled", self._client_of(arns))
            return self._error("ThrottlingException", "Rate exceeded")
        now = time.time()
        tasks, failures = [], []
        with self.lock:
            for arn in arns:
                task = self.tasks.get(arn)
                if task is not None and task.hidden_describes:
                    task.hidden_describes -= 1 if task.hidden_describes > 0 else 0
                    task = None  # not visible yet (or never, for "missing_forever")
                if task is None:
                    failures.append({"arn": arn, "reason": "MISSING"})
                    self.missing_answers += 1
                    continue
                desc = task.describe(now)
                if desc["lastStatus"] == "STOPPED" and task.noticed is None:
                    task.noticed = now
                if "TAGS" not in req.get("include", []):
                    desc.pop("tags")
                tasks.append(desc)
        self._record("DescribeTasks", len(arns), "ok", self._client_of(arns))
        return 200, {"tasks": tasks, "failures": failures}

    def op_StopTask(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        throttled = self._throttled("StopTask", "read")
        if throttled:
            return throttled
        now = time.time()
        with self.lock:
            task = self.tasks.get(req.get("task", ""))
            if task is None:
                return self._error("InvalidParameterException", "The referenced task was not found.")
            if task.status(now) != "STOPPED" and task.stop_requested is None:
                task.stop_requested = now
                task.stop_code, task.stopped_reason = "UserInitiated", req.get("reason", "Task stopped by user")
                task.exit_code = 143
        self._record("StopTask", 1, "ok")
        return 200, {"task": task.describe(now)}

    def op_ListTasks(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        now = time.time()
        want = req.get("desiredStatus", "RUNNING")
        with self.lock:
            arns = [
                t.arn
                for t in self.tasks.values()
                if (t.describe(now)["desiredStatus"] == want)
                and (not req.get("startedBy") or t.started_by == req["startedBy"])
            ]
        self._record("ListTasks", 0, "ok")
        return 200, {"taskArns": arns}

    # -- what the benchmark reads ----------------------------------------------------------------

    def calls_by_client(self) -> list[tuple[float, str, int, str, str]]:
        """``calls`` with who made each: (wall time, operation, tasks, outcome, startedBy)."""
        with self.lock:
            clients = self.call_clients + [""] * (len(self.calls) - len(self.call_clients))
            return [call + (client,) for call, client in zip(self.calls, clients, strict=True)]

    def count(self, op: str, outcome: str | None = None) -> int:
        with self.lock:
            return sum(1 for c in self.calls if c[1] == op and (outcome is None or c[3] == outcome))

    def running(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self.lock:
            return sum(1 for t in self.tasks.values() if t.status(now) != "STOPPED")
