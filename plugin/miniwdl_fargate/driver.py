"""The driver: what the driver Fargate task runs for one run.

1. fetch the workflow bundle (the WDL's S3 folder, less ``results/`` and ``inputs.json``) and the
   inputs JSON onto EFS;
2. ``miniwdl run`` them, with the aws_fargate backend unless configured otherwise;
3. upload the output files under the run's results prefix and write ``outputs.json`` (File and
   Directory values as s3:// URIs), or ``error.json`` naming what failed with its stderr tail.

Exit status: 0 succeeded, 1 the workflow failed, 2 the driver itself failed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass
from typing import Any

import WDL
from WDL import CLI as wdl_cli

from . import runs, s3io, sweep

log = logging.getLogger("miniwdl-fargate.driver")

STDERR_TAIL_LINES = 40


@dataclass
class DriverRun:
    run_id: str
    workflow: str  # s3:// URI of the main WDL
    inputs: str  # s3:// URI of the inputs JSON
    results: str  # s3:// URI prefix ending in /
    workdir: str  # local (EFS) directory for this run

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, workdir: str | None = None) -> "DriverRun":
        env = dict(os.environ if environ is None else environ)
        missing = [k for k in ("RUN_ID", "RUN_WORKFLOW", "RUN_INPUTS", "RUN_RESULTS") if not env.get(k)]
        if missing:
            raise ValueError(f"driver: missing environment variable(s) {', '.join(missing)}")
        results = env["RUN_RESULTS"] if env["RUN_RESULTS"].endswith("/") else env["RUN_RESULTS"] + "/"
        if workdir is None:
            base = env.get("MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT") or os.getcwd()
            workdir = os.path.join(base, "runs", env["RUN_ID"])
        return cls(env["RUN_ID"], env["RUN_WORKFLOW"], env["RUN_INPUTS"], results, workdir)

    @property
    def results_bucket(self) -> str:
        return s3io.split(self.results)[0]

    def results_key(self, name: str) -> str:
        return s3io.split(self.results)[1] + name


def fetch(run: DriverRun) -> tuple[str, str]:
    """Download the workflow bundle and the inputs; return their local paths."""
    bucket, wdl_key = s3io.split(run.workflow)
    source = tempfile.mkdtemp(prefix="source-", dir=run.workdir)
    if "/" in wdl_key:  # the WDL's folder is its bundle (imports, source-relative files)
        folder = wdl_key.rsplit("/", 1)[0] + "/"
        s3io.download_prefix(bucket, folder, source, exclude=lambda rel: not runs.in_bundle(rel))
    else:  # at the top of a bucket: never download the whole bucket
        folder = ""
    wdl_path = os.path.join(source, wdl_key[len(folder) :])
    if not os.path.isfile(wdl_path):
        s3io.download_to(bucket, wdl_key, wdl_path)
    in_bucket, in_key = s3io.split(run.inputs)
    inputs_path = s3io.download_to(in_bucket, in_key, os.path.join(source, ".inputs", "inputs.json"))
    return wdl_path, inputs_path


def miniwdl_run(wdl_path: str, inputs_path: str, run_dir: str) -> tuple[int, dict[str, Any]]:
    """``miniwdl run`` in-process; return (exit status, the JSON miniwdl wrote: outputs or error)."""
    result_file = os.path.join(run_dir, f".result-{os.getpid()}.json")
    argv = ["run", wdl_path, "-i", inputs_path, "--dir", run_dir + "/", "-o", result_file, "--verbose"]
    args = vars(wdl_cli.create_arg_parser().parse_args(argv))
    assert args.pop("command") == "run"
    status = 0
    try:
        wdl_cli.runner(**args)
    except SystemExit as exn:
        status = exn.code if isinstance(exn.code, int) else 2
    try:
        with open(result_file) as infile:
            result = json.load(infile)
    except (OSError, ValueError):
        result = {"error": "DriverError", "message": "miniwdl exited without writing its result"}
        status = status or 2
    if "error" in result and not status:
        status = 1
    return status, result


def upload_outputs(run: DriverRun, wdl_path: str, outputs: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Upload File/Directory outputs; return the outputs with s3:// URIs in their place."""
    doc = WDL.load(wdl_path)
    target: Any = doc.workflow or (doc.tasks[0] if len(doc.tasks) == 1 else None)
    if target is None:
        raise RuntimeError("cannot tell which workflow or task ran")
    env = WDL.values_from_json(outputs, target.effective_outputs, namespace=target.name)
    out_dir = os.path.realpath(os.path.join(run_dir, "out"))
    bucket = run.results_bucket

    def key_for(path: str) -> str:
        real = os.path.realpath(path.rstrip("/"))
        rel = os.path.relpath(path.rstrip("/"), os.path.join(run_dir, "out"))
        if rel.startswith(".."):
            rel = os.path.relpath(real, out_dir)
        if rel.startswith(".."):
            rel = os.path.join("other", os.path.basename(real))
        return run.results_key("out/" + rel)

    def upload(value: WDL.Value.File | WDL.Value.Directory) -> str:
        path = value.value
        key = key_for(path)
        if isinstance(value, WDL.Value.Directory):
            for root, _dirs, files in os.walk(path, followlinks=True):
                for name in files:
                    local = os.path.join(root, name)
                    s3io.upload_file(local, bucket, key + "/" + os.path.relpath(local, path))
            return s3io.uri(bucket, key + "/")
        return s3io.upload_file(path, bucket, key)

    rewritten = WDL.Value.rewrite_env_paths(env, upload)
    return WDL.values_to_json(rewritten, namespace=target.name)


