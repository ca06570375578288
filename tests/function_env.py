"""A Lambda function's environment as template.yaml gives it (its Globals reach every function),
for tests that invoke handlers or build their settings (pipeline.settings)."""

from __future__ import annotations

from typing import Any

STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:run"

ENVIRONMENT = {
    "RUNS_BUCKET": "runs",
    "STATE_MACHINE_ARN": STATE_MACHINE_ARN,
    "CLUSTER": "wdl",
    "FILE_SYSTEM_ID": "fs-12345678",
    "DRIVER_TASK_DEFINITION": "miniwdl-fargate-driver",
    "DRIVER_CONTAINER_NAME": "driver",
    "DRIVER_SUBNETS": "subnet-1",
    "DRIVER_SECURITY_GROUPS": "sg-1",
    "DRIVER_ASSIGN_PUBLIC_IP": "ENABLED",
    "MAX_RUN_HOURS": "72",  # the template's defaults
    "DRIVER_HEARTBEAT_SECONDS": "900",
    "MANAGED_INSTANCES_MAX_CPU": "0",  # ManagedInstances=Disabled
    "MANAGED_INSTANCES_MAX_MEMORY_GIB": "0",
    "MANAGED_INSTANCES_MAX_GPUS": "0",
    "EBS_SCRATCH": "false",
    "MAX_RUN_VCPUS": "0",  # MaxRunVCpus: no limit
    "TASK_LOG_GROUP": "miniwdl-fargate-tasks",  # the api function's own (WES task logs)
    "CALL_CACHE": "true",  # the api function's own (resume); the template's default
    "MAX_CONCURRENT_RUNS": "0",  # launch_driver's own: automatic (the template's default)
    "DRIVER_CPU": "1024",
    "GC_SCHEDULE_GROUP": "stack-gc",  # finalize's own (gc_task.schedule)
    "GC_SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/stack-gc-scheduler",
    "KEEP_FAILED_RUN_DAYS": "3",
}


def environment(**values: str) -> dict[str, str]:
    """The template's environment, with ``values`` in place of its own."""
    return {**ENVIRONMENT, **values}


def set_environment(monkeypatch: Any, **values: str) -> None:
    """Set the function environment (and no X-Ray tracing: there is no daemon in a test)."""
    for key, value in environment(POWERTOOLS_TRACE_DISABLED="true", **values).items():
        monkeypatch.setenv(key, value)


class LambdaContext:
    """The Lambda context a handler is invoked with, as far as Powertools' logger reads it."""

    function_name, memory_limit_in_mb, invoked_function_arn, aws_request_id = "f", 128, "arn:aws:lambda:us-east-1:1:function:f", "r"
