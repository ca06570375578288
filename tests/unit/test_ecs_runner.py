"""The ECS runner alone: a plain TaskSpec in, what ECS would record out, through a fake state
writer (no moto). Tasks of the driver's family run as host processes, so these need no engine."""

import os
import threading

import pytest

from miniwdl_fargate import sweep
from miniwdl_fargate.local.ecs_runner import ECS_STOPPED_REASON, SHUTDOWN_REASON, EcsRunner, RunnerThreads, TaskSpec
from miniwdl_fargate.local.faults import Faults
from tests.waiting import wait_for

CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/c"


class FakeState:
    """Records what the runner writes, in order."""

    def __init__(self):
        self.calls = []
        self.status = {}
        self.lock = threading.Lock()

    def _record(self, *call):
        with self.lock:
            self.calls.append(call)

    def provisioning(self, task_arn):
        self.status[task_arn] = "PROVISIONING"
        self._record("provisioning", task_arn)

    def set_status(self, task_arn, status):
        self.status[task_arn] = status
        self._record("status", task_arn, status)

    def last_status(self, task_arn):
        return self.status.get(task_arn, "")

    def stop_requested(self, task_arn, reason):
        self._record("stop_requested", task_arn, reason)

    def stopping(self, task_arn):
        self._record("stopping", task_arn)

    def stopped(self, task_arn, stop_code, reason, exit_code=None, container_reason=None):
        self.status[task_arn] = "STOPPED"
        self._record("stopped", task_arn, stop_code, reason, exit_code, container_reason)

    def emit(self, task_arn):
        self._record("emit", task_arn, self.status[task_arn])

    def of(self, task_arn):
        with self.lock:
            return [c[0:1] + c[2:] for c in self.calls if c[1] == task_arn]


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL_FARGATE_LOCAL_ENGINE", "none")
    faults = Faults(describe_missing=0)
    state = FakeState()
    runner = EcsRunner(str(tmp_path), state, lambda: faults, dict, dict)
    runner.driver_families.add("stack-driver")
    runner.fake_state, runner.fake_faults = state, faults
    yield runner
    runner.shutdown(timeout=10)


def spec(task_id, command, family="stack-driver", tags=None):
    return TaskSpec(
        task_arn=f"arn:aws:ecs:us-east-1:123456789012:task/c/{task_id}",
        id=task_id,
        cluster_arn=CLUSTER,
        task_definition_arn=f"arn:aws:ecs:us-east-1:123456789012:task-definition/{family}:1",
        family=family,
        container={"name": "main", "command": ["sh", "-c", command]},
        tags=tags if tags is not None else [{"key": sweep.RUN_TAG, "value": "r1"}],
    )


def ended(runner, task):
    return wait_for(lambda: task.task_arn not in runner.running_tasks(), 30.0, f"the end of {task.id}")


def test_a_task_runs_and_its_exit_code_is_recorded_with_each_status_and_event(runner):
    task = spec("t1", "exit 3")
    runner.ecs_task_started(task)
    ended(runner, task)
    assert runner.fake_state.of(task.task_arn) == [
        ("provisioning",),
        ("status", "PENDING"),
        ("status", "RUNNING"),
        ("emit", "RUNNING"),
        ("stopped", "EssentialContainerExited", ECS_STOPPED_REASON, 3, None),
        ("emit", "STOPPED"),
    ]


def test_a_task_whose_image_pull_fails_stops_before_it_starts(runner):
    runner.fake_faults.pull_failures = 1
    runner.fake_faults.pull_error = "manifest unknown"
    task = spec("t2", "exit 0", family="wdl-task")
    runner.ecs_task_started(task)
    ended(runner, task)
    reason = "CannotPullContainerError: manifest unknown"
    assert runner.fake_state.of(task.task_arn) == [
        ("provisioning",),
        ("stopped", "TaskFailedToStart", reason, None, reason),
        ("emit", "STOPPED"),
    ]