def tail(path: str | None, lines: int = STDERR_TAIL_LINES) -> list[str]:
    if not path or not os.path.isfile(path):
        return []
    with open(path, "rb") as infile:
        infile.seek(0, os.SEEK_END)
        size = infile.tell()
        infile.seek(max(0, size - 64 * 1024))
        text = infile.read().decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]


def describe_error(run: DriverRun, error: dict[str, Any]) -> dict[str, Any]:
    """miniwdl's error JSON plus what a user needs first: which task, its exit status, stderr."""
    doc: dict[str, Any] = {"run_id": run.run_id, "status": "FAILED", **error}
    cause = error.get("cause") if isinstance(error.get("cause"), dict) else error
    failed = {
        k: cause[k]
        for k in (
            "error", "run", "exit_status", "message", "log_group", "log_stream", "log_url", "ecs_task", "capacity",
            "stopCode", "stoppedReason", "container_reason",
        )
        if k in cause
    }
    if "run" in failed:
        failed["task"] = failed.pop("run")
    stderr = tail(cause.get("stderr_file"))
    if stderr:
        failed["stderr_tail"] = stderr
    doc["failed_task"] = failed
    what = failed.get("task") or error.get("workflow") or error.get("task") or "the run"
    if "exit_status" in failed:
        doc["message"] = f"{what} failed with exit status {failed['exit_status']}"
    else:
        doc["message"] = error.get("message") or f"{what} failed: {failed.get('error', error.get('error'))}"
    return doc


def sweep_orphans() -> None:
    """Stop WDL tasks left running by drivers that died (see ``sweep``): a driver's start-up is
    the one moment a crashed predecessor's tasks are sure to be noticed."""
    cluster = os.environ.get("MINIWDL__AWS_FARGATE__CLUSTER")
    if not cluster or os.environ.get("MINIWDL__SCHEDULER__CONTAINER_BACKEND") != "aws_fargate":
        return
    try:
        stopped = sweep.sweep_orphans(cluster)
        if stopped:
            log.warning("stopped %d orphaned task(s) of dead drivers", len(stopped))
    except Exception:  # never let housekeeping fail a run
        log.exception("sweeping orphaned tasks failed")


def drive(run: DriverRun) -> int:
    os.makedirs(run.workdir, exist_ok=True)
    os.chdir(run.workdir)  # s3:// downloads land here, on EFS, visible to every task
    os.environ.setdefault("MINIWDL__SCHEDULER__CONTAINER_BACKEND", "aws_fargate")
    # one thread per scheduled task (miniwdl's model): 1,000 cost about 150 MB of the driver's memory
    os.environ.setdefault("MINIWDL__SCHEDULER__TASK_CONCURRENCY", "1000")
    os.environ["RUN_ID"] = run.run_id
    bucket = run.results_bucket
    sweep_orphans()
    try:
        wdl_path, inputs_path = fetch(run)
        status, result = miniwdl_run(wdl_path, inputs_path, run.workdir)
        run_dir = result.get("dir") or ""
        if run_dir and os.path.isfile(os.path.join(run_dir, "workflow.log")):
            s3io.upload_file(os.path.join(run_dir, "workflow.log"), bucket, run.results_key("workflow.log"))
        if status == 0:
            outputs = upload_outputs(run, wdl_path, result["outputs"], run_dir)
            doc = {"run_id": run.run_id, "status": "SUCCEEDED", "outputs": outputs, "results": run.results}
            where = s3io.put_json(bucket, run.results_key("outputs.json"), doc)
            log.info("run %s succeeded: %s", run.run_id, where)
            return 0
        where = s3io.put_json(bucket, run.results_key("error.json"), describe_error(run, result))
        log.error("run %s failed: %s", run.run_id, where)
        return 1
    except Exception as exn:
        log.exception("driver failed")
        doc = {
            "run_id": run.run_id,
            "status": "FAILED",
            "error": exn.__class__.__name__,
            "message": f"driver error: {exn}",
            "traceback": traceback.format_exc().splitlines(),
        }
        try:
            s3io.put_json(bucket, run.results_key("error.json"), doc)
        except Exception:
            log.exception("could not write error.json")
        return 2


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        run = DriverRun.from_env()
    except ValueError as exn:
        print(str(exn), file=sys.stderr)
        return 2
    return drive(run)
