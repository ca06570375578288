"""What users touch, through the whole local pipeline: the run report next to the outputs, the
call cache across runs, and a task killed for running out of memory retried with more."""

import hashlib
import json
import re
import shutil
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.local_ecs import tasks_of_run
from test_pipeline import EXAMPLE, REPO, read, run_through_bucket

from miniwdl_fargate import attempts
from miniwdl_fargate.local.cli import seed

SVG = "{http://www.w3.org/2000/svg}"

OOM_WDL = """
version 1.1
workflow hungry {
  call eat
  output { String said = eat.said }
}
task eat {
  command <<<
    # hold about 700 MiB for two seconds: more than the 512 MiB asked for
    python3 -c 'import time; food = b"x" * (700 << 20); time.sleep(2)'
    echo full
  >>>
  output { String said = read_string(stdout()) }
  runtime { docker: "ubuntu:22.04" cpu: 0.25 memory: "512 MiB" }
}
"""


def attempts_in(svg_text):
    root = ET.fromstring(svg_text)
    return [
        (g.get("data-call"), int(g.get("data-attempt")), g.get("data-outcome"))
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "attempt"
    ]


def hello_inputs(tmp_path, *names):
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"hello.names": list(names), "hello.reference": "s3://example-data/hello/reference.txt"}))
    return inputs


def test_the_example_run_writes_its_report_next_to_the_outputs(stack, s3, tmp_path):
    seed([str(REPO / "examples" / "s3")])
    token = uuid.uuid4().hex[:6]  # inputs no other test (or earlier session) has cached
    result = run_through_bucket(stack, EXAMPLE / "workflow.wdl", hello_inputs(tmp_path, f"A {token}", f"B {token}"), "report")
    assert result.status == "SUCCEEDED", result.document
    assert result.document["report"] == result.results + "report.html"
    assert result.document["cost"] == result.results + "cost.json"
    svg = read(s3, result.results + "timeline.svg").decode()
    bars = attempts_in(svg)
    # the driver's own task first (local ECS reports its size, as ECS does) ...
    assert bars[0][0] == "driver", bars
    bars = bars[1:]
    # ... then one bar per WDL task attempt: two greetings and the gather, each run once, all succeeded
    assert sorted(call.split("-")[1] for call, _attempt, _outcome in bars) == ["gather", "greet", "greet"]
    assert {(attempt, outcome) for _call, attempt, outcome in bars} == {(1, "succeeded")}
    assert len(tasks_of_run(stack, result.run_id, only="wdl")) == 3
    page = read(s3, result.results + "report.html").decode()
    assert "<svg" in page and "call-gather" in page
    cost = json.loads(read(s3, result.results + "cost.json"))
    # Fargate prices, per second with a one-minute minimum: 2 x (1 vCPU, 2 GiB) + (2 vCPU, 4 GiB)
    tasks = [a for a in cost["attempts"] if a["call"] != "driver"]
    assert sorted((a["vcpu"], a["memory_gib"], a["billed_seconds"]) for a in tasks) == [
        (1.0, 2.0, 60.0), (1.0, 2.0, 60.0), (2.0, 4.0, 60.0),
    ]
    # ... and each task's public IPv4 address (the stack's tasks get one), 0.005 USD an hour
    expected = 60 * (4 * 0.04048 + 8 * 0.004445 + 3 * 0.005) / 3600
    assert abs(sum(a["usd"] for a in tasks) - expected) < 1e-5
    assert all(a["public_ipv4"] for a in tasks)
    # the driver's own task is a row too: its size from ECS, its public IPv4 address priced
    driver = [a for a in cost["attempts"] if a["call"] == "driver"]
    assert len(driver) == 1, cost["attempts"]
    assert (driver[0]["vcpu"], driver[0]["memory_gib"], driver[0]["capacity"]) == (1.0, 2.0, "FARGATE")
    assert driver[0]["public_ipv4"] and driver[0]["public_ipv4_usd"] > 0
    assert abs(cost["public_ipv4_usd"] - sum(a["public_ipv4_usd"] for a in cost["attempts"])) < 1e-5
    # outputs.json says what exactly ran: the workflow by digest, each task's image, the driver's versions
    said = result.document["provenance"]
    assert said["workflow"]["wdl_sha256"] == hashlib.sha256((EXAMPLE / "workflow.wdl").read_bytes()).hexdigest()
    assert said["workflow"]["uri"].startswith(result.results + "source/")
    assert len(said["workflow"]["bundle_sha256"]) == 64 and said["workflow"]["bundle_files"] >= 1
    assert sorted(t["call"].split("-")[1] for t in said["tasks"]) == ["gather", "greet", "greet"]
    assert {(t["image"], t["image_uri"]) for t in said["tasks"]} == {("ubuntu:22.04", "ubuntu:22.04")}
    assert all("image_digest" in t for t in said["tasks"])
    assert set(said["driver"]) == {"miniwdl_fargate", "miniwdl"}


