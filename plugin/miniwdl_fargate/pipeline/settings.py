"""The Lambda functions' environment, as a model (names in docs/CONTRACTS.md)."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from .. import runs


class FunctionSettings(BaseModel):
    runs_bucket: str = Field(alias="RUNS_BUCKET")
    state_machine_arn: str = Field(default="", alias="STATE_MACHINE_ARN")
    cluster: str = Field(default="", alias="CLUSTER")
    file_system_id: str = Field(default="", alias="FILE_SYSTEM_ID")
    driver_task_definition: str = Field(default="", alias="DRIVER_TASK_DEFINITION")
    driver_container_name: str = Field(default="driver", alias="DRIVER_CONTAINER_NAME")
    driver_subnets: str = Field(default="", alias="DRIVER_SUBNETS")
    driver_security_groups: str = Field(default="", alias="DRIVER_SECURITY_GROUPS")
    driver_assign_public_ip: str = Field(default="ENABLED", alias="DRIVER_ASSIGN_PUBLIC_IP")
    #: a run's maximum duration unless its options say otherwise (template parameter MaxRunHours)
    max_run_hours: float = Field(default=runs.DEFAULT_MAX_RUN_HOURS, gt=0, alias="MAX_RUN_HOURS")
    #: how long the state machine waits for the driver's next heartbeat (DriverHeartbeatSeconds)
    heartbeat_seconds: int = Field(default=runs.DEFAULT_HEARTBEAT_SECONDS, gt=0, alias="DRIVER_HEARTBEAT_SECONDS")

    @classmethod
    def from_env(cls) -> "FunctionSettings":
        return cls.model_validate(dict(os.environ))

    def run_limits(self, options: dict | None) -> dict[str, int]:
        """A run record's limits for these options (ValueError: a bad ``max_run_hours``)."""
        return runs.limits(runs.max_run_hours(options or {}, self.max_run_hours), self.heartbeat_seconds)

    @staticmethod
    def split(value: str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()]
