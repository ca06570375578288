"""Local mode's container engine: WDL tasks run in their actual images (Podman or Docker).

``engine_argv`` turns what ECS would run (a task definition's container plus RunTask's overrides,
already merged into a ``ContainerSpec``) into one ``<engine> run`` command line: a pure function.
``Engine`` is the little that talks to the engine: is it usable, is an image present, what user
does an image run as, start, stop, and how did a container end.

Choices (environment variables of the process running local mode):

- ``MINIWDL_FARGATE_LOCAL_ENGINE``: ``podman``, ``docker``, ``none`` (WDL tasks as host
  processes), or unset/``auto``: the first of podman, docker whose ``info`` succeeds.
- ``MINIWDL_FARGATE_LOCAL_NETWORK``: ``none`` (default: a task has no network at all) or ``host``
  (the task shares the host's network and can reach local mode's moto endpoint).
- ``MINIWDL_FARGATE_LOCAL_PULL``: ``never`` (default: an image must already be in the engine's
  store; no registry is contacted) or ``missing`` (pull an image that is not present).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import Mapping

from . import owners

log = logging.getLogger("miniwdl-fargate.local")

ENGINE_ENV = "MINIWDL_FARGATE_LOCAL_ENGINE"
NETWORK_ENV = "MINIWDL_FARGATE_LOCAL_NETWORK"
PULL_ENV = "MINIWDL_FARGATE_LOCAL_PULL"
ENGINES = ("podman", "docker")
NETWORKS = ("none", "host")
PULL_POLICIES = ("never", "missing")
LABEL = "miniwdl-fargate-local.task"
PROBE_SECONDS = 30


@dataclass
class Mount:
    """A volume as the container sees it: ``host`` mounted at ``container``."""

    host: str
    container: str
    read_only: bool = False


@dataclass
class ContainerSpec:
    """What ECS would run for a task's container, its overrides applied."""

    name: str
    image: str
    entry_point: list[str] | None = None
    command: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    working_directory: str | None = None
    user: str | None = None
    memory_mib: int | None = None
    cpu_units: int | None = None
    init: bool = False
    read_only_root: bool = False
    stop_timeout: int = 30
    network: str = "none"
    cgroup_parent: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: podman's ``--userns`` mode (rootless: ``keep-id:uid=U,gid=G``, the image's user as the user
    #: running local mode, who owns the local EFS directories); None: the engine's default
    userns: str | None = None


#: the label naming the local stack a container is a task of (its ``owners.identity``)
STACK_LABEL = "miniwdl-fargate-local.stack"


def choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    """The value of environment variable ``name``, checked against ``allowed``."""
    value = (env.get(name) or default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name}={env.get(name)!r}: expected one of {', '.join(allowed)}")
    return value


def _volume(mount: Mount) -> str:
    for path in (mount.host, mount.container):
        if ":" in path or "," in path:
            raise ValueError(f"local mode cannot mount {path!r} in a container: the path has ':' or ','")
    return f"{mount.host}:{mount.container}" + (":ro" if mount.read_only else "")


def engine_argv(engine: str, spec: ContainerSpec) -> list[str]:
    """The ``<engine> run`` command line that runs ``spec`` in the foreground, attached (its
    output is the command's), never pulling, and kept after it exits (for its exit code)."""
    argv = [engine, "run", "--name", spec.name, "--pull", "never", "--network", spec.network]
    argv += ["--stop-timeout", str(spec.stop_timeout)]
    for key, value in sorted(spec.labels.items()):
        argv += ["--label", f"{key}={value}"]
    if spec.init:
        argv.append("--init")
    if spec.read_only_root:
        argv.append("--read-only")
        if engine == "podman":  # podman would add tmpfs on /tmp, /var/tmp, /run; Fargate adds none
            argv.append("--read-only-tmpfs=false")
    if spec.memory_mib:
        argv += ["--memory", f"{spec.memory_mib}m", "--memory-swap", f"{spec.memory_mib}m"]
    if spec.cpu_units:
        argv += ["--cpus", f"{spec.cpu_units / 1024:g}"]
    if spec.cgroup_parent:
        argv += ["--cgroup-parent", spec.cgroup_parent]
    if spec.user:
        argv += ["--user", spec.user]
    if spec.userns:
        argv += ["--userns", spec.userns]
    if spec.working_directory:
        argv += ["--workdir", spec.working_directory]
    for mount in spec.mounts:
        argv += ["--volume", _volume(mount)]
    for key, value in spec.environment.items():
        argv += ["--env", f"{key}={value}"]
    args = list(spec.command or [])
    if spec.entry_point:
        # ECS runs entryPoint + command; `--entrypoint` takes one program (Docker), so the rest of
        # the entry point goes before the command
        argv += ["--entrypoint", spec.entry_point[0]]
        args = list(spec.entry_point[1:]) + args
    argv.append(spec.image)
    return argv + args


