import threading

from miniwdl_fargate.backend.poller import MAX_DESCRIBE, TaskPoller


class FakeECS:
    def __init__(self):
        self.calls = []
        self.stopped = set()
        self.lock = threading.Lock()

    def describe(self, arns):
        with self.lock:
            self.calls.append(list(arns))
        return {
            "tasks": [
                {"taskArn": a, "lastStatus": "STOPPED" if a in self.stopped else "RUNNING", "containers": [{"exitCode": 0}]}
                for a in arns
                if not a.startswith("gone")
            ],
            "failures": [{"arn": a, "reason": "MISSING"} for a in arns if a.startswith("gone")],
        }


def test_one_describe_call_per_hundred_tasks_per_pass():
    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=3600, background=False)
    watches = [poller.watch(f"arn:{i}") for i in range(250)]
    poller.poll_once()
    assert [len(c) for c in ecs.calls] == [MAX_DESCRIBE, MAX_DESCRIBE, 50]
    assert all(w.description["lastStatus"] == "RUNNING" for w in watches)


def test_stopped_tasks_are_delivered_and_leave_the_watch_list():
    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=3600, background=False)
    a, b, gone = poller.watch("a"), poller.watch("b"), poller.watch("gone-1")
    ecs.stopped.add("a")
    poller.poll_once()
    assert a.stopped and not b.stopped
    assert gone.stopped and gone.missing
    ecs.calls.clear()
    poller.poll_once()
    assert ecs.calls == [["b"]]


def test_waiter_wakes_on_update():
    ecs = FakeECS()
    poller = TaskPoller(ecs.describe, interval=0.01)
    w = poller.watch("x")
    ecs.stopped.add("x")
    seen = 0
    for _ in range(200):
        seen = w.wait(0.05, seen)
        if w.stopped:
            break
    assert w.stopped
