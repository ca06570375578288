"""The ECS on Fargate runner: what Fargate would do with each task RunTask starts.

A WDL task (any task whose task definition is not the stack's driver's) runs in its actual image
with the local container engine, Podman or Docker, where one works (``containers``): the task
definition's entry point, command, environment and EFS mounts at their container paths, the
image's USER (writing EFS as the access point's user would, ``idmap``), no network, its memory as
the limit. Without an engine it runs as a host process in a strict sandbox (``sandbox``):
read-only root, unprivileged uid, private /tmp; forked from ``task_zygote`` (which sets the
sandbox up in the child, no interpreter started per task). The driver (our own image, not
available locally) runs as a host process in a private mount namespace, forked from
``driver_zygote`` (its libraries loaded, its parsers built), or in a stack from the runtime's
``python_zygote``, which forks the Lambda environments too. A child of either makes its own
namespaces, a user namespace too where local mode does not run as root (``NamespaceSupport``).
A local directory per filesystem stands in for EFS.
Like Fargate, the runner kills a task that uses more memory than its size and says so the way
Fargate does: exit code 137, container reason OutOfMemoryError. A task whose image pull is made
to fail (``faults.pull_failures``) stops before it starts, as Fargate's does: stop code
TaskFailedToStart, reason ``CannotPullContainerError: ...``.

The runner knows nothing of moto: it gets each task as a plain ``TaskSpec`` (``moto.hooks``
builds it at RunTask) and records what happens to it through a ``TaskState`` (``ecs_state``
writes it into moto; unit tests give it a fake).
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .. import aws, config, sweep
from ..driver_task import family_of
from . import idmap, owners, wakeups
from .containers import (
    NETWORK_ENV, NETWORKS, PULL_ENV, PULL_POLICIES, STACK_LABEL, ContainerSpec, Engine, Mount, choice, remove_cgroup,
)
from .faults import UNRUNNABLE_SCRIPT, Faults
from .forkserver import LazyForkServer
from .jobs import ContainerJob, ForkedJob, HostJob
from .sandbox import StrictSandbox

log = logging.getLogger("miniwdl-fargate.local")

ECS_STOPPED_REASON = "Essential container in task exited"
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"  # Fargate's words
MEMORY_CHECK_SECONDS = 0.25
STOP_KILLED_SECONDS = 5  # how long ``shutdown`` waits for tasks it killed to be recorded
SPOT_INTERRUPTION = "\0spot"  # a stop request that is Fargate Spot taking its capacity back
SHUTDOWN_REASON = "local mode shutting down"  # what stops, or does not start, a task as local mode stops
CGROUP_PARENT = "/miniwdl-fargate-local"
DRIVER_COMMAND = ["miniwdl-fargate", "driver"]  # the driver container's (template.yaml)
#: set to 0 to start every driver as a new process rather than fork it from ``driver_zygote``
DRIVER_FORK_ENV = "MINIWDL_FARGATE_LOCAL_DRIVER_FORK"
#: set to 0 to start every sandboxed WDL task as new processes rather than fork it from ``task_zygote``
TASK_FORK_ENV = "MINIWDL_FARGATE_LOCAL_TASK_FORK"
#: PutLogEvents' limits, which the awslogs driver keeps: a request holds at most 10,000 events and
#: 1 MiB, counting each event as its message in UTF-8 plus 26 bytes; an event is at most 256 KiB, so
#: a longer line goes as several events of at most 256 KiB - 26 bytes of message (as the driver's do)
LOG_EVENT_OVERHEAD = 26
LOG_BATCH_BYTES = 1024 * 1024
LOG_BATCH_EVENTS = 10_000
LOG_MESSAGE_BYTES = 256 * 1024 - LOG_EVENT_OVERHEAD
#: how much of a container's log the shipper reads at a time (a large log is never read whole)
LOG_READ_BYTES = 1024 * 1024


class TaskStartError(Exception):
    """The task cannot start; the message is its stoppedReason, in ECS's words."""


def _owner(path: str) -> tuple[int, int]:
    """The (uid, gid) owning ``path``."""
    found = os.stat(path)
    return found.st_uid, found.st_gid


def _ci(mapping: dict[str, Any] | None, name: str, default: Any = None) -> Any:
    """Case-insensitive key lookup (CloudFormation-created ECS objects keep odd key casing)."""
    for key, value in (mapping or {}).items():
        if key.lower() == name.lower():
            return value
    return default


@dataclass(frozen=True)
class TaskSpec:
    """A task RunTask started, as the runner needs it: plain values (the task definition's
    container definition and volumes keep the key casing they were registered with, hence ``_ci``)."""

    task_arn: str
    id: str
    cluster_arn: str
    task_definition_arn: str
    family: str
    container: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, str]] = field(default_factory=list)
    capacity_provider_name: str | None = None
    #: RunTask's volumeConfigurations: the volumes the task definition left to be configured at launch
    volume_configurations: list[dict[str, Any]] = field(default_factory=list)
    cpu: str | None = None  # the task definition's
    memory: str | None = None  # the task definition's


class TaskState(Protocol):
    """Where the runner records what ECS would show of a task (``ecs_state.MotoTaskState``)."""

    def provisioning(self, task_arn: str) -> None: ...
    def set_status(self, task_arn: str, status: str) -> None: ...
    def last_status(self, task_arn: str) -> str | None: ...
    def stop_requested(self, task_arn: str, reason: str) -> None: ...
    def stopping(self, task_arn: str) -> None: ...
    def stopped(
        self, task_arn: str, stop_code: str, reason: str, exit_code: int | None = None, container_reason: str | None = None,
    ) -> None: ...
    def emit(self, task_arn: str) -> None: ...


