"""Task sizes and placement: WDL ``runtime`` requests mapped to the capacity that can run them.

A task that fits Fargate runs there:
- cpu/memory: the smallest valid Fargate (cpu, memory) pair covering the request (the table below);
- ``disks``: ephemeral storage, 20 GiB by default and settable from 21 to 200 GiB, with room for the
  image beside the disk asked for; beyond that, an ECS-managed EBS volume as the task's scratch
  (where ``Capacities.ebs_scratch``).
A task that does not (over 16 vCPU or 120 GiB, or a GPU) runs on the stack's ECS Managed Instances
capacity where there is one (``Capacities.managed_instances``) and it is big enough: cpu and memory
as asked (no size table there), GPUs as asked, and scratch beyond the instance's 20 GiB on an EBS
volume. Anything no capacity can give is refused before launch with a message naming the task,
what it asked, the limit, and the setting that lifts it. ``for_task`` is the one decision, used at
submit (pipeline/validate.py, for literal requests) and by the backend (for every task).
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from dataclasses import dataclass, replace
from typing import Any

GIB = 1024  # MiB

# cpu units -> valid memory sizes in MiB (AWS Fargate task size table)
FARGATE_SIZES: dict[int, list[int]] = {
    256: [512, 1024, 2048],
    512: list(range(1 * GIB, 4 * GIB + 1, GIB)),
    1024: list(range(2 * GIB, 8 * GIB + 1, GIB)),
    2048: list(range(4 * GIB, 16 * GIB + 1, GIB)),
    4096: list(range(8 * GIB, 30 * GIB + 1, GIB)),
    8192: list(range(16 * GIB, 60 * GIB + 1, 4 * GIB)),
    16384: list(range(32 * GIB, 120 * GIB + 1, 8 * GIB)),
}
MAX_CPU_UNITS = max(FARGATE_SIZES)  # Fargate's
MAX_MEMORY_MIB = max(max(v) for v in FARGATE_SIZES.values())
MAX_EPHEMERAL_GIB = 200
MIN_EPHEMERAL_GIB = 21  # the smallest value RunTask accepts; 20 GiB is what a task gets by default
DEFAULT_EPHEMERAL_GIB = 20
#: room kept beside ``disks`` on a Fargate task's ephemeral storage for its image: the image is
#: pulled onto that same storage, compressed and unpacked ("you must subtract the amount of storage
#: your container image uses from the total amount of ephemeral storage your task is allocated",
#: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-task-storage.html); a large
#: bioinformatics image (GATK's) is some 5 GiB unpacked. 10 GiB more of ephemeral storage costs
#: about a tenth of a cent an hour
IMAGE_ROOM_GIB = 10
# an ECS-managed EBS volume (gp3) is 1 to 16,384 GiB:
# https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-ecs-service-servicemanagedebsvolumeconfiguration.html
MAX_EBS_GIB = 16384

FARGATE = "FARGATE"
MANAGED_INSTANCES = "MANAGED_INSTANCES"
#: how a refusal says what lifts it, for the stack and for the plugin on its own
ENABLE_MANAGED_INSTANCES = (
    "tasks beyond Fargate run on ECS Managed Instances: deploy the stack with ManagedInstances=Enabled"
    " (the plugin on its own: [aws_fargate] managed_instances_capacity_provider)"
)
ENABLE_EBS_SCRATCH = "scratch beyond that is an EBS volume: set [aws_fargate] ebs_volume_role"


class SizeError(ValueError):
    """A request that no capacity can satisfy."""


#: the most vCPU an ECS task on EC2 instances may ask for (192 vCPU, 196,608 cpu units):
#: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-cpu-memory-error.html
MAX_INSTANCE_TASK_CPU = 192
#: memory an instance's ECS agent keeps from tasks: it registers less than the instance type
#: advertises, and a task that does not fit what is registered waits in the queue for good
#: (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/memory-management.html,
#: "ECS Managed Instances memory resource determination"); so a task may ask for the largest
#: instance's memory less this much (the larger of 2 GiB and 5%)
RESERVED_MEMORY_MIB = 2 * GIB
RESERVED_MEMORY_FRACTION = 0.05


@dataclass(frozen=True)
class ManagedInstanceLimits:
    """What the stack's ECS Managed Instances capacity offers (its instance requirements);
    ``max_cpu`` 0: there is no such capacity."""

    max_cpu: int = 0  # vCPU
    max_memory_gib: int = 0
    max_gpus: int = 0  # 0: no GPU instance types allowed

    @property
    def task_cpu_units(self) -> int:
        """The most cpu units one task can get: the largest instance's, at most ECS's cap."""
        return min(self.max_cpu, MAX_INSTANCE_TASK_CPU) * 1024

    @property
    def task_memory_mib(self) -> int:
        """The most memory one task can get: the largest instance's, less what its agent keeps."""
        instance = self.max_memory_gib * GIB
        return instance - max(RESERVED_MEMORY_MIB, math.ceil(instance * RESERVED_MEMORY_FRACTION))


