"""Each Lambda function's settings are a model of what it needs (pipeline.settings): every field
required, a missing or malformed variable a SettingsError naming it."""

import pytest

from miniwdl_fargate.pipeline import settings
from tests.function_env import environment

MODELS = {
    "inputs_dropped": settings.SubmitSettings,
    "api": settings.WesApiSettings,
    "launch_driver": settings.LaunchSettings,
    "driver_stopped": settings.DriverStoppedSettings,
    "finalize": settings.FinalizeSettings,
    "run_timed_out": settings.ClusterSettings,
}


@pytest.mark.parametrize("handler", sorted(MODELS))
def test_each_handler_reads_its_own_model(handler):
    module = __import__(handler)
    assert module.SETTINGS is MODELS[handler]


def test_each_model_needs_what_its_function_uses_and_no_more():
    assert settings.SubmitSettings.variables() == {
        "STATE_MACHINE_ARN", "MAX_RUN_HOURS", "DRIVER_HEARTBEAT_SECONDS",
        "MANAGED_INSTANCES_MAX_CPU", "MANAGED_INSTANCES_MAX_MEMORY_GIB", "MANAGED_INSTANCES_MAX_GPUS", "EBS_SCRATCH",
        "MAX_RUN_VCPUS",
    }
    assert settings.ApiSettings.variables() == settings.SubmitSettings.variables() | {"RUNS_BUCKET", "CLUSTER", "CALL_CACHE"}
    assert settings.WesApiSettings.variables() == settings.ApiSettings.variables() | {"TASK_LOG_GROUP"}
    assert settings.ClusterSettings.variables() == {"CLUSTER"}
    assert settings.CleanupSettings.variables() == {"CLUSTER", "FILE_SYSTEM_ID"}
    assert settings.DriverStoppedSettings.variables() == settings.FinalizeSettings.variables()  # (a cancelled run's slot, its leftovers)
    assert settings.DriverTaskSettings.variables() == {
        "CLUSTER", "DRIVER_TASK_DEFINITION", "DRIVER_CONTAINER_NAME", "DRIVER_SUBNETS", "DRIVER_SECURITY_GROUPS",
        "DRIVER_ASSIGN_PUBLIC_IP",
    }
    assert settings.LaunchSettings.variables() == settings.DriverTaskSettings.variables() | {"MAX_CONCURRENT_RUNS", "DRIVER_CPU"}
    assert settings.FinalizeSettings.variables() == settings.CleanupSettings.variables() | settings.DriverTaskSettings.variables() | {
        "GC_SCHEDULE_GROUP", "GC_SCHEDULER_ROLE_ARN", "KEEP_FAILED_RUN_DAYS",
    }


@pytest.mark.parametrize("model", list(MODELS.values()), ids=lambda m: m.__name__)
def test_every_variable_a_model_needs_is_required(model):
    for variable in model.variables():
        env = environment()
        del env[variable]
        with pytest.raises(settings.SettingsError) as failed:
            model.from_env(env)
        assert str(failed.value) == f"{model.__name__}: environment variable {variable} is not set"


def test_a_malformed_variable_is_named_with_what_is_wrong():
    with pytest.raises(settings.SettingsError) as failed:
        settings.ApiSettings.from_env(environment(MAX_RUN_HOURS="a day", STATE_MACHINE_ARN=""))
    said = str(failed.value)
    assert said.startswith("ApiSettings: ")
    assert "environment variable MAX_RUN_HOURS='a day': Input should be a valid number" in said
    assert "environment variable STATE_MACHINE_ARN='': String should have at least 1 character" in said
    with pytest.raises(settings.SettingsError, match="DRIVER_ASSIGN_PUBLIC_IP='yes'"):
        settings.LaunchSettings.from_env(environment(DRIVER_ASSIGN_PUBLIC_IP="yes"))
    with pytest.raises(settings.SettingsError, match="GC_SCHEDULER_ROLE_ARN='gc-role': String should match pattern"):
        settings.FinalizeSettings.from_env(environment(GC_SCHEDULER_ROLE_ARN="gc-role"))
    with pytest.raises(settings.SettingsError, match="KEEP_FAILED_RUN_DAYS='-1': Input should be greater than or equal to 0"):
        settings.FinalizeSettings.from_env(environment(KEEP_FAILED_RUN_DAYS="-1"))


def test_finalize_collects_on_the_stacks_network_what_the_driver_keeps_as_long_as_the_driver_keeps_it():
    read = settings.FinalizeSettings.from_env(environment(DRIVER_SUBNETS="subnet-1, subnet-2", KEEP_FAILED_RUN_DAYS="2.5"))
    collection = read.collection()
    assert collection.driver_task.subnets == ("subnet-1", "subnet-2")
    assert collection.driver_task.container == "driver"
    assert collection.keep_failed_run_days == 2.5
    assert collection.keep_unused_cache_days == 7  # aws_fargate.cfg's keep_unused_cache_days, as the driver reads it


def test_the_process_environment_is_read_and_the_rest_of_it_ignored(monkeypatch):
    for key, value in environment(CLUSTER="from-env").items():
        monkeypatch.setenv(key, value)
    read = settings.CleanupSettings.from_env()
    assert (read.cluster, read.file_system_id) == ("from-env", "fs-12345678")
    assert settings.ApiSettings.from_env().run_limits({}) == {"max_run_seconds": 72 * 3600, "heartbeat_seconds": 900}


def test_the_submit_functions_know_what_the_stack_can_run_beyond_fargate():
    from miniwdl_fargate import sizes

    disabled = settings.SubmitSettings.from_env(environment())
    assert disabled.capacities() == sizes.Capacities(sizes.ManagedInstanceLimits(0, 0, 0), ebs_scratch=False)
    enabled = settings.ApiSettings.from_env(environment(
        MANAGED_INSTANCES_MAX_CPU="64", MANAGED_INSTANCES_MAX_MEMORY_GIB="512", MANAGED_INSTANCES_MAX_GPUS="2",
        EBS_SCRATCH="true",
    ))
    assert enabled.capacities() == sizes.Capacities(sizes.ManagedInstanceLimits(64, 512, 2), ebs_scratch=True)
    with pytest.raises(settings.SettingsError, match="environment variable EBS_SCRATCH='yes'"):
        settings.SubmitSettings.from_env(environment(EBS_SCRATCH="yes"))
    with pytest.raises(settings.SettingsError, match="environment variable MANAGED_INSTANCES_MAX_CPU='-1'"):
        settings.SubmitSettings.from_env(environment(MANAGED_INSTANCES_MAX_CPU="-1"))
