"""Every patch local mode makes to moto, in one place. moto is pinned (==5.2.5) for this reason.

moto records what it is asked but does not execute Lambda functions without Docker, does not
deliver EventBridge events to Lambda or Step Functions targets, and does not run ECS tasks: those
patches hand the work to the local runtime (``runtime``), which does what the AWS service would
do. Its CloudFormation ignores some properties template.yaml relies on (a state machine's
DefinitionSubstitutions / DefinitionS3Location, a bucket's EventBridge switch, a VPC's DNS
settings) and has no model of a few resource types (alarms, queue and bucket policies, API
stages): ``install_cloudformation`` covers those. Nothing here changes how the product's own code
talks to AWS.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from typing import Any, Protocol

MOTO_VERSION = "5.2.5"
#: the local runtime's own ECS calls carry this in their User-Agent: "ECS itself" always knows
#: its tasks, so DescribeTasks hides nothing from it
LOCAL_RUNTIME_AGENT = "miniwdl-fargate-local-runtime"


class Runtime(Protocol):
    faults: Any  # local.faults.Faults

    def invoke_lambda(self, function: Any, event: Any) -> tuple[str, bool, str]: ...
    def deliver_event(self, target: dict[str, Any], event: dict[str, Any]) -> None: ...
    def ecs_task_started(self, backend: Any, task: Any) -> None: ...
    def ecs_stop_task(self, backend: Any, task: Any, reason: str) -> bool: ...


_installed: dict[str, Any] = {}
#: moto's own methods where a patch replaced them (tests use them to tell when a patch is no
#: longer needed)
originals: dict[str, Any] = {}


def install(runtime: Runtime) -> None:
    """Install the patches (once per process), routing work to ``runtime``."""
    import moto

    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(
            f"local mode patches moto {MOTO_VERSION} internals but moto {moto.__version__} is installed"
        )
    _installed["runtime"] = runtime
    if _installed.get("done"):
        return
    _patch_lambda()
    _patch_events()
    report_ecs_task_size()  # before _patch_ecs: the runner gets tasks with their size
    honour_run_task_client_token()  # (first: the fault injection of _patch_ecs wraps it)
    _patch_ecs()
    _patch_send_task_failure()
    _patch_stop_execution()
    patch_heartbeat_timeout_name()
    install_cloudformation()
    fix_ecs_resource_requirements()
    fix_response_transformer_race()
    describe_tasks_like_ecs()
    _installed["done"] = True


def install_cloudformation() -> None:
    """Only the patches that let moto's CloudFormation create this template's stack (no runtime
    needed: tests/integration deploys the template into in-process moto with these alone)."""
    import moto

    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(
            f"local mode patches moto {MOTO_VERSION} internals but moto {moto.__version__} is installed"
        )
    if _installed.get("cloudformation"):
        return
    _patch_stepfunctions_cfn()
    _patch_efs_cfn()
    _patch_apigateway_cfn()
    _patch_s3_cfn()
    _patch_vpc_cfn()
    _patch_ecs_cluster_cfn()
    _patch_ecs_task_definition_cfn()
    _add_missing_cfn_models()
    _installed["cloudformation"] = True


def _runtime() -> Runtime:
    return _installed["runtime"]


def _patch_lambda() -> None:
    # Lambda.Invoke: without Docker moto would only echo the payload; run the real handler instead.
    from moto.awslambda.models import LambdaFunction

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        return _runtime().invoke_lambda(self, event)

    LambdaFunction._invoke_lambda = _invoke_lambda


def _patch_events() -> None:
    # EventBridge: moto delivers to SQS/Logs/buses only, and raises on Lambda and Step Functions
    # targets (silently dropping them for S3 notifications). Deliver those through the runtime.
    from moto.events.models import Rule
    from moto.events.utils import EventTemplateParser
    from moto.utilities.arns import parse_arn

    original = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if not self.event_pattern.matches_event(original_event):
            return
        raw_event = original_event  # moto's own deliveries (SQS, logs) expect its envelope
        original_event = _as_delivered(original_event)
        ours, others = [], []
        for target in self.targets:
            service = parse_arn(target["Arn"]).service
            (ours if service in ("lambda", "states") else others).append(target)
        for target in ours:
            event = original_event
            transformer = target.get("InputTransformer")
            if transformer:
                event = EventTemplateParser.parse(
                    input_template=transformer.get("InputTemplate"),
                    input_paths_map=transformer.get("InputPathsMap", {}),
                    event=original_event,
                )
            elif target.get("Input"):
                event = json.loads(target["Input"])
            _runtime().deliver_event(target, copy.deepcopy(event))
            if _runtime().faults.duplicate_events:  # fault injection: at-least-once, twice
                _runtime().faults.injected.append("duplicate_event")
                _runtime().deliver_event(target, copy.deepcopy(event))
        if others:
            rest = copy.copy(self)
            rest.targets = others
            original(rest, raw_event, transform_input)

    Rule.send_to_targets = send_to_targets


def _patch_send_task_failure() -> None:
    # SendTaskFailure: moto's API layer drops the ``cause`` parameter (its executing backend takes
    # it), so a failed run's state machine would see a null Cause.
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(self: Any) -> Any:
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure


def _patch_stop_execution() -> None:
    # StopExecution: moto flags the program stopped but a state waiting for a task token keeps
    # waiting, and the execution ends with whatever happens next (FAILED, SUCCEEDED) instead of
    # ABORTED at once. Make it ABORTED when stopped, as Step Functions does, and keep it so.
    import datetime

    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

    original_stop = Execution.stop
    original_reflect = BaseExecutionWorkerCommunication._reflect_execution_status

    def stop(self: Any, stop_date: Any, error: Any, cause: Any) -> None:
        original_stop(self, stop_date, error, cause)
        if self.exec_status == ExecutionStatus.RUNNING:
            self.exec_status = ExecutionStatus.ABORTED
            self.stop_date = stop_date or datetime.datetime.now(tz=datetime.timezone.utc)
            self._miniwdl_fargate_aborted = True

    def reflect(self: Any) -> None:
        if getattr(self.execution, "_miniwdl_fargate_aborted", False):
            return
        original_reflect(self)

    Execution.stop = stop
    BaseExecutionWorkerCommunication._reflect_execution_status = reflect


def patch_heartbeat_timeout_name() -> None:
    """A task state whose HeartbeatSeconds passed without a SendTaskHeartbeat fails with
    ``States.HeartbeatTimeout`` in Step Functions
    (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html), which a
    Catch can tell from ``States.Timeout`` (TimeoutSeconds). moto 5.2.5's ASL interpreter raises its
    HeartbeatTimeoutError (a TimeoutError) and names every TimeoutError ``States.Timeout``. Name it
    as AWS does. (moto's own TimeoutSecondsPath, HeartbeatSecondsPath and SendTaskHeartbeat work as
    documented; tests/integration/test_moto_patches.py tells when this patch is no longer needed.)"""
    if _installed.get("heartbeat_timeout_name"):
        return
    from moto.stepfunctions.parser.api import HistoryEventType, TaskTimedOutEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.eval.callback.callback import HeartbeatTimeoutError
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = _installed["heartbeat_timeout_original"] = StateTaskServiceCallback._from_error

    def _from_error(self: Any, env: Any, ex: Exception) -> Any:
        if not isinstance(ex, HeartbeatTimeoutError):
            return original(self, env, ex)
        name = StatesErrorNameType.StatesHeartbeatTimeout
        return FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=name),
            event_type=HistoryEventType.TaskTimedOut,
            event_details=EventDetails(
                taskTimedOutEventDetails=TaskTimedOutEventDetails(
                    resourceType=self._get_sfn_resource_type(), resource=self._get_sfn_resource(), error=name.to_name(),
                )
            ),
        )

    StateTaskServiceCallback._from_error = _from_error
    _installed["heartbeat_timeout_name"] = True


def _as_delivered(event: dict[str, Any]) -> dict[str, Any]:
    """Make moto's event envelope look like what EventBridge delivers: an ISO 8601 ``time``
    (moto: a float), a unique ``id`` (moto: one constant id for every S3 event), and S3's
    ``detail.object.etag`` (moto: ``eTag``)."""
    import uuid
    from datetime import datetime, timezone

    event = copy.deepcopy(event)
    if isinstance(event.get("time"), (int, float)):
        event["time"] = datetime.fromtimestamp(event["time"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if event.get("source") == "aws.s3":
        event["id"] = str(uuid.uuid4())
        obj = event.get("detail", {}).get("object", {})
        if "eTag" in obj:
            obj["etag"] = obj.pop("eTag")
    return event


def _patch_stepfunctions_cfn() -> None:
    # AWS::StepFunctions::StateMachine: moto reads only DefinitionString, and creates the machine
    # in the backend that does not execute ASL even when execution is enabled. Support what `sam
    # package` produces (DefinitionS3Location, DefinitionSubstitutions) and create it where
    # StartExecution will find it.
    from moto.stepfunctions.models import StateMachine
    from moto.stepfunctions.responses import get_backend
    from moto.stepfunctions.utils import cfn_to_api_tags

    def create_from_cloudformation_json(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        props = cloudformation_json["Properties"]
        definition = props.get("DefinitionString")
        location = props.get("DefinitionS3Location")
        if definition is None and location:
            from moto.s3.models import s3_backends

            s3 = s3_backends[account_id]["aws"]
            definition = s3.get_object(location["Bucket"], location["Key"]).value.decode()
        if isinstance(definition, dict):
            definition = json.dumps(definition)
        for key, value in (props.get("DefinitionSubstitutions") or {}).items():
            definition = definition.replace("${" + key + "}", str(value))
        leftover = re.findall(r"\$\{[A-Za-z0-9_]+\}", definition or "")
        if leftover:
            raise ValueError(f"state machine {resource_name}: unsubstituted placeholders {sorted(set(leftover))}")
        tags = cfn_to_api_tags(props.get("Tags", []))
        return get_backend(account_id, region_name).create_state_machine(
            props.get("StateMachineName", resource_name), definition, props.get("RoleArn", ""), tags=tags
        )

    StateMachine.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


def _patch_ecs() -> None:
    # ECS: RunTask records a task and executes nothing. Hand Fargate tasks to the local runner,
    # which runs the container command as a host process and drives the task's status.
    from moto.ecs.models import EC2ContainerServiceBackend

    original_run = EC2ContainerServiceBackend.run_task
    original_stop = EC2ContainerServiceBackend.stop_task

    def run_task(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        tasks = original_run(self, *args, **kwargs)
        for task in tasks:
            _runtime().ecs_task_started(self, task)
        return tasks

    def stop_task(self: Any, cluster_str: str, task_str: str, reason: str) -> Any:
        cluster = self._get_cluster(cluster_str)
        task_id = task_str.split("/")[-1]
        for arn, task in self.tasks.get(cluster.name, {}).items():
            if arn.endswith(task_id) and _runtime().ecs_stop_task(self, task, reason):
                return task
        return original_stop(self, cluster_str, task_str, reason)

    EC2ContainerServiceBackend.run_task = run_task
    EC2ContainerServiceBackend.stop_task = stop_task

    # fault injection (local.faults): RunTask throttled, answered with a capacity failure, or
    # handled and then answered with a server error (the answer lost: the client retries)
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult
    from moto.ecs.responses import EC2ContainerServiceResponse

    from .faults import CAPACITY_REASON

    original_response = EC2ContainerServiceResponse.run_task

    def run_task_response(self: Any) -> Any:
        faults = _runtime().faults
        if "-driver" in str(self._get_param("taskDefinition")):  # faults aim at the WDL tasks' launches
            return original_response(self)
        if faults.take("run_task_throttles"):
            raise JsonRESTError("ThrottlingException", "Rate exceeded")
        if faults.take("run_task_capacity"):
            return ActionResult({"tasks": [], "failures": [{"arn": "", "reason": CAPACITY_REASON}]})
        result = original_response(self)
        if faults.take("run_task_lost_answers"):
            raise _ServerError("ServerException", "injected fault: the task was started, this answer is lost")
        return result

    EC2ContainerServiceResponse.run_task = run_task_response


def _server_error_class() -> type:
    from moto.core.exceptions import JsonRESTError

    class ServerError(JsonRESTError):
        code = 500  # botocore retries a 5xx: with the same clientToken

    return ServerError


def _ServerError(error_type: str, message: str) -> Exception:  # noqa: N802 (raised like a class)
    return _server_error_class()(error_type, message)


_client_tokens_lock = threading.Lock()


def _backend_state(backend: Any, name: str) -> dict[str, Any]:
    """A dict kept on moto's ECS backend (so it goes when moto resets its backends)."""
    state = getattr(backend, name, None)
    if state is None:
        state = {}
        setattr(backend, name, state)
    return state


