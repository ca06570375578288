"""Local mode's one seam with moto, pinned to ``MOTO_VERSION`` for it: every change local mode
makes to moto is here, and nothing outside this package touches moto's internals.

- ``hooks``: where moto calls into local mode (Lambda Invoke, EventBridge delivery, ECS RunTask
  and StopTask) and the faults local mode injects into moto's answers;
- ``cfn``: CloudFormation resource models moto lacks, and properties its models ignore;
- ``fixes``: moto's bugs, each a named fix with the test that tells when moto no longer needs it;
- ``ecs_state``: the one module that writes the state of the ECS tasks moto created (status, exit
  code, times, their state-change events), for the ECS runner, which knows nothing of moto;
- ``patching``: how each of them replaces a moto attribute, remembering moto's own;
- ``server``: moto's server as local mode runs it (settings, loggers, start, stop);
- ``direct``: clients of this process's moto without HTTP, for local mode's own calls;
- ``tracking``: copies moto does not keep, and what local mode forgets let go of (moto tracks
  every model object it makes, for good).

Nothing here changes how the product's own code talks to AWS.
"""

from __future__ import annotations

from typing import Any

from . import cfn, fixes, hooks
from .patching import MOTO_VERSION, check_version

__all__ = ["MOTO_VERSION", "install", "install_cloudformation"]


def install(runtime: Any) -> None:
    """Everything local mode needs of moto (once per process), routing moto's work to ``runtime``
    (a ``hooks.Runtime`` with an ``ecs_state``, an ``ecs_state.MotoTaskState``)."""
    check_version()
    fixes.install()
    hooks.install(runtime, runtime.ecs_state)
    cfn.install()


def install_cloudformation() -> None:
    """Only what moto's CloudFormation needs to create this template's stack (no runtime)."""
    cfn.install()
