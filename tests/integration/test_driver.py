"""The driver against moto S3, with the host_process backend standing in for Fargate."""

import json
import threading

import pytest

from miniwdl_fargate import aws, driver

WDL = """
version 1.1
workflow w {
  input {
    Array[String] names
    File reference
  }
  scatter (n in names) {
    call greet { input: name = n }
  }
  call fail_maybe { input: reference = reference }
  output {
    Array[File] greetings = greet.out
    Int words = fail_maybe.words
  }
}
task greet {
  input { String name }
  command <<< echo "hi ~{name}" > out.txt >>>
  output { File out = "out.txt" }
}
task fail_maybe {
  input { File reference }
  command <<<
    set -e
    if grep -q FAIL "~{reference}"; then echo "reference says FAIL" >&2; exit 3; fi
    wc -w < "~{reference}" > words
  >>>
  output { Int words = read_int("words") }
}
"""


@pytest.fixture(autouse=True)
def no_status_reporter_left():
    """However the run ends, its status reporter's thread ends with the driver's pass (one left
    wrote status.json on, through the clients the next test shares)."""
    before = set(threading.enumerate())
    yield
    left = [t.name for t in set(threading.enumerate()) - before if t.name == "status-reporter"]
    assert left == []


@pytest.fixture
def bucket(moto_aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="runs")
    s3.put_object(Bucket="runs", Key="runs/t/workflow.wdl", Body=WDL.encode())
    return s3


def inputs_and_settings(s3, monkeypatch, tmp_path, run_id):
    """runs/t/inputs.json for WDL (its reference at s3://runs/data/ref.txt), and the settings a
    driver run with the host_process backend standing in for Fargate takes, in tmp_path."""
    s3.put_object(
        Bucket="runs",
        Key="runs/t/inputs.json",
        Body=json.dumps({"w.names": ["a", "b"], "w.reference": "s3://runs/data/ref.txt"}).encode(),
    )
    monkeypatch.setenv("MINIWDL__SCHEDULER__CONTAINER_BACKEND", "host_process")
    monkeypatch.setenv("MINIWDL__SCHEDULER__TASK_CONCURRENCY", "4")
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__RUN_ID", run_id)  # (drive() takes it out of the environment; restored after the test)
    monkeypatch.chdir(tmp_path)


def start(tmp_path, monkeypatch, reference_text):
    s3 = aws.client("s3")
    s3.put_object(Bucket="runs", Key="data/ref.txt", Body=reference_text.encode())
    inputs_and_settings(s3, monkeypatch, tmp_path, "t-1")
    run = driver.DriverRun(
        run_id="t-1",
        workflow="s3://runs/runs/t/workflow.wdl",
        inputs="s3://runs/runs/t/inputs.json",
        results="s3://runs/runs/t/results/t-1/",
        workdir=str(tmp_path / "work"),
    )
    return driver.drive(run)


def get(key):
    return json.loads(aws.client("s3").get_object(Bucket="runs", Key=key)["Body"].read())


def test_success_writes_outputs_json_with_s3_uris(bucket, tmp_path, monkeypatch):
    assert start(tmp_path, monkeypatch, "one two three") == 0
    doc = get("runs/t/results/t-1/outputs.json")
    assert doc["status"] == "SUCCEEDED"
    assert doc["outputs"]["w.words"] == 3
    greetings = doc["outputs"]["w.greetings"]
    assert greetings == [
        "s3://runs/runs/t/results/t-1/out/greetings/0/out.txt",
        "s3://runs/runs/t/results/t-1/out/greetings/1/out.txt",
    ]
    body = aws.client("s3").get_object(Bucket="runs", Key="runs/t/results/t-1/out/greetings/1/out.txt")["Body"].read()
    assert body == b"hi b\n"


