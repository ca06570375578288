"""`miniwdl-fargate logs RUN --task NAME` against moto CloudWatch Logs: every page of a stream
is printed, and a read cut short says so (never a silent truncation)."""

import io
import time

import botocore.session
import pytest
from botocore.stub import Stubber

from miniwdl_fargate import aws, cli, client, runs, status

GROUP = "/miniwdl-fargate/tasks"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/c/0123456789abcdef"
STREAM = "miniwdl/task/0123456789abcdef"
RUN_ID = "big-0123abcd"
EVENTS = 10_000 + 2_500  # more than one GetLogEvents page (at most 10,000 events)


@pytest.fixture
def deployment(moto_aws, monkeypatch):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    record = runs.RunRecord(
        run_id=RUN_ID, name="big", bucket="runs", submitted_at=runs.now_iso(), workflow="s3://runs/w.wdl", inputs="s3://runs/i.json", results="s3://runs/r/"
    )
    current = status.new(record).model_copy(update={"status": "SUCCEEDED", "calls": {"call-chatty": [TASK_ARN]}})
    status.update("runs", RUN_ID, lambda s: s, initial=current)
    logs = aws.client("logs")
    logs.create_log_group(logGroupName=GROUP)
    logs.create_log_stream(logGroupName=GROUP, logStreamName=STREAM)
    now = int(time.time() * 1000) - EVENTS  # (PutLogEvents rejects events older than 14 days)
    for start in range(0, EVENTS, 10_000):  # PutLogEvents takes at most 10,000 events a call
        batch = [{"timestamp": now + i, "message": f"line {i}"} for i in range(start, min(start + 10_000, EVENTS))]
        logs.put_log_events(logGroupName=GROUP, logStreamName=STREAM, logEvents=batch)
    found = client.Deployment("s", "us-east-1", {"BucketName": "runs", "TaskLogGroupName": GROUP})
    monkeypatch.setattr(client, "connect", lambda *a, **k: found)
    return found


