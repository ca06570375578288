"""A local ECS task's host process (``local.jobs.HostJob``): waiting for it wakes when it exits
(its pidfd), gives its exit code to every waiter, and keeps no descriptor once it ended."""

import os
import subprocess
import sys
import threading

import pytest

from miniwdl_fargate.local.jobs import HostJob

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no pidfds here (Linux 5.3, Python 3.9)")


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def gate():
    """A pipe the job's process reads until the test closes its end: the job ends when told."""
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        try:
            os.close(fd)
        except OSError:
            pass


def gated_job(read_end: int) -> HostJob:
    job = HostJob([sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(7)"], "/", dict(os.environ))
    job.proc = subprocess.Popen(job.argv, stdin=read_end, stdout=subprocess.DEVNULL, start_new_session=True)
    return job


def test_wait_returns_nothing_while_the_process_runs_and_its_exit_code_once_it_ended(gate):
    read_end, write_end = gate
    before = open_fds()
    job = gated_job(read_end)
    assert job.wait(0) is None and job.running()
    os.close(write_end)
    assert job.wait(600) == 7
    assert job.wait(0) == 7 and not job.running()
    assert open_fds() - before == set(), sorted(os.readlink(f"/proc/self/fd/{fd}") for fd in open_fds() - before)  # its pidfd (and every copy of it) is closed


def test_two_threads_waiting_on_one_job_both_get_its_exit_code(gate):
    """The runner's thread and a stopping thread (``ContainerJob._stop``) may wait at once."""
    read_end, write_end = gate
    job = gated_job(read_end)
    codes: list[int | None] = []
    waiters = [threading.Thread(target=lambda: codes.append(job.wait(600))) for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    os.close(write_end)
    for waiter in waiters:
        waiter.join(600)
    assert codes == [7, 7]


def test_a_process_already_reaped_is_waited_for_without_a_pidfd(gate):
    read_end, write_end = gate
    job = gated_job(read_end)
    os.close(write_end)
    assert job.proc.wait(600) == 7  # reaped before the job's first wait
    assert job.wait(0) == 7


def test_a_jobs_memory_counts_its_whole_process_tree(gate):
    """The descendants come from the kernel's per-thread children lists: a grandchild counts."""
    from miniwdl_fargate.local import jobs

    read_end, write_end = gate
    script = (
        "import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()']);"
        " print(child.pid, flush=True); child.wait()"
    )
    job = HostJob([sys.executable, "-c", script], "/", dict(os.environ))
    job.proc = subprocess.Popen(job.argv, stdin=read_end, stdout=subprocess.PIPE, start_new_session=True)
    grandchild = int(job.proc.stdout.readline())
    tree = jobs.descendants(job.proc.pid)
    assert tree[0] == job.proc.pid and grandchild in tree
    if jobs.CHILDREN_FILES:
        import psutil

        rss = sum(psutil.Process(p).memory_info().rss for p in (job.proc.pid, grandchild))
        assert job.memory() >= rss * 0.5  # (both processes counted; their sizes move a little)
        assert job.memory() > psutil.Process(job.proc.pid).memory_info().rss
    os.close(write_end)
    assert job.wait(600) == 0
    job.proc.stdout.close()


def test_a_processs_resident_memory_is_what_psutil_reads_and_nothing_once_it_ended():
    import psutil

    from miniwdl_fargate.local import jobs

    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout.readline() == b"up\n"
        # (the same field of /proc/<pid>/statm: a process waiting on its input does not grow between the reads)
        assert jobs.resident_bytes(child.pid) == psutil.Process(child.pid).memory_info().rss > 0
    finally:
        child.communicate(b"")
    assert jobs.resident_bytes(child.pid) == 0
