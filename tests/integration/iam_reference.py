"""What AWS authorizes, for every IAM action template.yaml grants: the resource types each action
can be scoped to and the condition keys it honours, as AWS's Service Authorization Reference
lists them (the page of each service is given with its actions). tests/integration/
test_template.py checks every statement of the template against this table, so a statement that
scopes an action to an ARN type the action does not support (AWS then grants nothing), or
conditions it on a key the action never carries, fails there.

Read from the reference's "Actions defined by ..." tables: "Resource types" (an action with none
must be granted on "*") and "Condition keys" (the action's own, plus the condition keys of the
resource types it is scoped to, from the "Resource types defined by ..." table). Global keys
(aws:...) apply to every action. When template.yaml grants a new action, look it up there and add
it here; the test refuses actions it does not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SAR = "https://docs.aws.amazon.com/service-authorization/latest/reference/"
ECS = SAR + "list_amazonelasticcontainerservice.html"
STATES = SAR + "list_awsstepfunctions.html"
LOGS = SAR + "list_amazoncloudwatchlogs.html"
XRAY = SAR + "list_awsx-ray.html"
SQS = SAR + "list_amazonsqs.html"
LAMBDA = SAR + "list_awslambda.html"
IAM = SAR + "list_awsidentityandaccessmanagementiam.html"
EFS = SAR + "list_amazonelasticfilesystem.html"
S3 = SAR + "list_amazons3.html"
EVENTS = SAR + "list_amazoneventbridge.html"
SCHEDULER = SAR + "list_amazoneventbridgescheduler.html"
ECR = SAR + "list_amazonelasticcontainerregistry.html"
EC2 = SAR + "list_amazonec2.html"
KMS = SAR + "list_awskeymanagementservice.html"
SERVICE_QUOTAS = SAR + "list_servicequotas.html"


@dataclass(frozen=True)
class Action:
    page: str
    resource_types: tuple[str, ...] = ()  # none: the action authorizes "*" only
    condition_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourceType:
    arn: str  # the reference's ARN format, ${Variables} and all
    condition_keys: tuple[str, ...] = field(default=())
    #: a policy may name these in any account (``*``): resources of accounts of AWS's own, as AWS's
    #: managed policies name them (a Fargate task's instance its EBS volume attaches to)
    any_account: bool = False


# service prefix -> resource type -> ARN format (only the types the actions below use)
RESOURCE_TYPES: dict[str, dict[str, ResourceType]] = {
    "ecs": {
        "task": ResourceType("arn:${Partition}:ecs:${Region}:${Account}:task/${ClusterName}/${TaskId}", ("ecs:ResourceTag/${TagKey}",)),
        "task-definition": ResourceType(
            "arn:${Partition}:ecs:${Region}:${Account}:task-definition/${TaskDefinitionFamilyName}:${TaskDefinitionRevisionNumber}",
            ("ecs:ResourceTag/${TagKey}",),
        ),
        "container-instance": ResourceType(
            "arn:${Partition}:ecs:${Region}:${Account}:container-instance/${ClusterName}/${ContainerInstanceId}",
            ("ecs:ResourceTag/${TagKey}",),
        ),
        "cluster": ResourceType("arn:${Partition}:ecs:${Region}:${Account}:cluster/${ClusterName}", ("ecs:ResourceTag/${TagKey}",)),
    },
    # (the resource types the ECS infrastructure roles' actions name, as AWS's own
    # AmazonECSInfrastructureRolePolicyForVolumes / ...ForManagedInstances scope them)
    "ec2": {
        "volume": ResourceType("arn:${Partition}:ec2:${Region}:${Account}:volume/${VolumeId}", ("ec2:ResourceTag/${TagKey}",)),
        "instance": ResourceType(
            "arn:${Partition}:ec2:${Region}:${Account}:instance/${InstanceId}", ("ec2:ResourceTag/${TagKey}",), any_account=True,
        ),
        "fleet": ResourceType("arn:${Partition}:ec2:${Region}:${Account}:fleet/${FleetId}", ("ec2:ResourceTag/${TagKey}",)),
        "network-interface": ResourceType(
            "arn:${Partition}:ec2:${Region}:${Account}:network-interface/${NetworkInterfaceId}", ("ec2:ResourceTag/${TagKey}", "ec2:Vpc"),
        ),
        "launch-template": ResourceType(
            "arn:${Partition}:ec2:${Region}:${Account}:launch-template/${LaunchTemplateId}",
            ("ec2:ResourceTag/${TagKey}", "ec2:ManagedResourceOperator"),
        ),
        "subnet": ResourceType("arn:${Partition}:ec2:${Region}:${Account}:subnet/${SubnetId}", ("ec2:ResourceTag/${TagKey}", "ec2:Vpc")),
        "security-group": ResourceType(
            "arn:${Partition}:ec2:${Region}:${Account}:security-group/${SecurityGroupId}", ("ec2:ResourceTag/${TagKey}", "ec2:Vpc"),
        ),
        "image": ResourceType("arn:${Partition}:ec2:${Region}::image/${ImageId}", ("ec2:ResourceTag/${TagKey}",)),
    },
    "states": {
        "statemachine": ResourceType("arn:${Partition}:states:${Region}:${Account}:stateMachine:${StateMachineName}"),
        "execution": ResourceType("arn:${Partition}:states:${Region}:${Account}:execution:${StateMachineName}:${ExecutionId}"),
    },
    "logs": {
        "log-group": ResourceType("arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}"),
        "log-stream": ResourceType("arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}:log-stream:${LogStreamName}"),
    },
    "sqs": {"queue": ResourceType("arn:${Partition}:sqs:${Region}:${Account}:${QueueName}")},
    "lambda": {"function": ResourceType("arn:${Partition}:lambda:${Region}:${Account}:function:${FunctionName}")},
    "iam": {"role": ResourceType("arn:${Partition}:iam::${Account}:role/${RoleNameWithPath}", ("iam:ResourceTag/${TagKey}",))},
    "elasticfilesystem": {
        "file-system": ResourceType(
            "arn:${Partition}:elasticfilesystem:${Region}:${Account}:file-system/${FileSystemId}", ("aws:ResourceTag/${TagKey}",)
        ),
        "access-point": ResourceType(
            "arn:${Partition}:elasticfilesystem:${Region}:${Account}:access-point/${AccessPointId}", ("aws:ResourceTag/${TagKey}",)
        ),
    },
    "s3": {
        "bucket": ResourceType("arn:${Partition}:s3:::${BucketName}", ("s3:BucketTag/${TagKey}",)),
        "object": ResourceType("arn:${Partition}:s3:::${BucketName}/${ObjectName}", ("s3:BucketTag/${TagKey}",)),
    },
    "servicequotas": {"quota": ResourceType("arn:${Partition}:servicequotas:${Region}:${Account}:${ServiceCode}/${QuotaCode}")},
    "events": {"event-bus": ResourceType("arn:${Partition}:events:${Region}:${Account}:event-bus/${EventBusName}")},
    # (a schedule carries no tags: only schedule groups do)
    "scheduler": {"schedule": ResourceType("arn:${Partition}:scheduler:${Region}:${Account}:schedule/${GroupName}/${ScheduleName}")},
    "ecr": {"repository": ResourceType("arn:${Partition}:ecr:${Region}:${Account}:repository/${RepositoryName}", ("ecr:ResourceTag/${TagKey}",))},
    "kms": {"key": ResourceType("arn:${Partition}:kms:${Region}:${Account}:key/${KeyId}", ("aws:ResourceTag/${TagKey}", "kms:ResourceAliases"))},
}

S3_COMMON = ("s3:authType", "s3:ResourceAccount", "s3:signatureAge", "s3:signatureversion", "s3:TlsVersion", "s3:x-amz-content-sha256")

ACTIONS: dict[str, Action] = {
    # ECS. RegisterTaskDefinition is scoped to task-definition ARNs (family:revision); Describe-
    # TaskDefinition to nothing; ListTasks to container instances (none on Fargate: grant "*",
    # pin the cluster with ecs:cluster); TagResource on create carries ecs:CreateAction.
    "ecs:RunTask": Action(ECS, ("task-definition",), (
        "aws:RequestTag/${TagKey}", "aws:ResourceTag/${TagKey}", "aws:TagKeys", "ecs:capacity-provider", "ecs:cluster",
        "ecs:enable-ebs-volumes", "ecs:enable-execute-command",
    )),
    "ecs:DescribeTasks": Action(ECS, ("task",), ("aws:ResourceTag/${TagKey}", "ecs:cluster")),
    "ecs:StopTask": Action(ECS, ("task",), ("aws:ResourceTag/${TagKey}", "ecs:cluster")),
    "ecs:ListTasks": Action(ECS, ("container-instance",), ("aws:ResourceTag/${TagKey}", "ecs:cluster")),
    "ecs:TagResource": Action(ECS, ("cluster", "container-instance", "task", "task-definition"), (
        "aws:RequestTag/${TagKey}", "aws:ResourceTag/${TagKey}", "aws:TagKeys", "ecs:CreateAction",
    )),
    "ecs:RegisterTaskDefinition": Action(ECS, ("task-definition",), (
        "aws:ResourceTag/${TagKey}", "aws:RequestTag/${TagKey}", "aws:TagKeys", "ecs:compute-compatibility",
        "ecs:privileged", "ecs:task-cpu", "ecs:task-memory",
    )),
    "ecs:DescribeTaskDefinition": Action(ECS),
    # the ECS agent on managed instances (AmazonECSInstanceRolePolicyForManagedInstances's scopes)
    "ecs:DiscoverPollEndpoint": Action(ECS),
    "ecs:RegisterContainerInstance": Action(ECS, ("cluster",)),
    "ecs:SubmitAttachmentStateChanges": Action(ECS, ("cluster",)),
    "ecs:SubmitTaskStateChange": Action(ECS, ("cluster",)),
    "ecs:Poll": Action(ECS, ("container-instance",)),
    "ecs:StartTelemetrySession": Action(ECS, ("container-instance",)),
    "ecs:PutSystemLogEvents": Action(ECS, ("container-instance",)),
    "ecs:DeregisterTaskDefinition": Action(ECS),
    "ecs:DeleteTaskDefinitions": Action(ECS, ("task-definition",), ("aws:ResourceTag/${TagKey}",)),
    # Step Functions: the task-token callbacks authorize "*" only
    "states:SendTaskSuccess": Action(STATES),
    "states:SendTaskFailure": Action(STATES),
    "states:SendTaskHeartbeat": Action(STATES),
    "states:StartExecution": Action(STATES, ("statemachine",), ("states:StateMachineQualifier",)),
    "states:StopExecution": Action(STATES, ("execution",)),
    # CloudWatch Logs: writing authorizes the log *stream* ARN; vended-log delivery (a state
    # machine's execution logs) authorizes "*" only
    "logs:CreateLogStream": Action(LOGS, ("log-stream",)),
    "logs:PutLogEvents": Action(LOGS, ("log-stream",)),
    "logs:GetLogEvents": Action(LOGS, ("log-stream",)),  # (its resource types: log-stream alone)
    **{f"logs:{name}": Action(LOGS) for name in (
        "CreateLogDelivery", "GetLogDelivery", "UpdateLogDelivery", "DeleteLogDelivery", "ListLogDeliveries",
        "PutResourcePolicy", "DescribeResourcePolicies", "DescribeLogGroups",
    )},
    "xray:PutTraceSegments": Action(XRAY, (), ("logs:LogGeneratingResourceArns",)),
    "xray:PutTelemetryRecords": Action(XRAY),
    "sqs:SendMessage": Action(SQS, ("queue",)),
    "lambda:InvokeFunction": Action(LAMBDA, ("function",), ("lambda:EventSourceToken", "lambda:InvokedViaFunctionUrl")),
    "iam:PassRole": Action(IAM, ("role",), ("iam:AssociatedResourceArn", "iam:PassedToService")),
    "iam:CreateServiceLinkedRole": Action(IAM, ("role",), ("iam:AWSServiceName",)),
    # a run's own access point (backend/fargate.py run_volume; pipeline/finalize.py for a dead driver's)
    "elasticfilesystem:CreateAccessPoint": Action(EFS, ("file-system",), ("aws:RequestTag/${TagKey}", "aws:TagKeys")),
    "elasticfilesystem:TagResource": Action(EFS, ("access-point", "file-system"), (
        "aws:RequestTag/${TagKey}", "aws:TagKeys", "elasticfilesystem:CreateAction",
    )),
    "elasticfilesystem:DescribeAccessPoints": Action(EFS, ("access-point", "file-system")),
    "elasticfilesystem:DeleteAccessPoint": Action(EFS, ("access-point",)),
    # Service Quotas: reading one quota authorizes that quota's ARN
    "servicequotas:GetServiceQuota": Action(SERVICE_QUOTAS, ("quota",)),
    "servicequotas:GetAWSDefaultServiceQuota": Action(SERVICE_QUOTAS),
    **{f"elasticfilesystem:{name}": Action(EFS, ("file-system",), (
        "elasticfilesystem:AccessPointArn", "elasticfilesystem:AccessedViaMountTarget",
    )) for name in ("ClientMount", "ClientWrite", "ClientRootAccess")},
    "s3:GetObject": Action(S3, ("object",), S3_COMMON + ("s3:ExistingObjectTag/<key>",)),
    # GetObject with a VersionId (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html)
    "s3:GetObjectVersion": Action(S3, ("object",), S3_COMMON + ("s3:ExistingObjectTag/<key>", "s3:versionid")),
    "s3:PutObject": Action(S3, ("object",), S3_COMMON + ("s3:RequestObjectTag/<key>", "s3:RequestObjectTagKeys", "s3:x-amz-acl")),
    "s3:DeleteObject": Action(S3, ("object",), S3_COMMON),
    "s3:AbortMultipartUpload": Action(S3, ("object",), S3_COMMON),
    "s3:ListBucket": Action(S3, ("bucket",), S3_COMMON + ("s3:delimiter", "s3:max-keys", "s3:prefix")),
    "s3:ListBucketVersions": Action(S3, ("bucket",), S3_COMMON + ("s3:delimiter", "s3:max-keys", "s3:prefix")),
    "events:PutEvents": Action(EVENTS, ("event-bus",), ("events:detail-type", "events:source", "events:eventBusInvocation")),
    # CreateSchedule also needs iam:PassRole of the schedule's role (to scheduler.amazonaws.com)
    "scheduler:CreateSchedule": Action(SCHEDULER, ("schedule",)),
    "ecr:GetAuthorizationToken": Action(ECR),
    "kms:Decrypt": Action(KMS, ("key",), (
        "kms:CallerAccount", "kms:EncryptionAlgorithm", "kms:EncryptionContext:${EncryptionContextKey}", "kms:EncryptionContextKeys",
        "kms:GrantIsForAWSResource", "kms:RecipientAlgorithm", "kms:RequestAlias", "kms:ViaService",
    )),
    **{f"ecr:{name}": Action(ECR, ("repository",)) for name in ("BatchCheckLayerAvailability", "GetDownloadUrlForLayer", "BatchGetImage")},
    # the first pull through a cache rule (https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache-iam.html)
    "ecr:BatchImportUpstreamImage": Action(ECR, ("repository",)),
    "ecr:CreateRepository": Action(ECR, ("repository",), ("aws:RequestTag/${TagKey}", "aws:TagKeys")),
    # EC2, as the ECS infrastructure roles use it (EBS volumes of tasks; managed instances)
    "ec2:CreateVolume": Action(EC2, ("volume",), ("aws:RequestTag/${TagKey}", "aws:TagKeys")),
    "ec2:CreateTags": Action(
        EC2, ("fleet", "image", "instance", "launch-template", "network-interface", "security-group", "subnet", "volume"),
        ("aws:RequestTag/${TagKey}", "aws:TagKeys", "ec2:CreateAction"),
    ),
    "ec2:AttachVolume": Action(EC2, ("instance", "volume")),
    "ec2:DetachVolume": Action(EC2, ("instance", "volume")),
    "ec2:DeleteVolume": Action(EC2, ("volume",)),
    "ec2:CreateLaunchTemplate": Action(EC2, ("launch-template",), ("aws:RequestTag/${TagKey}", "aws:TagKeys")),
    "ec2:CreateLaunchTemplateVersion": Action(EC2, ("launch-template",)),
    "ec2:ModifyLaunchTemplate": Action(EC2, ("launch-template",)),
    # (CreateFleet authorizes no network-interface or security-group ARNs, RunInstances no fleet)
    "ec2:CreateFleet": Action(
        EC2, ("fleet", "image", "instance", "launch-template", "subnet", "volume"), ("aws:RequestTag/${TagKey}", "aws:TagKeys"),
    ),
    "ec2:RunInstances": Action(
        EC2, ("image", "instance", "launch-template", "network-interface", "security-group", "subnet", "volume"),
        ("aws:RequestTag/${TagKey}", "aws:TagKeys"),
    ),
    **{f"ec2:{name}": Action(EC2) for name in (
        "DescribeVolumes", "DescribeAvailabilityZones", "DescribeInstances", "DescribeInstanceTypes", "DescribeLaunchTemplates",
        "DescribeNetworkInterfaces", "DescribeInstanceTypeOfferings", "DescribeSecurityGroups", "DescribeSubnets", "DescribeVpcs",
        "DescribeCapacityReservations",
    )},
}

# keys any action of the service carries (for statements on "s3:*" and the like)
SERVICE_CONDITION_KEYS = {"s3": set(S3_COMMON), "sqs": set(), "elasticfilesystem": set()}

_WIDE = {
    "ObjectName": ".+", "RoleNameWithPath": ".+", "LogStreamName": ".+", "LogGroupName": "[^:]+",
    "RepositoryName": ".+",  # ECR repository names are paths (ecr-public/library/ubuntu)
}


def arn_regex(arn_format: str, any_account: bool = False) -> re.Pattern[str]:
    """The reference's ARN format as a regex: each ${Variable} one name (a path where AWS allows
    one: object keys, role paths, log group names)."""
    out, pos = [], 0
    for m in re.finditer(r"\$\{(\w+)\}", arn_format):
        out.append(re.escape(arn_format[pos : m.start()]))
        name = m.group(1)
        account = "([0-9]{12}|x)" if any_account else "[0-9]{12}"  # (x: a "*" in a sample)
        out.append({"Partition": "aws[a-z-]*", "Region": "[a-z0-9-]+", "Account": account}.get(name, _WIDE.get(name, "[^:/]+")))
        pos = m.end()
    out.append(re.escape(arn_format[pos:]))
    return re.compile("^" + "".join(out) + "$")


def resource_type_of(arn: str) -> tuple[str, str] | None:
    """(service, resource type) of a policy Resource, each ``*`` in it standing for one name (so
    ``task-definition/family:*`` is a task definition, ``task-definition/family*`` is not: a
    pattern must have the shape of the ARNs it means)."""
    sample = arn.replace("*", "x")
    for service, types in RESOURCE_TYPES.items():
        for name, kind in types.items():
            if arn_regex(kind.arn, kind.any_account).match(sample):
                return service, name
    return None


def condition_keys(action: str) -> set[str]:
    """The keys a statement granting ``action`` may test: the action's own and those of the
    resource types it is scoped to."""
    entry = ACTIONS[action]
    service = action.split(":")[0]
    keys = set(entry.condition_keys)
    for kind in entry.resource_types:
        keys |= set(RESOURCE_TYPES.get(service, {}).get(kind, ResourceType("")).condition_keys)
    return keys


def key_matches(key: str, allowed: set[str]) -> bool:
    """``key`` as a policy writes it (aws:RequestTag/env) against the reference's templates
    (aws:RequestTag/${TagKey}); condition keys are case-insensitive."""
    for template in allowed:
        pattern = re.escape(template.lower()).replace(re.escape("${tagkey}"), ".+").replace(re.escape("<key>"), ".+")
        if re.fullmatch(pattern, key.lower()):
            return True
    return False