def test_the_driver_logs_the_aws_calls_of_its_run(bucket, tmp_path, monkeypatch, caplog):
    """(its share of the account's API rates: the S3 calls of staging, the call cache, the
    uploads and the run's documents)"""
    caplog.set_level("INFO")
    before = aws.calls()  # (this process's: a driver's process runs one run, this one many tests)
    assert start(tmp_path, monkeypatch, "one two three") == 0
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("AWS calls over the run :: ")]
    assert len(said) == 1
    counted = {name: int(n) for name, n in (part.split(": ") for part in said[0].split(" :: ", 1)[1].split(", "))}
    # the workflow, the inputs, the reference, the call cache's lookups; the outputs, outputs.json, status.json
    assert counted["s3.GetObject"] - before.get("s3.GetObject", 0) >= 3
    assert counted["s3.PutObject"] - before.get("s3.PutObject", 0) >= 3


def test_failure_writes_error_json_naming_the_task_and_its_stderr(bucket, tmp_path, monkeypatch):
    assert start(tmp_path, monkeypatch, "FAIL") == 1
    doc = get("runs/t/results/t-1/error.json")
    assert doc["status"] == "FAILED"
    assert doc["failed_task"]["task"] == "call-fail_maybe"
    assert doc["failed_task"]["exit_status"] == 3
    assert "reference says FAIL" in doc["failed_task"]["stderr_tail"]
    assert doc["message"] == "call-fail_maybe failed with exit status 3"


@pytest.mark.parametrize(
    "cfg, problem",
    [
        ("[call_cache\nget = true\n", "File contains no section headers. file: 's3://runs/runs/t/miniwdl.cfg', line: 1 '[call_cache\\n'"),
        ("[task_runtime]\ndefaults = {\"cpu\": 1}\ndefaults = {}\n",
         "While reading from 's3://runs/runs/t/miniwdl.cfg' [line 3]: option 'defaults' in section 'task_runtime' already exists"),
    ],
)
def test_a_broken_miniwdl_cfg_in_the_bundle_fails_the_run_naming_the_file(bucket, tmp_path, monkeypatch, cfg, problem):
    bucket.put_object(Bucket="runs", Key="runs/t/miniwdl.cfg", Body=cfg.encode())
    assert start(tmp_path, monkeypatch, "one two three") == 1
    doc = get("runs/t/results/t-1/error.json")
    assert doc["status"] == "FAILED" and doc["error"] == "InvalidConfiguration"
    assert doc["file"] == "s3://runs/runs/t/miniwdl.cfg"
    assert doc["message"] == f"s3://runs/runs/t/miniwdl.cfg: not a valid miniwdl configuration file: {problem}"
    assert "traceback" not in doc


def test_a_setting_the_driver_cannot_read_fails_the_run_saying_which_and_runs_nothing(bucket, tmp_path, monkeypatch):
    # (the stack's own settings reach the driver as MINIWDL__AWS_FARGATE__* variables; the first
    # it reads, before the run's directory is made, once ended the driver's process instead)
    monkeypatch.setenv("MINIWDL__AWS_FARGATE__STATUS_INTERVAL", "often")
    assert start(tmp_path, monkeypatch, "one two three") == 1
    doc = get("runs/t/results/t-1/error.json")
    assert doc["status"] == "FAILED" and doc["error"] == "InvalidSetting" and doc["setting"] == "status_interval"
    assert doc["message"] == (
        "invalid [aws_fargate] status_interval (or MINIWDL__AWS_FARGATE__STATUS_INTERVAL): could not convert string to float: 'often'"
    )
    assert "traceback" not in doc
    assert not (tmp_path / "work").exists()  # nothing ran


def test_a_run_directory_that_cannot_be_made_fails_the_run_with_its_error_json(bucket, tmp_path, monkeypatch):
    (tmp_path / "efs").write_text("a file where the run's folder's parent should be")
    s3 = aws.client("s3")
    s3.put_object(Bucket="runs", Key="data/ref.txt", Body=b"one")
    inputs_and_settings(s3, monkeypatch, tmp_path, "t-1")
    run = driver.DriverRun(
        run_id="t-1", workflow="s3://runs/runs/t/workflow.wdl", inputs="s3://runs/runs/t/inputs.json",
        results="s3://runs/runs/t/results/t-1/", workdir=str(tmp_path / "efs" / "work"),
    )
    assert driver.drive(run) == 2  # (the driver's own failure, as any it cannot name)
    doc = get("runs/t/results/t-1/error.json")
    assert doc["status"] == "FAILED" and doc["error"] in {"NotADirectoryError", "FileExistsError"}, doc
    assert str(tmp_path / "efs") in doc["message"]