def test_stop_task_is_recorded_from_the_request_on_and_ends_the_task(runner):
    task = spec("t3", "sleep 60")
    runner.ecs_task_started(task)
    wait_for(lambda: ("emit", "RUNNING") in runner.fake_state.of(task.task_arn), 30.0, "RUNNING")
    assert runner.ecs_stop_task(task.task_arn, "run cancelled") is True
    ended(runner, task)
    calls = runner.fake_state.of(task.task_arn)
    # (the SIGTERM ends `sleep` at once: the runner may or may not see it stopping first)
    assert [c for c in calls if c[0] != "stopping"][4:] == [
        ("stop_requested", "run cancelled"),
        ("stopped", "UserInitiated", "run cancelled", 143, None),
        ("emit", "STOPPED"),
    ]


def test_stopping_a_stopped_task_changes_nothing(runner):
    task = spec("t4", "exit 0")
    runner.ecs_task_started(task)
    ended(runner, task)
    before = runner.fake_state.of(task.task_arn)
    assert runner.ecs_stop_task(task.task_arn, "too late") is True
    assert runner.fake_state.of(task.task_arn) == before


def test_a_lost_driver_stopped_event_is_not_emitted(runner):
    runner.fake_faults.lose_driver_stopped_events = 1
    task = spec("t5", "exit 0")  # a driver: tagged with its run, launched by no driver
    runner.ecs_task_started(task)
    ended(runner, task)
    calls = runner.fake_state.of(task.task_arn)
    assert [c for c in calls if c[0] == "emit"] == [("emit", "RUNNING")]
    assert calls[-1][:2] == ("stopped", "EssentialContainerExited")
    assert runner.fake_faults.injected == ["lose_driver_stopped_events"]


def test_an_ebs_volume_configured_at_launch_is_a_fresh_directory_of_the_task_and_its_tmpdir(runner, tmp_path):
    """A task with an EBS scratch volume (RunTask volumeConfigurations): mounted where the task
    definition says, writable by the task, its TMPDIR; gone when the task stops, as ECS deletes a
    volume with deleteOnTermination. GPUs asked for are recorded, not given."""
    base = spec("t6", "", family="wdl-task", tags=[{"key": sweep.RUN_TAG, "value": "r1"}, {"key": sweep.DRIVER_TAG, "value": "d"}])
    command = (
        '[ "$TMPDIR" = /mnt/scratch ] && echo data > "$TMPDIR/file" && cat /mnt/scratch/file > /mnt/efs/seen.txt'
    )
    task = TaskSpec(
        **{
            **vars(base),
            "container": {
                "name": "task",
                "command": ["sh", "-c", command],
                "environment": [{"name": "TMPDIR", "value": "/mnt/scratch"}],
                "resourceRequirements": [{"type": "GPU", "value": "1"}],
                "mountPoints": [
                    {"sourceVolume": "efs", "containerPath": "/mnt/efs"},
                    {"sourceVolume": "scratch", "containerPath": "/mnt/scratch"},
                ],
            },
            "volumes": [
                {"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}},
                {"name": "scratch", "configuredAtLaunch": True},
            ],
            "volume_configurations": [{"name": "scratch", "managedEBSVolume": {"sizeInGiB": 500, "roleArn": "arn:aws:iam::1:role/v"}}],
        }
    )
    runner.ecs_task_started(task)
    ended(runner, task)
    stopped = [c for c in runner.fake_state.of(task.task_arn) if c[0] == "stopped"]
    assert stopped == [("stopped", "EssentialContainerExited", ECS_STOPPED_REASON, 0, None)]
    assert (tmp_path / "efs" / "fs-1" / "seen.txt").read_text() == "data\n"
    assert not (tmp_path / "ebs" / "t6").exists()


def test_a_volume_configured_at_launch_without_its_configuration_fails_to_start(runner):
    base = spec("t7", "", family="wdl-task")
    task = TaskSpec(
        **{
            **vars(base),
            "container": {"name": "task", "command": ["true"], "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/mnt/scratch"}]},
            "volumes": [{"name": "scratch", "configuredAtLaunch": True}],
        }
    )
    runner.ecs_task_started(task)
    ended(runner, task)
    (stopped,) = [c for c in runner.fake_state.of(task.task_arn) if c[0] == "stopped"]
    assert stopped[1] == "TaskFailedToStart"
    assert "volume 'scratch' is configured at launch, but RunTask gave it no managedEBSVolume" in stopped[2]


