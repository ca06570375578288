"""aws_fargate: each WDL task runs as one ECS task on Fargate.

- The task definition is registered once per distinct image (content-hashed family name, reused
  across runs); cpu, memory and the command travel as RunTask overrides.
- Every task container mounts the EFS filesystem at the driver's mount path and builds
  ``/mnt/miniwdl_task_container`` as a view of its own task directory (see ``base``).
- One shared poller follows all tasks with DescribeTasks (at most 100 per call).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from typing import Any, Dict

from WDL._util import StructuredLogMessage as _
from WDL.runtime.error import Interrupted

from .. import aws, sizes
from ..config import FargateSettings
from .base import JobStatus, ViewTaskContainer
from .poller import TaskPoller, Watch

CONTAINER_NAME = "task"
EFS_VOLUME = "efs"
RUN_TAG = "miniwdl-fargate:run"
#: stop codes meaning "not the command's fault; try again" (miniwdl retries Interrupted
#: up to runtime.preemptible times)
INTERRUPTED_STOP_CODES = {"SpotInterruption", "TaskFailedToStart"}


class FargateTaskContainer(ViewTaskContainer):
    settings: FargateSettings
    _poller: TaskPoller | None = None
    _task_definitions: Dict[str, str] = {}
    _td_lock = threading.Lock()

    # -- class-wide setup ---------------------------------------------------------------------

    @classmethod
    def global_init(cls, cfg: Any, logger: logging.Logger) -> None:
        settings = FargateSettings.from_cfg(cfg)
        if not settings.efs_mountpoint:
            settings.efs_mountpoint, detected_id = detect_efs_mount(os.getcwd())
            settings.efs_id = settings.efs_id or detected_id
        if not settings.efs_id:
            raise RuntimeError(
                "aws_fargate: no EFS filesystem configured. Run miniwdl in a directory on an EFS "
                "mount, or set [aws_fargate] efs_id and efs_mountpoint "
                "(MINIWDL__AWS_FARGATE__EFS_ID=fs-12345678 MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT=/mnt/efs)"
            )
        if not settings.subnets:
            raise RuntimeError(
                "aws_fargate: no subnets configured: set [aws_fargate] subnets "
                "(MINIWDL__AWS_FARGATE__SUBNETS=subnet-aaa,subnet-bbb)"
            )
        settings.efs_security_group = resolve_security_group(settings.efs_security_group)
        settings.execution_role = role_arn(settings.execution_role)
        settings.task_role = role_arn(settings.task_role)
        cls.settings = settings
        ecs = aws.client("ecs")
        cls._poller = TaskPoller(
            lambda arns: ecs.describe_tasks(cluster=settings.cluster, tasks=arns),
            settings.poll_interval,
        )
        logger.info(
            _(
                "aws_fargate backend",
                cluster=settings.cluster,
                efs_id=settings.efs_id,
                efs_mountpoint=settings.efs_mountpoint,
                subnets=settings.subnets,
            )
        )

    @classmethod
    def detect_resource_limits(cls, cfg: Any, logger: logging.Logger) -> Dict[str, int]:
        return {"cpu": sizes.MAX_CPU_UNITS // 1024, "mem_bytes": sizes.MAX_MEMORY_MIB * 1024 * 1024}

    def view_dir(self) -> str:
        return "/mnt/miniwdl_task_container"

    # -- sizing and task definitions ------------------------------------------------------------

    def fargate_size(self) -> sizes.FargateSize:
        settings = self.settings
        cpu = settings.default_cpu_shares
        memory = settings.default_memory_mb
        if "cpu" in self.runtime_values:
            cpu = int(self.runtime_values["cpu"]) * 1024
        if "memory_reservation" in self.runtime_values:
            memory = sizes.memory_mib(int(self.runtime_values["memory_reservation"]))
        return sizes.snap(cpu, memory)

    def image(self) -> str:
        image = self.runtime_values.get("docker") or self.cfg.get_dict("task_runtime", "defaults").get(
            "docker", "ubuntu:22.04"
        )
        return str(image)

    @classmethod
    def task_definition_spec(cls, image: str) -> dict[str, Any]:
        """The RegisterTaskDefinition request for ``image`` (without its family name)."""
        s = cls.settings
        container: dict[str, Any] = {
            "name": CONTAINER_NAME,
            "image": image,
            "essential": True,
            "mountPoints": [
                {"sourceVolume": EFS_VOLUME, "containerPath": s.efs_mountpoint, "readOnly": False}
            ],
            "stopTimeout": s.stop_timeout,
        }
        if s.log_group:
            container["logConfiguration"] = {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": s.log_group,
                    "awslogs-region": aws.client("ecs").meta.region_name,
                    "awslogs-stream-prefix": "miniwdl",
                },
            }
        efs: dict[str, Any] = {"fileSystemId": s.efs_id, "transitEncryption": "ENABLED"}
        if s.efs_access_point:
            efs["authorizationConfig"] = {"accessPointId": s.efs_access_point, "iam": "DISABLED"}
        spec: dict[str, Any] = {
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "cpu": str(s.default_cpu_shares),
            "memory": str(s.default_memory_mb),
            "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
            "containerDefinitions": [container],
            "volumes": [{"name": EFS_VOLUME, "efsVolumeConfiguration": efs}],
        }
        if s.execution_role:
            spec["executionRoleArn"] = s.execution_role
        if s.task_role:
            spec["taskRoleArn"] = s.task_role
        return spec

    @classmethod
    def task_definition(cls, logger: logging.Logger, image: str) -> str:
        """The task definition ARN for ``image``: found by content hash, registered if new."""
        with cls._td_lock:
            found = cls._task_definitions.get(image)
            if found:
                return found
            spec = cls.task_definition_spec(image)
            digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
            family = f"{cls.settings.task_definition_prefix}-{digest}"
            ecs = aws.client("ecs")
            arn = None
            try:
                existing = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
                if existing.get("status") == "ACTIVE":
                    arn = existing["taskDefinitionArn"]
            except ecs.exceptions.ClientException:
                pass
            if arn is None:
                arn = ecs.register_task_definition(family=family, **spec)["taskDefinition"][
                    "taskDefinitionArn"
                ]
                logger.notice(_("registered task definition", image=image, arn=arn))  # type: ignore[attr-defined]
            cls._task_definitions[image] = arn
            return arn

    # -- one task -------------------------------------------------------------------------------

    def run_task_request(self, logger: logging.Logger, script: str) -> dict[str, Any]:
        s = self.settings
        size = self.fargate_size()
        request: dict[str, Any] = {
            "cluster": s.cluster,
            "taskDefinition": self.task_definition(logger, self.image()),
            "launchType": "FARGATE",
            "count": 1,
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": s.subnets,
                    "securityGroups": [s.efs_security_group, *s.security_groups],
                    "assignPublicIp": "ENABLED" if s.assign_public_ip else "DISABLED",
                }
            },
            "overrides": {
                "cpu": str(size.cpu),
                "memory": str(size.memory),
                "containerOverrides": [
                    {
                        "name": CONTAINER_NAME,
                        "command": ["/bin/sh", "-c", script],
                        "cpu": size.cpu,
                        "memory": size.memory,
                    }
                ],
            },
            "startedBy": "miniwdl-fargate",
            "tags": [{"key": RUN_TAG, "value": os.environ.get("RUN_ID", "standalone")}],
            "enableECSManagedTags": True,
        }
        return request

    def _start(self, logger: logging.Logger, script: str) -> Watch:
        self._seen_version, self._last_state = 0, None
        request = self.run_task_request(logger, script)
        response = aws.client("ecs").run_task(**request)
        if response.get("failures") or not response.get("tasks"):
            raise RuntimeError(f"ECS RunTask failed: {response.get('failures')}")
        task = response["tasks"][0]
        arn = task["taskArn"]
        self.failure_info = self._task_info(task)
        logger.notice(  # type: ignore[attr-defined]
            _(
                "ECS task launched",
                arn=arn,
                cpu=request["overrides"]["cpu"],
                memory=request["overrides"]["memory"],
                **({"log_stream": self.failure_info["log_stream"]} if "log_stream" in self.failure_info else {}),
            )
        )
        assert self._poller is not None
        return self._poller.watch(arn)

    def _task_info(self, task: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {"ecs_task": task["taskArn"]}
        if self.settings.log_group:
            info["log_group"] = self.settings.log_group
            info["log_stream"] = f"miniwdl/{CONTAINER_NAME}/{task['taskArn'].rsplit('/', 1)[-1]}"
        return info

    def _status(self, logger: logging.Logger, job: Watch, wait: float) -> JobStatus:
        self._seen_version = job.wait(wait, getattr(self, "_seen_version", 0))
        if job.missing:
            return JobStatus(stopped=True, reason="ECS no longer knows the task (MISSING)")
        task = job.description or {}
        state = task.get("lastStatus", "PROVISIONING")
        if state != getattr(self, "_last_state", None):
            logger.info(_("ECS task status", arn=job.arn, status=state))
            self._last_state = state
        if state != "STOPPED":
            return JobStatus(running=state == "RUNNING", detail=task)
        containers = task.get("containers") or [{}]
        return JobStatus(
            stopped=True,
            exit_code=containers[0].get("exitCode"),
            reason=task.get("stoppedReason", ""),
            detail=task,
        )

    def _stop(self, logger: logging.Logger, job: Watch, reason: str) -> None:
        if job.stopped:
            return
        logger.warning(_("stopping ECS task", arn=job.arn, reason=reason))
        try:
            aws.client("ecs").stop_task(cluster=self.settings.cluster, task=job.arn, reason=reason[:255])
        except Exception as exn:
            logger.error(_("StopTask failed", arn=job.arn, error=str(exn)))
        finally:
            assert self._poller is not None
            self._poller.forget(job.arn)

    def _exit_code(self, logger: logging.Logger, status: JobStatus) -> int:
        task = status.detail or {}
        info = dict(self.failure_info or {})
        info.update({k: task[k] for k in ("stopCode", "stoppedReason") if task.get(k)})
        self.failure_info = info
        if status.exit_code is not None:
            return status.exit_code
        if task.get("stopCode") in INTERRUPTED_STOP_CODES:
            raise Interrupted(f"ECS task {task.get('stopCode')}: {status.reason}")
        raise RuntimeError(f"ECS task stopped without an exit code: {status.reason or task.get('stopCode')}")


def detect_efs_mount(start: str) -> tuple[str, str]:
    """(mountpoint, efs id) of the NFS mount holding ``start``, walking up its directories."""
    mounts: dict[str, str] = {}
    try:
        with open("/proc/mounts") as infile:
            for line in infile:
                device, mountpoint, fstype = line.split()[:3]
                if fstype.startswith("nfs") or fstype == "efs":
                    mounts[mountpoint] = device
    except OSError:
        pass
    path = os.path.abspath(start)
    while True:
        if path in mounts:
            device = mounts[path]
            host = device.split(":", 1)[0]
            efs_id = host.split(".", 1)[0] if host.startswith("fs-") else ""
            return path, efs_id
        parent = os.path.dirname(path)
        if parent == path:
            raise RuntimeError(
                f"aws_fargate: {start} is not on an EFS (NFS) mount. Run miniwdl in a directory on "
                "the EFS filesystem, or set [aws_fargate] efs_mountpoint and efs_id"
            )
        path = parent


def resolve_security_group(name_or_id: str) -> str:
    if not name_or_id or name_or_id.startswith("sg-"):
        return name_or_id
    found = aws.client("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name_or_id]}]
    )["SecurityGroups"]
    if not found:
        raise RuntimeError(f"aws_fargate: security group {name_or_id!r} not found")
    return found[0]["GroupId"]


def role_arn(name_or_arn: str) -> str:
    if not name_or_arn or name_or_arn.startswith("arn:"):
        return name_or_arn
    return aws.client("iam").get_role(RoleName=name_or_arn)["Role"]["Arn"]
