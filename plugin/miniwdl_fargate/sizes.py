"""Fargate task sizes: WDL ``runtime`` requests snapped up to what Fargate can run.

- cpu/memory: the smallest valid Fargate (cpu, memory) pair covering the request (the table below);
- ``disks``: ephemeral storage, 20 GiB by default and settable from 21 to 200 GiB;
- anything Fargate cannot give (over 16 vCPU or 120 GiB, over 200 GiB of disk, a GPU) is refused
  before launch with a message naming the task, what it asked and the limit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
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
MAX_CPU_UNITS = max(FARGATE_SIZES)
MAX_MEMORY_MIB = max(max(v) for v in FARGATE_SIZES.values())
MAX_EPHEMERAL_GIB = 200
MIN_EPHEMERAL_GIB = 21  # the smallest value RunTask accepts; 20 GiB is what a task gets by default
DEFAULT_EPHEMERAL_GIB = 20


class SizeError(ValueError):
    """A request that no Fargate task size can satisfy."""


@dataclass(frozen=True)
class FargateSize:
    cpu: int  # cpu units (1024 = 1 vCPU)
    memory: int  # MiB
    ephemeral_gib: int | None = None  # None: Fargate's default (20 GiB)

    @property
    def vcpu(self) -> float:
        return self.cpu / 1024


def snap(cpu_units: int, memory_mib: int) -> FargateSize:
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
                return FargateSize(cpu, memory)
    raise SizeError(f"no Fargate size fits {cpu_units} cpu units and {memory_mib} MiB")  # unreachable


def next_size_up(size: FargateSize, memory_factor: float = 2.0) -> FargateSize:
    """The size to retry with when ``size`` ran out of memory: ``memory_factor`` times the memory,
    snapped up (raises SizeError past Fargate's largest size)."""
    memory = min(MAX_MEMORY_MIB, math.ceil(size.memory * memory_factor))
    if memory <= size.memory:
        raise SizeError(f"{size.memory / GIB:g} GiB is already Fargate's largest memory size")
    bigger = snap(size.cpu, memory)
    return FargateSize(bigger.cpu, bigger.memory, size.ephemeral_gib)


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
    and the Cromwell-style ``"local-disk 100 SSD"``.
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
        found = [m for m in _DISK_SPEC.finditer(text)]
        if len(found) != 1:
            raise SizeError(f"cannot read a disk size from {text!r} (expected e.g. \"100 GiB\" or \"local-disk 100 SSD\")")
        number, unit = found[0].groups()
        total_bytes += int(float(number) * _UNITS[(unit or "").lower()])
    return math.ceil(total_bytes / 1024**3)


def for_task(
    task: str,
    *,
    cpu: float | None,
    memory_bytes: int | None,
    disks: Any = None,
    gpu: bool = False,
    default_cpu_units: int,
    default_memory_mib: int,
) -> FargateSize:
    """The Fargate size for a task's runtime requests, or SizeError saying what cannot be met.

    ``cpu`` in vCPUs (fractions allowed: 0.25 and 0.5 are Fargate sizes), ``memory_bytes`` as
    miniwdl parsed it, ``disks`` the raw ``runtime.disks`` value; None means the task did not say.
    """
    problems = []
    if gpu:
        problems.append("runtime.gpu = true; Fargate has no GPUs")
    cpu_units = default_cpu_units if cpu is None else max(1, math.ceil(cpu * 1024))
    if cpu_units > MAX_CPU_UNITS:
        problems.append(f"runtime.cpu = {cpu:g}; Fargate allows at most {MAX_CPU_UNITS // 1024} vCPU")
    mem = default_memory_mib if memory_bytes is None else memory_mib(memory_bytes)
    if mem > MAX_MEMORY_MIB:
        problems.append(
            f"runtime.memory = {mem / GIB:g} GiB; Fargate allows at most {MAX_MEMORY_MIB // GIB} GiB"
        )
    ephemeral = None
    if disks is not None:
        try:
            gib = disks_gib(disks)
        except SizeError as exn:
            problems.append(f"runtime.disks: {exn}")
        else:
            if gib > MAX_EPHEMERAL_GIB:
                problems.append(
                    f"runtime.disks = {gib} GiB; Fargate ephemeral storage is at most {MAX_EPHEMERAL_GIB} GiB"
                    " (keep large data on EFS, where the task's working directory is)"
                )
            elif gib > DEFAULT_EPHEMERAL_GIB:
                ephemeral = max(MIN_EPHEMERAL_GIB, gib)
    if problems:
        raise SizeError(f"task {task} cannot run on Fargate: " + "; ".join(problems))
    size = snap(cpu_units, mem)
    return FargateSize(size.cpu, size.memory, ephemeral)
