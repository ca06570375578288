"""Where moto calls into local mode: the work moto only records, handed to the local runtime
(``Runtime``), which does what the AWS service would.

- Lambda Invoke: moto would only echo the payload without Docker; the runtime runs the handler.
- EventBridge: moto delivers to SQS, logs and buses only; deliveries to Lambda and Step Functions
  targets go to the runtime.
- ECS RunTask / StopTask: moto records a task and runs nothing; the runtime's ECS runner gets a
  plain ``TaskSpec`` (the moto task stays with ``ecs_state``, the one module that writes it).
- Faults (``local.faults``): RunTask throttled, refused for capacity or for the account's vCPU
  quota (which Service Quotas then answers) or its answer lost, duplicate event deliveries, and a
  new WDL task MISSING from its first DescribeTasks answers.
- Changes a client following a run waits for (``local.changes``): every S3 object written or
  removed, every Step Functions execution started or ended, counted by the runtime.
- Step Functions Retry waits: a state's retry waits its interval times the runtime's
  ``retry_scale`` (local mode's is short, as its poll intervals are: ``LocalStack``).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from typing import Any, Protocol

from ... import runs
from ..ecs_runner import TaskSpec
from .ecs_state import LOCAL_RUNTIME_AGENT, MotoTaskState
from ..faults import CAPACITY_REASON, VCPU_QUOTA_REASON, Faults
from ..lambda_runner import FunctionSpec
from . import fixes
from .fixes import as_delivered
from .patching import moto_function, replace, state_lock
from .tracking import untracked_copy

log = logging.getLogger(__name__)


class Runtime(Protocol):
    faults: Any  # local.faults.Faults
    retry_scale: float  # what a Step Functions Retry's interval is multiplied by

    def invoke_lambda(self, function: FunctionSpec, event: Any) -> tuple[str, bool, str]: ...
    def deliver_event(self, target: dict[str, Any], event: dict[str, Any]) -> None: ...
    def ecs_task_started(self, task: TaskSpec) -> None: ...
    def ecs_stop_task(self, task_arn: str, reason: str) -> bool: ...
    def changed(self, of_a_run: bool = False, run_name: str | None = None) -> None: ...


#: the runtime (and its ECS state) moto's work goes to; without one, each hook leaves the work to
#: moto (tests against in-process moto install some hooks, and set their own runtime or none)
_current: dict[str, Any] = {}


def runtime() -> Runtime | None:
    return _current.get("runtime")


def _faults() -> Faults:
    """The faults to inject: the runtime's (none where no runtime is installed: tests that run
    against in-process moto with some hooks only)."""
    current = runtime()
    return current.faults if current is not None else Faults(describe_missing=0)


def install(local_runtime: Runtime, state: MotoTaskState) -> None:
    """Route moto's work to ``local_runtime``, and the ECS tasks RunTask creates to ``state`` (the
    hooks go in once per process; the runtime is the latest one given)."""
    from moto.moto_api import state_manager

    _current["runtime"], _current["state"] = local_runtime, state
    fixes.install()  # (first: the hooks wrap what the fixes make of moto)
    # the local runner, not moto's describe counter, decides when a task changes status
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    _lambda_invoke()
    _event_delivery()
    _ecs_run_and_stop()
    _run_task_faults()
    describe_tasks_faults()
    _vcpu_quota_answered()
    _changes_counted()
    _retry_waits_scaled()


# -- Step Functions' retries -----------------------------------------------------------------


class _ScaledWaits:
    """The ``time`` of moto's Retrier (``RetrierDecl._eval_body`` waits a retry's interval,
    backoff, cap and jitter applied, with ``time.sleep``): its sleep multiplied by the runtime's
    ``retry_scale``; everything else the ``time`` module's own."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds * float(getattr(runtime(), "retry_scale", 1.0)))  # (1 without a runtime)


