"""Retry with more memory: `miniwdl run` with the aws_fargate backend against the simulated ECS
endpoint, whose tasks exit 137 with Fargate's "OutOfMemoryError" container reason while their
memory is below what the command needs."""

import json

from sim_support import finish, one_task, start_miniwdl

OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"



TASK = one_task('cpu: %s memory: "%s" maxRetries: %d')


def needs_memory(mib):
    """A behaviour: the task is OOM-killed unless it was given at least ``mib`` MiB."""

    def behaviour(req):
        if int(req["overrides"]["memory"]) < mib:
            return {"exit_code": 137, "container_reason": OOM_REASON, "run_time": 0.2}
        return {}

    return behaviour


def sizes_asked(sim):
    return [(r["overrides"]["cpu"], r["overrides"]["memory"]) for r in sim.run_task_requests]


def test_an_oom_killed_task_is_retried_once_with_double_memory(sim, tmp_path):
    sim.behaviour = needs_memory(3000)
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % ("1", "2 GiB", 0)))
    assert code == 0, out
    # 1 vCPU / 2 GiB killed; doubled to 4 GiB (still a 1 vCPU size), which is enough
    assert sizes_asked(sim) == [("1024", "2048"), ("1024", "4096")]
    assert "task ran out of memory: retrying with more memory" in out
    assert 'old_size: "1 vCPU / 2 GiB", new_size: "1 vCPU / 4 GiB"' in out
    # the retry runs in a fresh work directory at the same path (the command's paths name it),
    # the first attempt's kept aside
    task_dir = next((tmp_path / "runs").glob("*_w/call-t"))
    assert (task_dir / "work").is_dir() and (task_dir / "work.try1").is_dir() and not (task_dir / "work2").exists()
    assert (task_dir / "stdout.try1.txt").is_file() and (task_dir / "stdout.txt").is_file()


def test_the_next_size_may_need_more_vcpu(sim, tmp_path):
    sim.behaviour = needs_memory(1000)
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % ("0.25", "512 MiB", 0)))
    assert code == 0, out
    assert sizes_asked(sim) == [("256", "512"), ("256", "1024")]


def test_oom_retries_do_not_spend_max_retries_and_stop_after_the_budget(sim, tmp_path):
    sim.behaviour = needs_memory(10_000)
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % ("1", "2 GiB", 1)))
    assert code != 0
    # miniwdl attempt 1: 2 GiB (OOM) -> our retry at 4 GiB (OOM, budget of 1 spent): failed;
    # miniwdl's maxRetries = 1 then runs attempt 2 at the size reached, 4 GiB (OOM), and it fails
    assert sizes_asked(sim) == [("1024", "2048"), ("1024", "4096"), ("1024", "4096")]
    error = json.loads((tmp_path / "result.json").read_text())
    assert error["cause"]["exit_status"] == 137
    assert error["cause"]["container_reason"] == OOM_REASON
    assert "not retried (oom_retries = 1, spent: 1)" in error["cause"]["out_of_memory"]


def test_at_the_largest_size_the_task_fails_saying_so(sim, tmp_path):
    sim.behaviour = needs_memory(10**9)
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % ("16", "120 GiB", 0)))
    assert code != 0
    assert sizes_asked(sim) == [("16384", "122880")]
    error = json.loads((tmp_path / "result.json").read_text())
    assert "already Fargate's largest memory size" in error["cause"]["out_of_memory"]


def test_a_plain_exit_137_is_not_taken_for_oom(sim, tmp_path):
    sim.behaviour = lambda req: {"exit_code": 137, "run_time": 0.2}  # e.g. the command's own kill -9
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % ("1", "2 GiB", 0)))
    assert code != 0
    assert len(sim.run_task_requests) == 1


def test_oom_retries_can_be_turned_off(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__OOM_RETRIES", "0")
    sim.behaviour = needs_memory(3000)
    code, out = finish(start_miniwdl(sim, tmp_path, TASK % ("1", "2 GiB", 0)))
    assert code != 0
    assert sizes_asked(sim) == [("1024", "2048")]


def test_a_task_that_names_no_memory_doubles_until_it_fits_or_fargate_has_no_more(sim, tmp_path):
    """A task that says nothing of its memory runs at default_memory_mb (2 GiB), a limit Fargate
    holds it to where miniwdl's Docker backend sets none (bwa index, STAR): it runs again with
    double the memory until it fits, not once; one that names its memory keeps oom_retries."""
    sim.behaviour = needs_memory(12_000)
    code, out = finish(start_miniwdl(sim, tmp_path, one_task("cpu: 1")))
    assert code == 0, out
    assert [memory for _, memory in sizes_asked(sim)] == ["2048", "4096", "8192", "16384"]
    assert "oom_retries: 6" in out


def test_a_task_that_names_no_memory_keeps_oom_retries_off_when_they_are(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__OOM_RETRIES", "0")
    sim.behaviour = needs_memory(3000)
    code, out = finish(start_miniwdl(sim, tmp_path, one_task("cpu: 1")))
    assert code != 0 and len(sim.run_task_requests) == 1
    error = json.loads((tmp_path / "result.json").read_text())
    assert error["cause"]["out_of_memory"].endswith("the task does not say how much memory it needs: give it runtime.memory")