def test_logs_of_a_task_print_every_page(deployment, capsys):
    assert cli.main(["logs", RUN_ID, "--task", "chatty"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines == [f"line {i}" for i in range(EVENTS)]
    assert "warning" not in captured.err


def test_the_log_of_a_task_that_never_started_is_said_to_be_none(deployment, capsys):
    """A task whose image could not be pulled has no log stream: `logs --task` printed nothing and
    exited 0, which said nothing."""
    never = "arn:aws:ecs:us-east-1:123456789012:task/c/feedfacefeedface"
    status.update("runs", RUN_ID, lambda s: s.model_copy(update={"calls": {**s.calls, "call-broken": [never]}}))
    assert cli.main(["logs", RUN_ID, "--task", "broken"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"no log for call-broken attempt 1: its stream miniwdl/task/feedfacefeedface does not exist "
                                   f"in {GROUP} (it never started: `status` says why"), captured.err


def test_a_page_limit_reached_is_said_not_hidden(deployment):
    out = io.StringIO()
    incomplete = client.print_logs(deployment, RUN_ID, "chatty", False, out=out, page_limit=1)
    assert len(out.getvalue().splitlines()) < EVENTS
    assert incomplete == [
        f"the log of call-chatty attempt 1 ({GROUP} {STREAM}) was cut short: read 1 pages, the most one pass reads"
    ]


def test_an_error_mid_stream_is_said_and_the_cli_exits_1(deployment, monkeypatch, capsys):
    real = aws.client("logs")
    calls = []

    def failing_after_one_page(**kwargs):
        calls.append(kwargs)
        if len(calls) > 1:
            raise real.exceptions.InvalidParameterException(
                {"Error": {"Code": "InvalidParameterException", "Message": "The specified nextToken has expired"}},
                "GetLogEvents",
            )
        return real.__class__.get_log_events(real, **kwargs)

    monkeypatch.setattr(real, "get_log_events", failing_after_one_page)
    assert cli.main(["logs", RUN_ID, "--task", "chatty"]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 10_000
    assert captured.err.strip() == (
        f"warning: the log of call-chatty attempt 1 ({GROUP} {STREAM}) was cut short: "
        "InvalidParameterException: An error occurred (InvalidParameterException) when calling the GetLogEvents "
        "operation: The specified nextToken has expired"
    )


def test_the_requests_validate_against_the_botocore_model():
    """read_stream's GetLogEvents requests (first page, then with nextToken) are valid requests."""
    logs = botocore.session.get_session().create_client("logs", region_name="us-east-1")
    pages = [
        {"events": [{"timestamp": 1, "message": "a", "ingestionTime": 2}], "nextForwardToken": "f/1", "nextBackwardToken": "b/0"},
        {"events": [], "nextForwardToken": "f/1", "nextBackwardToken": "b/0"},
    ]
    with Stubber(logs) as stub:
        stub.add_response("get_log_events", pages[0], {"logGroupName": GROUP, "logStreamName": STREAM, "startFromHead": True})
        stub.add_response(
            "get_log_events", pages[1], {"logGroupName": GROUP, "logStreamName": STREAM, "startFromHead": True, "nextToken": "f/1"}
        )
        got: list = []
        read = client.read_stream(logs, GROUP, STREAM, None, got.extend)
        stub.assert_no_pending_responses()
    assert [e["message"] for e in got] == ["a"] and read.token == "f/1" and read.stopped_early is None


def test_a_throttled_read_while_following_goes_on_next_time_and_otherwise_says_so(deployment):
    """GetLogEvents' rate is shared by the whole account and region: `logs --follow` over many
    tasks met ThrottlingException past botocore's retries and ended ("cut short"); following, the
    read stops where it is and goes on from there at the next pass; a one-off read says so."""
    from botocore.stub import Stubber

    logs = aws.client("logs")
    head = {"logGroupName": GROUP, "logStreamName": STREAM, "startFromHead": True}
    with Stubber(logs) as stub:
        stub.add_client_error("get_log_events", "ThrottlingException", "Rate exceeded", 400, expected_params=head)
        read = client.read_stream(logs, GROUP, STREAM, None, list, patient=True)
        assert read.stopped_early is None and read.token is None
        stub.add_client_error("get_log_events", "ThrottlingException", "Rate exceeded", 400, expected_params=head)
        read = client.read_stream(logs, GROUP, STREAM, None, list)
        assert read.stopped_early.startswith("ThrottlingException: An error occurred (ThrottlingException)")


def test_following_a_task_that_has_not_started_waits_for_it(deployment, capsys):
    """`logs RUN --task NAME --follow` right after submit: the run has no such task yet; it is
    waited for (it was an error), and each task's lines come under its heading, as more tasks
    may match later. A run that ends without one says so."""
    import threading

    run_id = "later-0123abcd"
    record = runs.RunRecord(
        run_id=run_id, name="later", bucket="runs", submitted_at=runs.now_iso(), workflow="s3://runs/w.wdl",
        inputs="s3://runs/i.json", results="s3://runs/r/",
    )
    status.update("runs", run_id, lambda s: s, initial=status.new(record).model_copy(update={"status": "RUNNING"}))
    out = io.StringIO()
    done = threading.Event()
    failure: list[BaseException] = []

    def follow():
        try:
            client.print_logs(deployment, run_id, "chatty", True, out=out, interval=0.01)
        except BaseException as exn:  # noqa: BLE001 (said by the assertion below)
            failure.append(exn)
        finally:
            done.set()

    thread = threading.Thread(target=follow)
    thread.start()
    assert not done.wait(0.2)  # (still waiting for the task: no error)
    status.update("runs", run_id, lambda s: s.model_copy(update={"calls": {"call-chatty": [TASK_ARN]}}))
    status.update("runs", run_id, lambda s: s.model_copy(update={"status": "SUCCEEDED"}))
    thread.join(60)
    assert not failure, failure
    lines = out.getvalue().splitlines()
    assert lines[0] == f"== call-chatty attempt 1 ({GROUP} {STREAM})"
    assert lines[1:] == [f"line {i}" for i in range(EVENTS)]
    assert capsys.readouterr().err == f"run {run_id} has no task matching 'chatty' (its tasks: none yet): waiting\n"
    with pytest.raises(client.ClientError, match="has no task matching 'quiet'"):
        client.print_logs(deployment, run_id, "quiet", True, out=io.StringIO(), interval=0.01)


def test_following_reads_a_quiet_stream_less_often_and_every_stream_once_the_run_has_ended(deployment, monkeypatch):
    """`logs --follow` over a scatter read every task's stream at every pass, most of them of
    tasks that had ended, against the account's GetLogEvents rate: a stream with nothing new is
    read after 2, 4, 8 passes; one that has more is read at the next pass; the last pass (the
    run ended) reads each one."""
    run_id = "scatter-0123abcd"
    record = runs.RunRecord(
        run_id=run_id, name="scatter", bucket="runs", submitted_at=runs.now_iso(), workflow="s3://runs/w.wdl",
        inputs="s3://runs/i.json", results="s3://runs/r/",
    )
    quiet_arn = TASK_ARN.replace("0123456789abcdef", "fedcba9876543210")
    calls = {"call-chatty-0": [TASK_ARN], "call-chatty-1": [quiet_arn]}
    status.update("runs", run_id, lambda s: s, initial=status.new(record).model_copy(update={"status": "RUNNING", "calls": calls}))
    logs = aws.client("logs")
    quiet_stream = "miniwdl/task/fedcba9876543210"
    logs.create_log_stream(logGroupName=GROUP, logStreamName=quiet_stream)
    reads: list[tuple[int, str]] = []
    passes = [0]
    logs.meta.events.register("provide-client-params.logs.GetLogEvents", lambda params, **_: reads.append((passes[0], params["logStreamName"])))

    def next_pass(_seconds):
        passes[0] += 1
        if passes[0] == 5:  # (more for the chatty stream: read at the pass after it is next read)
            logs.put_log_events(logGroupName=GROUP, logStreamName=STREAM, logEvents=[{"timestamp": int(time.time() * 1000), "message": "more"}])
        if passes[0] == 20:
            status.update("runs", run_id, lambda s: s.model_copy(update={"status": "SUCCEEDED"}))

    monkeypatch.setattr(client.time, "sleep", next_pass)
    out = io.StringIO()
    assert client.print_logs(deployment, run_id, "chatty", True, out=out) == []
    # (pass 0 twice: a stream's first page's token, then the same token back: its end; pass 21: the last)
    assert [n for n, stream in reads if stream == quiet_stream] == [0, 0, 2, 6, 14, 21]
    chatty = [n for n, stream in reads if stream == STREAM]
    assert chatty[:4] == [0, 0, 0, 1]  # (two pages at first, 12,500 events, and the end; then nothing new)
    assert 5 <= chatty[chatty.index(3) + 1] <= 7 and chatty[-1] == 21  # (the new line read at the pass it was due at)
    assert out.getvalue().splitlines()[-1] == "more" and len(reads) < 2 * 21


@pytest.mark.parametrize("asked, call, named", [
    ("greet", "call-greet-0-AlyssaPHacker", True), ("call-greet-0", "call-greet-0-AlyssaPHacker", True),
    ("call-greet-0-AlyssaPHacker", "call-greet-0-AlyssaPHacker", True), ("call-greet-1", "call-greet-10-CyDFect", False),
    ("a", "call-b", False), ("a", "call-a", True), ("gre", "call-greet-0", False), ("chatty", "call-chatty", True),
])
def test_a_task_is_named_by_its_call_id_its_start_or_its_tasks_name(asked, call, named):
    """`logs --task a` named every call (each "call-" holds an "a"): a part of a call id names
    nothing, its task's name names every call of it."""
    assert client.names_call(asked, call) is named


def test_a_task_asked_for_in_a_run_with_reused_calls_says_they_have_no_log(deployment):
    status.update("runs", RUN_ID, lambda s: s.model_copy(update={"tasks": s.tasks.model_copy(update={"cached": 2})}))
    with pytest.raises(client.ClientError) as info:
        client.print_logs(deployment, RUN_ID, "quiet", False, out=io.StringIO())
    assert str(info.value) == (f"run {RUN_ID} has no task matching 'quiet' (its tasks: call-chatty); 2 call(s) were reused "
                               "from the call cache and have no log of their own (`cache explain` says from which run)")


def test_a_call_named_exactly_is_that_call_alone(deployment):
    """`--task call-chatty`, the workflow's own call, not a sub-workflow's of that id too."""
    status.update("runs", RUN_ID, lambda s: s.model_copy(update={"calls": {"call-chatty": [TASK_ARN], "call-inner/call-chatty": [TASK_ARN]}}))
    assert [label for label, _, _ in client.log_streams(deployment, RUN_ID, "call-chatty")] == ["call-chatty attempt 1"]
    assert len(client.log_streams(deployment, RUN_ID, "chatty")) == 2

