"""The driver: what the driver Fargate task runs for one run.

1. fetch the workflow bundle (the WDL's S3 folder, less ``results/`` and ``inputs.json``) and the
   inputs JSON onto EFS; stage the s3:// File/Directory inputs into a store on EFS addressed by
   their ETags (``cache``), so the call cache sees the same paths for the same data across runs;
2. ``miniwdl run`` them, with the aws_fargate backend unless configured otherwise, and with
   miniwdl's call cache on EFS (a ``miniwdl.cfg`` in the bundle may change that for one run);
3. upload the output files under the run's results prefix and write ``outputs.json`` (File and
   Directory values as s3:// URIs), or ``error.json`` naming what failed with its stderr tail;
   either way, first the run report (``report.html``, ``timeline.svg``, ``cost.json``).

Told to stop (SIGTERM from ECS: a cancel, a timed-out run, Fargate taking its capacity back) at
any moment of the three, it stops what it is doing and every WDL task of the run, and writes
error.json saying so (``lifecycle``). Meanwhile it keeps the state machine's wait alive with
heartbeats.

Exit status: 0 succeeded, 1 the workflow failed, 2 the driver itself failed, 128 + the signal's
number when it was stopped (143: SIGTERM).
"""

from __future__ import annotations

import concurrent.futures
import configparser
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions
import WDL
from WDL import CLI as wdl_cli

from . import attempts, aws, config, lifecycle, progress, report, runs, s3io, sweep, wdl_target
from . import status as status_doc
from . import outputs as outputs_check
from .lifecycle import DriverStopped, StopSignals

log = logging.getLogger("miniwdl-fargate.driver")

STDERR_TAIL_LINES = 40


@dataclass
class DriverRun:
    run_id: str
    workflow: str  # s3:// URI of the main WDL
    inputs: str  # s3:// URI of the inputs JSON
    results: str  # s3:// URI prefix ending in /
    workdir: str  # local (EFS) directory for this run
    #: shared by the runs of this filesystem: the call cache and the staged s3:// inputs
    #: (empty: neither; miniwdl's own configuration decides about its call cache)
    cache_dir: str = ""
    #: the run's options (runs.RunRecord.options), e.g. {"call_cache": false}
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, workdir: str | None = None) -> "DriverRun":
        env = dict(os.environ if environ is None else environ)
        missing = [k for k in ("RUN_ID", "RUN_WORKFLOW", "RUN_INPUTS", "RUN_RESULTS") if not env.get(k)]
        if missing:
            raise ValueError(f"driver: missing environment variable(s) {', '.join(missing)}")
        results = env["RUN_RESULTS"] if env["RUN_RESULTS"].endswith("/") else env["RUN_RESULTS"] + "/"
        base = env.get("MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT") or os.getcwd()
        if workdir is None:
            workdir = os.path.join(base, "runs", env["RUN_ID"])
        try:
            options = json.loads(env.get("RUN_OPTIONS") or "{}")
        except ValueError as exn:
            raise ValueError(f"driver: RUN_OPTIONS is not JSON: {exn}") from None
        return cls(
            env["RUN_ID"], env["RUN_WORKFLOW"], env["RUN_INPUTS"], results, workdir, os.path.join(base, "cache"),
            options if isinstance(options, dict) else {},
        )

    @property
    def results_bucket(self) -> str:
        return s3io.split(self.results)[0]

    def results_key(self, name: str) -> str:
        return s3io.split(self.results)[1] + name


def fetch(run: DriverRun, progress: s3io.Progress | None = None) -> tuple[str, str]:
    """Download the workflow bundle and the inputs; return their local paths."""
    bucket, wdl_key = s3io.split(run.workflow)
    source = tempfile.mkdtemp(prefix="source-", dir=run.workdir)
    if "/" in wdl_key:  # the WDL's folder is its bundle (imports, source-relative files)
        folder = wdl_key.rsplit("/", 1)[0] + "/"
        s3io.download_prefix(bucket, folder, source, exclude=lambda rel: not runs.in_bundle(rel), progress=progress)
    else:  # at the top of a bucket: never download the whole bucket
        folder = ""
    wdl_path = os.path.join(source, wdl_key[len(folder) :])
    if not os.path.isfile(wdl_path):
        _download_submitted(run.workflow, wdl_path, progress)
    inputs_path = _download_submitted(run.inputs, os.path.join(source, ".inputs", "inputs.json"), progress)
    unescape_json(inputs_path)
    return wdl_path, inputs_path


