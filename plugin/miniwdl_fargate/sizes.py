"""Fargate task sizes: snapping WDL cpu/memory requests up to a valid Fargate combination."""

from __future__ import annotations

import math
from dataclasses import dataclass

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
DEFAULT_EPHEMERAL_GIB = 20


class SizeError(ValueError):
    """A request that no Fargate task size can satisfy."""


@dataclass(frozen=True)
class FargateSize:
    cpu: int  # cpu units (1024 = 1 vCPU)
    memory: int  # MiB

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


def memory_mib(memory_bytes: int) -> int:
    return max(1, math.ceil(memory_bytes / (1024 * 1024)))