def _retry_waits_scaled() -> None:
    """A Retry's ``IntervalSeconds`` (whole seconds, at least 1: the ASL's own, as AWS takes them)
    waited a fraction as long in local mode, as its DescribeTasks and status intervals are shorter
    (a queued run tries for a driver slot every 2 s, up to every minute, in the definition)."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    replace("retry waits scaled", retrier_decl, "time", _ScaledWaits())


# -- Lambda ------------------------------------------------------------------------------------


def _lambda_invoke() -> None:
    from moto.awslambda.models import LambdaFunction

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        current = runtime()
        if current is None:
            return moto_function("lambda invoke", "_invoke_lambda")(self, event)
        return current.invoke_lambda(function_spec(self), event)

    replace("lambda invoke", LambdaFunction, "_invoke_lambda", _invoke_lambda)


def function_spec(function: Any) -> FunctionSpec:
    """What the Lambda runner needs of moto's LambdaFunction."""
    return FunctionSpec(
        name=function.function_name,
        arn=function.function_arn,
        handler=function.handler,
        code_digest=getattr(function, "code_sha_256", "") or "",
        code=function.code_bytes,
        environment={k: str(v) for k, v in (function.environment_vars or {}).items()},
        timeout=float(function.timeout or 3),
        memory=int(function.memory_size or 128),
    )


def lambda_function(arn: str) -> FunctionSpec:
    """The function an EventBridge target names, as ``Runtime.invoke_lambda`` takes it."""
    from moto.awslambda.utils import get_backend

    account, region = arn.split(":")[4], arn.split(":")[3]
    return function_spec(get_backend(account, region).get_function(arn))


def lambda_functions(region: str) -> list[FunctionSpec]:
    """Every Lambda function moto holds in ``region`` (of its default account, local mode's), as
    the runner takes them."""
    from moto.awslambda.utils import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    return [function_spec(f) for f in get_backend(DEFAULT_ACCOUNT_ID, region).list_functions()]


# -- EventBridge -------------------------------------------------------------------------------


def _event_delivery() -> None:
    # moto raises on Lambda and Step Functions targets (silently dropping them for S3 notifications)
    from moto.events.models import Rule

    replace("event delivery", Rule, "send_to_targets", _send_to_targets)


def _send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
    from moto.events.utils import EventTemplateParser
    from moto.utilities.arns import parse_arn

    current = runtime()
    if current is None:
        return moto_function("event delivery", "send_to_targets")(self, original_event, transform_input)
    if not self.event_pattern.matches_event(original_event):
        return
    delivered = as_delivered(original_event)  # (moto's own deliveries, SQS and logs, expect its envelope)
    ours, others = [], []
    for target in self.targets:
        (ours if parse_arn(target["Arn"]).service in ("lambda", "states") else others).append(target)
    for target in ours:
        event = delivered
        transformer = target.get("InputTransformer")
        if transformer:
            event = EventTemplateParser.parse(
                input_template=transformer.get("InputTemplate"),
                input_paths_map=transformer.get("InputPathsMap", {}),
                event=delivered,
            )
        elif target.get("Input"):
            event = json.loads(target["Input"])
        current.deliver_event(target, copy.deepcopy(event))
        if current.faults.duplicate_events:  # fault injection: at-least-once, twice
            current.faults.injected.append("duplicate_event")
            current.deliver_event(target, copy.deepcopy(event))
    if others:
        rest = untracked_copy(self)  # (once per event: moto would keep every copy)
        rest.targets = others
        moto_function("event delivery", "send_to_targets")(rest, original_event, transform_input)


# -- what clients following a run wait for ----------------------------------------------------------


def _changes_counted() -> None:
    """The runtime counts each S3 object written or removed (moto tells its notifications of every
    one, whether or not the bucket has any) and each execution started, stopped or ended, once it is
    in place (``local.changes``); an object under ``runs/<name>/`` and an execution (named by its
    run id, ``<name>-<8 hex>``) are changes of a run, of the runs named ``<name>``."""
    from moto.s3 import notifications

    def send_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        try:
            moto_function("changes counted", "send_event")(account_id, event_name, bucket, key)
        finally:
            name = str(getattr(key, "name", ""))
            of_a_run = name.startswith(runs.RUNS_PREFIX)
            _changed(of_a_run, name[len(runs.RUNS_PREFIX):].split("/", 1)[0] if of_a_run else None)

    replace("changes counted", notifications, "send_event", send_event)
    _execution_changes()