def unescape_json(path: str) -> None:
    """Rewrite a JSON file with its characters as UTF-8 instead of ``\\u`` escapes. miniwdl
    (1.16) reads a string escaped as a surrogate pair (``"\\ud83d\\ude00"``, how Python's json
    and many tools write an emoji) as two lone surrogates, and the task then fails writing its
    command ("surrogates not allowed"); the same characters written plainly work. A file that is
    not JSON (or holds a lone surrogate, no character at all) is left for miniwdl to report."""
    try:
        with open(path, encoding="utf-8") as infile:
            write_json(path, json.load(infile))
    except ValueError:  # (UnicodeError included: nothing was written)
        return


def write_json(path: str, doc: Any) -> None:
    """A JSON file miniwdl reads as written: UTF-8, no ``\\u`` escapes (``unescape_json``)."""
    data = json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8")  # (before the file is opened)
    with open(path, "wb") as outfile:
        outfile.write(data)


class SubmittedFileGone(FileNotFoundError):
    """The run's WDL or inputs JSON was deleted between its submission and the driver's start."""


def _download_submitted(uri: str, path: str, progress: s3io.Progress | None) -> str:
    bucket, key = s3io.split(uri)
    try:
        return s3io.download_to(bucket, key, path, progress)
    except botocore.exceptions.ClientError as exn:  # download_file reports a missing key as a 404
        if exn.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        raise SubmittedFileGone(f"{uri} was deleted after the run was submitted: submit it again") from None


def release_run_volume() -> None:
    """The run's WDL tasks are over: remove what the aws_fargate backend made for them alone
    (its task definitions and EFS access point)."""
    from .backend.fargate import FargateTaskContainer  # (not every driver test loads the backend)

    FargateTaskContainer.release_run(log)


def miniwdl_run(wdl_path: str, inputs_path: str, run_dir: str, cfg: str | None = None) -> tuple[int, dict[str, Any]]:
    """``miniwdl run`` in-process; return (exit status, the JSON miniwdl wrote: outputs or error)."""
    result_file = os.path.join(run_dir, f".result-{os.getpid()}.json")
    argv = ["run", wdl_path, "-i", inputs_path, "--dir", run_dir + "/", "-o", result_file, "--verbose"]
    if cfg:
        argv += ["--cfg", cfg]
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


# -- the call cache, and the s3:// inputs it can trust -----------------------------------------------
#
# miniwdl keys a call cache entry by the call's inputs as values: an s3:// URI by its text, a
# local file by its path (and trusts an entry while the local files it names are older than it).
# Left to download s3:// inputs into each run's own directory, every run would see new paths
# (no reuse for any task reading them), while a rerun of the whole workflow would be keyed by
# URI text alone and hit even after the object was overwritten. So the driver stages each s3://
# File/Directory input first, into a store on EFS addressed by the object's ETag, and runs
# miniwdl on those paths: the same data is the same path in every run, changed data a new one.
# (miniwdl's own download cache is keyed by URI only, so it stays off.) No flock is needed:
# staging is temp-file-and-rename, and miniwdl's call cache takes flocks only on the run's own
# log file.

CALL_CACHE_DEFAULTS = {"get": "true", "put": "true"}
RUN_CFG = config.RUN_CFG  # in the workflow bundle: this run's miniwdl configuration
STAGING_THREADS = 8


def run_cfg(
    workdir: str, cache_dir: str, bundle_dir: str, options: dict[str, Any] | None = None, bundle_uri: str | None = None
) -> str | None:
    """The run's miniwdl configuration file: the driver's defaults (call cache on, in
    ``cache_dir``; spare copies of inputs at EFS's link limit in ``cache_dir/links``), under the
    operator's file (``MINIWDL_CFG``), under the bundle's own ``miniwdl.cfg``. Environment
    variables (the deployment's) still win over all three, as always in miniwdl. None: no
    defaults and no files, miniwdl as configured. A file miniwdl could not read raises
    config.InvalidConfig naming it (the bundle's by ``bundle_uri``, where the user put it)."""
    merged = configparser.RawConfigParser()  # raw: values reach miniwdl exactly as written
    if cache_dir:
        merged.read_dict({"call_cache": {**CALL_CACHE_DEFAULTS, "dir": os.path.join(cache_dir, "call")}})
        # spare copies of inputs at EFS's hard-link limit (backend.links): shared by the runs, like
        # the staged inputs they are mostly copies of
        merged.read_dict({"aws_fargate": {"link_spares_dir": os.path.join(cache_dir, "links")}})
    sources = [f for f in os.environ.get("MINIWDL_CFG", "").split(":") if f and os.path.isfile(f)][:1]
    bundled = os.path.join(bundle_dir, RUN_CFG)
    if os.path.isfile(bundled):
        sources.append(bundled)
    for source in sources:
        config.check_cfg_file(source, bundle_uri if source == bundled and bundle_uri else source)
        merged.read(source)
        log.info("miniwdl configuration from %s", source)
    if (options or {}).get("call_cache") is False:  # the submitter's say for this run
        merged.read_dict({"call_cache": {"get": "false", "put": "false"}})
    if not merged.sections():
        return None
    path = os.path.join(workdir, RUN_CFG)
    with open(path, "w") as outfile:
        merged.write(outfile)
    return path


