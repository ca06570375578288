import logging

import pytest

from miniwdl_fargate import run_resources


@pytest.fixture(autouse=True)
def no_releases(monkeypatch):
    monkeypatch.setattr(run_resources, "_releases", {})


def test_each_backends_release_runs_at_the_runs_end_and_one_that_fails_stops_no_other(caplog):
    called = []

    def broken(logger):
        called.append("broken")
        raise RuntimeError("the access point is gone already")

    run_resources.at_release("first", broken)
    run_resources.at_release("second", lambda logger: called.append(("second", logger.name)))
    run_resources.release(logging.getLogger("driver"))
    assert called == ["broken", ("second", "driver")]
    assert "could not release what the first backend made for the run" in caplog.text
    assert "the access point is gone already" in caplog.text


def test_a_backend_initialized_again_replaces_its_own_release():
    called = []
    run_resources.at_release("aws_fargate", lambda logger: called.append(1))
    run_resources.at_release("aws_fargate", lambda logger: called.append(2))
    run_resources.release(logging.getLogger("driver"))
    assert called == [2]