@dataclass
class Ending:
    """How a container ended, as the engine tells it."""

    exit_code: int | None
    oom_killed: bool = False
    error: str = ""  # the engine's error if the container never started


class Engine:
    """One container engine's command line."""

    def __init__(self, program: str, workdir: str | None = None) -> None:
        self.program = program
        self.kind = os.path.basename(program)
        #: the folder every engine command runs in (``workdir``): podman's container monitor,
        #: conmon, drops an empty ``oom`` file into its working directory when a container is
        #: OOM-killed (podman 4, cgroup v1, runc), which was the user's own folder (where local
        #: mode was started); None: the caller's
        self.workdir = workdir
        self._users: dict[tuple[str, str], tuple[int, int] | None] = {}
        #: what ``podman info`` says of its host (docker's: left empty): its cgroup manager
        #: ("cgroupfs", "systemd"), the cgroup version ("v1", "v2"), whether it is rootless, and
        #: podman's version ((4, 3) for 4.3.1; () where unknown)
        self.cgroup_manager = self.cgroup_version = ""
        self.rootless = False
        self.version: tuple[int, ...] = ()
        #: the cgroup controllers its containers get ("memory" among them where a limit holds)
        self.cgroup_controllers: list[str] = []

    # -- choosing one -----------------------------------------------------------------------------

    @classmethod
    def detect(cls, env: Mapping[str, str] | None = None, workdir: str | None = None) -> "Engine | None":
        """The engine ``MINIWDL_FARGATE_LOCAL_ENGINE`` asks for (an error if it does not work), or
        the first that works, or None. ``workdir``: the folder its commands run in (made here)."""
        env = os.environ if env is None else env
        wanted = choice(env, ENGINE_ENV, (*ENGINES, "none", "auto"), "auto")
        if wanted == "none":
            return None
        if workdir:
            os.makedirs(workdir, exist_ok=True)
        for name in ENGINES if wanted == "auto" else (wanted,):
            engine = cls(name, workdir)
            problem = engine.problem()
            if problem is None:
                return engine
            if wanted != "auto":
                raise RuntimeError(f"{ENGINE_ENV}={wanted}, but {problem}")
            log.debug("no %s: %s", name, problem)
        return None

    def problem(self) -> str | None:
        """None if ``<engine> info`` succeeds (the daemon or runtime is usable), else why not."""
        try:
            probe = subprocess.run(
                [self.program, "info", "--format", "{{json .}}"],
                capture_output=True, text=True, timeout=PROBE_SECONDS, stdin=subprocess.DEVNULL, cwd=self.workdir,
            )
        except (OSError, subprocess.TimeoutExpired) as exn:
            return f"`{self.kind} info` failed: {exn}"
        if probe.returncode != 0:
            lines = probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"]
            return f"`{self.kind} info` failed: {lines[-1]}"
        if self.kind == "podman":
            try:
                info = json.loads(probe.stdout)
            except ValueError:
                info = {}
            host = info.get("host", {})
            self.cgroup_manager, self.cgroup_version = host.get("cgroupManager", ""), host.get("cgroupVersion", "")
            self.rootless = bool(host.get("security", {}).get("rootless"))
            self.cgroup_controllers = list(host.get("cgroupControllers") or [])
            numbers = re.match(r"(\d+)\.(\d+)", str(info.get("version", {}).get("Version", "")))
            self.version = tuple(int(n) for n in numbers.groups()) if numbers else ()
        return None

    def keep_id(self, ids: tuple[int, int]) -> str | None:
        """Where the engine is rootless podman, the ``--userns`` mode that makes the container's
        user ``ids`` the user running local mode (``keep-id:uid=U,gid=G``, podman 4.3 or later:
        https://docs.podman.io/en/v4.6.1/markdown/options/userns.container.html), so that what it
        writes on a bind mount is that user's, as an EFS access point makes a task's files its
        POSIX user's; "" for root (already that user: rootless podman's default mapping); None
        where neither holds (root podman, docker, an older podman)."""
        if not (self.kind == "podman" and self.rootless and self.version >= (4, 3)):
            return None
        return "" if ids == (0, 0) else f"keep-id:uid={ids[0]},gid={ids[1]}"

    @property
    def cgroup_parents(self) -> bool:
        """Whether a container can be put under a cgroup of local mode's own (``--cgroup-parent``
        /miniwdl-fargate-local/<task>, where a memory limit's hits are read afterwards): podman
        with cgroupfs, as root. Rootless, podman may not make cgroups there (runc: "mkdir
        /sys/fs/cgroup/cpuset/miniwdl-fargate-local: permission denied", and no container started)."""
        return self.cgroup_manager == "cgroupfs" and not self.rootless

    @property
    def limits_ignored(self) -> bool:
        """Whether the engine cannot hold a container to its memory limit: rootless podman on
        cgroup v1 ("Resource limits are not supported and ignored on cgroups V1 rootless systems"),
        or on cgroup v2 without the memory controller delegated to the user (``podman info``'s
        cgroupControllers: https://rootlesscontaine.rs/getting-started/common/cgroup2/)."""
        return self.rootless and (self.cgroup_version == "v1" or "memory" not in self.cgroup_controllers)

    # -- images ---------------------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [self.program, *args]
        log.debug("engine: %s", shlex.join(argv))
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.workdir)

    def image_present(self, image: str) -> bool:
        return self._run("image", "inspect", "--format", "{{.Id}}", image).returncode == 0

    def pull(self, image: str) -> str | None:
        """Pull ``image``; None if it worked, else the engine's error."""
        result = self._run("pull", image, timeout=1800)
        if result.returncode == 0:
            return None
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        return lines[-1]

    def image_user(self, image: str) -> str:
        """The USER an image runs as ('' for root)."""
        result = self._run("image", "inspect", "--format", "{{.Config.User}}", image)
        return result.stdout.strip() if result.returncode == 0 else ""

    def user_ids(self, image: str, user: str) -> tuple[int, int] | None:
        """The numeric uid and gid ``user`` (an image's USER, or a task definition's ``user``) has
        in ``image``: read from the image's own ``id`` where it names a user or leaves the group
        out. None if the image cannot tell (no ``id`` program)."""
        uid, _, gid = user.partition(":")
        if uid.isdigit() and gid.isdigit():
            return int(uid), int(gid)
        key = (image, user)
        if key not in self._users:
            ids = []
            for flag in ("-u", "-g"):
                result = self._run(
                    "run", "--rm", "--pull", "never", "--network", "none", "--user", user,
                    "--entrypoint", "id", image, flag, timeout=60,
                )
                ids.append(result.stdout.strip() if result.returncode == 0 else "")
            self._users[key] = (int(ids[0]), int(ids[1])) if all(i.isdigit() for i in ids) else None
        return self._users[key]

    # -- containers -----------------------------------------------------------------------------

    def start(self, argv: list[str], output: int | object) -> subprocess.Popen:
        log.debug("engine: %s", shlex.join(argv))
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=self.workdir,
        )

    def stop(self, name: str, timeout: int) -> bool:
        """SIGTERM, then SIGKILL after ``timeout`` seconds (what ECS's StopTask does). False if
        the engine does not know the container (yet)."""
        return self._run("stop", "--time", str(timeout), name, timeout=timeout + 60).returncode == 0

    def ending(self, name: str) -> Ending:
        result = self._run(
            "inspect", "--type", "container", "--format",
            "{{.State.ExitCode}}|{{.State.OOMKilled}}|{{.State.Error}}|{{.State.StartedAt}}", name,
        )
        if result.returncode != 0:
            return Ending(None, error=(result.stderr.strip().splitlines() or ["no such container"])[-1])
        code, oom, error, started = result.stdout.strip().split("|", 3)
        never_started = started.startswith("0001-01-01")
        return Ending(
            int(code) if code.lstrip("-").isdigit() else None,
            oom_killed=oom == "true",
            error=error or ("the container did not start" if never_started else ""),
        )

    def remove(self, name: str) -> None:
        self._run("rm", "--force", name)

    def remove_at_once(self, container: str) -> bool:
        """Kill and remove a container without waiting out its stop timeout (podman's
        ``rm --force`` waits it out first; docker's kills); whether it worked."""
        now = ("--time", "0") if self.kind == "podman" else ()
        return self._run("rm", "--force", *now, container).returncode == 0

    def stack_of(self, container: str) -> str | None:
        """The container's ``STACK_LABEL`` ("" if it has none); None if there is no such container."""
        found = self._run("inspect", "--type", "container", "--format", f'{{{{index .Config.Labels "{STACK_LABEL}"}}}}', container)
        return found.stdout.strip() if found.returncode == 0 else None

    def sweep(self) -> list[str]:
        """Remove the containers of local stacks that are gone (``owners.gone`` of their
        ``STACK_LABEL``): a stack killed outright left its tasks' containers running until their
        command ended, then in the engine's list for ever. Each is killed at once (a gone stack
        reads nothing of it) and removed, by ID; the names of those removed. Only this engine's
        own containers are seen (rootless podman: this user's)."""
        listed = self._run("ps", "--all", "--filter", f"label={STACK_LABEL}", "--format", "{{.ID}} {{.Names}}")
        if listed.returncode != 0:
            return []
        removed = []
        for line in listed.stdout.splitlines():
            ident, _, name = line.strip().partition(" ")
            if not ident:
                continue
            try:
                stack = self.stack_of(ident)
                if stack is not None and owners.gone(stack) and self.remove_at_once(ident):
                    removed.append(name or ident)
            except (OSError, subprocess.SubprocessError):
                log.warning("local mode: could not remove container %s of a stack that was killed", name or ident, exc_info=True)
        return removed