def stage_s3_inputs(
    wdl_path: str, inputs_path: str, store: str, progress: s3io.Progress | None = None, counted: s3io.Counted | None = None
) -> str:
    """Download the s3:// File/Directory inputs into ``store`` (``<bucket>/<key>/<etag>/<name>``,
    reused when already there) and return the path of an inputs JSON naming those copies.
    Anything this cannot read (a WDL or inputs miniwdl will reject, an object it cannot see) is
    left as it was, for miniwdl to report in its own words. Every object moves through one
    s3io.Transfers (bounded, parallel); ``progress`` is called as the bytes come (it raises
    DriverStopped to stop the staging), ``counted`` with the objects done and known."""
    try:
        target: Any = wdl_target.find(WDL.load(wdl_path))
        with open(inputs_path) as infile:
            given = json.load(infile)
        env = WDL.values_from_json(given, target.available_inputs, namespace=target.name)
    except Exception as exn:
        log.info("inputs not staged (%s: %s); miniwdl will read them as given", exn.__class__.__name__, exn)
        return inputs_path
    uris: dict[str, bool] = {}  # uri -> is a Directory

    def collect(value: WDL.Value.File | WDL.Value.Directory) -> str:
        if value.value.startswith("s3://"):
            uris[value.value] = isinstance(value, WDL.Value.Directory)
        return value.value

    WDL.Value.rewrite_env_paths(env, collect)
    if not uris:
        return inputs_path
    started = time.monotonic()
    with s3io.Transfers(progress, counted) as transfers, concurrent.futures.ThreadPoolExecutor(STAGING_THREADS) as pool:
        staged = dict(zip(uris, pool.map(lambda u: _stage(u, uris[u], store, transfers), uris), strict=True))
    env = WDL.Value.rewrite_env_paths(env, lambda v: staged.get(v.value) or v.value)
    reused = sum(1 for path in staged.values() if path and getattr(path, "reused", False))
    log.info("staged %d s3:// input(s) in %.1fs (%d already in %s)", len(uris), time.monotonic() - started, reused, store)
    path = os.path.join(os.path.dirname(inputs_path), "inputs.staged.json")
    write_json(path, WDL.values_to_json(env, namespace=target.name))
    return path


class _Staged(str):
    """A staged path that remembers whether it was already in the store."""

    reused = False


def _in_store(store: str, *parts: str) -> _Staged:
    """``store/parts...``, refusing keys that would climb out of it (S3 keys may hold "..")."""
    path = os.path.normpath(os.path.join(store, *parts))
    if not path.startswith(os.path.normpath(store) + os.sep):
        raise s3io.S3URIError(f"refusing to stage outside {store}: {'/'.join(parts)}")
    return _Staged(path)


def _stage(uri: str, directory: bool, store: str, transfers: s3io.Transfers) -> str | None:
    try:
        if transfers.progress is not None:
            transfers.progress(0)  # (told to stop: start no other download)
        return _stage_directory(uri, store, transfers) if directory else _stage_file(uri, store, transfers)
    except DriverStopped:
        raise
    except Exception as exn:  # miniwdl's own download of the URI will report it
        log.warning("cannot stage %s (%s); leaving it to miniwdl", uri, exn)
        return None


def _stage_file(uri: str, store: str, transfers: s3io.Transfers) -> str:
    bucket, key = s3io.split(uri)
    head = aws.client("s3").head_object(Bucket=bucket, Key=key)
    etag = head["ETag"].strip('"')
    path = _in_store(store, bucket, key, etag, os.path.basename(key))
    if os.path.isfile(path) and os.path.getsize(path) == head["ContentLength"]:
        path.reused = True
        return path
    transfers.download([(bucket, key, path, head["ContentLength"], head["ETag"])])
    return path


