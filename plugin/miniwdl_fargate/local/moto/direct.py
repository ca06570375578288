"""boto3 clients of the moto in this process that send nothing over HTTP: for local mode's own
calls, which the stack's process makes to itself (``ecs_state``'s DescribeTasks behind a task
state-change event a rule may match), and ``LogsWriter``, the awslogs driver's log streams and
events written into moto's Logs backend (two calls per WDL task).

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

import functools
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


class LogsWriter:
    """The awslogs driver's calls (CreateLogGroup, CreateLogStream, PutLogEvents), taking a
    client's arguments, into this process's moto Logs backend: each request is first checked
    against botocore's model of its operation, as a client checks it (``ParamValidator``: a
    request the model refuses raises ``ParamValidationError``), then handed to the backend method
    moto's own handler calls, whose errors are moto's (``exceptions``). What a client adds besides,
    serializing, signing, routing the request to moto's handler and parsing its answer, cost
    ~1.3 ms a call, two calls a task."""

    def __init__(self, region: str) -> None:
        from moto.logs import exceptions

        self.region = region
        self.exceptions = exceptions  # (ResourceNotFoundException, ResourceAlreadyExistsException, ...)

    @property
    def backend(self) -> Any:
        """moto's Logs backend now (looked up at each call: a reset of moto replaces it)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.logs.models import logs_backends

        return logs_backends[DEFAULT_ACCOUNT_ID][self.region]

    def create_log_group(self, **request: Any) -> None:
        _validated("CreateLogGroup", request)
        self.backend.create_log_group(request["logGroupName"], request.get("tags"), kmsKeyId=request.get("kmsKeyId"))

    def create_log_stream(self, **request: Any) -> None:
        _validated("CreateLogStream", request)
        self.backend.create_log_stream(request["logGroupName"], request["logStreamName"])

    def put_log_events(self, **request: Any) -> None:
        _validated("PutLogEvents", request)
        self.backend.put_log_events(request["logGroupName"], request["logStreamName"], request["logEvents"])


def _validated(operation: str, request: dict[str, Any]) -> None:
    import botocore.exceptions
    import botocore.validate

    report = botocore.validate.ParamValidator().validate(request, _logs_model().operation_model(operation).input_shape)
    if report.has_errors():
        raise botocore.exceptions.ParamValidationError(report=report.generate_report())


@functools.cache
def _logs_model() -> Any:
    return boto3.session.Session()._session.get_service_model("logs")


def _forget_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _clients.clear()


os.register_at_fork(after_in_child=_forget_in_child)