def test_inputs_deleted_after_submission_fail_the_run_saying_so(bucket, tmp_path, monkeypatch):
    real = driver.s3io.download_to

    def deleted_first(bucket_, key, path, progress=None):  # deleted between submit and the driver
        if key == "runs/t/inputs.json":
            aws.client("s3").delete_object(Bucket=bucket_, Key=key)
        return real(bucket_, key, path, progress)

    monkeypatch.setattr(driver.s3io, "download_to", deleted_first)
    assert start(tmp_path, monkeypatch, "one two three") == 1
    doc = get("runs/t/results/t-1/error.json")
    assert doc["status"] == "FAILED" and doc["error"] == "SubmittedFileGone"
    assert doc["message"] == "s3://runs/runs/t/inputs.json was deleted after the run was submitted: submit it again"
    assert "traceback" not in doc


# -- every end through one finish ------------------------------------------------------------------


def failing_once(monkeypatch, name):
    """s3io.put_json refuses the first write of ``name`` under the results prefix (S3 down for a moment)."""
    real = driver.s3io.put_json
    refused = []

    def put_json(bucket_, key, doc):
        if key == f"runs/t/results/t-1/{name}" and not refused:
            refused.append(key)
            raise RuntimeError("S3 is down for a moment")
        return real(bucket_, key, doc)

    monkeypatch.setattr(driver.s3io, "put_json", put_json)
    return refused


@pytest.mark.parametrize(
    "cfg, name",
    [(None, "outputs.json"), ("[call_cache\nget = true\n", "error.json")],
    ids=["success", "invalid-config"],
)
def test_an_end_that_cannot_be_written_becomes_the_drivers_own_failure(bucket, tmp_path, monkeypatch, cfg, name):
    if cfg is not None:
        bucket.put_object(Bucket="runs", Key="runs/t/miniwdl.cfg", Body=cfg.encode())
    refused = failing_once(monkeypatch, name)
    assert start(tmp_path, monkeypatch, "one two three") == 2
    assert refused == [f"runs/t/results/t-1/{name}"]
    doc = get("runs/t/results/t-1/error.json")
    assert doc["status"] == "FAILED" and doc["error"] == "RuntimeError"
    assert doc["message"] == "driver error: S3 is down for a moment"
    assert any("S3 is down for a moment" in line for line in doc["traceback"])
    assert doc["report"] == "s3://runs/runs/t/results/t-1/report.html"
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="runs", Prefix="runs/t/results/t-1/")["Contents"]]
    assert "runs/t/results/t-1/outputs.json" not in keys


@pytest.mark.parametrize(
    "reference, cfg, refuse, published",
    [
        ("one two three", None, None, ["succeeded"]),
        ("FAIL", None, None, ["failed"]),
        ("one two three", "[call_cache\nget = true\n", None, []),  # nothing ran: no task figures
        ("one two three", None, "outputs.json", ["succeeded"]),  # once, though the end was made twice
    ],
    ids=["succeeded", "failed", "invalid-config", "unwritable-end"],
)
def test_the_task_metrics_are_published_once_for_a_run_whose_workflow_ran(
    bucket, tmp_path, monkeypatch, reference, cfg, refuse, published
):
    if cfg is not None:
        bucket.put_object(Bucket="runs", Key="runs/t/miniwdl.cfg", Body=cfg.encode())
    if refuse is not None:
        failing_once(monkeypatch, refuse)
    seen = []
    monkeypatch.setattr(driver, "publish_metrics", lambda run, outcome: seen.append((run.run_id, outcome)))
    start(tmp_path, monkeypatch, reference)
    assert seen == [("t-1", outcome) for outcome in published]


