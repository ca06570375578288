"""Waiting on a condition in tests: bounded, polling, no fixed sleeps."""

import time


def wait_for(condition, timeout=60.0, what="condition"):
    """The first truthy value ``condition()`` returns within ``timeout`` seconds; else fail
    saying what never came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {what} after {timeout}s")
