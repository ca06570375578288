import pytest

from miniwdl_fargate.sizes import SizeError, snap

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
