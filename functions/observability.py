"""The handlers' observability, built once: one Powertools Logger, Tracer and Metrics, and the one
stack of decorators every handler wears (``lambda_handler``).

Service name and metric namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE (template.yaml's Globals give every function both). Powertools
shares one logging logger per service, one tracer provider and one metric set per namespace
across instances, so a handler module and this one see the same objects.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from pydantic import BaseModel

logger = Logger()
tracer = Tracer()
metrics = Metrics()

Handler = Callable[[Any, Any], Any]


def lambda_handler(event_model: type[BaseModel] | Any = None, *, publishes_metrics: bool = False) -> Callable[[Handler], Handler]:
    """Wrap a Lambda handler, outermost first: the logger takes the invocation's context
    (``clear_state``: keys appended in one invocation never reach the next), the tracer traces it,
    ``publishes_metrics`` flushes its metrics at the end, if it added any (no cold-start metric), and
    ``event_model`` parses the event into that model, or the one of a ``Union`` of models it
    fits (a malformed event fails before the handler runs)."""

    def wrap(handler: Handler) -> Handler:
        wrapped = handler
        if event_model is not None:
            wrapped = event_parser(wrapped, model=event_model)
        if publishes_metrics:
            wrapped = _flushing_metrics(wrapped)
        wrapped = tracer.capture_lambda_handler(wrapped)
        return logger.inject_lambda_context(wrapped, clear_state=True)

    return wrap


def _flushing_metrics(handler: Handler) -> Handler:
    """Powertools' ``log_metrics`` with no warning for an invocation that publishes no metric (the
    API's reads, a dropped file that is not an inputs JSON): its flush warns "No application
    metrics to publish" then, in that invocation's log. Its docs' remedy, a process-wide
    warnings filter, is process-wide state that a test run's warning capture resets."""

    @functools.wraps(handler)
    def run(event: Any, context: Any) -> Any:
        try:
            return handler(event, context)
        finally:
            if metrics.metric_set:
                metrics.flush_metrics()

    return run
