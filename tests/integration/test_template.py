"""template.yaml as CloudFormation receives it: transformed by aws-sam-translator (as `sam deploy`
does), then checked for least privilege and zero idle cost, and deployed into moto.

Given the template's default parameters (what `sam deploy --guided` proposes), when it is
transformed, then:
- no IAM or resource policy statement allows Action "*" (nor a whole service, in an Allow);
- every Resource "*" is in ALLOWED_STAR_RESOURCES with its reason, which is also the inline
  comment next to it in template.yaml;
- no resource bills by the hour, and the only fixed monthly charges are the two alarms;
and when it is deployed into moto, every resource of the stack comes up.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from miniwdl_fargate import aws, driver_task, runs
from miniwdl_fargate.local import stack
from miniwdl_fargate.local.moto import cfn, fixes, patching

import iam_reference

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
ARTIFACTS = "template-test-artifacts"

# (resource, statement Sid) -> why "*" is the narrowest resource. Each reason is also the
# inline comment after `Resource: "*"  #` in template.yaml.
ALLOWED_STAR_RESOURCES = {
    ("LaunchDriverRole", "ReadFargateVcpuQuotaDefault"): (
        "default quotas are no account's resources: no resource-level permissions"
    ),
    ("TaskExecutionRole", "EcrLogin"): "GetAuthorizationToken supports no resource-level permissions",
    ("DriverTaskRole", "ListTasksOfThisCluster"): (
        "ListTasks authorizes container-instance ARNs (none on Fargate); the condition pins the cluster"
    ),
    ("DriverTaskRole", "FindTaskDefinitions"): "DescribeTaskDefinition supports no resource-level permissions",
    ("DriverTaskRole", "DeregisterTheRunsTaskDefinitions"): "DeregisterTaskDefinition supports no resource-level permissions",
    ("DriverTaskRole", "HeartbeatToStateMachine"): "task-token callbacks support no resource-level permissions",
    ("RunTimedOutRole", "ListTasksOfThisCluster"): (
        "ListTasks authorizes container-instance ARNs (none on Fargate); the condition pins the cluster"
    ),
    ("LaunchDriverRole", "ListTasksOfThisCluster"): (
        "ListTasks authorizes container-instance ARNs (none on Fargate); the condition pins the cluster"
    ),
    ("FinalizeRole", "ListTasksOfThisCluster"): (
        "ListTasks authorizes container-instance ARNs (none on Fargate); the condition pins the cluster"
    ),
    ("DriverStoppedRole", "ReportToStateMachine"): "task-token callbacks support no resource-level permissions",
    ("DriverStoppedRole", "ListTasksOfThisCluster"): (
        "ListTasks authorizes container-instance ARNs (none on Fargate); the condition pins the cluster"
    ),
    ("ApiRole", "ListTasksOfThisCluster"): (
        "ListTasks authorizes container-instance ARNs (none on Fargate); the condition pins the cluster"
    ),
    **{
        (role, "Tracing"): "X-Ray trace APIs support no resource-level permissions"
        for role in ("SubmitRole", "ApiRole", "LaunchDriverRole", "DriverStoppedRole", "FinalizeRole", "RunTimedOutRole")
    },
    ("StateMachineRole", "DeliverExecutionLogs"): (
        "CloudWatch Logs vended-log delivery APIs support no resource-level permissions"
    ),
    ("EbsVolumeRole", "FollowVolumes"): "EC2 Describe actions support no resource-level permissions",
    ("ManagedInstancesInfrastructureRole", "DescribeWhatItManages"): "EC2 Describe actions support no resource-level permissions",
    ("ManagedInstancesInstanceRole", "DiscoverPollEndpoint"): "DiscoverPollEndpoint supports no resource-level permissions",
}

# Resource types (and the property that makes them so) billed for every hour they exist.
HOURLY_BILLED = {
    "AWS::EC2::NatGateway": lambda p: True,
    "AWS::EC2::VPCEndpoint": lambda p: p.get("VpcEndpointType", "Gateway") != "Gateway",  # Interface, GWLB
    "AWS::EC2::Instance": lambda p: True,
    "AWS::EC2::Host": lambda p: True,
    "AWS::EC2::EIP": lambda p: True,  # public IPv4 address
    "AWS::EC2::SpotFleet": lambda p: True,
    "AWS::EC2::EC2Fleet": lambda p: True,
    "AWS::EC2::TransitGateway": lambda p: True,
    "AWS::EC2::TransitGatewayAttachment": lambda p: True,
    "AWS::EC2::TransitGatewayVpcAttachment": lambda p: True,
    "AWS::EC2::VPNConnection": lambda p: True,
    "AWS::EC2::ClientVpnEndpoint": lambda p: True,
    "AWS::NetworkFirewall::Firewall": lambda p: True,
    "AWS::Route53Resolver::ResolverEndpoint": lambda p: True,
    "AWS::GlobalAccelerator::Accelerator": lambda p: True,
    "AWS::ElasticLoadBalancing::LoadBalancer": lambda p: True,
    "AWS::ElasticLoadBalancingV2::LoadBalancer": lambda p: True,
    "AWS::AutoScaling::AutoScalingGroup": lambda p: True,
    "AWS::EFS::FileSystem": lambda p: p.get("ThroughputMode") == "provisioned",
    "AWS::ECS::Service": lambda p: True,  # keeps tasks running
    "AWS::EKS::Cluster": lambda p: True,
    "AWS::EKS::Nodegroup": lambda p: True,
    "AWS::Batch::ComputeEnvironment": lambda p: int((p.get("ComputeResources") or {}).get("MinvCpus", 0)) > 0,
    "AWS::ApiGateway::Stage": lambda p: p.get("CacheClusterEnabled") in (True, "true"),
    "AWS::Lambda::Alias": lambda p: "ProvisionedConcurrencyConfig" in p,
    "AWS::Lambda::Version": lambda p: "ProvisionedConcurrencyConfig" in p,
    "AWS::DynamoDB::Table": lambda p: p.get("BillingMode", "PROVISIONED") == "PROVISIONED",
    "AWS::Kinesis::Stream": lambda p: (p.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED") == "PROVISIONED",
    "AWS::ElastiCache::CacheCluster": lambda p: True,
    "AWS::ElastiCache::ReplicationGroup": lambda p: True,
    "AWS::Redshift::Cluster": lambda p: True,
    "AWS::OpenSearchService::Domain": lambda p: True,
    "AWS::Elasticsearch::Domain": lambda p: True,
    "AWS::DocDB::DBCluster": lambda p: True,
    "AWS::DocDB::DBInstance": lambda p: True,
    "AWS::Neptune::DBInstance": lambda p: True,
    "AWS::MSK::Cluster": lambda p: True,
    "AWS::AmazonMQ::Broker": lambda p: True,
    "AWS::SageMaker::Endpoint": lambda p: True,
    "AWS::SageMaker::NotebookInstance": lambda p: True,
    "AWS::AppRunner::Service": lambda p: True,
    "AWS::DirectoryService::MicrosoftAD": lambda p: True,
    "AWS::DirectoryService::SimpleAD": lambda p: True,
}
HOURLY_BILLED_PREFIXES = ("AWS::RDS::DB",)  # DBInstance, DBCluster (not subnet/parameter groups)

# Resource types with a fixed monthly charge however little they are used.
MONTHLY_BILLED = {
    "AWS::CloudWatch::Alarm",  # 0.10 USD per metric a month
    "AWS::KMS::Key",  # 1 USD a month
    "AWS::SecretsManager::Secret",  # 0.40 USD a month
    "AWS::Route53::HostedZone",  # 0.50 USD a month
    "AWS::CloudWatch::Dashboard",  # 3 USD a month beyond the free three
}


# -- the template as CloudFormation sees it ------------------------------------------------------


def transform(parameters: dict[str, str]) -> dict[str, Any]:
    """Package and transform like `sam deploy` (artifacts into moto's S3: call inside mock_aws)."""
    aws.client("s3").create_bucket(Bucket=ARTIFACTS)
    return stack.transform(TEMPLATE, parameters, ARTIFACTS)


@pytest.fixture(scope="module")
def cfn_template() -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        aws.reset()
        with mock_aws():
            template = transform({})
        aws.reset()
    return template


class Conditions:
    """Evaluate a transformed template's Conditions and Fn::If for given parameter values."""

    def __init__(self, template: dict[str, Any], overrides: dict[str, str] | None = None) -> None:
        self.template = template
        self.params: dict[str, Any] = {}
        for name, spec in template.get("Parameters", {}).items():
            value = str((overrides or {}).get(name, spec.get("Default", "")))
            self.params[name] = value.split(",") if spec["Type"].startswith(("CommaDelimitedList", "List<")) else value
        self._cache: dict[str, bool] = {}

    def value(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref" and arg in self.params:
                return self.params[arg]
            if fn == "Fn::Equals":
                return self.value(arg[0]) == self.value(arg[1])
            if fn == "Fn::Not":
                return not self.value(arg[0])
            if fn == "Fn::And":
                return all(self.value(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.value(a) for a in arg)
            if fn == "Condition":
                return self.holds(arg)
            if fn == "Fn::Join":
                return arg[0].join(self.value(arg[1]))
        return node

    def holds(self, name: str) -> bool:
        if name not in self._cache:
            self._cache[name] = bool(self.value(self.template["Conditions"][name]))
        return self._cache[name]

    NO_VALUE = {"Ref": "AWS::NoValue"}

    def resolve(self, node: Any) -> Any:
        """``node`` with every Fn::If decided and AWS::NoValue dropped."""
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, yes, no = node["Fn::If"]
                return self.resolve(yes if self.holds(name) else no)
            resolved = {k: self.resolve(v) for k, v in node.items()}
            return {k: v for k, v in resolved.items() if v != self.NO_VALUE}
        if isinstance(node, list):
            return [v for v in (self.resolve(v) for v in node) if v != self.NO_VALUE]
        return node

    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources created with these parameters, Fn::If resolved."""
        return {
            logical_id: self.resolve(resource)
            for logical_id, resource in self.template["Resources"].items()
            if "Condition" not in resource or self.holds(resource["Condition"])
        }


def policy_documents(resources: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(resource, what, document) for every IAM and resource policy document."""
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::IAM::Role":
            yield logical_id, "trust", props["AssumeRolePolicyDocument"]
            for policy in props.get("Policies", []):
                yield logical_id, policy["PolicyName"], policy["PolicyDocument"]
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield logical_id, "policy", props["PolicyDocument"]
        elif kind in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            yield logical_id, "resource policy", props["PolicyDocument"]
        elif kind == "AWS::EFS::FileSystem" and "FileSystemPolicy" in props:
            yield logical_id, "file system policy", props["FileSystemPolicy"]
        elif kind == "AWS::EC2::VPCEndpoint" and "PolicyDocument" in props:
            yield logical_id, "endpoint policy", props["PolicyDocument"]


def statements(resources: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for logical_id, what, document in policy_documents(resources):
        for statement in document["Statement"]:
            found.append((logical_id, what, statement))
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/{}-AbCdEf"
# beyond Fargate and the image cache, every part of them on
BEYOND_FARGATE = {
    "ManagedInstances": "Enabled",
    "ManagedInstancesGpuKinds": "t4,a10g",
    "ManagedInstancesMaxGpus": "4",
    "ImageCache": "Enabled",
    "DockerHubCredentialArn": SECRET.format("docker-hub"),
    "GitHubCredentialArn": SECRET.format("github"),
}

# every combination of the switches that add or remove IAM statements and resources
VARIANTS = {
    "defaults": {},
    "own VPC, private subnets, everything on": {
        "VpcId": "vpc-0123456789abcdef0",
        "SubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
        "AssignPublicIp": "DISABLED",
        "RouteTableIds": "rtb-0123456789abcdef0",
        "InterfaceEndpoints": "true",
        "TaskRoleArn": "arn:aws:iam::123456789012:role/wdl-tasks",
        "ReadableS3Arns": "arn:aws:s3:::my-data,arn:aws:s3:::my-data/*",
        "ReadableKmsKeyArns": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "PullableEcrRepositoryArns": "arn:aws:ecr:us-east-1:111122223333:repository/pipelines/*",
        "AlarmEmail": "ops@example.com",
        **BEYOND_FARGATE,
    },
    "managed instances and image cache, no GPUs or credentials": {"ManagedInstances": "Enabled", "ImageCache": "Enabled"},
}


# -- least privilege ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_statement_allows_every_action(cfn_template, variant):
    resources = Conditions(cfn_template, VARIANTS[variant]).resources()
    found = statements(resources)
    assert len(found) > 20
    for logical_id, what, statement in found:
        actions = as_list(statement.get("Action", []))
        assert "*" not in actions, f"{logical_id} ({what}) {statement.get('Sid')}: Action '*'"
        assert "NotAction" not in statement, f"{logical_id} ({what}): NotAction"
        if statement["Effect"] == "Allow":
            wildcards = [a for a in actions if a.endswith(":*")]
            assert not wildcards, f"{logical_id} ({what}) {statement.get('Sid')} allows a whole service: {wildcards}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_star_resource_is_allowed_with_a_reason(cfn_template, variant):
    resources = Conditions(cfn_template, VARIANTS[variant]).resources()
    star = set()
    for logical_id, what, statement in statements(resources):
        if statement["Effect"] != "Allow" or what == "trust":
            continue
        if "*" in as_list(statement.get("Resource", [])):
            assert statement.get("Sid"), f"{logical_id}: a Resource '*' statement needs a Sid to be allow-listed"
            star.add((logical_id, statement["Sid"]))
    expected = {key for key in ALLOWED_STAR_RESOURCES if key[0] in resources}  # (roles of switches that are off)
    assert star == expected, (
        f"not allow-listed: {sorted(star - expected)}; allow-listed but gone: {sorted(expected - star)}"
    )
    if VARIANTS[variant].get("ManagedInstances") == "Enabled":
        assert star == set(ALLOWED_STAR_RESOURCES)


def test_star_resources_carry_the_allow_listed_reason_inline():
    """Each `Resource: "*"` line of template.yaml ends with `# <the reason in the allow-list>`."""
    resource_id = sid = None
    seen = {}
    for number, line in enumerate(TEMPLATE.read_text().splitlines(), 1):
        if m := re.match(r"^  ([A-Za-z0-9]+):\s*$", line):
            resource_id, sid = m.group(1), None
        elif m := re.match(r"^\s*- Sid: (\S+)", line):
            sid = m.group(1)
        elif re.match(r'^\s*Resource: "\*"', line):
            comment = line.split("#", 1)[1].strip() if "#" in line else ""
            assert comment, f"template.yaml:{number}: Resource \"*\" without a comment saying why"
            seen[(resource_id, sid)] = comment
    assert seen == ALLOWED_STAR_RESOURCES


def test_no_role_hides_permissions_in_managed_policies(cfn_template):
    """Managed policies (e.g. AWSLambdaBasicExecutionRole: logs on "*") would bypass the checks
    above: every role carries its own inline policies only."""
    roles = {
        k: r for k, r in Conditions(cfn_template, BEYOND_FARGATE).resources().items() if r["Type"] == "AWS::IAM::Role"
    }
    assert set(roles) == {
        "TaskExecutionRole", "DriverTaskRole", "SubmitRole", "ApiRole", "LaunchDriverRole",
        "DriverStoppedRole", "FinalizeRole", "RunTimedOutRole", "StateMachineRole",
        "EbsVolumeRole", "ManagedInstancesInfrastructureRole", "ManagedInstancesInstanceRole", "GcSchedulerRole",
    }
    for logical_id, role in roles.items():
        assert not role["Properties"].get("ManagedPolicyArns"), logical_id
        assert role["Properties"].get("Policies"), logical_id


# (role, Sid) of each iam:PassRole -> the one service it may pass roles to
PASSED_TO = {
    ("LaunchDriverRole", "PassDriverRoles"): ("StringEquals", "ecs-tasks.amazonaws.com"),
    # the gc task's schedule runs it as the driver's task definition (gc_task.schedule)
    ("FinalizeRole", "PassGcSchedulerRole"): ("StringEquals", "scheduler.amazonaws.com"),
    ("DriverStoppedRole", "PassGcSchedulerRole"): ("StringEquals", "scheduler.amazonaws.com"),
    ("GcSchedulerRole", "PassDriverRoles"): ("StringEquals", "ecs-tasks.amazonaws.com"),
    ("DriverTaskRole", "PassRolesToTasks"): ("StringEquals", "ecs-tasks.amazonaws.com"),
    # the ECS infrastructure role of a task's EBS volume (RunTask managedEBSVolume.roleArn)
    ("DriverTaskRole", "PassEbsVolumeRole"): ("StringEquals", "ecs.amazonaws.com"),
    # the instance role of managed instances, to EC2 when ECS launches them: ec2.amazonaws.com, and
    # ec2.amazonaws.com.cn in China's partition (as AWS's AmazonECSInfrastructureRolePolicyForManagedInstances)
    ("ManagedInstancesInfrastructureRole", "PassInstanceRole"): ("StringLike", "ec2.*"),
}


def test_roles_are_pinned_to_this_stack(cfn_template):
    resources = Conditions(cfn_template, VARIANTS["own VPC, private subnets, everything on"]).resources()
    passing = set()
    for logical_id, _what, statement in statements(resources):
        actions = as_list(statement.get("Action", []))
        if "iam:PassRole" in actions:
            assert "*" not in as_list(statement["Resource"]), logical_id
            passing.add((logical_id, statement["Sid"]))
            operator, service = PASSED_TO[(logical_id, statement["Sid"])]
            assert statement["Condition"][operator]["iam:PassedToService"] == service
        if {"ecs:RunTask", "ecs:StopTask", "ecs:DescribeTasks", "ecs:ListTasks"} & set(actions):
            assert statement["Condition"]["ArnEquals"]["ecs:cluster"] == {"Fn::GetAtt": ["Cluster", "Arn"]}, (
                f"{logical_id} {statement['Sid']}: not pinned to this cluster"
            )
        if "ecs:TagResource" in actions:
            assert statement["Condition"]["StringEquals"]["ecs:CreateAction"] == "RunTask"
    assert passing == set(PASSED_TO)
    driver = resources["DriverTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    passed = next(s for s in driver if s["Sid"] == "PassRolesToTasks")["Resource"]
    assert passed == [{"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}, {"Ref": "TaskRoleArn"}]
    default_driver = Conditions(cfn_template).resources()["DriverTaskRole"]["Properties"]["Policies"][0]
    sids = [s["Sid"] for s in default_driver["PolicyDocument"]["Statement"]]
    assert "ReadS3Inputs" not in sids  # by default the runs bucket is the only readable bucket



# -- what AWS authorizes (tests/integration/iam_reference.py: the Service Authorization Reference) --

PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::StackName": "mwf"}


class Arns:
    """A policy's Resource as the ARN string CloudFormation makes of it (names stand in for the
    physical ids): Ref and Fn::GetAtt as each resource type documents them, parameters as given."""

    # Fn::GetAtt <resource>.Arn, per type (a log group's Arn ends with ":*", as CloudFormation's
    # AWS::Logs::LogGroup reference says)
    GETATT_ARN = {
        "AWS::Logs::LogGroup": "arn:aws:logs:us-east-1:123456789012:log-group:{name}:*",
        "AWS::S3::Bucket": "arn:aws:s3:::{name}",
        "AWS::ECS::Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/{name}",
        "AWS::IAM::Role": "arn:aws:iam::123456789012:role/{name}",
        "AWS::SQS::Queue": "arn:aws:sqs:us-east-1:123456789012:{name}",
        "AWS::Lambda::Function": "arn:aws:lambda:us-east-1:123456789012:function:{name}",
        "AWS::EFS::FileSystem": "arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/fs-{name}",
        "AWS::Events::Rule": "arn:aws:events:us-east-1:123456789012:rule/{name}",
    }
    # Ref <resource>, for types whose Ref is an ARN (others: the name)
    REF_ARN = {
        "AWS::StepFunctions::StateMachine": "arn:aws:states:us-east-1:123456789012:stateMachine:{name}",
        "AWS::SQS::Queue": "https://sqs.us-east-1.amazonaws.com/123456789012/{name}",
    }

    def __init__(self, resources: dict[str, dict[str, Any]], params: dict[str, Any]) -> None:
        self.resources, self.params = resources, params

    def ref(self, name: str) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        kind = self.resources[name]["Type"]
        return self.REF_ARN.get(kind, "{name}").format(name=name.lower())

    def getatt(self, name: str, attribute: str) -> str:
        kind = self.resources[name]["Type"]
        if attribute == "Arn":
            return self.GETATT_ARN[kind].format(name=name.lower())
        return name.lower()  # Name, QueueName, ...

    def render(self, node: Any) -> Any:
        if isinstance(node, str):
            return node
        if isinstance(node, list):
            return [self.render(n) for n in node]
        (fn, arg), = node.items()
        if fn == "Ref":
            return self.ref(arg)
        if fn == "Fn::GetAtt":
            return self.getatt(*arg)
        if fn == "Fn::Sub":
            def one(m: re.Match[str]) -> str:
                name, _, attribute = m.group(1).partition(".")
                return self.getatt(name, attribute) if attribute else str(self.ref(name))
            return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", one, arg)
        raise AssertionError(f"cannot render {node}")

    def resources_of(self, statement: dict[str, Any]) -> list[str]:
        out = []
        for item in as_list(statement.get("Resource", [])):
            rendered = self.render(item)
            out.extend(as_list(rendered))
        return out


def authorization_problems(logical_id: str, statement: dict[str, Any], arns: Arns) -> list[str]:
    """What AWS would not honour in ``statement`` as written, per iam_reference."""
    where = f"{logical_id} {statement.get('Sid', '')}"
    actions = as_list(statement.get("Action", []))
    problems = []
    if any("*" in a for a in actions):  # "s3:*" in a Deny: any key of the service is fine
        service = actions[0].split(":")[0]
        allowed = iam_reference.SERVICE_CONDITION_KEYS.get(service, set())
        for key in condition_keys_of(statement):
            if not key.lower().startswith("aws:") and not iam_reference.key_matches(key, allowed):
                problems.append(f"{where}: condition key {key} is not a key of {service}")
        return problems
    unknown = [a for a in actions if a not in iam_reference.ACTIONS]
    if unknown:
        return [f"{where}: {unknown} not in iam_reference.ACTIONS (look them up in the Service Authorization Reference)"]
    resources = arns.resources_of(statement)
    if resources and resources != ["*"]:
        typed = {}
        for arn in resources:
            kind = iam_reference.resource_type_of(arn)
            if kind is None:
                problems.append(f"{where}: {arn} has the shape of no ARN the reference defines")
            typed[arn] = kind
        for action in actions:
            service, entry = action.split(":")[0], iam_reference.ACTIONS[action]
            if not entry.resource_types:
                problems.append(f"{where}: {action} supports no resource-level permissions: grant it on \"*\" ({entry.page})")
                continue
            if not any(typed[a] and typed[a][0] == service and typed[a][1] in entry.resource_types for a in resources):
                problems.append(
                    f"{where}: {action} authorizes {entry.resource_types} ARNs, the statement names none ({entry.page})"
                )
        for arn, kind in typed.items():
            if kind and not any(
                a.split(":")[0] == kind[0] and kind[1] in iam_reference.ACTIONS[a].resource_types for a in actions
            ):
                problems.append(f"{where}: {arn} ({kind[1]}) is authorized by none of {actions}")
    for key in condition_keys_of(statement):
        if key.lower().startswith("aws:"):
            continue
        for action in actions:
            if not iam_reference.key_matches(key, iam_reference.condition_keys(action)):
                problems.append(f"{where}: {action} carries no condition key {key} ({iam_reference.ACTIONS[action].page})")
    return problems


def condition_keys_of(statement: dict[str, Any]) -> list[str]:
    return [key for block in statement.get("Condition", {}).values() for key in block]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_statement_is_one_aws_honours(cfn_template, variant):
    """Each action is granted on ARNs of a type it supports (or on "*" when it supports none),
    and conditioned only on keys it carries, as the Service Authorization Reference says."""
    conditions = Conditions(cfn_template, VARIANTS[variant])
    resources = conditions.resources()
    arns = Arns(resources, conditions.params)
    problems = []
    checked = 0
    for logical_id, what, statement in statements(resources):
        if what == "trust":
            continue
        problems += authorization_problems(logical_id, statement, arns)
        checked += 1
    assert checked > 50
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "statement, problem",
    [
        # RegisterTaskDefinition on a family without its revision: not a task-definition ARN
        (
            {"Action": "ecs:RegisterTaskDefinition", "Resource": "arn:aws:ecs:us-east-1:123456789012:task-definition/mwf-task-*"},
            "has the shape of no ARN",
        ),
        # DescribeTaskDefinition supports no resource-level permissions
        (
            {"Action": "ecs:DescribeTaskDefinition", "Resource": "arn:aws:ecs:us-east-1:123456789012:task-definition/mwf-task-*:*"},
            "supports no resource-level permissions",
        ),
        # ListTasks authorizes container instances, not tasks
        ({"Action": "ecs:ListTasks", "Resource": "arn:aws:ecs:us-east-1:123456789012:task/c/*"}, "authorizes ('container-instance',)"),
        # log writes authorize log streams: the bare log group ARN grants nothing
        (
            {"Action": "logs:PutLogEvents", "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:g"},
            "authorizes ('log-stream',)",
        ),
        ({"Action": "states:SendTaskHeartbeat", "Resource": "arn:aws:states:us-east-1:123456789012:stateMachine:m"}, "supports no resource"),
        # RunTask carries no ecs:CreateAction (TagResource does)
        (
            {
                "Action": "ecs:RunTask", "Resource": "arn:aws:ecs:us-east-1:123456789012:task-definition/f:*",
                "Condition": {"StringEquals": {"ecs:CreateAction": "RunTask"}},
            },
            "carries no condition key ecs:CreateAction",
        ),
        ({"Action": "ecs:UpdateService", "Resource": "*"}, "not in iam_reference.ACTIONS"),
        # only resource types AWS keeps in its own accounts may be named in any account
        (
            {"Action": "ec2:DeleteVolume", "Resource": "arn:aws:ec2:us-east-1:*:volume/*"},
            "has the shape of no ARN",
        ),
    ],
)
def test_statements_aws_would_not_honour_are_refused(cfn_template, statement, problem):
    """The check above finds each kind of statement AWS ignores (what it protects against)."""
    conditions = Conditions(cfn_template)
    arns = Arns(conditions.resources(), conditions.params)
    found = authorization_problems("Role", dict(statement, Effect="Allow"), arns)
    assert any(problem in p for p in found), found


LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
XRAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}  # Powertools Tracer
# What each component's code calls (boto3 operation -> IAM action), and nothing else.
ROLE_ACTIONS = {
    # pipeline/start.py + validate.py + snapshot.py: head_object/get_object (inputs.json at its
    # VersionId: s3:GetObjectVersion), copy_object (GetObject + PutObject), list_objects_v2,
    # put_object, delete_object (a stale error.json, a rejected copy), start_execution,
    # list_object_versions (an inputs.json copied onto itself)
    "SubmitRole": LOGS | XRAY | {
        "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:ListBucketVersions", "s3:PutObject", "s3:DeleteObject",
        "states:StartExecution", "sqs:SendMessage",
    },
    # functions/api.py: pipeline/start.py (as above; client-tokens/ records; a rejected request's
    # copy deleted), manage.py: list/describe (s3), cancel (stop_execution, the run's tasks, the
    # run-finished event); WES's task logs as text (get_log_events)
    "ApiRole": LOGS | XRAY | {
        "s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:DeleteObject", "states:StartExecution", "states:StopExecution",
        "ecs:ListTasks", "ecs:DescribeTasks", "ecs:StopTask", "events:PutEvents", "logs:GetLogEvents",
    },
    # pipeline/launch.py: run_task (with tags, roles of the task definition), status.json, stop_task of a cancelled run's driver,
    "LaunchDriverRole": LOGS | XRAY | {
        "ecs:RunTask", "ecs:TagResource", "iam:PassRole", "s3:GetObject", "s3:PutObject", "s3:ListBucket", "ecs:StopTask",
        "ecs:ListTasks", "ecs:DescribeTasks",
        "s3:DeleteObject",  # a driver slot it took and could not name in the run's status (launch.take_a_slot)
        # how many drivers may run at once (launch.slot_count)
        "servicequotas:GetServiceQuota", "servicequotas:GetAWSDefaultServiceQuota",
    },
    # pipeline/driver_outcome.py: get_object, send_task_success/failure; stopping a dead driver's tasks
    "DriverStoppedRole": LOGS | XRAY | {
        "s3:GetObject", "s3:ListBucket", "states:SendTaskSuccess", "states:SendTaskFailure",
        "ecs:ListTasks", "ecs:DescribeTasks", "ecs:StopTask", "sqs:SendMessage",
        "elasticfilesystem:DescribeAccessPoints", "elasticfilesystem:DeleteAccessPoint",
        # a cancelled run's driver slot given back and its leftovers' gc task scheduled (driver_outcome.ended_without_finalize)
        "s3:DeleteObject", "scheduler:CreateSchedule", "iam:PassRole",
    },
    # pipeline/finalize.py: outputs.json/error.json/status.json, the run-finished event, stopping what still runs,
    # the run's own access point a dead driver left, the gc task's schedule (gc_task.schedule: its role passed),
    "FinalizeRole": LOGS | XRAY | {
        "s3:GetObject", "s3:PutObject", "s3:ListBucket", "events:PutEvents", "ecs:ListTasks", "ecs:DescribeTasks", "ecs:StopTask",
        "elasticfilesystem:DescribeAccessPoints", "elasticfilesystem:DeleteAccessPoint",
        "scheduler:CreateSchedule", "iam:PassRole",
        "s3:DeleteObject",  # its driver slot given back (pipeline/driver_slots.py)
        "sqs:SendMessage",  # an execution's end event it could not finalize (finalize.execution_ended)
    },
    # EventBridge Scheduler, running the gc task when a schedule falls due (gc_task.schedule_request)
    "GcSchedulerRole": {"ecs:RunTask", "iam:PassRole"},
    # pipeline/timeout.py: outputs.json/error.json/status.json, stopping the run's driver and tasks
    "RunTimedOutRole": LOGS | XRAY | {
        "s3:GetObject", "s3:PutObject", "s3:ListBucket", "ecs:ListTasks", "ecs:DescribeTasks", "ecs:StopTask",
    },
    # statemachine/run.asl.json: lambda:invoke (and its execution log delivery)
    "StateMachineRole": {"lambda:InvokeFunction"} | {
        f"logs:{a}" for a in (
            "CreateLogDelivery", "GetLogDelivery", "UpdateLogDelivery", "DeleteLogDelivery",
            "ListLogDeliveries", "PutResourcePolicy", "DescribeResourcePolicies", "DescribeLogGroups",
        )
    },
    # driver.py + backend/fargate.py: one RunTask per WDL task, the shared DescribeTasks poller,
    # StopTask on cancel (ListTasks for the orphan sweeper), task definitions per image, s3 staging,
    # lifecycle.Heartbeat: SendTaskHeartbeat
    "DriverTaskRole": {
        "states:SendTaskHeartbeat",
        "ecs:RunTask", "ecs:DescribeTasks", "ecs:StopTask", "ecs:ListTasks", "ecs:TagResource",
        "ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition", "ecs:DeregisterTaskDefinition",
        "ecs:DeleteTaskDefinitions", "iam:PassRole",
        "s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:AbortMultipartUpload",
        "elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite", "elasticfilesystem:ClientRootAccess",
        # each run's own access point (backend/fargate.py run_volume)
        "elasticfilesystem:CreateAccessPoint", "elasticfilesystem:TagResource",
        "elasticfilesystem:DescribeAccessPoints", "elasticfilesystem:DeleteAccessPoint",
        # backend/launcher.py: the account's whole vCPU quota, once a task meets it
        "servicequotas:GetServiceQuota",
    },
    # ECS itself: image pulls and awslogs
    "TaskExecutionRole": LOGS | {
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage",
    },
    # ECS itself: a task's EBS volume (AmazonECSInfrastructureRolePolicyForVolumes, narrowed)
    "EbsVolumeRole": {
        "ec2:CreateVolume", "ec2:CreateTags", "ec2:DescribeVolumes", "ec2:DescribeAvailabilityZones", "ec2:DescribeInstances",
        "ec2:AttachVolume", "ec2:DetachVolume", "ec2:DeleteVolume",
    },
}
# ... and with ManagedInstances / ImageCache enabled, besides
ROLE_ACTIONS_BEYOND_FARGATE = {
    # pulls through the cache create the cached repository and import the image
    "TaskExecutionRole": {"ecr:BatchImportUpstreamImage", "ecr:CreateRepository"},
    # ECS itself: launching and terminating managed instances (AmazonECSInfrastructureRolePolicyForManagedInstances, narrowed)
    "ManagedInstancesInfrastructureRole": {
        "ec2:CreateLaunchTemplate", "ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate", "ec2:CreateFleet",
        "ec2:RunInstances", "ec2:CreateTags", "iam:PassRole", "iam:CreateServiceLinkedRole",
        "ec2:DescribeInstances", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplates", "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeAvailabilityZones", "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeCapacityReservations",
    },
    # the ECS agent on a managed instance (AmazonECSInstanceRolePolicyForManagedInstances, narrowed)
    "ManagedInstancesInstanceRole": {
        "ecs:DiscoverPollEndpoint", "ecs:RegisterContainerInstance", "ecs:SubmitAttachmentStateChanges",
        "ecs:SubmitTaskStateChange", "ecs:Poll", "ecs:StartTelemetrySession", "ecs:PutSystemLogEvents",
    },
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_role_may_do_what_its_code_calls_and_no_more(cfn_template, variant):
    resources = Conditions(cfn_template, VARIANTS[variant]).resources()
    granted: dict[str, set[str]] = {}
    for logical_id, what, statement in statements(resources):
        if what != "trust" and resources[logical_id]["Type"] == "AWS::IAM::Role" and statement["Effect"] == "Allow":
            granted.setdefault(logical_id, set()).update(as_list(statement["Action"]))
    expected = {role: set(actions) for role, actions in ROLE_ACTIONS.items()}
    if VARIANTS[variant].get("ReadableKmsKeyArns"):  # the readers of ReadableS3Arns, with SSE-KMS objects
        for role in ("DriverTaskRole", "SubmitRole", "ApiRole"):
            expected[role] = expected[role] | {"kms:Decrypt"}
    if VARIANTS[variant].get("ManagedInstances") == "Enabled":
        for role, actions in ROLE_ACTIONS_BEYOND_FARGATE.items():
            expected[role] = expected.get(role, set()) | actions
    assert granted == expected


def test_the_functions_that_stop_a_runs_tasks_may_take_the_minutes_thousands_take(cfn_template):
    """StopTask goes one task at a time, at ECS's API rate (about 20 a second): a run with
    thousands of tasks running needs minutes, past the 60 s every function gets by default."""
    resources = Conditions(cfn_template).resources()
    for name in ("DriverStoppedFunction", "FinalizeFunction", "RunTimedOutFunction"):
        assert resources[name]["Properties"]["Timeout"] == 900, name


def test_a_dropped_submission_has_the_minutes_a_large_one_takes(cfn_template):
    """The submit step of an S3 drop checks every s3:// input and copies the workflow's folder;
    nothing waits on it (an asynchronous invocation), and one out of time writes no error.json
    and is invoked again: it gets Lambda's 15 minutes, where the API (29 s at API Gateway) keeps 60 s."""
    resources = Conditions(cfn_template).resources()
    assert resources["SubmitFunction"]["Properties"]["Timeout"] == 900
    assert resources["ApiFunction"]["Properties"]["Timeout"] == 60


def test_each_function_has_its_own_role_and_log_group(cfn_template):
    resources = Conditions(cfn_template).resources()
    functions = {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    assert len(functions) == 6
    roles = {f["Role"]["Fn::GetAtt"][0] for f in functions.values()}
    groups = {f["LoggingConfig"]["LogGroup"]["Ref"] for f in functions.values()}
    assert len(roles) == len(groups) == 6
    for group in groups:
        assert resources[group]["Type"] == "AWS::Logs::LogGroup"


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_function_is_given_every_variable_its_settings_model_requires(cfn_template, variant):
    """A handler reads its own model (module attribute SETTINGS, pipeline/settings.py), every field
    required: the function's environment (its own Variables merged with the Globals') names each
    one, and none is empty once the template's conditions are decided."""
    import importlib

    resources = Conditions(cfn_template, VARIANTS[variant]).resources()
    functions = {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    checked = set()
    for logical_id, function in functions.items():
        module = importlib.import_module(function["Handler"].rsplit(".", 1)[0])
        given = function["Environment"]["Variables"]
        assert module.SETTINGS.variables() <= set(given), (logical_id, module.SETTINGS.variables() - set(given))
        assert [v for v in module.SETTINGS.variables() if given[v] in ("", [])] == [], logical_id
        assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"} <= set(given)  # (observability.py)
        checked.add(module.__name__)
    assert checked == {"inputs_dropped", "api", "launch_driver", "driver_stopped", "finalize", "run_timed_out"}


# -- zero idle cost -------------------------------------------------------------------------------


def hourly_billed(resources: dict[str, dict[str, Any]]) -> list[str]:
    found = []
    for logical_id, resource in resources.items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind.startswith(HOURLY_BILLED_PREFIXES) or HOURLY_BILLED.get(kind, lambda p: False)(props):
            found.append(f"{logical_id} ({kind})")
    return found


def test_default_stack_bills_nothing_by_the_hour(cfn_template):
    resources = Conditions(cfn_template).resources()
    assert hourly_billed(resources) == []
    # the network it creates instead of a NAT gateway: public subnets in two AZs, a free S3 endpoint
    kinds = [r["Type"] for r in resources.values()]
    assert kinds.count("AWS::EC2::Subnet") == 2
    azs = [resources[s]["Properties"]["AvailabilityZone"] for s in ("PublicSubnetA", "PublicSubnetB")]
    assert azs[0] != azs[1]
    assert resources["S3GatewayEndpoint"]["Properties"]["VpcEndpointType"] == "Gateway"
    assert resources["DefaultRoute"]["Properties"]["GatewayId"] == {"Ref": "InternetGateway"}
    assert resources["FileSystem"]["Properties"]["ThroughputMode"] == "elastic"
    # the only fixed monthly charge: two alarms (0.10 USD each)
    monthly = sorted(k for k, r in resources.items() if r["Type"] in MONTHLY_BILLED)
    assert monthly == ["DeadLetterAlarm", "RunsFailedAlarm"]


def test_hourly_billed_resources_only_when_asked(cfn_template):
    """The walk does find hourly-billed resources: the InterfaceEndpoints switch adds six."""
    endpoints = ("EcrApiEndpoint", "EcrDockerEndpoint", "EcsEndpoint", "EfsEndpoint", "LogsEndpoint", "StatesEndpoint")
    resources = Conditions(cfn_template, {"InterfaceEndpoints": "true"}).resources()
    assert sorted(hourly_billed(resources)) == [f"{name} (AWS::EC2::VPCEndpoint)" for name in endpoints]
    # managed instances are container instances: they register through ecs-agent and ecs-telemetry too
    resources = Conditions(cfn_template, {"InterfaceEndpoints": "true", "ManagedInstances": "Enabled"}).resources()
    assert sorted(hourly_billed(resources)) == [
        f"{name} (AWS::EC2::VPCEndpoint)" for name in sorted(endpoints + ("EcsAgentEndpoint", "EcsTelemetryEndpoint"))
    ]
    services = {resources[n]["Properties"]["ServiceName"]["Fn::Sub"] for n in ("EcsAgentEndpoint", "EcsTelemetryEndpoint")}
    assert services == {"com.amazonaws.${AWS::Region}.ecs-agent", "com.amazonaws.${AWS::Region}.ecs-telemetry"}


def test_private_subnets_without_a_nat_reach_every_service_the_driver_calls(cfn_template):
    """With InterfaceEndpoints=true (private subnets, no NAT), each AWS service the driver's role
    may call has an endpoint in the VPC (S3 through the gateway endpoint; iam:PassRole is no
    call): a service without one is out of the driver's reach, as EFS's API (its run's access
    point) and Step Functions' (its heartbeats) were."""
    resources = Conditions(cfn_template, {"InterfaceEndpoints": "true", "VpcId": "vpc-1", "SubnetIds": "subnet-a,subnet-b",
                                          "AssignPublicIp": "DISABLED", "RouteTableIds": "rtb-1"}).resources()
    called = {
        action.split(":", 1)[0]
        for logical_id, _, document in policy_documents({"DriverTaskRole": resources["DriverTaskRole"]})
        for statement in document["Statement"] if statement.get("Effect") == "Allow" and "Action" in statement
        for action in as_list(statement["Action"])
    } - {"sts"}  # (the trust policy's sts:AssumeRole is ECS's, not the driver's)
    # S3 (ECR's image layers, the runs bucket) through the gateway endpoint, which a rule requires
    # with InterfaceEndpoints (its route tables)
    assert "S3GatewayEndpoint" in resources
    rule = cfn_template["Rules"]["InterfaceEndpointsNeedAnS3Route"]
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Contains": [{"Ref": "RouteTableIds"}, ""]}]}
    reachable = {"iam", "s3"} | {
        r["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1]
        for r in resources.values() if r["Type"] == "AWS::EC2::VPCEndpoint" and r["Properties"]["VpcEndpointType"] == "Interface"
    }
    assert {"elasticfilesystem", "states", "ecs"} <= called
    # Service Quotas is asked only to word an error (a task larger than the whole vCPU quota):
    # unanswered within seconds (aws.LOOKUP_CONFIG), the task waits as it did before
    best_effort = {"servicequotas"}
    assert called - reachable - best_effort == set()


def test_tasks_get_public_ips_and_no_inbound_rules(cfn_template):
    resources = Conditions(cfn_template).resources()
    task_sg = resources["TaskSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in task_sg
    assert not any(r["Type"] == "AWS::EC2::SecurityGroupIngress" for r in resources.values())
    efs_ingress = resources["EfsSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert efs_ingress == [
        {
            "IpProtocol": "tcp", "FromPort": 2049, "ToPort": 2049,
            "SourceSecurityGroupId": {"Ref": "TaskSecurityGroup"}, "Description": "NFS (TLS) from Fargate tasks",
        }
    ]
    env = resources["SubmitFunction"]["Properties"]["Environment"]["Variables"]
    assert env["DRIVER_ASSIGN_PUBLIC_IP"] == "ENABLED"
    driver_env = {
        e["Name"]: e["Value"]
        for e in resources["DriverTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]
    }
    assert driver_env["MINIWDL__AWS_FARGATE__ASSIGN_PUBLIC_IP"] == "ENABLED"
    assert driver_env["MINIWDL__AWS_FARGATE__SUBNETS"] == {"Fn::Sub": "${PublicSubnetA},${PublicSubnetB}"}


def test_a_runs_own_miniwdl_cfg_cannot_change_what_its_cost_is_priced_at_or_how_often_its_budget_is_checked(cfn_template, tmp_path, monkeypatch):
    """The budget's prices and its checks are the stack's: set in the driver's environment, which
    miniwdl reads over any cfg file (the bundle's own miniwdl.cfg could otherwise price a run at
    nothing and pass any budget)."""
    import logging

    from WDL.runtime import config as wdl_config

    from miniwdl_fargate import config

    env = driver_env(Conditions(cfn_template).resources())
    assert env["MINIWDL__AWS_FARGATE__PRICES"] == {"Ref": "Prices"} and env["MINIWDL__AWS_FARGATE__BUDGET_CHECK_SECONDS"] == {"Ref": "BudgetCheckSeconds"}
    assert cfn_template["Parameters"]["BudgetCheckSeconds"]["Default"] == 5
    bundled = tmp_path / "miniwdl.cfg"
    bundled.write_text('[aws_fargate]\nprices = {"FARGATE": {"vcpu_hour": 0, "gb_hour": 0}}\nbudget_check_seconds = 86400\n')
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__PRICES", "")  # (the parameter's default)
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__BUDGET_CHECK_SECONDS", "5")
    cfg = wdl_config.Loader(logging.getLogger("test-prices"), filenames=[str(bundled)])
    assert config.option(cfg, "prices").table["FARGATE"]["vcpu_hour"] > 0
    assert config.FargateSettings.from_cfg(cfg).budget_check_seconds == 5


def test_how_long_a_driver_waits_to_try_a_runtask_again_is_the_stacks(cfn_template):
    """LaunchRetrySeconds reaches the driver as ``[aws_fargate] launch_retry_delay``, with the
    packaged default, and a run's own miniwdl.cfg may not set it (it paces how hard the run presses
    the account's shared RunTask and vCPU quotas)."""
    from miniwdl_fargate import config

    env = driver_env(Conditions(cfn_template).resources())
    assert env["MINIWDL__AWS_FARGATE__LAUNCH_RETRY_DELAY"] == {"Ref": "LaunchRetrySeconds"}
    parameter = cfn_template["Parameters"]["LaunchRetrySeconds"]
    assert float(parameter["Default"]) == float(config._defaults()["launch_retry_delay"]) == 1
    problem = config.cfg_problem("[aws_fargate]\nlaunch_retry_delay = 0.01\n", "s3://b/runs/x/miniwdl.cfg", run=True)
    assert problem is not None and problem.startswith("[aws_fargate] launch_retry_delay: a run's miniwdl.cfg may not set it")


def test_every_setting_the_driver_is_given_is_one_its_configuration_reads(cfn_template, monkeypatch, caplog):
    """The driver's container has its settings as ``MINIWDL__<SECTION>__<OPTION>`` variables: each
    is an option of miniwdl or of ``[aws_fargate]`` (so a cfg file sets it as well), and the
    aws_fargate backend reads every ``[aws_fargate]`` one, so miniwdl's "unused environment"
    warning (every MINIWDL_* variable its configuration did not read) is in no run's log."""
    import configparser
    import logging
    import os

    from WDL.runtime import config as wdl_config

    from miniwdl_fargate import config

    container = Conditions(cfn_template).resources()["DriverTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    names = [e["Name"] for e in container["Environment"]]
    assert [n for n in names if n.startswith("MINIWDL") and not n.startswith("MINIWDL__")] == []
    ours = [n for n in names if n.startswith("MINIWDL__AWS_FARGATE__")]
    assert "MINIWDL__AWS_FARGATE__STATUS_INTERVAL" in ours
    for key in [k for k in os.environ if k.startswith("MINIWDL")]:
        monkeypatch.delenv(key)
    defaults = configparser.ConfigParser()
    defaults.read_string(config.default_cfg_text())
    for name in ours:  # (each set to its default: a value its option parses)
        monkeypatch.setenv(name, defaults[config.SECTION][name.split("__")[2].lower()])
    cfg = wdl_config.Loader(logging.getLogger("test-driver-env"), filenames=[])
    for name in ours:
        config.option(cfg, name.split("__")[2].lower())  # (each parses as its option)
    config.FargateSettings.from_cfg(cfg)
    with caplog.at_level(logging.WARNING, logger="test-driver-env"):
        cfg.log_unused_options()
    assert [r.getMessage() for r in caplog.records if "unused" in r.getMessage()] == []


def test_readable_buckets_with_kms_keys_and_other_accounts_ecr_are_granted_only_when_named(cfn_template):
    """ReadableKmsKeyArns: Decrypt with those keys, through S3 only (in any region), for each role reading
    ReadableS3Arns; PullableEcrRepositoryArns: image pulls from those repositories (a cross-account
    pull needs this account's allow too). Neither without the parameter."""
    on = Conditions(cfn_template, VARIANTS["own VPC, private subnets, everything on"]).resources()
    off = Conditions(cfn_template).resources()
    for resources, named in ((on, True), (off, False)):
        found = {(logical_id, s.get("Sid")): s for logical_id, _, s in statements(resources)}
        for role in ("DriverTaskRole", "SubmitRole", "ApiRole"):
            decrypt = found.get((role, "DecryptReadableInputs"))
            assert (decrypt is not None) == named, role
            if named:
                assert decrypt["Condition"] == {"StringLike": {"kms:ViaService": {"Fn::Sub": "s3.*.${AWS::URLSuffix}"}}}
                assert decrypt["Resource"] == {"Ref": "ReadableKmsKeyArns"}
        pull = found.get(("TaskExecutionRole", "PullFromOtherAccountsEcr"))
        assert (pull is not None) == named
        if named:
            assert pull["Resource"] == {"Ref": "PullableEcrRepositoryArns"}


# -- encryption, TLS, events, API -----------------------------------------------------------------


def test_storage_is_private_encrypted_and_tls_only(cfn_template):
    resources = Conditions(cfn_template).resources()
    bucket = resources["RunsBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    assert {r["Id"] for r in bucket["LifecycleConfiguration"]["Rules"]} == {
        "expire-noncurrent-versions", "abort-incomplete-uploads", "expire-gc-reports", "expire-call-cache", "expire-client-tokens",
        "expire-call-cache-noncurrent",
    }
    # `miniwdl-fargate gc` reports (gc/) and the call cache (cache/, CallCacheDays) expire: run results never do
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert (rules["expire-gc-reports"]["Prefix"], rules["expire-gc-reports"]["ExpirationInDays"]) == ("gc/", 30)
    # an API request's client token: one small object per request, kept 30 days (retries come within minutes)
    assert (rules["expire-client-tokens"]["Prefix"], rules["expire-client-tokens"]["ExpirationInDays"]) == ("client-tokens/", 30)
    cache = rules["expire-call-cache"]
    assert (cache["Prefix"], cache["Status"], cache["ExpirationInDays"]) == ("cache/", "Enabled", {"Ref": "CallCacheDays"})
    # an expired or rewritten entry's noncurrent version goes the next day (the shorter of the two rules
    # applies), CallCacheDays 0 or not
    noncurrent = rules["expire-call-cache-noncurrent"]
    assert (noncurrent["Prefix"], noncurrent["Status"], noncurrent["NoncurrentVersionExpiration"]) == ("cache/", "Enabled", {"NoncurrentDays": 1})
    assert cfn_template["Parameters"]["CallCacheDays"]["Default"] == 90
    kept = {r["Id"]: r for r in Conditions(cfn_template, {"CallCacheDays": "0"}).resources()["RunsBucket"]["Properties"][
        "LifecycleConfiguration"]["Rules"]}["expire-call-cache"]
    assert (kept["Status"], kept["ExpirationInDays"]) == ("Disabled", 1)  # 0: kept until deleted
    denies = resources["RunsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert {"Bool": {"aws:SecureTransport": "false"}} in [d["Condition"] for d in denies if d["Effect"] == "Deny"]
    efs = resources["FileSystem"]["Properties"]
    assert efs["Encrypted"] is True
    efs_deny = [s for s in efs["FileSystemPolicy"]["Statement"] if s["Effect"] == "Deny"]
    assert efs_deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    volume = resources["DriverTaskDefinition"]["Properties"]["Volumes"][0]["EFSVolumeConfiguration"]
    assert volume["TransitEncryption"] == "ENABLED"
    assert volume["AuthorizationConfig"] == {"AccessPointId": {"Ref": "AccessPoint"}, "IAM": "ENABLED"}
    assert {resources[m]["Properties"]["SubnetId"]["Ref"] for m in ("MountTargetA", "MountTargetB")} == {
        "PublicSubnetA", "PublicSubnetB",
    }


def test_the_access_point_user_is_not_root_so_read_only_inputs_hold(cfn_template):
    """Every NFS operation through the access point is done as its POSIX user; as root it would
    ignore the modes that keep tasks from writing their input files. It is the driver image's
    own user, and owns the root directory it creates."""
    access_point = Conditions(cfn_template).resources()["AccessPoint"]["Properties"]
    assert access_point["PosixUser"] == {"Uid": "1000", "Gid": "1000"}
    creation = access_point["RootDirectory"]["CreationInfo"]
    assert (creation["OwnerUid"], creation["OwnerGid"]) == ("1000", "1000")
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--uid 1000" in dockerfile and "USER driver" in dockerfile


def test_event_targets_have_a_dead_letter_queue_and_alarms_watch_it(cfn_template):
    resources = Conditions(cfn_template).resources()
    rules = {k: r for k, r in resources.items() if r["Type"] == "AWS::Events::Rule"}
    assert set(rules) == {"SubmitFunctionInputsUploaded", "DriverStoppedFunctionDriverStopped", "FinalizeFunctionExecutionEnded"}
    for logical_id, rule in rules.items():
        for target in rule["Properties"]["Targets"]:
            assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}, logical_id
    queue_policy = resources["DeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert {a["Fn::GetAtt"][0] for a in queue_policy["Condition"]["ArnEquals"]["aws:SourceArn"]} == set(rules)
    # asynchronously invoked functions also send what they failed on there
    for function in ("SubmitFunction", "DriverStoppedFunction", "FinalizeFunction"):
        assert resources[function]["Properties"]["DeadLetterConfig"]["TargetArn"] == {
            "Fn::GetAtt": ["DeadLetterQueue", "Arn"]
        }
    alarms = {r["Properties"]["MetricName"]: r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms["ExecutionsFailed"]["Dimensions"][0]["Value"] == {"Ref": "RunStateMachine"}
    assert alarms["ApproximateNumberOfMessagesVisible"]["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["DeadLetterQueue", "QueueName"]
    }


def test_a_run_whose_execution_ends_without_its_finalize_step_is_finalized_from_its_end_event(cfn_template):
    """The execution's end events of this stack's state machine that no finalize step recorded
    (stopped from outside, failed or timed out) reach the finalize function; its successes and
    other state machines' ends do not."""
    resources = Conditions(cfn_template).resources()
    pattern = resources["FinalizeFunctionExecutionEnded"]["Properties"]["EventPattern"]
    assert pattern == {
        "source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"stateMachineArn": [{"Ref": "RunStateMachine"}], "status": ["ABORTED", "FAILED", "TIMED_OUT"]},
    }
    assert resources["FinalizeFunctionExecutionEnded"]["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["FinalizeFunction", "Arn"]}


def test_api_requires_sigv4_validates_and_throttles(cfn_template):
    resources = Conditions(cfn_template).resources()
    body = resources["RunsApi"]["Properties"]["Body"]
    methods = [m for path in body["paths"].values() for m in path.values()]
    assert methods and all(m["security"] == [{"AWS_IAM": []}] for m in methods)
    # the gateway checks the body of POST /runs against the model; the function validates every
    # request (path and query parameters included) as docs/openapi.json says
    assert body["paths"]["/runs"]["post"]["x-amazon-apigateway-request-validator"] == "body-only"
    assert {(p, v) for p, ops in body["paths"].items() for v in ops} == {
        ("/runs", "post"), ("/runs", "get"), ("/runs/{run_id}", "get"), ("/runs/{run_id}", "delete"),
        ("/runs/{run_id}/resume", "post"),
        ("/ga4gh/wes/v1/service-info", "get"), ("/ga4gh/wes/v1/runs", "post"), ("/ga4gh/wes/v1/runs", "get"),
        ("/ga4gh/wes/v1/runs/{run_id}", "get"), ("/ga4gh/wes/v1/runs/{run_id}/status", "get"),
        ("/ga4gh/wes/v1/runs/{run_id}/cancel", "post"), ("/ga4gh/wes/v1/runs/{run_id}/tasks", "get"),
        ("/ga4gh/wes/v1/runs/{run_id}/tasks/{task_id}", "get"), ("/ga4gh/wes/v1/runs/{run_id}/tasks/{task_id}/logs", "get"),
    }
    # the gateway serves what the function documents (docs/openapi.json), no more, no less
    documented = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text())
    assert {(p, v) for p, ops in body["paths"].items() for v in ops} == {(p, v) for p, ops in documented["paths"].items() for v in ops}
    # a WES RunRequest in multipart/form-data reaches the function base64-encoded (SAM's "~1" is "/")
    assert body["x-amazon-apigateway-binary-media-types"] == ["multipart/form-data"]
    assert body["components"]["securitySchemes"]["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    stage = next(r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage")
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRate"}
    assert stage["MethodSettings"][0]["ThrottlingBurstLimit"] == {"Ref": "ApiThrottleBurst"}


def test_api_model_mirrors_the_submit_function(cfn_template):
    """The gateway rejects what the function would reject (and unknown fields), never more."""
    from miniwdl_fargate import runs
    from api import RunRequest

    schema = cfn_template["Resources"]["RunsApi"]["Properties"]["Body"]["components"]["schemas"]["runrequest"]
    assert set(schema["properties"]) == set(RunRequest.model_fields)
    assert set(schema["required"]) == {n for n, f in RunRequest.model_fields.items() if f.is_required()}
    assert schema["properties"]["name"]["pattern"] == runs.NAME_RE.pattern
    assert schema["additionalProperties"] is False


def test_state_machine_logs_and_every_log_group_expires(cfn_template):
    resources = Conditions(cfn_template).resources()
    machine = resources["RunStateMachine"]["Properties"]
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["LoggingConfiguration"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"] == {
        "Fn::GetAtt": ["StateMachineLogGroup", "Arn"]
    }
    groups = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert len(groups) == 9  # driver, tasks, state machine, six functions
    assert all(g["RetentionInDays"] == {"Ref": "LogRetentionDays"} for g in groups)


def test_outputs_do_not_share_names_with_parameters(cfn_template):
    """`sam build` (SAM CLI's intrinsic resolver) crashes on an Output named like a Parameter,
    though cfn-lint and `sam validate --lint` accept it."""
    assert not set(cfn_template["Outputs"]) & set(cfn_template["Parameters"])
    assert {"BucketName", "ApiUrl", "StateMachineArn", "ClusterName", "FileSystemId"} <= set(cfn_template["Outputs"])


def test_checkov_skips_are_justified():
    text = TEMPLATE.read_text()
    skips = re.findall(r"- id: (CKV\S+)\n\s+comment: (.*)", text)
    assert len(skips) == text.count("- id: CKV")
    for check, comment in skips:
        assert len(comment.split()) >= 6, f"{check}: say why it is skipped"


# -- deployed into moto ---------------------------------------------------------------------------


@pytest.fixture
def moto_cfn(moto_aws):
    cfn.install()
    fixes.find_in_map_number_keys()  # (ManagedInstancesMaxMemoryGiB's GiB -> MiB mapping)
    return aws.client("cloudformation")


def test_moto_still_finds_no_mapping_key_for_a_number_parameter():
    """Why fixes.find_in_map_number_keys: when this fails, moto looks Number parameters up as
    strings itself; drop the fix."""
    from moto.cloudformation import parsing

    own = patching.unpatched("find_in_map_number_keys", parsing, "clean_json")
    resources_map = {"GiB": {"512": {"MiB": 524288}}, "ManagedInstancesMaxMemoryGiB": 512}  # (moto's cast)
    with pytest.raises(KeyError):
        own({"Fn::FindInMap": ["GiB", {"Ref": "ManagedInstancesMaxMemoryGiB"}, "MiB"]}, resources_map)


def deploy(parameters: dict[str, str]) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """(transformed template, logical id -> physical id, outputs) of a stack created in moto."""
    template = transform(parameters)
    cfn = aws.client("cloudformation")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfn.create_stack(
            StackName="mwf",
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
    # moto warns about, and leaves out, resource types its CloudFormation cannot create
    assert not [str(w.message) for w in caught if "Tried to parse" in str(w.message)]
    described = cfn.describe_stacks(StackName="mwf")["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    summaries = cfn.list_stack_resources(StackName="mwf")["StackResourceSummaries"]
    created = {s["LogicalResourceId"]: s for s in summaries if s["LogicalResourceId"]}
    expected = Conditions(template, parameters).resources()
    assert set(created) == set(expected)
    for logical_id, summary in created.items():
        assert summary["ResourceStatus"] == "CREATE_COMPLETE"
        assert summary["ResourceType"] == expected[logical_id]["Type"]
    physical = {k: s["PhysicalResourceId"] for k, s in created.items()}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    return template, physical, outputs


# moto keeps no physical id for these; the test looks them up through their APIs instead
NO_PHYSICAL_ID_IN_MOTO = {"AWS::Lambda::Permission", "AWS::Lambda::LayerVersion"}


def test_default_stack_comes_up_in_moto(moto_cfn):
    template, physical, outputs = deploy({})
    types = {k: r["Type"] for k, r in template["Resources"].items()}
    for logical_id, physical_id in physical.items():
        assert physical_id or types[logical_id] in NO_PHYSICAL_ID_IN_MOTO, f"{logical_id} has no physical id"
    assert set(outputs) >= {"BucketName", "ApiUrl", "StateMachineArn", "ClusterName", "FileSystemId"}

    ec2 = aws.client("ec2")
    vpc = ec2.describe_vpcs(VpcIds=[physical["Vpc"]])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.192.0.0/16"
    subnets = ec2.describe_subnets(SubnetIds=outputs["TaskSubnetIds"].split(","))["Subnets"]
    assert {s["VpcId"] for s in subnets} == {physical["Vpc"]}
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    assert ec2.describe_nat_gateways()["NatGateways"] == []
    endpoints = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    assert [(e["VpcEndpointType"], e["ServiceName"]) for e in endpoints] == [("Gateway", "com.amazonaws.us-east-1.s3")]

    s3 = aws.client("s3")
    bucket = outputs["BucketName"]
    assert s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    # (moto does not render EventBridgeConfiguration back; tests/local shows S3 events starting runs)

    efs = aws.client("efs").describe_file_systems(FileSystemId=outputs["FileSystemId"])["FileSystems"][0]
    assert efs["Encrypted"] and efs["ThroughputMode"] == "elastic"
    mount_targets = aws.client("efs").describe_mount_targets(FileSystemId=outputs["FileSystemId"])["MountTargets"]
    assert sorted(m["SubnetId"] for m in mount_targets) == sorted(outputs["TaskSubnetIds"].split(","))

    cluster = aws.client("ecs").describe_clusters(clusters=[outputs["ClusterName"]])["clusters"][0]
    assert set(cluster["capacityProviders"]) == {"FARGATE", "FARGATE_SPOT"}

    alarms = aws.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert sorted(a["MetricName"] for a in alarms) == ["ApproximateNumberOfMessagesVisible", "ExecutionsFailed"]
    sqs = aws.client("sqs")
    policy = sqs.get_queue_attributes(QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["Policy"])
    assert "events.amazonaws.com" in policy["Attributes"]["Policy"]

    apigw = aws.client("apigateway")
    api_id = outputs["ApiUrl"].split("//")[1].split(".")[0]
    assert apigw.get_stage(restApiId=api_id, stageName="v1")["tracingEnabled"] is True
    assert apigw.get_deployments(restApiId=api_id)["items"]
    lam = aws.client("lambda")
    assert lam.list_layers()["Layers"]
    for function in ("SubmitFunction", "DriverStoppedFunction", "FinalizeFunction"):
        assert json.loads(lam.get_policy(FunctionName=physical[function])["Policy"])["Statement"]

    roles = aws.client("iam").list_roles()["Roles"]
    assert len([r for r in roles if r["RoleName"].startswith("mwf-")]) == 11  # (EbsVolumeRole, GcSchedulerRole: always)
    # the gc task's schedules go in the stack's own group (deleted with it)
    groups = aws.client("scheduler").list_schedule_groups()["ScheduleGroups"]
    assert physical["GcScheduleGroup"] == outputs["GcScheduleGroupName"] in [g["Name"] for g in groups]


def test_own_vpc_stack_comes_up_in_moto(moto_cfn):
    ec2 = aws.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][:2]
    route_table = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"][0]
    parameters = dict(
        VARIANTS["own VPC, private subnets, everything on"],
        VpcId=vpc,
        SubnetIds=",".join(s["SubnetId"] for s in subnets),
        RouteTableIds=route_table["RouteTableId"],
    )
    _template, physical, outputs = deploy(parameters)
    assert "Vpc" not in physical and "AlarmTopic" in physical
    assert outputs["TaskSubnetIds"] == parameters["SubnetIds"]
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"]
    assert sorted((e["VpcEndpointType"], e["ServiceName"].rsplit(".", 2)[-2:][-1]) for e in endpoints) == [
        ("Gateway", "s3"), ("Interface", "api"), ("Interface", "dkr"), ("Interface", "ecs"),
        ("Interface", "ecs-agent"), ("Interface", "ecs-telemetry"),  # (managed instances are on)
        ("Interface", "elasticfilesystem"), ("Interface", "logs"), ("Interface", "states"),
    ]
    task_definition = aws.client("ecs").describe_task_definition(taskDefinition=outputs["DriverTaskDefinitionArn"])
    # its size, as ECS reports it (the driver's row of the run report comes from it)
    assert (task_definition["taskDefinition"]["cpu"], task_definition["taskDefinition"]["memory"]) == ("1024", "2048")
    env = {e["name"]: e["value"] for e in task_definition["taskDefinition"]["containerDefinitions"][0]["environment"]}
    assert env["MINIWDL__AWS_FARGATE__ASSIGN_PUBLIC_IP"] == "DISABLED"
    assert env["MINIWDL__AWS_FARGATE__TASK_ROLE"] == parameters["TaskRoleArn"]
    assert env["MINIWDL__AWS_FARGATE__SUBNETS"] == parameters["SubnetIds"]


def test_moto_cloudformation_still_drops_a_task_definitions_cpu(moto_aws):
    """Why cfn.RESOURCE_TYPES replaces moto's creation of AWS::ECS::TaskDefinition; when this
    fails, moto keeps Cpu itself: drop its entry."""
    from moto.ecs.models import TaskDefinition

    create = cfn.moto_create("AWS::ECS::TaskDefinition")
    template = {"Properties": {"Family": "f", "Cpu": "1024", "Memory": "2048", "ContainerDefinitions": [{"Name": "c", "Image": "i"}]}}
    task_definition = create(TaskDefinition, "F", template, DEFAULT_ACCOUNT_ID, stack.REGION)
    assert task_definition.memory == "2048" and not task_definition.cpu



# moto's own CloudFormation creations that cfn.RESOURCE_TYPES' creations replace: when one of these
# fails, moto does it itself; drop that entry (and the test)


def test_moto_cloudformation_still_ignores_a_rest_apis_body(moto_aws):
    from moto.apigateway.models import RestAPI

    body = {"openapi": "3.0.1", "info": {"title": "t", "version": "1"},
            "paths": {"/runs": {"get": {"x-amazon-apigateway-integration": {"type": "mock"}}}}}
    api = cfn.moto_create("AWS::ApiGateway::RestApi")(RestAPI, "Api", {"Properties": {"Name": "api", "Body": body}}, DEFAULT_ACCOUNT_ID, stack.REGION)
    assert [r.path_part for r in api.resources.values()] == ["/"]  # no /runs


def test_moto_cloudformation_still_ignores_a_buckets_eventbridge_and_public_access_block(moto_aws):
    from moto.s3.models import FakeBucket

    props = {"NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
             "PublicAccessBlockConfiguration": {"BlockPublicAcls": True}}
    bucket = cfn.moto_create("AWS::S3::Bucket")(FakeBucket, "bucket-x", {"Properties": props}, DEFAULT_ACCOUNT_ID, stack.REGION)
    assert bucket.notification_configuration is None and bucket.public_access_block is None


def test_moto_cloudformation_still_ignores_a_vpcs_dns_hostnames(moto_aws):
    from moto.ec2.models.vpcs import VPC

    props = {"CidrBlock": "10.0.0.0/16", "EnableDnsHostnames": True, "EnableDnsSupport": True}
    vpc = cfn.moto_create("AWS::EC2::VPC")(VPC, "V", {"Properties": props}, DEFAULT_ACCOUNT_ID, stack.REGION)
    assert not vpc.enable_dns_hostnames


# the types cfn.RESOURCE_TYPES' calls make models of: when this fails for one, moto has a model of it


@pytest.mark.parametrize("cfn_type", sorted(t for t, fix in cfn.RESOURCE_TYPES.items() if fix.call))
def test_moto_cloudformation_still_has_no_model_of_a_missing_type(cfn_type):
    """When this fails for a type, moto's CloudFormation has a model of it: drop its entry from
    cfn.RESOURCE_TYPES (moto's model is then the one the template's resource is made by)."""
    import importlib

    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel

    # (a model of the type would be in its service's module, which moto's server imports
    # where CloudFormation's parsing may not)
    importlib.import_module(f"moto.{cfn_type.split('::')[1].lower()}.models")
    own = {model.cloudformation_type() for model in parsing.get_model_list() if model not in cfn._models}
    assert CloudFormationModel.__subclasses__() == parsing.get_model_list()  # (moto's own lookup of its models)
    assert cfn_type not in own


# moto's models that cfn.RESOURCE_TYPES gives an id or attributes: when one of these fails,
# moto has it itself; drop its entry of cfn.RESOURCE_TYPES (and the test)


def test_moto_cloudformation_still_has_no_getatt_of_an_efs_file_system():
    from moto.efs.models import FileSystem

    own = patching.unpatched("cfn AWS::EFS::FileSystem", FileSystem, "get_cfn_attribute")
    assert own is None  # (moto's CloudFormationModel has none either: Fn::GetAtt fails)


def test_moto_cloudformation_still_has_no_physical_id_of_an_efs_access_point():
    from moto.efs.models import AccessPoint

    assert patching.unpatched("cfn AWS::EFS::AccessPoint", AccessPoint, "physical_resource_id") is None


def test_moto_cloudformation_still_has_no_physical_id_of_an_api_deployment():
    from moto.apigateway.models import Deployment

    assert patching.unpatched("cfn AWS::ApiGateway::Deployment", Deployment, "physical_resource_id") is None


def test_moto_cloudformation_still_ignores_a_clusters_capacity_providers_and_settings(moto_aws):
    from moto.ecs.models import Cluster

    props = {"ClusterName": "c1", "CapacityProviders": ["FARGATE", "FARGATE_SPOT"],
             "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]}
    cluster = cfn.moto_create("AWS::ECS::Cluster")(Cluster, "C", {"Properties": props}, DEFAULT_ACCOUNT_ID, stack.REGION)
    assert not cluster.capacity_providers
    assert cluster.settings == [{"name": "containerInsights", "value": "disabled"}]


def test_moto_cloudformation_still_ignores_a_state_machines_definition_in_s3(moto_aws):
    from moto.stepfunctions.models import StateMachine

    aws.client("s3").create_bucket(Bucket="bucket-x")
    aws.client("s3").put_object(Bucket="bucket-x", Key="k", Body=b'{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}')
    props = {"StateMachineName": "s", "DefinitionS3Location": {"Bucket": "bucket-x", "Key": "k"},
             "RoleArn": f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/r"}
    machine = cfn.moto_create("AWS::StepFunctions::StateMachine")(StateMachine, "S", {"Properties": props}, DEFAULT_ACCOUNT_ID, stack.REGION)
    assert machine.definition == ""

# -- a run ends: stop signals, heartbeat, maximum duration ---------------------------------------


def test_driver_runs_under_an_init_process_with_the_longest_stop_timeout(cfn_template):
    """The driver is not PID 1 (an init forwards ECS's SIGTERM and reaps), and has 120 s after it."""
    container = Conditions(cfn_template).resources()["DriverTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert container["LinuxParameters"]["InitProcessEnabled"] is True
    assert container["StopTimeout"] == 120


def test_the_wait_for_the_driver_has_a_heartbeat_and_the_runs_maximum_duration():
    asl = json.loads((REPO / "statemachine" / "run.asl.json").read_text())
    wait = asl["States"]["LaunchDriver"]
    assert "TimeoutSeconds" not in wait and "HeartbeatSeconds" not in wait
    assert wait["TimeoutSecondsPath"] == "$.max_run_seconds"
    assert wait["HeartbeatSecondsPath"] == "$.heartbeat_seconds"
    assert {"max_run_seconds", "heartbeat_seconds"} <= set(runs.RunRecord.model_fields)
    first = wait["Catch"][0]
    assert first["ErrorEquals"] == ["States.Timeout", "States.HeartbeatTimeout"]
    assert first["Next"] == "StopTimedOutRun"
    stop = asl["States"]["StopTimedOutRun"]
    assert stop["Parameters"]["FunctionName"] == "${RunTimedOutFunctionArn}"
    assert asl["States"][stop["Next"]]["Choices"][0]["Next"] == "RecordSuccess"
    assert asl["States"][stop["Next"]]["Default"] == "RecordFailure"
    assert stop["Catch"][0]["Next"] == "RecordFailure"


def test_every_lambda_call_of_the_state_machine_retries_what_the_lambda_service_may_answer():
    """Step Functions' "Handle transient Lambda service exceptions": ServiceException,
    AWSLambdaException, SdkClientException and ClientExecutionTimeoutException; throttling
    (TooManyRequestsException, an account's concurrency shared with everything else) for minutes,
    not seconds; and the idempotent finalize and timeout functions once more after Lambda.Unknown
    (a function that ran out of time or memory), rather than ending the run unfinalized."""
    asl = json.loads((REPO / "statemachine" / "run.asl.json").read_text())
    service = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException", "Lambda.ClientExecutionTimeoutException"}
    for name, state in asl["States"].items():
        if not str(state.get("Resource", "")).startswith("arn:aws:states:::lambda:invoke"):
            continue
        by_error = {error: r for r in state["Retry"] for error in r["ErrorEquals"]}
        assert service <= set(by_error), name
        throttled = by_error["Lambda.TooManyRequestsException"]
        waited = sum(throttled["IntervalSeconds"] * throttled["BackoffRate"] ** i for i in range(throttled["MaxAttempts"]))
        assert waited >= 120, (name, waited)
        if state["Parameters"]["FunctionName"] in ("${FinalizeFunctionArn}", "${RunTimedOutFunctionArn}"):
            assert by_error["Lambda.Unknown"]["MaxAttempts"] >= 1, name


def test_a_run_waiting_for_a_driver_slot_waits_days_within_an_executions_history(cfn_template):
    """DriverSlotUnavailable (pipeline/launch.py: as many runs have drivers as the stack lets) is
    tried again soon at first, then every minute (no run waiting long is looked at less often), for days,
    in a step of its own (LaunchDriver's retry counts stay whole for the launch), and no longer
    than an execution's 25,000 history events hold (3 an attempt of a Lambda task:
    https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html)."""
    asl = json.loads((REPO / "statemachine" / "run.asl.json").read_text())
    assert asl["StartAt"] == "TakeDriverSlot" and asl["States"]["TakeDriverSlot"]["Next"] == "LaunchDriver"
    take = asl["States"]["TakeDriverSlot"]
    assert take["Parameters"]["Payload"] == {"run.$": "$", "step": "take_slot"} and take["ResultPath"] is None
    (slot,) = [r for r in take["Retry"] if "DriverSlotUnavailable" in r["ErrorEquals"]]
    waits = [min(slot["IntervalSeconds"] * slot["BackoffRate"] ** min(i, 64), slot["MaxDelaySeconds"]) for i in range(slot["MaxAttempts"])]
    assert waits[0] <= 5 and max(waits) == 60 and sum(waits[:8]) < 4 * 60  # (soon at first, then every minute)
    assert sum(waits) >= 3 * 24 * 3600 and slot["MaxAttempts"] * 3 < 20_000
    assert take["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}]
    assert not [r for r in asl["States"]["LaunchDriver"]["Retry"] if "DriverSlotUnavailable" in r["ErrorEquals"]]
    env = Conditions(cfn_template).resources()["LaunchDriverFunction"]["Properties"]["Environment"]["Variables"]
    assert (env["MAX_CONCURRENT_RUNS"], env["DRIVER_CPU"]) == ({"Ref": "MaxConcurrentRuns"}, {"Ref": "DriverCpu"})


def test_functions_get_the_limits_from_the_parameters(cfn_template):
    for logical_id, function in Conditions(cfn_template).resources().items():
        if function["Type"] == "AWS::Lambda::Function":
            env = function["Properties"]["Environment"]["Variables"]
            assert env["MAX_RUN_HOURS"] == {"Ref": "MaxRunHours"}, logical_id
            assert env["DRIVER_HEARTBEAT_SECONDS"] == {"Ref": "DriverHeartbeatSeconds"}, logical_id
    params = cfn_template["Parameters"]
    assert float(params["MaxRunHours"]["Default"]) == runs.DEFAULT_MAX_RUN_HOURS
    assert int(params["DriverHeartbeatSeconds"]["Default"]) == runs.DEFAULT_HEARTBEAT_SECONDS
    # a run's limit leaves room in the execution's year (Step Functions' own maximum) for its
    # launch retries, stop and finalize: an execution that reaches the year ends uncaught
    assert float(params["MaxRunHours"]["MaxValue"]) == runs.MAX_RUN_HOURS_LIMIT <= 365 * 24 - 48


def test_the_driver_gets_max_tasks_per_run_from_the_parameter_with_the_backend_default(cfn_template):
    from miniwdl_fargate import config as backend_config

    driver = Conditions(cfn_template).resources()["DriverTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = {e["Name"]: e["Value"] for e in driver["Environment"]}
    assert env["MINIWDL__AWS_FARGATE__MAX_TASKS_PER_RUN"] == {"Ref": "MaxTasksPerRun"}
    param = cfn_template["Parameters"]["MaxTasksPerRun"]
    assert str(param["Default"]) == backend_config._defaults()["max_tasks_per_run"] and int(param["MinValue"]) == 1


def test_the_drivers_log_mode_is_said_not_left_to_the_accounts_default(cfn_template):
    """ECS's default awslogs mode is an account setting (non-blocking since June 2025): the
    driver's is said, non-blocking with a buffer far beyond its rate (it never waits on its own
    log); a WDL task's is blocking (test_fargate_backend)."""
    driver = Conditions(cfn_template).resources()["DriverTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    options = driver["LogConfiguration"]["Options"]
    assert (options["mode"], options["max-buffer-size"]) == ("non-blocking", "25m")


# -- beyond Fargate: managed instances, EBS scratch, the image cache --------------------------------

MANAGED_INSTANCES_RESOURCES = {
    "ManagedInstancesInfrastructureRole", "ManagedInstancesInstanceRole", "ManagedInstancesInstanceProfile",
    "ManagedInstancesCapacityProvider", "ManagedInstancesSpotCapacityProvider",
}
CACHE_RULES = {"EcrPublicCacheRule", "QuayCacheRule", "DockerHubCacheRule", "GitHubCacheRule"}
REGISTRY = "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}"


def driver_env(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    container = resources["DriverTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    return {e["Name"]: e["Value"] for e in container["Environment"]}


def test_by_default_nothing_runs_beyond_fargate_and_the_driver_gets_empty_settings(cfn_template):
    resources = Conditions(cfn_template).resources()
    assert not MANAGED_INSTANCES_RESOURCES & set(resources)
    assert not CACHE_RULES & set(resources)
    assert not [k for k, r in resources.items() if r["Type"] in ("AWS::ECS::CapacityProvider", "AWS::ECR::PullThroughCacheRule")]
    assert resources["Cluster"]["Properties"]["CapacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    env = driver_env(resources)
    assert env["MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_CAPACITY_PROVIDER"] == ""
    assert env["MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_SPOT_CAPACITY_PROVIDER"] == ""
    for limit in ("CPU", "MEMORY_GIB", "GPUS"):
        assert env[f"MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_MAX_{limit}"] == "0"
    assert env["MINIWDL__AWS_FARGATE__IMAGE_CACHE"] == ""
    # EBS scratch needs no switch: its role is IAM only
    assert env["MINIWDL__AWS_FARGATE__EBS_VOLUME_ROLE"] == {"Fn::GetAtt": ["EbsVolumeRole", "Arn"]}
    assert resources["EbsVolumeRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ecs.amazonaws.com"
    }
    functions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    for function in functions:
        variables = function["Environment"]["Variables"]
        assert [variables[f"MANAGED_INSTANCES_MAX_{limit}"] for limit in ("CPU", "MEMORY_GIB", "GPUS")] == ["0", "0", "0"]
        assert variables["EBS_SCRATCH"] == "true"
    assert not {"ManagedInstancesCapacityProviderName", "ManagedInstancesSpotCapacityProviderName"} & {
        k for k, o in cfn_template["Outputs"].items() if "Condition" not in o or Conditions(cfn_template).holds(o["Condition"])
    }


def test_managed_instances_two_providers_of_the_cluster_in_the_stacks_network(cfn_template):
    conditions = Conditions(cfn_template, {"ManagedInstances": "Enabled"})
    resources = conditions.resources()
    assert MANAGED_INSTANCES_RESOURCES <= set(resources)
    kinds = {}
    for name in ("ManagedInstancesCapacityProvider", "ManagedInstancesSpotCapacityProvider"):
        props = resources[name]["Properties"]
        assert props["ClusterName"] == {"Ref": "Cluster"}
        provider = props["ManagedInstancesProvider"]
        assert provider["InfrastructureRoleArn"] == {"Fn::GetAtt": ["ManagedInstancesInfrastructureRole", "Arn"]}
        assert 0 <= provider["InfrastructureOptimization"]["ScaleInAfter"] <= 300  # idle instances go within minutes
        launch = provider["InstanceLaunchTemplate"]
        kinds[name] = launch["CapacityOptionType"]
        assert launch["Ec2InstanceProfileArn"] == {"Fn::GetAtt": ["ManagedInstancesInstanceProfile", "Arn"]}
        assert launch["StorageConfiguration"] == {"StorageSizeGiB": {"Ref": "ManagedInstancesStorageGiB"}}  # no documented default
        assert launch["NetworkConfiguration"] == {
            "Subnets": [{"Ref": "PublicSubnetA"}, {"Ref": "PublicSubnetB"}], "SecurityGroups": [{"Ref": "TaskSecurityGroup"}],
        }
        requirements = launch["InstanceRequirements"]
        assert requirements["VCpuCount"]["Max"] == {"Ref": "ManagedInstancesMaxVCpu"}
        assert requirements["MemoryMiB"]["Max"] == {"Fn::FindInMap": ["GiB", {"Ref": "ManagedInstancesMaxMemoryGiB"}, "MiB"]}
        # no GPU kinds: no instance type with accelerators
        assert requirements["AcceleratorCount"] == {"Max": 0} and "AcceleratorNames" not in requirements
    assert kinds == {"ManagedInstancesCapacityProvider": "ON_DEMAND", "ManagedInstancesSpotCapacityProvider": "SPOT"}
    profile = resources["ManagedInstancesInstanceProfile"]["Properties"]
    assert profile["Roles"] == [{"Ref": "ManagedInstancesInstanceRole"}]
    # instances get a public IP from the created subnets (no NAT gateway); Fargate tasks ask in RunTask
    for subnet in ("PublicSubnetA", "PublicSubnetB"):
        assert resources[subnet]["Properties"]["MapPublicIpOnLaunch"] is True
        assert Conditions(cfn_template).resources()[subnet]["Properties"]["MapPublicIpOnLaunch"] is False
    env = driver_env(resources)
    assert env["MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_CAPACITY_PROVIDER"] == {"Ref": "ManagedInstancesCapacityProvider"}
    assert env["MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_SPOT_CAPACITY_PROVIDER"] == {"Ref": "ManagedInstancesSpotCapacityProvider"}
    assert env["MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_MAX_CPU"] == {"Ref": "ManagedInstancesMaxVCpu"}
    assert env["MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_MAX_MEMORY_GIB"] == {"Ref": "ManagedInstancesMaxMemoryGiB"}
    assert env["MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_MAX_GPUS"] == "0"  # no GPU kinds
    variables = resources["SubmitFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["MANAGED_INSTANCES_MAX_CPU"] == {"Ref": "ManagedInstancesMaxVCpu"}
    assert variables["MANAGED_INSTANCES_MAX_MEMORY_GIB"] == {"Ref": "ManagedInstancesMaxMemoryGiB"}
    assert variables["MANAGED_INSTANCES_MAX_GPUS"] == "0"
    outputs = {k for k, o in cfn_template["Outputs"].items() if "Condition" not in o or conditions.holds(o["Condition"])}
    assert {"ManagedInstancesCapacityProviderName", "ManagedInstancesSpotCapacityProviderName"} <= outputs
    # every memory size the parameter allows maps to MiB
    allowed = cfn_template["Parameters"]["ManagedInstancesMaxMemoryGiB"]["AllowedValues"]
    assert {str(v): {"MiB": int(v) * 1024} for v in allowed} == cfn_template["Mappings"]["GiB"]
    assert str(cfn_template["Parameters"]["ManagedInstancesMaxMemoryGiB"]["Default"]) in cfn_template["Mappings"]["GiB"]


GPU_PROVIDERS = ("ManagedInstancesGpuCapacityProvider", "ManagedInstancesGpuSpotCapacityProvider")
CPU_PROVIDERS = ("ManagedInstancesCapacityProvider", "ManagedInstancesSpotCapacityProvider")
GPU_ENV = {
    "MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_GPU_CAPACITY_PROVIDER": "ManagedInstancesGpuCapacityProvider",
    "MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_GPU_SPOT_CAPACITY_PROVIDER": "ManagedInstancesGpuSpotCapacityProvider",
}
GPU_OUTPUTS = {"ManagedInstancesGpuCapacityProviderName", "ManagedInstancesGpuSpotCapacityProviderName"}


def instance_requirements(resources: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return resources[name]["Properties"]["ManagedInstancesProvider"]["InstanceLaunchTemplate"]["InstanceRequirements"]


def conditional_outputs(cfn_template: dict[str, Any], conditions: "Conditions") -> set[str]:
    return {k for k, o in cfn_template["Outputs"].items() if "Condition" not in o or conditions.holds(o["Condition"])}


@pytest.mark.parametrize(
    "overrides",
    [{}, {"ManagedInstances": "Enabled"}, {"ManagedInstances": "Enabled", "ManagedInstancesGpuKinds": "t4", "ManagedInstancesMaxGpus": "1"},
     BEYOND_FARGATE],
)
def test_the_cpu_providers_never_allow_accelerators(cfn_template, overrides):
    """acceleratorNames reads "one of these must be on the instance type": on the CPU-only
    providers it would put every task beyond Fargate on a GPU instance. Max 0 excludes them."""
    resources = Conditions(cfn_template, overrides).resources()
    for name in CPU_PROVIDERS if overrides.get("ManagedInstances") == "Enabled" else ():
        requirements = instance_requirements(resources, name)
        assert requirements["AcceleratorCount"] == {"Max": 0}
        assert not {"AcceleratorNames", "AcceleratorTypes", "AcceleratorManufacturers"} & set(requirements)
    assert all(name in resources for name in CPU_PROVIDERS) == (overrides.get("ManagedInstances") == "Enabled")


@pytest.mark.parametrize(
    "overrides",
    [{}, {"ManagedInstances": "Enabled"}, {"ManagedInstancesGpuKinds": "t4", "ManagedInstancesMaxGpus": "1"}],
)
def test_no_gpu_providers_without_gpu_kinds_on_managed_instances(cfn_template, overrides):
    conditions = Conditions(cfn_template, overrides)
    resources = conditions.resources()
    assert not set(GPU_PROVIDERS) & set(resources)
    env = driver_env(resources)
    assert {name: env[name] for name in GPU_ENV} == dict.fromkeys(GPU_ENV, "")
    assert env["MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_MAX_GPUS"] == "0"
    assert not GPU_OUTPUTS & conditional_outputs(cfn_template, conditions)


def test_gpu_kinds_add_two_gpu_providers_up_to_the_gpu_limit(cfn_template):
    overrides = {"ManagedInstances": "Enabled", "ManagedInstancesGpuKinds": "t4,a10g", "ManagedInstancesMaxGpus": "4"}
    conditions = Conditions(cfn_template, overrides)
    resources = conditions.resources()
    kinds = {}
    for name in GPU_PROVIDERS:
        requirements = instance_requirements(resources, name)
        # every instance type has 1 to ManagedInstancesMaxGpus NVIDIA GPUs of the given kinds
        assert requirements["AcceleratorNames"] == {"Ref": "ManagedInstancesGpuKinds"}
        assert requirements["AcceleratorCount"] == {"Min": 1, "Max": {"Ref": "ManagedInstancesMaxGpus"}}
        assert (requirements["AcceleratorTypes"], requirements["AcceleratorManufacturers"]) == (["gpu"], ["nvidia"])
        kinds[name] = resources[name]["Properties"]["ManagedInstancesProvider"]["InstanceLaunchTemplate"]["CapacityOptionType"]
        # otherwise as its CPU-only twin: the cluster, roles, network, scale-in, vCPU and memory limits
        twin = CPU_PROVIDERS[GPU_PROVIDERS.index(name)]
        assert resources[name]["Properties"]["ClusterName"] == resources[twin]["Properties"]["ClusterName"] == {"Ref": "Cluster"}
        gpu, cpu = (resources[n]["Properties"]["ManagedInstancesProvider"] for n in (name, twin))
        for key in ("InfrastructureRoleArn", "PropagateTags", "InfrastructureOptimization"):
            assert gpu[key] == cpu[key]
        for key in ("CapacityOptionType", "Ec2InstanceProfileArn", "NetworkConfiguration"):
            assert gpu["InstanceLaunchTemplate"][key] == cpu["InstanceLaunchTemplate"][key]
        for key in ("VCpuCount", "MemoryMiB"):
            assert gpu["InstanceLaunchTemplate"]["InstanceRequirements"][key] == cpu["InstanceLaunchTemplate"]["InstanceRequirements"][key]
    assert kinds == {"ManagedInstancesGpuCapacityProvider": "ON_DEMAND", "ManagedInstancesGpuSpotCapacityProvider": "SPOT"}
    env = driver_env(resources)
    assert {name: env[name] for name in GPU_ENV} == {name: {"Ref": ref} for name, ref in GPU_ENV.items()}
    assert env["MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_MAX_GPUS"] == {"Ref": "ManagedInstancesMaxGpus"}
    assert GPU_OUTPUTS <= conditional_outputs(cfn_template, conditions)
    # GPUs without kinds, or kinds without GPUs, are refused before anything is created
    rules = cfn_template["Rules"]
    assert rules["GpuKindsNeedGpus"]["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ManagedInstancesMaxGpus"}, "0"]}]
    }
    assert rules["GpusNeedGpuKinds"]["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Contains": [{"Ref": "ManagedInstancesGpuKinds"}, ""]}]
    }
    assert "t4" in rules["GpuKindsNeedGpus"]["Assertions"][1]["Assert"]["Fn::EachMemberIn"][1]


@pytest.mark.parametrize(
    "overrides, rules, upstreams",
    [
        ({"ImageCache": "Enabled"}, {"EcrPublicCacheRule", "QuayCacheRule"}, ["public.ecr.aws", "quay.io"]),
        (
            {"ImageCache": "Enabled", "DockerHubCredentialArn": SECRET.format("docker-hub")},
            {"EcrPublicCacheRule", "QuayCacheRule", "DockerHubCacheRule"}, ["public.ecr.aws", "quay.io", "docker.io"],
        ),
        (
            {"ImageCache": "Enabled", "GitHubCredentialArn": SECRET.format("github")},
            {"EcrPublicCacheRule", "QuayCacheRule", "GitHubCacheRule"}, ["public.ecr.aws", "quay.io", "ghcr.io"],
        ),
        ({"DockerHubCredentialArn": SECRET.format("docker-hub")}, set(), []),  # (a credential alone enables nothing)
    ],
)
def test_image_cache_rules_only_as_configured(cfn_template, overrides, rules, upstreams):
    resources = Conditions(cfn_template, overrides).resources()
    found = {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::ECR::PullThroughCacheRule"}
    assert set(found) == rules
    prefixes = {props["EcrRepositoryPrefix"] for props in found.values()}
    # nothing grows for good: the repositories each rule's pulls make expire their images
    templates = {r["Properties"]["Prefix"]: r["Properties"] for r in resources.values() if r["Type"] == "AWS::ECR::RepositoryCreationTemplate"}
    assert set(templates) == prefixes
    for prefix, template in templates.items():
        assert template["AppliedFor"] == ["PULL_THROUGH_CACHE"], prefix
        (rule,) = json.loads(template["LifecyclePolicy"])["rules"]
        assert rule["action"] == {"type": "expire"} and rule["selection"]["tagStatus"] == "any", prefix
        assert (rule["selection"]["countType"], rule["selection"]["countUnit"], rule["selection"]["countNumber"]) == ("sinceImagePushed", "days", 30)
    for name, props in found.items():
        assert ("CredentialArn" in props) == (name in ("DockerHubCacheRule", "GitHubCacheRule")), name
    value = driver_env(resources)["MINIWDL__AWS_FARGATE__IMAGE_CACHE"]
    if not rules:
        assert value == ""
        return
    text, variables = value["Fn::Sub"]

    def optional(part: Any) -> str:  # "" or ",upstream=..." (a Fn::Sub of its own)
        return part["Fn::Sub"] if isinstance(part, dict) else part

    pairs = text.replace("${DockerHub}", optional(variables["DockerHub"])).replace(
        "${GitHub}", optional(variables["GitHub"])
    ).split(",")
    assert variables["Registry"] == {"Fn::Sub": REGISTRY}
    assert [p.split("=")[0] for p in pairs] == upstreams
    assert {p.split("=")[1].rsplit("/", 1)[1] for p in pairs} == prefixes
    assert all(p.split("=")[1].rsplit("/", 1)[0] in ("${Registry}", REGISTRY) for p in pairs)
    # the execution role may import through exactly these prefixes
    execution = resources["TaskExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    cached = next(s for s in execution if s.get("Sid") == "PullThroughTheImageCache")
    assert {r["Fn::Sub"].rsplit("/", 2)[1] for r in cached["Resource"]} == prefixes


@pytest.mark.parametrize("parameter", ["DockerHubCredentialArn", "GitHubCredentialArn"])
def test_credentials_must_be_secrets_named_for_the_pull_through_cache(cfn_template, parameter):
    pattern = re.compile(cfn_template["Parameters"][parameter]["AllowedPattern"])
    assert pattern.match("") and pattern.match(SECRET.format("mine"))
    assert not pattern.match("arn:aws:secretsmanager:us-east-1:123456789012:secret:docker-hub-AbCdEf")
    assert not pattern.match("arn:aws:iam::123456789012:role/ecr-pullthroughcache/x")


def test_beyond_fargate_bills_nothing_while_idle(cfn_template):
    """Capacity providers launch instances only for tasks; the roles, profile and cache rules
    cost nothing; no secret is created (the user brings one)."""
    resources = Conditions(cfn_template, BEYOND_FARGATE).resources()
    assert hourly_billed(resources) == []
    assert sorted(k for k, r in resources.items() if r["Type"] in MONTHLY_BILLED) == ["DeadLetterAlarm", "RunsFailedAlarm"]


def test_managed_instances_and_image_cache_stack_comes_up_in_moto(moto_cfn):
    _template, physical, outputs = deploy(dict(BEYOND_FARGATE))
    assert MANAGED_INSTANCES_RESOURCES | CACHE_RULES <= set(physical)
    ecs = aws.client("ecs")
    names = [outputs[f"ManagedInstances{kind}CapacityProviderName"] for kind in ("", "Spot", "Gpu", "GpuSpot")]
    providers = ecs.describe_capacity_providers(capacityProviders=names)["capacityProviders"]
    assert [p["name"] for p in providers] == names and len(set(names)) == 4
    assert [p["cluster"] for p in providers] == [outputs["ClusterName"]] * 4
    launches = [p["managedInstancesProvider"]["instanceLaunchTemplate"] for p in providers]
    assert [launch["capacityOptionType"] for launch in launches] == ["ON_DEMAND", "SPOT", "ON_DEMAND", "SPOT"]
    for launch in launches:
        assert launch["networkConfiguration"] == {
            "subnets": outputs["TaskSubnetIds"].split(","), "securityGroups": [outputs["TaskSecurityGroupId"]],
        }
        assert launch["instanceRequirements"]["memoryMiB"]["max"] == 512 * 1024
    # CPU-only providers: no accelerators; GPU providers: 1 to 4 of the given GPUs
    for launch in launches[:2]:
        assert launch["instanceRequirements"]["acceleratorCount"] == {"max": 0}
        assert "acceleratorNames" not in launch["instanceRequirements"]
    for launch in launches[2:]:
        assert launch["instanceRequirements"]["acceleratorNames"] == ["t4", "a10g"]
        assert launch["instanceRequirements"]["acceleratorCount"] == {"min": 1, "max": 4}
    definition = ecs.describe_task_definition(taskDefinition=outputs["DriverTaskDefinitionArn"])["taskDefinition"]
    env = {e["name"]: e["value"] for e in definition["containerDefinitions"][0]["environment"]}
    assert [env[f"MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_{kind}CAPACITY_PROVIDER"] for kind in ("", "SPOT_", "GPU_", "GPU_SPOT_")] == names
    assert (env["MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_MAX_CPU"], env["MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_MAX_MEMORY_GIB"],
            env["MINIWDL__AWS_FARGATE__MANAGED_INSTANCES_MAX_GPUS"]) == ("64", "512", "4")
    assert env["MINIWDL__AWS_FARGATE__EBS_VOLUME_ROLE"] == outputs["EbsVolumeRoleArn"]
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert env["MINIWDL__AWS_FARGATE__IMAGE_CACHE"] == ",".join([
        f"public.ecr.aws={registry}/ecr-public", f"quay.io={registry}/quay", f"docker.io={registry}/docker-hub",
        f"ghcr.io={registry}/github",
    ])
    profile = aws.client("iam").get_instance_profile(InstanceProfileName=physical["ManagedInstancesInstanceProfile"])
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [physical["ManagedInstancesInstanceRole"]]


def test_local_mode_deploys_with_parameters(moto_server, tmp_path):
    """What `miniwdl-fargate local up|run --parameter K=V` deploys: local mode's own parameters
    with the given ones over them, through moto's server as local mode does."""
    cfn.install()
    fixes.find_in_map_number_keys()
    local = stack.LocalStack(state_dir=str(tmp_path / "state"), parameters={"ManagedInstances": "Enabled", "ImageCache": "Enabled", "TaskPollSeconds": "0.5"})
    parameters = local.stack_parameters()
    assert parameters["DriverImage"] == "local/miniwdl-fargate-driver:latest"  # (local mode's own)
    assert (parameters["ManagedInstances"], parameters["TaskPollSeconds"]) == ("Enabled", "0.5")
    outputs = stack.deploy(TEMPLATE, "mwf-local", parameters, tmp_path)
    assert outputs["ManagedInstancesCapacityProviderName"] and outputs["ManagedInstancesSpotCapacityProviderName"]
    # local mode's short intervals reach its drivers
    definition = aws.client("ecs").describe_task_definition(taskDefinition=outputs["DriverTaskDefinitionArn"])["taskDefinition"]
    env = {e["name"]: e["value"] for e in definition["containerDefinitions"][0]["environment"]}
    assert (env["MINIWDL__AWS_FARGATE__BUDGET_CHECK_SECONDS"], env["MINIWDL__AWS_FARGATE__POLL_INTERVAL"]) == ("1", "0.5")
    assert env["MINIWDL__AWS_FARGATE__LAUNCH_RETRY_DELAY"] == "0.25"
    rules = aws.client("cloudformation").list_stack_resources(StackName="mwf-local")["StackResourceSummaries"]
    assert {r["LogicalResourceId"] for r in rules if r["ResourceType"] == "AWS::ECR::PullThroughCacheRule"} == {
        "EcrPublicCacheRule", "QuayCacheRule",
    }
    assert {r["LogicalResourceId"] for r in rules if r["ResourceType"] == "AWS::ECR::RepositoryCreationTemplate"} == {
        "EcrPublicCacheRepositories", "QuayCacheRepositories",
    }


def test_the_driver_gets_the_runs_limits_from_the_parameters_with_the_backend_defaults(cfn_template):
    """MaxRunCostUsd, MaxRunConcurrentTasks, MaxRunVCpus (0: none, the backend's defaults too) reach
    the driver as [aws_fargate] settings; the submit functions get MaxRunVCpus to refuse a task
    that could never run."""
    from miniwdl_fargate import config as backend_config

    env = driver_env(Conditions(cfn_template).resources())
    params = cfn_template["Parameters"]
    for parameter, setting in (
        ("MaxRunCostUsd", "max_cost_usd"), ("MaxRunConcurrentTasks", "max_concurrent_tasks"), ("MaxRunVCpus", "max_vcpus"),
    ):
        assert env[f"MINIWDL__AWS_FARGATE__{setting.upper()}"] == {"Ref": parameter}
        assert params[parameter]["Type"] == "Number"
        assert float(params[parameter]["Default"]) == float(backend_config._defaults()[setting]) == 0
        assert float(params[parameter]["MinValue"]) == 0
    groups = cfn_template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    limits_group = next(g for g in groups if g["Label"]["default"] == "Limits")["Parameters"]
    assert {"MaxRunCostUsd", "MaxRunConcurrentTasks", "MaxRunVCpus"} <= set(limits_group)
    for logical_id, function in Conditions(cfn_template).resources().items():
        if function["Type"] == "AWS::Lambda::Function":
            assert function["Properties"]["Environment"]["Variables"]["MAX_RUN_VCPUS"] == {"Ref": "MaxRunVCpus"}, logical_id

def test_failed_runs_are_kept_on_efs_as_the_stack_says_and_gc_can_reach_it(cfn_template):
    """KeepFailedRunDays reaches the driver as [aws_fargate] keep_failed_run_days; the stack says
    where `miniwdl-fargate gc` runs its task (the driver's network, public IP included), and the
    driver's role may write gc's report."""
    resources = Conditions(cfn_template).resources()
    driver_env = {
        e["Name"]: e["Value"]
        for e in resources["DriverTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]
    }
    assert driver_env["MINIWDL__AWS_FARGATE__KEEP_FAILED_RUN_DAYS"] == {"Ref": "KeepFailedRunDays"}
    days = cfn_template["Parameters"]["KeepFailedRunDays"]
    assert (days["Type"], days["Default"], days["MinValue"]) == ("Number", 3, 0)
    assert resources["DriverTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Name"] == driver_task.DRIVER_CONTAINER
    assert set(cfn_template["Outputs"]) >= {"DriverTaskDefinitionArn", "TaskSubnetIds", "TaskSecurityGroupId", "TaskAssignPublicIp"}
    statements = resources["DriverTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (write,) = [s for s in statements if s.get("Sid") == "WriteRunResults"]
    assert {"Fn::Sub": "${RunsBucket.Arn}/gc/*"} in write["Resource"]


def test_tasks_run_only_in_the_two_subnets_that_have_an_efs_mount_target(cfn_template):
    """The file system has a mount target in SubnetIds' first two subnets only (one per zone); a
    driver or task placed in a third subnet's zone cannot mount it ("Failed to resolve fs-...").
    Every use of SubnetIds but the rules' takes its first two (``Fn::Select`` 0 and 1)."""
    loose = []

    def walk(node, where, selected=False):
        if isinstance(node, dict):
            if node == {"Ref": "SubnetIds"} and not selected:
                loose.append(where)
            for key, value in node.items():
                walk(value, f"{where}.{key}", selected or key == "Fn::Select")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]", selected)

    for section in ("Resources", "Outputs"):
        walk(cfn_template[section], section)
    assert loose == []
    mounts = Conditions(cfn_template, {"VpcId": "vpc-1", "SubnetIds": "subnet-a,subnet-b,subnet-c"}).resources()
    assert sorted(r["Properties"]["SubnetId"]["Fn::Select"][0] for r in mounts.values()
                  if r["Type"] == "AWS::EFS::MountTarget") == [0, 1]


def test_api_gateways_own_answers_have_the_shape_of_the_functions_errors_for_either_client(cfn_template):
    """A refused signature, throttling, a body too large, a function too slow: API Gateway answers
    these itself, by default as {"message": ...}. The template's gateway responses give them the
    run API's ApiError (error, message, problems) and WES's ErrorResponse (msg, status_code) at
    once, since a template cannot tell the two APIs' paths apart. Each is filled here as local
    mode's gateway fills it (simple substitution, as API Gateway does)."""
    from miniwdl_fargate.local.gateway import OWN_ANSWERS, GatewayResponses

    (api,) = [r for r in cfn_template["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    responses = api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
    # IAM auth's refusals, throttling, and every answer local mode gives itself
    assert {"ACCESS_DENIED", "MISSING_AUTHENTICATION_TOKEN", "INVALID_SIGNATURE", "EXPIRED_TOKEN", "THROTTLED",
            "DEFAULT_4XX", "DEFAULT_5XX", *OWN_ANSWERS} <= set(responses)
    for kind, response in responses.items():
        template = response["responseTemplates"]["application/json"]
        filled = (template.replace("$context.error.messageString", json.dumps('a "quoted" message'))
                  .replace("$context.error.validationErrorString", 'a \\"quoted\\" detail'))
        assert "$context" not in filled, kind
        body = json.loads(filled)
        assert isinstance(body["error"], str) and isinstance(body["message"], str) and isinstance(body["problems"], list), kind
        assert isinstance(body["msg"], str), kind
        if kind.startswith("DEFAULT_"):
            assert "statusCode" not in response and "status_code" not in body  # (each keeps its own code)
        else:
            assert body["status_code"] == int(response["statusCode"]), kind
    for kind, (status, message, _) in OWN_ANSWERS.items():
        code, _, data = GatewayResponses(responses).answer(kind, "detail")
        body = json.loads(data)
        assert code == status == body["status_code"], kind
        assert message in body["msg"] or "detail" in body["msg"], kind


def evaluate_rule(rule: Any, parameters: dict[str, Any]) -> Any:
    """A CloudFormation Rules condition with these parameter values (Ref, Equals, Not, And, Or,
    Contains: those the template's rules use)."""
    if isinstance(rule, list):
        return [evaluate_rule(item, parameters) for item in rule]
    if not isinstance(rule, dict):
        return rule
    (name, args), = rule.items()
    if name == "Ref":
        return parameters[args]
    values = evaluate_rule(args, parameters)
    return {
        "Fn::Equals": lambda: str(values[0]) == str(values[1]),
        "Fn::Not": lambda: not values[0],
        "Fn::And": lambda: all(values),
        "Fn::Or": lambda: any(values),
        "Fn::Contains": lambda: values[1] in values[0],
    }[name]()


def test_the_driver_sizes_the_template_allows_are_fargates(cfn_template):
    """A DriverMemory that is no Fargate size for DriverCpu failed the first deploy (the driver's
    task definition) and rolled it back: a rule refuses it before anything is made, by the sizes
    the backend knows (``sizes.FARGATE_SIZES``)."""
    from miniwdl_fargate import sizes

    params = cfn_template["Parameters"]
    (assertion,) = cfn_template["Rules"]["DriverMemoryFitsDriverCpu"]["Assertions"]
    for cpu in params["DriverCpu"]["AllowedValues"]:
        for memory in range(512, 32 * 1024, 512):
            allowed = evaluate_rule(assertion["Assert"], {"DriverCpu": cpu, "DriverMemory": str(memory)})
            assert allowed == (memory in sizes.FARGATE_SIZES[int(cpu)]), (cpu, memory)
    assert evaluate_rule(assertion["Assert"], {"DriverCpu": params["DriverCpu"]["Default"], "DriverMemory": params["DriverMemory"]["Default"]})


def test_interface_endpoints_are_refused_without_a_vpc_of_your_own(cfn_template):
    rule = cfn_template["Rules"]["InterfaceEndpointsNeedYourVpc"]
    (assertion,) = rule["Assertions"]
    for endpoints, vpc, refused in (("true", "", True), ("true", "vpc-1", False), ("false", "", False)):
        given = {"InterfaceEndpoints": endpoints, "VpcId": vpc}
        assert (evaluate_rule(rule["RuleCondition"], given) and not evaluate_rule(assertion["Assert"], given)) == refused


@pytest.mark.parametrize("name, good, bad", [
    ("ReadableS3Arns", ["arn:aws:s3:::my-data", "arn:aws:s3:::my-data/*", "arn:aws-cn:s3:::logs-*/x/*", ""], ["my-data", "s3://my-data", "arn:aws:s3:::"]),
    ("ReadableKmsKeyArns", ["arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", ""],
     ["arn:aws:kms:us-east-1:123456789012:alias/my-key", "1234abcd-12ab-34cd-56ef-1234567890ab"]),
    ("PullableEcrRepositoryArns", ["arn:aws:ecr:us-east-1:111122223333:repository/pipelines/*", ""],
     ["111122223333.dkr.ecr.us-east-1.amazonaws.com/pipelines", "arn:aws:ecr:us-east-1:111122223333:pipelines"]),
])
def test_arn_parameters_take_arns_item_by_item(cfn_template, name, good, bad):
    """An item that is no ARN of its kind made a malformed IAM policy: the first deploy failed
    and rolled back. Each item is checked (a CommaDelimitedList's AllowedPattern is each item's)."""
    pattern = cfn_template["Parameters"][name]["AllowedPattern"]
    assert all(re.fullmatch(pattern, item) for item in good), name
    assert not any(re.fullmatch(pattern, item) for item in bad), name
    assert stack.parameter_problems(cfn_template, "template.yaml", {name: ",".join(good[:-1])}) == []
    assert stack.parameter_problems(cfn_template, "template.yaml", {name: ",".join([good[0], bad[0]])})