def honour_run_task_client_token() -> None:
    """RunTask: moto 5.2.5 ignores ``clientToken``, so a retry of a request it handled starts a
    second task. ECS returns the tasks the first request started for the same token and
    parameters in the same cluster, and ConflictException for a token reused with other
    parameters (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/ECS_Idempotency.html).
    No upstream issue tracks it; tests/integration/test_moto_patches.py fails once moto does it
    itself. (Also used by tests that run against in-process moto.)"""
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult
    from moto.ecs.responses import EC2ContainerServiceResponse

    if _installed.get("client_token"):
        return
    original = originals["ecs.RunTask"] = EC2ContainerServiceResponse.run_task

    def run_task(self: Any) -> Any:
        token = self._get_param("clientToken")
        if not token:
            return original(self)
        cluster = self._get_param("cluster", "default")
        params = json.dumps({k: v for k, v in json.loads(self.body or "{}").items() if k != "clientToken"}, sort_keys=True)
        key = (cluster.rsplit("/", 1)[-1], token)
        with _client_tokens_lock:
            tokens = _backend_state(self.ecs_backend, "_miniwdl_fargate_client_tokens")
            token_lock = _backend_state(self.ecs_backend, "_miniwdl_fargate_token_locks").setdefault(key, threading.Lock())
        with token_lock:  # (a concurrent repeat of the same token waits; other RunTasks do not)
            seen = tokens.get(key)
            if seen is None:
                result = original(self)
                tasks = result.result.get("tasks") or []  # type: ignore[union-attr]
                if tasks:
                    tokens[key] = (params, [t.task_arn for t in tasks])
                return result
        if seen[0] != params:
            raise JsonRESTError("ConflictException", f"The clientToken {token} is already in use with a different RunTask request.")
        return ActionResult({"tasks": self.ecs_backend.describe_tasks(cluster, seen[1]), "failures": []})

    EC2ContainerServiceResponse.run_task = run_task
    _installed["client_token"] = True


