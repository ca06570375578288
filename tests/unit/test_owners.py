"""Which local stack a leftover belongs to, and whether it is gone (``local/owners.py``): gone
only where that is sure."""

import os

from miniwdl_fargate.local import owners
from tests.processes import dead_pid


def test_an_identity_is_gone_only_where_that_is_sure(monkeypatch):
    own = owners.identity()
    pid, started, namespace, boot = own.split()
    assert (int(pid), started) == (os.getpid(), owners.process_started("self"))
    assert not owners.gone(own)
    assert owners.gone(f"{pid} {int(started) + 1} {namespace} {boot}")  # (the pid, used again since)
    assert owners.gone(f"{dead_pid()} {started} {namespace} {boot}")
    for unsure in (f"{dead_pid()} {started} pid:[1] {boot}", f"{dead_pid()} {started} {namespace} another-boot", "x 1 2 3", ""):
        assert not owners.gone(unsure), unsure


def test_another_users_process_that_proc_hides_is_not_gone(monkeypatch):
    """(Docker's daemon shows every user's containers; /proc mounted hidepid hides their stacks)"""
    _pid, started, namespace, boot = owners.identity().split()

    def not_permitted(pid, signal):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", not_permitted)
    monkeypatch.setattr(owners, "process_started", lambda pid: None)
    assert not owners.gone(f"4242 {started} {namespace} {boot}")