class RunnerThreads:
    """Daemon threads that run the runner's tasks, one each, an idle one kept for the next task
    (up to ``idle_seconds``): handing a task to an idle thread is a queue put, where starting a
    thread waits until the new thread has the interpreter (``threading.Thread.start``: ~10 ms of
    RunTask's answer under a scatter's load). Daemon threads, as ever: an interpreter that exits
    does not wait for a task (``EcsRunner.shutdown`` stops them first)."""

    def __init__(self, name: str, idle_seconds: float = 60.0) -> None:
        self.name, self.idle_seconds = name, idle_seconds
        self._work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._changed = threading.Condition()
        self._idle = self._busy = self._started = 0

    def run(self, work: Callable[[], None]) -> None:
        """Run ``work`` in an idle thread, else in a new one."""
        with self._changed:
            self._busy += 1
            if self._idle > 0:
                self._idle -= 1  # (that thread's now: the next ``get`` of an idle one takes this)
                self._work.put(work)
                return
            self._started += 1
            name = f"{self.name}-{self._started}"
        threading.Thread(target=self._serve, args=(work,), name=name, daemon=True).start()

    def _serve(self, work: Callable[[], None]) -> None:
        while True:
            try:
                work()
            except Exception:  # noqa: BLE001 (the task's own handling failed: said, and the thread goes on)
                log.exception("local mode: a task's runner failed")
            with self._changed:
                self._busy -= 1
                self._idle += 1
                self._changed.notify_all()
            while True:
                try:
                    work = self._work.get(timeout=self.idle_seconds)
                    break
                except queue.Empty:
                    with self._changed:
                        if self._idle > 0:  # (else ``run`` has just handed this thread a task)
                            self._idle -= 1
                            return

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no task runs (at most ``timeout`` seconds); True if none does."""
        with self._changed:
            return self._changed.wait_for(lambda: self._busy == 0, timeout)

    @property
    def threads(self) -> int:
        """The threads there are now (busy or idle)."""
        with self._changed:
            return self._busy + self._idle


def _sweep(sweep: Callable[[], list[str]], done: str, thing: str) -> None:
    """Remove what local stacks killed outright left (``sweep``: the ``thing``s it ``done``, e.g.
    the containers it removed), saying so; never this stack's failure."""
    try:
        names = sweep()
    except Exception:
        log.exception("local mode: could not look for the %ss of stacks that were killed", thing)
        return
    if names:
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        log.warning("local mode: %s %d %s(s) left by local stacks that were killed: %s", done, len(names), thing, shown)