@dataclass(frozen=True)
class Capacities:
    """Where tasks can run besides Fargate: the managed-instances capacity, and whether tasks can
    get EBS scratch volumes (an ECS infrastructure role for volumes is configured)."""

    managed_instances: ManagedInstanceLimits = ManagedInstanceLimits()
    ebs_scratch: bool = False


@dataclass(frozen=True)
class TaskSize:
    cpu: int  # cpu units (1024 = 1 vCPU)
    memory: int  # MiB
    ephemeral_gib: int | None = None  # Fargate only; None: Fargate's default (20 GiB)
    capacity: str = FARGATE  # FARGATE or MANAGED_INSTANCES (Spot or not is the backend's choice)
    gpus: int = 0
    scratch_gib: int | None = None  # an EBS volume of this size as the task's scratch; None: none
    #: where else the task's ``disks`` asks for that space ("/mnt/data 500 SSD"): the scratch
    #: volume is mounted there too
    scratch_paths: tuple[str, ...] = ()

    @property
    def vcpu(self) -> float:
        return self.cpu / 1024


def snap(cpu_units: int, memory_mib: int) -> TaskSize:
    """The smallest valid Fargate size with at least ``cpu_units`` and ``memory_mib``."""
    if cpu_units > MAX_CPU_UNITS:
        raise SizeError(
            f"{cpu_units / 1024:g} vCPU requested; Fargate allows at most {MAX_CPU_UNITS // 1024} vCPU"
        )
    if memory_mib > MAX_MEMORY_MIB:
        raise SizeError(
            f"{memory_mib / GIB:g} GiB memory requested; Fargate allows at most {MAX_MEMORY_MIB // GIB} GiB"
        )
    for cpu, memories in FARGATE_SIZES.items():
        if cpu < cpu_units or memories[-1] < memory_mib:
            continue
        for memory in memories:
            if memory >= memory_mib:
                return TaskSize(cpu, memory)
    raise SizeError(f"no Fargate size fits {cpu_units} cpu units and {memory_mib} MiB")  # unreachable


def next_size_up(size: TaskSize, memory_factor: float = 2.0, capacities: Capacities = Capacities()) -> TaskSize:
    """The size to retry with when ``size`` ran out of memory: ``memory_factor`` times the memory,
    snapped up on Fargate; on managed instances as is, up to their largest (raises SizeError past
    the capacity's largest memory). The task stays on its capacity."""
    if size.capacity == MANAGED_INSTANCES:
        largest = capacities.managed_instances.task_memory_mib
        memory = min(largest, math.ceil(size.memory * memory_factor))
        if memory <= size.memory:
            raise SizeError(f"{size.memory / GIB:g} GiB is already the managed instances' largest memory")
        return replace(size, memory=memory)
    memory = min(MAX_MEMORY_MIB, math.ceil(size.memory * memory_factor))
    if memory <= size.memory:
        raise SizeError(f"{size.memory / GIB:g} GiB is already Fargate's largest memory size")
    bigger = snap(size.cpu, memory)
    return replace(size, cpu=bigger.cpu, memory=bigger.memory)


def memory_text(text: str) -> str:
    """A ``runtime.memory`` string with its unit as miniwdl spells it ("4 gb" -> "4 GB", "2gib"
    -> "2GiB"): WDL's units of storage are case-insensitive
    (https://github.com/openwdl/wdl/blob/wdl-1.1/SPEC.md#units-of-storage), miniwdl's
    ``parse_byte_size`` is not. Anything else is given back as it is (miniwdl says what is wrong)."""
    from WDL._util import byte_size_units

    found = re.fullmatch(r"\s*([0-9.]+\s*)([A-Za-z]+)\s*", text)
    units = {unit.lower(): unit for unit in byte_size_units}
    if not found or found.group(2).lower() not in units:
        return text
    return found.group(1) + units[found.group(2).lower()]


def memory_mib(memory_bytes: int) -> int:
    return max(1, math.ceil(memory_bytes / (1024 * 1024)))


_UNITS = {
    "": 1024**3,  # a bare number means GiB (WDL 1.2 disks; Cromwell's "local-disk 100 SSD" means GB)
    "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4, "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2,
    "gi": 1024**3, "gib": 1024**3, "ti": 1024**4, "tib": 1024**4,
}
_DISK_SPEC = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?(?![\w.])", re.IGNORECASE)


