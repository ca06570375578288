import math

import pytest

from miniwdl_fargate import sizes
from miniwdl_fargate.sizes import SizeError, disks_gib, for_task, next_size_up, snap, TaskSize

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
        # Cromwell's several disks in one string (its RuntimeAttributes docs' example 2), summed
        ("local-disk 100 SSD, /mnt/my_mnt 3 SSD", 103),
        ("/mnt/my_mnt 3 SSD, /mnt/my_mnt2 500 HDD", 503),
        ("/mnt/2 10 GiB", 10),  # (a mount point with a digit is a path, not a size)
    ],
)
def test_disks_in_every_wdl_spelling(value, gib):
    assert disks_gib(value) == gib


@pytest.mark.parametrize("value", ["lots", "local-disk SSD", "10 GiB 20 GiB", True, "local-disk 10 SSD, ", "/mnt/a, /mnt/b 3 SSD"])
def test_unreadable_disks(value):
    with pytest.raises(SizeError, match="cannot read a disk size"):
        disks_gib(value)


DEFAULTS = dict(default_cpu_units=1024, default_memory_mib=2048)


@pytest.mark.parametrize(
    "request_, expected",
    [
        (dict(cpu=None, memory_bytes=None), TaskSize(1024, 2048)),  # the configured defaults
        (dict(cpu=0.25, memory_bytes=512 * 2**20), TaskSize(256, 512)),  # fractional vCPU
        (dict(cpu=0.5, memory_bytes=None), TaskSize(512, 2048)),
        (dict(cpu=2, memory_bytes=3 * 2**30), TaskSize(2048, 4096)),
        (dict(cpu=3, memory_bytes=None), TaskSize(4096, 8192)),
        # the disk and room for the image (sizes.IMAGE_ROOM_GIB: the image is pulled onto the same storage)
        (dict(cpu=1, memory_bytes=None, disks="local-disk 10 SSD"), TaskSize(1024, 2048)),  # 20 GiB included
        (dict(cpu=1, memory_bytes=None, disks="20 GiB"), TaskSize(1024, 2048, 30)),
        (dict(cpu=1, memory_bytes=None, disks="11 GiB"), TaskSize(1024, 2048, 21)),
        (dict(cpu=1, memory_bytes=None, disks="local-disk 190 SSD"), TaskSize(1024, 2048, 200)),
        (dict(cpu=1, memory_bytes=None, disks="local-disk 200 SSD"), TaskSize(1024, 2048, 200)),  # (no EBS scratch: the most there is)
        (dict(cpu=16, memory_bytes=120 * 2**30), TaskSize(16384, 120 * GIB)),
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
    assert next_size_up(TaskSize(1024, 2048, 50)) == TaskSize(1024, 4096, 50)
    assert next_size_up(TaskSize(1024, 8192)) == TaskSize(2048, 16384)
    assert next_size_up(TaskSize(16384, 96 * GIB)) == TaskSize(16384, 120 * GIB)
    with pytest.raises(SizeError):
        next_size_up(TaskSize(16384, 120 * GIB))


# -- beyond Fargate: the managed-instances capacity and EBS scratch -----------------------------

from miniwdl_fargate.sizes import MANAGED_INSTANCES, Capacities, ManagedInstanceLimits  # noqa: E402

WITH_MI = Capacities(ManagedInstanceLimits(max_cpu=64, max_memory_gib=512, max_gpus=4), ebs_scratch=True)


def test_a_task_that_fits_fargate_stays_on_fargate_when_managed_instances_exist():
    size = for_task("call-x", cpu=16, memory_bytes=120 * 2**30, capacities=WITH_MI, **DEFAULTS)
    assert (size.capacity, size.cpu, size.memory, size.gpus, size.scratch_gib) == ("FARGATE", 16384, 120 * GIB, 0, None)


@pytest.mark.parametrize(
    "request_, expected",
    [
        (dict(cpu=32, memory_bytes=64 * 2**30), (32 * 1024, 64 * GIB, 0)),
        (dict(cpu=2, memory_bytes=300 * 2**30), (2048, 300 * GIB, 0)),
        (dict(cpu=4, memory_bytes=16 * 2**30, gpu=True), (4096, 16 * GIB, 1)),
        (dict(cpu=8, memory_bytes=None, gpus=4), (8192, 2048, 4)),
        (dict(cpu=0.5, memory_bytes=1000 * 2**20, gpu=True), (512, 1000, 1)),  # as asked: no size table there
    ],
)
def test_tasks_beyond_fargate_go_to_managed_instances_as_asked(request_, expected):
    size = for_task("call-x", **request_, capacities=WITH_MI, **DEFAULTS)
    assert size.capacity == MANAGED_INSTANCES
    assert (size.cpu, size.memory, size.gpus) == expected
    assert size.ephemeral_gib is None


@pytest.mark.parametrize(
    "request_, message",
    [
        (dict(cpu=96, memory_bytes=None), "the managed instances allow at most 64 vCPU (stack parameter ManagedInstancesMaxVCpu; alone: [aws_fargate] managed_instances_max_cpu)"),
        (dict(cpu=2, memory_bytes=1024 * 2**30), "(stack parameter ManagedInstancesMaxMemoryGiB = 512; alone: [aws_fargate] managed_instances_max_memory_gib; less what the ECS agent keeps)"),
        (dict(cpu=2, memory_bytes=None, gpus=8), "the managed instances allow at most 4 GPUs"),
    ],
)
def test_beyond_the_managed_instances_too_is_refused_naming_the_parameter(request_, message):
    with pytest.raises(SizeError) as info:
        for_task("call-x", **request_, capacities=WITH_MI, **DEFAULTS)
    assert str(info.value).startswith("task call-x cannot run on Fargate or the stack's managed instances: ")
    assert message in str(info.value)


def test_a_gpu_task_without_gpu_instance_types_is_refused_naming_the_parameter():
    no_gpus = Capacities(ManagedInstanceLimits(max_cpu=64, max_memory_gib=512, max_gpus=0))
    with pytest.raises(SizeError, match=r"runtime.gpu = true; Fargate has no GPUs; the managed instances allow no GPUs \(stack parameters ManagedInstancesGpuKinds"):
        for_task("call-x", cpu=1, memory_bytes=None, gpu=True, capacities=no_gpus, **DEFAULTS)


def test_without_managed_instances_the_refusal_says_how_to_turn_them_on():
    with pytest.raises(SizeError, match=r"runtime.cpu = 32; .*deploy the stack with ManagedInstances=Enabled .*managed_instances_capacity_provider"):
        for_task("call-x", cpu=32, memory_bytes=None, **DEFAULTS)


def test_disks_beyond_fargate_storage_get_an_ebs_scratch_volume_on_either_capacity():
    fargate = for_task("call-x", cpu=1, memory_bytes=None, disks="local-disk 500 SSD", capacities=WITH_MI, **DEFAULTS)
    assert (fargate.capacity, fargate.ephemeral_gib, fargate.scratch_gib) == ("FARGATE", None, 500)
    small = for_task("call-x", cpu=1, memory_bytes=None, disks="150 GiB", capacities=WITH_MI, **DEFAULTS)
    assert (small.ephemeral_gib, small.scratch_gib) == (160, None)  # (and room for the image)
    # one that leaves no room for the image on ephemeral storage gets a volume of its own
    close = for_task("call-x", cpu=1, memory_bytes=None, disks="195 GiB", capacities=WITH_MI, **DEFAULTS)
    assert (close.ephemeral_gib, close.scratch_gib) == (None, 195)
    managed = for_task("call-x", cpu=32, memory_bytes=None, disks="100 GiB", capacities=WITH_MI, **DEFAULTS)
    assert (managed.capacity, managed.scratch_gib) == (MANAGED_INSTANCES, 100)
    assert for_task("call-x", cpu=32, memory_bytes=None, disks="10 GiB", capacities=WITH_MI, **DEFAULTS).scratch_gib is None


def test_a_scratch_volume_is_mounted_where_the_disks_name_it_too():
    """Cromwell's "/mnt/data 500 SSD": the command will write under /mnt/data, so the volume that
    gives the task its 500 GiB is mounted there (and stays the TMPDIR); local-disk names none."""
    one = for_task("call-x", cpu=1, memory_bytes=None, disks="/mnt/data 500 SSD", capacities=WITH_MI, **DEFAULTS)
    assert (one.scratch_gib, one.scratch_paths) == (500, ("/mnt/data",))
    several = for_task("call-x", cpu=1, memory_bytes=None, disks=["local-disk 100 SSD", "/mnt/ref/ 200 GiB", "/mnt/out 100 GiB"],
                       capacities=WITH_MI, **DEFAULTS)
    assert (several.scratch_gib, several.scratch_paths) == (400, ("/mnt/ref", "/mnt/out"))
    managed = for_task("call-x", cpu=32, memory_bytes=None, disks="local-disk 50 SSD, /mnt/x 60 SSD", capacities=WITH_MI, **DEFAULTS)
    assert managed.scratch_paths == ("/mnt/x",)
    # on the task's own storage (no volume) its disks stay as they were: nothing mounted, nothing refused
    small = for_task("call-x", cpu=1, memory_bytes=None, disks="/usr/local 50 GiB", capacities=WITH_MI, **DEFAULTS)
    assert (small.scratch_gib, small.scratch_paths) == (None, ())


@pytest.mark.parametrize("mount", ["/", "/usr", "/usr/local/", "/etc/x", "/proc"])
def test_a_volume_is_never_mounted_over_the_images_own_files(mount):
    with pytest.raises(SizeError, match=rf"^task call-x: runtime.disks mount point '{mount}': a disk mounted there would hide"):
        for_task("call-x", cpu=1, memory_bytes=None, disks=f"{mount} 500 GiB", capacities=WITH_MI, **DEFAULTS)


def test_scratch_beyond_what_ebs_or_the_configuration_allows_is_refused():
    with pytest.raises(SizeError, match=r"an EBS scratch volume is at most 16384 GiB"):
        for_task("call-x", cpu=1, memory_bytes=None, disks="20 TiB", capacities=WITH_MI, **DEFAULTS)
    no_ebs = Capacities(ManagedInstanceLimits(max_cpu=64, max_memory_gib=512))
    with pytest.raises(SizeError, match=r"^task call-x cannot run on the stack's managed instances: runtime.disks = 100 GiB; .*ebs_volume_role"):
        for_task("call-x", cpu=32, memory_bytes=None, disks="100 GiB", capacities=no_ebs, **DEFAULTS)


def test_out_of_memory_on_managed_instances_retries_bigger_up_to_their_largest():
    size = for_task("call-x", cpu=32, memory_bytes=200 * 2**30, capacities=WITH_MI, **DEFAULTS)
    bigger = next_size_up(size, 2.0, WITH_MI)
    assert (bigger.capacity, bigger.cpu, bigger.memory) == (MANAGED_INSTANCES, 32 * 1024, 400 * GIB)
    assert next_size_up(bigger, 2.0, WITH_MI).memory == 512 * GIB - math.ceil(0.05 * 512 * GIB)  # less the agent's share
    with pytest.raises(SizeError):
        next_size_up(next_size_up(bigger, 2.0, WITH_MI), 2.0, WITH_MI)


def test_a_task_must_leave_the_agents_memory_free_and_stay_within_ecs_cpu_cap():
    """The ECS agent registers less memory than the instance has: a task asking for all of the
    largest instance's memory would wait for good; EC2-hosted tasks get at most 192 vCPU."""
    with pytest.raises(SizeError, match=r"at most 486.4 GiB \(stack parameter ManagedInstancesMaxMemoryGiB = 512"):
        for_task("call-x", cpu=64, memory_bytes=512 * 2**30, capacities=WITH_MI, **DEFAULTS)
    assert for_task("call-x", cpu=64, memory_bytes=480 * 2**30, capacities=WITH_MI, **DEFAULTS).memory == 480 * GIB
    small = Capacities(ManagedInstanceLimits(max_cpu=64, max_memory_gib=32))
    with pytest.raises(SizeError, match=r"at most 30 GiB"):  # 2 GiB kept when 5% is less
        for_task("call-x", cpu=32, memory_bytes=31 * 2**30, capacities=small, **DEFAULTS)
    huge = Capacities(ManagedInstanceLimits(max_cpu=448, max_memory_gib=4096))
    assert for_task("call-x", cpu=192, memory_bytes=None, capacities=huge, **DEFAULTS).cpu == 192 * 1024
    with pytest.raises(SizeError, match=r"at most 192 vCPU \(stack parameter ManagedInstancesMaxVCpu; alone: \[aws_fargate\] managed_instances_max_cpu; ECS gives one task at most 192 vCPU\)"):
        for_task("call-x", cpu=200, memory_bytes=None, capacities=huge, **DEFAULTS)


@pytest.mark.parametrize("given, spelt", [
    ("4g", "4G"), ("4 gb", "4 GB"), ("2gib", "2GiB"), ("1tb", "1TB"), ("7.5 GiB", "7.5 GiB"), ("3500 MB", "3500 MB"),
    ("123", "123"), ("lots", "lots"), ("4 gallons", "4 gallons"),
])
def test_a_memory_units_case_is_miniwdls_as_wdl_reads_units_whatever_their_case(given, spelt):
    assert sizes.memory_text(given) == spelt


def test_a_large_boot_disk_keeps_its_room_for_the_image_when_the_disk_goes_to_ebs():
    """disks 150 GiB with bootDiskSizeGb 60 on a stack with EBS scratch: the disk goes to an EBS
    volume (150 + 60 > 200), and the image's 60 GiB stay on the ephemeral storage (it fell back to
    the default 20)."""
    from miniwdl_fargate.sizes import Capacities

    size = for_task("t", cpu=1, memory_bytes=2 << 30, disks="local-disk 150 HDD", boot_disk_gib=60,
                    default_cpu_units=256, default_memory_mib=512, capacities=Capacities(ebs_scratch=True))
    assert (size.scratch_gib, size.ephemeral_gib) == (150, 60)


@pytest.mark.parametrize("value", ["²", "٣", "1.5", True, -1])
def test_a_count_that_is_not_ascii_digits_is_a_size_error(value):
    with pytest.raises(SizeError, match="expected a whole number"):
        sizes.gpus_asked("t", {"gpuCount": value})
    with pytest.raises(SizeError, match="expected a whole number"):
        sizes.boot_disk("t", value)
