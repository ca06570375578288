"""EFS holds nothing between runs, through the whole local pipeline: a successful run leaves no
directory, a failed one is kept (saying until when), and ``miniwdl-fargate gc`` (a task of the
driver's task definition, as on AWS) removes the failed one with no days kept, never a run
still going."""

import contextlib
import json
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

from miniwdl_fargate import aws, efs_cleanup, gc_task, s3io, status, sweep
from miniwdl_fargate import upload as local_run
from miniwdl_fargate.local import schedules
from miniwdl_fargate.pipeline import manage
from tests.waiting import run_end, wait_for

WDL = """version 1.1
workflow tiny {
  input { Int code = 0  Int nap = 0 }
  call step { input: code = code, nap = nap }
  output { String said = step.said }
}
task step {
  input { Int code  Int nap }
  command <<< echo said; sleep ~{nap}; exit ~{code} >>>
  output { String said = read_string(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def runs_root(stack):
    """The stack's <efs>/runs on this machine (local EFS: one folder per access point root)."""
    return wait_for(lambda: next(Path(stack.runtime.efs_root).glob("*/miniwdl/runs"), None), 30, "the local EFS's runs folder")


def submit(stack, tmp_path, name, **inputs):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "tiny.wdl").write_text(WDL)
    (folder / "inputs.json").write_text(json.dumps({f"tiny.{k}": v for k, v in inputs.items()}))
    return local_run.submit(stack.outputs["BucketName"], folder / "tiny.wdl", folder / "inputs.json", name=name)


def outcome(stack, submitted):
    name, run_id = submitted
    return run_end(stack, name, run_id, timeout=300)


def test_efs_keeps_no_successful_run_a_failed_one_for_a_while_and_gc_never_a_running_one(stack, tmp_path, local_cli):
    bucket = stack.outputs["BucketName"]
    # three runs at once: one held running (its task naps far longer than this test), one that
    # succeeds, one that fails
    _, held = submit(stack, tmp_path, "efs-held", nap=600)
    try:
        ok_run, failed_run = submit(stack, tmp_path, "efs-ok"), submit(stack, tmp_path, "efs-failed", code=3)
        ok, failed = outcome(stack, ok_run), outcome(stack, failed_run)
        current = lambda: status.read(bucket, held)  # noqa: E731
        wait_for(lambda: current() is not None and current().status == "RUNNING", 120, "the held run RUNNING")
        root = runs_root(stack)
        assert (root / held).is_dir()

        assert ok.status == "SUCCEEDED", ok.document
        assert ok.document["outputs"]["tiny.said"] == "said"
        assert not (root / ok.run_id).exists()  # its outputs are in S3; nothing of it stays on EFS

        assert failed.status == "FAILED", failed.document
        kept = json.loads((root / failed.run_id / efs_cleanup.EXPIRES_MARKER).read_text())
        assert kept["status"] == "FAILED" and kept["expires_at"] > kept["finished_at"]  # the stack keeps it 3 days

        # after a team's last run nothing else would collect what it left: its end scheduled a gc
        # task for the day after that falls due (gc_task.schedule), which local mode runs when due as
        # EventBridge Scheduler would (local/schedules.py): here made due at once, as if days had passed
        scheduled_gc_runs_where_efs_is(stack, failed, held)

        # the command as a user runs it: its own process, reaching the stack by its --local file
        proc = local_cli("gc", "--keep-failed-days", "0")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert any(line.startswith(f"removed         {failed.run_id}  the run FAILED at") for line in lines), lines
        assert f"kept            {held}  the run is RUNNING" in lines
        assert "failed runs kept 0 day(s), unused cache entries 7 day(s)" in lines[-1], lines[-1]
        # its report stays in the bucket, for a look later
        s3 = aws.client("s3")
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=gc_task.GC_PREFIX)["Contents"]
        (key,) = [o["Key"] for o in listed if not o["Key"].startswith(f"{gc_task.GC_PREFIX}scheduled-")]
        report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        by_name = {d["name"]: d for d in report["directories"]}
        assert by_name[failed.run_id]["action"] == "removed", by_name[failed.run_id]
        assert by_name[failed.run_id]["reason"].startswith("the run FAILED at")
        assert (by_name[held]["action"], by_name[held]["reason"]) == ("kept", "the run is RUNNING")
        assert ok.run_id not in by_name
        assert not (root / failed.run_id).exists() and (root / held).is_dir()
        assert current().status == "RUNNING"
    finally:  # (nothing of it left running for the tests after this one, pass or fail: they share the stack's cluster)
        with contextlib.suppress(manage.RunFinished):  # (it stops the run's tasks before it says so)
            manage.cancel_run(bucket, stack.outputs["StateMachineArn"], stack.outputs["ClusterName"], held)
        wait_for(lambda: not sweep.run_tasks(stack.outputs["ClusterName"], held), 120, "the held run's tasks stopped")


def scheduled_gc_runs_where_efs_is(stack, failed, held):
    bucket = stack.outputs["BucketName"]
    scheduler = aws.client("scheduler")
    group = stack.outputs["GcScheduleGroupName"]
    finished = datetime.fromisoformat(status.read(bucket, failed.run_id).finished_at).astimezone(timezone.utc)
    listed = {s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]}
    # KeepFailedRunDays 3, keep_unused_cache_days 7: each the day after (finalize's clock a moment
    # after the status's end: at midnight, the next day's)
    for after in (timedelta(0), timedelta(minutes=1)):
        days = [(finished + after).date() + timedelta(days=d) for d in (4, 8)]
        if {f"{gc_task.SCHEDULE_PREFIX}{d}" for d in days} <= listed:
            break
    else:
        raise AssertionError(f"no gc task scheduled for the days after {finished}: {listed}")
    # each run's end is handled twice, by its finalize step and by its execution's end event, and
    # each schedules its gc days again (finalize.after_end: safe to repeat, as the finalize step
    # may have failed after recording the end): days pass only once the events are handled, or an
    # end handled late would schedule again the day that fired
    assert stack.runtime.events_delivered(120), "the runs' end events still not handled after 120 s"
    fired = schedules.fire_due(datetime.combine(days[0], time(2), timezone.utc))
    assert f"{group}/{gc_task.SCHEDULE_PREFIX}{days[0]}" in fired
    key = f"{gc_task.GC_PREFIX}scheduled-{days[0]}.json"
    report = wait_for(lambda: s3io.find_json(bucket, key), 120, "the scheduled gc task's report")
    # it ran where the stack's EFS is mounted, with the stack's days (the failed run's are not
    # over yet: today is really today), never touching a run still going
    assert report["keep_failed_run_days"] == 3 and report["runs_root"].endswith("/runs"), report
    by_name = {d["name"]: d for d in report["directories"]}
    assert by_name[failed.run_id]["action"] == "kept", by_name[failed.run_id]
    assert (by_name[held]["action"], by_name[held]["reason"]) == ("kept", "the run is RUNNING")
    assert f"{gc_task.SCHEDULE_PREFIX}{days[0]}" not in {s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]}
