"""The handlers' observability built once (functions/observability.py): one logger, tracer and
metrics, and one decorator stack that clears the log keys of each invocation, parses the event
and flushes metrics."""

import json

import pytest
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import ValidationError
from pydantic import BaseModel

import observability
from tests.function_env import LambdaContext


class Event(BaseModel):
    run_id: str


@pytest.fixture(autouse=True)
def no_tracing(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")


def test_every_handler_shares_the_one_logger_tracer_and_metrics():
    import api
    import driver_stopped
    import finalize
    import inputs_dropped
    import launch_driver
    import run_timed_out

    for module in (api, driver_stopped, finalize, inputs_dropped, launch_driver, run_timed_out):
        assert module.logger is observability.logger
    assert api.tracer is observability.tracer
    assert api.metrics is finalize.metrics is inputs_dropped.metrics is observability.metrics


def test_the_event_is_parsed_and_keys_of_one_invocation_do_not_reach_the_next():
    seen = []

    @observability.lambda_handler(Event)
    def handler(event: Event, context):
        seen.append(dict(observability.logger.get_current_keys()))
        observability.logger.append_keys(run_id=event.run_id)
        return event.run_id

    assert handler({"run_id": "a-01234567"}, LambdaContext()) == "a-01234567"
    assert handler({"run_id": "b-01234567"}, LambdaContext()) == "b-01234567"
    assert all("run_id" not in keys for keys in seen)
    assert seen[0]["function_name"] == "f"
    with pytest.raises(ValidationError):
        handler({"no": "run id"}, LambdaContext())


def test_a_handler_that_publishes_metrics_flushes_them_in_the_namespace(monkeypatch, capsys):
    monkeypatch.setattr(observability.metrics.provider, "namespace", "test")

    @observability.lambda_handler(publishes_metrics=True)
    def handler(event, context):
        observability.metrics.add_metric(name="RunsSubmitted", unit=MetricUnit.Count, value=1)
        return "ok"

    assert handler({}, LambdaContext()) == "ok"
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(emitted) == 1
    directive = emitted[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "test"
    assert directive["Metrics"] == [{"Name": "RunsSubmitted", "Unit": "Count"}]
    assert emitted[0]["RunsSubmitted"] == [1.0]


def test_an_invocation_that_publishes_no_metric_warns_of_nothing(capsys):
    """The API's reads publish no metric: Powertools' "No application metrics to publish"
    warning was in every one's log (and 51 times in a test run's summary)."""
    import warnings

    observability.metrics.clear_metrics()  # (the metric set is shared: none left by an earlier test)

    @observability.lambda_handler(publishes_metrics=True)
    def handler(event, context):
        return "read"

    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", append=True)  # (last: any warning no filter before takes)
        assert handler({}, LambdaContext()) == "read"
    assert [str(w.message) for w in caught] == []
    assert '"_aws"' not in capsys.readouterr().out