def kept_example(tmp_path):
    """The example's workflow in a bundle whose miniwdl.cfg keeps its runs' directories on EFS:
    the call cache on EFS points at files in them (a successful run's directory is removed at its
    end otherwise, and the hits its entries could give with it)."""
    bundle = tmp_path / "kept"
    shutil.copytree(EXAMPLE, bundle)
    (bundle / "miniwdl.cfg").write_text("[aws_fargate]\nkeep_run_dirs = true\n")
    return bundle / "workflow.wdl"


@pytest.mark.long
def test_a_rerun_reuses_the_call_cache(stack, s3, tmp_path):
    seed([str(REPO / "examples" / "s3")])
    token = uuid.uuid4().hex[:6]
    wdl = kept_example(tmp_path)
    first = run_through_bucket(stack, wdl, hello_inputs(tmp_path, f"C {token}", f"D {token}"), "cache-1")
    assert first.status == "SUCCEEDED", first.document
    assert len(tasks_of_run(stack, first.run_id, only="wdl")) == 3

    # another run, the same inputs: nothing is launched, the outputs are the same
    again = run_through_bucket(stack, wdl, hello_inputs(tmp_path, f"C {token}", f"D {token}"), "cache-2")
    assert again.status == "SUCCEEDED", again.document
    assert again.run_id != first.run_id
    assert tasks_of_run(stack, again.run_id, only="wdl") == []
    for name in ("hello.greetings", "hello.summary"):
        one, two = first.document["outputs"][name], again.document["outputs"][name]
        assert [read(s3, u) for u in (one if isinstance(one, list) else [one])] == [
            read(s3, u) for u in (two if isinstance(two, list) else [two])
        ]
    assert again.document["outputs"]["hello.reference_words"] == 9
    assert json.loads(read(s3, again.results + "cost.json"))["call_cache_hits"] == 3  # each call (a workflow has no entry)

    # one more name: only its greeting and the gather run; the other greetings come from the cache
    more = run_through_bucket(
        stack, wdl, hello_inputs(tmp_path, f"C {token}", f"D {token}", f"E {token}"), "cache-3"
    )
    assert more.status == "SUCCEEDED", more.document
    launched = tasks_of_run(stack, more.run_id, only="wdl")
    assert len(launched) == 2
    assert json.loads(read(s3, more.results + "cost.json"))["call_cache_hits"] == 2


SHARED_FILE_WDL = """
version 1.1
struct Twins {
  File zeta
  File alpha
}
workflow shared {
  input { String token }
  call write { input: token = token }
  output {
    File one = write.a
    Array[File] both = write.ab
    Map[String, File] named = write.named
    Map[String, File] same = write.same
    Pair[File, File] pair = write.pair
    Twins twins = write.twins
  }
}
task write {
  input { String token }
  command <<< echo "one ~{token}" > a.txt; echo two > b.txt >>>
  output {
    File a = "a.txt"
    Array[File] ab = ["a.txt", "b.txt", "a.txt"]
    Map[String, File] named = {"first": "a.txt", "second": "b.txt"}
    Map[String, File] same = {"zeta": "a.txt", "alpha": "a.txt"}
    Pair[File, File] pair = ("a.txt", "a.txt")
    Twins twins = Twins { zeta: "a.txt", alpha: "a.txt" }
  }
}
"""


def test_a_call_cache_hit_publishes_each_output_where_a_run_of_the_call_does(stack, s3, tmp_path):
    """One file the value of several outputs (and twice of one): a run that took the call from
    the cache publishes it under each output's own name, as the run that ran the call did
    (out/one/a.txt, out/both/0/a.txt, out/both/2/a.txt, out/named/first/a.txt), not once."""
    wdl = tmp_path / "shared.wdl"
    wdl.write_text(SHARED_FILE_WDL)
    inputs = {"shared.token": uuid.uuid4().hex}
    ran = run_through_bucket(stack, wdl, inputs, "shared-1")
    assert ran.status == "SUCCEEDED", ran.document
    cached = run_through_bucket(stack, wdl, inputs, "shared-2")
    assert cached.status == "SUCCEEDED", cached.document
    assert json.loads(read(s3, cached.results + "cost.json"))["call_cache_hits"] == 1

    def layout(result):
        outputs = result.document["outputs"]
        return json.loads(json.dumps(outputs).replace(result.results, "RESULTS/"))

    assert layout(ran) == {
        "shared.one": "RESULTS/out/one/a.txt",
        "shared.both": ["RESULTS/out/both/0/a.txt", "RESULTS/out/both/1/b.txt", "RESULTS/out/both/2/a.txt"],
        "shared.named": {"first": "RESULTS/out/named/first/a.txt", "second": "RESULTS/out/named/second/b.txt"},
        "shared.same": {"zeta": "RESULTS/out/same/zeta/a.txt", "alpha": "RESULTS/out/same/alpha/a.txt"},
        "shared.pair": {"left": "RESULTS/out/pair/left/a.txt", "right": "RESULTS/out/pair/right/a.txt"},
        "shared.twins": {"zeta": "RESULTS/out/twins/zeta/a.txt", "alpha": "RESULTS/out/twins/alpha/a.txt"},
    }
    assert layout(cached) == layout(ran)
    for uri in json.dumps(cached.document["outputs"]).split('"'):
        if uri.startswith("s3://"):
            assert read(s3, uri) == read(s3, uri.replace(cached.results, ran.results))