def _hidden_describes() -> int:
    runtime = _installed.get("runtime")
    return int(getattr(runtime.faults, "describe_missing", 0)) if runtime is not None else 0


def describe_tasks_like_ecs() -> None:
    """DescribeTasks: moto 5.2.5 leaves a task it does not know out of its answer; ECS lists it
    in ``failures`` with reason MISSING (API_Failure). And ECS is eventually consistent: a task
    just started may be MISSING for a while (RunTask API reference); local mode is strict about
    it: each WDL task is MISSING for the first ``faults.describe_missing`` DescribeTasks calls
    that name it (not the local runtime's own). tests/integration/test_moto_patches.py fails
    once moto reports MISSING itself."""
    from moto.core.responses import ActionResult
    from moto.ecs.responses import EC2ContainerServiceResponse

    if _installed.get("describe_tasks"):
        return
    originals["ecs.DescribeTasks"] = EC2ContainerServiceResponse.describe_tasks

    def describe_tasks(self: Any) -> Any:
        cluster = self._get_param("cluster", "default")
        asked = self._get_param("tasks", [])
        found = {t.task_arn: t for t in self.ecs_backend.describe_tasks(cluster, asked)}
        ours = LOCAL_RUNTIME_AGENT in (self.headers.get("User-Agent") or "")
        tasks, failures = [], []
        for name in asked:
            task = next((t for arn, t in found.items() if arn == name or arn.endswith("/" + name)), None)
            if task is not None and not ours and _hidden_now(self.ecs_backend, task):
                task = None
            if task is None:
                failures.append({"arn": name, "reason": "MISSING"})
            elif task not in tasks:
                tasks.append(task)
        include = self._get_param("include", [])
        from moto.ecs.responses import DESCRIBE_TASKS_TAGS

        if "TAGS" in include:
            self._include_in_response(DESCRIBE_TASKS_TAGS)
        else:
            self._exclude_from_response(DESCRIBE_TASKS_TAGS)
        return ActionResult({"tasks": tasks, "failures": failures})

    EC2ContainerServiceResponse.describe_tasks = describe_tasks
    _installed["describe_tasks"] = True


