"""A local stack whose start is stopped between its steps (``LocalStack(check=...)``: what
``local run`` and ``local up`` do with a Ctrl-C noted while the stack starts): what started is
stopped and nothing is left running. In a process of its own: a stack started in the test
process would take local mode's moto hooks from the session's stack."""

import subprocess
import sys

import pytest

from tests.processes import processes_naming
from tests.waiting import wait_for

START_STOPPED = """
import sys
from miniwdl_fargate.local.stack import LocalStack

state, checks_passed = sys.argv[1], int(sys.argv[2])
calls = []

class Stopped(Exception):
    pass

def check():
    calls.append(1)
    if len(calls) > checks_passed:
        raise Stopped()

try:
    with LocalStack(state_dir=state, check=check):
        sys.exit("the stack started")
except Stopped:
    import os
    from miniwdl_fargate.local.jobs import children

    # (still there: what the stop left; the fork servers' socket closes only as this process ends)
    print(f"stopped at check {len(calls)}; children left: {len(children(os.getpid()))}")
"""


@pytest.mark.parametrize("checks_passed", [0, 1], ids=["after moto's imports", "after its installation"])
def test_a_start_stopped_between_its_steps_stops_what_started(tmp_path, checks_passed):
    state = tmp_path / "state"
    proc = subprocess.run(
        [sys.executable, "-c", START_STOPPED, str(state), str(checks_passed)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"stopped at check {checks_passed + 1}; children left: 0\n"
    # (after its installation, the driver's fork server had started: stopped with the rest)
    wait_for(lambda: not processes_naming(state), timeout=30, what=lambda: f"end of {processes_naming(state)}")
