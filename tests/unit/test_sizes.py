import pytest

from miniwdl_fargate.sizes import SizeError, disks_gib, for_task, next_size_up, snap, FargateSize

GIB = 1024


@pytest.mark.parametrize(
    "cpu, memory, expected",
    [
        (256, 512, (256, 512)),
        (256, 1, (256, 512)),
        (1, 1, (256, 512)),
        (256, 2048, (256, 2048)),
        (256, 2049, (512, 3 * GIB)),  # 0.25 vCPU tops out at 2 GB
        (512, 1024, (512, 1024)),
        (1024, 1024, (1024, 2048)),  # 1 vCPU needs at least 2 GB
        (1024, 2500, (1024, 3 * GIB)),  # 1 GB steps
        (1024, 9 * GIB, (2048, 9 * GIB)),  # too much memory for 1 vCPU
        (2048, 16 * GIB, (2048, 16 * GIB)),
        (3072, 4 * GIB, (4096, 8 * GIB)),  # 3 vCPU -> 4 vCPU, whose minimum is 8 GB
        (4096, 30 * GIB, (4096, 30 * GIB)),
        (4096, 31 * GIB, (8192, 32 * GIB)),  # 8 vCPU memory comes in 4 GB steps
        (8192, 17 * GIB, (8192, 20 * GIB)),
        (8192, 61 * GIB, (16384, 64 * GIB)),  # 16 vCPU: 8 GB steps
        (16384, 120 * GIB, (16384, 120 * GIB)),
    ],
)
def test_snap_up_to_valid_fargate_size(cpu, memory, expected):
    size = snap(cpu, memory)
    assert (size.cpu, size.memory) == expected


@pytest.mark.parametrize(
    "cpu, memory, message",
    [
        (17 * 1024, GIB, "17 vCPU requested; Fargate allows at most 16 vCPU"),
        (1024, 121 * GIB, "121 GiB memory requested; Fargate allows at most 120 GiB"),
    ],
)
def test_beyond_fargate_limits(cpu, memory, message):
    with pytest.raises(SizeError, match=message):
        snap(cpu, memory)


@pytest.mark.parametrize(
    "value, gib",
    [
        ("100 GiB", 100),
        ("local-disk 100 SSD", 100),  # Cromwell style: a bare number of GB
        ("local-disk 50 HDD", 50),
        ("/mnt/data2 30 GiB", 30),
        (["/mnt/a 10 GiB", "/mnt/b 15 GiB"], 25),
        (64, 64),
        ("500 GB", 466),
        ("1 TiB", 1024),
        ("2048 MiB", 2),
    ],
)
def test_disks_in_every_wdl_spelling(value, gib):
    assert disks_gib(value) == gib


@pytest.mark.parametrize("value", ["lots", "local-disk SSD", "10 GiB 20 GiB", True])
def test_unreadable_disks(value):
    with pytest.raises(SizeError, match="cannot read a disk size"):
        disks_gib(value)


DEFAULTS = dict(default_cpu_units=1024, default_memory_mib=2048)


@pytest.mark.parametrize(
    "request_, expected",
    [
        (dict(cpu=None, memory_bytes=None), FargateSize(1024, 2048)),  # the configured defaults
        (dict(cpu=0.25, memory_bytes=512 * 2**20), FargateSize(256, 512)),  # fractional vCPU
        (dict(cpu=0.5, memory_bytes=None), FargateSize(512, 2048)),
        (dict(cpu=2, memory_bytes=3 * 2**30), FargateSize(2048, 4096)),
        (dict(cpu=3, memory_bytes=None), FargateSize(4096, 8192)),
        (dict(cpu=1, memory_bytes=None, disks="local-disk 10 SSD"), FargateSize(1024, 2048)),  # 20 GiB included
        (dict(cpu=1, memory_bytes=None, disks="20 GiB"), FargateSize(1024, 2048)),
        (dict(cpu=1, memory_bytes=None, disks="21 GiB"), FargateSize(1024, 2048, 21)),
        (dict(cpu=1, memory_bytes=None, disks="local-disk 200 SSD"), FargateSize(1024, 2048, 200)),
        (dict(cpu=16, memory_bytes=120 * 2**30), FargateSize(16384, 120 * GIB)),
    ],
)
def test_task_sizes(request_, expected):
    assert for_task("call-x", **request_, **DEFAULTS) == expected


@pytest.mark.parametrize(
    "request_, message",
    [
        (dict(cpu=32, memory_bytes=None), "task call-x cannot run on Fargate: runtime.cpu = 32; Fargate allows at most 16 vCPU"),
        (dict(cpu=1, memory_bytes=200 * 2**30), "runtime.memory = 200 GiB; Fargate allows at most 120 GiB"),
        (dict(cpu=1, memory_bytes=None, disks="local-disk 500 SSD"), "runtime.disks = 500 GiB; Fargate ephemeral storage is at most 200 GiB"),
        (dict(cpu=1, memory_bytes=None, gpu=True), "runtime.gpu = true; Fargate has no GPUs"),
        (dict(cpu=64, memory_bytes=None, gpu=True), "runtime.gpu = true; Fargate has no GPUs; runtime.cpu = 64"),
    ],
)
def test_requests_fargate_cannot_meet_name_the_task_the_request_and_the_limit(request_, message):
    with pytest.raises(SizeError) as info:
        for_task("call-x", **request_, **DEFAULTS)
    assert message in str(info.value)
    assert str(info.value).startswith("task call-x cannot run on Fargate")


def test_next_size_up_doubles_memory_and_keeps_storage():
    assert next_size_up(FargateSize(1024, 2048, 50)) == FargateSize(1024, 4096, 50)
    assert next_size_up(FargateSize(1024, 8192)) == FargateSize(2048, 16384)
    assert next_size_up(FargateSize(16384, 96 * GIB)) == FargateSize(16384, 120 * GIB)
    with pytest.raises(SizeError):
        next_size_up(FargateSize(16384, 120 * GIB))
