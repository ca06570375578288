"""moto's bugs that local mode depends on, each as a named fix: what moto (``MOTO_VERSION``)
does wrong, what AWS does, the upstream issue where there is one, and the test that fails once
moto no longer needs the fix (then delete the fix and its test). ``install()`` installs them all;
tests that run against in-process moto install the few they need by name.

A fix changes how moto answers the product's own requests; it never runs anything (that is
``hooks``) and never creates CloudFormation resources (``cfn``).
"""

from __future__ import annotations

import collections
import collections.abc
import copy
import datetime
import functools
import hashlib
import inspect
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from . import ecs_state
from .patching import MOTO_VERSION, backend_state, installed, moto_function, replace, state_lock
from .tracking import untracked_copy

#: where no getmoto/moto issue or pull request about the bug is known to us (moto 5.2.5)
NO_ISSUE = "no upstream issue known"


@dataclass(frozen=True)
class Fix:
    name: str
    moto_does: str
    upstream: str
    still_needed_test: str
    install: Callable[[], None]


#: the largest request payload Invoke takes, by invocation type: 6 MB synchronous, 1 MB asynchronous
#: (https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html: "For synchronous invocations, the
#: maximum payload size is 6 MB. For asynchronous invocations, the maximum payload size is 1 MB.")
INVOKE_REQUEST_BYTES = {"RequestResponse": 6 * 1024 * 1024, "Event": 1024 * 1024}


def invoke_request_size() -> None:
    """Invoke: moto runs the function with a request payload of any size; Lambda refuses one over
    its invocation type's quota (``INVOKE_REQUEST_BYTES``) before running anything, 413
    RequestEntityTooLargeException (botocore's model: RequestTooLargeException, "The request
    payload exceeded the Invoke request body JSON input quota"). Through API Gateway that is a
    request body of more than about 6 MB with the event's other fields: the local gateway's event
    is refused as the deployed API's would be, where moto ran the function with it."""
    from moto.awslambda.responses import LambdaResponse

    def invoke(self: Any) -> Any:
        body = self.body or b""
        size = len(body.encode() if isinstance(body, str) else body)
        limit = INVOKE_REQUEST_BYTES.get(self.headers.get("X-Amz-Invocation-Type") or "RequestResponse")
        if limit is not None and size > limit:
            said = {"Type": "User", "message": f"Request must be smaller than {limit} bytes for the InvokeFunction operation"}
            # (moto takes an answer's status from its "status" header)
            headers = {"status": "413", "x-amzn-ErrorType": "RequestEntityTooLargeException", "content-type": "application/json"}
            return 413, headers, json.dumps(said)
        return moto_function("invoke_request_size", "invoke")(self)

    replace("invoke_request_size", LambdaResponse, "invoke", invoke)


#: the longest S3 object key, in bytes of UTF-8 (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html)
S3_KEY_BYTES = 1024


