"""The Lambda functions' environment, as a model (names in docs/CONTRACTS.md)."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field


class FunctionSettings(BaseModel):
    runs_bucket: str = Field(alias="RUNS_BUCKET")
    state_machine_arn: str = Field(default="", alias="STATE_MACHINE_ARN")
    cluster: str = Field(default="", alias="CLUSTER")
    driver_task_definition: str = Field(default="", alias="DRIVER_TASK_DEFINITION")
    driver_container_name: str = Field(default="driver", alias="DRIVER_CONTAINER_NAME")
    driver_subnets: str = Field(default="", alias="DRIVER_SUBNETS")
    driver_security_groups: str = Field(default="", alias="DRIVER_SECURITY_GROUPS")
    driver_assign_public_ip: str = Field(default="ENABLED", alias="DRIVER_ASSIGN_PUBLIC_IP")

    @classmethod
    def from_env(cls) -> "FunctionSettings":
        return cls.model_validate(dict(os.environ))

    @staticmethod
    def split(value: str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()]
