"""CloudFormation as template.yaml needs it from moto, as one table (``RESOURCE_TYPES``: a
``CfnFix`` per resource type) applied by one helper (``_apply``). A fix is one of three kinds:
- ``call``: moto has no model of the type; the AWS API call behind the resource is made one;
- ``creation``: moto's model ignores properties the template sets; this creation replaces
  moto's (and may call moto's own through ``_moto_create``);
- ``attributes``: moto's model lacks the physical id or the ``Fn::GetAtt`` attributes.
Each names the test that fails once moto no longer needs it (for the types moto has no model of,
one test parametrized by type, ``MISSING_TEST``). Needs no local runtime: tests/integration
deploys the template into in-process moto with ``install()`` alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from .patching import check_version, moto_function, replace, unpatched

# -- calls: for a type moto has no model of, each does what the AWS API call behind it would ------


def _alarm(name: str, props: dict[str, Any], account_id: str, region: str, stack_id: str) -> str:
    # AWS::CloudWatch::Alarm -> PutMetricAlarm
    from moto.cloudwatch.models import cloudwatch_backends

    alarm_name = props.get("AlarmName") or f"{stack_id.split('/')[-2] if '/' in stack_id else 'stack'}-{name}"
    cloudwatch_backends[account_id][region].put_metric_alarm(
        name=alarm_name,
        namespace=props.get("Namespace"),
        metric_name=props.get("MetricName"),
        comparison_operator=props["ComparisonOperator"],
        evaluation_periods=int(props["EvaluationPeriods"]),
        period=int(props.get("Period", 60)),
        threshold=float(props["Threshold"]),
        statistic=props.get("Statistic"),
        description=props.get("AlarmDescription", ""),
        dimensions=list(props.get("Dimensions") or []),
        alarm_actions=list(props.get("AlarmActions") or []),
        treat_missing_data=props.get("TreatMissingData"),
    )
    return alarm_name


def _queue_policy(name: str, props: dict[str, Any], account_id: str, region: str, stack_id: str) -> str:
    # AWS::SQS::QueuePolicy -> SetQueueAttributes(Policy) on each queue (Queues are URLs)
    from moto.sqs.models import sqs_backends

    for url in props["Queues"]:
        sqs_backends[account_id][region].set_queue_attributes(
            url.rstrip("/").split("/")[-1], {"Policy": json.dumps(props["PolicyDocument"])}
        )
    return f"{name}-policy"


def _bucket_policy(name: str, props: dict[str, Any], account_id: str, region: str, stack_id: str) -> str:
    # AWS::S3::BucketPolicy: recorded, not enforced. moto evaluates bucket policies without their
    # Conditions, so the TLS-only Deny statements would deny every request.
    from moto.s3.models import s3_backends

    s3_backends[account_id]["aws"].get_bucket(props["Bucket"])  # the bucket must exist
    return props["Bucket"]


def _api_stage(name: str, props: dict[str, Any], account_id: str, region: str, stack_id: str) -> str:
    # AWS::ApiGateway::Stage -> CreateStage (SAM puts the stage in its own resource)
    from moto.apigateway.models import apigateway_backends

    apigateway_backends[account_id][region].create_stage(
        props["RestApiId"],
        props["StageName"],
        props["DeploymentId"],
        variables=props.get("Variables"),
        description=props.get("Description", ""),
        tracing_enabled=props.get("TracingEnabled") in (True, "true", "True"),
    )
    return props["StageName"]


def _api_shape(value: Any) -> Any:
    """CloudFormation's PascalCase properties as the API's camelCase members."""
    if isinstance(value, dict):
        return {k[0].lower() + k[1:]: _api_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_api_shape(v) for v in value]
    return value


def _capacity_provider(name: str, props: dict[str, Any], account_id: str, region: str, stack_id: str) -> str:
    # AWS::ECS::CapacityProvider -> CreateCapacityProvider. moto's provider knows Auto Scaling
    # groups only: a Managed Instances provider's configuration and cluster are kept on it as the
    # API has them (DescribeCapacityProviders answers with them). Ref: the provider's name.
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[account_id][region]
    cluster = props.get("ClusterName")
    if cluster is not None:
        backend._get_cluster(cluster)  # a provider of a cluster that does not exist is refused
    tags = [{"key": tag["Key"], "value": tag["Value"]} for tag in props.get("Tags") or []]
    provider = backend.create_capacity_provider(props.get("Name") or name, _api_shape(props.get("AutoScalingGroupProvider") or {}), tags)
    provider.cluster = cluster
    if "ManagedInstancesProvider" in props:
        provider.managed_instances_provider = _api_shape(props["ManagedInstancesProvider"])
        provider.auto_scaling_group_provider = None
    return provider.name


def _pull_through_cache_rule(name: str, props: dict[str, Any], account_id: str, region: str, stack_id: str) -> str:
    # AWS::ECR::PullThroughCacheRule: moto's ECR has no pull-through cache; the rule is recorded
    # (as the resource's properties) and never pulls. Ref: the repository prefix.
    return props["EcrRepositoryPrefix"]


def _repository_creation_template(name: str, props: dict[str, Any], account_id: str, region: str, stack_id: str) -> str:
    # AWS::ECR::RepositoryCreationTemplate: moto's ECR has none (and no pull-through cache to
    # make repositories with it); recorded as the resource's properties. Ref: the prefix.
    return props["Prefix"]


def _schedule_group(name: str, props: dict[str, Any], account_id: str, region: str, stack_id: str) -> str:
    # AWS::Scheduler::ScheduleGroup -> CreateScheduleGroup (a name CloudFormation makes when the
    # template gives none, as it does: the stack's name and the resource's). Ref: the name.
    from moto.scheduler.models import scheduler_backends

    stack = stack_id.split("/")[-2] if "/" in stack_id else "stack"
    group_name = props.get("Name") or f"{stack}-{name}"[:64]
    scheduler_backends[account_id][region].create_schedule_group(group_name, list(props.get("Tags") or []))
    return group_name


# -- creations: for properties moto's models ignore, each replaces moto's creation ---------------


def _state_machine(cls: Any, name: str, template: dict[str, Any], account_id: str, region: str, **kwargs: Any) -> Any:
    # AWS::StepFunctions::StateMachine: moto reads only DefinitionString, and creates the machine in
    # the backend that does not execute ASL even when execution is enabled. Support what `sam
    # package` produces (DefinitionS3Location, DefinitionSubstitutions) and create it where
    # StartExecution will find it. (Replaces moto's creation.)
    props = template["Properties"]
    from moto.stepfunctions.responses import get_backend
    from moto.stepfunctions.utils import cfn_to_api_tags

    definition = props.get("DefinitionString")
    location = props.get("DefinitionS3Location")
    if definition is None and location:
        from moto.s3.models import s3_backends

        definition = s3_backends[account_id]["aws"].get_object(location["Bucket"], location["Key"]).value.decode()
    if isinstance(definition, dict):
        definition = json.dumps(definition)
    for key, value in (props.get("DefinitionSubstitutions") or {}).items():
        definition = definition.replace("${" + key + "}", str(value))
    leftover = re.findall(r"\$\{[A-Za-z0-9_]+\}", definition or "")
    if leftover:
        raise ValueError(f"state machine {name}: unsubstituted placeholders {sorted(set(leftover))}")
    tags = cfn_to_api_tags(props.get("Tags", []))
    return get_backend(account_id, region).create_state_machine(
        props.get("StateMachineName", name), definition, props.get("RoleArn", ""), tags=tags
    )


def _rest_api(cls: Any, name: str, template: dict[str, Any], account_id: str, region: str, **kwargs: Any) -> Any:
    # AWS::ApiGateway::RestApi: moto ignores the Body (the OpenAPI document SAM generates), so the
    # API has no methods and its Deployment fails. Import the Body as PutRestApi would.
    props = template["Properties"]
    from moto.apigateway.models import apigateway_backends

    props.setdefault("Name", name)
    api = _moto_create("AWS::ApiGateway::RestApi")(cls, name, template, account_id, region, **kwargs)
    if isinstance(props.get("Body"), dict):
        apigateway_backends[account_id][region].put_rest_api(api.id, props["Body"], fail_on_warnings=False)
    return api


def _bucket(cls: Any, name: str, template: dict[str, Any], account_id: str, region: str, **kwargs: Any) -> Any:
    # AWS::S3::Bucket: moto ignores NotificationConfiguration.EventBridgeConfiguration, so no
    # "Object Created" event would ever reach EventBridge; it also ignores the public access block
    # and versioning, which the template tests read back.
    props = template["Properties"]
    from moto.s3.models import PublicAccessBlock

    bucket = _moto_create("AWS::S3::Bucket")(cls, name, template, account_id, region, **kwargs)
    notifications = props.get("NotificationConfiguration", {})
    if notifications.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled") in (True, "true", "True"):
        bucket.set_notification_configuration({"EventBridgeConfiguration": {}})
    block = props.get("PublicAccessBlockConfiguration")
    if block:
        bucket.public_access_block = PublicAccessBlock(
            *(str(block.get(k, False)).lower() for k in (
                "BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"
            ))
        )
    versioning = props.get("VersioningConfiguration", {}).get("Status")
    if versioning:
        bucket.versioning_status = versioning
    return bucket


def _vpc(cls: Any, name: str, template: dict[str, Any], account_id: str, region: str, **kwargs: Any) -> Any:
    # AWS::EC2::VPC: moto ignores EnableDnsSupport/EnableDnsHostnames, and its network interfaces
    # in a VPC without DNS hostnames break ECS DescribeTasks (no private_dns_name).
    props = template["Properties"]
    vpc = _moto_create("AWS::EC2::VPC")(cls, name, template, account_id, region, **kwargs)
    for prop, attribute in (("EnableDnsSupport", "enable_dns_support"), ("EnableDnsHostnames", "enable_dns_hostnames")):
        if prop in props:
            setattr(vpc, attribute, props[prop] in (True, "true", "True"))
    return vpc


def _cluster(cls: Any, name: str, template: dict[str, Any], account_id: str, region: str, **kwargs: Any) -> Any:
    # AWS::ECS::Cluster: moto creates the cluster by name only, ignoring its capacity providers
    # (FARGATE, FARGATE_SPOT), default strategy and settings (Container Insights).
    props = template["Properties"]
    from moto.ecs.models import ecs_backends

    def lower_keys(items: Any) -> list[dict[str, Any]]:
        return [{k[0].lower() + k[1:]: v for k, v in item.items()} for item in items or []]

    cluster = _moto_create("AWS::ECS::Cluster")(cls, name, template, account_id, region, **kwargs)
    ecs_backends[account_id][region].put_cluster_capacity_providers(
        cluster.name, props.get("CapacityProviders"), lower_keys(props.get("DefaultCapacityProviderStrategy")) or None,
    )
    if props.get("ClusterSettings"):
        cluster.settings = lower_keys(props["ClusterSettings"])
    return cluster


def _task_definition(cls: Any, name: str, template: dict[str, Any], account_id: str, region: str, **kwargs: Any) -> Any:
    # AWS::ECS::TaskDefinition: moto registers Memory but drops Cpu, so the driver's task (and its
    # run report's own row, see fixes.ecs_task_size) had no vCPU size in local mode.
    props = template["Properties"]
    moto_create = _moto_create("AWS::ECS::TaskDefinition")
    task_definition = moto_create(cls, name, template, account_id, region, **kwargs)
    cpu = props.get("Cpu")
    if cpu and not task_definition.cpu:
        task_definition.cpu = str(cpu)
    return task_definition


# -- attributes: the ids and attributes moto's models lack, each given by one function -----------


def _file_system_attributes(model: Any) -> None:
    """Fn::GetAtt of an EFS file system's Arn and FileSystemId."""
    from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

    def get_cfn_attribute(self: Any, attribute_name: str) -> str:
        if attribute_name == "Arn":
            return self.file_system_arn
        if attribute_name == "FileSystemId":
            return self.file_system_id
        raise UnformattedGetAttTemplateException()

    replace("cfn AWS::EFS::FileSystem", model, "get_cfn_attribute", get_cfn_attribute)
    replace("cfn AWS::EFS::FileSystem", model, "has_cfn_attr", classmethod(lambda cls, attr: attr in ("Arn", "FileSystemId")))