def disks_gib(value: Any) -> int:
    """GiB of disk that a WDL ``runtime.disks`` value asks for, summed over its mount specs.

    Accepts WDL 1.2 (``"100 GiB"``, ``"/mnt/data 50 GiB"``, an array of those, a bare integer of GiB)
    and Cromwell's ``"local-disk 100 SSD"``, several disks separated by commas
    (``"local-disk 100 SSD, /mnt/my_mnt 3 SSD"``:
    https://cromwell.readthedocs.io/en/stable/RuntimeAttributes/#disks). A mount point is read as
    a path, never as a size (``"/mnt/2 10 GiB"`` is 10 GiB).
    """
    specs = value if isinstance(value, list) else [value]
    total_bytes = 0
    for spec in specs:
        if isinstance(spec, bool):
            raise SizeError(f"cannot read a disk size from {spec!r}")
        if isinstance(spec, (int, float)):
            total_bytes += int(spec * 1024**3)
            continue
        text = str(spec)
        for part in text.split(",") if "," in text else [text]:
            words = part.split()
            if words and (words[0].startswith("/") or words[0] == "local-disk"):
                words = words[1:]  # (its mount point)
            found = list(_DISK_SPEC.finditer(" ".join(words)))
            if len(found) != 1:
                raise SizeError(f"cannot read a disk size from {text!r} (expected e.g. \"100 GiB\" or \"local-disk 100 SSD\")")
            number, unit = found[0].groups()
            total_bytes += int(float(number) * _UNITS[(unit or "").lower()])
    return math.ceil(total_bytes / 1024**3)


#: directories of the image a disk cannot be mounted on (an empty volume would hide the image's
#: own files there) and the kernel's; a disk is best named under /mnt
_NOT_MOUNTABLE = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin", "/sys", "/usr", "/var")


def disk_mount_points(value: Any) -> tuple[str, ...]:
    """The absolute mount points a ``runtime.disks`` value names, each once, in order
    (``"local-disk 100 SSD, /mnt/my_mnt 3 SSD"`` names ``/mnt/my_mnt``; ``local-disk``, the task's
    working directory, and bare sizes name none), or SizeError for one no volume can be mounted on."""
    found: list[str] = []
    for spec in value if isinstance(value, list) else [value]:
        if isinstance(spec, (bool, int, float)):
            continue
        for part in str(spec).split(","):
            words = part.split()
            if not words or not words[0].startswith("/"):
                continue
            path = posixpath.normpath(words[0])
            if path == "/" or any(path == top or path.startswith(top + "/") for top in _NOT_MOUNTABLE):
                raise SizeError(
                    f"runtime.disks mount point {words[0]!r}: a disk mounted there would hide the image's own files; "
                    "name a directory of its own, such as /mnt/data"
                )
            if path not in found:
                found.append(path)
    return tuple(found)


#: the runtime keys that ask for a number of GPUs, which miniwdl passes through: Cromwell's
#: ``gpuCount`` and AWS HealthOmics's ``acceleratorCount`` (with ``acceleratorType``, which alone
#: asks for one: https://docs.aws.amazon.com/omics/latest/dev/task-accelerators.html)
GPU_COUNT_KEYS = ("gpuCount", "acceleratorCount")
GPU_KEYS = ("gpu", *GPU_COUNT_KEYS, "acceleratorType")


