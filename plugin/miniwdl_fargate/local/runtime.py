"""The local runtime: what AWS itself would do, for the pieces moto only records (``moto.hooks``
hands them over).

- Lambda: each invocation runs the real handler in a warm worker process kept between
  invocations, as Lambda keeps its execution environments, from the code package deployed into
  moto, with the function's environment (``lambda_runner``; new environments are forked from a
  process with the handlers' libraries already imported, ``python_zygote``, which forks the
  drivers too).
- EventBridge: deliveries to Lambda (asynchronous invoke) and Step Functions (StartExecution)
  targets.
- ECS on Fargate: ``ecs_runner`` runs each task RunTask starts, as Fargate would, and records
  its status, exit code and stop code in moto through ``ecs_state``, which also emits its "ECS
  Task State Change" events.
- EventBridge Scheduler: one-time schedules run when they fall due (``schedules``).

Handlers, driver and backend are unchanged: they reach moto through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import resource
import sys
import threading
import uuid
from typing import Any

from .. import aws
from . import schedules
from .changes import RUN_FILE, RUN_SLOTS, ChangeCount, run_slot
from .ecs_runner import EcsRunner, TaskSpec
from .moto.ecs_state import MotoTaskState
from .faults import Faults
from .forkserver import LazyForkServer
from .lambda_runner import FunctionSpec, LambdaRunner
from .lambda_zygote import PRELOAD_ENV
from .moto import direct
from .sandbox import StrictSandbox

log = logging.getLogger("miniwdl-fargate.local")

#: how often local mode looks for schedules fallen due (EventBridge Scheduler's one-time
#: schedules run within their flexible window; the stack's fall due days after they are made)
SCHEDULE_CHECK_SECONDS = 60.0


#: Fargate's limit of open files for a container, soft and hard
#: (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Ulimit.html)
FARGATE_NOFILE = 65535


def open_files_as_on_fargate() -> None:
    """Raise this process's soft limit of open files towards Fargate's, as far as its hard limit
    allows: local mode holds descriptors for every running task (a pidfd, a status pipe, its log
    shipping), beyond a common soft limit of 1024 with a few hundred tasks, and the tasks it
    starts inherit the limit, as a Fargate container has 65535."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FARGATE_NOFILE if hard == resource.RLIM_INFINITY else min(hard, FARGATE_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class LocalRuntime:
    def __init__(self, state_dir: str, endpoint: str, region: str) -> None:
        open_files_as_on_fargate()
        self.state_dir = state_dir
        self.endpoint = endpoint
        self.region = region
        self.logs_dir = os.path.join(state_dir, "logs")
        self._lock = threading.Lock()
        self._lambdas: LambdaRunner | None = None
        self._deliveries = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="eventbridge")
        self._undelivered = 0  # events sent and not yet handled by their target (``events_delivered``)
        self._delivered = threading.Condition()
        self._stopping = threading.Event()
        self.faults = Faults.from_env()
        #: what the state machine's Retry intervals are multiplied by (``moto.hooks``): 1 as on AWS
        #: unless the stack says otherwise (``LocalStack``: short)
        self.retry_scale = 1.0
        os.makedirs(self.logs_dir, exist_ok=True)
        #: what the clients of the stack watch (``changes``): every change, and the changes of runs
        self.changes = ChangeCount(state_dir)
        self.run_changes = ChangeCount(state_dir, RUN_FILE, 1 + RUN_SLOTS)
        #: what RunTask created in moto, written as the runner says (``moto.hooks`` registers each task)
        self.ecs_state = MotoTaskState(region, on_change=self.changes.bump)
        #: the fork server of Lambda environments and drivers (``python_zygote``); its first
        #: child is a driver's trial: where drivers cannot be forked, it stops, and each runner
        #: does what it does without it
        self.python_zygote = LazyForkServer(
            "miniwdl_fargate.local.python_zygote", os.path.join(state_dir, "python-zygote"),
            lambda: {**self.lambda_environment(), PRELOAD_ENV: "1"}, hasattr(os, "pidfd_open"),
            lambda: self.ecs_runner.driver_trial(),
        )
        self.ecs_runner = EcsRunner(
            state_dir, self.ecs_state, lambda: self.faults, self.aws_environment, self.base_environment,
            logs=lambda: direct.LogsWriter(region),  # (the awslogs driver: "AWS itself", into moto's Logs)
            driver_zygote=self.python_zygote,
        )

    # -- environment every "AWS compute" process gets -------------------------------------------

    def aws_environment(self) -> dict[str, str]:
        return aws.local_environment(self.endpoint, self.region)

    def base_environment(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in ("LANG", "LC_ALL", "TZ", "TMPDIR") if k in os.environ}
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
        env.update(self.aws_environment())
        return env

    # -- Lambda ---------------------------------------------------------------------------------

    def lambda_environment(self) -> dict[str, str]:
        """What every Lambda function's process gets before its own variables."""
        env = self.base_environment()
        env["HOME"] = os.path.join(self.state_dir, "home", "lambda")
        # no X-Ray daemon here: Powertools' Tracer would only complain of a missing segment
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
        os.makedirs(env["HOME"], exist_ok=True)
        return env

    @property
    def lambdas(self) -> LambdaRunner:
        with self._lock:
            if self._lambdas is None:
                self._lambdas = LambdaRunner(
                    os.path.join(self.state_dir, "lambda"), self.logs_dir, self.lambda_environment(), preload=True,
                    shared_zygote=self.python_zygote.get,
                )
            return self._lambdas

    def changed(self, of_a_run: bool = False, run_name: str | None = None) -> None:
        """Something a client of the stack may be waiting for changed (``changes``); ``of_a_run``:
        a run's S3 object or execution, what a client following a run waits for (the runs named
        ``run_name``, if known)."""
        self.changes.bump()
        if of_a_run:
            self.run_changes.bump(run_slot(run_name) if run_name else 0)

    def invoke_lambda(self, function: FunctionSpec, event: Any) -> tuple[str, bool, str]:
        # (faults name a function; the launch function's TakeDriverSlot step is named by its step,
        # take_slot, so that a fault for LaunchDriver reaches the launch itself)
        step = event.get("step") if isinstance(event, dict) else None
        injected = self.faults.take_lambda(step if step and step != "launch" else function.name)
        if injected:  # fault injection: the Lambda service fails, or the handler raises
            kind = "Lambda.ServiceException" if injected == "error" else "RuntimeError"
            message = f"injected fault: {kind} in {function.name}"
            log.warning(message)
            return json.dumps({"errorType": kind, "errorMessage": message}), True, message
        answer = self.lambdas.invoke(function, event)
        return answer.result, answer.errored, answer.logs

    def prewarm_lambdas(self, functions: list[FunctionSpec]) -> threading.Thread:
        """Start one warm environment per function in the background (their imports overlap
        with what runs first), as provisioned concurrency would; the thread doing it."""
        return self.lambdas.prewarm(functions)

    # -- EventBridge ------------------------------------------------------------------------------

    def deliver_event(self, target: dict[str, Any], event: dict[str, Any]) -> None:
        with self._delivered:
            self._undelivered += 1
        try:
            self._deliveries.submit(self._deliver, target, event)
        except RuntimeError:  # (the stack has stopped: what it stopped as it went is delivered to no one)
            log.debug("stack stopped: event to %s not delivered", target.get("Arn"))
            self._handled()

    def events_delivered(self, timeout: float) -> bool:
        """Whether every event sent so far has been handled by its target (a Lambda function's
        invocation returned, an execution started) within ``timeout`` seconds: what a test waits
        for before it acts as if time had passed (the ends of runs that ended are handled). An
        execution's end is seen by DescribeExecution a moment before its event is sent (moto's
        worker records the status, then ``moto.hooks`` sends it): a caller that just saw an end
        makes a request or two first. Once the stack has stopped, what it never delivered counts
        on: False after ``timeout``."""
        with self._delivered:
            return self._delivered.wait_for(lambda: self._undelivered == 0, timeout)

    def _handled(self) -> None:
        with self._delivered:
            self._undelivered -= 1
            self._delivered.notify_all()

    def _deliver(self, target: dict[str, Any], event: dict[str, Any]) -> None:
        try:
            self._deliver_to(target, event)
        finally:
            self._handled()

    def _deliver_to(self, target: dict[str, Any], event: dict[str, Any]) -> None:
        arn = target["Arn"]
        try:
            if ":lambda:" in arn:
                from .moto.hooks import lambda_function

                function = lambda_function(arn)
                result, errored, _logs = self.invoke_lambda(function, event)
                if errored:
                    log.error("EventBridge -> %s failed: %s", function.name, result)
            elif ":states:" in arn:
                aws.client("stepfunctions").start_execution(
                    stateMachineArn=arn, name=str(uuid.uuid4()), input=json.dumps(event)
                )
        except Exception:
            log.exception("EventBridge delivery to %s failed", arn)

    # -- ECS on Fargate: the runner's ----------------------------------------------------------------

    def ecs_task_started(self, task: TaskSpec) -> None:
        self.ecs_runner.ecs_task_started(task)

    def ecs_stop_task(self, task_arn: str, reason: str) -> bool:
        return self.ecs_runner.ecs_stop_task(task_arn, reason)

    def running_tasks(self) -> list[str]:
        return self.ecs_runner.running_tasks()

    def efs_host_dir(self, volume: dict[str, Any]) -> str:
        return self.ecs_runner.efs_host_dir(volume)

    def efs_environment(self, task: Any) -> dict[str, str]:
        return self.ecs_runner.efs_environment(task)

    def sandbox(self) -> StrictSandbox | None:
        return self.ecs_runner.sandbox()

    @property
    def efs_root(self) -> str:
        return self.ecs_runner.efs_root

    @property
    def engine(self) -> Any:
        return self.ecs_runner.engine

    # -- EventBridge Scheduler ------------------------------------------------------------------

    def run_schedules(self, interval: float = SCHEDULE_CHECK_SECONDS) -> threading.Thread:
        """Run the stack's one-time schedules as they fall due (``schedules.fire_due``), looking
        every ``interval`` seconds until shutdown."""

        def loop() -> None:
            while not self._stopping.wait(interval):
                try:
                    schedules.fire_due()
                except Exception:  # noqa: BLE001 (the next look tries again, as AWS retries)
                    log.exception("local mode: running the schedules that fell due failed")

        thread = threading.Thread(target=loop, name="scheduler", daemon=True)
        thread.start()
        return thread

    @property
    def driver_families(self) -> set[str]:
        return self.ecs_runner.driver_families

    def shutdown(self, timeout: float = 30) -> None:
        """Stop every task still running, wait for the runner threads and the deliveries."""
        self._stopping.set()
        self.ecs_runner.shutdown(timeout)
        self._deliveries.shutdown(wait=True, cancel_futures=True)
        lambdas = self.lambdas  # (kept, shut down: an invoke after this starts no environment)
        lambdas.shutdown()
        self.python_zygote.stop()  # (once both runners are done with its children)
        self.changes.close()
        self.run_changes.close()
