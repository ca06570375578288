"""No task poller outlives its test (``pollers_idle``)."""


def pollers_idle(timeout: float = 30.0) -> None:
    """Every task poller of this process (the backend's, and any a test made) watching nothing,
    its thread ended. A test that ended with tasks still watched (their attempts never ended)
    left the poller's thread polling, and a pass in flight as the test ended made its
    DescribeTasks against whatever AWS came next (the next test's moto answered
    ClusterNotFoundException) and logged it outside any test. Called while the test's AWS (moto,
    the simulated ECS) still answers (tests/integration/conftest.py), and after every test."""
    from miniwdl_fargate.backend import poller as task_poller

    for found in list(task_poller._POLLERS):
        for arn in list(found._watches):
            found.forget(arn)
        thread = found._thread
        if thread is not None:
            found.wake()  # (out of its wait: with nothing watched, its loop ends)
            thread.join(timeout)
            if thread.is_alive():
                raise AssertionError(f"a task poller's thread still runs {timeout} s after its test ended")
