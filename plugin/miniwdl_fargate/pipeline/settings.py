"""Each Lambda function's environment, as a model of what that function needs (docs/CONTRACTS.md).

Every field is required: a handler reads its model when it is invoked (``from_env``), and a
variable it needs that is missing or malformed is a SettingsError naming the variable, before the
event is handled. template.yaml gives each function what its model requires
(tests/integration/test_template.py reads the transformed template to check it).

    FunctionSettings                  from_env, the required variables
    ├── RunLimitSettings              MAX_RUN_HOURS, DRIVER_HEARTBEAT_SECONDS
    │   └── SubmitSettings            + STATE_MACHINE_ARN,                     inputs_dropped
    │       │                           MANAGED_INSTANCES_MAX_CPU, _MAX_MEMORY_GIB,
    │       │                           _MAX_GPUS, EBS_SCRATCH (what can run beyond Fargate),
    │       │                           MAX_RUN_VCPUS (the most vCPUs a run holds at once)
    │       └── ApiSettings           + RUNS_BUCKET, CLUSTER, CALL_CACHE
    │           └── WesApiSettings    + TASK_LOG_GROUP (WES task logs)         api
    └── ClusterSettings               CLUSTER                                  run_timed_out
        ├── CleanupSettings           + FILE_SYSTEM_ID
        │   └── FinalizeSettings      + DriverTaskSettings' variables,         finalize
        │       │                       GC_SCHEDULE_GROUP, GC_SCHEDULER_ROLE_ARN,
        │       │                       KEEP_FAILED_RUN_DAYS
        │       └── DriverStoppedSettings                                      driver_stopped
        └── DriverTaskSettings        + DRIVER_TASK_DEFINITION, DRIVER_CONTAINER_NAME,
            │                           DRIVER_SUBNETS, DRIVER_SECURITY_GROUPS,
            │                           DRIVER_ASSIGN_PUBLIC_IP
            └── LaunchSettings        + MAX_CONCURRENT_RUNS, DRIVER_CPU       launch_driver
"""

from __future__ import annotations

import os
from typing import Literal, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import driver_task, gc_task, runs, sizes

S = TypeVar("S", bound="FunctionSettings")


class SettingsError(RuntimeError):
    """A function's environment lacks a variable it needs, or holds one it cannot read."""


class FunctionSettings(BaseModel):
    """What every function's settings are: fields read from environment variables (their
    aliases), all required, the rest of the environment ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def from_env(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
        """The settings in ``environ`` (this process's environment), or SettingsError naming
        each variable that is missing or malformed."""
        try:
            return cls.model_validate(dict(os.environ if environ is None else environ))
        except ValidationError as exn:
            raise SettingsError(f"{cls.__name__}: {_problems(exn)}") from None

    @classmethod
    def variables(cls) -> set[str]:
        """The environment variables this function needs."""
        return {field.alias or name for name, field in cls.model_fields.items()}

    @staticmethod
    def split(value: str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()]


def _problems(exn: ValidationError) -> str:
    """Each problem as the variable and what is wrong with it."""
    said = []
    for error in exn.errors():
        variable = ".".join(str(part) for part in error.get("loc", ()))
        if error.get("type") == "missing":
            said.append(f"environment variable {variable} is not set")
        else:
            said.append(f"environment variable {variable}={error.get('input')!r}: {error.get('msg')}")
    return "; ".join(said)


class RunLimitSettings(FunctionSettings):
    """A run's limits, as the stack sets them (template parameters MaxRunHours and
    DriverHeartbeatSeconds)."""

    #: a run's maximum duration unless its options say otherwise
    max_run_hours: float = Field(gt=0, alias="MAX_RUN_HOURS")
    #: how long the state machine waits for the driver's next heartbeat
    heartbeat_seconds: int = Field(gt=0, alias="DRIVER_HEARTBEAT_SECONDS")

    def run_limits(self, options: dict | None) -> dict[str, int]:
        """A run record's limits for these options (ValueError: a bad ``max_run_hours``)."""
        return runs.limits(runs.max_run_hours(options or {}, self.max_run_hours), self.heartbeat_seconds)


class SubmitSettings(RunLimitSettings):
    """inputs_dropped: start a run dropped into the bucket (the bucket is the event's), refusing
    a task no capacity of the stack can run (template parameters ManagedInstances,
    ManagedInstancesMaxVCpu, ManagedInstancesMaxMemoryGiB, ManagedInstancesMaxGpus: all 0 when
    the stack has no managed instances; EBS_SCRATCH: tasks may get EBS scratch volumes)."""

    state_machine_arn: str = Field(min_length=1, alias="STATE_MACHINE_ARN")
    managed_instances_max_cpu: int = Field(ge=0, alias="MANAGED_INSTANCES_MAX_CPU")  # vCPU; 0: none
    managed_instances_max_memory_gib: int = Field(ge=0, alias="MANAGED_INSTANCES_MAX_MEMORY_GIB")
    managed_instances_max_gpus: int = Field(ge=0, alias="MANAGED_INSTANCES_MAX_GPUS")
    ebs_scratch: Literal["true", "false"] = Field(alias="EBS_SCRATCH")
    #: the most vCPUs a run's running tasks may hold at once unless its options say otherwise (0: no limit)
    max_run_vcpus: float = Field(ge=0, alias="MAX_RUN_VCPUS")

    def capacities(self) -> sizes.Capacities:
        """Where the stack can run a task besides Fargate, for ``sizes.for_task``."""
        limits = sizes.ManagedInstanceLimits(
            self.managed_instances_max_cpu, self.managed_instances_max_memory_gib, self.managed_instances_max_gpus
        )
        return sizes.Capacities(limits, self.ebs_scratch == "true")

    def max_vcpus(self, options: dict | None) -> tuple[float, str]:
        """The run's max_vcpus (0: none) for these options, and where it comes from."""
        given = (options or {}).get("max_vcpus")
        if given is not None:
            return float(given), "options.max_vcpus"
        return self.max_run_vcpus, "the stack's MaxRunVCpus"