def _hidden_now(backend: Any, task: Any) -> bool:
    """Whether this DescribeTasks still does not know ``task`` (and count it)."""
    if "-driver" in str(task.task_definition_arn):  # (WDL tasks only, like the other faults)
        return False
    with _client_tokens_lock:
        left_by_task = _backend_state(backend, "_miniwdl_fargate_hidden")
        left = left_by_task.setdefault(task.task_arn, _hidden_describes())
        if left <= 0:
            return False
        left_by_task[task.task_arn] = left - 1
        return True


def _patch_efs_cfn() -> None:
    # AWS::EFS::FileSystem: moto has no Fn::GetAtt support (Arn, FileSystemId);
    # AWS::EFS::AccessPoint: moto has no physical id, so Ref gives an object instead of its id.
    from moto.efs.models import AccessPoint, FileSystem

    AccessPoint.physical_resource_id = property(lambda self: self.access_point_id)

    def get_cfn_attribute(self: Any, attribute_name: str) -> str:
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name == "Arn":
            return self.file_system_arn
        if attribute_name == "FileSystemId":
            return self.file_system_id
        raise UnformattedGetAttTemplateException()

    FileSystem.get_cfn_attribute = get_cfn_attribute
    FileSystem.has_cfn_attr = classmethod(lambda cls, attr: attr in ("Arn", "FileSystemId"))