def test_a_wdl_task_wakes_its_drivers_pollers_when_it_stopped(runner):
    """The driver named by the task's tag listens in its metadata folder (``wakeups``); the
    runner tells it once ECS shows the task STOPPED (and not before: a start is no news)."""
    from miniwdl_fargate.local import wakeups

    driver_id = "d1"
    folder = runner.metadata_folder(driver_id)
    os.makedirs(folder)
    seen = []
    wakeups.listen(folder, lambda arns: seen.append((arns, runner.fake_state.last_status(task.task_arn))))
    driver_arn = f"arn:aws:ecs:us-east-1:123456789012:task/c/{driver_id}"
    task = spec("t-woken", "exit 0", tags=[{"key": sweep.RUN_TAG, "value": "r1"}, {"key": sweep.DRIVER_TAG, "value": driver_arn}])
    runner.ecs_task_started(task)
    ended(runner, task)
    wait_for(lambda: seen, what="the wake after the task stopped")
    # every wake came after ECS showed the task stopped, and names the task (its pass describes it alone)
    assert seen == [([task.task_arn], "STOPPED")]


def test_an_access_points_root_is_asked_of_efs_once(runner, monkeypatch):
    """Every task of a run mounts the run's access point: one DescribeAccessPoints for them all
    (EFS cannot change an access point), each request valid for botocore's EFS model."""
    import botocore.session
    from botocore.validate import ParamValidator

    from miniwdl_fargate import aws

    model = botocore.session.get_session().get_service_model("efs").operation_model("DescribeAccessPoints").input_shape
    asked = []

    class FakeEfs:
        def describe_access_points(self, **request):
            assert not ParamValidator().validate(request, model).has_errors()
            asked.append(request)
            return {"AccessPoints": [{"AccessPointId": request["AccessPointId"], "RootDirectory": {"Path": "/miniwdl/runs/r1"}}]}

    monkeypatch.setattr(aws, "client", lambda service, region=None: FakeEfs())
    volume = {"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "authorizationConfig": {"accessPointId": "fsap-0123456789abcdef0"}}}
    paths = {runner.efs_host_dir(volume) for _ in range(3)}
    assert paths == {os.path.join(runner.efs_root, "fs-1", "miniwdl/runs/r1")}
    assert asked == [{"AccessPointId": "fsap-0123456789abcdef0"}]


def test_a_scatters_tasks_starting_together_ask_efs_once(runner, monkeypatch):
    """Tasks that start together wait for the first one's answer rather than each asking (a
    50-task scatter made 50 EFS requests to moto's server)."""
    from miniwdl_fargate import aws

    asked, release = [], threading.Event()

    class SlowEfs:
        def describe_access_points(self, **request):
            asked.append(request)
            assert release.wait(30)
            return {"AccessPoints": [{"AccessPointId": request["AccessPointId"], "RootDirectory": {"Path": "/r"}}]}

    monkeypatch.setattr(aws, "client", lambda service, region=None: SlowEfs())
    volume = {"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "authorizationConfig": {"accessPointId": "fsap-1"}}}
    paths, started = [], []

    def start():
        started.append(1)
        paths.append(runner.efs_host_dir(volume))

    first = threading.Thread(target=start)
    first.start()
    wait_for(lambda: asked, 10, "the first task's request")
    others = [threading.Thread(target=start) for _ in range(4)]
    for thread in others:
        thread.start()
    wait_for(lambda: len(started) == 5, 10, "every task to start")
    release.set()
    for thread in [first, *others]:
        thread.join(30)
    assert len(asked) == 1 and paths == [os.path.join(runner.efs_root, "fs-1", "r")] * 5


class FakeLogs:
    """CloudWatch Logs as the shipper uses it: groups, streams, and the requests it was sent
    (each valid for botocore's model of the service)."""

    def __init__(self):
        import botocore.session
        from botocore.exceptions import ClientError

        self.model = botocore.session.get_session().get_service_model("logs")
        self.groups, self.streams, self.calls, self.requests = set(), set(), [], []

        def error(code):
            return type(code, (ClientError,), {})

        self.exceptions = type("Exceptions", (), {
            "ResourceAlreadyExistsException": error("ResourceAlreadyExistsException"),
            "ResourceNotFoundException": error("ResourceNotFoundException"),
        })

    def _called(self, operation, request):
        from botocore.validate import ParamValidator

        shape = self.model.operation_model(operation).input_shape
        if "logEvents" in request:
            # one event of each type and length stands for the others: an event's fields have
            # only type, length and range rules (no pattern), so the list passes if they do (the
            # hundreds of thousands of lines a test sends validated one by one took 4 s)
            listed = shape.members["logEvents"]
            assert not any("pattern" in m.metadata for m in listed.member.members.values())
            assert listed.metadata.get("min", 0) <= len(request["logEvents"]) <= listed.metadata.get("max", 10**9)
            kinds = {(type(e.get("message")), len(e.get("message") or ""), type(e.get("timestamp")),
                      (e.get("timestamp") or 0) < 0, tuple(sorted(e))): e for e in request["logEvents"]}
            request = {**request, "logEvents": list(kinds.values())}
        assert not ParamValidator().validate(request, shape).has_errors()
        self.calls.append(operation)

    def create_log_group(self, **request):
        self._called("CreateLogGroup", request)
        if request["logGroupName"] in self.groups:
            raise self.exceptions.ResourceAlreadyExistsException({"Error": {"Code": "ResourceAlreadyExistsException"}}, "CreateLogGroup")
        self.groups.add(request["logGroupName"])

    def create_log_stream(self, **request):
        self._called("CreateLogStream", request)
        if request["logGroupName"] not in self.groups:
            raise self.exceptions.ResourceNotFoundException({"Error": {"Code": "ResourceNotFoundException"}}, "CreateLogStream")
        self.streams.add((request["logGroupName"], request["logStreamName"]))

    def put_log_events(self, **request):
        """Kept as sent, once checked against the limits CloudWatch Logs enforces (which
        botocore's model does not: it checks minimums only)."""
        self._called("PutLogEvents", request)
        assert (request["logGroupName"], request["logStreamName"]) in self.streams
        events = request["logEvents"]
        assert len(events) <= 10_000
        assert sum(len(e["message"].encode("utf-8")) + 26 for e in events) <= 1024 * 1024
        assert all(len(e["message"].encode("utf-8")) + 26 <= 256 * 1024 for e in events)
        self.requests.append(events)


def test_the_log_shipper_asks_for_its_group_once_and_makes_it_again_if_it_went(monkeypatch, tmp_path):
    from miniwdl_fargate.local.ecs_runner import LogShipper

    logs = FakeLogs()
    monkeypatch.setattr(LogShipper, "_groups", set())
    for task in ("t1", "t2", "t3"):
        LogShipper(str(tmp_path / f"{task}.log"), "tasks", f"miniwdl/task/{task}", logs)
    assert logs.calls == ["CreateLogGroup"] + ["CreateLogStream"] * 3
    logs.groups.clear()  # (the stack went and came back: its group is new)
    LogShipper(str(tmp_path / "t4.log"), "tasks", "miniwdl/task/t4", logs)
    assert logs.calls[3:] == ["CreateLogStream", "CreateLogStream", "CreateLogGroup", "CreateLogStream"]
    assert ("tasks", "miniwdl/task/t4") in logs.streams


def test_the_log_shipper_sends_every_line_once_in_order_within_cloudwatch_limits(monkeypatch, tmp_path):
    """A log of several MiB, a line longer than an event cut (mid-character) between two
    writes, blank lines, and a last line without its newline: every line reaches the stream
    once and in order, in requests CloudWatch Logs would take; an unended line waits for its end,
    and the last one is sent as it is once the container exited, after everything before it (the
    log was once cut at the MiB the last call read, the rest of that MiB sent as a last line)."""
    from miniwdl_fargate.local.ecs_runner import LogShipper

    logs = FakeLogs()
    monkeypatch.setattr(LogShipper, "_groups", set())
    path = tmp_path / "task.log"

    def sent():
        return [e["message"] for request in logs.requests for e in request]

    def write(text):
        with open(path, "ab") as out:
            out.write(text)

    def ship_while_running():  # (as the runner calls it while the container runs, a MiB a call)
        while shipper._offset < os.path.getsize(path):
            shipper.ship()

    before = [f"out line {i}" for i in range(300_000)]  # (~4.5 MiB, 30 requests' worth of events)
    long_line = "x" + "é" * 300_000  # (600 KiB: three events, their cuts between characters)
    after = [f"err line {i}" for i in range(1000)]
    later = [f"err line {i}" for i in range(1000, 151_000)]  # (~2.3 MiB)
    written = ("\n".join(before) + "\n" + long_line).encode("utf-8")
    first = len("\n".join(before)) + 1 + 400_002  # (into the long line, in the middle of an é)
    write(written[:first])
    shipper = LogShipper(str(path), "tasks", "miniwdl/task/t1", logs)
    ship_while_running()
    assert sent()[:len(before)] == before
    assert len(sent()) == len(before) + 1  # (the long line's first event: the rest waits for more)
    write(written[first:] + ("\n\n  \n" + "\n".join(after) + "\nlast line, un").encode("utf-8"))
    ship_while_running()
    assert sent()[-1] == after[-1]  # (the unended line waits)
    write(("ended\n" + "\n".join(later) + "\nlast line, unended").encode("utf-8"))
    assert os.path.getsize(path) - shipper._offset > 2 * 1024 * 1024
    shipper.ship(final=True)  # (the container exited: all of it, however much is left)
    pieces = sent()[len(before):-len(after) - len(later) - 2]
    assert sent()[:len(before)] == before
    assert sent()[-len(after) - len(later) - 2:] == after + ["last line, unended"] + later + ["last line, unended"]
    assert "".join(pieces) == long_line and len(pieces) == 3
    shipper.ship(final=True)  # (nothing more written: nothing more sent)
    assert sum(map(len, logs.requests)) == len(sent())


def test_the_runners_threads_are_kept_for_the_next_task_and_go_when_idle():
    pool = RunnerThreads("t")
    names = []
    for _ in range(3):  # one after another: one thread, kept between them
        done = threading.Event()
        pool.run(lambda done=done: (names.append(threading.current_thread().name), done.set()))
        assert done.wait(10)
        assert pool.wait_idle(10)
    assert names == ["t-1"] * 3 and pool.threads == 1
    release = threading.Event()
    started = threading.Semaphore(0)

    def hold():
        started.release()
        assert release.wait(10)

    for _ in range(3):  # at once: a thread each
        pool.run(hold)
    for _ in range(3):
        assert started.acquire(timeout=10)
    assert pool.threads == 3 and not pool.wait_idle(0.05)
    release.set()
    assert pool.wait_idle(10)
    pool.run(lambda: 1 / 0)  # (a runner that fails is said in the log; its thread serves on)
    assert pool.wait_idle(10) and pool.threads == 3
    brief = RunnerThreads("b", idle_seconds=0.05)  # idle threads go
    for _ in range(2):
        brief.run(lambda: None)
    assert brief.wait_idle(10)
    wait_for(lambda: brief.threads == 0, timeout=10, what="the idle threads to go", interval=0.05)
    done = threading.Event()
    brief.run(done.set)  # (none idle: a new one)
    assert done.wait(10) and brief.wait_idle(10)


@pytest.mark.parametrize("limits, raised", [
    ((1024, 1048576), (65535, 1048576)),  # a common machine's: up to Fargate's
    ((1024, 4096), (4096, 4096)),  # as far as the hard limit allows
    ((1024, -1), (65535, -1)),  # (RLIM_INFINITY)
    ((100000, 1048576), None),  # already more: left as it is
])
def test_local_mode_raises_its_open_files_limit_towards_fargates(monkeypatch, limits, raised):
    import resource

    from miniwdl_fargate.local import runtime

    set_to = []
    monkeypatch.setattr(runtime.resource, "getrlimit", lambda which: limits)
    monkeypatch.setattr(runtime.resource, "setrlimit", lambda which, value: set_to.append((which, value)))
    runtime.open_files_as_on_fargate()
    assert set_to == ([] if raised is None else [(resource.RLIMIT_NOFILE, raised)])


def test_a_stopped_event_that_cannot_be_sent_leaves_the_stop_as_recorded(runner):
    """The task ended (exit 3) and its STOPPED status is written; emitting the event then fails:
    the stop stays as recorded (not rewritten as a failure to start), once, and the runner is
    done with the task."""
    emit = runner.fake_state.emit

    def failing_emit(task_arn):
        if runner.fake_state.status.get(task_arn) == "STOPPED":
            raise RuntimeError("EventBridge is down")
        emit(task_arn)

    runner.fake_state.emit = failing_emit
    task = spec("t9", "exit 3")
    runner.ecs_task_started(task)
    ended(runner, task)
    stopped = [c for c in runner.fake_state.of(task.task_arn) if c[0] == "stopped"]
    assert stopped == [("stopped", "EssentialContainerExited", ECS_STOPPED_REASON, 3, None)]


def test_no_task_starts_once_shutdown_began(runner, tmp_path):
    """A RunTask that comes as local mode stops (a Lambda still running asked for a driver) is
    STOPPED at once, TaskFailedToStart, and nothing runs: a process started then was reached by
    nothing that stops the stack, and ran on (an orphaned driver after a Ctrl-C)."""
    runner.shutdown(timeout=10)
    marker = tmp_path / "ran"
    task = spec("t10", f"touch {marker}")
    runner.ecs_task_started(task)
    assert runner.fake_state.of(task.task_arn) == [
        ("provisioning",), ("stopped", "TaskFailedToStart", SHUTDOWN_REASON, None, None),
    ]
    assert runner.running_tasks() == [] and not marker.exists()


def held_starts(monkeypatch):
    """Task processes start only once ``release`` is set (``starting``: one is about to)."""
    from miniwdl_fargate.local import jobs

    starting, release = threading.Event(), threading.Event()
    start = jobs.HostJob.start

    def held_start(self, logfile):
        starting.set()
        assert release.wait(30)
        return start(self, logfile)

    monkeypatch.setattr(jobs.HostJob, "start", held_start)
    return starting, release


def test_a_task_that_starts_while_shutdown_begins_is_stopped(runner, monkeypatch):
    """The task's process starts after ``shutdown`` listed the tasks to stop: it is stopped as
    soon as it runs, and ``shutdown`` returns once it has (not after its timeout, with the
    process still running)."""
    starting, release = held_starts(monkeypatch)
    task = spec("t11", "exec sleep 60")
    runner.ecs_task_started(task)
    assert starting.wait(30)
    stopping = threading.Thread(target=runner.shutdown, kwargs={"timeout": 60})
    stopping.start()
    wait_for(lambda: runner.closing, 10, "shutdown to begin")
    release.set()
    stopping.join(30)
    assert not stopping.is_alive(), "shutdown waited for a task it did not stop"
    stopped = [c for c in runner.fake_state.of(task.task_arn) if c[0] == "stopped"]
    assert stopped == [("stopped", "UserInitiated", SHUTDOWN_REASON, 143, None)]


def test_a_task_that_starts_while_shutdown_kills_is_killed(runner, monkeypatch):
    """The task's process starts after ``shutdown`` gave up waiting and killed the tasks it
    found: it is killed too (a SIGTERM it ignores would leave it running past the stack)."""
    starting, release = held_starts(monkeypatch)
    task = spec("t13", "trap '' TERM; sleep 60")
    task.container["stopTimeout"] = 120
    runner.ecs_task_started(task)
    assert starting.wait(30)
    stopping = threading.Thread(target=runner.shutdown, kwargs={"timeout": 0.2})
    stopping.start()
    wait_for(lambda: runner._killing, 10, "shutdown's kill pass")  # (private: the moment to test)
    release.set()
    stopping.join(30)
    assert not stopping.is_alive() and runner.running_tasks() == []
    stopped = [c for c in runner.fake_state.of(task.task_arn) if c[0] == "stopped"]
    assert stopped == [("stopped", "UserInitiated", SHUTDOWN_REASON, 137, None)]


def test_shutdown_kills_a_task_that_does_not_stop_in_its_time(runner, tmp_path):
    ignoring = tmp_path / "ignoring"  # (RUNNING is emitted as the process starts: its shell may not have run the trap yet)
    task = spec("t12", f"trap '' TERM; touch {ignoring}; sleep 60")
    task.container["stopTimeout"] = 120
    runner.ecs_task_started(task)
    wait_for(ignoring.exists, 30.0, "the task to ignore SIGTERM")
    runner.shutdown(timeout=0.5)
    assert runner.running_tasks() == []
    stopped = [c for c in runner.fake_state.of(task.task_arn) if c[0] == "stopped"]
    assert stopped == [("stopped", "UserInitiated", SHUTDOWN_REASON, 137, None)]


def test_drivers_and_tasks_are_forked_where_their_namespaces_need_a_user_namespace(tmp_path, monkeypatch):
    """Local mode run by a user makes each task's namespaces in a user namespace; its drivers and
    sandboxed tasks are forked from the fork servers all the same (the child makes that user
    namespace itself: tests/local/test_pipeline.py runs a workflow so), not new processes."""
    from miniwdl_fargate.local.ecs_runner import NamespaceSupport

    as_user = NamespaceSupport(["unshare", *NamespaceSupport.AS_USER])
    monkeypatch.setenv("MINIWDL_FARGATE_LOCAL_ENGINE", "none")
    for name in ("MINIWDL_FARGATE_LOCAL_DRIVER_FORK", "MINIWDL_FARGATE_LOCAL_TASK_FORK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(NamespaceSupport, "detect", classmethod(lambda cls: as_user))
    runner = EcsRunner(str(tmp_path), FakeState(), lambda: Faults(), dict, dict)
    try:
        assert runner.namespaces is as_user and not as_user.root
        assert runner.fork_drivers is runner.task_zygote.enabled is hasattr(os, "pidfd_open")
    finally:
        runner.shutdown(timeout=10)


def test_rootless_podman_maps_the_images_user_onto_the_user_running_local_mode(runner, tmp_path, monkeypatch, caplog):
    """With rootless podman (4.3 or later) a task's EFS volumes are mounted as they are and its
    image's user is made the user running local mode (``--userns=keep-id``), who owns the local
    EFS directories: what an access point does for the task's files. Root images keep podman's
    default mapping (their root is that user already); a folder that is not the user's is said."""
    from miniwdl_fargate.local.containers import Engine, Mount

    engine = Engine("podman")
    engine.rootless, engine.version = True, (4, 3)
    monkeypatch.setattr(engine, "user_ids", lambda image, user: {"worker": (1000, 1000), "1000": (1000, 0)}.get(user))
    monkeypatch.setattr(runner, "engine", engine)
    efs = tmp_path / "volume"  # (the runner's state is tmp_path)
    efs.mkdir()
    mounts = [Mount(str(efs), "/mnt/efs", False)]
    task = spec("t-1", ["true"], family="wdl")
    caplog.set_level("WARNING", logger="miniwdl-fargate.local")
    assert runner._access_point_mounts(task, "img", "worker", mounts) == (mounts, "keep-id:uid=1000,gid=1000")
    assert runner._access_point_mounts(task, "img", "1000", mounts) == (mounts, "keep-id:uid=1000,gid=0")
    assert runner._access_point_mounts(task, "img", "", mounts) == (mounts, None)
    assert caplog.records == []
    # a user the image does not name: as before, said once
    assert runner._access_point_mounts(task, "img", "ghost", mounts) == (mounts, None)
    assert "cannot tell the uid of user 'ghost' in img" in caplog.records[-1].getMessage()
    # a folder that is someone else's (as root: one made so; as a user: root's /)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    if os.geteuid() == 0:
        os.chown(foreign, 12345, 12345)
    else:
        foreign = "/"
    other = [Mount(str(foreign), "/mnt/other", False)]
    assert runner._access_point_mounts(task, "img", "worker", [*mounts, *other]) == ([*mounts, *other], "keep-id:uid=1000,gid=1000")
    assert caplog.records[-1].getMessage().startswith(f"local mode: {foreign} is not yours")
    # an older podman (no keep-id:uid=): the idmapped mounts' way, as root's podman
    engine.version = (4, 2)
    assert runner._access_point_mounts(task, "img", "", [Mount(str(efs), "/mnt/efs", False)])[1] is None
