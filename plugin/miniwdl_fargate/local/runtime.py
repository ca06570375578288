"""The local runtime: what AWS itself would do, for the pieces moto only records (``moto.hooks``
hands them over).

- Lambda: each invocation runs the real handler in a fresh Python subprocess, from the code
  package deployed into moto, with the function's environment (``lambda_bootstrap``).
- EventBridge: deliveries to Lambda (asynchronous invoke) and Step Functions (StartExecution)
  targets.
- ECS on Fargate: ``ecs_runner`` runs each task RunTask starts, as Fargate would, and records
  its status, exit code and stop code in moto through ``ecs_state``, which also emits its "ECS
  Task State Change" events.

Handlers, driver and backend are unchanged: they reach moto through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from typing import Any

from .. import aws
from .ecs_runner import EcsRunner, TaskSpec
from .ecs_state import MotoTaskState
from .faults import Faults
from .sandbox import StrictSandbox

log = logging.getLogger("miniwdl-fargate.local")


class LocalRuntime:
    def __init__(self, state_dir: str, endpoint: str, region: str) -> None:
        self.state_dir = state_dir
        self.endpoint = endpoint
        self.region = region
        self.logs_dir = os.path.join(state_dir, "logs")
        self._code_lock = threading.Lock()
        self._deliveries = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="eventbridge")
        self.faults = Faults.from_env()
        #: what RunTask created in moto, written as the runner says (``moto.hooks`` registers each task)
        self.ecs_state = MotoTaskState(region)
        self.ecs_runner = EcsRunner(
            state_dir, self.ecs_state, lambda: self.faults, self.aws_environment, self.base_environment
        )
        os.makedirs(self.logs_dir, exist_ok=True)

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

    def _code_dir(self, function: Any) -> str:
        digest = getattr(function, "code_sha_256", "") or uuid.uuid4().hex
        target = os.path.join(self.state_dir, "lambda", f"{function.function_name}-{digest[:12].replace('/', '_')}")
        with self._code_lock:
            if not os.path.isdir(target):
                tmp = target + ".part"
                shutil.rmtree(tmp, ignore_errors=True)
                with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as zf:
                    zf.extractall(tmp)
                os.replace(tmp, target)
        return target

    def invoke_lambda(self, function: Any, event: Any) -> tuple[str, bool, str]:
        injected = self.faults.take_lambda(function.function_name)
        if injected:  # fault injection: the Lambda service fails, or the handler raises
            kind = "Lambda.ServiceException" if injected == "error" else "RuntimeError"
            message = f"injected fault: {kind} in {function.function_name}"
            log.warning(message)
            return json.dumps({"errorType": kind, "errorMessage": message}), True, message
        code_dir = self._code_dir(function)
        env = self.base_environment()
        env.update({k: str(v) for k, v in (function.environment_vars or {}).items()})
        env.update(
            {
                "_HANDLER": function.handler,
                "LAMBDA_TASK_ROOT": code_dir,
                "PYTHONPATH": code_dir,
                "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_ARN": function.function_arn,
                "HOME": os.path.join(self.state_dir, "home", "lambda"),
                # no X-Ray daemon here: Powertools' Tracer would only complain of a missing segment
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
        )
        os.makedirs(env["HOME"], exist_ok=True)
        result_path = os.path.join(self.state_dir, "lambda", f"result-{uuid.uuid4().hex}.json")
        timeout = int(function.timeout or 3)
        payload = event if isinstance(event, str) else json.dumps(event)
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "miniwdl_fargate.local.lambda_bootstrap", function.handler, result_path],
                input=payload.encode(),
                cwd=code_dir,
                env=env,
                capture_output=True,
                timeout=timeout,
            )
            logs = (proc.stdout + proc.stderr).decode(errors="replace")
            with open(result_path) as infile:
                result = infile.read()
            errored = proc.returncode != 0
        except subprocess.TimeoutExpired as exn:
            logs = ((exn.stdout or b"") + (exn.stderr or b"")).decode(errors="replace")
            result = json.dumps(
                {"errorType": "Sandbox.Timedout", "errorMessage": f"Task timed out after {timeout}.00 seconds"}
            )
            errored = True
        except OSError:
            result = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": "handler process died"})
            errored = True
        finally:
            if os.path.exists(result_path):
                os.unlink(result_path)
        with open(os.path.join(self.logs_dir, f"lambda-{function.function_name}.log"), "a") as logfile:
            logfile.write(f"--- invoke ({time.monotonic() - started:.1f}s, error={errored})\n{logs}\n")
        return result, errored, logs

    # -- EventBridge ------------------------------------------------------------------------------

    def deliver_event(self, target: dict[str, Any], event: dict[str, Any]) -> None:
        self._deliveries.submit(self._deliver, target, event)

    def _deliver(self, target: dict[str, Any], event: dict[str, Any]) -> None:
        arn = target["Arn"]
        try:
            if ":lambda:" in arn:
                from .moto.hooks import lambda_function

                function = lambda_function(arn)
                result, errored, _logs = self.invoke_lambda(function, event)
                if errored:
                    log.error("EventBridge -> %s failed: %s", function.function_name, result)
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

    @property
    def driver_families(self) -> set[str]:
        return self.ecs_runner.driver_families

    def shutdown(self, timeout: float = 30) -> None:
        """Stop every task still running, wait for the runner threads and the deliveries."""
        self.ecs_runner.shutdown(timeout)
        self._deliveries.shutdown(wait=True, cancel_futures=True)
