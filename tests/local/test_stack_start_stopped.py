"""A local stack whose start is stopped between its steps (``LocalStack(check=...)``: what
``local run`` and ``local up`` do with a Ctrl-C noted while the stack starts): what started is
stopped, nothing is left running, and the start says why it stopped."""

import pytest

from miniwdl_fargate.local.stack import LocalStack
from tests.processes import processes_naming
from tests.waiting import wait_for


class Stopped(Exception):
    """What the check raises (``local run`` raises KeyboardInterrupt or Terminated)."""


@pytest.mark.parametrize("checks_passed", [0, 1], ids=["after moto's imports", "after its installation"])
def test_a_start_stopped_between_its_steps_stops_what_started(tmp_path, checks_passed):
    state = tmp_path / "state"
    calls = []

    def check():
        calls.append(1)
        if len(calls) > checks_passed:
            raise Stopped()

    with pytest.raises(Stopped):
        with LocalStack(state_dir=str(state), check=check):
            pytest.fail("the stack started")
    assert len(calls) == checks_passed + 1
    # (after its installation, the driver's fork server had started: stopped with the rest)
    wait_for(lambda: not processes_naming(state), timeout=30, what=lambda: f"end of {processes_naming(state)}")
