"""ECS semantics the emulators used to let through, with `miniwdl run` against the simulated ECS
endpoint (bench/ecs_sim.py): eventual consistency (MISSING right after RunTask), idempotent
RunTask (clientToken), image pull failures told apart, every stop code classified."""

import json

import pytest
from sim_support import finish, one_task, start_miniwdl

TASK = one_task("preemptible: %d maxRetries: %d")


def error_of(tmp_path):
    return json.loads((tmp_path / "result.json").read_text())


# -- item 5: eventual consistency ---------------------------------------------------------------


def test_a_task_ecs_does_not_know_yet_runs_normally(sim, tmp_path):
    sim.missing_describes = 3  # DescribeTasks answers MISSING three times for each new task
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % (0, 0)))
    assert code == 0, out
    assert sim.missing_answers >= 1
    assert len(sim.tasks) == 1 and sim.count("StopTask") == 0
    assert "ECS does not know the task yet (MISSING): waiting" in out


def test_a_task_ecs_never_knows_is_stopped_and_the_attempt_fails(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__MISSING_GRACE", "1")
    sim.run_time = (600, 600)  # it would run (and bill) for ten minutes unseen
    sim.faults.script.extend(["missing_forever"])
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % (0, 0)))
    assert code != 0
    (task,) = sim.tasks.values()
    assert task.stop_requested is not None  # StopTask: it cannot run and bill unseen
    assert sim.count("StopTask", "ok") == 1
    message = error_of(tmp_path)["cause"]["message"]
    assert f"ECS did not know task {task.arn} for " in message
    assert "after RunTask (DescribeTasks answered MISSING; missing_grace = 1s)" in message


def test_a_task_ecs_never_knows_is_retried_as_an_infrastructure_failure(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__MISSING_GRACE", "1")
    sim.behaviour = lambda req: {} if sim.tasks else {"run_time": 600}
    sim.faults.script.extend(["missing_forever", "ok"])
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % (1, 0)))  # preemptible 1, maxRetries 0
    assert code == 0, out
    first, second = sim.tasks.values()
    assert first.stop_requested is not None and second.stop_requested is None
    assert "interrupted task will be retried" in out


# -- item 6: idempotent RunTask ------------------------------------------------------------------


def test_every_run_task_carries_a_client_token_and_a_lost_answer_starts_no_second_task(sim, tmp_path):
    sim.faults.lost_answers = 1  # started, but the connection closes unanswered
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % (0, 0)))
    assert code == 0, out
    tokens = [r.get("clientToken") for r in sim.run_task_requests]
    assert len(tokens) == 2 and tokens[0] and tokens[0] == tokens[1]  # botocore's retry: same token
    assert len(sim.tasks) == 1
    assert sim.count("RunTask", "idempotent") == 1


# -- item 7: image pull failures -----------------------------------------------------------------


def test_a_rate_limited_or_timed_out_pull_is_tried_again_without_spending_retries(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__PULL_RETRY_DELAY", "0.05")
    sim.faults.script.extend(["pull_rate_limit", "pull_timeout", "ok"])
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % (0, 0)))  # no preemptible, no maxRetries
    assert code == 0, out
    assert len(sim.run_task_requests) == 3
    assert "the registry's pull rate limit): pull retry 1 of 4" in out
    assert "the registry did not answer in time): pull retry 2 of 4" in out
    # each try is a new attempt with its own clientToken
    assert len({r["clientToken"] for r in sim.run_task_requests}) == 3


def test_pull_retries_run_out(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__PULL_RETRY_DELAY", "0.05")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__PULL_RETRIES", "1")
    sim.faults.script.extend(["pull_rate_limit", "pull_rate_limit", "ok"])
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % (0, 0)))
    assert code != 0
    assert len(sim.run_task_requests) == 2
    message = error_of(tmp_path)["cause"]["message"]
    assert "image 'ubuntu:22.04' could not be pulled (the registry's pull rate limit) after 2 tries (pull_retries = 1)" in message
    assert message.endswith("through your account's ECR instead."), message  # (what to do about it)


@pytest.mark.parametrize("fault, said", [
    ("pull_not_found", ["image 'ubuntu:22.04' cannot be pulled (the image, tag or digest does not exist); not retried.",
                        "docker.io/library/ubuntu:no-such-tag: not found"]),
    # a distroless image: the container cannot start its command
    ("start_no_shell", ["image 'ubuntu:22.04' cannot run the task; not retried: the image has no /bin/sh",
                        "ECS: CannotStartContainerError: Error response from daemon"]),
])
def test_an_image_that_cannot_be_used_fails_at_once_naming_it(sim, tmp_path, fault, said):
    sim.faults.script.extend([fault, "ok", "ok"])
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % (0, 2)))  # maxRetries 2: not spent on it
    assert code != 0
    assert len(sim.run_task_requests) == 1
    message = error_of(tmp_path)["cause"]["message"]
    assert all(part in message for part in said), message


# -- item 8: stop codes --------------------------------------------------------------------------


def stopped_once_by(code, reason):
    calls = []

    def behaviour(req):
        calls.append(req)
        if len(calls) == 1:
            return {"stop_code": code, "stopped_reason": reason, "exit_code": 143, "run_time": 0.2}
        return {}

    return behaviour


@pytest.mark.parametrize(
    "code, reason",
    [
        ("TerminationNotice", "Task stopped due to a termination notice (platform retirement)"),
        ("InfrastructureHealth", "Task stopped because the underlying infrastructure was unhealthy"),
    ],
)
def test_infrastructure_stops_are_interruptions_retried_like_spot(sim, tmp_path, code, reason):
    sim.behaviour = stopped_once_by(code, reason)
    code_, out = finish(start_miniwdl(sim, tmp_path, TASK % (1, 0)))
    assert code_ == 0, out
    assert len(sim.run_task_requests) == 2
    assert f"ECS stopped the task ({code}: {reason})" in out
    assert "interrupted task will be retried" in out


def test_a_stop_from_outside_says_so(sim, tmp_path):
    sim.behaviour = stopped_once_by("UserInitiated", "stopped by an operator")
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % (0, 0)))
    assert code != 0
    message = error_of(tmp_path)["cause"]["message"]
    assert "was stopped from outside (UserInitiated: stopped by an operator;" in message
    assert message.endswith("exit status 143")
