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