def _stage_directory(uri: str, store: str, transfers: s3io.Transfers) -> str:
    bucket, prefix = s3io.split(uri)
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    listing = sorted((o["Key"], o["ETag"].strip('"')) for o in s3io.list_keys(bucket, prefix) if not o["Key"].endswith("/"))
    if not listing:
        raise s3io.S3URIError(f"no objects under {uri}")
    digest = hashlib.sha256("\n".join(f"{k} {e}" for k, e in listing).encode()).hexdigest()[:32]
    name = os.path.basename(prefix.rstrip("/")) or bucket
    path = _in_store(store, bucket, prefix.rstrip("/") or "_", digest, name)
    if os.path.isdir(path):
        path.reused = True
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".part.", dir=os.path.dirname(path))
    try:
        s3io.download_prefix(bucket, prefix, staging, transfers=transfers)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        os.rename(staging, path)
    except OSError:  # another run staged it meanwhile: same listing, same content
        shutil.rmtree(staging, ignore_errors=True)
        if not os.path.isdir(path):
            raise
    return path


def upload_outputs(
    run: DriverRun, wdl_path: str, outputs: dict[str, Any], run_dir: str, progress: s3io.Progress | None = None,
    counted: s3io.Counted | None = None,
) -> dict[str, Any]:
    """Upload File/Directory outputs (bounded, in parallel: s3io.Transfers); return the outputs
    with s3:// URIs in their place. ``progress`` is called as the bytes go (it raises
    DriverStopped to stop the upload), ``counted`` with the files done and known."""
    doc = WDL.load(wdl_path)
    target: Any = wdl_target.find(doc)
    if target is None:
        raise RuntimeError("cannot tell which workflow or task ran")
    env = WDL.values_from_json(outputs, target.effective_outputs, namespace=target.name)
    out_dir = os.path.realpath(os.path.join(run_dir, "out"))
    bucket = run.results_bucket
    links = out_links(os.path.join(run_dir, "out"))

    def key_for(path: str) -> str:
        real = os.path.realpath(path.rstrip("/"))
        rel = os.path.relpath(path.rstrip("/"), os.path.join(run_dir, "out"))
        if rel.startswith(".."):
            rel = os.path.relpath(real, out_dir)
        if rel.startswith("..") and real in links:
            # an output taken from the call cache lives in an earlier run's directory; this
            # run's out/ links to it under the output's own name
            rel = links[real]
        if rel.startswith(".."):
            rel = os.path.join("other", os.path.basename(real))
        return run.results_key("out/" + rel)

    # every output is checked before anything is uploaded: a refused run uploads nothing
    roots = output_roots(run)
    real_run_dir = os.path.realpath(run_dir)
    uploads: list[tuple[str, str]] = []  # (local file, key)

    def plan(name: str, value: WDL.Value.File | WDL.Value.Directory) -> str:
        path = value.value
        key = key_for(path)
        if isinstance(value, WDL.Value.Directory):
            files = outputs_check.directory_output(name, path, roots, real_run_dir)
            uploads.extend((local, key + "/" + rel) for local, rel in files)
            return s3io.uri(bucket, key + "/")
        uploads.append((outputs_check.file_output(name, path, roots), key))
        return s3io.uri(bucket, key)

    rewritten = env.map(
        lambda b: WDL.Env.Binding(
            b.name, WDL.Value.rewrite_paths(b.value, lambda v: plan(f"{target.name}.{b.name}", v)), b.info
        )
    )
    with s3io.Transfers(progress, counted) as transfers:
        transfers.upload((local, bucket, key) for local, key in uploads)
    return WDL.values_to_json(rewritten, namespace=target.name)


def output_roots(run: DriverRun) -> list[str]:
    """Where an output may really be (real paths): the runs of this filesystem (this run's own
    directory, and earlier runs' whose outputs the call cache reuses) and the staged inputs."""
    roots = [os.path.dirname(os.path.realpath(run.workdir))]
    if run.cache_dir:
        roots.append(os.path.realpath(run.cache_dir))
    return roots


def out_links(out_dir: str) -> dict[str, str]:
    """What each entry of miniwdl's out/ tree is (its real path) -> where it is under out/."""
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(out_dir):  # (symlinked directories are listed, not entered)
        for name in files + dirs:
            path = os.path.join(root, name)
            found.setdefault(os.path.realpath(path), os.path.relpath(path, out_dir))
    return found


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
            "stopCode", "stoppedReason", "container_reason", "out_of_memory",
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
    if "out_of_memory" in failed:
        doc["message"] = f"{what} ran out of memory (exit status {failed.get('exit_status')}): {failed['out_of_memory']}"
    elif "exit_status" in failed:
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