@pytest.mark.long
def test_the_call_cache_outlives_the_runs_efs_directory_and_explains_a_rerun(stack, s3, tmp_path, local_cli):
    seed([str(REPO / "examples" / "s3")])
    token = uuid.uuid4().hex[:6]
    first = run_through_bucket(stack, EXAMPLE / "workflow.wdl", hello_inputs(tmp_path, f"F {token}", f"G {token}"), "s3cache-1")
    assert first.status == "SUCCEEDED", first.document

    # the driver removed the run's EFS directory once the outputs were in S3; remove the cache's
    # folders on EFS too: the entries and their files are in the bucket, so a rerun still launches nothing
    efs = Path(stack.runtime.efs_root) / stack.outputs["FileSystemId"] / "miniwdl"
    assert not (efs / "runs" / first.run_id).exists()
    for folder in ("call", "files"):
        shutil.rmtree(efs / "cache" / folder, ignore_errors=True)
    again = run_through_bucket(stack, EXAMPLE / "workflow.wdl", hello_inputs(tmp_path, f"F {token}", f"G {token}"), "s3cache-2")
    assert again.status == "SUCCEEDED", again.document
    assert tasks_of_run(stack, again.run_id, only="wdl") == []
    for name in ("hello.greetings", "hello.summary"):
        one, two = first.document["outputs"][name], again.document["outputs"][name]
        assert [read(s3, u) for u in (one if isinstance(one, list) else [one])] == [
            read(s3, u) for u in (two if isinstance(two, list) else [two])
        ]
    assert read(s3, again.document["outputs"]["hello.summary"]).decode() == f"Hello, F {token}!\nHello, G {token}!\n"

    # one name changed: its greeting and the gather run; `cache explain` says why, naming the input
    more = run_through_bucket(stack, EXAMPLE / "workflow.wdl", hello_inputs(tmp_path, f"F {token}", f"H {token}"), "s3cache-3")
    assert more.status == "SUCCEEDED", more.document
    assert len(tasks_of_run(stack, more.run_id, only="wdl")) == 2
    def explain(call):
        proc = local_cli("cache", "explain", more.run_id, call, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    said = explain("call-greet-1")  # (miniwdl's directory: call-greet-1-H_<token>)
    assert said[0].startswith("call-greet-1-H") and said[0].endswith(" ran (task greet)")
    assert said[1].startswith("closest earlier entry: run ")
    assert len(said) == 3 and re.fullmatch(rf'  input name: "[^"]+" -> "H {token}"', said[2]), said
    reused, = explain("call-greet-0")
    assert re.fullmatch(rf"call-greet-0-\S+ was reused from the call cache: its results are run {first.run_id}'s, call call-greet-0-\S+", reused)
    page = read(s3, more.results + "report.html").decode()
    assert "Reused from the call cache" in page and first.run_id in page


def test_a_task_out_of_memory_is_retried_with_twice_the_memory(stack, s3, tmp_path):
    wdl = tmp_path / "hungry.wdl"
    wdl.write_text(OOM_WDL.replace("two seconds", f"two seconds ({uuid.uuid4().hex[:6]})"))
    result = run_through_bucket(stack, wdl, {}, "hungry")
    assert result.status == "SUCCEEDED", result.document
    assert result.document["outputs"]["hungry.said"] == "full"
    tasks = sorted(tasks_of_run(stack, result.run_id, only="wdl"), key=lambda t: t["createdAt"])
    # killed at 0.25 vCPU / 512 MiB the way Fargate does it, then run at 1 GiB
    assert [(t["overrides"]["cpu"], t["overrides"]["memory"]) for t in tasks] == [("256", "512"), ("256", "1024")]
    assert tasks[0]["containers"][0]["exitCode"] == 137
    assert tasks[0]["containers"][0]["reason"].startswith("OutOfMemoryError")
    bars = attempts_in(read(s3, result.results + "timeline.svg").decode())
    assert bars == [("driver", 1, attempts.SUCCEEDED), ("call-eat", 1, attempts.OUT_OF_MEMORY), ("call-eat", 2, attempts.SUCCEEDED)]
    log = read(s3, result.results + "workflow.log").decode()
    assert 'task ran out of memory: retrying with more memory :: old_size: "0.25 vCPU / 0.5 GiB", new_size: "0.25 vCPU / 1 GiB"' in log
