"""The call cache in S3 (``callcache.s3cache``), through the driver against moto S3 with the
host_process backend: entries and their files under the runs bucket's cache/ prefix, a rerun
that reuses them after the EFS run directory and cache folder are gone, a miss when an input's
ETag changes, the run's call_cache / [call_cache] modes, and ``explain``."""

import contextlib
import json
import re
import shutil
from datetime import datetime

import botocore.exceptions
import botocore.session
import pytest
from botocore.validate import ParamValidator

from miniwdl_fargate import aws, driver
from miniwdl_fargate.callcache import explain, keys, s3cache

WDL = """
version 1.1
workflow chain {
  input {
    String name
    File reference
    String extra = "x"
  }
  call make { input: name = name }
  call count { input: made = make.out, reference = reference }
  call say { input: word = extra }
  output {
    File made = make.out
    Int words = count.words
    String said = say.said
  }
}
task make {
  input { String name }
  command <<< echo "made for ~{name}" > made.txt >>>
  output { File out = "made.txt" }
  runtime { memory: "1 GiB" }
}
task count {
  input {
    File made
    File reference
  }
  command <<< cat "~{made}" "~{reference}" | wc -w > words >>>
  output { Int words = read_int("words") }
}
task say {
  input { String word }
  command <<< echo "~{word}" >>>
  output { String said = read_string(stdout()) }
}
"""


@pytest.fixture
def bucket(moto_aws, monkeypatch, tmp_path):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    s3.put_object(Bucket="runs", Key="runs/c/workflow.wdl", Body=WDL.encode())
    s3.put_object(Bucket="runs", Key="data/ref.txt", Body=b"one two three")
    monkeypatch.setenv("MINIWDL__SCHEDULER__CONTAINER_BACKEND", "host_process")
    monkeypatch.setenv("MINIWDL__SCHEDULER__TASK_CONCURRENCY", "4")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__RUN_ID", "unset")
    monkeypatch.chdir(tmp_path)
    return s3


def drive_workflow(tmp_path, run_id, inputs, wdl="runs/c/workflow.wdl", options=None):
    """The driver's run ``run_id`` of the workflow at ``wdl`` in the runs bucket, its ``inputs``
    put beside it (``<run_id>.json``), its results under ``results/<run_id>/`` there; its exit code."""
    folder = wdl.rpartition("/")[0]
    aws.client("s3").put_object(Bucket="runs", Key=f"{folder}/{run_id}.json", Body=json.dumps(inputs).encode())
    return driver.drive(driver.DriverRun(
        run_id=run_id, workflow=f"s3://runs/{wdl}", inputs=f"s3://runs/{folder}/{run_id}.json",
        results=f"s3://runs/{folder}/results/{run_id}/", workdir=str(tmp_path / "efs" / "runs" / run_id),
        cache_dir=str(tmp_path / "efs" / "cache"), options=options,
    ))


def drive(tmp_path, run_id, extra="x", options=None):
    inputs = {"chain.name": "ann", "chain.reference": "s3://runs/data/ref.txt", "chain.extra": extra}
    return drive_workflow(tmp_path, run_id, inputs, options=options or {})


def get(run_id, name):
    body = aws.client("s3").get_object(Bucket="runs", Key=f"runs/c/results/{run_id}/{name}")["Body"].read()
    return json.loads(body) if name.endswith(".json") else body.decode()


def read_uri(uri):
    bucket, key = uri[len("s3://"):].split("/", 1)
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def keys_under(prefix):
    return sorted(o["Key"] for o in aws.client("s3").list_objects_v2(Bucket="runs", Prefix=prefix).get("Contents", []))


def ran(run_id):
    return sorted(a["call"] for a in get(run_id, "cost.json")["attempts"])


def calls(run_id):
    return {c["call"]: c for c in get(run_id, "call_cache.json")["calls"]}


def forget_efs(tmp_path, run_id):
    """The run's EFS directory is gone (its driver removed it once the outputs were in S3), and
    the whole EFS cache folder too."""
    assert not (tmp_path / "efs" / "runs" / run_id).exists()
    shutil.rmtree(tmp_path / "efs" / "cache")


def test_entries_and_their_files_are_kept_in_the_runs_bucket(bucket, tmp_path):
    assert drive(tmp_path, "c-1") == 0
    entries = keys_under("cache/call/")
    # one entry per task call (none for the workflow as a whole: keys.KEY_VERSION 3)
    assert sorted(k.split("/")[2] for k in entries) == ["count", "make", "say"]
    made = next(k for k in entries if k.split("/")[2] == "make")
    entry = json.loads(aws.client("s3").get_object(Bucket="runs", Key=made)["Body"].read())
    assert entry["run"] == "c-1" and entry["call"] == "call-make"
    assert entry["parts"]["inputs"] == {"name": "ann"}
    ref, = entry["outputs"].values()
    assert ref.startswith(s3cache.FILE_REF) and ref.endswith("/made.txt")
    sha = ref[len(s3cache.FILE_REF):].split("/")[0]
    assert read_uri(f"s3://runs/cache/files/{sha}") == b"made for ann\n"
    # the staged s3:// input by its URI and ETag, the upstream file by its content
    count = json.loads(aws.client("s3").get_object(Bucket="runs", Key=next(k for k in entries if "/count/" in k))["Body"].read())
    etag = aws.client("s3").head_object(Bucket="runs", Key="data/ref.txt")["ETag"].strip('"')
    assert count["parts"]["inputs"] == {"made": f"sha256:{sha}/made.txt", "reference": f"s3://runs/data/ref.txt#etag={etag}"}
    # the run's lookups, beside its report: every call ran (nothing was cached before)
    assert {k: v["outcome"] for k, v in calls("c-1").items()} == {"call-count": "ran", "call-make": "ran", "call-say": "ran"}


