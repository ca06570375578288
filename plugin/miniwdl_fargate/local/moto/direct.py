"""boto3 clients of the moto in this process that send nothing over HTTP: for local mode's own
calls, which the stack's process makes to itself (``ecs_state``'s DescribeTasks behind each task
state-change event, the awslogs driver's log streams and events: four calls per WDL task).

Each call is still made by botocore (serialized and its answer parsed by the service's model,
signed, retried) and answered by moto's own request handler for it, with every fix and hook of
this package; only the socket, a server thread and werkzeug's parsing are skipped, which is how
moto serves boto3 in its decorator mode (``moto.core.botocore_stubber.BotocoreStubber``, the
``before-send`` event: https://docs.aws.amazon.com/botocore/latest/topics/events.html). The
client names AWS's own endpoint, the URL moto's handlers are found by; a request that no handler
of this moto takes fails here, and is never sent.

The product's code (handlers, driver, backend) and the tests never use these: they reach moto
through its server, as they would reach AWS.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
import botocore.config

from ... import aws

_lock = threading.Lock()
_clients: dict[tuple[str, str, str], Any] = {}


class _InProcess:
    """The ``before-send`` handler: moto's answer to the request, made in this process."""

    def __init__(self) -> None:
        from moto.core.botocore_stubber import BotocoreStubber

        self.stubber = BotocoreStubber()
        self.stubber.enabled = True

    def __call__(self, event_name: str, request: Any, **kwargs: Any) -> Any:
        response = self.stubber(event_name, request, **kwargs)
        if response is None:  # (botocore would send it: to AWS, which local mode never reaches)
            raise RuntimeError(f"local mode: no handler of the embedded moto takes {request.method} {request.url}")
        return response


def client(service: str, region: str, user_agent_extra: str = "") -> Any:
    """A cached client of ``service`` answered by this process's moto (``user_agent_extra``: said
    in its User-Agent, as ``ecs_state.LOCAL_RUNTIME_AGENT`` is)."""
    key = (service, region, user_agent_extra)
    with _lock:
        found = _clients.get(key)
        if found is None:
            config = aws.RETRY_CONFIG.merge(botocore.config.Config(user_agent_extra=user_agent_extra or None))
            found = boto3.session.Session().client(
                service, region_name=region, endpoint_url=f"https://{service}.{region}.amazonaws.com", config=config,
            )
            found.meta.events.register_first("before-send", _InProcess())
            _clients[key] = found
        return found


def _forget_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _clients.clear()


os.register_at_fork(after_in_child=_forget_in_child)