def publish_metrics(run: DriverRun, outcome: str) -> None:
    """The run's task figures as CloudWatch metrics (Powertools EMF, in the driver's log):
    TasksLaunched (ECS tasks), TaskAttemptsRetried, TasksFailed; dimension: the run's outcome."""
    try:
        from aws_lambda_powertools import Metrics
        from aws_lambda_powertools.metrics import MetricUnit

        done = attempts.LOG.snapshot(run=run.run_id)
        counts, _ = progress.task_counts(done)
        launched = sum(1 for a in done if a.task_arn)
        metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "miniwdl-fargate"), service="driver")
        metrics.add_dimension(name="outcome", value=outcome)
        metrics.add_metric(name="TasksLaunched", unit=MetricUnit.Count, value=launched)
        metrics.add_metric(name="TaskAttemptsRetried", unit=MetricUnit.Count, value=counts.retried)
        metrics.add_metric(name="TasksFailed", unit=MetricUnit.Count, value=counts.failed)
        metrics.flush_metrics()
    except Exception:  # figures are a courtesy: never fail a run over them
        log.exception("could not publish the run's metrics")


def run_report(run: DriverRun, status: str, started: float, run_dir: str = "", cfg: str | None = None) -> dict[str, Any]:
    """Write the run report (report.html, timeline.svg, cost.json) under the results prefix;
    return what outputs.json / error.json say of it. Never fails the run: a report that cannot
    be made is logged and left out."""
    try:
        now = time.time()
        recorded = attempts.LOG.snapshot(run=run.run_id)
        own = driver_attempt(run, started, status, now, public_ip=own_public_ip(cfg))
        prices = report_prices(cfg)
        cost = report.estimate_cost(([own] if own else []) + recorded, prices, now=now)
        cost.update(run_id=run.run_id, status=status)
        hits = cache_hits(run_dir)
        if hits:
            cost["call_cache_hits"] = hits
        tasks = len({a.call for a in recorded})
        subtitle = (
            f"{status} · {tasks} task(s), {len(recorded)} attempt(s)"
            + (f", {hits} call(s) reused from the call cache" if hits else "")
            + f" · {report.clock(round(now - started))} · estimated {cost['total_usd']:.4f} {cost['currency']}"
        )
        title = f"run {run.run_id}"
        svg = report.timeline_svg(([own] if own else []) + recorded, title=title, subtitle=subtitle, now=now, costs=cost)
        facts = [
            ("status", status),
            ("results", run.results),
            ("WDL tasks", f"{tasks} ({len(recorded)} attempts)"),
            ("call cache", f"{hits} call(s) reused" if hits else "no call reused"),
            ("estimated cost", f"{cost['total_usd']:.4f} {cost['currency']} (driver included)" if own
             else f"{cost['total_usd']:.4f} {cost['currency']} (WDL tasks; the driver's own size is unknown here)"),
        ]
        page = report.report_html(svg, cost, title, facts)
        bucket = run.results_bucket
        s3 = aws.client("s3")
        for name, body, kind in (
            ("timeline.svg", svg, "image/svg+xml"),
            ("report.html", page, "text/html; charset=utf-8"),
        ):
            s3.put_object(Bucket=bucket, Key=run.results_key(name), Body=body.encode(), ContentType=kind)
        s3io.put_json(bucket, run.results_key("cost.json"), cost)
        return {
            "report": s3io.uri(bucket, run.results_key("report.html")),
            "cost": s3io.uri(bucket, run.results_key("cost.json")),
            "estimated_cost_usd": cost["total_usd"],
        }
    except Exception:
        log.exception("could not write the run report")
        return {}


def report_prices(cfg: str | None) -> report.Prices:
    """``[aws_fargate] prices`` as the run's miniwdl configuration has it."""
    from WDL.runtime import config as wdl_config

    loader = wdl_config.Loader(log, filenames=[cfg] if cfg else None)
    if loader.has_option("aws_fargate", "prices"):
        return report.Prices.parse(loader["aws_fargate"]["prices"])
    return report.Prices()


def own_public_ip(cfg: str | None) -> bool:
    """Whether this driver's task has a public IPv4 address: the stack launches it with the
    assignPublicIp it gives the WDL tasks (``[aws_fargate] assign_public_ip``, set from the same
    template parameter); DescribeTasks does not report the address itself."""
    from WDL.runtime import config as wdl_config

    from . import config

    try:
        return bool(config.option(wdl_config.Loader(log, filenames=[cfg] if cfg else None), "assign_public_ip"))
    except ValueError as exn:  # the backend refuses such a setting before any task runs
        log.warning("%s: the report counts no public IPv4 address for the driver", exn)
        return False