def _physical_id(cfn_type: str, attribute: str) -> Callable[[Any], None]:
    """A physical id for ``cfn_type``'s model (its ``attribute``): without one, Ref gives moto's
    object instead of the resource's id."""
    return lambda model: replace(f"cfn {cfn_type}", model, "physical_resource_id", property(lambda self: getattr(self, attribute)))


@dataclass(frozen=True)
class CfnFix:
    """What moto's CloudFormation lacks for one resource type: exactly one of ``call`` (moto has
    no model of the type), ``creation`` (moto's model ignores properties) or ``attributes``
    (moto's model lacks its id or attributes); and the test that fails once moto no longer needs it."""

    #: the test (path::function) that fails once moto no longer needs the fix
    still_needed_test: str
    #: moto's model of the type (module.Class); "" where moto has none
    moto_model: str = ""
    #: the API call behind a resource moto has no model of: (name, properties, account, region,
    #: stack id) -> the physical id; made a model by ``_model``
    call: Callable[[str, dict[str, Any], str, str, str], str] | None = None
    #: the creation that replaces moto's: (cls, name, template, account, region, **kwargs) -> the
    #: model; it may call moto's own through ``_moto_create``
    creation: Callable[..., Any] | None = None
    #: what gives moto's model class its physical id or attributes
    attributes: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:
        kinds = [kind for kind in ("call", "creation", "attributes") if getattr(self, kind) is not None]
        if len(kinds) != 1 or (self.call is None) == (not self.moto_model):
            raise ValueError(f"a CfnFix is a call (no moto_model), a creation or attributes (of a moto_model): {self}")


