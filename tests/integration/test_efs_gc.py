"""EFS run directories against moto S3 (the runs' status.json) and a temporary folder standing in
for EFS: what a collection removes and keeps, a driver's own directory at its end and its start-up
collection of earlier runs', and ``miniwdl-fargate gc`` (--here, --dry-run, the task it runs)."""

import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from backend_support import validate
from test_driver import WDL

from miniwdl_fargate import aws, cli, client, driver, efs_cleanup, status

BUCKET = "runs"
NOW = datetime.now(timezone.utc)


def put_status(run_id, state, finished_days_ago=None):
    """A run's status.json as the pipeline writes it."""
    current = status.RunStatus(
        run_id=run_id, name=run_id.rsplit("-", 1)[0], status=state, submitted_at=(NOW - timedelta(days=30)).isoformat(),
        finished_at=(NOW - timedelta(days=finished_days_ago)).isoformat() if finished_days_ago is not None else None,
    )
    aws.client("s3").put_object(Bucket=BUCKET, Key=status.status_key(run_id), Body=current.model_dump_json().encode())


def run_dir(root, run_id, marker=False, age_days=0.0):
    """A run directory with a file in it (and the driver's marker), last changed ``age_days`` ago."""
    path = root / run_id
    (path / "call-x" / "work").mkdir(parents=True)
    (path / "call-x" / "work" / "out.txt").write_text("x" * 5000)
    if marker:
        (path / efs_cleanup.RUN_MARKER).write_text("{}")
    then = (NOW - timedelta(days=age_days)).timestamp()
    for p in (path, path / efs_cleanup.RUN_MARKER):
        if p.exists():
            os.utime(p, (then, then))
    return path


@pytest.fixture
def efs(moto_aws, tmp_path):
    """The runs bucket and an EFS of six run directories, one of each kind."""
    aws.client("s3").create_bucket(Bucket=BUCKET)
    root = tmp_path / "efs" / "runs"
    for run_id, state, ended in [
        ("done-00000001", "SUCCEEDED", 0), ("broke-00000002", "FAILED", 1), ("broke-00000003", "FAILED", 5),
        ("going-00000004", "RUNNING", None), ("stopped-00000005", "CANCELLED", 4),
    ]:
        put_status(run_id, state, ended)
        run_dir(root, run_id)
    run_dir(root, "orphan-00000006", marker=True, age_days=10)  # its results prefix deleted
    run_dir(root, "stray-00000007", age_days=10)  # no status, no marker: not known as ours
    run_dir(root, "scratch", age_days=100)  # not a run id at all
    return root


EXPECTED = {
    "done-00000001": "the run SUCCEEDED",
    "broke-00000002": "the run FAILED; kept until",
    "broke-00000003": "the run FAILED at",
    "going-00000004": "the run is RUNNING",
    "stopped-00000005": "the run CANCELLED at",
    "orphan-00000006": "no status.json (results deleted?)",
    "stray-00000007": "no status.json, and no pipeline driver made it",
    "scratch": "not a run directory",
}
REMOVED = {"done-00000001", "broke-00000003", "stopped-00000005", "orphan-00000006"}


def test_a_collection_removes_finished_runs_and_never_one_still_going(efs):
    done = efs_cleanup.collect(str(efs), BUCKET, keep_days=3)
    assert {d["name"]: d["reason"][: len(EXPECTED[d["name"]])] for d in done} == EXPECTED
    assert {d["name"] for d in done if d["action"] == "removed"} == REMOVED
    assert {d["name"] for d in done if d["action"] == "kept"} == set(EXPECTED) - REMOVED
    assert sorted(p.name for p in efs.iterdir()) == sorted(set(EXPECTED) - REMOVED)
    assert all(d["freed_bytes"] >= 5000 for d in done if d["action"] == "removed")


def test_a_dry_run_says_what_would_go_and_removes_nothing(efs):
    before = sorted(p.name for p in efs.iterdir())
    done = efs_cleanup.collect(str(efs), BUCKET, keep_days=3, dry_run=True)
    assert {d["name"] for d in done if d["action"] == "would remove"} == REMOVED
    assert sorted(p.name for p in efs.iterdir()) == before


