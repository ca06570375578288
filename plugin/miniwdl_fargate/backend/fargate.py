"""aws_fargate: each WDL task runs as one ECS task on Fargate.

- Sizes: WDL ``cpu``/``memory`` snapped up to the nearest valid Fargate size, ``disks`` to ephemeral
  storage; what Fargate cannot give fails the task before launch (``sizes.for_task``).
- Beyond Fargate (``sizes.for_task`` with the settings' ``capacities``): a task too big for
  Fargate, or asking for GPUs, runs on the ECS Managed Instances capacity provider
  (``managed_instances_capacity_provider``, or ``managed_instances_gpu_capacity_provider`` for a
  task asking for GPUs; preemptible ones on the Spot twin first), with a task
  definition of its own; ``disks`` beyond the capacity's storage get an EBS scratch volume,
  configured at launch, mounted at SCRATCH_PATH and made the task's TMPDIR (``ebs_volume_role``).
- Images go through the image cache's rules (``images.cached_image``); each attempt records the
  image as asked, as run, and the digest ECS pulled.
- The task definition is registered once per distinct image and run (content-hashed family name;
  the run's access point is part of the content); cpu, memory, storage and the command travel as
  RunTask overrides.
- Every task container mounts only its run's directory (``<efs root>/runs/<run id>``), at the
  path the driver sees it (``<mount path>/runs/<run id>``), and runs the WDL command in its task's
  real directory there (see ``base``): a task sees its own run's files, not every run's nor the
  shared cache (its inputs are hard links inside its work directory). A volume's root belongs to
  the task definition, and with an access point the volume's ``rootDirectory`` must be ``/``, so
  each run gets its own EFS access point (rooted at the run's directory, same POSIX user as the
  stack's) and its own task definition per image, both removed when the run ends (``RunVolume``,
  ``release_run``). Without a run id (``[aws_fargate] run_id``, which the driver sets) or an
  access point (standalone use) the whole mount is shared. The task definition sets
  ``entryPoint`` to ``/bin/sh -c``, so an image's own ENTRYPOINT (``amazon/aws-cli``'s ``aws``)
  does not swallow the command, and enables an init process as PID 1 (signals forwarded,
  zombies reaped); the image's USER is kept (EFS's access point decides file ownership).
- One ``Launcher`` per process paces RunTask to the account's quotas and retries throttling and
  capacity failures; one ``TaskPoller`` follows all tasks with DescribeTasks (100 per call).
- ``runtime.preemptible`` tasks run on FARGATE_SPOT; a Spot interruption raises miniwdl's
  ``Interrupted`` (retried while the preemptible budget lasts), after which tasks run on-demand.
- Tasks are tagged with the run id and their driver, so a dead driver's tasks can be swept, and
  with their call and ``[aws_fargate] tags`` (the run's labels, name and workflow, which the driver
  sets): cost allocation tags. Their EBS scratch volumes and the run's access point carry them too.
- Every RunTask carries a ``clientToken`` (one per attempt), so a retry of a request ECS already
  handled returns the task it started instead of starting a second one.
- A task DescribeTasks does not know yet (MISSING: ECS is eventually consistent) counts as not
  started for ``missing_grace`` seconds; then it is stopped and the attempt fails as an
  infrastructure failure (retried like a capacity failure).
- Each attempt is a ``FargateJob`` (its task's poller watch, task definition, client token,
  capacity and launch time, and what the attempt has seen of it): ``_start`` returns it, ``_poll``
  and ``_stop`` take it.
- How a stopped task ends the attempt is one pure function of ECS's description of it
  (``stops.ending``), which follows one table of ECS stop codes (``stops.STOP_CODES``);
  an image pull that failed for a passing reason (rate limit, timeout) is tried again with
  backoff, one that cannot succeed (no such image, access denied) fails at once (``stops.PULL_ERRORS``).
- Task definitions are registered under a lock per image: a slow or throttled registration of
  a new image never holds up launches of images already known. Registrations are paced as ECS
  throttles them, a token bucket: a few at once, then one a second, RegisterTaskDefinition's
  sustained rate.
- A task killed for running out of memory (container reason ``OutOfMemoryError``, exit 137) runs
  again at once with ``oom_memory_factor`` times the memory, snapped up to a Fargate size, up to
  ``oom_retries`` times (a task that names no memory: until Fargate's largest size). This happens
  inside one miniwdl attempt (``_retry_attempt``), so it
  spends neither the task's ``maxRetries`` nor its ``preemptible`` budget; the new attempt gets a
  fresh work directory, as miniwdl's retries do, and the report shows both attempts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shlex
import threading
import time
import uuid
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, NoReturn
from urllib.parse import quote

import WDL
from WDL._util import StructuredLogMessage as _
from WDL._util import parse_byte_size
from docker.errors import BuildError as DockerBuildError  # (miniwdl's own dependency)
from WDL.runtime.error import Interrupted, Terminated

from .. import attempts, aws, config, images, limits, miniwdl_fixes, run_options, run_resources, runs, sizes, sweep
from ..attempts import epoch
from ..config import FargateSettings
from ..driver_task import family_of
from ..report.cost import minimum_usd
from ..limits import LaunchCancelled, check_interval
from . import links, standalone, stops
from .base import BaseTaskContainer, Job, JobStatus, StartAgain
from .launcher import LaunchFailed, Launcher, account_vcpu_quota
from .poller import TaskPoller, Watch

CONTAINER_NAME = "task"
EFS_VOLUME = "efs"
RUN_TAG = sweep.RUN_TAG
DRIVER_TAG = sweep.DRIVER_TAG
CALL_TAG = run_options.TAG_CALL
RUN_ACCESS_POINT_TAG = sweep.RUN_ACCESS_POINT_TAG
SPOT = "FARGATE_SPOT"
MANAGED_INSTANCES = sizes.MANAGED_INSTANCES
MANAGED_INSTANCES_SPOT = "MANAGED_INSTANCES_SPOT"
#: the EBS scratch volume of a task whose runtime.disks is beyond its capacity's own storage: its
#: task-definition volume (configured at launch: RunTask's volumeConfigurations) and where the
#: container mounts it (also the task's TMPDIR)
SCRATCH_VOLUME = "scratch"
#: out-of-memory retries of a task that names no memory: 2 GiB doubled six times passes Fargate's
#: 120 GiB (``sizes.next_size_up`` stops at the largest size)
UNDECLARED_OOM_RETRIES = 6
SCRATCH_PATH = "/mnt/scratch"
#: RunTask's overrides, in JSON: "A total of 8192 characters are allowed for overrides. This limit
#: includes the JSON formatting characters of the override structure."
#: (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html, ``overrides``)
MAX_OVERRIDES_CHARS = 8192
#: task definitions a DeleteTaskDefinitions request takes (API_DeleteTaskDefinitions: "up to 10")
DELETE_TASK_DEFINITIONS_MAX = 10
#: the longest wait between two pulls of an image (or two starts of a task that failed to start)
PULL_RETRY_CAP = 300.0


def backoff(base: float, tries: int) -> float:
    """Seconds to wait before the ``tries``-th start again: ``base`` doubling each time, jittered
    (between half and all of it), at most ``PULL_RETRY_CAP``."""
    ceiling = min(PULL_RETRY_CAP, base * 2 ** (tries - 1))
    return random.uniform(ceiling / 2, ceiling)
#: RegisterTaskDefinition's sustained rate is 1 a second (token bucket per account and Region:
#: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/request-throttling.html); a process
#: paces its own the same way: REGISTER_BURST at once (a workflow's first images, side by side, in
#: well under the account's burst, which other drivers share), then one every REGISTER_INTERVAL. A
#: throttled call beyond is retried by botocore's standard retries (``aws.CONFIG``)
REGISTER_INTERVAL = 1.0
REGISTER_BURST = 4
#: the pacing's clock and wait (a test's own, in its place)
_registration_clock, _registration_wait = time.monotonic, time.sleep
#: how long a new access point may stay ``creating`` before the run fails
ACCESS_POINT_WAIT = 120.0


def task_tags(run_id: str, driver: str, call: str, tags: dict[str, str]) -> list[dict[str, str]]:
    """A WDL task's RunTask tags: the run, its driver, the call (e.g. call-greet-0) and the run's
    ``[aws_fargate] tags`` (its labels, name and workflow). At most 50
    (``run_options.MAX_TAGS_PER_RESOURCE``: ``tags`` holds at most 47); ECS's own managed tags
    (``aws:`` prefix) do not count (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Tag.html)."""
    own = {RUN_TAG: run_id, DRIVER_TAG: driver, CALL_TAG: call[: run_options.TAG_VALUE_MAX]}
    return run_options.ecs_tags({**own, **tags})


def volume_tags(tags: list[dict[str, str]]) -> list[dict[str, str]]:
    """An EBS scratch volume's tags: its task's, less the driver and the run's name, since ECS adds
    AmazonECSCreated and AmazonECSManaged to the volume
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_EBSTagSpecification.html) and an
    EBS volume has at most 50 tags
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html)."""
    left_out = (DRIVER_TAG, run_options.TAG_RUN_NAME)
    return [tag for tag in tags if tag["key"] not in left_out]


@dataclass(frozen=True)
class RunVolume:
    """What a run's WDL tasks mount: the run's own access point (rooted at ``<efs root>/runs/<run
    id>``), at ``container_path`` (the path the driver sees that directory at)."""

    run_id: str
    access_point: str
    container_path: str


class RunVolumeError(RuntimeError):
    """The run's own EFS access point could not be made ready."""