#: the test that fails, for each type a ``call`` makes a model of, once moto has a model of it
MISSING_TEST = "tests/integration/test_template.py::test_moto_cloudformation_still_has_no_model_of_a_missing_type"
_TEMPLATE_TESTS = "tests/integration/test_template.py::"

#: CloudFormation resource type -> what moto's CloudFormation lacks for it
RESOURCE_TYPES: dict[str, CfnFix] = {
    # types moto has no model of
    "AWS::CloudWatch::Alarm": CfnFix(MISSING_TEST, call=_alarm),
    "AWS::SQS::QueuePolicy": CfnFix(MISSING_TEST, call=_queue_policy),
    "AWS::S3::BucketPolicy": CfnFix(MISSING_TEST, call=_bucket_policy),
    "AWS::ApiGateway::Stage": CfnFix(MISSING_TEST, call=_api_stage),
    "AWS::ECS::CapacityProvider": CfnFix(MISSING_TEST, call=_capacity_provider),
    "AWS::ECR::PullThroughCacheRule": CfnFix(MISSING_TEST, call=_pull_through_cache_rule),
    "AWS::ECR::RepositoryCreationTemplate": CfnFix(MISSING_TEST, call=_repository_creation_template),
    "AWS::Scheduler::ScheduleGroup": CfnFix(MISSING_TEST, call=_schedule_group),
    # properties moto's models ignore
    "AWS::StepFunctions::StateMachine": CfnFix(
        _TEMPLATE_TESTS + "test_moto_cloudformation_still_ignores_a_state_machines_definition_in_s3",
        "moto.stepfunctions.models.StateMachine", creation=_state_machine,
    ),
    "AWS::ApiGateway::RestApi": CfnFix(
        _TEMPLATE_TESTS + "test_moto_cloudformation_still_ignores_a_rest_apis_body", "moto.apigateway.models.RestAPI", creation=_rest_api,
    ),
    "AWS::S3::Bucket": CfnFix(
        _TEMPLATE_TESTS + "test_moto_cloudformation_still_ignores_a_buckets_eventbridge_and_public_access_block",
        "moto.s3.models.FakeBucket", creation=_bucket,
    ),
    "AWS::EC2::VPC": CfnFix(
        _TEMPLATE_TESTS + "test_moto_cloudformation_still_ignores_a_vpcs_dns_hostnames", "moto.ec2.models.vpcs.VPC", creation=_vpc,
    ),
    "AWS::ECS::Cluster": CfnFix(
        _TEMPLATE_TESTS + "test_moto_cloudformation_still_ignores_a_clusters_capacity_providers_and_settings",
        "moto.ecs.models.Cluster", creation=_cluster,
    ),
    "AWS::ECS::TaskDefinition": CfnFix(
        _TEMPLATE_TESTS + "test_moto_cloudformation_still_drops_a_task_definitions_cpu",
        "moto.ecs.models.TaskDefinition", creation=_task_definition,
    ),
    # ids and attributes moto's models lack
    "AWS::EFS::FileSystem": CfnFix(
        _TEMPLATE_TESTS + "test_moto_cloudformation_still_has_no_getatt_of_an_efs_file_system",
        "moto.efs.models.FileSystem", attributes=_file_system_attributes,
    ),
    "AWS::EFS::AccessPoint": CfnFix(
        _TEMPLATE_TESTS + "test_moto_cloudformation_still_has_no_physical_id_of_an_efs_access_point",
        "moto.efs.models.AccessPoint", attributes=_physical_id("AWS::EFS::AccessPoint", "access_point_id"),
    ),
    "AWS::ApiGateway::Deployment": CfnFix(
        _TEMPLATE_TESTS + "test_moto_cloudformation_still_has_no_physical_id_of_an_api_deployment",
        "moto.apigateway.models.Deployment", attributes=_physical_id("AWS::ApiGateway::Deployment", "id"),
    ),
}