def _whole_number(value: Any) -> int | None:
    """A runtime value (as JSON) that is a whole number: a non-negative int, or a string of ASCII
    digits (as `"~{n}"` makes one); None for anything else."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    return int(text) if text.isascii() and text.isdigit() else None


def boot_disk(task: str, value: Any) -> int | None:
    """Cromwell's ``bootDiskSizeGb`` (its value as JSON: a whole number of GB, or a string of
    digits; None for none), in GiB; SizeError for anything else."""
    if value is None:
        return None
    if (gb := _whole_number(value)) is None:
        raise SizeError(f"task {task}: runtime.bootDiskSizeGb = {json.dumps(value)}: expected a whole number of GB, e.g. bootDiskSizeGb: 30")
    return min(gb, MAX_EPHEMERAL_GIB)


def disks_value(runtime: dict[str, Any]) -> Any:
    """A task's ``disks`` (as JSON), else the TES backends' ``disk`` ("10 GB", Cromwell on TES and
    Funnel), which says the same; None for neither."""
    return runtime.get("disks") if runtime.get("disks") is not None else runtime.get("disk")


def gpus_asked(task: str, runtime: dict[str, Any]) -> tuple[int, str]:
    """How many GPUs a task's runtime asks for by count (its values as JSON, ``GPU_KEYS``; None,
    an optional left unset, says nothing), and the key that says so ("" for none); SizeError for
    a count that is not a whole number (a number, or a string of digits as `"~{n}"` makes)."""
    for key in GPU_COUNT_KEYS:
        value = runtime.get(key)
        if value is None:
            continue
        if (count := _whole_number(value)) is None:
            raise SizeError(f"task {task}: runtime.{key} = {json.dumps(value)}: expected a whole number of GPUs, e.g. {key}: 2")
        return count, f"runtime.{key}"
    kind = runtime.get("acceleratorType")
    if isinstance(kind, str) and kind.strip():
        return 1, f"runtime.acceleratorType = {json.dumps(kind)}"
    return 0, ""


def for_task(
    task: str,
    *,
    cpu: float | None,
    memory_bytes: int | None,
    disks: Any = None,
    gpu: bool = False,
    gpus: int = 0,
    gpus_said: str = "runtime.gpuCount",
    boot_disk_gib: int | None = None,
    default_cpu_units: int,
    default_memory_mib: int,
    capacities: Capacities = Capacities(),
) -> TaskSize:
    """The size and capacity for a task's runtime requests, or SizeError saying what cannot be met.

    ``cpu`` in vCPUs (fractions allowed: 0.25 and 0.5 are Fargate sizes), ``memory_bytes`` as
    miniwdl parsed it, ``disks`` the raw ``runtime.disks`` value, ``gpu`` WDL's ``gpu: true`` and
    ``gpus`` a GPU count (``gpus_asked``: the ``gpuCount`` hint, said by ``gpus_said``; ``gpu:
    true`` alone means one), ``boot_disk_gib`` Cromwell's ``bootDiskSizeGb`` (where its image goes:
    room for the image, ``boot_disk``); None means the task did not say.
    """
    gpus = max(gpus, 1 if gpu else 0)
    cpu_units = default_cpu_units if cpu is None else max(1, math.ceil(cpu * 1024))
    mem = default_memory_mib if memory_bytes is None else memory_mib(memory_bytes)
    problems: list[str] = []
    disk_gib = None
    if disks is not None:
        try:
            disk_gib = disks_gib(disks)
        except SizeError as exn:
            problems.append(f"runtime.disks: {exn}")
    beyond = _beyond_fargate(cpu, cpu_units, mem, gpus, "" if gpu and gpus == 1 else gpus_said)
    if not beyond:
        if problems:
            raise SizeError(f"task {task} cannot run on Fargate: " + "; ".join(problems))
        sized = _with_fargate_disk(task, snap(cpu_units, mem), disk_gib, capacities, boot_disk_gib or 0)
        return _mounted_where_asked(task, sized, disks)
    limits = capacities.managed_instances
    if not limits.max_cpu:
        raise SizeError(f"task {task} cannot run on Fargate: " + "; ".join(beyond + problems) + f"; {ENABLE_MANAGED_INSTANCES}")
    problems += _beyond_managed_instances(cpu, cpu_units, mem, gpus, limits)
    if problems:
        raise SizeError(f"task {task} cannot run on Fargate or the stack's managed instances: " + "; ".join(beyond + problems))
    size = TaskSize(cpu_units, mem, None, MANAGED_INSTANCES, gpus)
    if disk_gib is not None and disk_gib > DEFAULT_EPHEMERAL_GIB:  # beyond the instance's share: a volume of its own
        size = replace(size, scratch_gib=_scratch_gib(task, disk_gib, MANAGED_INSTANCES, capacities))
    return _mounted_where_asked(task, size, disks)


def _mounted_where_asked(task: str, size: TaskSize, disks: Any) -> TaskSize:
    """A task given an EBS scratch volume gets it at the mount points its ``disks`` names too
    (where its command will write); one without keeps its disks on its own storage, as before."""
    if not size.scratch_gib:
        return size
    try:
        return replace(size, scratch_paths=disk_mount_points(disks))
    except SizeError as exn:
        raise SizeError(f"task {task}: {exn}") from None


def _beyond_fargate(cpu: float | None, cpu_units: int, mem: int, gpus: int, gpus_said: str = "") -> list[str]:
    """What of a request Fargate cannot give (``gpus_said``: what asked for the GPUs by count)."""
    beyond = []
    if gpus:
        asked = f"{gpus} GPU{'s' if gpus > 1 else ''} ({gpus_said})" if gpus_said else "runtime.gpu = true"
        beyond.append(f"{asked}; Fargate has no GPUs")
    if cpu_units > MAX_CPU_UNITS:
        beyond.append(f"runtime.cpu = {cpu:g}; Fargate allows at most {MAX_CPU_UNITS // 1024} vCPU")
    if mem > MAX_MEMORY_MIB:
        beyond.append(f"runtime.memory = {mem / GIB:g} GiB; Fargate allows at most {MAX_MEMORY_MIB // GIB} GiB")
    return beyond


def _beyond_managed_instances(cpu: float | None, cpu_units: int, mem: int, gpus: int, limits: ManagedInstanceLimits) -> list[str]:
    """What of a request the stack's managed instances cannot give, naming the stack parameter
    and the plugin's own setting (alone, without the stack) that allow more."""
    beyond = []
    if gpus > limits.max_gpus:
        allowed = f"at most {limits.max_gpus}" if limits.max_gpus else "no"
        beyond.append(f"the managed instances allow {allowed} GPUs (stack parameters ManagedInstancesGpuKinds, ManagedInstancesMaxGpus;"
                      " alone: [aws_fargate] managed_instances_gpu_capacity_provider, managed_instances_max_gpus)")
    if cpu_units > limits.task_cpu_units:
        cap = "" if limits.max_cpu <= MAX_INSTANCE_TASK_CPU else f"; ECS gives one task at most {MAX_INSTANCE_TASK_CPU} vCPU"
        beyond.append(
            f"the managed instances allow at most {limits.task_cpu_units // 1024} vCPU (stack parameter ManagedInstancesMaxVCpu;"
            f" alone: [aws_fargate] managed_instances_max_cpu{cap})"
        )
    if mem > limits.task_memory_mib:
        beyond.append(
            f"the managed instances allow at most {round(limits.task_memory_mib / GIB, 1):g} GiB"
            f" (stack parameter ManagedInstancesMaxMemoryGiB = {limits.max_memory_gib};"
            " alone: [aws_fargate] managed_instances_max_memory_gib; less what the ECS agent keeps)"
        )
    return beyond