class ApiSettings(SubmitSettings):
    """api: submit into the stack's bucket; list, describe and cancel (its tasks are in CLUSTER);
    resume, keeping calls as the resumed run did (CALL_CACHE: the stack's CallCache, what a run
    without the option got)."""

    runs_bucket: str = Field(min_length=1, alias="RUNS_BUCKET")
    cluster: str = Field(min_length=1, alias="CLUSTER")
    call_cache: Literal["true", "false", "read", "write"] = Field(alias="CALL_CACHE")


class WesApiSettings(ApiSettings):
    """api with its WES routes: a task log's stdout/stderr name its stream in TASK_LOG_GROUP."""

    task_log_group: str = Field(min_length=1, alias="TASK_LOG_GROUP")


class ClusterSettings(FunctionSettings):
    """run_timed_out: stop what of a run still runs in the cluster."""

    cluster: str = Field(min_length=1, alias="CLUSTER")


class CleanupSettings(ClusterSettings):
    """finalize: also release what a run left on the file system."""

    file_system_id: str = Field(min_length=1, alias="FILE_SYSTEM_ID")


class DriverTaskSettings(ClusterSettings):
    """Where a task of the driver's task definition runs: the stack's cluster and network."""

    driver_task_definition: str = Field(min_length=1, alias="DRIVER_TASK_DEFINITION")
    driver_container_name: str = Field(min_length=1, alias="DRIVER_CONTAINER_NAME")
    driver_subnets: str = Field(min_length=1, alias="DRIVER_SUBNETS")
    driver_security_groups: str = Field(min_length=1, alias="DRIVER_SECURITY_GROUPS")
    driver_assign_public_ip: Literal["ENABLED", "DISABLED"] = Field(alias="DRIVER_ASSIGN_PUBLIC_IP")

    def driver_task(self) -> driver_task.DriverTask:
        return driver_task.DriverTask(
            cluster=self.cluster,
            task_definition=self.driver_task_definition,
            container=self.driver_container_name,
            subnets=tuple(self.split(self.driver_subnets)),
            security_groups=tuple(self.split(self.driver_security_groups)),
            assign_public_ip=self.driver_assign_public_ip,
        )


class LaunchSettings(DriverTaskSettings):
    """launch_driver: RunTask of the driver task definition in the stack's network, as long as
    fewer drivers run than MAX_CONCURRENT_RUNS (template parameter MaxConcurrentRuns; 0: as many
    as a quarter of the account's Fargate vCPU quota holds at DRIVER_CPU, the driver's size)."""

    max_concurrent_runs: int = Field(ge=0, alias="MAX_CONCURRENT_RUNS")
    driver_cpu: int = Field(gt=0, alias="DRIVER_CPU")  # cpu units (1024 a vCPU)


class FinalizeSettings(CleanupSettings, DriverTaskSettings):
    """finalize: also have what the run left on EFS collected when it falls due (gc_task): the
    gc task runs as a task of the driver's task definition, from a one-time schedule of the
    stack's group, as its scheduler role; a failed run's directory is kept KEEP_FAILED_RUN_DAYS
    (template parameter KeepFailedRunDays), the shared cache's entries as long as the packaged
    keep_unused_cache_days (aws_fargate.cfg), as the driver keeps them."""

    gc_schedule_group: str = Field(min_length=1, alias="GC_SCHEDULE_GROUP")
    gc_scheduler_role_arn: str = Field(pattern=r"^arn:aws(-[a-z]+)*:iam::\d{12}:role/", alias="GC_SCHEDULER_ROLE_ARN")
    keep_failed_run_days: float = Field(ge=0, alias="KEEP_FAILED_RUN_DAYS")

    def collection(self) -> gc_task.Collection:
        from .. import config

        cache_days = float(config.option(config.loader(), "keep_unused_cache_days"))  # type: ignore[arg-type]
        return gc_task.Collection(
            self.driver_task(), self.gc_schedule_group, self.gc_scheduler_role_arn, self.keep_failed_run_days, cache_days
        )


class DriverStoppedSettings(FinalizeSettings):
    """driver_stopped: read the run from the driver container's environment; a run that ended
    without its finalize step (cancelled) gets what that would have done for its slot and its
    leftovers here."""