def s3_key_length() -> None:
    """PutObject, CopyObject and CreateMultipartUpload: moto takes a key of any length; S3
    refuses one over 1,024 bytes of UTF-8 with KeyTooLongError ("Your key is too long"): an output
    deep in a Directory uploads locally and fails on AWS."""
    from moto.s3.exceptions import S3ClientError
    from moto.s3.models import S3Backend

    def checked(name: str, key: str) -> None:
        if len(key.encode(errors="surrogateescape")) > S3_KEY_BYTES:
            raise S3ClientError("KeyTooLongError", "Your key is too long")

    def put_object(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        checked("PutObject", key_name)
        return moto_function("s3_key_length", "put_object")(self, bucket_name, key_name, *args, **kwargs)

    def create_multipart_upload(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        checked("CreateMultipartUpload", key_name)
        return moto_function("s3_key_length", "create_multipart_upload")(self, bucket_name, key_name, *args, **kwargs)

    def copy_object(self: Any, src_key: Any, dest_bucket_name: str, dest_key_name: str, *args: Any, **kwargs: Any) -> Any:
        checked("CopyObject", dest_key_name)
        return moto_function("s3_key_length", "copy_object")(self, src_key, dest_bucket_name, dest_key_name, *args, **kwargs)

    replace("s3_key_length", S3Backend, "put_object", put_object)
    replace("s3_key_length", S3Backend, "create_multipart_upload", create_multipart_upload)
    replace("s3_key_length", S3Backend, "copy_object", copy_object)


def send_task_failure_cause() -> None:
    """SendTaskFailure: moto's API layer drops the ``cause`` parameter (its executing backend
    takes it), so a failed run's state machine would see a null Cause."""

    def send_task_failure(self: Any) -> Any:
        from moto.core.responses import EmptyResult

        backend = self.stepfunction_backend
        given = {"error": self._get_param("error"), "cause": self._get_param("cause")}
        # (moto's non-executing backend, in use when state machines are not executed, takes no
        # cause at all: nothing to keep there)
        parameters = inspect.signature(backend.send_task_failure).parameters.values()
        if not any(p.name == "cause" or p.kind is p.VAR_KEYWORD for p in parameters):
            del given["cause"]
        backend.send_task_failure(self._get_param("taskToken"), **given)
        return EmptyResult()

    from moto.stepfunctions.responses import StepFunctionResponse

    replace("send_task_failure_cause", StepFunctionResponse, "send_task_failure", send_task_failure)


def stop_execution_aborts() -> None:
    """StopExecution: moto flags the program stopped but a state waiting for a task token keeps
    waiting, and the execution ends with whatever happens next (FAILED, SUCCEEDED) instead of
    ABORTED at once. Make it ABORTED when stopped, as Step Functions does, and keep it so."""
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

    def stop(self: Any, stop_date: Any, error: Any, cause: Any) -> None:
        moto_function("stop_execution_aborts", "stop")(self, stop_date, error, cause)
        if self.exec_status == ExecutionStatus.RUNNING:
            self.exec_status = ExecutionStatus.ABORTED
            self.stop_date = stop_date or datetime.datetime.now(tz=datetime.timezone.utc)
            self._miniwdl_fargate_aborted = True

    def reflect(self: Any) -> None:
        if getattr(self.execution, "_miniwdl_fargate_aborted", False):
            return
        moto_function("stop_execution_aborts", "_reflect_execution_status")(self)

    replace("stop_execution_aborts", Execution, "stop", stop)
    replace("stop_execution_aborts", BaseExecutionWorkerCommunication, "_reflect_execution_status", reflect)


def heartbeat_timeout_name() -> None:
    """A task state whose HeartbeatSeconds passed without a SendTaskHeartbeat fails with
    ``States.HeartbeatTimeout`` in Step Functions
    (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html), which a
    Catch can tell from ``States.Timeout`` (TimeoutSeconds). moto's ASL interpreter raises its
    HeartbeatTimeoutError (a TimeoutError) and names every TimeoutError ``States.Timeout``. Name it
    as AWS does. (moto's own TimeoutSecondsPath, HeartbeatSecondsPath and SendTaskHeartbeat work as
    documented.)"""
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

    def _from_error(self: Any, env: Any, ex: Exception) -> Any:
        if not isinstance(ex, HeartbeatTimeoutError):
            return moto_function("heartbeat_timeout_name", "_from_error")(self, env, ex)
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

    replace("heartbeat_timeout_name", StateTaskServiceCallback, "_from_error", _from_error)


def heartbeat_while_starting() -> None:
    """SendTaskHeartbeat with the token of a task state whose service call (here: the driver's
    RunTask) has not returned yet: moto sets a state's heartbeat clock up only after the call
    returns, and answers InvalidToken until then, so a driver that starts at once (local mode
    forks it within RunTask) and beats first is told its state no longer waits, and stops beating.
    In Step Functions the token is valid from when the workflow enters the task state
    (https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskHeartbeat.html:
    "Task tokens are generated ... in the context object when a workflow enters a task state"),
    before the service is called. Accept such a beat (the heartbeat clock starts anyway when the
    wait begins)."""
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    def notify_heartbeat(self: Any) -> bool:
        moto_function("heartbeat_while_starting", "notify_heartbeat")(self)
        return True

    replace("heartbeat_while_starting", CallbackEndpoint, "notify_heartbeat", notify_heartbeat)


def as_delivered(event: dict[str, Any]) -> dict[str, Any]:
    """The fix ``event_envelope`` (applied by ``hooks`` to each event it delivers): make moto's
    event envelope look like what EventBridge delivers: an ISO 8601 ``time`` (moto: a float), a
    unique ``id`` (moto: one constant id for every S3 event), and S3's ``detail.object.etag``
    (moto: ``eTag``)."""
    event = copy.deepcopy(event)
    if isinstance(event.get("time"), (int, float)):
        stamp = datetime.datetime.fromtimestamp(event["time"], datetime.timezone.utc)
        event["time"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    if event.get("source") == "aws.s3":
        event["id"] = str(uuid.uuid4())
        obj = event.get("detail", {}).get("object", {})
        if "eTag" in obj:
            obj["etag"] = obj.pop("eTag")
    return event


def ecs_resource_requirements() -> None:
    """RunTask: Fargate containers need no container-level memory (the task size covers it), but
    moto's placement bookkeeping adds it up and fails on None. Count a missing value as 0."""
    from moto.ecs.models import EC2ContainerServiceBackend

    def requirements(task_definition: Any) -> dict[str, int]:
        patched = untracked_copy(task_definition)  # (once per RunTask: moto would keep every copy)
        patched.container_definitions = [
            dict(cd, memory=cd.get("memory") or cd.get("memoryReservation") or 0)
            for cd in task_definition.container_definitions
        ]
        return moto_function("ecs_resource_requirements", "_calculate_task_resource_requirements")(patched)

    replace(
        "ecs_resource_requirements", EC2ContainerServiceBackend, "_calculate_task_resource_requirements",
        staticmethod(requirements),
    )


def ecs_task_size() -> None:
    """DescribeTasks: ECS answers each task's ``cpu`` and ``memory`` (the task size: RunTask's
    overrides, else the task definition's; https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Task.html),
    moto leaves both out, so a driver in local mode could not price its own task in the run
    report. Set them on every task RunTask creates."""
    from moto.ecs.models import EC2ContainerServiceBackend

    def run_task(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        tasks = moto_function("ecs_task_size", "run_task")(self, *args, **kwargs)
        for task in tasks:
            size_task(task, self.describe_task_definition(task.task_definition_arn))
        return tasks

    replace("ecs_task_size", EC2ContainerServiceBackend, "run_task", run_task)


def size_task(task: Any, task_definition: Any) -> None:
    """``task.cpu`` / ``task.memory`` as ECS reports them (strings), where the task has a size."""
    overrides = task.overrides or {}
    for name in ("cpu", "memory"):
        value = overrides.get(name) or getattr(task_definition, name, None)
        if value:
            setattr(task, name, str(value))


def ecs_managed_instances() -> None:
    """RunTask: moto runs a task on a capacity provider other than FARGATE or FARGATE_SPOT only
    on container instances registered in the cluster (an EC2 Auto Scaling group's) and fails
    ("No instances found in cluster") without one. A capacity provider of ECS Managed Instances
    launches and registers its own instances for the tasks it is given
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ManagedInstancesProvider.html): a task
    whose task definition requires MANAGED_INSTANCES and names such a provider runs, as a Fargate
    task does in moto, and keeps its capacity provider's name."""
    from moto.ecs.models import EC2ContainerServiceBackend

    def run_task(  # (moto's own signature: its response passes every argument by position)
        self: Any, cluster_str: str, task_definition_str: str, count: int, overrides: Any, started_by: str, tags: Any,
        launch_type: str | None, networking_configuration: Any = None, group: str | None = None,
        platform_version: str | None = None, capacity_provider_strategy: list[dict[str, Any]] | None = None,
    ) -> list[Any]:
        moto_run_task = moto_function("ecs_managed_instances", "run_task")
        provider = (capacity_provider_strategy or [{}])[0].get("capacityProvider")
        definition = self.describe_task_definition(task_definition_str)
        managed = provider not in (None, "FARGATE", "FARGATE_SPOT") and "MANAGED_INSTANCES" in (definition.requires_compatibilities or [])
        if managed:
            _require_managed_instances_provider(self, cluster_str, provider)
        strategy = [{"capacityProvider": "FARGATE", "weight": 1}] if managed else capacity_provider_strategy  # (placed as Fargate's)
        tasks = moto_run_task(
            self, cluster_str, task_definition_str, count, overrides, started_by, tags, launch_type,
            networking_configuration, group, platform_version, strategy,
        )
        for task in tasks if managed else []:
            task.capacity_provider_name = provider
        return tasks

    replace("ecs_managed_instances", EC2ContainerServiceBackend, "run_task", run_task)


def _require_managed_instances_provider(backend: Any, cluster_str: str, name: str) -> None:
    """As ECS refuses it: a Managed Instances capacity provider belongs to the one cluster it was
    created for (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateCapacityProvider.html,
    ``cluster``), so a strategy naming one that does not exist, is another cluster's, or is not a
    Managed Instances provider cannot place the task."""
    from moto.ecs.exceptions import InvalidParameterException

    cluster = backend._get_cluster(cluster_str)
    provider = backend._get_provider(name)
    if provider is None or getattr(provider, "managed_instances_provider", None) is None:
        raise InvalidParameterException(f"The capacity provider {name} is not a Managed Instances capacity provider of cluster {cluster.name}.")
    if getattr(provider, "cluster", None) not in (cluster.name, cluster.arn):
        raise InvalidParameterException(
            f"The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster: {name}."
        )


def managed_instances_provider(name: str, cluster: str, account_id: str = "123456789012", region: str = "us-east-1") -> None:
    """Create a Managed Instances capacity provider of ``cluster`` in moto, as the stack's
    template does (for tests that run the backend against moto without deploying the stack)."""
    from .cfn import _capacity_provider

    _capacity_provider(name, {"Name": name, "ClusterName": cluster, "ManagedInstancesProvider": {}}, account_id, region, "")


#: the RunTask request being handled on this thread (``run_task_volume_configurations``)
_RUN_TASK = threading.local()


def run_task_volume_configurations() -> None:
    """RunTask: moto drops ``volumeConfigurations`` (its backend's run_task has no such
    parameter), so the task's EBS volumes configured at launch would be lost; ECS creates and
    attaches them to the task
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html). Keep them on each
    task it starts (``volume_configurations``), and the request at hand while it is handled
    (``requested``: the volumes local mode's runner mounts, and the capacity provider asked for,
    whatever other fixes made of it on the way to moto's backend)."""
    from moto.ecs.responses import EC2ContainerServiceResponse

    def run_task(self: Any) -> Any:
        _RUN_TASK.params = {
            name: copy.deepcopy(self._get_param(name) or []) for name in ("volumeConfigurations", "capacityProviderStrategy")
        }
        try:
            result = moto_function("run_task_volume_configurations", "run_task")(self)
        finally:
            params, _RUN_TASK.params = _RUN_TASK.params, {}
        for task in result.result.get("tasks") or []:
            if getattr(task, "volume_configurations", None) is None:
                task.volume_configurations = params["volumeConfigurations"]
        return result

    replace("run_task_volume_configurations", EC2ContainerServiceResponse, "run_task", run_task)


def requested(name: str) -> list[dict[str, Any]]:
    """RunTask's ``volumeConfigurations`` or ``capacityProviderStrategy`` as the request this
    thread is handling gave them ([] outside one, or where it gave none)."""
    return copy.deepcopy((getattr(_RUN_TASK, "params", None) or {}).get(name) or [])


def ecs_image_digest() -> None:
    """DescribeTasks: ECS gives each container the digest of the image it pulled
    (``containers[].imageDigest``, https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Container.html);
    moto gives none, so a run's provenance could not name what ran. Local mode pulls nothing from
    a registry: its stand-in is ``sha256:`` of the image reference itself, which changes exactly
    when the reference does."""
    from moto.ecs.models import EC2ContainerServiceBackend

    def run_task(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        tasks = moto_function("ecs_image_digest", "run_task")(self, *args, **kwargs)
        for task in tasks:
            for container in task.containers:
                container.image_digest = local_image_digest(container.image or "")
        return tasks

    replace("ecs_image_digest", EC2ContainerServiceBackend, "run_task", run_task)


def local_image_digest(image: str) -> str:
    """Local mode's stand-in for the digest of ``image`` (see ``ecs_image_digest``)."""
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


#: RunTask's overrides, in JSON with their formatting characters (API_RunTask.html: "A total of 8192
#: characters are allowed for overrides")
RUN_TASK_OVERRIDES_CHARS = 8192


def run_task_overrides_length() -> None:
    """RunTask: moto takes ``overrides`` of any length; ECS refuses more than 8,192 characters of
    them, JSON formatting included, with InvalidParameterException ("Container Overrides length
    must be at most 8192"): a task whose script (its command override) is too long starts locally
    and fails on AWS. Measured as compact JSON, as a client sends it."""
    from moto.ecs.exceptions import InvalidParameterException
    from moto.ecs.responses import EC2ContainerServiceResponse

    def run_task(self: Any) -> Any:
        overrides = self._get_param("overrides")
        if overrides and len(json.dumps(overrides, separators=(",", ":"))) > RUN_TASK_OVERRIDES_CHARS:
            raise InvalidParameterException(f"Container Overrides length must be at most {RUN_TASK_OVERRIDES_CHARS}")
        return moto_function("run_task_overrides_length", "run_task")(self)

    replace("run_task_overrides_length", EC2ContainerServiceResponse, "run_task", run_task)


#: ListTasks' filters besides ``startedBy`` (``cluster`` is where, not a filter; paging is not one)
LIST_TASKS_FILTERS = ("containerInstance", "family", "serviceName", "desiredStatus", "launchType", "daemonName")


def list_tasks_filters() -> None:
    """ListTasks: moto takes ``startedBy`` with other filters and, given no ``desiredStatus``,
    lists stopped tasks too. ECS refuses ``startedBy`` with any other filter ("When you specify
    startedBy as the filter, it must be the only filter that you use",
    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ListTasks.html;
    InvalidParameterException "cannot specify startedBy with other arguments",
    https://github.com/aws/aws-sdk-go-v2/issues/1893), and lists RUNNING tasks unless asked for
    others ("The default status filter is RUNNING"): a listing that works locally failed every
    driver launch on AWS."""
    from moto.ecs.exceptions import InvalidParameterException
    from moto.ecs.responses import EC2ContainerServiceResponse

    def list_tasks(self: Any) -> Any:
        others = [name for name in LIST_TASKS_FILTERS if self._get_param(name)]
        if self._get_param("startedBy") and others:
            raise InvalidParameterException("cannot specify startedBy with other arguments")
        if not self._get_param("desiredStatus"):
            self.params["desiredStatus"] = "RUNNING"  # (the request as parsed: moto's ECS handler reads from it)
        return moto_function("list_tasks_filters", "list_tasks")(self)

    replace("list_tasks_filters", EC2ContainerServiceResponse, "list_tasks", list_tasks)


def run_task_client_token() -> None:
    """RunTask: moto ignores ``clientToken``, so a retry of a request it handled starts a second
    task. ECS returns the tasks the first request started for the same token and parameters in the
    same cluster, and ConflictException for a token reused with other parameters
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/ECS_Idempotency.html)."""
    from moto.ecs.responses import EC2ContainerServiceResponse

    replace("run_task_client_token", EC2ContainerServiceResponse, "run_task", _run_task_once_per_token)


def _run_task_once_per_token(self: Any) -> Any:
    from moto.core.exceptions import JsonRESTError
    from moto.core.responses import ActionResult

    moto_run_task = moto_function("run_task_client_token", "run_task")
    token = self._get_param("clientToken")
    if not token:
        return moto_run_task(self)
    cluster = self._get_param("cluster", "default")
    params = json.dumps({k: v for k, v in json.loads(self.body or "{}").items() if k != "clientToken"}, sort_keys=True)
    key = (cluster.rsplit("/", 1)[-1], token)
    with state_lock():
        tokens = backend_state(self.ecs_backend, "_miniwdl_fargate_client_tokens")
        token_lock = backend_state(self.ecs_backend, "_miniwdl_fargate_token_locks").setdefault(key, threading.Lock())
    with token_lock:  # (a concurrent repeat of the same token waits; other RunTasks do not)
        seen = tokens.get(key)
        # a token whose tasks are all forgotten (an hour after they stopped) went with them
        started = self.ecs_backend.describe_tasks(cluster, seen[1]) if seen is not None else []
        if not started:
            result = moto_run_task(self)
            tasks = result.result.get("tasks") or []
            with state_lock():
                tokens.pop(key, None)
                if tasks:
                    tokens[key] = (params, [t.task_arn for t in tasks])
                    _forget_tokens_of_forgotten_tasks(self.ecs_backend, tokens)
            return result
    if seen[0] != params:
        raise JsonRESTError("ConflictException", f"The clientToken {token} is already in use with a different RunTask request.")
    return ActionResult({"tasks": started, "failures": []})


#: how many client tokens are kept before those whose tasks ECS forgot are dropped (then twice as
#: many as are left); see ``_forget_tokens_of_forgotten_tasks``
TOKENS_KEPT = 1024


def _forget_tokens_of_forgotten_tasks(backend: Any, tokens: dict[Any, Any]) -> None:
    """Drop the client tokens none of whose tasks moto knows any more (``ecs_state`` forgets a task
    an hour after it stopped, as ECS does): a RunTask token lives at most 24 hours on ECS
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/ECS_Idempotency.html), so a stack that
    stays up does not keep every token it was ever sent. Looks only when the tokens doubled since
    the last look (each RunTask pays O(1) on average); the caller holds ``state_lock``."""
    limits = backend_state(backend, "_miniwdl_fargate_token_limit")
    if len(tokens) < limits.get("next", TOKENS_KEPT):
        return
    locks = backend_state(backend, "_miniwdl_fargate_token_locks")
    # (each token's tasks looked up by key in its own cluster, never iterating moto's tables,
    # which RunTask and ecs_state change without this lock)
    gone = [key for key, (_, arns) in tokens.items() if not any(arn in backend.tasks.get(key[0], {}) for arn in arns)]
    for key in gone:
        del tokens[key]
        locks.pop(key, None)
    limits["next"] = max(TOKENS_KEPT, 2 * len(tokens))


def describe_tasks_missing() -> None:
    """DescribeTasks: moto leaves a task it does not know out of its answer; ECS lists it in
    ``failures`` with reason MISSING. And each task is answered as one consistent record (a
    snapshot, see ``ecs_state.WRITE_LOCK``), never half of one write of the local runner ("The specified task wasn't found",
    https://docs.aws.amazon.com/AmazonECS/latest/userguide/api_failures_messages.html; the shape:
    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Failure.html)."""
    from moto.ecs.responses import EC2ContainerServiceResponse

    replace("describe_tasks_missing", EC2ContainerServiceResponse, "describe_tasks", _describe_tasks)


def _describe_tasks(self: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.ecs.responses import DESCRIBE_TASKS_TAGS

    cluster = self._get_param("cluster", "default")
    asked = self._get_param("tasks", [])
    found: dict[str, Any] = {}
    for task in self.ecs_backend.describe_tasks(cluster, asked):  # (by its ARN and by its ID)
        arn = task.task_arn
        found[arn] = found[arn.rsplit("/", 1)[-1]] = task
    tasks, failures, answered = [], [], set()
    for name in asked:
        task = found.get(name)
        if task is None:
            failures.append({"arn": name, "reason": "MISSING"})
        elif id(task) not in answered:
            answered.add(id(task))
            # a copy taken between two writes of local mode's runner (ecs_state.WRITE_LOCK): moto
            # serializes the answer after this returns, and ECS answers from one consistent record
            tasks.append(ecs_state.snapshot(task))
    if "TAGS" in self._get_param("include", []):
        self._include_in_response(DESCRIBE_TASKS_TAGS)
    else:
        self._exclude_from_response(DESCRIBE_TASKS_TAGS)
    return ActionResult({"tasks": tasks, "failures": failures})


def task_lookup_by_key() -> None:
    """DescribeTasks: moto looks for each named task in every task of every cluster (matching IDs
    by substring), so each call costs the number of tasks the account ever ran, times the names
    asked: at 10,000 tasks, 32 ms for one name and 0.13 s for a hundred (``make bench-local-ecs``;
    every pass of a driver's poller pays it), and it answers with tasks of other clusters. ECS
    looks in the named cluster only ("This parameter is required if the task or tasks you are
    describing were launched in any cluster other than the default cluster":
    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTasks.html): each name,
    a full ARN or an ID, is looked up by key in that cluster's tasks."""
    from moto.ecs.models import EC2ContainerServiceBackend

    replace("task_lookup_by_key", EC2ContainerServiceBackend, "describe_tasks", _describe_tasks_by_key)


def _describe_tasks_by_key(self: Any, cluster_str: str, tasks: list[str]) -> list[Any]:
    from moto.ecs.exceptions import InvalidParameterException

    cluster = self._get_cluster(cluster_str)
    if not tasks:
        raise InvalidParameterException("Tasks cannot be empty.")
    found: dict[int, Any] = {}  # (each task once, however often it is named)
    for name in tasks:
        task = task_named(self, cluster, name)
        if task is not None and id(task) not in found:
            task.advance()  # (as moto's own describe_tasks does)
            found[id(task)] = task
    return list(found.values())


def task_named(backend: Any, cluster: Any, name: str) -> Any:
    """The task of ``cluster`` that ``name`` (its full ARN, or its ID) names, or None: a lookup by
    key in moto's tasks of that cluster, which it keeps by ARN (long ARN format or not)."""
    known = backend.tasks.get(cluster.name) or {}
    if name.startswith("arn:"):
        return known.get(name)
    if "/" in name:
        return None
    in_cluster = cluster.arn.replace(":cluster/", ":task/", 1)  # arn:...:task/<cluster name>
    return known.get(f"{in_cluster}/{name}") or known.get(f"{in_cluster.rsplit('/', 1)[0]}/{name}")


def response_transformer_race() -> None:
    """moto keeps which optional keys a response includes (DescribeTasks ``include=TAGS``) in
    ``BaseResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER``, a class attribute every request of a service
    shares: a DescribeTasks without ``include`` (a driver's poller) running beside one with it (a
    sweep looking for a run's tasks by tag) can answer it without tags. Each request gets its own
    copy instead. (moto serves each request from a fresh response object: moto/core/responses.py
    ``_include_in_response``.)"""
    from moto.core.responses import BaseResponse, never_return

    def own(self: Any) -> dict[str, Any]:
        if "RESPONSE_KEY_PATH_TO_TRANSFORMER" not in vars(self):
            self.RESPONSE_KEY_PATH_TO_TRANSFORMER = dict(type(self).RESPONSE_KEY_PATH_TO_TRANSFORMER)
        return self.RESPONSE_KEY_PATH_TO_TRANSFORMER

    def include(self: Any, response_key_path: str) -> None:
        own(self)[response_key_path] = lambda x: x

    def exclude(self: Any, response_key_path: str) -> None:
        own(self)[response_key_path] = never_return

    replace("response_transformer_race", BaseResponse, "_include_in_response", include)
    replace("response_transformer_race", BaseResponse, "_exclude_from_response", exclude)


def find_in_map_number_keys() -> None:
    """Fn::FindInMap keyed by a Number parameter: CloudFormation looks the parameter's value up
    as the string it is (every mapping key is a string); moto casts Number parameters to int and
    finds no such key (KeyError), so template.yaml's GiB -> MiB mapping of
    ManagedInstancesMaxMemoryGiB failed to deploy. Keys are looked up as strings."""
    from moto.cloudformation import parsing

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        own = moto_function("find_in_map_number_keys", "clean_json")
        if not (isinstance(resource_json, dict) and "Fn::FindInMap" in resource_json):
            return own(resource_json, resources_map)
        map_name, *path = resource_json["Fn::FindInMap"]
        found = resources_map[map_name]
        for key in path:
            if "Fn::Transform" in found:
                return own(resource_json, resources_map)
            key = clean_json(key, resources_map)
            found = found[key if isinstance(key, str) else str(key)]
        return found

    replace("find_in_map_number_keys", parsing, "clean_json", clean_json)


def backend_lookup_cached() -> None:
    """moto's server finds which service a request is for, for every request it serves and
    under a lock they all share (``DomainDispatcherApplication.get_application``), by listing
    moto's own package folder (``backends.list_of_moto_modules``: an ``os.listdir`` and an
    ``isdir`` for each of its ~150 entries) and then matching the host it inferred against the
    URL patterns of every backend (hundreds of regular expressions): about 8% of a local stack's
    CPU in a 50-task scatter. The answer for a host never changes while moto runs: each host is
    looked up once (up to ``LOOKUPS_KEPT`` hosts; any beyond are looked up every time)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    found: dict[str | None, Any] = {}
    lock = threading.Lock()

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        with lock:
            if host in found:
                return found[host]
        backend = moto_function("backend_lookup_cached", "get_backend_for_host")(self, host)
        with lock:
            if len(found) < LOOKUPS_KEPT:
                found[host] = backend
        return backend

    replace("backend_lookup_cached", DomainDispatcherApplication, "get_backend_for_host", get_backend_for_host)


def backend_urls_kept() -> None:
    """moto answering a boto3 request in the same process (its decorator mode,
    ``BotocoreStubber.process_request``: the tests' in-process moto, local mode's ``direct``
    clients) builds the URL table of the request's service for every request (``BaseBackend.urls``:
    each path pattern formatted with each URL base, and again with China's DNS suffix), and an S3
    backend first executes moto.s3.urls again (``S3Backend._url_module`` reloads it, so that its
    URL bases follow MOTO_S3_CUSTOM_ENDPOINTS): a seventh of moto's CPU in an in-process S3 request
    (moto's own comment there: "TODO: cache this part - we only need backend.urls"). The table
    depends on the backend's class and on the two settings read as it is built only (moto's
    ``get_s3_custom_endpoints`` and ``enable_iso_regions``; moto's urls modules, and the
    patterns in them, are the same for every account and region): it is built once for each, and
    handed out read-only."""
    from types import MappingProxyType

    from moto import settings
    from moto.core.base_backend import BaseBackend

    kept: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def urls(self: Any) -> Any:
        key = (type(self), tuple(settings.get_s3_custom_endpoints()), settings.enable_iso_regions())
        found = kept.get(key)
        if found is None:
            found = MappingProxyType(moto_function("backend_urls_kept", "urls").fget(self))
            with lock:
                found = kept.setdefault(key, found)
        return found

    replace("backend_urls_kept", BaseBackend, "urls", property(urls))


#: how many state machine definitions ``asl_parse_tree_kept`` keeps parsed (a stack has one)
ASL_TREES_KEPT = 16


def asl_parse_tree_kept() -> None:
    """moto's Step Functions interpreter parses the state machine's definition again for every
    execution (``ExecutionWorker._get_evaluation_entrypoint`` calls
    ``AmazonStateLanguageParser.parse``: ANTLR's lexer and parser, about 40 ms of the stack's CPU
    for the product's state machine as each run starts, a twelfth of a test worker's in a profile
    of the local tier). The parse tree depends on the definition's text alone, and moto's
    ``Preprocessor`` reads it, never changes it: the trees of the last ``ASL_TREES_KEPT``
    definitions are kept, and each parse still builds its own evaluation components from the tree
    (an execution's components hold its state). A definition that does not parse raises each time."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    @functools.lru_cache(maxsize=ASL_TREES_KEPT)
    def tree_of(definition: str) -> Any:
        return moto_function("asl_parse_tree_kept", "parse")(definition)[1]

    def parse(definition: str) -> tuple[Any, Any]:
        tree = tree_of(definition)
        return Preprocessor().visit(tree), tree

    replace("asl_parse_tree_kept", AmazonStateLanguageParser, "parse", staticmethod(parse))


#: where ``boto_client_for`` is defined, and the modules of moto's Step Functions interpreter that
#: call it (each imports it by name): its Lambda task states, its other service integrations, its
#: Map state's S3 reader and writer
SERVICE_CLIENT_FUNCTION = "moto.stepfunctions.parser.asl.utils.boto_client"
SERVICE_CLIENT_CALLERS = (
    "state_task.lambda_eval_utils",
    *(f"state_task.service.state_task_service_{service}" for service in (
        "aws_sdk", "batch", "dynamodb", "ecs", "events", "glue", "sfn", "sns", "sqs", "unsupported")),
    "state_map.item_reader.eval.resource_eval_s3",
    "state_map.result_writer.resource_eval.resource_eval_s3",
)
_SERVICE_CLIENT_PACKAGE = "moto.stepfunctions.parser.asl.component.state.exec."


def stepfunctions_clients_kept() -> None:
    """moto's Step Functions interpreter makes a new boto3 client for every service call of a task
    state (``boto_client_for``: each Lambda task's Invoke, about 6 ms of the stack's CPU to make,
    four or five a run), where a client can be made once and shared by threads
    (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/clients.html#multithreading-or-multiprocessing-with-clients);
    and it made them through boto3's default session from as many threads as executions run,
    which boto3 does not make safe (boto/boto3#1592, boto/botocore#2991): the kept ones are made
    under a lock. Against moto's server (local mode's), the client depends on its region, its service and the
    server's port alone (moto gives each the same fixed credentials and settings, whatever role
    the state runs as): one is kept for each of those and the role (the execution's, or the
    state's own ``Credentials``). A process whose boto3 calls moto intercepts (its decorator
    mode) gets a new client each time, as moto makes it."""
    import importlib

    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port

    own = importlib.import_module(SERVICE_CLIENT_FUNCTION).boto_client_for
    kept: dict[tuple[str, str, str, Any], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        if botocore_stubber.enabled:
            return own(region, service, state_credentials)
        key = (region, service, str(moto_server_port()), getattr(state_credentials, "role_arn", None))
        with lock:
            if key not in kept:
                kept[key] = own(region, service, state_credentials)
            return kept[key]

    for caller in SERVICE_CLIENT_CALLERS:
        replace(f"stepfunctions_clients_kept:{caller}", importlib.import_module(_SERVICE_CLIENT_PACKAGE + caller),
                "boto_client_for", boto_client_for)


def error_lookup_kept() -> None:
    """moto serializes every error answer (an S3 GET of a key that is not there: each call-cache
    lookup that misses) by looking its code up in a table of the service's error shapes, which
    ``ErrorLookupFactory.for_service`` keeps by service, but in the factory instance, and
    ``get_error_model`` makes a new factory for every error: the table of every error shape of S3
    was built again for each one (~0.3 ms). The factories share one table per service now (the
    service models they are built from never change)."""
    from moto.core.errors import ErrorLookupFactory

    kept: dict[str, Any] = {}

    def __init__(self: Any) -> None:
        self._error_lut_cache = kept

    replace("error_lookup_kept", ErrorLookupFactory, "__init__", __init__)


#: how many members' names ``serializer_member_names_kept`` keeps (a stack's answers need a few
#: hundred; any beyond are worked out each time, as moto does)
MEMBER_NAMES_KEPT = 4096


def serializer_member_names_kept() -> None:
    """moto's response serializer finds each member of an answer's structures on the Python object
    it serializes by trying names in turn (``AttributePicker.__call__``), and works those names out
    anew for each member of each object (``XFormedAttributePicker.get_possible_keys``): an
    instance of each of its six alias providers, each asked whether it has an alias, and
    botocore's ``xform_name`` of each. An ECS task has about 90 members: this was about 40% of
    moto's CPU in serializing a RunTask or DescribeTasks answer, the stack's largest cost for each
    WDL task. The names depend on the member (its service, its structure, its own name and
    shape), the object's class and the picker's alias providers, never on the object's values:
    each such list is worked out once and kept (up to ``MEMBER_NAMES_KEPT``). Which of the names
    the object has is still asked object by object, in the same order."""
    from moto.core.serialize import XFormedAttributePicker

    kept: dict[tuple[Any, ...], tuple[str, ...]] = {}

    def get_possible_keys(self: Any, context: Any) -> Any:
        own = moto_function("serializer_member_names_kept", "get_possible_keys")
        shape, service = context.shape, context.service_model
        parent = getattr(shape, "parent", None)
        if shape is None or service is None or parent is None:
            return own(self, context)
        key = (
            service.service_name, parent.name, shape.name, context.key, type(context.obj),
            type(self), tuple(self.alias_providers),
        )
        found = kept.get(key)
        if found is None:
            found = tuple(own(self, context))
            if len(kept) < MEMBER_NAMES_KEPT:
                kept[key] = found
        return found

    replace("serializer_member_names_kept", XFormedAttributePicker, "get_possible_keys", get_possible_keys)


def json_template_read_as_json() -> None:
    """CreateStack: moto reads every TemplateBody with PyYAML's pure-Python loader
    (``Stack.parse_template``: JSON is YAML too), and falls back to ``json.loads`` only where that
    fails: local mode's translated template, JSON of about 100 KB, took 0.5-0.8 s of CPU to read
    at every stack start (``json.loads``: 3 ms). A body that reads as a JSON object is taken as
    it reads; any other goes to moto's reader as before."""
    from moto.cloudformation.models import Stack

    def parse_template(template: str) -> dict[str, Any]:
        if template.lstrip().startswith("{"):
            try:
                found = json.loads(template)
            except ValueError:
                found = None
            if isinstance(found, dict):
                return found
        return moto_function("json_template_read_as_json", "parse_template")(template)

    replace("json_template_read_as_json", Stack, "parse_template", staticmethod(parse_template))


#: how long an object a write replaced stays readable by the reads that found it before the write
#: (moto then closes it, as it did at once); a GetObject reads what it found within milliseconds
REPLACED_READABLE_SECONDS = 5.0


def replaced_object_readable() -> None:
    """A write that replaces an object (PutObject, CopyObject on an unversioned bucket), or a
    DeleteObject of one, makes moto close the old object's content at once
    (``_VersionedKeyStore.setlist`` and ``pop`` dispose it), while a GetObject that found the old
    object just before may not have read it yet: that read fails ("I/O operation on closed
    file"; a 500 from moto's server, an exception in-process; a client following status.json
    while the driver rewrites it saw it). S3 never fails a read for
    a concurrent write: "if you make a PUT request to an existing key from one thread and perform
    a GET request on the same key from a second thread concurrently, you will get either the old
    data or the new data" (https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel).
    A replaced or deleted object is closed ``REPLACED_READABLE_SECONDS`` later, at a later
    write: as many as a few seconds of writes stay open, not every one ever made."""
    from moto.s3.utils import _VersionedKeyStore

    replaced: collections.deque[tuple[float, Any]] = collections.deque()  # (when, the object)
    lock = threading.Lock()

    def close_later(objects: Any) -> None:
        now = time.monotonic()
        with lock:
            replaced.extend((now, v) for v in objects if hasattr(v, "dispose"))
            while replaced and now - replaced[0][0] >= REPLACED_READABLE_SECONDS:
                replaced.popleft()[1].dispose()

    def setlist(self: Any, key: Any, list_: Any) -> None:
        # (moto's own, but for when the objects it does not keep are closed)
        kept = list(list_) if isinstance(list_, tuple) else list_ if isinstance(list_, list) else [list_]
        # (by identity, in one pass: a versioned bucket's key keeps every version it was written,
        # and a membership test of each in the list was quadratic in a key's writes)
        kept_ids = {id(v) for v in kept}
        close_later([v for v in self.getlist(key, []) if id(v) not in kept_ids])
        dict.__setitem__(self, key, kept)

    def pop(self: Any, key: Any) -> None:
        # DeleteObject of an unversioned bucket's object: moto's own, closing it later too (a
        # GetObject that found it just before reads it, as S3 gives a read concurrent with a
        # delete the object or 404, never an error)
        close_later(self.getlist(key, []))
        dict.pop(self, key)

    replace("replaced_object_readable", _VersionedKeyStore, "setlist", setlist)
    replace("replaced_object_readable", _VersionedKeyStore, "pop", pop)


#: the locks ``conditional_write_atomic`` takes, one per (bucket, key) hash: a fixed number, so
#: that however many keys are written, as many locks are kept
KEY_WRITE_LOCKS = tuple(threading.Lock() for _ in range(64))


def conditional_write_atomic() -> None:
    """moto checks a write's precondition (PutObject or DeleteObject with If-Match or
    If-None-Match) and then writes, with nothing between the two: its server answers each request
    on a thread of its own, so two writers that read the same ETag can both pass the check and
    both write, the second over the first. S3's conditional writes are atomic: of writes
    conditioned on the same state only one succeeds, the others get 412 Precondition Failed (or
    409 ConditionalRequestConflict), https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html.
    status.json relies on it (``status.update``: a cancel's CANCELLED was written over by the
    driver's next RUNNING in a test run), as do the call cache's and the name claims' create-only
    writes, all of them PutObject or DeleteObject. Here a key's PutObjects and DeleteObjects,
    conditional or not, are answered one at a time (a lock per key's hash, ``KEY_WRITE_LOCKS``): a
    plain PutObject cannot land between a conditional one's check and its write either. Not
    covered, as the product makes none conditional: CopyObject (moto checks no destination
    condition), CompleteMultipartUpload (its If-None-Match has the same race), DeleteObjects and
    POST uploads."""
    from moto.s3.responses import S3Response

    def one_at_a_time(operation: str) -> Callable[[Any], Any]:
        def answer(self: Any) -> Any:
            own = moto_function("conditional_write_atomic", operation)
            where = (self.bucket_name, self.parse_key_name())
            with KEY_WRITE_LOCKS[hash(where) % len(KEY_WRITE_LOCKS)]:
                return own(self)

        return answer

    for operation in ("put_object", "delete_object"):
        replace("conditional_write_atomic", S3Response, operation, one_at_a_time(operation))


#: the S3 operation moto is answering on this thread, where ``s3_one_event_per_write`` needs it
_S3_OPERATION = threading.local()


def s3_one_event_per_write() -> None:
    """S3 sends one "Object Created" per object written, its reason the operation (PutObject,
    CopyObject, CompleteMultipartUpload), and "Object Tags Added" when tags are added "using
    PutObjectTagging" (https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventBridge.html).
    moto also sends "Object Tags Added" for every PutObject (tags or none), tag-replacing
    CopyObject and CompleteMultipartUpload, which set the new object's tags through the backend
    method PutObjectTagging's handler calls, and a CompleteMultipartUpload sends "Object Created"
    twice (its PutObject's, then its own): a rule on either event fired twice or for writes. Here
    "Object Tags Added" is sent while moto answers a PutObjectTagging request only, and a
    multipart upload's completion sends its own "Object Created" only."""
    from moto.s3 import notifications
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    events = notifications.S3NotificationEvent

    def answering(operation: str, call: Callable[[], Any]) -> Any:
        outer = getattr(_S3_OPERATION, "name", None)
        _S3_OPERATION.name = operation
        try:
            return call()
        finally:
            _S3_OPERATION.name = outer

    def put_object_tagging(self: Any) -> Any:
        own = moto_function("s3_one_event_per_write", "put_object_tagging")
        return answering("PutObjectTagging", lambda: own(self))

    def complete_multipart_upload(self: Any, *args: Any, **kwargs: Any) -> Any:
        own = moto_function("s3_one_event_per_write", "complete_multipart_upload")
        return answering("CompleteMultipartUpload", lambda: own(self, *args, **kwargs))

    def send_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        operation = getattr(_S3_OPERATION, "name", None)
        if event_name == events.OBJECT_TAGGING_PUT_EVENT and operation != "PutObjectTagging":
            return
        if event_name == events.OBJECT_CREATED_PUT_EVENT and operation == "CompleteMultipartUpload":
            return
        moto_function("s3_one_event_per_write", "send_event")(account_id, event_name, bucket, key)

    replace("s3_one_event_per_write", S3Response, "put_object_tagging", put_object_tagging)
    replace("s3_one_event_per_write", S3Backend, "complete_multipart_upload", complete_multipart_upload)
    replace("s3_one_event_per_write", notifications, "send_event", send_event)


#: hosts whose backend ``backend_lookup_cached`` keeps (the stack's services in its region: a dozen)
LOOKUPS_KEPT = 1024


#: the module of moto's EC2 that lists the regions as it is imported
EC2_REGIONS_MODULE = "moto.ec2.models.availability_zones_and_regions"


def ec2_regions_read_once() -> None:
    """moto's EC2 builds its table of regions and zones as its module is imported (the class body
    of ``RegionsAndZonesBackend``), asking a new boto3 ``Session()`` for each partition's regions:
    each new session reads botocore's endpoints anew (0.12, 0.08 and 0.20 s of CPU measured) in
    every process that imports moto's CloudFormation or Step Functions (both import EC2), and
    ``get_available_regions`` reads EC2's whole service model (0.06-0.09 s) for one fact of it,
    its endpoint prefix ("ec2"). While the module is imported, every session answers
    ``get_available_regions`` from moto's own one (``AccountSpecificBackend.get_session``, which
    moto's backends ask for theirs): EC2's from that session's endpoint resolver, as botocore's
    method does once it has the prefix; any other service's by botocore's method. The same answers
    from the same botocore data, read once. Nothing to do where EC2 is imported already; installed
    before anything imports it (first in ``install``)."""
    import importlib
    import sys

    if EC2_REGIONS_MODULE in sys.modules or installed("ec2_regions_read_once"):
        return
    from boto3.session import Session
    from moto.core.base_backend import AccountSpecificBackend

    shared = AccountSpecificBackend.get_session()
    own = Session.get_available_regions

    def get_available_regions(
        self: Any, service_name: str, partition_name: str = "aws", allow_non_regional: bool = False,
    ) -> Any:
        if service_name == "ec2":  # (botocore: the endpoints of the service's endpointPrefix, EC2's "ec2")
            resolver = shared._session._get_internal_component("endpoint_resolver")
            return resolver.get_available_endpoints("ec2", partition_name, allow_non_regional)
        return own(shared, service_name, partition_name, allow_non_regional)

    replace("ec2_regions_read_once", Session, "get_available_regions", get_available_regions)
    try:
        importlib.import_module(EC2_REGIONS_MODULE)
    finally:
        # (boto3's own method again, for everyone: the fix only ever applies to this one import)
        Session.get_available_regions = own


#: the module of moto's EC2 that reads every region's instance type offerings as it is imported
EC2_OFFERINGS_MODULE = "moto.ec2.models.instance_types"


class OfferingsReadWhenAsked(collections.abc.Mapping):
    """One location type's instance type offerings by region, as moto's ``INSTANCE_TYPE_OFFERINGS``
    holds them (``{region: [offering, ...]}``), read from moto's files the first time anything asks
    for them, as moto's module reads them. moto asks by ``[region]`` and ``.get(region)`` (a
    DescribeInstanceTypeOfferings, a RunInstances, a spot price history); every other way of
    reading a mapping goes through the same three methods."""

    def __init__(self, module: Any, location: str) -> None:
        self._module, self._location = module, location
        self._lock = threading.Lock()
        self._offerings: dict[str, list] | None = None

    @property
    def read(self) -> bool:
        """Whether anything has asked for them yet."""
        return self._offerings is not None

    def offerings(self) -> dict[str, list]:
        with self._lock:
            if self._offerings is None:
                found: dict[str, list] = {}
                folder = self._module.root / self._module.offerings_path / self._location
                for data_file in os.listdir(folder):  # (as moto's module: {region}.json or {region}.json.gz)
                    path = os.path.join("ec2", self._module.offerings_path, self._location, data_file)
                    region = self._module.load_resource(path)
                    for offering in region:
                        offering["LocationType"] = self._location
                    found[data_file.split(".")[0]] = region
                self._offerings = found
            return self._offerings

    def __getitem__(self, region: str) -> list:
        return self.offerings()[region]

    def __iter__(self) -> Any:
        return iter(self.offerings())

    def __len__(self) -> int:
        return len(self.offerings())


def ec2_offerings_read_when_asked() -> None:
    """moto's EC2 reads the instance type offerings of every region and location type (about
    150,000 of them, from 90 files) as its module is imported: 0.27 s of CPU in every process that
    imports moto's CloudFormation or Step Functions first (a one-shot ``local run``, ``local up``),
    for data that only a DescribeInstanceTypeOfferings, a RunInstances or a spot price history
    reads, none of which local mode's stack makes. While moto's EC2 is imported
    (``ec2_regions_read_once`` imports it, that fix around the import too), the module finds no
    offerings folder; then each location type's offerings are an ``OfferingsReadWhenAsked``, in
    the dict moto's other modules bound at their import. Nothing to do where EC2 is imported
    already; installed before anything imports it (first in ``install``)."""
    import importlib
    import sys

    if EC2_OFFERINGS_MODULE in sys.modules or installed("ec2_offerings_read_when_asked"):
        return
    own = os.listdir
    folder = os.path.join("resources", "instance_type_offerings")

    def listdir(path: Any = None) -> list:  # (os.listdir's one argument: a path, bytes, a descriptor or None)
        name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
        if isinstance(name, str) and name.endswith(folder):
            return []
        return own(path)

    replace("ec2_offerings_read_when_asked", os, "listdir", listdir)
    try:
        ec2_regions_read_once()
        module = importlib.import_module(EC2_OFFERINGS_MODULE)
    finally:
        # (the system's own function again, for everyone: the fix only ever applies to this import)
        os.listdir = own
    module.listdir = own  # (the name the module bound as it was imported)
    for location in own(module.root / module.offerings_path):
        module.INSTANCE_TYPE_OFFERINGS[location] = OfferingsReadWhenAsked(module, location)


def _nothing_to_install() -> None:
    """(``event_envelope`` is applied by the events hook, event by event.)"""


_MOTO_TESTS = "tests/integration/test_moto_patches.py"
_ECS_TESTS = "tests/integration/test_moto_ecs_patches.py"

class _LiveThreads(list):
    """moto's Step Functions ``TMP_THREADS``, which lets go of the threads that ended as each new
    one is added."""

    def append(self, thread: Any) -> None:
        self[:] = [t for t in self if t.is_alive()]
        super().append(thread)


#: the modules that name moto's TMP_THREADS list (each ``from ..utils import TMP_THREADS``)
TMP_THREADS_MODULES = (
    "moto.stepfunctions.parser.utils",
    "moto.stepfunctions.parser.asl.component.program.program",
    "moto.stepfunctions.parser.asl.component.test_state.program.test_state_program",
    "moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.inline_iteration_component",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback",
    "moto.stepfunctions.parser.asl.component.state.exec.state_parallel.branch_worker",
)


def stepfunctions_finished_threads() -> None:
    """moto's Step Functions interpreter adds every worker thread it starts to a module-level list
    (``TMP_THREADS``) that nothing empties: four threads per execution, for as long as a stack
    stays up (a helper counted 480 after 120 runs, none alive). Each module's name for the list
    is pointed at one that forgets the threads that ended."""
    import importlib

    live = _LiveThreads(t for t in importlib.import_module(TMP_THREADS_MODULES[0]).TMP_THREADS if t.is_alive())
    for module_name in TMP_THREADS_MODULES:
        replace(f"stepfunctions_finished_threads:{module_name.rsplit('.', 1)[-1]}", importlib.import_module(module_name),
                "TMP_THREADS", live)


FIXES: tuple[Fix, ...] = (
    # (first: what the others import imports moto's EC2; the offerings' fix imports it, the
    # regions' fix around that import too)
    Fix("ec2_offerings_read_when_asked", "EC2 reads every region's instance type offerings as it is imported",
        NO_ISSUE, f"{_MOTO_TESTS}::test_moto_still_reads_every_instance_type_offering_as_ec2_is_imported",
        ec2_offerings_read_when_asked),
    Fix("ec2_regions_read_once", "EC2 reads botocore's endpoints three times over as it is imported, a new boto3 "
        "Session for each partition's regions", "none for EC2's import; related: https://github.com/getmoto/moto/pull/7120 "
        "(a cached region collection) and https://github.com/getmoto/moto/pull/8369 (a Session made only when needed), "
        "which left EC2's module as it was",
        f"{_MOTO_TESTS}::test_moto_still_reads_the_regions_with_new_sessions_as_ec2_is_imported", ec2_regions_read_once),
    Fix("stepfunctions_finished_threads", "the Step Functions interpreter keeps every thread it started",
        "none for the threads; related: https://github.com/getmoto/moto/issues/10077 (a state machine's copy took "
        "its past executions' live threads along; fixed by leaving them out of the copy, not by ending them)",
        f"{_MOTO_TESTS}::test_moto_still_keeps_every_thread_of_an_execution", stepfunctions_finished_threads),
    Fix("send_task_failure_cause", "SendTaskFailure drops cause",
        "none for the cause; related: https://github.com/getmoto/moto/pull/7608 (SendTaskFailure fixes, cause still dropped)",
        f"{_MOTO_TESTS}::test_moto_still_drops_a_task_failures_cause", send_task_failure_cause),
    Fix("stop_execution_aborts", "StopExecution leaves a waiting execution RUNNING",
        "https://github.com/getmoto/moto/issues/2846 (fixed for moto's non-executing backend only)",
        f"{_MOTO_TESTS}::test_moto_still_leaves_a_stopped_waiting_execution_running", stop_execution_aborts),
    Fix("invoke_request_size", "Invoke runs the function with a request payload over Lambda's quota",
        "none for the request; related: https://github.com/getmoto/moto/issues/3988 (the 6 MB quota of a response, "
        "enforced since https://github.com/getmoto/moto/pull/4763)",
        f"{_MOTO_TESTS}::test_moto_still_invokes_with_a_request_payload_over_the_quota", invoke_request_size),
    Fix("s3_key_length", "S3 takes object keys of any length",
        "none in moto; LocalStack's same fix: https://github.com/localstack/localstack/pull/9875 (object key validation)",
        f"{_MOTO_TESTS}::test_moto_still_takes_s3_keys_over_1024_bytes", s3_key_length),
    Fix("heartbeat_timeout_name", "a heartbeat timeout is named States.Timeout",
        "none in moto; origin: https://github.com/localstack/localstack/pull/8428 (heartbeats in LocalStack's "
        "interpreter, which moto's comes from: every timeout through one path)",
        f"{_MOTO_TESTS}::test_moto_still_names_a_heartbeat_timeout_states_timeout", heartbeat_timeout_name),
    Fix("heartbeat_while_starting", "a heartbeat sent before the task state's service call returned is InvalidToken",
        NO_ISSUE, f"{_MOTO_TESTS}::test_moto_still_refuses_a_heartbeat_before_the_wait_begins", heartbeat_while_starting),
    Fix("event_envelope", "S3's events carry a float time, one constant id, and the object's eTag where EventBridge says etag",
        "none for the envelope; related: https://github.com/getmoto/moto/pull/7252 (S3's EventBridge events) and "
        "https://github.com/getmoto/moto/pull/10032 (the time's format fixed for S3's SQS notifications only)",
        f"{_MOTO_TESTS}::test_moto_still_sends_events_in_its_own_envelope", _nothing_to_install),
    Fix("ecs_resource_requirements", "RunTask fails on a container without memory",
        "https://github.com/getmoto/moto/issues/7272 (closed, still so in 5.2.5: _calculate_task_resource_requirements "
        "wants memory on the container; fix proposed in https://github.com/getmoto/moto/pull/7280)",
        f"{_ECS_TESTS}::test_moto_itself_still_needs_container_memory", ecs_resource_requirements),
    Fix("ecs_task_size", "DescribeTasks leaves cpu and memory out",
        "none for a task's size; related: https://github.com/getmoto/moto/issues/3222 (cpu and memory missing from task "
        "definitions)",
        "tests/integration/test_driver_report_and_cache.py::test_moto_still_leaves_the_task_size_out", ecs_task_size),
    Fix("run_task_overrides_length", "RunTask takes overrides of any length", NO_ISSUE,
        f"{_ECS_TESTS}::test_moto_itself_still_takes_overrides_of_any_length", run_task_overrides_length),
    Fix("list_tasks_filters", "ListTasks takes startedBy with other filters and lists stopped tasks by default",
        "none for either; related: https://github.com/getmoto/moto/pull/3376 (ListTasks' filters, for "
        "https://github.com/getmoto/moto/issues/1785)",
        f"{_ECS_TESTS}::test_moto_itself_still_lists_by_started_by_with_other_filters_and_stopped_tasks_by_default",
        list_tasks_filters),
    Fix("run_task_client_token", "RunTask ignores clientToken", NO_ISSUE,
        f"{_ECS_TESTS}::test_moto_itself_still_ignores_client_tokens", run_task_client_token),
    Fix("describe_tasks_missing", "DescribeTasks leaves unknown tasks out", NO_ISSUE,
        f"{_ECS_TESTS}::test_moto_itself_still_leaves_unknown_tasks_out", describe_tasks_missing),
    Fix("task_lookup_by_key", "DescribeTasks scans every task of every cluster",
        "none for the scan; cause: https://github.com/getmoto/moto/pull/1697 (DescribeTasks by task id, matched in every "
        "cluster by substring)",
        f"{_ECS_TESTS}::test_moto_itself_still_describes_tasks_of_other_clusters", task_lookup_by_key),
    Fix("ecs_managed_instances", "RunTask on a Managed Instances capacity provider wants registered container instances",
        "none for Managed Instances; related: https://github.com/getmoto/moto/issues/8722 (RunTask ignores a "
        "capacityProviderStrategy and wants container instances)", f"{_ECS_TESTS}::test_moto_itself_still_wants_container_instances_for_managed_instances", ecs_managed_instances),
    Fix("run_task_volume_configurations", "RunTask drops volumeConfigurations", NO_ISSUE,
        f"{_ECS_TESTS}::test_moto_itself_still_drops_volume_configurations", run_task_volume_configurations),
    Fix("ecs_image_digest", "DescribeTasks gives no container imageDigest", NO_ISSUE,
        f"{_ECS_TESTS}::test_moto_itself_still_gives_no_image_digest", ecs_image_digest),
    Fix("response_transformer_race", "requests share which optional keys a response includes", NO_ISSUE,
        f"{_MOTO_TESTS}::test_moto_still_shares_which_keys_a_response_includes", response_transformer_race),
    Fix("find_in_map_number_keys", "Fn::FindInMap keyed by a Number parameter finds no key",
        "none for FindInMap; cause: https://github.com/getmoto/moto/pull/3118 (Number parameters cast to int or float), "
        "whose cast https://github.com/getmoto/moto/pull/5705 undid for Fn::Sub",
        "tests/integration/test_template.py::test_moto_still_finds_no_mapping_key_for_a_number_parameter",
        find_in_map_number_keys),
    Fix("error_lookup_kept", "every error answer builds the table of the service's error shapes again",
        "none for the cost; cause: https://github.com/getmoto/moto/pull/9383 (errors matched to the service's error "
        "shapes, by a lookup made anew for each)",
        f"{_MOTO_TESTS}::test_moto_still_builds_the_error_table_for_every_error", error_lookup_kept),
    Fix("replaced_object_readable", "a write that replaces or deletes an object closes it under a read that found it",
        "none for the race; cause: https://github.com/getmoto/moto/pull/5939 (replaced objects closed at once, in "
        "_VersionedKeyStore, so that no file handle is left open)",
        f"{_MOTO_TESTS}::test_moto_still_closes_an_object_under_a_read_when_it_is_replaced_or_deleted", replaced_object_readable),
    Fix("conditional_write_atomic", "a conditional write's check and its write are not one step: two writers "
        "conditioned on the same ETag can both succeed",
        "none for the race; related: https://github.com/getmoto/moto/pull/8869 (If-Match on PutObject, checked before "
        "the write), and LocalStack's same race: https://github.com/localstack/localstack/issues/13294",
        f"{_MOTO_TESTS}::test_moto_still_lets_two_writes_conditioned_on_one_etag_both_succeed", conditional_write_atomic),
    Fix("s3_one_event_per_write", "every PutObject, tag-replacing CopyObject and CompleteMultipartUpload also sends "
        "\"Object Tags Added\", and CompleteMultipartUpload sends \"Object Created\" twice",
        "https://github.com/getmoto/moto/pull/7673 (added the tags event to the backend method those operations share "
        "with PutObjectTagging)", f"{_MOTO_TESTS}::test_moto_still_sends_more_than_one_event_per_write", s3_one_event_per_write),
    Fix("backend_lookup_cached", "the server looks up each request's service anew, listing its folder", NO_ISSUE,
        f"{_MOTO_TESTS}::test_moto_still_looks_up_the_service_of_every_request", backend_lookup_cached),
    Fix("backend_urls_kept", "an in-process request builds its service's URL table again (S3's after reloading its "
        "urls module)", "none for the table; related: https://github.com/getmoto/moto/issues/8185 (BotocoreStubber's "
        "slow URL matching)", f"{_MOTO_TESTS}::test_moto_still_builds_the_url_table_for_every_in_process_request",
        backend_urls_kept),
    Fix("asl_parse_tree_kept", "Step Functions parses the state machine's definition again for every execution",
        NO_ISSUE, f"{_MOTO_TESTS}::test_moto_still_parses_the_definition_again_for_every_execution", asl_parse_tree_kept),
    Fix("stepfunctions_clients_kept", "Step Functions makes a new boto3 client for every service call of a task state",
        "none in moto; the hazard: https://github.com/boto/boto3/issues/1592 (boto3's default session used from many "
        "threads)", f"{_MOTO_TESTS}::test_moto_still_makes_a_client_for_every_service_call", stepfunctions_clients_kept),
    Fix("serializer_member_names_kept", "the response serializer works out the names to look each member up by "
        "anew for every member of every object", NO_ISSUE,
        f"{_MOTO_TESTS}::test_moto_still_works_out_each_members_names_for_every_object", serializer_member_names_kept),
    Fix("json_template_read_as_json", "CreateStack reads a JSON template with PyYAML's pure-Python loader", NO_ISSUE,
        f"{_MOTO_TESTS}::test_moto_still_reads_a_json_template_as_yaml", json_template_read_as_json),
)


def install() -> None:
    """Every fix (each once per process)."""
    for fix in FIXES:
        fix.install()


__all__ = [
    "FIXES", "MOTO_VERSION", "Fix", "as_delivered", "install", "installed", "local_image_digest",
    "requested", "size_task", "task_named",
]