class EcsRunner:
    def __init__(
        self, state_dir: str, state: TaskState, faults: Callable[[], Faults],
        aws_environment: Callable[[], dict[str, str]], base_environment: Callable[[], dict[str, str]],
        logs: Callable[[], Any] = lambda: aws.client("logs"),
        driver_zygote: LazyForkServer | None = None,
    ) -> None:
        """``faults``, ``aws_environment`` and ``base_environment`` are the local runtime's (its
        faults may be replaced while it runs); ``logs``, the CloudWatch Logs client the awslogs
        driver writes with; ``driver_zygote``, a fork server of drivers its owner starts and stops
        (the runtime's ``python_zygote``, which forks Lambda environments too; its trial should be
        ``driver_trial``), else one of the runner's own (``driver_zygote``)."""
        self.state_dir = state_dir
        self.logs = logs
        self.state = state
        self._faults = faults
        self.aws_environment = aws_environment
        self.base_environment = base_environment
        self.efs_root = os.path.join(state_dir, "efs")
        self.logs_dir = os.path.join(state_dir, "logs")
        self._procs: dict[str, HostJob | ContainerJob] = {}
        #: tasks this runner started that ECS does not yet show STOPPED (kept by _stopped)
        self._active: set[str] = set()
        self._stop_requests: dict[str, str] = {}
        #: set once ``shutdown`` began: no task starts after it (a Lambda still running may ask)
        self._closing = False
        #: set once ``shutdown`` gave up waiting and killed the tasks still running
        self._killing = False
        #: the threads tasks run in (one each while it runs; idle ones wait for the next task)
        self._runners = RunnerThreads("fargate-task")
        self._lock = threading.Lock()
        self.namespaces = NamespaceSupport.detect()
        self.engine = Engine.detect(workdir=os.path.join(state_dir, "engine"))
        self.network = choice(os.environ, NETWORK_ENV, NETWORKS, "none")
        self.pull = choice(os.environ, PULL_ENV, PULL_POLICIES, "never")
        #: families of the stack's driver task definition (set once the stack is deployed)
        self.driver_families: set[str] = set()
        self._sandbox: StrictSandbox | None = None
        self._sandbox_checked = False
        self._idmap_problem: str | None = ""
        #: this stack's own folder of idmapped mounts (``idmap.claim``), once they work here
        self._idmapped_dir = ""
        #: this stack, as what it leaves behind names it (``owners``: its containers' STACK_LABEL;
        #: "" where /proc cannot tell, and then its containers are not labelled)
        try:
            self._identity = owners.identity()
        except OSError:
            self._identity = ""
        self._containers_swept = False
        self._warned: set[str] = set()
        #: access point id -> its root directory (``_access_point_root``)
        self._access_point_roots: dict[str, str] = {}
        self._access_point_lock = threading.Lock()
        log.info(
            "local Fargate: WDL tasks run %s",
            f"in {self.engine.kind} containers (network {self.network}, pull {self.pull})" if self.engine
            else "as sandboxed host processes (no container engine; MINIWDL_FARGATE_LOCAL_ENGINE)",
        )
        if self.engine is not None and self.engine.limits_ignored:
            log.warning(
                "local mode: rootless %s here (cgroup %s, controllers: %s) cannot hold containers to their memory "
                "limits: a WDL task that would run out of memory on Fargate (exit 137, OutOfMemoryError) runs on here",
                self.engine.kind, self.engine.cgroup_version or "?", ", ".join(self.engine.cgroup_controllers) or "none",
            )
        self._launched_by_driver: dict[str, int] = {}
        # drivers and sandboxed tasks are forked from a fork server (each child makes its own
        # namespaces, as the namespace prefix would: ``user_namespace`` in its request)
        forking = hasattr(os, "pidfd_open")
        # (each server's first child is a trial: where its children cannot be made, new processes)
        self._fork_drivers = forking and os.environ.get(DRIVER_FORK_ENV) != "0"
        self._own_driver_zygote = driver_zygote is None
        self.driver_zygote = driver_zygote or LazyForkServer(
            "miniwdl_fargate.local.driver_zygote", os.path.join(state_dir, "driver-zygote"), base_environment,
            self._fork_drivers, self.driver_trial,
        )
        self.task_zygote = LazyForkServer(
            "miniwdl_fargate.local.task_zygote", os.path.join(state_dir, "task-zygote"), base_environment,
            forking and os.environ.get(TASK_FORK_ENV) != "0", self._task_trial,
        )
        os.makedirs(self.efs_root, exist_ok=True)
        os.makedirs(self.logs_dir, exist_ok=True)

    @property
    def faults(self) -> Faults:
        return self._faults()

    def efs_environment(self, task: Any) -> dict[str, str]:
        """What makes local "EFS" (an ordinary directory) as strict as EFS for a driver task: at
        most 177 hard links per file (``backend.links``), or what the caller set. WDL tasks
        (tagged with their driver) get nothing: their command sees the environment it would on
        Fargate."""
        if any(t.get("key") == sweep.DRIVER_TAG for t in (getattr(task, "tags", None) or [])):
            return {}
        name = config.env_name("efs_link_limit")
        return {name: os.environ.get(name) or str(config.EFS_LINK_LIMIT)}


    # -- ECS on Fargate ---------------------------------------------------------------------------

    def ecs_task_started(self, task: TaskSpec) -> None:
        """RunTask started ``task`` (PROVISIONING from now): run it, in a thread of the runner's
        pool (an idle one takes it at once; a new thread would hold up RunTask's answer until it
        got the interpreter: ~10 ms under a scatter's load)."""
        self.state.provisioning(task.task_arn)
        with self._lock:
            closing = self._closing
            if not closing:
                self._active.add(task.task_arn)
        if closing:  # (a RunTask as local mode stops, e.g. from a Lambda still running: not started)
            self.state.stopped(task.task_arn, "TaskFailedToStart", SHUTDOWN_REASON)
            return
        self._runners.run(lambda: self._run_task(task))
        self._maybe_kill_driver(task)

    def _maybe_kill_driver(self, task: TaskSpec) -> None:
        """Fault injection: kill a driver (SIGKILL, as an OOM or a crash would) once it has
        launched ``kill_driver_after_tasks`` WDL tasks."""
        driver = {t.get("key"): t.get("value") for t in (task.tags or [])}.get(sweep.DRIVER_TAG, "")
        limit = self.faults.kill_driver_after_tasks
        if not driver.startswith("arn:") or limit is None:
            return
        with self._lock:
            count = self._launched_by_driver[driver] = self._launched_by_driver.get(driver, 0) + 1
            proc = self._procs.get(driver)
        if count >= limit and proc is not None and proc.running():
            self.faults.kill_driver_after_tasks = None
            self.faults.injected.append("kill_driver")
            log.warning("injected fault: killing driver %s after %d task(s)", driver, count)
            proc.kill()

    def ecs_stop_task(self, task_arn: str, reason: str) -> bool:
        """StopTask: ask the task's container to stop (SIGTERM, then SIGKILL after its stop timeout)."""
        with self._lock:
            proc = self._procs.get(task_arn)
            if task_arn not in self._procs and self.state.last_status(task_arn) in ("STOPPED", None):
                return True  # (stopped already; or stopped an hour ago, and forgotten meanwhile)
            self._stop_requests[task_arn] = reason or "Task stopped by user"
        self.state.stop_requested(task_arn, reason or "Task stopped by user")
        if proc is not None and proc.running():
            proc.terminate()
        return True

    def task_metadata(self, task: TaskSpec) -> str:
        """The task metadata endpoint (v4) a Fargate container finds in its environment: here a
        directory read through file:// URLs (``<uri>/task`` is a file), so the same urllib code
        reads it."""
        folder = self.metadata_folder(task.id)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "task"), "w") as outfile:
            json.dump({"Cluster": task.cluster_arn, "TaskARN": task.task_arn, "Family": family_of(task.task_definition_arn)}, outfile)
        return "file://" + folder

    def volume_host_dir(self, task: TaskSpec, volume: dict[str, Any]) -> str:
        """The host directory standing in for one of the task's volumes: EFS (``efs_host_dir``),
        or an EBS volume configured at launch (``ebs_host_dir``)."""
        if _ci(volume, "configuredAtLaunch"):
            return self.ebs_host_dir(task, _ci(volume, "name"))
        return self.efs_host_dir(volume)

    def ebs_host_dir(self, task: TaskSpec, name: str) -> str:
        """An ECS-managed EBS volume RunTask configured (``volumeConfigurations``): an empty
        directory of the task's own, owned by root as ECS's volume is, removed when the task stops
        (the backend asks ``deleteOnTermination``). Its size is not enforced here."""
        configured = next((c for c in task.volume_configurations if c.get("name") == name), None)
        if configured is None or not configured.get("managedEBSVolume"):
            raise ValueError(f"volume {name!r} is configured at launch, but RunTask gave it no managedEBSVolume")
        path = os.path.join(self.state_dir, "ebs", task.id, name)
        os.makedirs(path, exist_ok=True)
        return path

    def efs_host_dir(self, volume: dict[str, Any]) -> str:
        efs = _ci(volume, "efsVolumeConfiguration")
        if efs is None:
            raise ValueError(f"volume {_ci(volume, 'name')!r}: only EFS and EBS volumes are supported locally")
        fs_id = _ci(efs, "fileSystemId") or _ci(efs, "filesystemId")
        root = _ci(efs, "rootDirectory") or "/"
        access_point = _ci(_ci(efs, "authorizationConfig"), "accessPointId")
        if access_point:
            root = self._access_point_root(access_point)
        path = os.path.join(self.efs_root, fs_id, root.lstrip("/"))
        os.makedirs(path, exist_ok=True)
        return path

    def _access_point_root(self, access_point: str) -> str:
        """The access point's root directory, asked of EFS once per access point: EFS has no
        operation that changes an access point (CreateAccessPoint, DeleteAccessPoint and
        DescribeAccessPoints are all there is of it: the API operations in
        https://docs.aws.amazon.com/service-authorization/latest/reference/list_efs.html, and botocore's model),
        and a run's tasks all mount the run's own. Once also when a scatter's tasks start together:
        the first asks while the others wait for its answer (each asked, ~50 EFS requests to
        moto's server a 50-task scatter)."""
        with self._access_point_lock:
            known = self._access_point_roots.get(access_point)
            if known is None:
                desc = aws.client("efs").describe_access_points(AccessPointId=access_point)["AccessPoints"][0]
                known = self._access_point_roots[access_point] = desc.get("RootDirectory", {}).get("Path", "/")
            return known

    def _set_status(self, task: TaskSpec, status: str) -> None:
        """PENDING or RUNNING (STOPPED is ``_stopped``, which records why)."""
        self.state.set_status(task.task_arn, status)

    def _emit(self, task: TaskSpec, status: str) -> None:
        if status == "STOPPED" and _is_driver(task) and self.faults.take("lose_driver_stopped_events"):
            log.warning("injected fault: the STOPPED event of driver %s is lost", task.task_arn)
            return
        self.state.emit(task.task_arn)

    def _run_task(self, task: TaskSpec) -> None:
        try:
            self._run_task_inner(task)
        except Exception as exn:
            self._task_failed(task, exn)

    def _task_failed(self, task: TaskSpec, exn: Exception) -> None:
        """The task did not start, or the runner failed running it: STOPPED, TaskFailedToStart."""
        if isinstance(exn, TaskStartError):
            log.warning("local Fargate task %s did not start: %s", task.task_arn, exn)
            reason = str(exn)
        else:
            log.exception("local Fargate task %s failed to run", task.task_arn)
            reason = f"CannotStartContainerError: {exn}"
        with self._lock:
            self._procs.pop(task.task_arn, None)
            self._stop_requests.pop(task.task_arn, None)
        self._stopped(task, "TaskFailedToStart", reason[:255], container_reason=reason[:255])

    def _stopped(self, task: TaskSpec, stop_code: str, reason: str, **container: Any) -> None:
        """Release the task's EBS volumes and metadata endpoint, record how it ended, wake its driver's poller and emit
        its STOPPED event. A task's attachments are released before it is STOPPED (its
        DEPROVISIONING status, the ECS task lifecycle: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-lifecycle-explanation.html),
        so no one sees a stopped task whose scratch volume is still there."""
        shutil.rmtree(os.path.join(self.state_dir, "ebs", task.id), ignore_errors=True)
        # (its metadata endpoint too: a folder per task ever run piled up, 8 KB and 2 inodes each)
        shutil.rmtree(self.metadata_folder(task.id), ignore_errors=True)
        self.state.stopped(task.task_arn, stop_code, reason, **container)
        try:
            self._wake_driver(task)
            self._emit(task, "STOPPED")
        except Exception:  # (the task stopped as recorded: a failed event does not make it fail to start)
            log.exception("local Fargate task %s stopped, but its driver was not woken or its event not sent", task.task_arn)
        finally:  # (last: whoever waits for the runner to be done with the task sees all of it)
            with self._lock:
                self._active.discard(task.task_arn)

    def _wake_driver(self, task: TaskSpec) -> None:
        """A WDL task stopped (recorded in ECS already): its driver's poller asks about it now
        (``wakeups``) rather than at its next pass. (Only the end: that a task runs is news the
        driver waits for nothing on, and a pass per start would double the passes of a scatter.)"""
        driver = {t.get("key"): t.get("value") for t in (task.tags or [])}.get(sweep.DRIVER_TAG, "")
        if driver.startswith("arn:"):
            wakeups.notify(self.metadata_folder(driver.rsplit("/", 1)[-1]), task.task_arn)

    def metadata_folder(self, task_id: str) -> str:
        """Where the task metadata endpoint of task ``task_id`` is (``task_metadata``)."""
        return os.path.join(self.state_dir, "ecs-metadata", task_id)

    def _run_task_inner(self, task: TaskSpec) -> None:
        if self._closing:
            raise TaskStartError(SHUTDOWN_REASON)
        if "-driver" not in str(task.task_definition_arn) and self.faults.take("pull_failures"):
            raise TaskStartError(f"CannotPullContainerError: {self.faults.pull_error}")  # (fault injection)
        container_def = task.container
        name = _ci(container_def, "name")
        override = next(
            (o for o in (task.overrides or {}).get("containerOverrides", []) if o.get("name") == name), {}
        )
        if "-driver" not in str(task.task_definition_arn) and self.faults.take("unrunnable_images"):
            override = {**override, "command": [UNRUNNABLE_SCRIPT]}  # (fault injection)
        environment = {
            _ci(item, "name"): str(_ci(item, "value"))
            for item in list(_ci(container_def, "environment") or []) + list(override.get("environment") or [])
        }
        volumes = {_ci(v, "name"): v for v in task.volumes}
        mounts = [
            Mount(self.volume_host_dir(task, volumes[_ci(mp, "sourceVolume")]), _ci(mp, "containerPath"), bool(_ci(mp, "readOnly")))
            for mp in _ci(container_def, "mountPoints") or []
        ]
        gpus = [r for r in _ci(container_def, "resourceRequirements") or [] if _ci(r, "type") == "GPU"]
        if gpus:
            self._warn_once("gpu", f"task {task.task_arn} asks for {_ci(gpus[0], 'value')} GPU(s): local mode records GPU requests but gives tasks none")
        memory_mib = _memory_limit_mib(task, container_def, override)
        log_path = os.path.join(self.logs_dir, "ecs", task.family, f"{task.id}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        stop_timeout = int(_ci(container_def, "stopTimeout") or 30)

        self._set_status(task, "PENDING")
        if task.family in self.driver_families:
            job: HostJob | ContainerJob = self._driver_job(task, container_def, override, environment, mounts)
        elif self.engine is not None:
            job = self._container_job(task, container_def, override, environment, mounts, memory_mib, stop_timeout)
        else:
            job = self._sandboxed_job(task, container_def, override, environment, mounts)
        with open(log_path, "ab") as logfile:
            job.start(logfile)
        with self._lock:
            self._procs[task.task_arn] = job
            if self._closing:  # (``shutdown`` listed the tasks to stop while this one started)
                self._stop_requests.setdefault(task.task_arn, SHUTDOWN_REASON)
            early_stop = self._stop_requests.get(task.task_arn)
        if self._killing:  # (``shutdown``'s kill pass listed the tasks to kill while this one started)
            job.kill()
        elif early_stop:
            job.terminate()
        self._set_status(task, "RUNNING")
        self._emit(task, "RUNNING")
        if task.capacity_provider_name == "FARGATE_SPOT" and self.faults.take("spot_interruptions"):
            threading.Timer(0.5, self._interrupt_spot, args=(task,)).start()
        self._follow(task, job, container_def, log_path, memory_mib, stop_timeout)

    def _follow(
        self, task: TaskSpec, job: HostJob | ContainerJob, container_def: dict[str, Any], log_path: str,
        memory_mib: int | None, stop_timeout: int,
    ) -> None:
        """Wait for the job while shipping its logs, watching its memory and honouring stop
        requests; then record how it ended in ECS and emit the STOPPED event."""
        shipper = LogShipper.for_container(container_def, task, log_path, self.logs())
        deadline = None
        while True:
            code = job.wait(MEMORY_CHECK_SECONDS)
            if code is not None:
                break
            if shipper is not None:
                shipper.ship()
            if job.watch_memory and memory_mib and job.memory() > memory_mib * 1024 * 1024:
                log.warning("task %s used more than its %d MiB: killed, as Fargate would", task.task_arn, memory_mib)
                job.kill_for_memory()
            if task.task_arn in self._stop_requests:
                if deadline is None:
                    deadline = time.monotonic() + stop_timeout
                    self.state.stopping(task.task_arn)
                elif time.monotonic() > deadline:
                    job.kill()

        if shipper is not None:
            shipper.ship(final=True)
        outcome = job.finish(code, stop_requested=task.task_arn in self._stop_requests)
        with self._lock:
            self._procs.pop(task.task_arn, None)
            reason = self._stop_requests.pop(task.task_arn, None)
        if outcome.start_error:
            raise TaskStartError(f"CannotStartContainerError: {outcome.start_error}")
        if reason is None:
            stop_code, reason = "EssentialContainerExited", ECS_STOPPED_REASON
        elif reason == SPOT_INTERRUPTION:
            stop_code, reason = "SpotInterruption", "Your Spot Task was interrupted."
        else:
            stop_code = "UserInitiated"
        self._stopped(
            task, stop_code, reason, exit_code=outcome.exit_code,
            container_reason=OOM_REASON if outcome.out_of_memory else None,
        )

    # -- the three ways a task's container runs ---------------------------------------------------

    @staticmethod
    def _argv(name: str, container_def: dict[str, Any], override: dict[str, Any]) -> list[str]:
        argv = list(_ci(container_def, "entryPoint") or []) + list(
            override.get("command") or _ci(container_def, "command") or []
        )
        if not argv:
            raise ValueError(f"container {name!r} has no command (local mode cannot run image entrypoints)")
        return argv

    def _host_environment(self, task: TaskSpec, environment: dict[str, str]) -> dict[str, str]:
        env = self.base_environment()
        env.update(environment)
        env["ECS_CONTAINER_METADATA_URI_V4"] = self.task_metadata(task)
        return env

    def _driver_job(
        self, task: TaskSpec, container_def: dict[str, Any], override: dict[str, Any], environment: dict[str, str],
        mounts: list[Mount],
    ) -> HostJob:
        """The driver: our own image, which local mode does not have; a host process in a private
        mount namespace, as root (or the user running local mode)."""
        env = self._host_environment(task, environment)
        env.update(self.efs_environment(task))
        env["HOME"] = os.path.join(self.state_dir, "home", task.id)
        os.makedirs(env["HOME"], exist_ok=True)
        argv = self._argv(_ci(container_def, "name"), container_def, override)
        pairs = [(m.container, m.host) for m in mounts]
        cwd = _ci(container_def, "workingDirectory") or "/"
        if self.fork_drivers and argv == DRIVER_COMMAND:
            request = self._driver_request(argv, cwd, env, pairs)
            return ForkedJob(self.driver_zygote.get, request, self.namespaces.wrap(pairs, argv), cwd, env)
        return HostJob(self.namespaces.wrap(pairs, argv), cwd, env)

    def _driver_request(self, argv: list[str], cwd: str, env: dict[str, str], mounts: list[tuple[str, str]]) -> dict:
        """What ``driver_zygote`` (or ``python_zygote``) is asked for a driver: its namespaces made
        as the prefix would (a user namespace too where local mode is not root)."""
        return {
            "kind": "driver", "argv": argv, "cwd": cwd, "env": env, "mounts": mounts,
            "user_namespace": not self.namespaces.root,
        }

    def driver_trial(self) -> dict:
        """The trial child of a fork server of drivers: ``true`` in a driver's namespaces."""
        return self._driver_request(["true"], "/", self.base_environment(), [])

    def _task_request(self, spec: dict, argv: list[str], env: dict[str, str], what: str) -> dict:
        """What ``task_zygote`` is asked for a sandboxed task (``spec``: ``StrictSandbox.setup``'s)."""
        return {"spec": spec, "argv": argv, "env": env, "what": what, "user_namespace": not self.namespaces.root}

    def _task_trial(self) -> dict | None:
        """The trial child of ``task_zygote``: ``true`` in a sandbox as a task's (None where there is none)."""
        sandbox = self.sandbox()
        if sandbox is None:
            return None
        env = {**self.base_environment(), "HOME": "/tmp"}
        return self._task_request(sandbox.setup([], (self.state_dir,), env=env), ["true"], env, "a trial task")

    @property
    def fork_drivers(self) -> bool:
        """Whether drivers are forked from ``driver_zygote`` (else each is a new process)."""
        return self._fork_drivers and self.driver_zygote.enabled

    def _sandboxed_job(
        self, task: TaskSpec, container_def: dict[str, Any], override: dict[str, Any], environment: dict[str, str],
        mounts: list[Mount],
    ) -> HostJob:
        """A WDL task without a container engine: a host process in the strict sandbox (or, where
        the machine allows none, the driver's kind of namespace, having warned once)."""
        argv = self._argv(_ci(container_def, "name"), container_def, override)
        sandbox = self.sandbox()
        env = self._host_environment(task, environment)
        if "TMPDIR" not in environment:
            env.pop("TMPDIR", None)  # the host's; the sandbox has its own /tmp
        if sandbox is None:
            env["HOME"] = os.path.join(self.state_dir, "home", task.id)
            os.makedirs(env["HOME"], exist_ok=True)
            return HostJob(self.namespaces.wrap([(m.container, m.host) for m in mounts], argv), "/", env)
        env["HOME"] = "/tmp"
        env["SANDBOX_CWD"] = _ci(container_def, "workingDirectory") or "/"
        pairs = []
        for index, mount in enumerate(mounts):
            host = mount.host
            if sandbox.identity.mode == "setpriv":
                host = self._idmapped(task, index, mount.host, (sandbox.identity.uid, sandbox.identity.gid))
            pairs.append((mount.container, host))
        # local mode's state (every run's EFS directory among it) is out of the task's sight
        hidden = (self.state_dir,)
        cleanup = lambda: self._unmount_idmapped(task)  # noqa: E731
        if self.task_zygote.enabled and sandbox.set_up_in_python:
            spec = sandbox.setup(pairs, hidden, env=env)
            request = self._task_request(spec, argv, env, f"task {task.task_arn}")
            # (a new process sets the same sandbox up where the fork server cannot fork)
            return ForkedJob(self.task_zygote.get, request, sandbox.in_new_process(spec, argv), "/", env, cleanup=cleanup)
        return HostJob(sandbox.wrap(pairs, argv, hidden=hidden, env=env), "/", env, cleanup=cleanup)

    def _container_job(
        self, task: TaskSpec, container_def: dict[str, Any], override: dict[str, Any],
        environment: dict[str, str], mounts: list[Mount], memory_mib: int | None, stop_timeout: int,
    ) -> ContainerJob:
        """A WDL task in its image, with the local engine."""
        assert self.engine is not None
        image = _ci(container_def, "image")
        self._ensure_image(image)
        user = _ci(container_def, "user") or ""
        mounts, userns = self._access_point_mounts(task, image, user or self.engine.image_user(image), mounts)
        metadata = self.task_metadata(task)
        env = dict(self.aws_environment())
        env.update({"AWS_EXECUTION_ENV": "AWS_ECS_FARGATE", "ECS_CONTAINER_METADATA_URI_V4": metadata})
        env.update(environment)
        cpu = override.get("cpu") or task.overrides.get("cpu") or task.cpu
        spec = ContainerSpec(
            name=f"miniwdl-fargate-{task.id}",
            image=image,
            entry_point=_ci(container_def, "entryPoint"),
            command=override.get("command") or _ci(container_def, "command"),
            environment=env,
            mounts=[*mounts, Mount(metadata[len("file://"):], metadata[len("file://"):], True)],
            working_directory=_ci(container_def, "workingDirectory"),
            user=user or None,
            memory_mib=memory_mib,
            cpu_units=int(cpu) if str(cpu or "").isdigit() else None,
            init=bool(_ci(_ci(container_def, "linuxParameters") or {}, "initProcessEnabled")),
            read_only_root=bool(_ci(container_def, "readonlyRootFilesystem")),
            stop_timeout=stop_timeout,
            network=self.network,
            cgroup_parent=f"{CGROUP_PARENT}/{task.id}" if self.engine.cgroup_parents else None,
            userns=userns,
            labels={"miniwdl-fargate-local.task": task.task_arn, **({STACK_LABEL: self._identity} if self._identity else {})},
        )
        self._sweep_containers_once()
        return ContainerJob(self.engine, spec, cleanup=lambda: self._unmount_idmapped(task))

    def _sweep_containers_once(self) -> None:
        """At the stack's first container, remove in the background those that stacks killed
        outright left (``containers.Engine.sweep``); never this stack's failure, nor its wait."""
        with self._lock:
            if self._containers_swept or self.engine is None:
                return
            self._containers_swept = True
        threading.Thread(
            target=_sweep, args=(self.engine.sweep, "removed", "container"), name="container-sweep", daemon=True,
        ).start()

    def _ensure_image(self, image: str) -> None:
        """The image must be in the engine's store; pulled first if MINIWDL_FARGATE_LOCAL_PULL
        says so. Otherwise the task fails to start the way ECS says it, naming the image: stopCode
        TaskFailedToStart (botocore's TaskStopCode) and stoppedReason ``CannotPullContainerError:``
        (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/stopped-task-errors.html,
        https://repost.aws/knowledge-center/ecs-fargate-pull-container-error), shaped like
        Fargate's own ``...: failed to resolve ref <image>: <image>: not found``."""
        assert self.engine is not None
        if self.engine.image_present(image):
            return
        if self.pull == "missing":
            problem = self.engine.pull(image)
            if problem is None:
                return
            raise TaskStartError(f"CannotPullContainerError: pull image {image}: {problem}")
        raise TaskStartError(
            f"CannotPullContainerError: failed to resolve ref {image}: {image}: not found "
            f"(local mode: not among {self.engine.kind}'s images; pull it, or set {PULL_ENV}=missing "
            f"or MINIWDL_FARGATE_LOCAL_ENGINE=none)"
        )

    def _access_point_mounts(
        self, task: TaskSpec, image: str, user: str, mounts: list[Mount],
    ) -> tuple[list[Mount], str | None]:
        """EFS volumes as the container's user would see them through the access point, and the
        container's ``--userns`` (None: the engine's default): where the user is not the owner of
        the local EFS directory, an idmapped mount on which it acts as that owner (where this
        machine can make one); with rootless podman, whose user (and the EFS directories' owner)
        is the one running local mode, a user namespace in which the container's user is it."""
        assert self.engine is not None
        ids = self.engine.user_ids(image, user) if user else (0, 0)
        keep_id = self.engine.keep_id(ids) if ids is not None else None
        if keep_id is not None:  # (rootless podman: the container's user is the user running local mode)
            for mount in mounts:
                if _owner(mount.host)[0] != os.geteuid():
                    self._warn_once(
                        f"owner:{mount.host}", f"{mount.host} is not yours: the tasks that mount it may be refused its files",
                    )
            return mounts, keep_id or None
        result = []
        for index, mount in enumerate(mounts):
            if ids == _owner(mount.host):
                result.append(mount)
                continue
            problem = self.idmap_problem() if ids is not None else f"cannot tell the uid of user {user!r} in {image}"
            if problem is None:
                host = self._idmapped(task, index, mount.host, ids)  # type: ignore[arg-type]
                result.append(Mount(host, mount.container, mount.read_only))
                continue
            self._warn_once(
                f"idmap:{image}",
                f"{image} runs as {user or 'root'}: on Fargate it would write EFS as the access point's "
                f"user; here it writes as itself, which may be refused ({problem})",
            )
            result.append(mount)
        return result, None

    def _idmapped(self, task: TaskSpec, index: int, host: str, user: tuple[int, int]) -> str:
        if not self._idmapped_dir:
            raise RuntimeError("an idmapped mount before idmap_problem() said they work here")
        stat = os.stat(host)
        target = os.path.join(self._idmapped_dir, task.id, str(index))
        idmap.idmapped_bind(host, target, (stat.st_uid, stat.st_gid), user)
        return target

    def _unmount_idmapped(self, task: TaskSpec) -> None:
        if not self._idmapped_dir:
            return
        folder = os.path.join(self._idmapped_dir, task.id)
        if not os.path.isdir(folder):
            return
        for name in os.listdir(folder):
            try:
                idmap.unmount(os.path.join(folder, name))
            except OSError:
                log.exception("cannot unmount %s", os.path.join(folder, name))
        try:
            os.rmdir(folder)  # (never its content: a mount that stayed is the run's EFS directory)
        except OSError:
            pass

    def idmap_problem(self) -> str | None:
        """None if idmapped mounts work here (checked once), else why not. Where they work, this
        stack claims a folder of its own for them, and the mounts that stacks killed outright
        left are unmounted (``idmap.claim``, ``idmap.sweep``)."""
        with self._lock:
            if self._idmap_problem == "":
                problem = idmap.supported(self.state_dir)
                if problem is None:
                    try:
                        self._idmapped_dir = idmap.claim(os.path.join(self.state_dir, "idmapped"))
                    except OSError as exn:
                        problem = f"no folder for idmapped mounts: {exn}"
                if problem is None:
                    _sweep(idmap.sweep, "unmounted", "idmapped mount")
                self._idmap_problem = problem
            return self._idmap_problem

    def sandbox(self) -> StrictSandbox | None:
        """The strict sandbox for WDL tasks without an engine (checked once; warns once about
        what it cannot enforce)."""
        problem = self.idmap_problem()
        with self._lock:
            if not self._sandbox_checked:
                self._sandbox_checked = True
                self._sandbox, caveats = StrictSandbox.detect(self.namespaces.prefix, problem)
                if self._sandbox is None:
                    log.warning(
                        "local mode: no container engine, and WDL tasks cannot be sandboxed here (%s): they "
                        "run as host processes as %s, able to write the host's filesystem, which Fargate "
                        "would not allow", caveats, "root" if os.geteuid() == 0 else "you",
                    )
                elif caveats:
                    log.warning("local mode: WDL tasks run sandboxed, but not fully: %s", caveats)
            return self._sandbox

    def _warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning("local mode: %s", message)

    def _interrupt_spot(self, task: TaskSpec) -> None:
        """Fault injection: Fargate Spot reclaims the task (SIGTERM first, as its warning)."""
        with self._lock:
            proc = self._procs.get(task.task_arn)
            if proc is None or not proc.running():
                return
            self._stop_requests[task.task_arn] = SPOT_INTERRUPTION
        log.warning("injected fault: Spot interruption of %s", task.task_arn)
        proc.terminate()

    @property
    def closing(self) -> bool:
        """Whether ``shutdown`` began (no task starts from then on)."""
        return self._closing

    def running_tasks(self) -> list[str]:
        """Tasks started here that the runner is not done with: provisioning, running, or with
        their process gone but their STOPPED status or event not yet written."""
        with self._lock:
            return sorted(self._active)

    def shutdown(self, timeout: float = 30) -> None:
        """Stop every task still running (SIGTERM, then SIGKILL after ``timeout`` seconds) and
        wait for the runner threads. No task starts once this began: one starting as it begins
        is stopped as soon as it runs, one asked for later stops at once (TaskFailedToStart)."""
        with self._lock:
            self._closing = True
            procs = list(self._procs.items())
            for arn, _proc in procs:
                self._stop_requests.setdefault(arn, SHUTDOWN_REASON)
        for _arn, proc in procs:
            if proc.running():
                proc.terminate()
        if not self._runners.wait_idle(timeout):
            with self._lock:
                self._killing = True
                procs = list(self._procs.items())
            for arn, proc in procs:
                log.warning("local mode: task %s did not stop in %g s: killed", arn, timeout)
                proc.kill()
            self._runners.wait_idle(STOP_KILLED_SECONDS)
        if self.engine is not None and self.engine.cgroup_parents:
            remove_cgroup(CGROUP_PARENT)
        if self._idmapped_dir:  # (its tasks' mounts are gone with them: its folder goes too, once empty)
            idmap.release(self._idmapped_dir)
        if self._own_driver_zygote:  # (else its owner stops it, once the other children it forks are done)
            self.driver_zygote.stop()
        self.task_zygote.stop()


def _is_driver(task: TaskSpec) -> bool:
    """A run's driver task (tagged with its run, launched by no driver)."""
    tags = {t.get("key"): t.get("value") for t in (task.tags or [])}
    return sweep.RUN_TAG in tags and sweep.DRIVER_TAG not in tags


def _memory_limit_mib(task: TaskSpec, container_def: dict[str, Any], override: dict[str, Any]) -> int | None:
    """The memory the task's container may use: its override, else the task's, else the task
    definition's (what Fargate enforces)."""
    for value in (
        override.get("memory"), task.overrides.get("memory"), _ci(container_def, "memory"), task.memory,
    ):
        try:
            if value:
                return int(value)
        except (TypeError, ValueError):
            continue
    return None


class LogShipper:
    """The awslogs log driver: a container's output, line by line, into its CloudWatch Logs
    stream ``<awslogs-stream-prefix>/<container>/<task id>`` (in moto), as it is written."""

    #: log groups this process made or found (a group is asked for once, not once per task)
    _groups: set[str] = set()
    _groups_lock = threading.Lock()

    def __init__(self, path: str, group: str, stream: str, logs: Any) -> None:
        self.path, self.group, self.stream, self.logs = path, group, stream, logs
        self._offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""  # (the last line read, not yet ended)
        self._ensure_group(logs, group)
        try:
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        except logs.exceptions.ResourceNotFoundException:  # (the group went since: made again)
            self._ensure_group(logs, group, known=False)
            logs.create_log_stream(logGroupName=group, logStreamName=stream)

    @classmethod
    def _ensure_group(cls, logs: Any, group: str, known: bool = True) -> None:
        with cls._groups_lock:
            if known and group in cls._groups:
                return
        try:
            logs.create_log_group(logGroupName=group)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        with cls._groups_lock:
            cls._groups.add(group)

    @classmethod
    def for_container(cls, container_def: dict[str, Any], task: TaskSpec, path: str, logs: Any) -> "LogShipper | None":
        config = _ci(container_def, "logConfiguration") or {}
        options = _ci(config, "options") or {}
        if _ci(config, "logDriver") != "awslogs" or not options.get("awslogs-group"):
            return None
        stream = f"{options.get('awslogs-stream-prefix', 'ecs')}/{_ci(container_def, 'name')}/{task.id}"
        try:
            return cls(path, options["awslogs-group"], stream, logs)
        except Exception:
            log.exception("cannot ship the logs of %s to CloudWatch Logs", task.task_arn)
            return None

    def ship(self, final: bool = False) -> None:
        """Send what the container wrote since the last call, one event per line, in requests
        within PutLogEvents' limits: at most ``LOG_READ_BYTES`` of it while the container runs
        (a call comes every ``MEMORY_CHECK_SECONDS``, between memory checks and stop requests);
        ``final`` (the container exited), all of it up to where the file ended when called, read
        ``LOG_READ_BYTES`` at a time, an unended last line sent as it is. A line not yet ended
        waits for its end, unless it is already longer than an event: its first events of the
        greatest size go now, the rest waits (memory stays bounded however long the line). Bytes
        that are not UTF-8 are sent as U+FFFD; a character cut between two reads is decoded whole."""
        events: list[dict[str, Any]] = []
        size = 0
        now = int(time.time() * 1000)

        def add(lines: list[str]) -> None:
            nonlocal events, size
            for line in lines:
                # like the awslogs driver, empty lines are not sent (CloudWatch Logs refuses empty messages)
                if not line.strip():
                    continue
                for message, length in _log_messages(line):
                    if len(events) == LOG_BATCH_EVENTS or size + length + LOG_EVENT_OVERHEAD > LOG_BATCH_BYTES:
                        self._put(events)
                        events, size = [], 0
                    events.append({"timestamp": now, "message": message})
                    size += length + LOG_EVENT_OVERHEAD

        try:
            with open(self.path, "rb") as infile:
                end = os.fstat(infile.fileno()).st_size
                if not final:
                    end = min(end, self._offset + LOG_READ_BYTES)
                infile.seek(self._offset)
                while self._offset < end:
                    data = infile.read(min(LOG_READ_BYTES, end - self._offset))
                    if not data:
                        break
                    self._offset += len(data)
                    add(self._lines(self._decoder.decode(data)))
        except OSError:
            pass
        if final:
            add(self._lines(self._decoder.decode(b"", final=True)) + [self._partial])
            self._partial = ""
        if events:
            self._put(events)

    def _lines(self, text: str) -> list[str]:
        """The lines ``text`` ends (after the unended one before it), and of a line it leaves
        unended whatever fills whole events (kept: the rest, at most one event)."""
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        if len(self._partial.encode("utf-8")) > LOG_MESSAGE_BYTES:
            pieces = [message for message, _ in _log_messages(self._partial)]
            self._partial = pieces.pop()
            lines += pieces
        return lines

    def _put(self, events: list[dict[str, Any]]) -> None:
        try:
            self.logs.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=events)
        except Exception:
            log.exception("cannot ship logs to %s/%s", self.group, self.stream)


