"""status.json's task counts (``progress.task_counts``): each call by its latest attempt."""

from miniwdl_fargate import attempts, client, progress, status


def attempt(call, number=1, outcome="", running=None):
    return attempts.Attempt(call=call, attempt=number, path=f"/runs/r/{call}", outcome=outcome, running=running)


def test_each_call_counts_once_by_its_latest_attempt_and_a_cancelled_one_is_not_failed():
    recorded = [
        attempt("call-a", outcome=attempts.SUCCEEDED),
        attempt("call-b", 1, outcome=attempts.INTERRUPTED),
        attempt("call-b", 2, outcome=attempts.SUCCEEDED),
        attempt("call-c", outcome=attempts.FAILED),
        attempt("call-d", outcome=attempts.CANCELLED),
        attempt("call-e", outcome=attempts.OUT_OF_MEMORY),
        attempt("call-f", running=1.0),
        attempt("call-g"),
    ]
    counts, _ = progress.task_counts(recorded, cached=2)
    assert counts == status.TaskCounts(
        total=9, queued=1, running=1, succeeded=2, failed=2, cancelled=1, retried=1, cached=2
    )
    current = status.RunStatus(run_id="r-0123abcd", name="r", status="CANCELLED", submitted_at="2026-11-30T00:00:00Z", tasks=counts)
    assert "4/9 done · 1 running · 2 failed · 1 cancelled · 1 queued · 1 retried" in client.progress_line(current)
    assert "4/9 done, 2 failed, 1 cancelled" in client.runs_table([current])
    counts.cancelled = 0
    assert "cancelled" not in client.progress_line(current) + client.runs_table([current])


def test_calls_of_sub_workflows_are_kept_apart_by_their_directory():
    """status.json's calls (what `logs --task` and WES's task logs read) by the call's directory
    under the workflow's run directory: two sub-workflow calls and the workflow's own call of one
    task were one call with three "attempts"."""
    run_dir = "/mnt/efs/runs/sw-4e3a0e18/20261201_030139_main"
    recorded = [
        attempts.Attempt(call="call-say_hi", attempt=1, path=f"{run_dir}/call-say_hi", task_arn="arn:1"),
        attempts.Attempt(call="call-say_hi", attempt=1, path=f"{run_dir}/call-inner/call-say_hi", task_arn="arn:2"),
        attempts.Attempt(call="call-say_hi", attempt=1, path=f"{run_dir}/call-inner-1/call-say_hi", task_arn="arn:3"),
        attempts.Attempt(call="call-t", attempt=1, path="/mnt/efs/runs/t-1/here", task_arn="arn:4"),  # (no workflow dir)
    ]
    _, calls = progress.task_counts(recorded)
    assert calls == {"call-say_hi": ["arn:1"], "call-inner/call-say_hi": ["arn:2"], "call-inner-1/call-say_hi": ["arn:3"],
                     "call-t": ["arn:4"]}
    assert [c for c in calls if client.names_call("inner", c)] == ["call-inner/call-say_hi", "call-inner-1/call-say_hi"]
    assert [c for c in calls if client.names_call("say_hi", c)] == ["call-say_hi", "call-inner/call-say_hi", "call-inner-1/call-say_hi"]
    assert [c for c in calls if client.names_call("call-inner", c)] == ["call-inner/call-say_hi", "call-inner-1/call-say_hi"]
    # (directory by directory, each by its id or the start of its id: every inner's say_hi)
    assert [c for c in calls if client.names_call("call-inner/call-say_hi", c)] == ["call-inner/call-say_hi", "call-inner-1/call-say_hi"]
    assert [c for c in calls if client.names_call("call-inner-1/call-say_hi", c)] == ["call-inner-1/call-say_hi"]
    assert client.names_call("call-inner-1/call-say_hi", "call-inner-1-Bob/call-say_hi")  # (a scatter's tag)
    assert not client.names_call("call-inner-1/call-say_hi", "call-inner-10-Cy/call-say_hi")


def test_a_run_named_like_a_run_directory_does_not_cut_its_calls_paths():
    """`--name 20261201_120001_batch` is a valid run name, whose folder looks like miniwdl's run
    directory: the call's path starts under the last such directory holding calls."""
    run_dir = "/mnt/efs/runs/20261201_120001_batch-0123abcd/20261201_031727_outer"
    made = attempts.Attempt(call="call-say_hi", attempt=1, path=f"{run_dir}/call-single/call-deep/call-say_hi")
    assert made.call_path() == "call-single/call-deep/call-say_hi"



def test_the_call_that_failed_the_run_counts_as_failed_though_its_container_exited_0():
    """A command that exits 0 and leaves an output file missing fails in miniwdl after its
    container ended well: `list` showed the FAILED run as "1/1 done, 0 failed"."""
    from miniwdl_fargate import driver

    run_dir = "/mnt/efs/runs/tf-0123abcd/20261201_031727_tf"
    error = {  # (miniwdl's error JSON for a workflow whose call's output is missing)
        "error": "RunFailed", "workflow": "tf", "run": "call-missing", "dir": f"{run_dir}/call-missing",
        "cause": {"error": "OutputError", "message": "File not found in task output tf.missing.out", "run": "call-missing",
                  "dir": f"{run_dir}/call-missing"},
    }
    assert driver.failed_call(error) == "call-missing"
    assert driver.failed_call({"outputs": {}}) == ""
    recorded = [
        attempts.Attempt(call="call-missing", attempt=1, path=f"{run_dir}/call-missing", outcome=attempts.SUCCEEDED),
        attempts.Attempt(call="call-fine", attempt=1, path=f"{run_dir}/call-fine", outcome=attempts.SUCCEEDED),
    ]
    counts, _ = progress.task_counts(recorded, failed_call=driver.failed_call(error))
    assert (counts.succeeded, counts.failed) == (1, 1)