# -- applying the table: the one helper (``_apply``) and what it uses -----------------------------


def _model_class(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def _moto_create(cfn_type: str) -> Any:
    """moto's own creation of ``cfn_type`` (a function of cls, name, template, account, region)."""
    return moto_function(f"cfn {cfn_type}", "create_from_cloudformation_json")


def moto_create(cfn_type: str) -> Any:
    """moto's own creation of ``cfn_type``, whether or not ``install`` ran (tests tell from it
    when moto no longer needs the creation that replaces it)."""
    fix = RESOURCE_TYPES[cfn_type]
    if not fix.moto_model:
        raise ValueError(f"{cfn_type}: moto has no model of it (its CfnFix is a call)")
    own = unpatched(f"cfn {cfn_type}", _model_class(fix.moto_model), "create_from_cloudformation_json")
    return getattr(own, "__func__", own)


_models: list[type] = []  # (moto finds models as subclasses of CloudFormationModel: keep them alive)


def _model(cfn_type: str, create: Callable[[str, dict[str, Any], str, str, str], str]) -> type:
    """A moto CloudFormation model for ``cfn_type`` whose creation is ``create``: a resource with
    a physical id and no attributes."""
    from moto.core.common_models import CloudFormationModel

    class Model(CloudFormationModel):
        def __init__(self, physical_id: str, properties: dict[str, Any]) -> None:
            self.physical_resource_id = physical_id
            self.properties = properties

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @staticmethod
        def cloudformation_type() -> str:
            return cfn_type

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return False

        def is_created(self) -> bool:
            return True

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> Any:
            props = cloudformation_json["Properties"]
            stack_id = kwargs.get("StackId", "")
            return cls(create(resource_name, props, account_id, region_name, stack_id), props)

    Model.__name__ = Model.__qualname__ = cfn_type.replace("::", "")
    return Model


def _apply(cfn_type: str, fix: CfnFix) -> None:
    """Give moto's CloudFormation what ``fix`` says it lacks for ``cfn_type``."""
    if fix.call is not None:
        _models.append(_model(cfn_type, fix.call))
        return
    model = _model_class(fix.moto_model)
    if fix.attributes is not None:
        fix.attributes(model)
        return
    creation = fix.creation

    def create_from_cloudformation_json(
        cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        cloudformation_json.setdefault("Properties", {})
        return creation(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)

    replace(f"cfn {cfn_type}", model, "create_from_cloudformation_json", classmethod(create_from_cloudformation_json))


def install() -> None:
    """What moto's CloudFormation needs to create this template's stack (once per process)."""
    check_version()
    if _models:
        return
    # the calls' models last: ``_models`` says the whole table is applied, so it fills only once
    # every creation and attribute is in place (one that failed is tried again at the next install)
    for cfn_type, fix in sorted(RESOURCE_TYPES.items(), key=lambda entry: entry[1].call is not None):
        _apply(cfn_type, fix)
    from moto.cloudformation import parsing

    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