@dataclass(eq=False)
class FargateJob(Job):
    """One attempt run as an ECS task: what RunTask was asked and answered, the poller's watch
    of the task, and what this attempt has seen of it so far."""

    watch: Watch
    task_definition: str
    client_token: str
    capacity: str  # FARGATE, FARGATE_SPOT, MANAGED_INSTANCES or MANAGED_INSTANCES_SPOT
    launched_at: float  # epoch seconds RunTask answered
    #: the last poller update seen (``Watch.wait``) and the last lastStatus logged
    seen_version: int = 0
    last_state: str | None = None
    #: StopTask was sent (a stop is sent once)
    stop_sent: bool = False
    #: this attempt's place among the run's running tasks (``limits``), given back as it ends
    turn: limits.Turn | None = None
    #: ECS stopped it for exceeding its memory (``_retry_attempt`` may run the task again, bigger)
    out_of_memory: bool = False

    @property
    def arn(self) -> str:
        return self.watch.arn

    @property
    def family(self) -> str:
        """The task definition's family (its ARN's ``family:revision`` without the revision)."""
        return family_of(self.task_definition)


class TaskLimitReached(WDL.Error.RuntimeError):
    """The run has launched as many ECS tasks as its stack allows (MaxTasksPerRun)."""


class RunLimitReached(WDL.Error.RuntimeError, DockerBuildError):
    """The run's limits refuse the task: it needs more vCPUs than the run's max_vcpus, or the run's
    budget is spent (``limits``). Being a docker ``BuildError`` too (see ``ImageUnusable``),
    miniwdl does not retry it: a retry would be refused the same way."""

    def __init__(self, message: str) -> None:
        super().__init__(message, [])


class ImageUnusable(WDL.Error.RuntimeError, DockerBuildError):
    """The task's image cannot be used, and retrying will not change that: it cannot be pulled
    (it does not exist, or the registry refuses it), ECS cannot take its name, or it cannot run the
    task's command (no /bin/sh, another CPU's programs). miniwdl retries any failed task up to
    ``maxRetries`` except a docker ``BuildError`` (WDL/runtime/task.py, ``_try_task``): being one
    too, this fails the task at once instead of trying the same image ``maxRetries`` more times."""

    def __init__(self, message: str) -> None:
        # (RuntimeError's __init__ passes its arguments on to BuildError's: reason, build_log)
        super().__init__(message, [])


def client_token() -> str:
    """A fresh RunTask ``clientToken``: up to 64 ASCII characters 33-126
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/ECS_Idempotency.html)."""
    return uuid.uuid4().hex


def log_url(region: str, group: str, stream: str) -> str:
    """The CloudWatch console page of one log stream."""

    def enc(value: str) -> str:  # the console's own escaping of path parts in its fragment
        return quote(quote(value, safe=""), safe="").replace("%", "$")

    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{enc(group)}/log-events/{enc(stream)}"
    )