def test_a_rerun_reuses_the_entries_after_the_efs_run_and_cache_folders_are_gone(bucket, tmp_path):
    assert drive(tmp_path, "c-first") == 0
    first = get("c-first", "outputs.json")
    forget_efs(tmp_path, "c-first")
    # the same inputs: each call comes from S3, nothing runs
    assert drive(tmp_path, "c-again") == 0
    again = get("c-again", "outputs.json")
    assert ran("c-again") == []
    assert read_uri(again["outputs"]["chain.made"]) == read_uri(first["outputs"]["chain.made"]) == b"made for ann\n"
    assert again["outputs"]["chain.words"] == first["outputs"]["chain.words"] == 6
    assert {k: v["source"]["run"] for k, v in calls("c-again").items()} == dict.fromkeys(("call-count", "call-make", "call-say"), "c-first")
    forget_efs(tmp_path, "c-again")
    # one input only `say` reads changed: `count` takes `make`'s output fetched back from S3 and
    # is still a hit (its input named by content, not by the gone run directory's path)
    assert drive(tmp_path, "c-other", extra="y") == 0
    assert ran("c-other") == ["call-say"]
    other = calls("c-other")
    assert {k: v["outcome"] for k, v in other.items()} == {"call-count": "reused", "call-make": "reused", "call-say": "ran"}
    assert other["call-count"]["source"] == {"run": "c-first", "call": "call-count"}
    assert get("c-other", "outputs.json")["outputs"]["chain.words"] == 6
    page = get("c-other", "report.html")
    assert "Reused from the call cache" in page and "c-first" in page
    cost = get("c-other", "cost.json")
    assert cost["call_cache_hits"] == 2
    assert {r["call"]: r["from_run"] for r in cost["reused_calls"]} == {"call-count": "c-first", "call-make": "c-first"}


def test_an_input_object_overwritten_misses_and_explain_names_its_etag(bucket, tmp_path):
    assert drive(tmp_path, "c-before") == 0
    before = aws.client("s3").head_object(Bucket="runs", Key="data/ref.txt")["ETag"].strip('"')
    aws.client("s3").put_object(Bucket="runs", Key="data/ref.txt", Body=b"one two three four")
    after = aws.client("s3").head_object(Bucket="runs", Key="data/ref.txt")["ETag"].strip('"')
    assert drive(tmp_path, "c-after") == 0
    assert ran("c-after") == ["call-count"]
    assert get("c-after", "outputs.json")["outputs"]["chain.words"] == 7
    lines = explain.explain("runs", "s3://runs/runs/c/results/c-after/", "count")
    assert lines[0] == "call-count ran (task count)"
    assert lines[1].startswith("closest earlier entry: run c-before, call call-count")
    assert lines[2:] == [f"  input reference: s3://runs/data/ref.txt changed (ETag {before} -> {after})"]
    assert explain.explain("runs", "s3://runs/runs/c/results/c-after/", "call-make") == [
        "call-make was reused from the call cache: its results are run c-before's, call call-make"
    ]


def test_read_mode_reuses_but_keeps_nothing_and_write_mode_keeps_but_reuses_nothing(bucket, tmp_path):
    assert drive(tmp_path, "c-seed") == 0
    seeded = keys_under("cache/call/")
    # write: everything runs again although every entry is there (an entry of the same key
    # stays as it was: it names the run that first made those results)
    assert drive(tmp_path, "c-write", options={"call_cache": "write"}) == 0
    assert ran("c-write") == ["call-count", "call-make", "call-say"]
    assert all(not c["read"] for c in calls("c-write").values())
    assert keys_under("cache/call/") == seeded
    lines = explain.explain("runs", "s3://runs/runs/c/results/c-write/", "make")
    assert lines[1].startswith("the call cache was not read for this run")
    assert lines[2].startswith("closest earlier entry: run c-seed, call call-make")
    assert lines[3:] == ["its key is the same: with the call cache read, the call would have been reused"]
    # write with a new input: its entry is kept
    assert drive(tmp_path, "c-write2", extra="w", options={"call_cache": "write"}) == 0
    assert len(keys_under("cache/call/")) == len(seeded) + 1  # say's (a workflow has none)
    seeded = keys_under("cache/call/")
    # read: a changed input runs its call, and its result is not kept
    assert drive(tmp_path, "c-read", extra="z", options={"call_cache": "read"}) == 0
    assert ran("c-read") == ["call-say"]
    assert keys_under("cache/call/") == seeded
    # false: neither
    assert drive(tmp_path, "c-off", options={"call_cache": False}) == 0
    assert ran("c-off") == ["call-count", "call-make", "call-say"]


def test_the_stacks_default_mode_applies_when_the_run_does_not_say(bucket, tmp_path, monkeypatch):
    assert drive(tmp_path, "c-fill") == 0
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__CALL_CACHE", "write")
    assert drive(tmp_path, "c-stack") == 0
    assert ran("c-stack") == ["call-count", "call-make", "call-say"]
    # the run's own option wins over the stack's
    assert drive(tmp_path, "c-own", options={"call_cache": True}) == 0
    assert ran("c-own") == []


def test_explain_says_what_it_cannot_find(bucket, tmp_path):
    assert drive(tmp_path, "c-x") == 0
    with pytest.raises(explain.ExplainError, match=r"no call 'nope' in this run; its calls: call-count"):
        explain.explain("runs", "s3://runs/runs/c/results/c-x/", "nope")
    with pytest.raises(explain.ExplainError, match="is not there"):
        explain.explain("runs", "s3://runs/runs/c/results/c-none/", "make")
    lines = explain.explain("runs", "s3://runs/runs/c/results/c-x/", "make")
    assert lines[1].startswith("no earlier entry of task make")


