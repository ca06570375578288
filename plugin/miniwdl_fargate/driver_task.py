"""A task of the driver's task definition, as the stack has it: what the launch step starts for
each run (pipeline/launch.py) and the gc task runs as (gc_task.py), and how a task definition's
family is read from its ARN."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: the driver's container in its task definition (template.yaml), which ``gc`` runs as
DRIVER_CONTAINER = "driver"


@dataclass(frozen=True)
class DriverTask:
    """A task of the driver's task definition: its cluster, task definition, container and
    network, as the stack has them."""

    cluster: str
    task_definition: str
    container: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: str

    @property
    def family(self) -> str:
        """The task definition's family: RunTask of a family starts its latest ACTIVE revision,
        and a stack update registers a new one and deregisters the old, which no new task can use
        (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html,
        https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DeregisterTaskDefinition.html)."""
        return family_of(self.task_definition)

    def network_configuration(self) -> dict[str, Any]:
        """RunTask's networkConfiguration of a task of the driver's task definition."""
        return {
            "awsvpcConfiguration": {
                "subnets": list(self.subnets),
                "securityGroups": list(self.security_groups),
                "assignPublicIp": self.assign_public_ip,
            }
        }


def family_of(task_definition: str) -> str:
    """A task definition's family, from its ARN or ``family:revision`` (the revision left out)."""
    name = task_definition.rsplit("/", 1)[-1]
    family, _, revision = name.rpartition(":")
    return family if family and revision.isdigit() else name
