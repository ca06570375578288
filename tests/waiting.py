"""Waiting on a condition in tests: bounded, polling, no fixed sleeps. The one way tests wait."""

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