def test_the_requests_the_cache_sends_validate():
    """(botocore validates every request a client sends, the ones above included; these are the
    cache's own shapes, checked against S3's model by hand too.)"""
    model = botocore.session.get_session().get_service_model("s3")
    for operation, params in (
        ("HeadObject", {"Bucket": "runs", "Key": "cache/files/ab"}),
        ("PutObject", {"Bucket": "runs", "Key": "cache/call/t/d/k.json", "Body": b"{}", "ContentType": "application/json"}),
        ("GetObject", {"Bucket": "runs", "Key": "cache/call/t/d/k.json"}),
        ("ListObjectsV2", {"Bucket": "runs", "Prefix": "cache/call/t/"}),
    ):
        report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()


DIR_WDL = """
version 1.2
workflow tree {
  input {
    String extra = "x"
  }
  call grow
  call look { input: d = grow.d }
  call say { input: word = extra }
  output {
    Directory d = grow.d
    Int files = look.files
  }
}
task grow {
  command <<< mkdir -p leaves/sub && echo a > leaves/a.txt && echo b > leaves/sub/b.txt >>>
  output { Directory d = "leaves" }
}
task look {
  input { Directory d }
  command <<< find "~{d}" -type f | wc -l > files >>>
  output { Int files = read_int("files") }
}
task say {
  input { String word }
  command <<< echo "~{word}" >>>
  output { String said = read_string(stdout()) }
}
"""


def test_a_directory_output_is_kept_file_by_file_and_fetched_back(bucket, tmp_path):
    aws.client("s3").put_object(Bucket="runs", Key="runs/d/workflow.wdl", Body=DIR_WDL.encode())

    def drive_tree(run_id, extra):
        return drive_workflow(tmp_path, run_id, {"tree.extra": extra}, wdl="runs/d/workflow.wdl", options={})

    assert drive_tree("d-1", "x") == 0
    grow = next(k for k in keys_under("cache/call/grow/"))
    entry = json.loads(aws.client("s3").get_object(Bucket="runs", Key=grow)["Body"].read())
    ref, = entry["outputs"].values()
    tree, base = ref[len(s3cache.DIR_REF):].split("/")
    assert sorted(path for path, _ in entry["dirs"][f"{tree}/{base}"]) == ["a.txt", "sub/b.txt"]
    assert not (tmp_path / "efs" / "runs" / "d-1").exists()  # (its driver removed it)
    shutil.rmtree(tmp_path / "efs" / "cache")
    assert drive_tree("d-2", "y") == 0
    cost = json.loads(aws.client("s3").get_object(Bucket="runs", Key="runs/d/results/d-2/cost.json")["Body"].read())
    assert sorted(a["call"] for a in cost["attempts"]) == ["call-say"]  # look: a hit on the fetched directory
    fetched = tmp_path / "efs" / "cache" / "dirs" / tree / "leaves"
    assert (fetched / "sub" / "b.txt").read_text() == "b\n"
    outputs = json.loads(aws.client("s3").get_object(Bucket="runs", Key="runs/d/results/d-2/outputs.json")["Body"].read())
    assert outputs["outputs"]["tree.files"] == 2
    assert read_uri(outputs["outputs"]["tree.d"].rstrip("/") + "/sub/b.txt") == b"b\n"


def test_an_entry_records_the_image_and_the_runtime_default_it_is_keyed_on(bucket, tmp_path):
    assert drive(tmp_path, "c-img") == 0
    made = next(k for k in keys_under("cache/call/make/"))
    entry = json.loads(aws.client("s3").get_object(Bucket="runs", Key=made)["Body"].read())
    # (the tasks name no image: miniwdl's [task_runtime] defaults give one, and it is in the key)
    default = entry["parts"]["defaults"]["docker"]
    assert default and entry["image"] == default


def test_an_entry_whose_files_are_gone_is_a_miss_and_is_written_anew(bucket, tmp_path):
    assert drive(tmp_path, "c-keep") == 0
    for key in keys_under("cache/files/"):
        aws.client("s3").delete_object(Bucket="runs", Key=key)
    forget_efs(tmp_path, "c-keep")
    assert drive(tmp_path, "c-lost") == 0
    # the entries with files (the workflow's, make's) are unusable: make runs again; count and
    # say have no files, and count's input (make's output, the same content) is named the same
    assert ran("c-lost") == ["call-make"]
    assert get("c-lost", "outputs.json")["outputs"]["chain.words"] == 6
    made = next(k for k in keys_under("cache/call/make/"))
    assert json.loads(aws.client("s3").get_object(Bucket="runs", Key=made)["Body"].read())["run"] == "c-lost"
    assert keys_under("cache/files/")
    # explain says why it ran: its own entry was there but unusable (it named another entry)
    lines = explain.explain("runs", "s3://runs/runs/c/results/c-lost/", "make")
    assert lines[0] == "call-make ran (task make)"
    assert lines[1].startswith("the call cache held an entry for exactly these inputs (run c-keep, call call-make), "
                               "but its results could not be fetched: ")
    assert lines[2:] == ["so the call ran, and its entry was written anew with this run's results"]