def driver_attempt(run: DriverRun, started: float, status: str, now: float, public_ip: bool = False) -> attempts.Attempt | None:
    """The driver task itself as a row of the report (its size and capacity from ECS), when it
    runs as an ECS task."""
    arn = sweep.own_task_arn()
    if not arn:
        return None
    try:
        cluster = arn.split("/")[1] if arn.count("/") >= 2 else os.environ.get("MINIWDL__AWS_FARGATE__CLUSTER", "default")
        task = aws.client("ecs").describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        if not (int(task.get("cpu") or 0) and int(task.get("memory") or 0)):
            log.info("the driver task's size is unknown (%s): the report leaves the driver out", arn)
            return None
        from .backend.fargate import epoch

        created = epoch(task.get("createdAt")) or started
        return attempts.Attempt(
            call="driver",
            attempt=1,
            run=run.run_id,
            cpu=int(task.get("cpu") or 0),
            memory=int(task.get("memory") or 0),
            capacity=task.get("capacityProviderName") or task.get("launchType") or "FARGATE",
            queued=created,
            launched=created,
            running=epoch(task.get("startedAt")) or started,
            stopped=now,
            billing_start=epoch(task.get("pullStartedAt")),
            outcome=attempts.SUCCEEDED if status == "SUCCEEDED" else attempts.FAILED,
            detail="the driver, until this report",
            task_arn=arn,
            public_ip=public_ip,
        )
    except Exception as exn:  # the report goes on without the driver's row
        log.warning("cannot describe the driver task %s: %s", arn, exn)
        return None


def cache_hits(run_dir: str) -> int:
    """Calls miniwdl took from the call cache, read from the run directory: a task call's
    directory has a ``work`` directory once a container was made for it, and a cached call's
    never does; a whole workflow taken from the cache has outputs and no call directories."""
    if not run_dir or not os.path.isdir(run_dir):
        return 0
    hits = 0
    calls = 0
    for root, dirs, files in os.walk(run_dir):
        if os.path.basename(root).startswith("call-"):
            calls += 1
            if "task.log" in files and not any(d.startswith("work") for d in dirs):
                hits += 1
        dirs[:] = [d for d in dirs if d.startswith("call-")]
    if not calls and os.path.isfile(os.path.join(run_dir, "outputs.json")):
        return 1
    return hits


def drive(run: DriverRun, stop: StopSignals | None = None) -> int:
    """Run ``run`` to its end (see the module's docstring); the exit status."""
    with contextlib.nullcontext(stop) if stop is not None else StopSignals() as signals:
        return _drive(run, signals)