def cgroup_hit_limit(parent: str, limit_mib: int) -> bool:
    """Whether the cgroup ``parent`` (a container's ``--cgroup-parent``, still there after the
    container is gone) recorded an OOM kill or reached ``limit_mib``: the engine's own OOMKilled
    flag is not reliable on cgroup v1 (Podman 4 leaves it false)."""
    v2 = os.path.join("/sys/fs/cgroup", parent.lstrip("/"), "memory.events")
    try:
        with open(v2) as infile:
            events = dict(line.split() for line in infile if line.strip())
        return int(events.get("oom_kill", 0)) > 0
    except OSError:
        pass
    v1 = os.path.join("/sys/fs/cgroup/memory", parent.lstrip("/"), "memory.max_usage_in_bytes")
    try:
        with open(v1) as infile:
            return int(infile.read()) >= limit_mib * 1024 * 1024
    except (OSError, ValueError):
        return False


def remove_cgroup(parent: str) -> None:
    """Remove the (empty) cgroup directories an engine made for ``parent`` in each hierarchy."""
    root = "/sys/fs/cgroup"
    try:
        hierarchies = [root] + [os.path.join(root, d) for d in os.listdir(root)]
    except OSError:
        return
    for hierarchy in hierarchies:
        base = os.path.join(hierarchy, parent.lstrip("/"))
        if not os.path.isdir(base):
            continue
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