def test_a_cache_that_cannot_keep_a_call_fails_nothing(bucket, tmp_path, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")

    monkeypatch.setattr(s3cache.S3CallCache, "upload_blob", refuse)
    assert drive(tmp_path, "c-denied") == 0
    assert get("c-denied", "outputs.json")["outputs"]["chain.words"] == 6
    # only the calls without files to keep have entries
    assert sorted(k.split("/")[2] for k in keys_under("cache/call/")) == ["count", "say"]


def put_entry(task, run, call, inputs, wdl_digest="d1", **extra):
    parts = keys.key_parts(f"{task}/{wdl_digest}/x", inputs, {})
    key = f"cache/call/{keys.entry_name(parts)}.json"
    aws.client("s3").put_object(
        Bucket="runs", Key=key, Body=json.dumps({"parts": parts, "run": run, "call": call, **extra}).encode()
    )
    return parts


def test_explain_compares_with_the_entry_of_fewest_differences_and_names_a_new_image_digest(moto_aws):
    aws.client("s3").create_bucket(Bucket="runs")
    put_entry("align", "r-far", "call-align", {"reads": "s3://d/r1.fq#etag=a", "k": 1}, wdl_digest="d0")
    put_entry("align", "r-near", "call-align", {"reads": "s3://d/r1.fq#etag=a", "k": 1}, image="bwa:1", image_digest="sha256:old")
    put_entry("other", "r-other", "call-other", {"reads": "s3://d/r1.fq#etag=b", "k": 2})
    now = keys.key_parts("align/d1/x", {"reads": "s3://d/r1.fq#etag=b", "k": 1}, {})
    doc = {"run_id": "r-now", "calls": [{
        "call": "call-align", "task": "align", "parts": now, "read": True, "outcome": "ran",
        "image": "bwa:1", "image_digest": "sha256:new",
    }]}
    aws.client("s3").put_object(Bucket="runs", Key="runs/n/results/r-now/call_cache.json", Body=json.dumps(doc).encode())
    lines = explain.explain("runs", "s3://runs/runs/n/results/r-now/", "align")
    assert lines[0] == "call-align ran (task align)"
    assert lines[1].startswith("closest earlier entry: run r-near, call call-align (s3://runs/cache/call/align/d1/")
    assert lines[2:] == [
        "  input reads: s3://d/r1.fq changed (ETag a -> b)",
        "  (not in the key) image bwa:1: digest sha256:old -> sha256:new",
    ]


def test_a_task_given_more_memory_is_the_same_task(bucket, tmp_path):
    assert drive(tmp_path, "c-small") == 0
    aws.client("s3").put_object(
        Bucket="runs", Key="runs/c/workflow.wdl", Body=WDL.replace('memory: "1 GiB"', 'memory: "4 GiB"').encode()
    )
    assert drive(tmp_path, "c-large") == 0
    # the workflow's own digest (miniwdl's) changed, so it runs; its calls are all reused
    assert ran("c-large") == []
    assert {k: v["outcome"] for k, v in calls("c-large").items()} == {
        "call-count": "reused", "call-make": "reused", "call-say": "reused",
    }
    aws.client("s3").put_object(
        Bucket="runs", Key="runs/c/workflow.wdl", Body=WDL.replace('echo "made for', 'echo "made by').encode()
    )
    assert drive(tmp_path, "c-edited") == 0
    assert ran("c-edited") == ["call-count", "call-make"]
    # when each call looked the cache up, for explain to leave out the entries written after it
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", c["looked_up"]) for c in calls("c-edited").values())
    lines = explain.explain("runs", "s3://runs/runs/c/results/c-edited/", "make")
    assert lines[2].startswith("  the task's WDL (command, runtime or outputs) changed: digest ")


def test_explain_leaves_out_entries_written_after_the_call_looked_the_cache_up(moto_aws, monkeypatch):
    """A later run's entry cannot explain why this call ran: asked again after more runs, the
    answer about a call stays what it was (it named a later run as the "closest earlier entry"),
    however many later runs wrote entries since (they are left out by S3's LastModified before the
    newest MAX_ENTRIES are taken: 200 later ones left nothing to compare with)."""
    aws.client("s3").create_bucket(Bucket="runs")
    written: dict[str, datetime] = {}

    def entry(run, who, at):
        put_entry("hi", run, "call-hi", {"who": who}, written=at)
        key = f"cache/call/{keys.entry_name(keys.key_parts('hi/d1/x', {'who': who}, {}))}.json"
        written[key] = datetime.fromisoformat(at)

    entry("r-before", "zero", "2026-11-30T10:00:00+00:00")
    entry("r-after", "first", "2026-11-30T12:00:01+00:00")
    for i in range(explain.MAX_ENTRIES):
        entry(f"r-later-{i}", f"later {i}", "2026-11-30T12:00:05+00:00")
    listing = explain.s3io.list_keys  # (moto stamps every object now: LastModified as S3 would have it, from "written")
    monkeypatch.setattr(
        explain.s3io, "list_keys", lambda *a: [o | {"LastModified": written[o["Key"]]} for o in listing(*a)]
    )
    now = keys.key_parts("hi/d1/x", {"who": "first"}, {})
    doc = {"run_id": "r-now", "calls": [{
        "call": "call-hi", "task": "hi", "parts": now, "read": True, "outcome": "ran", "looked_up": "2026-11-30T12:00:00+00:00",
    }]}
    aws.client("s3").put_object(Bucket="runs", Key="runs/n/results/r-now/call_cache.json", Body=json.dumps(doc).encode())
    lines = explain.explain("runs", "s3://runs/runs/n/results/r-now/", "hi")
    assert lines[1].startswith("closest earlier entry: run r-before, call call-hi")
    assert lines[2:] == ['  input who: "zero" -> "first"']


WRITTEN_WDL = """
version 1.1
workflow written {
  input {
    Array[String] names
    String tag  # (each run its own: the workflow as a whole is never reused)
  }
  File listed = write_lines(names)
  call count_lines { input: listing = write_lines(names) }
  output {
    File listing = listed
    String first = read_lines(listed)[0]
    Int lines = count_lines.lines
    String tagged = tag
  }
}
task count_lines {
  input { File listing }
  command <<< wc -l < "~{listing}" > lines >>>
  output { Int lines = read_int("lines") }
}
"""


def test_a_file_written_at_the_workflow_level_runs_and_its_call_is_reused_by_content(bucket, tmp_path):
    """miniwdl asks the call cache for a workflow's write_lines/write_json/... file under a key of
    its own (``write_/<digest>``, two parts, not a call's three): the S3 cache let the run fail
    ("not enough values to unpack") whenever it was on, which is by default. Such a file needs no
    entry: a call taking it is keyed by its content, so a rerun still reuses the call."""
    aws.client("s3").put_object(Bucket="runs", Key="runs/w/workflow.wdl", Body=WRITTEN_WDL.encode())

    def drive_written(run_id):
        return drive_workflow(tmp_path, run_id, {"written.names": ["ann", "bo"], "written.tag": run_id}, wdl="runs/w/workflow.wdl")

    def outputs(run_id):
        body = aws.client("s3").get_object(Bucket="runs", Key=f"runs/w/results/{run_id}/outputs.json")["Body"].read()
        return json.loads(body)["outputs"]

    assert drive_written("w-1") == 0
    first = outputs("w-1")
    assert (first["written.first"], first["written.lines"]) == ("ann", 2)
    assert read_uri(first["written.listing"]) == b"ann\nbo\n"
    assert not [k for k in keys_under("cache/") if "write_" in k]  # (no entry of its own)
    assert drive_written("w-2") == 0
    body = aws.client("s3").get_object(Bucket="runs", Key="runs/w/results/w-2/call_cache.json")["Body"].read()
    reused = {c["call"]: c["outcome"] for c in json.loads(body)["calls"]}
    assert reused.get("call-count_lines") == "reused", reused
    assert outputs("w-2")["written.lines"] == 2


SCATTER = """
version 1.1
workflow fan {
  scatter (i in range(4)) {
    call echo { input: i = i }
  }
  output { Array[Int] values = echo.value }
}
task echo {
  input { Int i }
  command <<< echo ~{i} >>>
  output { Int value = read_int(stdout()) }
}
"""


def test_a_scatters_calls_share_their_tasks_digest(bucket, tmp_path, monkeypatch):
    """(the task's source is read once for its digest, not once per call)"""
    aws.client("s3").put_object(Bucket="runs", Key="runs/c/fan.wdl", Body=SCATTER.encode())
    digested = []
    real = keys.result_digest
    monkeypatch.setattr(keys, "result_digest", lambda task: digested.append(task.name) or real(task))
    assert drive_workflow(tmp_path, "fan-1", {}, wdl="runs/c/fan.wdl", options={}) == 0
    assert get("fan-1", "outputs.json")["outputs"]["fan.values"] == [0, 1, 2, 3]
    assert digested == ["echo"]
    # each call has its own entry all the same, keyed on that digest
    entries = [json.loads(read_uri(f"s3://runs/{k}")) for k in keys_under("cache/call/") if k.split("/")[2] == "echo"]
    assert len(entries) == 4 and len({e["parts"]["wdl_digest"] for e in entries}) == 1


class CacheRequests:
    """The S3 requests the run's driver sends about call cache entries (``cache/call/``): each an
    (operation, key or prefix), in order."""

    def __init__(self, deny_listing: bool = False) -> None:
        self.sent: list[tuple[str, str]] = []
        self.deny_listing = deny_listing

    def note(self, model, params, **_):
        where = params.get("Key") or params.get("Prefix") or ""
        if where.startswith("cache/call/"):
            self.sent.append((model.name, where))

    def deny(self, model, params, **_):
        """A listing of entries answered 403, as for a role without s3:ListBucket."""
        if self.deny_listing and str(params.get("query_string", {}).get("prefix", "")).startswith("cache/call/"):
            return type("Http", (), {"status_code": 403})(), {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
        return None

    def of(self, operation: str, under: str = "cache/call/echo/") -> list[str]:
        return [where for name, where in self.sent if name == operation and where.startswith(under)]

    @contextlib.contextmanager
    def watching(self):
        events = aws.client("s3").meta.events
        events.register("before-parameter-build.s3", self.note)
        events.register("before-call.s3.ListObjectsV2", self.deny)
        try:
            yield self
        finally:
            events.unregister("before-parameter-build.s3", self.note)
            events.unregister("before-call.s3.ListObjectsV2", self.deny)


@pytest.fixture
def cache_requests(bucket):
    with CacheRequests().watching() as seen:
        yield seen


#: SCATTER with an input its calls do not take: each run its own, so the workflow as a whole is no hit
TAGGED_SCATTER = SCATTER.replace("workflow fan {", "workflow fan {\n  input { String tag }")


def drive_scatter(tmp_path, run_id):
    """A run of TAGGED_SCATTER; each call's outcome in the cache (ran, reused)."""
    aws.client("s3").put_object(Bucket="runs", Key="runs/c/fan.wdl", Body=TAGGED_SCATTER.encode())
    assert drive_workflow(tmp_path, run_id, {"fan.tag": run_id}, wdl="runs/c/fan.wdl", options={}) == 0
    assert get(run_id, "outputs.json")["outputs"]["fan.values"] == [0, 1, 2, 3]
    return {c["call"]: c["outcome"] for c in get(run_id, "call_cache.json")["calls"] if c["call"] != "."}


def test_a_scatters_calls_miss_by_one_listing_of_their_tasks_entries_not_a_get_each(cache_requests, tmp_path):
    assert set(drive_scatter(tmp_path, "fan-1").values()) == {"ran"}
    # the first call's lookup is a GET; the second lists the task's folder, which answers the rest
    listed = cache_requests.of("ListObjectsV2")
    assert len(listed) == 1 and listed[0].count("/") == 4  # cache/call/echo/<WDL digest>/
    assert len(cache_requests.of("GetObject")) == 1
    assert len(cache_requests.of("PutObject")) == 4
    # the workflow: not looked up (none is kept: keys.KEY_VERSION 3)
    assert cache_requests.of("ListObjectsV2", "cache/call/fan/") == cache_requests.of("GetObject", "cache/call/fan/") == []
    # another run of the same calls lists the folder again, finds the four entries and reads each
    cache_requests.sent.clear()
    assert set(drive_scatter(tmp_path, "fan-2").values()) == {"reused"}
    assert len(cache_requests.of("ListObjectsV2")) == 1
    assert sorted(cache_requests.of("GetObject")) == sorted(k for k in keys_under("cache/call/echo/"))


def test_calls_are_looked_up_one_by_one_where_their_folder_cannot_be_listed(bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(s3cache.KnownEntries, "MAX_AGE_SECONDS", 0.0)  # (what cannot be listed is not tried again)
    with CacheRequests(deny_listing=True).watching() as seen:
        assert set(drive_scatter(tmp_path, "fan-1").values()) == {"ran"}
        assert len(seen.of("ListObjectsV2")) == 1 and len(seen.of("GetObject")) == 4  # (each miss asked for)
    with CacheRequests(deny_listing=True).watching() as seen:
        assert set(drive_scatter(tmp_path, "fan-2").values()) == {"reused"}
        assert len(seen.of("ListObjectsV2")) == 1 and len(seen.of("GetObject")) == 4
    # a folder of more entries than the pages listed at most: the same, from its last page listed
    monkeypatch.setattr(s3cache.KnownEntries, "PAGE_SIZE", 2)
    monkeypatch.setattr(s3cache.KnownEntries, "MAX_PAGES", 1)
    with CacheRequests().watching() as seen:
        assert set(drive_scatter(tmp_path, "fan-3").values()) == {"reused"}
    assert len(seen.of("ListObjectsV2")) == 1 and len(seen.of("GetObject")) == 4


TWICE = """
version 1.1
workflow twice {
  scatter (i in [1, 2]) {
    call echo { input: i = i }
  }
  call echo as again { input: i = echo.value[0] }
  output { Int value = again.value }
}
task echo {
  input { Int i }
  command <<< echo ~{i} >>>
  output { Int value = read_int(stdout()) }
}
"""


def test_a_call_reuses_the_entry_an_earlier_call_of_its_run_wrote_after_the_folder_was_listed(cache_requests, tmp_path):
    """(the scatter's two calls look up: a GET, then the listing; both write their entries; the
    last call has the first one's key, which the listing does not hold)"""
    aws.client("s3").put_object(Bucket="runs", Key="runs/c/twice.wdl", Body=TWICE.encode())
    assert drive_workflow(tmp_path, "twice-1", {}, wdl="runs/c/twice.wdl", options={}) == 0
    outcomes = {c["call"]: c["outcome"] for c in get("twice-1", "call_cache.json")["calls"]}
    assert sorted(outcomes.items()) == [("call-again", "reused"), ("call-echo-0-1", "ran"), ("call-echo-1-2", "ran")], outcomes
    assert len(cache_requests.of("ListObjectsV2")) == 1 and len(cache_requests.of("GetObject")) == 2


def test_a_folders_listing_answers_for_a_while_then_the_folder_is_listed_again(bucket, monkeypatch):
    """An entry another driver writes after the listing (a run of the same workflow beside this
    one) is not seen until the listing is older than MAX_AGE_SECONDS; then it is."""
    import logging

    known = s3cache.KnownEntries()
    key, logger = "cache/call/echo/d1/k1.json", logging.getLogger("test")
    with CacheRequests().watching() as seen:
        assert not known.absent("runs", key, logger)  # (the folder's first lookup: a GET)
        assert known.absent("runs", key, logger)  # (its second: listed, not there)
        aws.client("s3").put_object(Bucket="runs", Key=key, Body=b"{}")  # (another driver's entry)
        assert known.absent("runs", key, logger)  # (the listing still answers)
        assert len(seen.of("ListObjectsV2", "cache/call/echo/d1/")) == 1
        monkeypatch.setattr(s3cache.KnownEntries, "MAX_AGE_SECONDS", 0.0)
        assert not known.absent("runs", key, logger)
        assert len(seen.of("ListObjectsV2", "cache/call/echo/d1/")) == 2


DEFAULTED = WDL.replace("    File reference\n", '    File reference = "s3://runs/data/ref.txt"\n', 1)


def run_again_after_the_reference_changed(tmp_path, folder, wdl):
    """``wdl`` (which names s3://runs/data/ref.txt itself) run as ``<folder>-before``, the object
    replaced (6 words become 7), and run again as ``<folder>-after``: the second run's outputs."""
    aws.client("s3").put_object(Bucket="runs", Key=f"runs/{folder}/workflow.wdl", Body=wdl.encode())
    assert drive_workflow(tmp_path, f"{folder}-before", {"chain.name": "ann"}, wdl=f"runs/{folder}/workflow.wdl") == 0
    aws.client("s3").put_object(Bucket="runs", Key="data/ref.txt", Body=b"one two three four")
    assert drive_workflow(tmp_path, f"{folder}-after", {"chain.name": "ann"}, wdl=f"runs/{folder}/workflow.wdl") == 0
    return json.loads(read_uri(f"s3://runs/runs/{folder}/results/{folder}-after/outputs.json"))["outputs"]


def test_an_s3_input_miniwdl_downloads_itself_is_keyed_by_its_etag(bucket, tmp_path):
    """An input's default (or a URI in a call's inputs) is not staged: miniwdl downloads it, and
    keyed its calls by the URI alone, so a call whose object was replaced since reused the old
    object's result. It is keyed by the object's ETag, as a staged input is."""
    outputs = run_again_after_the_reference_changed(tmp_path, "d", DEFAULTED)
    assert outputs["chain.words"] == 7  # (not the 6 of the object it replaced)
    assert drive_workflow(tmp_path, "d-again", {"chain.name": "ann"}, wdl="runs/d/workflow.wdl") == 0
    attempts = json.loads(read_uri("s3://runs/runs/d/results/d-again/cost.json"))["attempts"]
    assert [a["call"] for a in attempts if a["call"] != "driver"] == []  # (the same object: every call reused)


def test_an_s3_uri_is_named_by_its_etag_or_listing_and_an_unreadable_one_never_matches(bucket, tmp_path):
    from miniwdl_fargate import staging

    ids = keys.Identities(str(tmp_path / "cache"))
    etag = aws.client("s3").head_object(Bucket="runs", Key="data/ref.txt")["ETag"].strip('"')
    assert ids.of("s3://runs/data/ref.txt") == f"s3://runs/data/ref.txt#etag={etag}"
    digest = staging.listing_digest(staging.directory_listing("runs", "data/"))
    assert ids.of("s3://runs/data", directory=True) == f"s3://runs/data#etag={digest}"  # (as staging names it)
    assert ids.of("s3://runs/data/gone.txt") == "s3://runs/data/gone.txt#unreadable"


LITERAL = WDL.replace("    File reference\n", "", 1).replace(
    "  call count { input: made = make.out, reference = reference }",
    '  File reference = "s3://runs/data/ref.txt"\n  call count { input: made = make.out, reference = reference }', 1,
)


def test_a_workflow_naming_an_s3_object_in_its_body_reads_it_anew_once_replaced(bucket, tmp_path):
    """A reference named in the workflow's body (not an input): miniwdl keys the whole workflow by
    its inputs and its source, the URI's text; after the object was replaced a run reused the
    whole workflow's old outputs. A workflow has no entry: the call reading it is keyed by its ETag."""
    outputs = run_again_after_the_reference_changed(tmp_path, "l", LITERAL)
    assert outputs["chain.words"] == 7  # (not the 6 of the object it replaced)
    assert drive_workflow(tmp_path, "l-again", {"chain.name": "ann"}, wdl="runs/l/workflow.wdl") == 0
    again = json.loads(read_uri("s3://runs/runs/l/results/l-again/outputs.json"))["outputs"]
    assert again["chain.words"] == 7


TOOLS_WDL = """
version development
workflow tools {
  input { String extra }
  call make
  call use { input: tool = make.tool, kit = make.kit, empty = make.empty, extra = extra }
  output { String said = use.said }
}
task make {
  command <<<
    printf '#!/bin/sh\\necho tool\\n' > tool.sh && chmod +x tool.sh
    mkdir -p kit/bin kit/logs kit/data/empty empty
    printf '#!/bin/sh\\necho kit\\n' > kit/bin/run.sh && chmod +x kit/bin/run.sh
    echo data > kit/data/d.txt
  >>>
  output {
    File tool = "tool.sh"
    Directory kit = "kit"
    Directory empty = "empty"
  }
}
task use {
  input { File tool  Directory kit  Directory empty  String extra }
  command <<<
    set -e
    "~{tool}" >&2; "~{kit}/bin/run.sh" >&2
    [ -d "~{kit}/logs" ] && [ -d "~{kit}/data/empty" ] && [ -d "~{empty}" ] && echo "~{extra}"
  >>>
  output { String said = read_string(stdout()) }
}
"""


def test_a_reused_call_gives_its_outputs_as_the_task_made_them_executables_and_empty_folders_too(bucket, tmp_path):
    """A call taken from the cache gave its executable outputs read-only without their execute
    bits (a later call running `~{tool}` failed, exit 126), and an empty Directory output, or an
    empty folder inside one, not at all (the next call's input was not found)."""
    aws.client("s3").put_object(Bucket="runs", Key="runs/t/workflow.wdl", Body=TOOLS_WDL.encode())

    def run(run_id, extra):
        return drive_workflow(tmp_path, run_id, {"tools.extra": extra}, wdl="runs/t/workflow.wdl", options={})

    assert run("t-1", "first") == 0
    shutil.rmtree(tmp_path / "efs" / "cache")  # (fetched back from S3, as on a new file system)
    assert run("t-2", "second") == 0
    attempts = json.loads(aws.client("s3").get_object(Bucket="runs", Key="runs/t/results/t-2/cost.json")["Body"].read())["attempts"]
    assert sorted(a["call"] for a in attempts) == ["call-use"]  # (make: reused)
    outputs = json.loads(aws.client("s3").get_object(Bucket="runs", Key="runs/t/results/t-2/outputs.json")["Body"].read())
    assert outputs["outputs"]["tools.said"] == "second"


def test_an_input_the_stack_may_not_decrypt_fails_the_run_at_staging_naming_what_to_change(bucket, tmp_path, monkeypatch):
    """An input encrypted with a KMS key the stack may not use passes the submit step (HeadObject
    needs no key) and was left, at staging, to a download that failed later in other words; the
    run now fails at staging, naming the parameter that gives the key (S3's AccessDenied names
    kms:Decrypt)."""
    from miniwdl_fargate import s3io

    message = "User: arn:aws:sts::123456789012:assumed-role/driver is not authorized to perform: kms:Decrypt"

    real = s3io.Transfers.download

    def refused(self, objects):
        objects = list(objects)
        if any(key == "data/ref.txt" for _bucket, key, *_ in objects):
            raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied", "Message": message}}, "GetObject")
        return real(self, objects)

    monkeypatch.setattr(s3io.Transfers, "download", refused)
    assert drive(tmp_path, "kms-1") == 1
    error = get("kms-1", "error.json")
    assert error["error"] == "InputUnreadable", error
    assert error["message"] == ("input s3://runs/data/ref.txt cannot be read: it is encrypted with a KMS key the stack may not use: "
                                f"add the key's ARN to the stack's ReadableKmsKeyArns ({message})"), error
    assert "traceback" not in error


def test_an_input_refused_for_its_bucket_names_readable_s3_arns_and_a_missing_one_is_left_to_miniwdl():
    from miniwdl_fargate import staging

    denied = botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "HeadObject")
    said = str(staging.unreadable("s3://other/x.txt", denied))
    assert said == ("input s3://other/x.txt cannot be read: the stack may not read it: add its bucket to the stack's ReadableS3Arns "
                    "(arn:aws:s3:::BUCKET and arn:aws:s3:::BUCKET/*) (Access Denied)")
    missing = botocore.exceptions.ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")
    assert staging.unreadable("s3://other/x.txt", missing) is None



def test_what_every_task_runs_with_is_in_the_key(bucket, tmp_path, monkeypatch):
    """[task_runtime] env, command_preamble and command_shell change what every task makes, and
    were in no key: a run with another env reused results made with the first."""
    assert drive(tmp_path, "env-1") == 0
    monkeypatch.setenv("MINIWDL__TASK_RUNTIME__ENV", '{"LC_ALL": "C"}')
    assert drive(tmp_path, "env-2") == 0
    assert ran("env-2") == ran("env-1") == ["call-count", "call-make", "call-say"]  # (none reused)
    assert drive(tmp_path, "env-3") == 0
    assert ran("env-3") == []  # (the same env again: all reused)
    entries = [json.loads(aws.client("s3").get_object(Bucket="runs", Key=k)["Body"].read()) for k in keys_under("cache/call/say/")]
    assert sorted(str(e["parts"]["defaults"].get("[task_runtime] env")) for e in entries) == ["None", "{'LC_ALL': 'C'}"]
    assert {e["parts"]["version"] for e in entries} == {keys.KEY_VERSION} == {3}


MANIFEST_WDL = """
version 1.1
workflow chain {
  input { File manifest }
  Array[File] refs = read_lines(manifest)
  scatter (r in refs) { call count { input: reference = r } }
  output { Array[Int] words = count.words }
}
task count {
  input { File reference }
  command <<< wc -w < "~{reference}" > words >>>
  output { Int words = read_int("words") }
}
"""


def test_an_object_a_manifest_names_changed_is_read_anew(bucket, tmp_path):
    """A sample sheet's lines name the objects the calls read: the workflow's key (its inputs,
    its s3:// literals) named none of them, so the whole workflow was reused with the old
    object's result. A workflow has no entry: each call is looked up by what it reads."""
    s3 = aws.client("s3")
    s3.put_object(Bucket="runs", Key="data/manifest.txt", Body=b"s3://runs/data/ref.txt\n")
    s3.put_object(Bucket="runs", Key="runs/m/workflow.wdl", Body=MANIFEST_WDL.encode())
    inputs = {"chain.manifest": "s3://runs/data/manifest.txt"}
    assert drive_workflow(tmp_path, "m-before", inputs, wdl="runs/m/workflow.wdl") == 0
    s3.put_object(Bucket="runs", Key="data/ref.txt", Body=b"one two three four five")
    assert drive_workflow(tmp_path, "m-after", inputs, wdl="runs/m/workflow.wdl") == 0
    assert json.loads(read_uri("s3://runs/runs/m/results/m-after/outputs.json"))["outputs"]["chain.words"] == [5]


NAMED_WDL = """
version 1.1
workflow chain {
  input { String name }
  call make { input: name = name }
  call use { input: f = make.out }
  output { String seen = use.seen }
}
task make {
  input { String name }
  command <<< echo same > "~{name}.txt" >>>
  output { File out = "~{name}.txt" }
}
task use {
  input { File f }
  String sample = basename(f, ".txt")
  command <<< echo "sample ~{sample}" >>>
  output { String seen = sample }
}
"""


def test_a_file_of_the_same_content_under_another_name_is_another_input(bucket, tmp_path):
    """Two samples' files of equal content (empty, a header alone): a call seeing the file's name
    (basename(f)) was reused with the other sample's name in its results."""
    aws.client("s3").put_object(Bucket="runs", Key="runs/n/workflow.wdl", Body=NAMED_WDL.encode())
    for who in ("ann", "bob"):
        assert drive_workflow(tmp_path, f"n-{who}", {"chain.name": who}, wdl="runs/n/workflow.wdl") == 0
    assert json.loads(read_uri("s3://runs/runs/n/results/n-bob/outputs.json"))["outputs"]["chain.seen"] == "bob"


TWO_REPORTS_WDL = """
version 1.1
workflow chain {
  input { String name }
  call make { input: name = name }
  output { File a = make.a  File b = make.b }
}
task make {
  input { String name }
  command <<< mkdir -p x y; echo "a ~{name}" > x/report.txt; echo "b ~{name}" > y/report.txt >>>
  output { File a = "x/report.txt"  File b = "y/report.txt" }
}
"""


def test_a_run_laying_its_outputs_by_their_paths_neither_reuses_nor_keeps_calls(bucket, tmp_path):
    """`[file_io] use_relative_output_paths` lays out/ by each output's path in its work directory,
    which a hit's fetched files do not keep: a rerun failed, "Output filename collision"."""
    s3 = aws.client("s3")
    s3.put_object(Bucket="runs", Key="runs/r/workflow.wdl", Body=TWO_REPORTS_WDL.encode())
    s3.put_object(Bucket="runs", Key="runs/r/miniwdl.cfg", Body=b"[file_io]\nuse_relative_output_paths = true\n")
    for run_id in ("r-1", "r-2"):
        assert drive_workflow(tmp_path, run_id, {"chain.name": "ann"}, wdl="runs/r/workflow.wdl") == 0, run_id
    outputs = json.loads(read_uri("s3://runs/runs/r/results/r-2/outputs.json"))["outputs"]
    assert [read_uri(outputs[k]) for k in ("chain.a", "chain.b")] == [b"a ann\n", b"b ann\n"]
    assert keys_under("cache/call/make/") == []