def _with_fargate_disk(task: str, size: TaskSize, disk_gib: int | None, capacities: Capacities, boot_gib: int = 0) -> TaskSize:
    """``disks`` on Fargate: ephemeral storage of the disk and room for the image
    (``IMAGE_ROOM_GIB``, or the task's ``bootDiskSizeGb`` where larger: Cromwell's disk for the
    image, which a large image's task names), up to Fargate's 200 GiB; beyond, an EBS scratch
    volume of the disk where the stack has them (the image stays on the ephemeral storage), else
    ephemeral storage's most."""
    if disk_gib is None and not boot_gib:
        return size
    wanted = (disk_gib or 0) + max(IMAGE_ROOM_GIB, boot_gib)
    if wanted <= DEFAULT_EPHEMERAL_GIB:
        return size
    if wanted <= MAX_EPHEMERAL_GIB or (disk_gib or 0) <= MAX_EPHEMERAL_GIB and not capacities.ebs_scratch:
        return replace(size, ephemeral_gib=max(MIN_EPHEMERAL_GIB, min(MAX_EPHEMERAL_GIB, wanted)))
    # the disk on an EBS scratch volume; the image's room (a large bootDiskSizeGb) still on the ephemeral storage
    room = max(IMAGE_ROOM_GIB, boot_gib)
    with_room = size if room <= IMAGE_ROOM_GIB else replace(size, ephemeral_gib=max(MIN_EPHEMERAL_GIB, min(MAX_EPHEMERAL_GIB, room)))
    return replace(with_room, scratch_gib=_scratch_gib(task, disk_gib or 0, FARGATE, capacities))


def _scratch_gib(task: str, disk_gib: int, capacity: str, capacities: Capacities) -> int:
    """The EBS scratch volume's size for ``disk_gib`` on ``capacity``, or SizeError where there can be none."""
    where, given = (
        ("on Fargate", f"Fargate ephemeral storage is at most {MAX_EPHEMERAL_GIB} GiB")
        if capacity == FARGATE
        else ("on the stack's managed instances", f"a managed instance gives a task at most {DEFAULT_EPHEMERAL_GIB} GiB")
    )
    if not capacities.ebs_scratch:
        raise SizeError(
            f"task {task} cannot run {where}: runtime.disks = {disk_gib} GiB; {given}; {ENABLE_EBS_SCRATCH}"
            " (keep large data on EFS, where the task's working directory is)"
        )
    if disk_gib > MAX_EBS_GIB:
        raise SizeError(f"task {task} cannot run {where}: runtime.disks = {disk_gib} GiB; an EBS scratch volume is at most {MAX_EBS_GIB} GiB")
    return disk_gib