def _log_messages(line: str) -> list[tuple[str, int]]:
    """A line as the messages of its events, each with its size in UTF-8: the line itself, or if
    longer than ``LOG_MESSAGE_BYTES``, pieces of at most that size cut between characters."""
    data = line.encode("utf-8")
    if len(data) <= LOG_MESSAGE_BYTES:
        return [(line, len(data))]
    messages = []
    start = 0
    while len(data) - start > LOG_MESSAGE_BYTES:
        cut = start + LOG_MESSAGE_BYTES
        while data[cut] & 0xC0 == 0x80:  # (a UTF-8 continuation byte: the character starts before)
            cut -= 1
        messages.append((data[start:cut].decode("utf-8"), cut - start))
        start = cut
    messages.append((data[start:].decode("utf-8"), len(data) - start))
    return messages


class NamespaceSupport:
    """How to give a host process its own mounts: ``unshare`` a mount namespace (as root, or in
    a user namespace), put a tmpfs on /mnt and bind-mount each volume at its container path."""

    #: ``unshare``'s arguments for a mount namespace as root, and in a user namespace as a user
    AS_ROOT = ("--mount", "--propagation", "private")
    AS_USER = ("--user", "--map-root-user", *AS_ROOT)

    def __init__(self, prefix: list[str]) -> None:
        self.prefix = prefix

    @property
    def root(self) -> bool:
        """Whether the namespace is made as root, needing no user namespace (a child forked from
        ``driver_zygote`` or ``task_zygote`` makes one where it is not)."""
        return "--user" not in self.prefix

    @classmethod
    def detect(cls) -> "NamespaceSupport":
        unshare = shutil.which("unshare")
        if not unshare or not sys.platform.startswith("linux"):
            raise RuntimeError(
                "local mode runs Fargate tasks in Linux mount namespaces (unshare, from util-linux); "
                "this machine has none. Use a Linux machine or container."
            )
        candidates = [[unshare, *cls.AS_ROOT], [unshare, *cls.AS_USER]]
        if os.geteuid() != 0:
            candidates.reverse()
        for prefix in candidates:
            probe = subprocess.run(
                prefix + ["sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True, text=True
            )
            if probe.returncode == 0:
                return cls(prefix)
        raise RuntimeError(
            "local mode runs Fargate tasks in mount namespaces, but `unshare --mount` failed here: "
            f"{probe.stderr.strip()}. Unprivileged user namespaces may be disabled "
            "(e.g. sysctl kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 24.04)."
        )

    def wrap(self, mounts: list[tuple[str, str]], argv: list[str]) -> list[str]:
        lines = ["set -e", "mount -t tmpfs tmpfs /mnt"]
        for container_path, host_path in mounts:
            if not container_path.startswith("/mnt/"):
                raise ValueError(f"local mode mounts volumes under /mnt only, not {container_path}")
            q = shlex.quote
            lines.append(f"mkdir -p {q(container_path)} && mount --bind {q(host_path)} {q(container_path)}")
        lines.append('exec "$@"')
        return self.prefix + ["sh", "-c", "\n".join(lines), "container", *argv]