def _drive(run: DriverRun, stop: StopSignals) -> int:
    started = time.time()
    os.makedirs(run.workdir, exist_ok=True)
    os.chdir(run.workdir)  # s3:// downloads land here, on EFS, visible to every task
    os.environ.setdefault("MINIWDL__SCHEDULER__CONTAINER_BACKEND", "aws_fargate")
    # one thread per scheduled task (miniwdl's model): 1,000 cost about 150 MB of the driver's memory
    os.environ.setdefault("MINIWDL__SCHEDULER__TASK_CONCURRENCY", "1000")
    os.environ["RUN_ID"] = run.run_id
    bucket = run.results_bucket
    sweep_orphans()
    ended = progress.ended(bucket, run.run_id)
    if ended is not None:  # cancelled (or timed out) before this driver started: run nothing
        return already_ended(run, ended, "starting")
    reporter = progress.StatusReporter(
        bucket, run.run_id, float(os.environ.get("MINIWDL_FARGATE_STATUS_INTERVAL") or progress.DEFAULT_INTERVAL)
    )
    reporter.started(sweep.own_task_arn())
    cfg = None
    run_dir = ""
    try:
        stop.enter("fetching the workflow and its inputs")
        wdl_path, inputs_path = fetch(run, stop.check)
        cfg = run_cfg(
            run.workdir, run.cache_dir, os.path.dirname(wdl_path), run.options,
            bundle_uri=run.workflow.rsplit("/", 1)[0] + "/" + RUN_CFG,
        )
        if run.cache_dir:
            stop.enter("staging the inputs")
            staging = reporter.counter("staging inputs")
            try:
                inputs_path = stage_s3_inputs(wdl_path, inputs_path, os.path.join(run.cache_dir, "s3"), stop.check, staging)
            finally:
                staging.flush()
        stop.enter("running the workflow")
        ended = progress.ended(bucket, run.run_id)
        if ended is not None:  # cancelled while the workflow was fetched and staged
            reporter.stop()
            return already_ended(run, ended, "about to run the workflow")
        result: dict[str, Any] = {}
        try:
            status, result = miniwdl_run(wdl_path, inputs_path, run.workdir, cfg)
        finally:
            release_run_volume()
            run_dir = result.get("dir") or ""
            reporter.stop(cached=cache_hits(run_dir) if run_dir else 0)
            publish_metrics(run, "succeeded" if result.get("outputs") is not None else "failed")
        if run_dir and os.path.isfile(os.path.join(run_dir, "workflow.log")):
            s3io.upload_file(os.path.join(run_dir, "workflow.log"), bucket, run.results_key("workflow.log"))
        stop.check()  # (miniwdl ended because of the signal: its error is not the story)
        if status == 0:
            stop.enter("uploading the outputs")
            try:
                uploading = reporter.counter("uploading outputs")
                try:
                    outputs = upload_outputs(run, wdl_path, result["outputs"], run_dir, stop.check, uploading)
                finally:
                    uploading.flush()
            except outputs_check.OutputRefused as exn:
                return refused(run, exn, started, run_dir, cfg)
            stop.check()
            if not claim_success(run):  # cancelled (or timed out) first: that end stands
                return already_ended(run, progress.ended(bucket, run.run_id), "writing outputs.json")
            # (the report after the claim: a run that lost it never has a report saying SUCCEEDED)
            doc = {"run_id": run.run_id, "status": "SUCCEEDED", "outputs": outputs, "results": run.results}
            doc.update(run_report(run, "SUCCEEDED", started, run_dir, cfg))
            where = s3io.put_json(bucket, run.results_key("outputs.json"), doc)
            log.info("run %s succeeded: %s", run.run_id, where)
            return 0
        doc = describe_error(run, result)
        was_cancelled = progress.cancelled(bucket, run.run_id)
        if was_cancelled is not None:  # miniwdl was terminated because the run was cancelled
            doc.update(status="CANCELLED", error="Cancelled", message=(was_cancelled.error or {}).get("message", "cancelled"))
        doc.update(run_report(run, doc["status"], started, run_dir, cfg))
        where = s3io.put_json(bucket, run.results_key("error.json"), doc)
        log.error("run %s failed: %s", run.run_id, where)
        return 1
    except config.InvalidConfig as exn:
        return invalid_config(run, exn, started)
    except SubmittedFileGone as exn:
        return user_error(run, "SubmittedFileGone", str(exn), started)
    except Exception as exn:
        if stop.requested:  # whatever broke meanwhile (a transfer cut short), the stop is the story
            return stopped(run, stop, started, run_dir, cfg)
        log.exception("driver failed")
        doc = {
            "run_id": run.run_id,
            "status": "FAILED",
            "error": exn.__class__.__name__,
            "message": f"driver error: {exn}",
            "traceback": traceback.format_exc().splitlines(),
        }
        doc.update(run_report(run, "FAILED", started, run_dir, cfg))
        try:
            s3io.put_json(bucket, run.results_key("error.json"), doc)
        except Exception:
            log.exception("could not write error.json")
        return 2


def claim_success(run: DriverRun) -> bool:
    """Claim the run's end as SUCCEEDED before writing outputs.json: status.json's ``outputs``
    is set with a conditional write (If-Match on its ETag, ``status.update``), unless the run
    ended first. A cancel makes the same kind of write and refuses a run whose outputs are
    claimed, so of the two exactly one wins: a run's files never say SUCCEEDED beside
    CANCELLED. True: claimed (or the run has no status.json: a driver run by hand)."""
    uri = run.results + "outputs.json"

    def claiming(current: status_doc.RunStatus) -> status_doc.RunStatus | None:
        return None if current.finished else current.model_copy(update={"outputs": uri})

    after = status_doc.update(run.results_bucket, run.run_id, claiming)
    return after is None or (not after.finished and after.outputs == uri)


def already_ended(run: DriverRun, ended: status_doc.RunStatus | None, phase: str) -> int:
    """The run ended (cancelled, timed out) before this driver got to ``phase``: stop without
    running (or writing) anything more; whoever ended it wrote its error.json. Exit 1."""
    state = ended.status if ended is not None else "ended"
    log.warning("run %s is %s: the driver stops while %s, running nothing more", run.run_id, state, phase)
    stop_run_tasks(run, f"the run is {state}")
    return 1