def _patch_apigateway_cfn() -> None:
    # AWS::ApiGateway::RestApi: moto ignores the Body (the OpenAPI document SAM generates), so
    # the API has no methods and its Deployment fails. Import the Body as PutRestApi would.
    # AWS::ApiGateway::Deployment has no physical id, so Ref gives an object instead of its id.
    from moto.apigateway.models import Deployment, RestAPI, apigateway_backends

    Deployment.physical_resource_id = property(lambda self: self.id)

    original = RestAPI.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        props = cloudformation_json["Properties"]
        props.setdefault("Name", resource_name)
        api = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        if isinstance(props.get("Body"), dict):
            apigateway_backends[account_id][region_name].put_rest_api(api.id, props["Body"], fail_on_warnings=False)
        return api

    RestAPI.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


def _patch_s3_cfn() -> None:
    # AWS::S3::Bucket: moto ignores NotificationConfiguration.EventBridgeConfiguration, so no
    # "Object Created" event would ever reach EventBridge; it also ignores the public access
    # block and versioning, which the template tests read back.
    from moto.s3.models import FakeBucket, PublicAccessBlock

    original = FakeBucket.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        bucket = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        props = cloudformation_json.get("Properties", {})
        notifications = props.get("NotificationConfiguration", {})
        if notifications.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled") in (True, "true", "True"):
            bucket.set_notification_configuration({"EventBridgeConfiguration": {}})
        block = props.get("PublicAccessBlockConfiguration")
        if block:
            bucket.public_access_block = PublicAccessBlock(
                *(str(block.get(k, False)).lower() for k in (
                    "BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"
                ))
            )
        versioning = props.get("VersioningConfiguration", {}).get("Status")
        if versioning:
            bucket.versioning_status = versioning
        return bucket

    FakeBucket.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


def _patch_vpc_cfn() -> None:
    # AWS::EC2::VPC: moto ignores EnableDnsSupport/EnableDnsHostnames, and its network interfaces
    # in a VPC without DNS hostnames break ECS DescribeTasks (no private_dns_name).
    from moto.ec2.models.vpcs import VPC

    original = VPC.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        vpc = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        props = cloudformation_json.get("Properties", {})
        for prop, attribute in (("EnableDnsSupport", "enable_dns_support"), ("EnableDnsHostnames", "enable_dns_hostnames")):
            if prop in props:
                setattr(vpc, attribute, props[prop] in (True, "true", "True"))
        return vpc

    VPC.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


