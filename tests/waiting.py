"""Waiting on a condition in tests: bounded, polling, no fixed sleeps. The one way tests wait
(``wait_for``; for a run of a local stack, ``run_end``, which waits as ``local run`` does)."""

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    condition: Callable[[], Any], timeout: float = 60.0, what: str | Callable[[], str] = "condition", interval: float = 0.1
) -> Any:
    """The first truthy value ``condition()`` returns within ``timeout`` seconds, asking every
    ``interval`` seconds; else fail saying what never came (``what``, or what ``what()`` says
    then: the state worth reading when it did not come)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError(f"no {what() if callable(what) else what} after {timeout}s")


def run_end(stack, name: str, run_id: str, timeout: float = 300.0, **options: Any) -> Any:
    """``upload.wait`` for run ``run_id`` (of run name ``name``) of the local ``stack`` (a
    ``LocalStack``): its outcome once its execution ended, looking at it when a run of that name
    changed (the stack's count of their changes, ``local.changes``), as ``local run`` does,
    so the end is seen within a few hundredths of a second, not at the next of looks every 0.25
    s. ``options``: ``upload.wait``'s other arguments (``inputs_version``)."""
    from miniwdl_fargate import upload
    from miniwdl_fargate.local import changes

    longest, pause = changes.pace(stack.state_dir, 0.25, name=changes.RUN_FILE, run=name)
    return upload.wait(
        stack.outputs["BucketName"], stack.outputs["StateMachineArn"], name, run_id, timeout,
        interval=longest, pause=pause, **options,
    )