def _changed(of_a_run: bool, run_name: str | None = None) -> None:
    current = runtime()
    if current is not None:
        current.changed(of_a_run, run_name)


def _execution_changed(execution: Any) -> None:
    """A change of the run whose execution ``execution`` is (its name: the run id, "." made "_")."""
    _changed(True, runs.name_of(str(getattr(execution, "name", ""))))


def _execution_changes() -> None:
    """Each execution started, stopped or ended is a change of a run (``_changes_counted``), and a
    "Step Functions Execution Status Change" event on the default bus at each change of its
    status (it starts RUNNING; it ends SUCCEEDED, FAILED, TIMED_OUT or ABORTED), as Step Functions
    sends them for standard workflows (https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html);
    moto sends none. A stop that makes an execution ABORTED at once (``fixes.stop_execution_aborts``)
    is sent then, and its worker's end after it sends nothing more: one event a status."""
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

    def start(self: Any) -> None:
        moto_function("execution changes", "start")(self)
        _send_execution_status(self)
        _execution_changed(self)

    def stop(self: Any, *args: Any, **kwargs: Any) -> None:
        moto_function("execution changes", "stop")(self, *args, **kwargs)
        _send_execution_status(self)
        _execution_changed(self)

    def terminated(self: Any) -> None:
        moto_function("execution changes", "terminated")(self)
        _send_execution_status(self.execution)
        _execution_changed(self.execution)

    replace("execution changes", Execution, "start", start)
    replace("execution changes", Execution, "stop", stop)
    replace("execution changes", BaseExecutionWorkerCommunication, "terminated", terminated)


def _send_execution_status(execution: Any) -> None:
    from moto.events.models import events_backends

    status = getattr(execution.exec_status, "value", None)
    with state_lock():
        if status is None or getattr(execution, "_miniwdl_fargate_status_sent", None) == status:
            return
        execution._miniwdl_fargate_status_sent = status

    def millis(when: Any) -> int | None:
        return int(when.timestamp() * 1000) if when is not None else None

    ended = status != "RUNNING"
    output = execution.output if ended and status == "SUCCEEDED" else None
    detail = {
        "executionArn": execution.exec_arn, "stateMachineArn": execution.state_machine.arn, "name": execution.name,
        "status": status, "startDate": millis(execution.start_date), "stopDate": millis(execution.stop_date) if ended else None,
        "input": json.dumps(execution.input_data), "inputDetails": {"included": True},
        "output": json.dumps(output) if output is not None else None, "outputDetails": {"included": True} if output is not None else None,
        "error": execution.error if ended else None, "cause": execution.cause if ended else None,
    }
    try:
        events_backends[execution.account_id][execution.region_name].put_events([{
            "Source": "aws.states", "DetailType": "Step Functions Execution Status Change",
            "Detail": json.dumps(detail), "Resources": [execution.exec_arn],
        }])
    except Exception:  # (an event lost, as EventBridge's best effort may lose one: never the execution's own failure)
        log.exception("the status change event of %s was not sent", execution.exec_arn)


# -- ECS -------------------------------------------------------------------------------------------


def _ecs_run_and_stop() -> None:
    from moto.ecs.models import EC2ContainerServiceBackend

    fixes.ecs_task_size()  # (first: the runner gets tasks with their size)
    replace("ecs run and stop", EC2ContainerServiceBackend, "run_task", _run_task)
    replace("ecs run and stop", EC2ContainerServiceBackend, "stop_task", _stop_task)


def _ecs() -> tuple[Runtime, MotoTaskState] | None:
    """The runtime and the ECS state RunTask's tasks go to, if both are installed."""
    current, state = runtime(), _current.get("state")
    return (current, state) if current is not None and state is not None else None