def _patch_ecs_cluster_cfn() -> None:
    # AWS::ECS::Cluster: moto creates the cluster by name only, ignoring its capacity providers
    # (FARGATE, FARGATE_SPOT), default strategy and settings (Container Insights).
    from moto.ecs.models import Cluster, ecs_backends

    original = Cluster.create_from_cloudformation_json.__func__

    def lower_keys(items: Any) -> list[dict[str, Any]]:
        return [{k[0].lower() + k[1:]: v for k, v in item.items()} for item in items or []]

    def create_from_cloudformation_json(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        cluster = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        props = cloudformation_json.get("Properties", {})
        ecs_backends[account_id][region_name].put_cluster_capacity_providers(
            cluster.name,
            props.get("CapacityProviders"),
            lower_keys(props.get("DefaultCapacityProviderStrategy")) or None,
        )
        if props.get("ClusterSettings"):
            cluster.settings = lower_keys(props["ClusterSettings"])
        return cluster

    Cluster.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


def _patch_ecs_task_definition_cfn() -> None:
    # AWS::ECS::TaskDefinition: moto registers Memory but drops Cpu, so the driver's task (and its
    # run report's own row, see report_ecs_task_size) had no vCPU size in local mode.
    # tests/integration/test_template.py::test_moto_cloudformation_still_drops_a_task_definitions_cpu
    # fails once moto keeps it.
    from moto.ecs.models import TaskDefinition

    original = TaskDefinition.create_from_cloudformation_json.__func__
    _installed["moto_task_definition_cfn"] = original

    def create_from_cloudformation_json(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        task_definition = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        cpu = cloudformation_json.get("Properties", {}).get("Cpu")
        if cpu and not task_definition.cpu:
            task_definition.cpu = str(cpu)
        return task_definition

    TaskDefinition.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)


def unpatched_task_definition_cfn() -> Any:
    """moto's own AWS::ECS::TaskDefinition creation (a function of cls, name, template, account, region)."""
    from moto.ecs.models import TaskDefinition

    return _installed.get("moto_task_definition_cfn", TaskDefinition.create_from_cloudformation_json.__func__)


def _add_missing_cfn_models() -> None:
    # moto's CloudFormation has no model for these types: it warns and leaves them out of the
    # stack. Each small model below does what the AWS API call behind the resource would.
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel

    class _Created:
        """Common plumbing: a resource with a physical id and no attributes. (moto finds models
        as direct subclasses of CloudFormationModel, hence a mixin.)"""

        def __init__(self, physical_id: str) -> None:
            self.physical_resource_id = physical_id

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return False

        def is_created(self) -> bool:
            return True

    class Alarm(_Created, CloudFormationModel):
        # AWS::CloudWatch::Alarm -> PutMetricAlarm
        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::CloudWatch::Alarm"

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            from moto.cloudwatch.models import cloudwatch_backends

            p = cloudformation_json["Properties"]
            name = p.get("AlarmName") or f"{kwargs.get('StackId', 'stack').split('/')[-2]}-{resource_name}"
            cloudwatch_backends[account_id][region_name].put_metric_alarm(
                name=name,
                namespace=p.get("Namespace"),
                metric_name=p.get("MetricName"),
                comparison_operator=p["ComparisonOperator"],
                evaluation_periods=int(p["EvaluationPeriods"]),
                period=int(p.get("Period", 60)),
                threshold=float(p["Threshold"]),
                statistic=p.get("Statistic"),
                description=p.get("AlarmDescription", ""),
                dimensions=list(p.get("Dimensions") or []),
                alarm_actions=list(p.get("AlarmActions") or []),
                treat_missing_data=p.get("TreatMissingData"),
            )
            return cls(name)

    class QueuePolicy(_Created, CloudFormationModel):
        # AWS::SQS::QueuePolicy -> SetQueueAttributes(Policy) on each queue (Queues are URLs)
        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::SQS::QueuePolicy"

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            from moto.sqs.models import sqs_backends

            p = cloudformation_json["Properties"]
            for url in p["Queues"]:
                sqs_backends[account_id][region_name].set_queue_attributes(
                    url.rstrip("/").split("/")[-1], {"Policy": json.dumps(p["PolicyDocument"])}
                )
            return cls(f"{resource_name}-policy")

    class BucketPolicy(_Created, CloudFormationModel):
        # AWS::S3::BucketPolicy: recorded, not enforced. moto evaluates bucket policies without
        # their Conditions, so the TLS-only Deny statements would deny every request.
        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::S3::BucketPolicy"

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            from moto.s3.models import s3_backends

            p = cloudformation_json["Properties"]
            s3_backends[account_id]["aws"].get_bucket(p["Bucket"])  # the bucket must exist
            policy = cls(p["Bucket"])
            policy.document = p["PolicyDocument"]
            return policy

    class ApiStage(_Created, CloudFormationModel):
        # AWS::ApiGateway::Stage -> CreateStage (SAM puts the stage in its own resource)
        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::ApiGateway::Stage"

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            from moto.apigateway.models import apigateway_backends

            p = cloudformation_json["Properties"]
            apigateway_backends[account_id][region_name].create_stage(
                p["RestApiId"],
                p["StageName"],
                p["DeploymentId"],
                variables=p.get("Variables"),
                description=p.get("Description", ""),
                tracing_enabled=p.get("TracingEnabled") in (True, "true", "True"),
            )
            return cls(p["StageName"])

    _installed["cfn_models"] = [Alarm, QueuePolicy, BucketPolicy, ApiStage]  # keep the classes alive
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()


def fix_ecs_resource_requirements() -> None:
    """RunTask: Fargate containers need no container-level memory (the task size covers it), but
    moto's placement bookkeeping adds it up and fails on None. Count a missing value as 0.
    (Also used by tests that run the backend against in-process moto.)"""
    from moto.ecs.models import EC2ContainerServiceBackend

    if _installed.get("ecs_requirements"):
        return
    original = EC2ContainerServiceBackend._calculate_task_resource_requirements

    def requirements(task_definition: Any) -> dict[str, int]:
        patched = copy.copy(task_definition)
        patched.container_definitions = [
            dict(cd, memory=cd.get("memory") or cd.get("memoryReservation") or 0)
            for cd in task_definition.container_definitions
        ]
        return original(patched)

    EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(requirements)
    _installed["ecs_requirements"] = True


def report_ecs_task_size() -> None:
    """DescribeTasks: ECS answers each task's ``cpu`` and ``memory`` (the task size: RunTask's
    overrides, else the task definition's; https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Task.html),
    moto 5.2.5 leaves both out, so a driver in local mode could not price its own task in the run
    report. Set them on every task RunTask creates. tests/integration/test_driver_report_and_cache.py
    ::test_moto_still_leaves_the_task_size_out fails once moto reports them itself."""
    from moto.ecs.models import EC2ContainerServiceBackend

    if _installed.get("ecs_task_size"):
        return
    original = EC2ContainerServiceBackend.run_task

    def run_task(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        tasks = original(self, *args, **kwargs)
        for task in tasks:
            size_task(task, self.describe_task_definition(task.task_definition_arn))
        return tasks

    _installed["moto_ecs_run_task"] = original
    EC2ContainerServiceBackend.run_task = run_task
    _installed["ecs_task_size"] = True


def unpatched_ecs_run_task() -> Any:
    """moto's own RunTask (for the test that tells when ``report_ecs_task_size`` is no longer
    needed)."""
    from moto.ecs.models import EC2ContainerServiceBackend

    return _installed.get("moto_ecs_run_task", EC2ContainerServiceBackend.run_task)


def size_task(task: Any, task_definition: Any) -> None:
    """``task.cpu`` / ``task.memory`` as ECS reports them (strings), where the task has a size."""
    overrides = task.overrides or {}
    for name in ("cpu", "memory"):
        value = overrides.get(name) or getattr(task_definition, name, None)
        if value:
            setattr(task, name, str(value))


_ORIGINAL_TRANSFORMER_METHODS: dict[str, Any] = {}


def fix_response_transformer_race() -> None:
    """moto 5.2.5 keeps which optional keys a response includes (DescribeTasks ``include=TAGS``)
    in ``BaseResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER``, a class attribute every request of a
    service shares: a DescribeTasks without ``include`` (a driver's poller) running beside one
    with it (a sweep looking for a run's tasks by tag) can answer it without tags. Each request
    gets its own copy instead. (moto serves each request from a fresh response object; no
    upstream issue filed yet: moto/core/responses.py ``_include_in_response``.)
    ``tests/integration/test_moto_patches.py`` tells when moto no longer shares it."""
    from moto.core.responses import BaseResponse, never_return

    if _ORIGINAL_TRANSFORMER_METHODS:
        return
    _ORIGINAL_TRANSFORMER_METHODS.update(
        include=BaseResponse._include_in_response, exclude=BaseResponse._exclude_from_response
    )

    def own(self: Any) -> dict[str, Any]:
        if "RESPONSE_KEY_PATH_TO_TRANSFORMER" not in vars(self):
            self.RESPONSE_KEY_PATH_TO_TRANSFORMER = dict(type(self).RESPONSE_KEY_PATH_TO_TRANSFORMER)
        return self.RESPONSE_KEY_PATH_TO_TRANSFORMER

    def include(self: Any, response_key_path: str) -> None:
        own(self)[response_key_path] = lambda x: x

    def exclude(self: Any, response_key_path: str) -> None:
        own(self)[response_key_path] = never_return

    BaseResponse._include_in_response = include  # type: ignore[method-assign]
    BaseResponse._exclude_from_response = exclude  # type: ignore[method-assign]