def test_with_no_days_kept_every_finished_run_goes(efs):
    done = efs_cleanup.collect(str(efs), BUCKET, keep_days=0)
    assert {d["name"] for d in done if d["action"] == "removed"} == REMOVED | {"broke-00000002"}
    assert (efs / "going-00000004").is_dir()


def test_a_run_whose_status_cannot_be_read_or_looked_up_is_kept(efs, monkeypatch):
    aws.client("s3").put_object(Bucket=BUCKET, Key=status.status_key("done-00000001"), Body=b"{not json")
    (entry,) = [d for d in efs_cleanup.collect(str(efs), BUCKET, 3, dry_run=True) if d["name"] == "done-00000001"]
    assert (entry["action"], entry["reason"]) == ("kept", "its status.json cannot be read")

    def unreachable(bucket, run_id):
        raise ConnectionError("S3 unreachable")

    monkeypatch.setattr(status, "read", unreachable)
    done = efs_cleanup.collect(str(efs), BUCKET, 3)
    assert {d["action"] for d in done if d["name"] in REMOVED} == {"unknown"}
    assert all((efs / name).is_dir() for name in REMOVED)


# -- the driver: its own directory at its end, earlier runs' at its start -------------------------


@pytest.fixture
def driving(efs, monkeypatch, tmp_path):
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="runs/t/workflow.wdl", Body=WDL.encode())
    s3.put_object(Bucket=BUCKET, Key="runs/t/inputs.json", Body=json.dumps({"w.names": ["a"], "w.reference": "s3://runs/data/ref.txt"}).encode())
    monkeypatch.setenv("MINIWDL__SCHEDULER__CONTAINER_BACKEND", "host_process")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__RUN_ID", "unset")  # (drive() takes it out of the environment; restored after the test)
    monkeypatch.chdir(tmp_path)
    return efs


def drive(efs, run_id, reference):
    aws.client("s3").put_object(Bucket=BUCKET, Key="data/ref.txt", Body=reference.encode())
    run = driver.DriverRun(
        run_id, "s3://runs/runs/t/workflow.wdl", "s3://runs/runs/t/inputs.json", f"s3://runs/runs/t/results/{run_id}/",
        str(efs / run_id), str(efs.parent / "cache"),
    )
    return driver.drive(run)


def test_a_successful_run_leaves_no_directory_and_its_start_collected_the_finished_ones(driving):
    assert drive(driving, "ok-0000000a", "one two") == 0
    assert not (driving / "ok-0000000a").exists()  # its outputs are in S3: nothing of it stays on EFS
    assert aws.client("s3").head_object(Bucket=BUCKET, Key="runs/t/results/ok-0000000a/outputs.json")
    # and at its start it collected what earlier runs left, never a run still going
    assert sorted(p.name for p in driving.iterdir()) == sorted(set(EXPECTED) - REMOVED)
    assert (driving.parent / "cache" / "call").is_dir()  # the shared cache stays


def test_a_failed_run_is_kept_saying_until_when_or_removed_with_no_days(driving, monkeypatch):
    assert drive(driving, "bad-0000000b", "FAIL") == 1
    marker = json.loads((driving / "bad-0000000b" / efs_cleanup.EXPIRES_MARKER).read_text())
    expires = datetime.fromisoformat(marker["expires_at"])
    assert marker["status"] == "FAILED" and timedelta(days=2.9) < expires - NOW < timedelta(days=3.1)
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__KEEP_FAILED_RUN_DAYS", "0")
    assert drive(driving, "bad-0000000c", "FAIL") == 1
    assert not (driving / "bad-0000000c").exists()


# -- miniwdl-fargate gc -------------------------------------------------------------------------