def invalid_config(run: DriverRun, exn: config.InvalidConfig, started: float) -> int:
    """The bundle's (or the operator's) miniwdl.cfg cannot be read: fail the run with an
    error.json naming the file (as its s3:// URI, for the bundle's) and the parse error. Nothing
    ran; exit 1, as for a workflow that failed."""
    return user_error(run, "InvalidConfiguration", str(exn), started, file=exn.where, problem=exn.problem)


def refused(run: DriverRun, exn: outputs_check.OutputRefused, started: float, run_dir: str, cfg: str | None) -> int:
    """The workflow succeeded but an output is not one the driver uploads (``outputs``): fail
    the run saying which, where and why; nothing was uploaded."""
    return user_error(run, "OutputRefused", str(exn), started, run_dir=run_dir, cfg=cfg)


def user_error(
    run: DriverRun, error: str, message: str, started: float, run_dir: str = "", cfg: str | None = None, **facts: Any
) -> int:
    """Fail the run for something the user can fix (no traceback: the message says what and
    where); exit 1, as for a workflow that failed."""
    doc = {"run_id": run.run_id, "status": "FAILED", "error": error, "message": message, **facts}
    doc.update(run_report(run, "FAILED", started, run_dir, cfg))
    where = s3io.put_json(run.results_bucket, run.results_key("error.json"), doc)
    log.error("run %s failed: %s (%s)", run.run_id, message, where)
    return 1


def stopped(run: DriverRun, stop: StopSignals, started: float, run_dir: str, cfg: str | None) -> int:
    """The driver was told to stop: stop every task of the run still running, then write
    error.json: CANCELLED if the run was cancelled, FAILED with why otherwise (a run that timed
    out keeps its TimedOut error), with the run report if it can still be made. Exit 128 + the
    signal's number."""
    bucket = run.results_bucket
    stop_run_tasks(run, f"the run's driver was stopped ({stop.signal_name}) while {stop.phase}")
    facts = lifecycle.ecs_stop_facts()
    doc: dict[str, Any] = {
        "run_id": run.run_id,
        "status": "FAILED",
        "error": "DriverStopped",
        "message": lifecycle.stopped_message(stop, facts),
        "signal": stop.signal_name,
        "phase": stop.phase,
        **{k: v for k, v in (("stop_code", facts.get("stopCode")), ("stopped_reason", facts.get("stoppedReason"))) if v},
    }
    ended = progress.ended(bucket, run.run_id)
    if ended is not None and ended.status != "SUCCEEDED":  # cancelled, or timed out: that is the story
        told = ended.error or {}
        doc.update(status=ended.status, error=told.get("error") or doc["error"], message=told.get("message") or doc["message"])
        doc["driver"] = lifecycle.stopped_message(stop, facts)
    doc.update(run_report(run, doc["status"], started, run_dir, cfg))
    try:
        where = s3io.put_json(bucket, run.results_key("error.json"), doc)
        log.error("run %s stopped: %s (%s)", run.run_id, doc["message"], where)
    except Exception:
        log.exception("could not write error.json")
    signum = getattr(signal.Signals, stop.signal_name or "SIGTERM", signal.SIGTERM)
    return 128 + int(signum)


def stop_run_tasks(run: DriverRun, reason: str) -> None:
    """Stop every ECS task of the run but this driver (by the run tag). miniwdl's backends stop
    the tasks they were waiting on when the stop signal came; this also catches a task whose
    RunTask was still in flight then."""
    cluster = os.environ.get("MINIWDL__AWS_FARGATE__CLUSTER")
    if not cluster or os.environ.get("MINIWDL__SCHEDULER__CONTAINER_BACKEND") != "aws_fargate":
        return
    try:
        own = sweep.own_task_arn()
        sweep.stop_run(cluster, run.run_id, reason, exclude=[own] if own else [])
    except Exception:  # stopping is best effort here: the driver's STOPPED event sweeps again
        log.exception("could not stop the tasks of run %s", run.run_id)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with StopSignals() as stop:  # from the very start: a stop at any moment ends cleanly
        heartbeat = lifecycle.Heartbeat.from_env()
        if heartbeat is not None:
            heartbeat.start()
        try:
            run = DriverRun.from_env()
        except ValueError as exn:
            print(str(exn), file=sys.stderr)
            return 2
        return drive(run, stop)