class FargateTaskContainer(BaseTaskContainer):
    settings: FargateSettings
    _poller: TaskPoller | None = None
    _launcher: Launcher | None = None
    _driver: str = ""
    _task_definitions: Dict[str, str] = {}
    #: one lock per image, so registering one image never holds up another (``_td_guard``
    #: protects the dict of locks only)
    _td_locks: Dict[str, threading.Lock] = {}
    _td_guard = threading.Lock()
    #: this process's run's volume (made on the first task definition), and the registrations it
    #: may send at once (``_pace_registration``: tokens, counted at the monotonic time beside)
    _run_volume: RunVolume | None = None
    _run_volume_failure: tuple[str, Exception] | None = None  # (run id, why its volume could not be made)
    _run_volume_lock = threading.Lock()
    _registration_tokens: tuple[float, float] = (REGISTER_BURST, 0.0)
    _registration_lock = threading.Lock()
    #: where tasks beyond Fargate can run (``settings.capacities``), and the image cache's rules
    capacities: sizes.Capacities = sizes.Capacities()
    image_rules: Dict[str, str] = {}
    #: RunTask calls of this run so far (one run per driver process), against max_tasks_per_run
    _launches = 0
    _launches_guard = threading.Lock()

    # -- class-wide setup ---------------------------------------------------------------------

    @classmethod
    def global_init(cls, cfg: Any, logger: logging.Logger) -> None:
        run_resources.at_release("aws_fargate", cls.release_run)  # (the driver releases them at the run's end)
        settings = FargateSettings.from_cfg(cfg)
        if cfg.get_bool("task_runtime", "as_user"):  # (miniwdl's Docker backend runs the command as the invoking user)
            logger.warning(_(
                "[task_runtime] as_user is not what aws_fargate does: tasks run as their image's user, and every "
                "file they write on EFS belongs to the run's access point's POSIX user"
            ))
        links.LinkPolicy.from_cfg(cfg)  # (a bad efs_link_limit fails the run now, not at its first task)
        miniwdl_fixes.inputs_stay_read_only()
        miniwdl_fixes.plugins_found_once()
        detected = ""
        if not settings.efs_mountpoint:  # (from the working directory: miniwdl's own, where it is run)
            settings.efs_mountpoint, detected_id = standalone.detect_efs_mount(os.getcwd())
            settings.efs_id = settings.efs_id or detected_id
            detected = settings.efs_mountpoint
        if not settings.efs_id:
            raise RuntimeError(
                f"aws_fargate: no EFS file system id: the NFS mount at {detected} names none (an efs-utils TLS mount, "
                "`-o tls`, shows 127.0.0.1): set [aws_fargate] efs_id (MINIWDL__AWS_FARGATE__EFS_ID=fs-12345678)"
                if detected else
                "aws_fargate: no EFS filesystem configured. Run miniwdl in a directory on an EFS "
                "mount, or set [aws_fargate] efs_id and efs_mountpoint "
                "(MINIWDL__AWS_FARGATE__EFS_ID=fs-12345678 MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT=/mnt/efs)"
            )
        if settings.provision:
            standalone.provision(settings, logger)
        if not settings.subnets:
            raise RuntimeError(
                "aws_fargate: no subnets configured: set [aws_fargate] subnets "
                "(MINIWDL__AWS_FARGATE__SUBNETS=subnet-aaa,subnet-bbb)"
            )
        if settings.log_group and not settings.execution_role:
            raise RuntimeError(
                "aws_fargate: log_group needs an execution_role that may write to it (or set "
                "provision = true to create one)"
            )
        cls._check_beyond_fargate(settings)
        settings.efs_security_group = standalone.resolve_security_group(settings.efs_security_group)
        settings.execution_role = standalone.role_arn(settings.execution_role)
        settings.task_role = standalone.role_arn(settings.task_role)
        cls.settings = settings
        cls.capacities = settings.capacities()
        cls.image_rules = settings.image_rules()
        cls.stream_logs = bool(settings.log_group)  # the command's output also to CloudWatch Logs
        ecs = aws.client("ecs")
        cls._poller = TaskPoller(
            lambda arns: ecs.describe_tasks(cluster=settings.cluster, tasks=arns),
            settings.poll_interval,
            budget=settings.describe_budget,
        )
        if cls._launcher is not None:
            cls._launcher.close()
        cls._launcher = Launcher(
            ecs,
            rate=settings.launch_rate,
            burst=settings.launch_burst,
            capacity_retries=settings.capacity_retries,
            backoff_base=settings.launch_retry_delay,
            spot_fallbacks=cls._spot_fallbacks(settings),
            vcpu_quota=lambda placement: account_vcpu_quota(
                aws.client("service-quotas", config=aws.LOOKUP_CONFIG), placement, logger
            ),
            own_vcpus=sweep.own_vcpus,
        )
        cls._driver = sweep.driver_identity()
        with cls._launches_guard:
            cls._launches = 0
        logger.info(
            _(
                "aws_fargate backend",
                cluster=settings.cluster,
                efs_id=settings.efs_id,
                efs_mountpoint=settings.efs_mountpoint,
                subnets=settings.subnets,
                launch_rate=settings.launch_rate,
                max_tasks_per_run=settings.max_tasks_per_run,
                driver=cls._driver,
                managed_instances=settings.managed_instances_capacity_provider or None,
                gpu_managed_instances=settings.managed_instances_gpu_capacity_provider or None,
                ebs_scratch=cls.capacities.ebs_scratch,
                image_cache=sorted(cls.image_rules) or None,
            )
        )

    @staticmethod
    def _spot_fallbacks(settings: FargateSettings) -> dict[str, dict[str, Any]]:
        """The launcher's On-Demand placement for each managed-instances Spot provider, CPU-only
        and GPU (FARGATE_SPOT's it knows): its own On-Demand twin."""
        fallbacks = {}
        for on_demand, spot in (settings.managed_instances_providers(0), settings.managed_instances_providers(1)):
            if spot:
                fallbacks[spot] = {"capacityProviderStrategy": [{"capacityProvider": on_demand, "weight": 1}]}
        return fallbacks

    @staticmethod
    def _provider_of(request: dict[str, Any]) -> str | None:
        """The capacity provider a RunTask request names (None: launch type FARGATE)."""
        strategy = request.get("capacityProviderStrategy") or []
        return strategy[0].get("capacityProvider") if strategy else None

    def _capacity_of(self, request: dict[str, Any]) -> str:
        """The capacity a launched request ran on (the launcher may have moved it from Spot to On-Demand)."""
        provider = self._provider_of(request)
        if provider is None:
            return "FARGATE"
        if provider == SPOT:
            return SPOT
        spots = {self.settings.managed_instances_spot_capacity_provider, self.settings.managed_instances_gpu_spot_capacity_provider}
        return MANAGED_INSTANCES_SPOT if provider in spots - {""} else MANAGED_INSTANCES

    @staticmethod
    def _check_beyond_fargate(settings: FargateSettings) -> None:
        """The settings for tasks beyond Fargate make sense together, or the run fails now, naming them."""
        for kind, (on_demand, spot) in (("", settings.managed_instances_providers(0)), ("gpu_", settings.managed_instances_providers(1))):
            if spot and not on_demand:
                raise RuntimeError(
                    f"aws_fargate: managed_instances_{kind}spot_capacity_provider needs managed_instances_{kind}capacity_provider "
                    "(the On-Demand one, where preemptible tasks go once their interruptions are spent)"
                )
        if settings.managed_instances_gpu_capacity_provider and not settings.managed_instances_capacity_provider:
            raise RuntimeError(
                "aws_fargate: managed_instances_gpu_capacity_provider needs managed_instances_capacity_provider "
                "(the stack's ManagedInstances=Enabled sets both)"
            )
        if settings.managed_instances_capacity_provider and (
            bool(settings.managed_instances_gpu_capacity_provider) != bool(settings.managed_instances_max_gpus)
        ):
            raise RuntimeError(
                "aws_fargate: managed_instances_gpu_capacity_provider and managed_instances_max_gpus go together: GPU "
                "tasks run only on the GPU provider, with up to that many GPUs (got provider "
                f"{settings.managed_instances_gpu_capacity_provider!r}, max_gpus {settings.managed_instances_max_gpus})"
            )
        if settings.ebs_volume_role and not settings.ebs_volume_role.startswith("arn:"):
            raise RuntimeError(
                f"aws_fargate: ebs_volume_role must be the ARN of the ECS infrastructure role for volumes, "
                f"not {settings.ebs_volume_role!r} (e.g. arn:aws:iam::123456789012:role/ecsInfrastructureRole)"
            )

    @classmethod
    def detect_resource_limits(cls, cfg: Any, logger: logging.Logger) -> Dict[str, int]:
        """The most a task can get: Fargate's largest size, or the managed instances' where they
        are bigger (miniwdl clamps runtime cpu/memory to this; the size itself comes from
        ``process_runtime``, which refuses what no capacity gives)."""
        limits = cls.capacities.managed_instances
        cpu = max(sizes.MAX_CPU_UNITS // 1024, limits.task_cpu_units // 1024)
        memory_mib = max(sizes.MAX_MEMORY_MIB, limits.task_memory_mib)
        return {"cpu": cpu, "mem_bytes": memory_mib * 1024 * 1024}

    def __init__(self, cfg: Any, run_id: str, host_dir: str) -> None:
        super().__init__(cfg, run_id, host_dir)
        mountpoint = self.settings.efs_mountpoint
        if mountpoint and not os.path.normpath(host_dir).startswith(os.path.normpath(mountpoint).rstrip("/") + "/"):
            # its container mounts EFS at that path and enters this one, both as written (a link
            # on this machine is no link in the container): it would fail to enter it
            raise WDL.Error.RuntimeError(
                f"aws_fargate: task {run_id}'s directory {host_dir} is not under [aws_fargate] efs_mountpoint "
                f"{mountpoint}, where its container mounts EFS: run miniwdl in a directory under the mount point, "
                "or set efs_mountpoint to the EFS mount holding it"
            )
        self._size: sizes.TaskSize | None = None
        #: the gate's turn of the attempt being launched (``_start`` to ``_launched``)
        self._launching: limits.Turn | None = None
        #: whether the task (or [task_runtime] defaults) says how much memory it needs
        self._memory_declared = False
        self._interruptions = 0
        self._oom_retries = 0
        self._pull_retries = 0
        self._start_retries = 0

    # -- sizing ---------------------------------------------------------------------------------

    def process_runtime(self, logger: logging.Logger, runtime_eval: Dict[str, WDL.Value.Base]) -> None:
        # Size the task from what it asked for, before miniwdl clamps cpu/memory to
        # detect_resource_limits: a request Fargate cannot meet must fail, not shrink silently.
        cpu = memory = disks = None
        if "cpu" in runtime_eval:
            cpu = runtime_eval["cpu"].coerce(WDL.Type.Float()).value
        if "memory" in runtime_eval and isinstance(runtime_eval["memory"], WDL.Value.String):
            # (its unit's case as miniwdl spells it: WDL says units are case-insensitive)
            runtime_eval = dict(runtime_eval, memory=WDL.Value.String(sizes.memory_text(runtime_eval["memory"].value)))
        if "memory" in runtime_eval:
            try:
                memory = parse_byte_size(runtime_eval["memory"].coerce(WDL.Type.String()).value)
            except ValueError:
                pass  # miniwdl's own check reports it
        disks = sizes.disks_value({k: runtime_eval[k].json for k in ("disks", "disk") if k in runtime_eval})
        self._memory_declared = memory is not None
        gpu = runtime_eval.get("gpu")
        try:
            gpus, gpus_said = sizes.gpus_asked(self.run_id, {k: runtime_eval[k].json for k in sizes.GPU_KEYS if k in runtime_eval})
            boot = sizes.boot_disk(self.run_id, runtime_eval["bootDiskSizeGb"].json if "bootDiskSizeGb" in runtime_eval else None)
            self._size = sizes.for_task(
                self.run_id,
                cpu=cpu,
                memory_bytes=memory,
                disks=disks,
                gpu=isinstance(gpu, WDL.Value.Boolean) and gpu.value is True,
                gpus=gpus,
                gpus_said=gpus_said,
                boot_disk_gib=boot,
                default_cpu_units=self.settings.default_cpu_shares,
                default_memory_mib=self.settings.default_memory_mb,
                capacities=self.capacities,
            )
        except sizes.SizeError as exn:
            raise WDL.Error.RuntimeError(str(exn)) from None
        super().process_runtime(logger, runtime_eval)
        image_key = next((k for k in ("container", "docker") if k in runtime_eval), None)
        if image_key is not None and "inlineDockerfile" not in runtime_eval:  # (miniwdl took an array's first)
            self.runtime_values["docker"] = images.chosen_image(runtime_eval[image_key].json)

    def fargate_size(self) -> sizes.TaskSize:
        if self._size is None:  # process_runtime not called: the task's runtime said nothing
            self._size = self.default_size()
        return self._size

    @classmethod
    def default_size(cls) -> sizes.TaskSize:
        """``default_cpu_shares`` and ``default_memory_mb`` snapped up to a Fargate size."""
        return sizes.snap(cls.settings.default_cpu_shares, cls.settings.default_memory_mb)

    def attempt_facts(self) -> dict[str, Any]:
        size = self.fargate_size()
        return {
            "image": self.image(),
            "image_uri": self.image_uri(),
            "cpu": size.cpu,
            "memory": size.memory,
            "ephemeral_gib": size.ephemeral_gib or sizes.DEFAULT_EPHEMERAL_GIB,
            "capacity": self.capacity(),
            "gpus": size.gpus,
            "scratch_gib": size.scratch_gib,
            "public_ip": self.public_ip(),  # run_task_request's assignPublicIp
        }

    def image(self) -> str:
        """The task's image as the WDL asked for it (``runtime.container``/``docker``:
        ``images.chosen_image``), else miniwdl's default."""
        image = self.runtime_values.get("docker") or self.cfg.get_dict("task_runtime", "defaults").get(
            "docker", "ubuntu:22.04"
        )
        return images.wdl_image(image)

    def pulled_image(self) -> str:
        """How errors name the image ECS pulls: as asked, and the image cache's URI where that
        rewrote it (a pull through the cache can fail for the cache's own reasons)."""
        image, uri = self.image(), self.image_uri()
        return repr(image) if uri == image else f"{image!r} (through the image cache: {uri!r})"

    def image_uri(self) -> str:
        """The image the ECS task runs: ``image()`` through the image cache's rules (``images``)."""
        return images.cached_image(self.image(), self.image_rules)

    # -- task definitions -----------------------------------------------------------------------

    @classmethod
    def run_volume(cls, logger: logging.Logger, run_id: str, tags: dict[str, str] | None = None) -> RunVolume | None:
        """Run ``run_id``'s volume, made once per process (its access point tagged with ``tags``
        too): None outside a run (no run id) or without an access point (standalone use, which
        mounts the whole filesystem)."""
        if not run_id or not cls.settings.efs_access_point:
            return None
        with cls._run_volume_lock:
            failed = cls._run_volume_failure
            if failed is not None and failed[0] == run_id:  # made once: its failure too
                raise RunVolumeError(str(failed[1]))
            if cls._run_volume is None or cls._run_volume.run_id != run_id:
                try:
                    cls._run_volume = cls._make_run_volume(logger, run_id, tags or {})
                except Exception as exn:
                    cls._run_volume_failure = (run_id, exn)
                    raise
            return cls._run_volume

    @classmethod
    def run_access_point_request(
        cls, base: dict[str, Any], run_id: str, tags: dict[str, str] | None = None, driver: str = ""
    ) -> dict[str, Any]:
        """The CreateAccessPoint request of ``run_id``'s access point, tagged with ``tags`` too (the
        run's labels, name and workflow: whose directory it is; EFS bills storage per file system,
        so this does not split the bill) and with the ``driver`` making it (its ``miniwdl-fargate:driver``
        tag, as on its tasks: when that driver stops, only its own access point is released, not
        the one a later attempt's driver of the same run made): the stack's access point
        (``base``, a DescribeAccessPoints entry) narrowed to the run's directory. The directory
        exists (the driver made it), so no CreationInfo. An access point's root is at most 100
        characters and 4 levels (https://docs.aws.amazon.com/efs/latest/ug/API_RootDirectory.html)."""
        root = (base.get("RootDirectory") or {}).get("Path", "/").rstrip("/")
        path = f"{root}/runs/{run_id}"
        if len(path) > 100 or path.count("/") > 4:
            raise RunVolumeError(
                f"run {run_id}: its directory {path} is too long or too deep for an EFS access point root "
                "(at most 100 characters and 4 levels): shorten the run name or the stack's access point path"
            )
        request: dict[str, Any] = {
            "ClientToken": client_token(),
            "FileSystemId": cls.settings.efs_id,
            "RootDirectory": {"Path": path},
            # tags on creation also need elasticfilesystem:TagResource
            # (https://docs.aws.amazon.com/efs/latest/ug/API_CreateAccessPoint.html)
            "Tags": [
                {"Key": RUN_TAG, "Value": run_id},
                {"Key": RUN_ACCESS_POINT_TAG, "Value": "true"},  # (template.yaml lets the driver delete only these)
                *([{"Key": DRIVER_TAG, "Value": driver[: run_options.TAG_VALUE_MAX]}] if driver else []),
                # (the run's name and workflow, at most 45 labels)
                *({"Key": key, "Value": value} for key, value in (tags or {}).items() if key not in ("Name", DRIVER_TAG)),
            ],
        }
        if len(request["Tags"]) < run_options.MAX_TAGS_PER_RESOURCE:  # (the console's name, where 50 tags leave room)
            request["Tags"].insert(2, {"Key": "Name", "Value": f"miniwdl run {run_id}"[:256]})
        if base.get("PosixUser"):
            request["PosixUser"] = base["PosixUser"]
        return request

    @classmethod
    def _make_run_volume(cls, logger: logging.Logger, run_id: str, tags: dict[str, str]) -> RunVolume:
        efs = aws.client("efs")
        s = cls.settings
        base = efs.describe_access_points(AccessPointId=s.efs_access_point)["AccessPoints"][0]
        try:
            made = efs.create_access_point(**cls.run_access_point_request(base, run_id, tags, cls._driver))
        except efs.exceptions.AccessPointLimitExceeded:  # (10,000 a file system: https://docs.aws.amazon.com/efs/latest/ug/limits.html)
            raise RunVolumeError(
                f"the file system {s.efs_id or base.get('FileSystemId', '')} holds as many access points as EFS allows: "
                "too many runs at once, or runs whose end could not delete theirs (each is tagged "
                "miniwdl-fargate:run-access-point and miniwdl-fargate:run: those of runs that ended may be deleted)"
            ) from None
        access_point = made["AccessPointId"]
        try:
            cls._wait_available(efs, access_point, made.get("LifeCycleState", ""))
        except RunVolumeError:
            try:  # never left behind: it will not serve this run
                efs.delete_access_point(AccessPointId=access_point)
            except Exception as exn:  # noqa: BLE001 (finalize deletes the run's leftovers too)
                logger.warning(_("could not delete the run's access point", access_point=access_point, error=str(exn)))
            raise
        logger.notice(_("run access point", access_point=access_point, root=made["RootDirectory"]["Path"]))  # type: ignore[attr-defined]
        return RunVolume(run_id, access_point, f"{s.efs_mountpoint}/runs/{run_id}")

    @staticmethod
    def _wait_available(efs: Any, access_point: str, state: str) -> None:
        """A new access point is ``creating`` until ``available``; only then can tasks mount it
        (https://docs.aws.amazon.com/efs/latest/ug/API_AccessPointDescription.html)."""
        deadline = time.monotonic() + ACCESS_POINT_WAIT
        while state != "available":
            if state in ("deleting", "deleted", "error") or time.monotonic() > deadline:
                raise RunVolumeError(f"the run's EFS access point {access_point} is {state or 'unknown'}, not available")
            time.sleep(1.0)
            state = efs.describe_access_points(AccessPointId=access_point)["AccessPoints"][0]["LifeCycleState"]

    @classmethod
    def release_run(cls, logger: logging.Logger) -> None:
        """At the end of the run: log what its polling cost (DescribeTasks calls, passes, tasks
        described), deregister and delete its task definitions and delete its access point (tasks
        already running keep their mount). Failures are logged, never raised."""
        ecs = aws.client("ecs")
        if cls._poller is not None:  # (what the run's polling cost: its share of the account's DescribeTasks rate)
            poller = cls._poller
            logger.info(_("DescribeTasks over the run", calls=poller.calls, passes=len(poller.passes), tasks_described=poller.described))
        with cls._run_volume_lock:
            volume, cls._run_volume = cls._run_volume, None
        # only a run's own task definitions: without a run volume they are shared, content-hashed
        # ones other drivers use too
        deregistered = []
        for arn in list(cls._task_definitions.values()) if volume is not None else []:
            try:
                ecs.deregister_task_definition(taskDefinition=arn)
                deregistered.append(arn)
            except Exception as exn:  # noqa: BLE001 (cleanup: the run's result stands)
                logger.warning(_("could not deregister task definition", arn=arn, error=str(exn)))
        cls._task_definitions.clear()
        cls._delete_task_definitions(logger, ecs, deregistered)
        if volume is not None:
            try:
                aws.client("efs").delete_access_point(AccessPointId=volume.access_point)
            except Exception as exn:  # noqa: BLE001
                logger.warning(_("could not delete the run's access point", access_point=volume.access_point, error=str(exn)))

    @staticmethod
    def _delete_task_definitions(logger: logging.Logger, ecs: Any, arns: list[str]) -> None:
        """Delete the run's deregistered task definitions: an INACTIVE revision stays in the
        account for ever ("INACTIVE task definitions remain discoverable in your account
        indefinitely": API_DeregisterTaskDefinition), one or more a run; a deleted one goes once no
        task uses it (API_DeleteTaskDefinitions: DELETE_IN_PROGRESS "until all the associated
        tasks and services have been terminated"), at most 10 a request. Never raises."""
        for start in range(0, len(arns), DELETE_TASK_DEFINITIONS_MAX):
            batch = arns[start:start + DELETE_TASK_DEFINITIONS_MAX]
            try:
                failures = ecs.delete_task_definitions(taskDefinitions=batch).get("failures") or []
            except Exception as exn:  # noqa: BLE001 (cleanup: the run's result stands)
                logger.warning(_("could not delete task definitions", arns=batch, error=str(exn)))
                continue
            for failure in failures:
                logger.warning(_("could not delete task definition", arn=failure.get("arn"), reason=failure.get("reason")))

    @classmethod
    def _pace_registration(cls) -> None:
        """Take a token of this process's registrations (REGISTER_BURST at most, one more every
        REGISTER_INTERVAL), waiting for one if there is none."""
        with cls._registration_lock:
            tokens, counted_at = cls._registration_tokens
            now = _registration_clock()
            tokens = min(REGISTER_BURST, tokens + (now - counted_at) / REGISTER_INTERVAL) if REGISTER_INTERVAL else 1
            if tokens < 1:
                _registration_wait((1 - tokens) * REGISTER_INTERVAL)
                now, tokens = _registration_clock(), 1
            cls._registration_tokens = (tokens - 1, now)

    @classmethod
    def task_definition_spec(
        cls, image: str, volume: RunVolume | None = None, size: sizes.TaskSize | None = None
    ) -> dict[str, Any]:
        """The RegisterTaskDefinition request for ``image`` (without its family name); with
        ``volume``, the tasks mount only that run's directory. ``size`` decides what else the
        definition holds (``placement_kind``): managed instances and their GPUs, an EBS scratch
        volume; the cpu and memory themselves travel as RunTask overrides."""
        s = cls.settings
        container: dict[str, Any] = {
            "name": CONTAINER_NAME,
            "image": image,
            "essential": True,
            # RunTask's command override replaces only the image's CMD: without an entryPoint here
            # an image with an ENTRYPOINT would run "<entrypoint> /bin/sh -c <script>"
            # (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html)
            "entryPoint": ["/bin/sh", "-c"],
            # an init process as PID 1 forwards the stop's SIGTERM to our shell and reaps zombies
            # (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_LinuxParameters.html)
            "linuxParameters": {"initProcessEnabled": True},
            "mountPoints": [
                {
                    "sourceVolume": EFS_VOLUME,
                    "containerPath": volume.container_path if volume else s.efs_mountpoint,
                    "readOnly": False,
                }
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
                    # every line reaches the log: since June 2025 ECS's default mode is
                    # non-blocking, which drops what overflows its buffer (a chatty tool's burst).
                    # Blocking holds only the log forwarder, never the command, which writes to
                    # its files (task_script); the task ends once its log is delivered
                    # (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-account-settings.html,
                    # "Default log driver mode"; API_LogConfiguration's mode)
                    "mode": "blocking",
                },
            }
        efs: dict[str, Any] = {"fileSystemId": s.efs_id, "transitEncryption": "ENABLED"}
        access_point = volume.access_point if volume else s.efs_access_point
        if access_point:
            # the volume's root is the access point's: rootDirectory must be omitted or "/"
            # (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_EFSVolumeConfiguration.html)
            efs["authorizationConfig"] = {"accessPointId": access_point, "iam": "DISABLED"}
        spec: dict[str, Any] = {
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            # the defaults as RunTask's overrides give them: a Fargate size (ECS refuses a task
            # definition of another: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size)
            "cpu": str(cls.default_size().cpu),
            "memory": str(cls.default_size().memory),
            "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
            "containerDefinitions": [container],
            "volumes": [{"name": EFS_VOLUME, "efsVolumeConfiguration": efs}],
        }
        if s.execution_role:
            spec["executionRoleArn"] = s.execution_role
        if s.task_role:
            spec["taskRoleArn"] = s.task_role
        if size is not None:
            cls._beyond_fargate_spec(spec, size)
        return spec

    @staticmethod
    def _beyond_fargate_spec(spec: dict[str, Any], size: sizes.TaskSize) -> None:
        """What a task definition needs for ``size`` beyond a Fargate task's (in place).

        - Managed instances: ``requiresCompatibilities`` MANAGED_INSTANCES (validated for that
          capacity; its networkMode is awsvpc as on Fargate, and the task definition may give the
          task-level cpu and memory:
          https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters-managed-instances.html);
          its GPUs as the container's ``resourceRequirements`` GPU count
          (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-gpu-specifying.html).
        - EBS scratch: a volume ``configuredAtLaunch`` (RunTask's volumeConfigurations give its
          size and role: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/specify-ebs-config.html),
          mounted at SCRATCH_PATH, which is the task's TMPDIR (``task_script`` makes its own
          directory there), and at each mount point the task's ``disks`` names (``/mnt/data 500
          SSD``), where its command will write. The volume is root's; for a non-root user named in the container
          definition ECS grants its group read and write
          (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ebs-non-root-behavior.html). We
          keep the image's USER, which ECS may not see, so ``task_script`` falls back to /tmp
          where the scratch directory cannot be made.
        """
        container = spec["containerDefinitions"][0]
        if size.capacity == MANAGED_INSTANCES:
            spec["requiresCompatibilities"] = [MANAGED_INSTANCES]
        if size.gpus:
            container["resourceRequirements"] = [{"type": "GPU", "value": str(size.gpus)}]
        if size.scratch_gib:
            spec["volumes"].append({"name": SCRATCH_VOLUME, "configuredAtLaunch": True})
            efs = [m["containerPath"].rstrip("/") for m in container["mountPoints"]]
            taken: list[str] = []
            for path in dict.fromkeys((SCRATCH_PATH, *size.scratch_paths)):  # (/mnt/scratch named too: once)
                clash = next((t for t in efs + taken if path == t or path.startswith(t + "/") or t.startswith(path + "/")), None)
                if clash is not None:
                    where = "the EFS file system's mount point, where the task's own directory is" if clash in efs else "another"
                    raise WDL.Error.RuntimeError(
                        f"runtime.disks mount point {path} overlaps {clash} ({where}): name another, such as /mnt/data"
                    )
                # (one volume, mounted at each path the disks name: ECS attaches one EBS volume
                # to a task, https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ebs-volumes.html)
                container["mountPoints"].append({"sourceVolume": SCRATCH_VOLUME, "containerPath": path, "readOnly": False})
                taken.append(path)
            container["environment"] = [{"name": "TMPDIR", "value": SCRATCH_PATH}]

    @staticmethod
    def placement_kind(size: sizes.TaskSize) -> str:
        """What of ``size`` its task definition depends on ("" for a plain Fargate task): tasks
        of one image share a task definition per kind."""
        parts = []
        if size.capacity != sizes.FARGATE:
            parts.append(size.capacity)
        if size.gpus:
            parts.append(f"gpus={size.gpus}")
        if size.scratch_gib:
            parts.append(":".join(("scratch", *size.scratch_paths)))
        return ",".join(parts)

    @classmethod
    def _image_lock(cls, image: str) -> threading.Lock:
        with cls._td_guard:
            return cls._td_locks.setdefault(image, threading.Lock())

    @classmethod
    def task_definition(
        cls, logger: logging.Logger, image: str, run_id: str = "", size: sizes.TaskSize | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """The task definition ARN for ``image`` (and what of ``size`` it depends on,
        ``placement_kind``): found by content hash, registered if new. Known images return at
        once; a new image waits only for its own registration. With ``run_id`` (the pipeline's
        run), its tasks mount only that run's directory (``run_volume``)."""
        kind = cls.placement_kind(size) if size is not None else ""
        key = f"{image}|{kind}" if kind else image
        found = cls._task_definitions.get(key)
        if found:
            return found
        with cls._image_lock(key):
            found = cls._task_definitions.get(key)
            if found:
                return found
            spec = cls.task_definition_spec(image, cls.run_volume(logger, run_id, tags), size)
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
                cls._pace_registration()
                arn = ecs.register_task_definition(family=family, **spec)["taskDefinition"][
                    "taskDefinitionArn"
                ]
                logger.notice(_("registered task definition", image=image, kind=kind or None, arn=arn))  # type: ignore[attr-defined]
            cls._task_definitions[key] = arn
            return arn

    # -- one task -------------------------------------------------------------------------------

    def on_spot(self) -> bool:
        """Whether this attempt runs on Spot capacity (FARGATE_SPOT, or the Spot managed-instances
        capacity provider for a task beyond Fargate, where there is one): the task is preemptible
        and its budget of interruptions is not spent yet (miniwdl retries up to ``preemptible``
        interruptions); then it runs On-Demand."""
        budget = int(self.runtime_values.get("preemptible", 0) or 0)
        size = self.fargate_size()
        if size.capacity == MANAGED_INSTANCES and not self.settings.managed_instances_providers(size.gpus)[1]:
            return False
        return self.settings.spot and self._interruptions < budget

    def public_ip(self) -> bool:
        """Whether the task's network interface gets a public IPv4 address: on Fargate as
        ``assign_public_ip`` says; never on managed instances, where an awsvpc task's interface has
        a private address only (the instance, which pulls the image and ships the logs, has its
        own): https://docs.aws.amazon.com/AmazonECS/latest/developerguide/managed-instance-networking.html
        and, as for every awsvpc task on EC2,
        https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-configure-network.html"""
        return self.settings.assign_public_ip and self.fargate_size().capacity != MANAGED_INSTANCES

    def capacity(self) -> str:
        """Where this attempt runs: FARGATE, FARGATE_SPOT, MANAGED_INSTANCES or MANAGED_INSTANCES_SPOT."""
        if self.fargate_size().capacity == MANAGED_INSTANCES:
            return MANAGED_INSTANCES_SPOT if self.on_spot() else MANAGED_INSTANCES
        return SPOT if self.on_spot() else "FARGATE"

    def placement(self) -> dict[str, Any]:
        """RunTask's fields saying where the attempt runs: ``launchType`` FARGATE, or a capacity
        provider strategy of one provider (FARGATE_SPOT, or one of the cluster's managed-instances
        ones: the GPU ones for a task with GPUs, the CPU-only ones otherwise); a request has one or
        the other, never both (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html)."""
        capacity = self.capacity()
        on_demand, spot = self.settings.managed_instances_providers(self.fargate_size().gpus)
        provider = {SPOT: SPOT, MANAGED_INSTANCES: on_demand, MANAGED_INSTANCES_SPOT: spot}.get(capacity)
        if provider is None:
            return {"launchType": "FARGATE"}
        return {"capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1}]}

    def scratch_volume(self, tags: list[dict[str, str]]) -> list[dict[str, Any]]:
        """RunTask's ``volumeConfigurations`` for a task with an EBS scratch volume (none
        otherwise): gp3, encrypted, ext4, deleted with the task, tagged as the task is but for
        the driver and the run's name (``volume_tags``)
        (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_TaskManagedEBSVolumeConfiguration.html)."""
        size = self.fargate_size()
        if not size.scratch_gib:
            return []
        return [
            {
                "name": SCRATCH_VOLUME,
                "managedEBSVolume": {
                    "sizeInGiB": size.scratch_gib,
                    "volumeType": "gp3",
                    "encrypted": True,
                    "roleArn": self.settings.ebs_volume_role,
                    "filesystemType": "ext4",
                    "terminationPolicy": {"deleteOnTermination": True},
                    "tagSpecifications": [{"resourceType": "volume", "tags": volume_tags(tags)}],
                },
            }
        ]

    def run_task_request(self, logger: logging.Logger, script: str, token: str | None = None) -> dict[str, Any]:
        """The RunTask request of one attempt; ``token``: its clientToken (fresh if not given)."""
        s = self.settings
        if "inlineDockerfile" in self.runtime_values:  # (miniwdl's docker backend builds it; ECS runs images only)
            raise ImageUnusable(
                f"task {self.run_id}: runtime.inlineDockerfile is not supported by aws_fargate (ECS runs images from "
                "a registry, it builds none): build the image, push it (to ECR, say) and name it in runtime.docker"
            )
        problem = images.ecs_image_problem(self.image_uri())
        if problem:  # (said before RegisterTaskDefinition refuses it; no retry would change it)
            raise ImageUnusable(f"task {self.run_id}: image {self.pulled_image()} is not one ECS can run: {problem}")
        size = self.fargate_size()
        overrides: dict[str, Any] = {
            "cpu": str(size.cpu),
            "memory": str(size.memory),
            "containerOverrides": [
                {
                    "name": CONTAINER_NAME,
                    "command": [script],  # to the task definition's entryPoint, /bin/sh -c
                    "cpu": size.cpu,
                    "memory": size.memory,
                }
            ],
        }
        if size.ephemeral_gib:
            overrides["ephemeralStorage"] = {"sizeInGiB": size.ephemeral_gib}
        length = len(json.dumps(overrides, separators=(",", ":")))
        if length > MAX_OVERRIDES_CHARS:  # (said before RunTask refuses it: its script's paths are too long)
            raise WDL.Error.RuntimeError(
                f"task {self.run_id}: its RunTask overrides would be {length} characters, over ECS's "
                f"{MAX_OVERRIDES_CHARS}: the task's directory path is {len(self.host_dir)} characters "
                f"({self.host_dir}); shorten the run's name or the workflow's call and subworkflow names"
            )
        tags = task_tags(self.tagged_run, self._driver or "unknown", self.run_id, self.run_tags)
        request: dict[str, Any] = {
            "cluster": s.cluster,
            "taskDefinition": self.task_definition(logger, self.image_uri(), self.pipeline_run_id, size, self.run_tags),
            "count": 1,
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(s.subnets),
                    "securityGroups": [s.efs_security_group, *s.security_groups],
                    "assignPublicIp": "ENABLED" if self.public_ip() else "DISABLED",
                }
            },
            "overrides": overrides,
            "startedBy": runs.started_by(self.tagged_run),
            "tags": tags,
            "enableECSManagedTags": True,
            # idempotent: botocore's retries of this request, and the launcher's after a lost
            # answer, return the task ECS started rather than starting another
            "clientToken": token or client_token(),
            **self.placement(),
        }
        volumes = self.scratch_volume(tags)
        if volumes:
            request["volumeConfigurations"] = volumes
        return request

    def _mark(self, **changes: Any) -> None:
        """Update this attempt's record for the run report."""
        if self._attempt is not None:
            attempts.LOG.update(self._attempt, **changes)

    def _count_launch(self) -> None:
        """Take one of the run's ``max_tasks_per_run`` launches, or fail this task naming the limit
        (before any request: RunTask is never called past it)."""
        cap = self.settings.max_tasks_per_run
        with self._launches_guard:
            if FargateTaskContainer._launches >= cap:
                message = (
                    f"task {self.run_id} not launched: the run has launched its maximum of {cap} ECS tasks "
                    "(retries included); the limit is the stack parameter MaxTasksPerRun "
                    "([aws_fargate] max_tasks_per_run when miniwdl runs on its own)"
                )
                self._mark(outcome=attempts.FAILED_TO_START, detail=message)
                raise TaskLimitReached(message)
            FargateTaskContainer._launches += 1

    @property
    def tagged_run(self) -> str:
        """The run its tasks are tagged with, whose gate (``limits``) it takes turns at: the
        pipeline's run id, or ``limits.STANDALONE`` for miniwdl run on its own."""
        return self.pipeline_run_id or limits.STANDALONE

    def _gate(self) -> limits.Gate | None:
        """The run's gate (``limits``), when the run has limits."""
        run_limits = config.run_limits(self.cfg)
        if not run_limits.any:
            return None
        return limits.gate_for(self.tagged_run, run_limits, config.option(self.cfg, "prices"))  # type: ignore[arg-type]

    def _take_turn(self, logger: logging.Logger, terminating: Callable[[], bool]) -> limits.Turn | None:
        """Wait until the run's limits let this attempt run (``limits.Gate.take``): its turn (None
        when the run has no limits); Terminated if the run is stopped meanwhile, RunLimitReached
        if they never will."""
        gate = self._gate()
        if gate is None:
            return None
        committed = 0.0
        if gate.limits.max_cost_usd and self._attempt is not None:  # (the least it costs once launched, at its capacity)
            prices = config.option(self.cfg, "prices")
            committed = minimum_usd(dataclasses.replace(self._attempt, capacity=self.capacity()), prices)  # type: ignore[arg-type]
        try:
            return gate.take(self.fargate_size().cpu / 1024, terminating, who=f"task {self.run_id}", committed_usd=committed)
        except LaunchCancelled:
            raise Terminated(quiet=True) from None
        except (limits.TooBig, limits.LaunchRefused) as exn:
            raise RunLimitReached(str(exn)) from None

    def _give_back(self, turn: limits.Turn | None) -> None:
        gate = limits.find(self.tagged_run)
        if turn is not None and gate is not None:
            gate.give_back(turn)

    def _attempt_over(self, job: Job) -> None:
        assert isinstance(job, FargateJob)
        turn, job.turn = job.turn, None
        self._give_back(turn)

    def _halted(self, job: Job) -> Exception | None:
        assert isinstance(job, FargateJob)
        gate = limits.find(self.tagged_run) if job.turn is not None else None
        why = gate.halted_error() if gate is not None else None
        return RunLimitReached(f"task {self.run_id} stopped: {why}") if why else None

    def _open_to_any_user(self) -> None:
        """Without an EFS access point (miniwdl run on its own, EFS mounted whole), the task's
        files are its image's user's to write, whoever that is (a biocontainers image's is not the
        driver's): the work directory and the command's logs made writable by all, as miniwdl's
        Docker backend makes them for the container's user (its ``chmod_R_plus``). Through an access
        point every file is the access point's POSIX user's already."""
        if self.settings.efs_access_point:
            return
        os.chmod(self.host_work_dir(), 0o777)
        for path in (self.host_stdout_txt(), self.host_stderr_txt()):
            if os.path.exists(path):
                os.chmod(path, 0o666)

    def after_command(self) -> list[str]:
        """Without an EFS access point (miniwdl run on its own by a user who is not root), the
        files a root image's command wrote are given back to the invoking user, as miniwdl's
        Docker backend gives them (``[file_io] chown``, on by default): root's files failed the
        task at miniwdl's own chmod of its directory, and could not be removed by the user.
        Through an access point every file is its POSIX user's already."""
        if self.settings.efs_access_point or not self.cfg.get_bool("file_io", "chown") or os.geteuid() == 0:
            return []
        owner, top = f"{os.geteuid()}:{os.getegid()}", shlex.quote(self.host_dir)
        inputs = shlex.quote(os.path.join(self.host_work_dir(), "_miniwdl_inputs"))
        # (its inputs left as they are: hard links of shared files, the staged inputs' and the
        # call cache's, whose owner is not this task's to change)
        return [f'[ "$(id -u 2>/dev/null)" != 0 ] || find {top} -path {inputs} -prune -o -exec chown -h {owner} {{}} + 2>/dev/null || true']

    def _start(self, logger: logging.Logger, script: str, terminating: Callable[[], bool]) -> FargateJob:
        self._open_to_any_user()
        turn = self._launching = self._take_turn(logger, terminating)
        try:
            job = self._launch(logger, script, terminating)
        except BaseException:  # (no job for the attempt to end: the turn goes back at once)
            self._give_back(turn)
            raise
        finally:
            self._launching = None
        job.turn = turn
        return job

    def _launch(self, logger: logging.Logger, script: str, terminating: Callable[[], bool]) -> FargateJob:
        """RunTask for this attempt (through the launcher, at the account's pace); its job."""
        request = self.run_task_request(logger, script, client_token())
        self._count_launch()
        assert self._launcher is not None and self._poller is not None
        try:
            task = self._launcher.launch(request, logger, cancelled=terminating)
        except LaunchCancelled:
            raise Terminated(quiet=True) from None
        except LaunchFailed as exn:
            self._mark(outcome=attempts.FAILED_TO_START, detail=str(exn))
            if exn.capacity:  # not the task's fault: retried if its preemptible budget allows
                self._interruptions += 1
                raise Interrupted(str(exn)) from exn
            raise WDL.Error.RuntimeError(f"task {self.run_id}: {exn}") from exn
        try:
            return self._launched(logger, request, task)
        except BaseException:  # (RunTask started a task no attempt will follow: it is stopped)
            self._stop_task(logger, task["taskArn"], "the driver failed as it launched the task")
            raise

    def _launched(self, logger: logging.Logger, request: dict[str, Any], task: dict[str, Any]) -> FargateJob:
        """The job of the task RunTask started for this attempt: watched, marked in the attempts
        log, logged."""
        assert self._poller is not None
        arn = task["taskArn"]
        job = FargateJob(
            self._poller.watch(arn), request["taskDefinition"], request["clientToken"], self._capacity_of(request), time.time()
        )
        turn, gate = self._launching, limits.find(self.tagged_run)
        if turn is not None and gate is not None:
            # its least cost moves from the gate's pending to its estimate before the attempt is
            # marked launched (which the next estimate counts): never counted twice meanwhile
            gate.launched(turn)
        self._mark(launched=job.launched_at, task_arn=arn, capacity=job.capacity)
        self.failure_info = self._task_info(task, job.capacity)
        size = request["overrides"]
        logger.notice(  # type: ignore[attr-defined]
            _(
                "ECS task launched",
                arn=arn,
                capacity=job.capacity,
                cpu=size["cpu"],
                memory=size["memory"],
                client_token=request["clientToken"],
                **{k: v for k, v in self.failure_info.items() if k in ("log_group", "log_stream")},
                **({"capacity_provider": provider} if (provider := self._provider_of(request)) else {}),
            )
        )
        return job

    def _task_info(self, task: dict[str, Any], capacity: str) -> dict[str, Any]:
        info: dict[str, Any] = {"ecs_task": task["taskArn"], "capacity": capacity}
        if self.settings.log_group:
            region = aws.client("ecs").meta.region_name
            stream = f"miniwdl/{CONTAINER_NAME}/{task['taskArn'].rsplit('/', 1)[-1]}"
            info.update(
                log_group=self.settings.log_group,
                log_stream=stream,
                log_url=log_url(region, self.settings.log_group, stream),
            )
        return info

    def _poll(self, logger: logging.Logger, job: Job, wait: float) -> JobStatus:
        assert isinstance(job, FargateJob)
        watch = job.watch
        # a running task's thread wakes when the poller brings news of it, else to check whether
        # the run is terminating: every ``wait`` seconds while few run, less often when thousands
        # do (``check_interval``: about 100 such wakes a second in all)
        assert self._poller is not None
        job.seen_version = watch.wait(max(wait, check_interval(self._poller.watched())), job.seen_version)
        if watch.missing:
            return self._missing(logger, job)
        task = watch.description or {}
        state = task.get("lastStatus", "PROVISIONING")
        if state != job.last_state:
            logger.info(_("ECS task status", arn=job.arn, status=state))
            job.last_state = state
        if state == "PROVISIONING" and job.capacity in (MANAGED_INSTANCES, MANAGED_INSTANCES_SPOT):
            self._provisioning(logger, job)
        self._note_image_digest(task)
        pulled = epoch(task.get("pullStartedAt"))
        if pulled and self._attempt is not None and self._attempt.billing_start is None:
            self._mark(billing_start=pulled)  # Fargate bills from the start of the image pull
        started = epoch(task.get("startedAt"))
        if state != "STOPPED":
            return JobStatus(running=state == "RUNNING", detail=task, started_at=started)
        containers = task.get("containers") or [{}]
        return JobStatus(
            stopped=True,
            exit_code=containers[0].get("exitCode"),
            reason=task.get("stoppedReason", ""),
            detail=task,
            started_at=started,
            stopped_at=epoch(task.get("stoppedAt")),
        )

    def _note_image_digest(self, task: dict[str, Any]) -> None:
        """Record the digest of the image ECS pulled (DescribeTasks ``containers[].imageDigest``,
        known once the pull is done: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Container.html),
        once per attempt, for the run's provenance."""
        attempt = self._attempt
        if attempt is None or attempt.image_digest:
            return
        for container in task.get("containers") or []:
            if container.get("name", CONTAINER_NAME) == CONTAINER_NAME and container.get("imageDigest"):
                self._mark(image_digest=container["imageDigest"])
                return

    def _missing(self, logger: logging.Logger, job: FargateJob) -> JobStatus:
        """DescribeTasks answers MISSING. Within ``missing_grace`` the task is just not visible
        yet (ECS is eventually consistent: the RunTask reference says to poll DescribeTasks with
        backoff after RunTask, https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html);
        after it, stop it (so it cannot run and bill unseen) and fail the attempt as an
        infrastructure failure, retried like a capacity failure."""
        unknown = job.watch.unknown_for()
        grace = self.settings.missing_grace
        if unknown < grace:
            if job.last_state != "MISSING":
                logger.info(_("ECS does not know the task yet (MISSING): waiting", arn=job.arn, grace=grace))
                job.last_state = "MISSING"
            return JobStatus(running=False)
        message = (
            f"ECS did not know task {job.arn} for {unknown:.0f}s after "
            f"{'RunTask' if job.watch.description is None else 'it was last seen'} (DescribeTasks answered "
            f"MISSING; missing_grace = {grace:g}s): stopped it; the attempt is retried if the task's "
            "preemptible or maxRetries allows"
        )
        self._abandon(logger, job, "miniwdl-fargate: ECS did not know the task within missing_grace", "missing", message)

    def _provisioning(self, logger: logging.Logger, job: FargateJob) -> None:
        """A managed-instances task still waiting for an instance (PROVISIONING): past
        ``provisioning_timeout`` stop it (no instance type allowed may fit it, or none is to be
        had) and fail the attempt as an infrastructure failure, retried as ``_missing``'s is."""
        limit = self.settings.provisioning_timeout
        waited = time.time() - job.launched_at
        if not limit or waited < limit:
            return
        size = self.fargate_size()
        gpus = f", {size.gpus} GPU{'s' if size.gpus > 1 else ''}" if size.gpus else ""
        message = (
            f"no managed instance took task {self.run_id} within provisioning_timeout ({limit:g}s; it asked for "
            f"{size.vcpu:g} vCPU, {size.memory / sizes.GIB:g} GiB{gpus} on {job.capacity}): stopped it; the attempt is "
            "retried if the task's preemptible or maxRetries allows (check the stack's ManagedInstances* parameters "
            "and the account's EC2 quotas for those instance types)"
        )
        self._abandon(logger, job, "miniwdl-fargate: no instance within provisioning_timeout", "provisioning", message)

    def _abandon(self, logger: logging.Logger, job: FargateJob, stop_reason: str, what: str, message: str) -> NoReturn:
        """Stop a task that never started (so it cannot run and bill unseen) and end the attempt
        as an infrastructure failure (``Interrupted``: retried as preemptible, then maxRetries,
        allows), saying ``message`` in the attempt's detail and its failure info under ``what``."""
        self._stop(logger, job, stop_reason)
        self._mark(outcome=attempts.FAILED_TO_START, detail=message)
        self.failure_info = dict(self.failure_info or {}, **{what: message})
        self._interruptions += 1
        raise Interrupted(message)

    def _stop(self, logger: logging.Logger, job: Job, reason: str) -> None:
        assert isinstance(job, FargateJob)
        if job.watch.stopped or job.stop_sent:
            return
        job.stop_sent = True
        self._stop_task(logger, job.arn, reason)

    def _stop_task(self, logger: logging.Logger, arn: str, reason: str) -> None:
        """StopTask (its failure logged, not raised); the poller stops watching the task. Its
        answer describes the task: a pull no poll saw yet is the attempt's start of billing (a
        task whose pull began bills at least a minute, stopped or not)."""
        logger.warning(_("stopping ECS task", arn=arn, reason=reason))
        try:
            stopped = aws.client("ecs").stop_task(cluster=self.settings.cluster, task=arn, reason=reason[:255]).get("task") or {}
            pulled = epoch(stopped.get("pullStartedAt"))
            attempt = self._attempt
            if pulled and attempt is not None and attempt.task_arn == arn and attempt.billing_start is None:
                self._mark(billing_start=pulled)
        except Exception as exn:
            logger.error(_("StopTask failed", arn=arn, error=str(exn)))
        finally:
            assert self._poller is not None
            self._poller.forget(arn)

    def _exit_code(self, logger: logging.Logger, job: Job, status: JobStatus) -> int:
        """Act on what the stopped task means (``stops.ending``, a pure function of ECS's
        description): the command's exit code, out of memory, an interruption (retried), a
        failure to start, or a stop from outside."""
        assert isinstance(job, FargateJob)
        task = status.detail or {}
        end = stops.ending(task)
        info = dict(self.failure_info or {})
        info.update({k: task[k] for k in ("stopCode", "stoppedReason") if task.get(k)})
        if end.container_reason:
            info["container_reason"] = end.container_reason
        self.failure_info = info
        if end.verdict is stops.Verdict.EXITED:
            if end.exit_code != 0 and self.settings.efs_access_point and not self.script_ran():
                # its first line never ran: ECS says only that the container exited (the runtime's
                # "exec format error" or "no such file" is in its log); not the command's failure
                # (through the run's access point the script can always write its marker)
                raise ImageUnusable(
                    f"task {self.run_id}: image {self.pulled_image()} never ran the task's script (its container exited "
                    f"{end.exit_code} before the first line): the image has no /bin/sh, or is built for another CPU than "
                    "linux/amd64 (\"exec format error\" in the task's log: build and push it with --platform linux/amd64); "
                    "not retried"
                )
            return end.exit_code  # type: ignore[return-value]  (EXITED always has one)
        if end.verdict is stops.Verdict.INTERRUPTED:
            self._interrupted(logger, job, task, end)
        if end.verdict is stops.Verdict.NO_EXIT_CODE:
            raise WDL.Error.RuntimeError(f"task {self.run_id}: ECS task stopped without an exit code ({end.detail})")
        self._mark(outcome=end.outcome, detail=end.detail)
        if end.verdict is stops.Verdict.OUT_OF_MEMORY:
            job.out_of_memory = True
            return end.exit_code  # type: ignore[return-value]  (137 when ECS gave none)
        if end.verdict is stops.Verdict.STOPPED:
            raise WDL.Error.RuntimeError(
                f"task {self.run_id}: its ECS task {task.get('taskArn')} was stopped from outside "
                f"({end.stop_code}: {end.reason or 'no reason given'}; {end.meaning})"
                + (f"; exit status {end.exit_code}" if end.exit_code is not None else "")
            )
        return self._failed_to_start(logger, end)

    def _interrupted(self, logger: logging.Logger, job: FargateJob, task: dict[str, Any], end: stops.Ending) -> NoReturn:
        """Spot reclaimed the task, or ECS stopped it for its infrastructure: whatever the
        container exited with after its SIGTERM, not the task's fault. Retried as miniwdl
        retries an interruption (``preemptible``)."""
        self._interruptions += 1
        logger.warning(
            _("ECS task interrupted", arn=task.get("taskArn"), stop_code=end.stop_code, interruptions=self._interruptions)
        )
        self._mark(outcome=end.outcome, detail=end.detail, exit_code=end.exit_code)
        if end.stop_code == "SpotInterruption":
            raise Interrupted(f"{'Fargate Spot' if job.capacity == SPOT else 'Spot'} reclaimed the task ({end.reason})")
        raise Interrupted(f"ECS stopped the task ({end.stop_code}: {end.reason})")

    def _failed_to_start(self, logger: logging.Logger, end: stops.Ending) -> int:
        """TaskFailedToStart: an image pull error by ``stops.PULL_ERRORS`` (again after a backoff,
        or fail at once naming the image); any other reason: permanent ones fail, the rest start
        again after a backoff while ``start_retries`` lasts, then count as interruptions."""
        reason = end.reason
        if end.verdict is stops.Verdict.IMAGE_NOT_PULLABLE:
            assert end.pull is not None
            raise ImageUnusable(end.pull.after(
                f"task {self.run_id}: image {self.pulled_image()} cannot be pulled ({end.pull.what}); "
                f"not retried. ECS: {reason}"
            ))
        if end.verdict is stops.Verdict.PULL_AGAIN:
            assert end.pull is not None
            return self._pull_again(logger, end.pull, reason)
        if end.verdict is stops.Verdict.CANNOT_START:
            if stops.start_error(reason):  # (the image's doing: no try would start it)
                raise ImageUnusable(f"task {self.run_id}: image {self.pulled_image()} cannot run the task; not retried: {end.detail}")
            raise WDL.Error.RuntimeError(f"task {self.run_id}: ECS could not start the task: {reason}")
        s = self.settings
        if self._start_retries < s.start_retries:  # (its command never ran: starting it again is safe)
            self._start_retries += 1
            raise StartAgain(
                f"ECS task failed to start: {reason}: start retry {self._start_retries} of {s.start_retries}",
                backoff(s.start_retry_delay, self._start_retries),
            )
        self._interruptions += 1
        tries = f" (after {self._start_retries + 1} tries, start_retries = {s.start_retries})" if s.start_retries else ""
        remedy = stops.start_remedy(reason)
        raise Interrupted(f"ECS task failed to start: {reason}{tries}" + (f". {remedy}" if remedy else ""))

    def _pull_again(self, logger: logging.Logger, pull: stops.PullError, reason: str) -> NoReturn:
        """A pull that failed for a passing reason: start again after an exponential, jittered
        delay while ``pull_retries`` lasts; then fail, naming the image."""
        s = self.settings
        if self._pull_retries >= s.pull_retries:
            raise WDL.Error.RuntimeError(pull.after(
                f"task {self.run_id}: image {self.pulled_image()} could not be pulled ({pull.what}) "
                f"after {self._pull_retries + 1} tries (pull_retries = {s.pull_retries}). ECS: {reason}"
            ))
        self._pull_retries += 1
        raise StartAgain(
            f"image {self.pulled_image()} could not be pulled ({pull.what}): pull retry "
            f"{self._pull_retries} of {s.pull_retries}. ECS: {reason}",
            backoff(s.pull_retry_delay, self._pull_retries),
        )

    def oom_retry_budget(self) -> int:
        """How many times the task may run again with more memory: ``oom_retries``, and for a task
        that does not say how much memory it needs (sized at ``default_memory_mb``, a limit
        Fargate holds it to, where miniwdl's Docker backend sets none) enough doublings to reach
        Fargate's most (``UNDECLARED_OOM_RETRIES``), unless ``oom_retries`` is 0."""
        own = self.settings.oom_retries
        return own if self._memory_declared or own == 0 else max(own, UNDECLARED_OOM_RETRIES)

    def _retry_attempt(self, logger: logging.Logger, job: Job, exit_code: int) -> bool:
        """Out of memory: run again at once with more memory, while ``oom_retries`` allows and
        Fargate has a bigger size. Otherwise the task fails as usual, and its error says why it
        was not retried."""
        if not (isinstance(job, FargateJob) and job.out_of_memory):
            return False
        size = self.fargate_size()
        info = dict(self.failure_info or {})
        here = f"{size.vcpu:g} vCPU / {size.memory / sizes.GIB:g} GiB"
        budget = self.oom_retry_budget()
        if self._oom_retries >= budget:
            undeclared = "" if self._memory_declared else "; the task does not say how much memory it needs: give it runtime.memory"
            info["out_of_memory"] = (
                f"killed for exceeding its memory at {here}; not retried "
                f"(oom_retries = {budget}, spent: {self._oom_retries}){undeclared}"
            )
            self.failure_info = info
            return False
        try:
            bigger = sizes.next_size_up(size, self.settings.oom_memory_factor, self.capacities)
        except sizes.SizeError as exn:
            info["out_of_memory"] = f"killed for exceeding its memory at {here}, and {exn}: not retried"
            self.failure_info = info
            logger.error(_("task ran out of memory at Fargate's largest size", size=here))
            return False
        self._oom_retries += 1
        logger.warning(
            _(
                "task ran out of memory: retrying with more memory",
                old_size=here,
                new_size=f"{bigger.vcpu:g} vCPU / {bigger.memory / sizes.GIB:g} GiB",
                oom_retry=self._oom_retries,
                oom_retries=budget,
            )
        )
        self._size = bigger
        self.failure_info = None
        return True


def _new_process_after_fork() -> None:
    """A forked child runs the backend as a new process would (local mode forks its drivers from a
    preloaded process; the tests fork `miniwdl run`): its ``global_init`` runs again in it
    (``base._global_init_again_after_fork``), and what the parent registered or held is not the
    child's: its task definitions (perhaps of another account or endpoint), its run volume, the
    time of its last registration, and its locks, which a parent thread may have held at the fork.
    (A fork does not copy the poller's and launcher's threads; global_init makes new ones.)"""
    cls = FargateTaskContainer
    cls._task_definitions = {}
    cls._td_locks = {}
    cls._td_guard = threading.Lock()
    cls._run_volume, cls._run_volume_failure = None, None
    cls._run_volume_lock = threading.Lock()
    cls._registration_lock = threading.Lock()
    cls._registration_tokens = (REGISTER_BURST, 0.0)  # (pacing is per process: this one has registered nothing)
    cls._launches_guard = threading.Lock()


os.register_at_fork(after_in_child=_new_process_after_fork)
