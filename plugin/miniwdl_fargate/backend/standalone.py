"""Standalone use (``miniwdl run`` on a machine whose working directory is on EFS): find the EFS
mount, and create with aegea what the aws_fargate backend needs and the account lacks.

The serverless stack creates all of this itself (and sets ``provision = false``).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import botocore.exceptions

from WDL._util import StructuredLogMessage as _

from .. import aws

if TYPE_CHECKING:
    from ..config import FargateSettings

EXECUTION_ROLE_NAME = "miniwdl-fargate-execution"
EXECUTION_ROLE_POLICY = "service-role/AmazonECSTaskExecutionRolePolicy"
CAPACITY_PROVIDERS = ["FARGATE", "FARGATE_SPOT"]


def detect_efs_mount(start: str, mounts_file: str = "/proc/mounts") -> tuple[str, str]:
    """(mountpoint, efs id) of the NFS mount holding ``start``, walking up its directories."""
    mounts: dict[str, str] = {}
    try:
        with open(mounts_file) as infile:
            for line in infile:
                device, mountpoint, fstype = line.split()[:3]
                if fstype.startswith("nfs") or fstype == "efs":
                    mounts[mountpoint] = device
    except OSError:
        pass
    path = os.path.abspath(start)
    while True:
        if path in mounts:
            host, _, export = mounts[path].partition(":")
            efs_id = host.split(".", 1)[0] if host.startswith("fs-") else ""
            if export.rstrip("/"):  # (fs-1:/projects at /mnt/projects: tasks would mount fs-1:/ there)
                raise RuntimeError(
                    f"aws_fargate: {path} is {mounts[path]} (a folder of the file system, not its root), and tasks mount "
                    f"the file system's root at {path}: their paths would not be these. Mount its root "
                    f"(e.g. `mount -t efs {efs_id or 'fs-12345678'}:/ /mnt/efs`) and run under /mnt/efs{export.rstrip('/')}"
                )
            return path, efs_id
        parent = os.path.dirname(path)
        if parent == path:
            raise RuntimeError(
                f"aws_fargate: {start} is not on an EFS (NFS) mount, so Fargate tasks could not see "
                "the run's files. Mount the filesystem (e.g. `mount -t efs fs-12345678 /mnt/efs`) and "
                "run miniwdl in a directory under it, or set [aws_fargate] efs_id and efs_mountpoint"
            )
        path = parent


def default_subnets() -> list[str]:
    ec2 = aws.client("ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise RuntimeError(
            "aws_fargate: no subnets configured and this region has no default VPC: set [aws_fargate] "
            "subnets (MINIWDL__AWS_FARGATE__SUBNETS=subnet-aaa,subnet-bbb)"
        )
    found = ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpcs[0]["VpcId"]]}, {"Name": "default-for-az", "Values": ["true"]}]
    )["Subnets"]
    return sorted(s["SubnetId"] for s in found)


def provision(settings: "FargateSettings", logger: logging.Logger) -> None:
    """Ensure the cluster (with Fargate capacity providers), log group, execution role and EFS
    security group exist, creating them with aegea; fill in the settings with what was found."""
    try:
        from aegea.util.aws import ensure_ecs_cluster, ensure_log_group, ensure_security_group, resources
        from aegea.util.aws.iam import ensure_iam_role
    except ImportError:
        raise RuntimeError(
            "aws_fargate: [aws_fargate] provision = true needs aegea: pip install aegea (or ./plugin[standalone] from this repository) "
            "(or create the cluster, log group, execution role and security group yourself and set "
            "provision = false)"
        ) from None

    cluster = ensure_ecs_cluster(settings.cluster)
    missing = [p for p in CAPACITY_PROVIDERS if p not in cluster.get("capacityProviders", [])]
    if missing:
        aws.client("ecs").put_cluster_capacity_providers(
            cluster=settings.cluster,
            capacityProviders=sorted(set(cluster.get("capacityProviders", [])) | set(CAPACITY_PROVIDERS)),
            defaultCapacityProviderStrategy=cluster.get("defaultCapacityProviderStrategy")
            or [{"capacityProvider": "FARGATE", "weight": 1}],
        )
    if settings.log_group:
        ensure_log_group(settings.log_group)
        expire_logs(settings.log_group, logger)
    if not settings.execution_role:
        role = ensure_iam_role(EXECUTION_ROLE_NAME, policies=[EXECUTION_ROLE_POLICY], trust=["ecs-tasks"])
        settings.execution_role = role.arn
    if not settings.subnets:
        settings.subnets = default_subnets()
    if settings.efs_security_group and not settings.efs_security_group.startswith("sg-"):
        vpc_id = aws.client("ec2").describe_subnets(SubnetIds=settings.subnets[:1])["Subnets"][0]["VpcId"]
        name = settings.efs_security_group
        group = ensure_security_group(
            name, resources.ec2.Vpc(vpc_id), tcp_ingress=[{"port": 2049, "source_security_group_name": name}]
        )
        settings.efs_security_group = group.id
    logger.info(
        _(
            "aws_fargate: provisioned with aegea",
            cluster=settings.cluster,
            log_group=settings.log_group,
            execution_role=settings.execution_role,
            security_group=settings.efs_security_group,
        )
    )


#: days a provisioned task log group keeps its events, when it keeps them for good (as a log
#: group does unless told: every run's output would bill its storage forever), as the stack's do
#: by default (its LogRetentionDays)
LOG_RETENTION_DAYS = 30


def expire_logs(log_group: str, logger: logging.Logger) -> None:
    """Give ``log_group`` a retention of ``LOG_RETENTION_DAYS`` if it has none (one set by its
    owner is left as it is)."""
    logs = aws.client("logs")
    try:
        found = logs.describe_log_groups(logGroupNamePrefix=log_group)["logGroups"]
        group = next((g for g in found if g["logGroupName"] == log_group), None)
        if group is not None and not group.get("retentionInDays"):
            logs.put_retention_policy(logGroupName=log_group, retentionInDays=LOG_RETENTION_DAYS)
            logger.info(_("aws_fargate: task log group given a retention", log_group=log_group, days=LOG_RETENTION_DAYS))
    except botocore.exceptions.ClientError as exn:  # (without logs:PutRetentionPolicy: said, the run goes on)
        logger.warning(_("aws_fargate: could not give the task log group a retention; it keeps its events for good",
                         log_group=log_group, error=str(exn)))


def resolve_security_group(name_or_id: str) -> str:
    if not name_or_id or name_or_id.startswith("sg-"):
        return name_or_id
    found = aws.client("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name_or_id]}]
    )["SecurityGroups"]
    if not found:
        raise RuntimeError(
            f"aws_fargate: security group {name_or_id!r} not found; create it (NFS from itself, admitted "
            "by the EFS mount targets) or set [aws_fargate] provision = true to have aegea create it"
        )
    return found[0]["GroupId"]


def role_arn(name_or_arn: str) -> str:
    if not name_or_arn or name_or_arn.startswith("arn:"):
        return name_or_arn
    return aws.client("iam").get_role(RoleName=name_or_arn)["Role"]["Arn"]