def test_gc_here_dry_run_reports_to_the_bucket_and_removes_nothing(efs, monkeypatch, capsys):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT", str(efs.parent))
    code = cli.main(["gc", "--here", "--dry-run", "--bucket", BUCKET, "--report", "gc/one.json", "--keep-failed-days", "3"])
    assert code == 0
    report = json.loads(aws.client("s3").get_object(Bucket=BUCKET, Key="gc/one.json")["Body"].read())
    assert report == json.loads(capsys.readouterr().out)
    assert (report["dry_run"], report["keep_failed_run_days"], report["runs_root"]) == (True, 3.0, str(efs))
    assert {d["name"] for d in report["directories"] if d["action"] == "would remove"} == REMOVED
    assert all((efs / name).is_dir() for name in EXPECTED)
    lines = client.gc_lines(report)
    assert lines[-1] == ("would remove 4 of 8 run director(ies) and 0 unused cache entr(ies); 0.000 GB freed; "
                         "failed runs kept 3 day(s), unused cache entries 7 day(s)")
    assert any(line.startswith("kept            going-00000004  the run is RUNNING") for line in lines)


def test_gc_here_out_of_time_stops_says_so_and_ends_whatever_it_is_doing(efs, monkeypatch, capsys):
    """A gc task nothing watches (one a schedule started) never bills for good: it stops collecting
    after its time, saying what waits for the next collection, and a watchdog ends its process a
    little after that even if a call never returns (a hung NFS mount)."""
    import threading

    from miniwdl_fargate import gc_task

    monkeypatch.setenv("MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT", str(efs.parent))
    monkeypatch.setattr(gc_task, "MAX_SECONDS", -1.0)  # (its time is over before it starts)
    timers = []

    class Timer(threading.Timer):
        def __init__(self, interval, function, args=None):
            super().__init__(interval, function, args)
            timers.append((interval, function, args, self))

    monkeypatch.setattr(threading, "Timer", Timer)
    assert cli.main(["gc", "--here", "--bucket", BUCKET, "--keep-failed-days", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unfinished"] is True and report["directories"] == []
    assert all((efs / name).is_dir() for name in EXPECTED)  # nothing decided, nothing removed
    assert client.gc_lines(report)[-1] == "stopped after -0.000277778 hours: the rest waits for the next collection"
    ((interval, function, args, timer),) = timers
    assert (interval, function, args) == (-1.0 + gc_task.EXIT_GRACE_SECONDS, os._exit, (124,))
    assert timer.daemon and timer.finished.is_set()  # (cancelled once it was done)


def test_gc_here_needs_its_bucket_and_only_here_takes_one(efs, monkeypatch, capsys):
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT", str(efs.parent))
    assert cli.main(["gc", "--here"]) == 2
    assert "gc --here needs --bucket" in capsys.readouterr().err
    assert cli.main(["gc", "--bucket", BUCKET]) == 2
    assert "--bucket and --report go with --here" in capsys.readouterr().err
    assert all((efs / name).is_dir() for name in EXPECTED)


OUTPUTS = {
    "BucketName": BUCKET, "ClusterName": "stack-cluster", "TaskSubnetIds": "subnet-1,subnet-2",
    "DriverTaskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/stack-driver:1",
    "TaskSecurityGroupId": "sg-1", "TaskAssignPublicIp": "ENABLED",
}


def test_the_gc_task_is_a_valid_run_task_of_the_drivers_task_definition():
    deployment = client.Deployment("stack", "us-east-1", OUTPUTS)
    request = client.gc_task_request(deployment, "gc/x.json", dry_run=True, keep_days=0)
    validate("RunTask", request)
    assert request["overrides"]["containerOverrides"] == [{"name": "driver", "command": [
        "miniwdl-fargate", "gc", "--here", "--bucket", BUCKET, "--report", "gc/x.json", "--keep-failed-days", "0", "--dry-run",
    ]}]
    assert request["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == ["subnet-1", "subnet-2"]
    older = client.Deployment("stack", "us-east-1", {k: v for k, v in OUTPUTS.items() if k != "TaskAssignPublicIp"})
    with pytest.raises(client.ClientError, match="has no output TaskAssignPublicIp: update the stack"):
        client.gc_task_request(older, "gc/x.json")


@pytest.mark.parametrize("value, said", [("-1", "-1 days: must be from 0 to 36500"), ("soon", "'soon' is not a number of days")])
def test_gc_refuses_a_bad_number_of_days(value, said, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["gc", "--keep-failed-days", value])
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_a_gc_task_that_wrote_no_report_is_an_error_naming_its_log(moto_aws, monkeypatch):
    aws.client("s3").create_bucket(Bucket=BUCKET)
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="stack-cluster")
    definition = ecs.register_task_definition(
        family="stack-driver", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
        containerDefinitions=[{"name": "driver", "image": "driver:latest", "command": ["miniwdl-fargate", "driver"]}],
    )["taskDefinition"]["taskDefinitionArn"]
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]  # (moto's default VPC)
    outputs = {**OUTPUTS, "DriverTaskDefinitionArn": definition, "DriverLogGroupName": "/stack/driver", "TaskSubnetIds": subnet}
    started = []
    monkeypatch.setattr(client, "wait_stopped", lambda deployment, arn, timeout: started.append(arn) or {
        "taskArn": arn, "stoppedReason": "Essential container in task exited", "containers": [{"name": "driver", "exitCode": 2}],
    })
    with pytest.raises(client.ClientError) as failed:
        client.collect_remotely(client.Deployment("stack", "us-east-1", outputs), dry_run=True)
    (arn,) = started
    assert str(failed.value) == (
        f"the gc task {arn} stopped without writing its report (exit code 2, Essential container in task exited); "
        f"its log: /stack/driver driver/driver/{arn.rsplit('/', 1)[-1]}"
    )
    (task,) = ecs.describe_tasks(cluster="stack-cluster", tasks=[arn])["tasks"]
    assert task["overrides"]["containerOverrides"][0]["command"][:3] == ["miniwdl-fargate", "gc", "--here"]


# -- the shared cache beside the run directories ---------------------------------------------------


def cache_entry(cache, rel, used_days_ago, payload="staged.txt"):
    """An entry of the shared cache (a folder with a file and the used marker), last used ``used_days_ago``."""
    entry = cache / rel
    entry.mkdir(parents=True)
    (entry / payload).write_text("y" * 3000)
    os.chmod(entry / payload, 0o444)
    marker = entry / efs_cleanup.USED_MARKER
    marker.write_text("")
    then = (NOW - timedelta(days=used_days_ago)).timestamp()
    os.utime(marker, (then, then))
    return entry


def test_unused_cache_entries_go_but_never_what_a_run_still_going_may_use(efs):
    cache = efs.parent / "cache"
    old = cache_entry(cache, "s3/data/deep/key/with/parts.txt/0123abcd", used_days_ago=30)
    recent = cache_entry(cache, "s3/data/other.txt/4567ef01", used_days_ago=1)
    blob = cache_entry(cache, "files/" + "a" * 64, used_days_ago=20, payload="out.txt")
    # used 9 days ago, after the running run started (it started 10 days ago): it may be that run's
    since_going = cache_entry(cache, "dirs/" + "b" * 64, used_days_ago=9, payload="tree")
    (efs / "going-00000004" / efs_cleanup.RUN_MARKER).write_text("{}")
    ten_days = (NOW - timedelta(days=10)).timestamp()
    os.utime(efs / "going-00000004" / efs_cleanup.RUN_MARKER, (ten_days, ten_days))
    (cache / "links").mkdir()  # (not a store this collects)

    report = efs_cleanup.collection(str(efs), BUCKET, keep_days=3, cache_keep_days=7)
    gone = {c["name"] for c in report["cache"] if c["action"] == "removed"}
    assert gone == {os.path.relpath(old, cache), os.path.relpath(blob, cache)}
    assert not old.exists() and not (cache / "s3" / "data" / "deep").exists()  # emptied folders go too
    assert recent.is_dir() and since_going.is_dir() and (cache / "s3").is_dir() and (cache / "links").is_dir()
    assert report["freed_bytes"] >= 2 * 3000 and report["keep_unused_cache_days"] == 7
    lines = client.gc_lines(report)
    assert any(line.startswith("removed") and "cache/files/" in line for line in lines)
    assert "and 2 unused cache entr(ies)" in lines[-1]


def test_a_run_whose_status_still_says_it_runs_long_after_any_wait_for_it_holds_nothing_back(efs):
    """An execution stopped from outside (StopExecution runs no Catch) or whose finalize failed
    leaves status.json RUNNING for good: its directory was kept, and it held back every collection
    of the shared cache, for good. Past twice its max_run_seconds and a day after its submission,
    it is taken as a run that failed then."""
    cache = efs.parent / "cache"
    old = cache_entry(cache, "files/" + "d" * 64, used_days_ago=30)
    started = (NOW - timedelta(days=31)).timestamp()  # (before the entry's last use: it would spare it)
    (efs / "going-00000004" / efs_cleanup.RUN_MARKER).write_text("{}")
    os.utime(efs / "going-00000004" / efs_cleanup.RUN_MARKER, (started, started))
    results = "s3://runs/runs/going/results/going-00000004/"
    current = status.read(BUCKET, "going-00000004").model_copy(update={"results": results})
    aws.client("s3").put_object(Bucket=BUCKET, Key=status.status_key("going-00000004"), Body=current.model_dump_json().encode())
    record = {"max_run_seconds": 72 * 3600}  # (submitted 30 days ago: lapsed 22 days ago)
    aws.client("s3").put_object(Bucket=BUCKET, Key="runs/going/results/going-00000004/run.json", Body=json.dumps(record).encode())
    report = efs_cleanup.collection(str(efs), BUCKET, keep_days=3, cache_keep_days=7)
    (going,) = [d for d in report["directories"] if d["name"] == "going-00000004"]
    assert going["action"] == "removed" and "still says it runs, past the most its state machine waits" in going["reason"], going
    assert [c["action"] for c in report["cache"]] == ["removed"] and not old.exists()
    # within the wait (a run of 30 days' limit): still going, sparing the cache
    record["max_run_seconds"] = 30 * 86400
    aws.client("s3").put_object(Bucket=BUCKET, Key="runs/going/results/going-00000004/run.json", Body=json.dumps(record).encode())
    run_dir(efs, "going-00000004", marker=True)
    os.utime(efs / "going-00000004" / efs_cleanup.RUN_MARKER, (started, started))
    again = cache_entry(cache, "files/" + "e" * 64, used_days_ago=30)
    report = efs_cleanup.collection(str(efs), BUCKET, keep_days=3, cache_keep_days=7)
    assert [d["reason"] for d in report["directories"] if d["name"] == "going-00000004"] == ["the run is RUNNING"]
    assert report["cache"] == [] and again.is_dir()


def test_spares_no_task_links_to_and_what_a_collection_left_aside_go(efs):
    """The spare copies of inputs at EFS's hard-link limit (cache/links) and the entries an
    unfinished collection left in cache/.trash were never collected: each grew for good. A spare
    no task's file links to any more goes (its group's source may be long gone), one a run's file
    still links to stays; anything changed within the hour stays too."""
    cache = efs.parent / "cache"
    group = cache / "links" / "1234-5000-99"
    group.mkdir(parents=True)
    unused, linked, unused_too = group / "1", group / "2", group / "3"
    for spare in (unused, linked, unused_too):
        spare.write_text("y" * 5000)
    os.link(linked, efs / "going-00000004" / "call-x" / "work" / "input.txt")  # (a run's task's input)
    (group / ".part.abc").write_text("half a copy")  # (a driver killed mid-copy)
    aside = cache / ".trash" / "123-456"
    (aside / "deep").mkdir(parents=True)
    (aside / "deep" / "blob").write_text("z" * 5000)
    later = time.time() + 2 * efs_cleanup.LEFTOVER_SECONDS
    report = efs_cleanup.leftovers(str(cache), now=later)
    assert sorted((r["name"], r["action"]) for r in report) == [
        (".trash/123-456", "removed"), ("links/1234-5000-99/.part.abc", "removed"),
        ("links/1234-5000-99/1", "removed"), ("links/1234-5000-99/3", "removed")]
    assert not unused.exists() and linked.exists() and not aside.exists()
    assert sum(r["freed_bytes"] for r in report) >= 2 * 5000 + 5000
    # within the hour, nothing
    (group / "4").write_text("new")
    assert efs_cleanup.leftovers(str(cache)) == []
    # and a collection (gc, a driver's start) does it
    report = efs_cleanup.collection(str(efs), BUCKET, keep_days=3, dry_run=True, cache_keep_days=7)
    assert all(c["name"] != "links/1234-5000-99/2" for c in report["cache"])


def test_a_dry_run_leaves_the_cache_and_a_run_of_unknown_start_spares_all_of_it(efs):
    cache = efs.parent / "cache"
    old = cache_entry(cache, "files/" + "c" * 64, used_days_ago=30)
    report = efs_cleanup.collection(str(efs), BUCKET, keep_days=3, dry_run=True, cache_keep_days=7)
    # going-00000004 has no start marker: nothing of the cache may go while it runs
    assert report["cache"] == [] and old.is_dir()
    (efs / "going-00000004" / efs_cleanup.RUN_MARKER).write_text("{}")
    report = efs_cleanup.collection(str(efs), BUCKET, keep_days=3, dry_run=True, cache_keep_days=7)
    assert [c["action"] for c in report["cache"]] == ["would remove"] and old.is_dir()


def test_an_entry_a_run_touches_while_it_is_removed_is_put_back(tmp_path):
    cache = tmp_path / "cache"
    entry = cache_entry(cache, "s3/data/x.txt/89abcdef", used_days_ago=30)
    cutoff = (NOW - timedelta(days=7)).timestamp()
    efs_cleanup.mark_used(str(entry))  # a run staging it now, after the collection looked
    facts = efs_cleanup._remove_unused(str(cache), str(entry), cutoff)
    assert facts == {"action": "kept", "reason": "a run used it while it was being removed"}
    assert (entry / "staged.txt").read_text() == "y" * 3000


def test_an_entrys_use_is_read_as_efs_has_it_not_as_this_client_cached_it(tmp_path, monkeypatch):
    """Another client's touch of an entry's marker (a run on another host staging it) may be hidden
    by this NFS client's cached attributes (up to acregmax, 60 s) from an lstat: the marker is
    opened and fstat'ed (close-to-open: the open asks the server), when listed and when rechecked."""
    from miniwdl_fargate import nfs

    cache = tmp_path / "cache"
    entry = cache_entry(cache, "s3/data/x.txt/89abcdef", used_days_ago=30)
    opened = []
    real = nfs._open
    monkeypatch.setattr(nfs, "_open", lambda path, flags, dir_fd=None: opened.append(path) or real(path, flags, dir_fd))
    cutoff = (NOW - timedelta(days=7)).timestamp()
    report = efs_cleanup.collect_shared(str(cache), cutoff)
    assert [r["action"] for r in report] == ["removed"] and not entry.exists()
    markers = [p for p in opened if p.endswith(efs_cleanup.USED_MARKER)]
    assert len(markers) == 2 and markers[0] == str(entry / efs_cleanup.USED_MARKER)  # (listed, then rechecked aside)


def test_staging_marks_what_it_stages_and_reuses(moto_aws, tmp_path):
    from miniwdl_fargate import s3io, staging

    aws.client("s3").create_bucket(Bucket="data")
    aws.client("s3").put_object(Bucket="data", Key="in/ref.txt", Body=b"ref")
    store = str(tmp_path / "cache" / "s3")
    with s3io.Transfers() as transfers:
        path = staging._stage_file("s3://data/in/ref.txt", store, transfers)
    marker = os.path.join(os.path.dirname(path), efs_cleanup.USED_MARKER)
    assert os.path.isfile(marker)
    os.utime(marker, (0, 0))
    with s3io.Transfers() as transfers:
        again = staging._stage_file("s3://data/in/ref.txt", store, transfers)
    assert again == path and again.reused and os.lstat(marker).st_mtime > 0
    assert efs_cleanup.shared_entries(str(tmp_path / "cache")) == [os.path.dirname(path)]
