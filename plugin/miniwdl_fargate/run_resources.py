"""What a container backend made for one run's tasks alone, released once the run's workflow is
over: the aws_fargate backend's task definitions and EFS access point for the run
(``FargateTaskContainer.release_run``).

The backend says how to release them when miniwdl initializes it (``at_release``); the driver,
which imports no backend module (``tests/unit/test_layers.py``), calls ``release`` at the end of
the run's workflow. Where miniwdl never initialized the aws_fargate backend (no task container
made: a run that failed before its first task, or whose every call the call cache answered; or
another backend, which registers nothing) the backend made nothing to release."""

from __future__ import annotations

import logging
import threading
from typing import Callable

_lock = threading.Lock()
#: each backend's release, by the backend's name (one each: a backend initialized again, for the
#: next run of the same process, replaces its own)
_releases: dict[str, Callable[[logging.Logger], None]] = {}


def at_release(backend: str, release: Callable[[logging.Logger], None]) -> None:
    """Have ``release`` called, with the driver's logger, at the end of each run's workflow."""
    with _lock:
        _releases[backend] = release


def release(logger: logging.Logger) -> None:
    """Each backend's release, in the order they were registered. One that fails is logged and
    the next still runs: a run's result never depends on its clean-up."""
    with _lock:
        releases = list(_releases.items())
    for backend, each in releases:
        try:
            each(logger)
        except Exception:  # noqa: BLE001 (clean-up: the run's result stands)
            logger.exception("could not release what the %s backend made for the run", backend)