def _run_task(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
    tasks = moto_function("ecs run and stop", "run_task")(self, *args, **kwargs)
    ecs = _ecs()
    for task in tasks if ecs is not None else []:
        ecs[1].register(task)
        ecs[0].ecs_task_started(task_spec(task, self.describe_task_definition(task.task_definition_arn)))
    return tasks


def _stop_task(self: Any, cluster_str: str, task_str: str, reason: str) -> Any:
    ecs = _ecs()
    if ecs is None:
        return moto_function("ecs run and stop", "stop_task")(self, cluster_str, task_str, reason)
    task = fixes.task_named(self, self._get_cluster(cluster_str), task_str)
    if task is None:  # (moto would raise a bare Exception, a server error botocore retries)
        from moto.ecs.exceptions import InvalidParameterException

        raise InvalidParameterException("The referenced task was not found.")
    if ecs[0].ecs_stop_task(task.task_arn, reason):
        return task
    return moto_function("ecs run and stop", "stop_task")(self, cluster_str, task_str, reason)


def task_spec(task: Any, task_definition: Any) -> TaskSpec:
    """What the ECS runner needs of a task moto created, as plain values."""
    return TaskSpec(
        task_arn=task.task_arn,
        id=task.id,
        cluster_arn=task.cluster_arn,
        task_definition_arn=task.task_definition_arn,
        family=task_definition.family,
        container=copy.deepcopy(task_definition.container_definitions[0]),
        overrides=copy.deepcopy(task.overrides or {}),
        volumes=copy.deepcopy(list(task_definition.volumes or [])),
        tags=copy.deepcopy(list(task.tags or [])),
        # as the request asked (fixes.ecs_managed_instances places a managed-instances task as
        # moto places Fargate's, and moto keeps no volumeConfigurations: fixes.run_task_volume_configurations)
        capacity_provider_name=next(
            (s.get("capacityProvider") for s in fixes.requested("capacityProviderStrategy")),
            getattr(task, "capacity_provider_name", None),
        ),
        volume_configurations=fixes.requested("volumeConfigurations"),
        cpu=task_definition.cpu,
        memory=task_definition.memory,
    )


def _run_task_faults() -> None:
    from moto.ecs.responses import EC2ContainerServiceResponse

    fixes.run_task_client_token()  # (the faults wrap it: a lost answer's retry starts no second task)
    replace("ecs run_task faults", EC2ContainerServiceResponse, "run_task", _run_task_with_faults)


def describe_tasks_faults() -> None:
    """DescribeTasks as eventually consistent as ECS's (``_describe_tasks_with_faults``); also
    used by tests against in-process moto, with faults of their own in ``_current["runtime"]``."""
    from moto.ecs.responses import EC2ContainerServiceResponse

    fixes.describe_tasks_missing()  # (first: the faults add to its failures)
    replace("ecs describe faults", EC2ContainerServiceResponse, "describe_tasks", _describe_tasks_with_faults)


def _server_error(error_type: str, message: str) -> Exception:
    from moto.core.exceptions import JsonRESTError

    class ServerError(JsonRESTError):
        code = 500  # botocore retries a 5xx: with the same clientToken

    return ServerError(error_type, message)


def _run_task_with_faults(self: Any) -> Any:
    """RunTask throttled, answered with a capacity failure, or handled and then answered with a
    server error (the answer lost: the client retries). Aimed at WDL tasks' launches only."""
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult

    answer = moto_function("ecs run_task faults", "run_task")
    faults = _faults()
    if "-driver" in str(self._get_param("taskDefinition")):
        return answer(self)
    if faults.take("run_task_throttles"):
        raise JsonRESTError("ThrottlingException", "Rate exceeded")
    if faults.take("run_task_capacity"):
        return ActionResult({"tasks": [], "failures": [{"arn": "", "reason": CAPACITY_REASON}]})
    if faults.fargate_vcpu_quota is not None and _over_vcpu_quota(self, faults.fargate_vcpu_quota):
        faults.injected.append("fargate_vcpu_quota")
        return ActionResult({"tasks": [], "failures": [{"arn": "", "reason": VCPU_QUOTA_REASON}]})
    result = answer(self)
    if faults.take("run_task_lost_answers"):
        raise _server_error("ServerException", "injected fault: the task was started, this answer is lost")
    return result


def _over_vcpu_quota(response: Any, quota: float) -> bool:
    """Whether the task RunTask asks for would take the vCPUs of the tasks not yet stopped on its
    placement (On-Demand or Spot: a quota each, ``quota`` for both; drivers too, as the account's
    quota counts every task) over ``quota``."""
    def vcpus(overrides: dict[str, Any] | None, definition_arn: str) -> float:
        cpu = (overrides or {}).get("cpu")
        if cpu is None:
            definition = response.ecs_backend.describe_task_definition(definition_arn)
            cpu = definition.cpu
        return int(cpu or 256) / 1024

    def spot(provider: Any) -> bool:
        return str(provider or "").endswith("SPOT")

    strategy = response._get_param("capacityProviderStrategy") or []
    on_spot = spot(strategy[0].get("capacityProvider") if strategy else "")
    asked = vcpus(response._get_param("overrides"), str(response._get_param("taskDefinition")))
    with state_lock():
        held = sum(
            vcpus(task.overrides, task.task_definition_arn)
            for tasks in response.ecs_backend.tasks.values() for task in tasks.values()
            if task.last_status != "STOPPED" and spot(getattr(task, "capacity_provider_name", None)) == on_spot
        )
    return held + asked > quota


def _vcpu_quota_answered() -> None:
    """Service Quotas answers the Fargate vCPU quotas: the ``fargate_vcpu_quota`` fault's, else
    ``LOCAL_VCPU_QUOTA`` (moto knows VPC's only)."""
    from moto.servicequotas.models import ServiceQuotasBackend

    replace("vcpu quota answered", ServiceQuotasBackend, "get_service_quota", _get_service_quota)


#: the Fargate vCPU quota Service Quotas answers without the ``fargate_vcpu_quota`` fault: an
#: established account's (local mode's ECS then holds no task back for it)
LOCAL_VCPU_QUOTA = 1000.0


def _get_service_quota(self: Any, service_code: str, quota_code: str) -> dict[str, Any]:
    from ...backend.launcher import VCPU_QUOTAS

    quota = _faults().fargate_vcpu_quota
    quota = LOCAL_VCPU_QUOTA if quota is None else quota
    names = {code: name for code, name in VCPU_QUOTAS.values()}
    if service_code == "fargate" and quota_code in names:
        return {
            "ServiceCode": "fargate", "ServiceName": "AWS Fargate", "QuotaCode": quota_code, "QuotaName": names[quota_code],
            "QuotaArn": f"arn:aws:servicequotas:{self.region_name}:{self.account_id}:fargate/{quota_code}",
            "Value": float(quota), "Unit": "None", "Adjustable": True, "GlobalQuota": False,
        }
    return moto_function("vcpu quota answered", "get_service_quota")(self, service_code, quota_code)


def _describe_tasks_with_faults(self: Any) -> Any:
    """ECS is eventually consistent: a task just started may be MISSING from DescribeTasks for a
    while (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html). Local mode
    is strict about it: each WDL task is MISSING for the first ``faults.describe_missing``
    DescribeTasks calls that name it, except the local runtime's own ("ECS itself")."""
    from moto.core.responses import ActionResult

    result = moto_function("ecs describe faults", "describe_tasks")(self)
    if LOCAL_RUNTIME_AGENT in (self.headers.get("User-Agent") or ""):
        return result
    hidden = {t.task_arn for t in result.result["tasks"] if _hidden_now(self.ecs_backend, t)}
    if not hidden:
        return result
    missing = {f["arn"] for f in result.result["failures"]}
    asked = self._get_param("tasks", [])

    def names(name: str) -> bool:
        return name in missing or any(arn == name or arn.endswith("/" + name) for arn in hidden)

    return ActionResult({
        "tasks": [t for t in result.result["tasks"] if t.task_arn not in hidden],
        "failures": [{"arn": name, "reason": "MISSING"} for name in asked if names(name)],
    })


def _hidden_now(backend: Any, task: Any) -> bool:
    """Whether this DescribeTasks still does not know ``task`` (and count it)."""
    if "-driver" in str(task.task_definition_arn):  # (WDL tasks only, like the other faults)
        return False
    # the count is kept on moto's own task (the answer holds a copy of it): it goes with the task
    kept = backend.tasks.get(task.cluster_name, {}).get(task.task_arn, task)
    with state_lock():
        left = getattr(kept, "_miniwdl_fargate_hidden", None)
        if left is None:
            left = int(_faults().describe_missing or 0)
        kept._miniwdl_fargate_hidden = max(0, left - 1)
        return left > 0
