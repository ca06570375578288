"""The driver: what the driver Fargate task runs for one run, as one pass of phases (``_drive``):

1. fetch: the workflow bundle (the WDL's S3 folder, less ``results/`` and ``inputs.json``) and
   the inputs JSON onto EFS, and the run's miniwdl configuration (``run_cfg``: the call cache,
   its entries in the runs bucket's ``cache/`` (``callcache.s3cache``), as the stack's and the
   run's call_cache say; a ``miniwdl.cfg`` in the bundle may change it for one run);
2. stage inputs: the s3:// File/Directory inputs into a store on EFS addressed by their ETags
   (``staging``), so the call cache sees the same paths for the same data across runs;
3. run: ``miniwdl run`` them, with the aws_fargate backend unless configured otherwise;
4. upload: the output files under the run's results prefix (File and Directory values become
   s3:// URIs);
5. finish: every end of the run, whichever phase it came in, is an ``Outcome`` that ``finish``
   makes so in one place: stop what still runs, claim success in status.json, the run report
   (``report.run``: ``report.html``, ``timeline.svg``, ``cost.json``; ``call_cache.json``: the
   calls it looked up in the call cache), then ``outputs.json`` or
   ``error.json`` (naming what failed, with its stderr tail; both with the run's ``provenance``:
   the workflow's digests, each task's image and digest, the driver's versions), then the run's
   task metrics; then the run's directory on EFS: removed once the outputs are in S3, kept a few
   days for debugging when the run failed (``efs_cleanup``).

At its start, in the background, it also collects what earlier runs left on EFS (a directory
whose driver was killed, a failed run's whose days are over). Told to stop (SIGTERM from ECS: a cancel, a timed-out run, Fargate taking its capacity back) at
any moment, it stops what it is doing and every WDL task of the run, and writes error.json
saying so (``lifecycle``). Meanwhile it keeps the state machine's wait alive with heartbeats.

Exit status: 0 succeeded, 1 the workflow failed, or the run failed for what its user or the
stack's operator can fix (``user_error``), or it ended elsewhere first; 2 the driver itself
failed; 128 + the signal's number when it was stopped (143: SIGTERM).
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import functools
import importlib.metadata
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions
import WDL
from WDL._util import StructuredLogMessage as _
from WDL import CLI as wdl_cli

from . import attempts, aws, config, efs_cleanup, inputs_json, lifecycle, limits, progress, provenance, run_options, run_resources, runs, s3io, staging, sweep
from . import status as status_doc
from . import outputs as run_outputs
from . import miniwdl_fixes
from .lifecycle import StopSignals
from .report.run import cache_hits, driver_attempt, own_public_ip, run_report

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
    #: the run's options (runs.RunRecord.options), e.g. {"call_cache": false}; None: read them from
    #: the run record (run.json beside the results) when the run is fetched
    options: dict[str, Any] | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, workdir: str | None = None) -> "DriverRun":
        env = dict(os.environ if environ is None else environ)
        missing = [k for k in ("RUN_ID", "RUN_WORKFLOW", "RUN_INPUTS", "RUN_RESULTS") if not env.get(k)]
        if missing:
            raise ValueError(f"driver: missing environment variable(s) {', '.join(missing)}")
        results = env["RUN_RESULTS"] if env["RUN_RESULTS"].endswith("/") else env["RUN_RESULTS"] + "/"
        base = str(config.option(config.loader(environ=env), "efs_mountpoint")) or os.getcwd()
        if workdir is None:
            workdir = os.path.join(base, "runs", env["RUN_ID"])
        options = None
        if env.get("RUN_OPTIONS"):  # (a driver run by hand; the stack's are read from run.json)
            try:
                options = json.loads(env["RUN_OPTIONS"])
            except ValueError as exn:
                raise ValueError(f"driver: RUN_OPTIONS is not JSON: {exn}") from None
            if not isinstance(options, dict):
                raise ValueError("driver: RUN_OPTIONS is not a JSON object")
        return cls(
            env["RUN_ID"], env["RUN_WORKFLOW"], env["RUN_INPUTS"], results, workdir, os.path.join(base, "cache"), options,
        )

    #: the run record (run.json beside the results) once read; {} when there is none (a driver run
    #: by hand)
    record: dict[str, Any] | None = None

    def read_record(self) -> dict[str, Any]:
        """The run record, read once."""
        if self.record is None:
            found = s3io.find_json(self.results_bucket, self.results_key(runs.RECORD_NAME))
            self.record = found if isinstance(found, dict) else {}
        return self.record

    def read_options(self) -> dict[str, Any]:
        """The run's options: as given, else the run record's (none when there is no record: a
        driver run by hand)."""
        if self.options is None:
            self.options = dict(self.read_record().get("options") or {})
        return self.options

    def task(self) -> str | None:
        """The task the run's options name to run (``miniwdl run --task``), or None: its workflow."""
        return run_options.task_of(self.read_options())

    def check_quant(self) -> bool:
        """Whether the run keeps miniwdl's quantifier checks (its option ``quant_check``: false is
        ``miniwdl run --no-quant-check``)."""
        return run_options.check_quant_of(self.read_options())

    def labels(self) -> dict[str, str]:
        """The run's labels (its options' ``labels``)."""
        return dict(run_options.parse(self.read_options()).labels)

    def tags(self) -> dict[str, str]:
        """The tags of the run's WDL tasks, their EBS volumes and access point besides the run id,
        driver and call: the run's labels, name and workflow (``[aws_fargate] tags``)."""
        record = self.read_record()
        return run_options.run_tags(self.labels(), str(record.get("name") or ""), str(record.get("workflow_name") or ""))

    @property
    def cache_uri(self) -> str:
        """Where the call cache keeps its entries: the runs bucket's ``cache/`` prefix (none
        without a cache folder on EFS)."""
        return s3io.uri(self.results_bucket, runs.CACHE_PREFIX) if self.cache_dir else ""

    @property
    def results_bucket(self) -> str:
        return s3io.split(self.results)[0]

    def results_key(self, name: str) -> str:
        return s3io.split(self.results)[1] + name


#: miniwdl's [scheduler] task_concurrency for the driver: the size of its task thread pool, so the
#: most tasks scheduled at once (waiting for a launch or running; the rest of a scatter waits as
#: queued calls, which cost next to nothing). One thread each, about 0.1 MB: 3,000 keep the
#: 20/s launch quota busy with tasks of up to about two minutes and fit the default driver size
#: (bench/fargate_scale.py --tasks 10000: BENCHMARKS.md).
TASK_CONCURRENCY = 3000


# -- the pass: fetch → stage inputs → run → upload → finish ---------------------------------------


def drive(run: DriverRun, stop: StopSignals | None = None) -> int:
    """Run ``run`` to its end (see the module's docstring); the exit status."""
    with contextlib.nullcontext(stop) if stop is not None else StopSignals() as signals:
        return _drive(run, signals)


@dataclass
class RunSoFar:
    """What the driver has of a run so far, for whichever end it comes to."""

    stop: StopSignals
    reporter: progress.StatusReporter  # status.json's progress, once the run is started
    started: float = field(default_factory=time.time)
    cfg: str | None = None  # the run's miniwdl configuration file, once made
    run_dir: str = ""  # miniwdl's run directory, once the workflow ran
    #: "succeeded" or "failed" once miniwdl returned (the outcome of the run's task metrics)
    workflow: str = ""
    #: the fetched workflow's digests (``provenance.workflow_digests``), once fetched
    digests: dict[str, Any] = field(default_factory=dict)
    #: the run's budget ran out while its workflow ran (``limits``): how it ends
    budget_exceeded: limits.BudgetExceeded | None = None
    #: the collection of earlier runs' directories, running in the background (``collect_in_background``)
    collector: threading.Thread | None = None
    #: the fetched workflow's document, once the driver or miniwdl read it (``document``, ``keep``)
    loaded: WDL.Tree.Document | None = None

    def document(self, wdl_path: str, check_quant: bool) -> WDL.Tree.Document:
        """The fetched workflow's document, loaded once for all the driver reads of it (its
        inputs' types to stage them, its outputs' to upload them) and miniwdl's run of it
        (``miniwdl_fixes.workflow_loaded_once``): a workflow of many imports takes seconds to
        load and check."""
        if self.loaded is None:
            self.loaded = WDL.load(wdl_path, check_quant=check_quant)
        return self.loaded

    def keep(self, document: WDL.Tree.Document) -> None:
        """The document miniwdl loaded, when the driver had not read it first."""
        if self.loaded is None:
            self.loaded = document


def _drive(run: DriverRun, stop: StopSignals) -> int:
    # (every step from here on ends in ``finish``: a setting that cannot be read, a working
    # directory that cannot be made, fail the run with its error.json, not the driver's process;
    # the reporter, which ``finish`` needs, takes the configured interval once it is read)
    default_interval = float(config.default("status_interval"))  # type: ignore[arg-type]
    so_far = RunSoFar(stop, progress.StatusReporter(run.results_bucket, run.run_id, default_interval))
    try:
        so_far.reporter.interval = float(config.option(config.loader(), "status_interval"))  # type: ignore[arg-type]
        set_up(run)
        sweep_orphans()
        so_far.collector = collect_in_background(run)
        ended = progress.ended(run.results_bucket, run.run_id)
        if ended is not None:  # cancelled (or timed out) before this driver started: run nothing
            outcome = already_ended(run, ended, "starting")
        else:
            so_far.reporter.started(sweep.own_task_arn())
            outcome = run_phases(run, so_far)
    except config.InvalidConfig as exn:
        outcome = invalid_config(run, exn)
    except config.InvalidSetting as exn:
        outcome = user_error(run, "InvalidSetting", str(exn), setting=exn.name)
    except SubmittedFileGone as exn:
        outcome = user_error(run, "SubmittedFileGone", str(exn))
    except staging.InputUnreadable as exn:
        outcome = user_error(run, "InputUnreadable", str(exn))
    except Exception as exn:
        outcome = broken(run, so_far, exn)
    return finish(run, so_far, outcome)


def set_up(run: DriverRun) -> None:
    """The run's directory on EFS as the working directory; the aws_fargate backend unless
    configured otherwise."""
    os.makedirs(run.workdir, exist_ok=True)
    if efs_cleanup.owns(run.workdir, run.run_id):
        efs_cleanup.mark_run(run.workdir, run.run_id, run.results)
    os.chdir(run.workdir)  # s3:// downloads land here, on EFS, visible to every task
    os.environ.setdefault("MINIWDL__SCHEDULER__CONTAINER_BACKEND", "aws_fargate")
    os.environ.setdefault("MINIWDL__SCHEDULER__TASK_CONCURRENCY", str(TASK_CONCURRENCY))
    # the run's own [aws_fargate] settings reach the backend in the run's configuration file
    # (``run_cfg``), where a variable of the same name would override them (miniwdl: the
    # environment over files): none is left to (the stack's limits kept first: ``stack_limits``)
    stack_limits()
    for name in RUN_OWN_SETTINGS:
        os.environ.pop(config.env_name(name), None)


def run_phases(run: DriverRun, so_far: RunSoFar) -> Outcome:
    """Each phase in turn, up to how the run ends (its Outcome); raises what the driver cannot
    turn into one itself (a stop, its own failure: ``_drive`` does)."""
    wdl_path, inputs_path = fetch_phase(run, so_far)
    inputs_path = stage_phase(run, so_far, wdl_path, inputs_path)
    so_far.stop.enter("running the workflow")
    ended = progress.ended(run.results_bucket, run.run_id)
    if ended is not None:  # cancelled while the workflow was fetched and staged
        so_far.reporter.stop()
        return already_ended(run, ended, "about to run the workflow")
    status, result = run_phase(run, so_far, wdl_path, inputs_path)
    so_far.stop.check()  # (miniwdl ended because of the signal: its error is not the story)
    if status != 0:
        if so_far.budget_exceeded is not None:
            return budget_exceeded(run, so_far.budget_exceeded)
        return workflow_failed(run, result)
    so_far.stop.enter("uploading the outputs")
    try:
        outputs = upload_phase(run, so_far, wdl_path, result["outputs"])
    except run_outputs.OutputRefused as exn:
        return user_error(run, "OutputRefused", str(exn))
    so_far.stop.check()
    return Outcome(SUCCEEDED, 0, {"run_id": run.run_id, "status": SUCCEEDED, "outputs": outputs, "results": run.results})


def fetch_phase(run: DriverRun, so_far: RunSoFar) -> tuple[str, str]:
    """The workflow bundle and the inputs onto EFS, and the run's miniwdl configuration; their paths."""
    so_far.stop.enter("fetching the workflow and its inputs")
    wdl_path, inputs_path = fetch(run, so_far.stop.check)
    so_far.digests = fetched_digests(wdl_path)
    so_far.cfg = run_cfg(
        run.workdir, run.cache_dir, os.path.dirname(wdl_path), run.read_options(),
        bundle_uri=run.workflow.rsplit("/", 1)[0] + "/" + RUN_CFG, cache_uri=run.cache_uri, own=run_own_settings(run),
    )
    return wdl_path, inputs_path


def fetched_digests(wdl_path: str) -> dict[str, Any]:
    """The fetched workflow's digests, taken before anything runs (the bundle is the WDL's folder);
    none if its files cannot be read (miniwdl then says why)."""
    try:
        return provenance.workflow_digests(wdl_path, os.path.dirname(wdl_path))
    except OSError:
        log.exception("could not take the workflow's digests")
        return {}


def stage_phase(run: DriverRun, so_far: RunSoFar, wdl_path: str, inputs_path: str) -> str:
    """The s3:// inputs into the store of staged inputs (``staging``), when the runs of this
    filesystem share one; the inputs JSON miniwdl is to read."""
    if not run.cache_dir:
        return inputs_path
    so_far.stop.enter("staging the inputs")
    counter = so_far.reporter.counter("staging inputs")
    try:
        return staging.stage_s3_inputs(
            wdl_path, inputs_path, os.path.join(run.cache_dir, "s3"), so_far.stop.check, counter, task=run.task(),
            check_quant=run.check_quant(), load=lambda: so_far.document(wdl_path, run.check_quant()),
        )
    finally:
        counter.flush()


def run_phase(run: DriverRun, so_far: RunSoFar, wdl_path: str, inputs_path: str) -> tuple[int, dict[str, Any]]:
    """``miniwdl run``, then what is over with it: the run's task definitions and EFS access
    point, status.json's progress; workflow.log under the results prefix."""
    result: dict[str, Any] = {}
    count_driver_cost(run, so_far)
    if run.cache_uri:
        from .callcache import s3cache

        s3cache.start_run()  # (s3:// objects' identities asked anew: one may have been replaced)
    try:
        # (one load of the workflow for the driver and miniwdl: whoever loads it first)
        with miniwdl_fixes.workflow_loaded_once(wdl_path, run.check_quant(), lambda: so_far.loaded, so_far.keep):
            status, result = miniwdl_run(wdl_path, inputs_path, run.workdir, so_far.cfg, run.task(), run.check_quant())
    finally:
        gate = limits.end_run(run.run_id)
        so_far.budget_exceeded = gate.halted if gate is not None else None
        release_run_volume()
        so_far.run_dir = result.get("dir") or ""
        so_far.reporter.stop(cached=cache_hits(so_far.run_dir) if so_far.run_dir else 0, failed_call=failed_call(result))
        so_far.workflow = "succeeded" if result.get("outputs") is not None else "failed"
    log_file = os.path.join(so_far.run_dir, "workflow.log")
    if so_far.run_dir and os.path.isfile(log_file):
        s3io.upload_file(log_file, run.results_bucket, run.results_key("workflow.log"))
    return status, result


#: the run options that limit a run while it runs, each an ``[aws_fargate]`` setting of the same name
LIMIT_OPTIONS = ("max_concurrent_tasks", "max_vcpus", "max_cost_usd")
#: the stack's defaults of those settings, by name, as this process first found them
_STACK_LIMITS: dict[str, str | None] = {}


def stack_limits() -> dict[str, str | None]:
    """The stack's defaults of the run's limits (``MINIWDL__AWS_FARGATE__<NAME>``, from template
    parameters; None where it sets none), as this process first found them: ``set_up`` then takes
    the variables out of its environment, as it does every run's own setting."""
    for name in LIMIT_OPTIONS:
        _STACK_LIMITS.setdefault(name, config.environment_value(name))
    return dict(_STACK_LIMITS)


def run_limits(options: dict[str, Any] | None) -> dict[str, str]:
    """The run's limits as its configuration file holds them (``run_own_settings``): each option
    the run gives replaces the stack's default for this run; a limit neither sets is left to
    miniwdl's configuration files, as any setting is."""
    chosen = run_options.parse(options or {})
    stack = stack_limits()
    found: dict[str, str] = {}
    for name in LIMIT_OPTIONS:
        value = getattr(chosen, name)
        text = repr(value) if value is not None else stack[name]  # (a float's repr reads back exactly)
        if text is not None:
            found[name] = text
    return found


def count_driver_cost(run: DriverRun, so_far: RunSoFar) -> None:
    """A run with a budget counts its driver's own task in its cost, as cost.json does (its size
    from ECS, asked once; none outside ECS)."""
    try:
        settings = config.loader(so_far.cfg)
        if not config.run_limits(settings).max_cost_usd:
            return
        own = driver_attempt(run, so_far.started, "RUNNING", time.time(), public_ip=own_public_ip(settings))
    except Exception:  # the budget then counts the WDL tasks alone
        log.exception("could not count the driver in the run's budget")
        return
    if own is not None:
        limits.add_overhead(run.run_id, dataclasses.replace(own, stopped=None))


def upload_phase(run: DriverRun, so_far: RunSoFar, wdl_path: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """The output files under the results prefix; the outputs with their s3:// URIs."""
    counter = so_far.reporter.counter("uploading outputs")
    try:
        doc = so_far.document(wdl_path, run.check_quant())
        return run_outputs.upload(run, doc, outputs, so_far.run_dir, so_far.stop.check, counter)
    finally:
        counter.flush()


# -- how a run ends: one Outcome, through one finish ----------------------------------------------

SUCCEEDED, FAILED, CANCELLED = "SUCCEEDED", "FAILED", "CANCELLED"


@dataclass
class Outcome:
    """How a run ends: what its results say, and the driver's exit status."""

    status: str  # SUCCEEDED, FAILED or CANCELLED
    exit_code: int
    #: outputs.json (SUCCEEDED) or error.json (otherwise), the run report still to add; None: the
    #: run ended elsewhere first (whoever ended it wrote its error.json), nothing more is written
    document: dict[str, Any] | None
    #: stop every ECS task of the run still running first, saying this (empty: none to stop)
    stop_tasks: str = ""
    #: the driver's own failure or a stop: nothing comes after it, so a document it cannot
    #: write is only logged (any other end that cannot be written becomes the driver's failure)
    last_word: bool = False


def finish(run: DriverRun, so_far: RunSoFar, outcome: Outcome) -> int:
    """End the run as ``outcome`` says, every end the same way: stop what still runs; claim
    success in status.json (a run cancelled first ends as that); the run report; error.json or
    outputs.json; the run's task metrics; the run's directory on EFS removed (or kept, if the run
    did not succeed: ``tidy_run_dir``). The exit status."""
    so_far.reporter.halt()  # (a run that ended before its workflow ran: its reporter still ran)
    try:
        outcome = conclude(run, so_far, outcome)
    except Exception as exn:
        if not outcome.last_word:
            return finish(run, so_far, broken(run, so_far, exn))
        log.exception("could not write error.json")
    if so_far.workflow:
        publish_metrics(run, so_far.workflow)
    tidy_run_dir(run, so_far, outcome)
    if so_far.collector is not None:
        so_far.collector.join(COLLECT_JOIN_SECONDS)
    # (what the run asked of AWS: its share of the account's API rates, and of S3's request prices)
    log.info(_("AWS calls over the run", **aws.calls()))
    return outcome.exit_code


def conclude(run: DriverRun, so_far: RunSoFar, outcome: Outcome) -> Outcome:
    """``finish``'s writes, in their order; the outcome that stands."""
    if outcome.status == SUCCEEDED and outcome.document is not None and not claim_success(run):
        # cancelled (or timed out) first: that end stands
        outcome = already_ended(run, progress.ended(run.results_bucket, run.run_id), "writing outputs.json")
    if outcome.stop_tasks:
        stop_run_tasks(run, outcome.stop_tasks)
    doc = outcome.document
    if doc is None:
        return outcome
    # (the report after the claim: a run that lost it never has a report saying SUCCEEDED)
    calls = record_cache_calls(run, so_far)
    doc.update(run_report(run, doc["status"], so_far.started, so_far.run_dir, so_far.cfg, calls))
    doc.update(run_provenance(run, so_far))
    name = "outputs.json" if outcome.status == SUCCEEDED else "error.json"
    where = s3io.put_json(run.results_bucket, run.results_key(name), doc)
    if outcome.status == SUCCEEDED:
        log.info("run %s succeeded: %s", run.run_id, where)
    else:
        said = "stopped" if outcome.exit_code > 128 else "failed"  # (128 + a signal's number: stopped)
        log.error("run %s %s: %s (%s)", run.run_id, said, doc.get("message"), where)
        if doc.get("report"):
            record_report(run, doc["report"])
    return outcome


def record_report(run: DriverRun, report: str) -> None:
    """The report of a run that ended before its driver (cancelled: its execution was stopped,
    so no finalize step reads error.json for it) in status.json, as finalize records a failed
    run's; a run still going is left to finalize. Never fails the run."""

    def adding(current: status_doc.RunStatus) -> status_doc.RunStatus | None:
        return current.model_copy(update={"report": report}) if current.finished and not current.report else None

    try:
        status_doc.update(run.results_bucket, run.run_id, adding)
    except Exception:
        log.exception("could not record the run's report in its status")


def record_cache_calls(run: DriverRun, so_far: RunSoFar) -> list[dict[str, Any]] | None:
    """``call_cache.json`` beside the report: each call the run looked up in the S3 call cache,
    its key's parts and whether it was reused (from which run and call) or ran (``explain``
    reads it); the calls, or None when the S3 call cache was not in play. Never fails the run."""
    from .callcache import s3cache

    try:
        calls = s3cache.CALLS.under(so_far.run_dir) if so_far.run_dir and run.cache_uri else []
        if not calls:
            return None
        s3io.put_json(run.results_bucket, run.results_key(runs.CALLS_NAME), {"run_id": run.run_id, "calls": calls})
        return calls
    except Exception:
        log.exception("could not record the run's call cache lookups")
        return None


def run_provenance(run: DriverRun, so_far: RunSoFar) -> dict[str, Any]:
    """What outputs.json / error.json say of what exactly ran (``provenance``); never fails the
    run: provenance that cannot be made is logged and left out."""
    try:
        return {"provenance": provenance.of_run(run.workflow, so_far.digests, attempts.LOG.snapshot(run=run.run_id))}
    except Exception:
        log.exception("could not record the run's provenance")
        return {}


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


def already_ended(run: DriverRun, ended: status_doc.RunStatus | None, phase: str) -> Outcome:
    """The run ended (cancelled, timed out) before this driver got to ``phase``: stop without
    running (or writing) anything more; whoever ended it wrote its error.json. Exit 1."""
    state = ended.status if ended is not None else "ended"
    log.warning("run %s is %s: the driver stops while %s, running nothing more", run.run_id, state, phase)
    return Outcome(ended.status if ended is not None else FAILED, 1, None, stop_tasks=f"the run is {state}")


def workflow_failed(run: DriverRun, result: dict[str, Any]) -> Outcome:
    """miniwdl's error, with what a user needs first (``describe_error``); CANCELLED if miniwdl
    was terminated because the run was cancelled. Exit 1."""
    doc = describe_error(run, result)
    was_cancelled = progress.cancelled(run.results_bucket, run.run_id)
    if was_cancelled is not None:
        doc.update(status=CANCELLED, error="Cancelled", message=(was_cancelled.error or {}).get("message", "cancelled"))
    return Outcome(doc["status"], 1, doc)


def budget_exceeded(run: DriverRun, exceeded: limits.BudgetExceeded) -> Outcome:
    """The run's estimated cost reached its budget while its workflow ran: its tasks were stopped
    and no more launched; FAILED with ``BudgetExceeded``, naming the budget, where it came from
    and what was spent. Exit 1."""
    given = run.read_options().get("max_cost_usd") is not None
    source = "options.max_cost_usd" if given else "the stack's MaxRunCostUsd"
    message = (
        f"the run reached its budget: {exceeded.spending()} of the run's budget "
        f"{exceeded.limit_usd:g} USD ({source}), as the run report estimates cost (list prices, not the bill); "
        "no more tasks were launched and every running task of the run was stopped"
    )
    doc = {
        "run_id": run.run_id, "status": FAILED, "error": "BudgetExceeded", "message": message,
        "limit": "max_cost_usd", "max_cost_usd": exceeded.limit_usd, "spent_usd": round(exceeded.spent_usd, 6),
        "limit_source": source,
    }
    if exceeded.committed_usd:
        doc["committed_usd"] = round(exceeded.committed_usd, 6)
    if exceeded.coming_usd:
        doc["coming_usd"] = round(exceeded.coming_usd, 6)
    return Outcome(FAILED, 1, doc, stop_tasks="the run reached its budget (max_cost_usd)")


def invalid_config(run: DriverRun, exn: config.InvalidConfig) -> Outcome:
    """The bundle's (or the operator's) miniwdl.cfg cannot be read: fail the run with an
    error.json naming the file (as its s3:// URI, for the bundle's) and the parse error. Nothing
    ran; exit 1, as for a workflow that failed."""
    return user_error(run, "InvalidConfiguration", str(exn), file=exn.where, problem=exn.problem)


def user_error(run: DriverRun, error: str, message: str, **facts: Any) -> Outcome:
    """Fail the run for something the user (or the stack's operator) can fix (no traceback: the
    message says what and where): a deleted submission, an output the driver does not upload
    (``outputs``), a broken miniwdl.cfg, an ``[aws_fargate]`` setting the driver cannot read;
    exit 1, as for a workflow that failed."""
    return Outcome(FAILED, 1, {"run_id": run.run_id, "status": FAILED, "error": error, "message": message, **facts})


def broken(run: DriverRun, so_far: RunSoFar, exn: Exception) -> Outcome:
    """Something went wrong: if the driver was told to stop, whatever broke meanwhile (a transfer
    cut short) is not the story (``stopped``); else the driver itself failed, exit 2."""
    if so_far.stop.requested:
        return stopped(run, so_far.stop)
    log.exception("driver failed", exc_info=exn)
    return Outcome(FAILED, 2, {
        "run_id": run.run_id,
        "status": FAILED,
        "error": exn.__class__.__name__,
        "message": f"driver error: {exn}",
        "traceback": "".join(traceback.format_exception(exn)).splitlines(),
    }, last_word=True)


def stopped(run: DriverRun, stop: StopSignals) -> Outcome:
    """The driver was told to stop: stop every task of the run still running, then write
    error.json: CANCELLED if the run was cancelled, FAILED with why otherwise (a run that timed
    out keeps its TimedOut error), with the run report if it can still be made. Exit 128 + the
    signal's number."""
    facts = lifecycle.ecs_stop_facts()
    doc: dict[str, Any] = {
        "run_id": run.run_id,
        "status": FAILED,
        "error": "DriverStopped",
        "message": lifecycle.stopped_message(stop, facts),
        "signal": stop.signal_name,
        "phase": stop.phase,
        **{k: v for k, v in (("stop_code", facts.get("stopCode")), ("stopped_reason", facts.get("stoppedReason"))) if v},
    }
    ended = progress.ended(run.results_bucket, run.run_id)
    if ended is not None and ended.status != SUCCEEDED:  # cancelled, or timed out: that is the story
        told = ended.error or {}
        doc.update(status=ended.status, error=told.get("error") or doc["error"], message=told.get("message") or doc["message"])
        doc["driver"] = lifecycle.stopped_message(stop, facts)
    signum = getattr(signal.Signals, stop.signal_name or "SIGTERM", signal.SIGTERM)
    reason = f"the run's driver was stopped ({stop.signal_name}) while {stop.phase}"
    return Outcome(doc["status"], 128 + int(signum), doc, stop_tasks=reason, last_word=True)


# -- the run's directory on EFS (efs_cleanup) ------------------------------------------------------

#: how long a driver's start-up collection of earlier runs' directories may go on
COLLECT_SECONDS = 600.0
#: how long a driver at its end waits for that collection before leaving the rest to the next one
COLLECT_JOIN_SECONDS = 30.0
#: the time a driver told to stop (ECS gives it 120 s) spends removing a failed run's directory
STOPPED_REMOVAL_SECONDS = 30.0


def tidy_run_dir(run: DriverRun, so_far: RunSoFar, outcome: Outcome) -> None:
    """The run's directory on EFS, once its end is written: removed if the run succeeded (its
    outputs are in S3 and outputs.json is written: ``conclude`` returned SUCCEEDED with its
    document) unless ``keep_run_dirs``; else kept ``keep_failed_run_days`` with a marker saying
    until when (0: removed). Only a directory the driver made, ``<efs>/runs/<run id>``; a
    failure is logged, never the run's."""
    if not efs_cleanup.owns(run.workdir, run.run_id) or not os.path.isdir(run.workdir):
        return
    try:
        cfg = config.loader(so_far.cfg)  # the run's own configuration (its bundle's miniwdl.cfg too)
        keep_all = bool(config.option(cfg, "keep_run_dirs"))
        days = float(config.option(cfg, "keep_failed_run_days"))  # type: ignore[arg-type]
        succeeded = outcome.status == SUCCEEDED and outcome.document is not None
        if (succeeded and not keep_all) or (not succeeded and days == 0):
            stopped = outcome.exit_code > 128  # (ECS's SIGKILL comes soon)
            remove_run_dir(run, deadline=time.monotonic() + STOPPED_REMOVAL_SECONDS if stopped else None)
        else:
            why = "keep_run_dirs" if succeeded else f"the run {outcome.status}"
            until = efs_cleanup.mark_kept(run.workdir, outcome.status, days, why)
            log.info("run directory %s kept until %s (%s)", run.workdir, until, why)
    except Exception:  # housekeeping: never the run's failure (the next collection tries again)
        log.exception("could not tidy up the run directory %s", run.workdir)


def remove_run_dir(run: DriverRun, deadline: float | None = None) -> efs_cleanup.Removal:
    """Remove the run's directory (from outside it: the driver's working directory moves to
    its parent), logging what it freed."""
    if os.path.realpath(os.getcwd()).startswith(os.path.realpath(run.workdir)):
        os.chdir(os.path.dirname(run.workdir))
    removal = efs_cleanup.remove_tree(run.workdir, deadline)
    said = "removed" if removal.complete else "partly removed"
    log.log(logging.INFO if removal.complete else logging.WARNING, "run directory %s %s: %s", run.workdir, said, removal.summary())
    return removal


def collect_in_background(run: DriverRun) -> threading.Thread | None:
    """Collect earlier runs' directories left on EFS (``efs_cleanup.collect``: a finished run's,
    never one still going) in a background thread, for at most ``COLLECT_SECONDS``: the run
    does not wait for it. None where this driver has no ``<efs>/runs`` of its own."""
    if not efs_cleanup.owns(run.workdir, run.run_id):
        return None
    try:
        cfg = config.loader()
        days = float(config.option(cfg, "keep_failed_run_days"))  # type: ignore[arg-type]
        cache_days = float(config.option(cfg, "keep_unused_cache_days"))  # type: ignore[arg-type]
    except ValueError:
        log.exception("no collection of earlier run directories")
        return None
    deadline = time.monotonic() + COLLECT_SECONDS
    own_start = time.time()

    def collect() -> None:
        try:
            runs_root = os.path.dirname(run.workdir)
            done = efs_cleanup.collect(runs_root, run.results_bucket, days, skip=(run.run_id,), deadline=deadline)
            cache = efs_cleanup.collect_shared_after(runs_root, done, cache_days, deadline=deadline, own_start=own_start)
        except Exception:  # never let housekeeping fail a run
            log.exception("collecting earlier run directories failed")
            return
        if cache:
            freed = sum(c.get("freed_bytes", 0) for c in cache) / efs_cleanup.GB
            log.info("collected %d unused entries of the shared cache: %.3f GB freed", len(cache), freed)
        removed = [d for d in done if d["action"] in ("removed", "partly removed")]
        if removed:
            freed = sum(d["freed_bytes"] for d in removed) / efs_cleanup.GB
            log.info("collected %d earlier run directories: %.3f GB freed", len(removed), freed)

    thread = threading.Thread(target=collect, name="efs-collection", daemon=True)
    thread.start()
    return thread


# -- the phases' work ------------------------------------------------------------------------------


def fetch(run: DriverRun, progress: s3io.Progress | None = None) -> tuple[str, str]:
    """Download the workflow bundle and the inputs; return their local paths."""
    bucket, wdl_key = s3io.split(run.workflow)
    source = tempfile.mkdtemp(prefix="source-", dir=run.workdir)
    if "/" in wdl_key:  # the WDL's folder (the run's copy of it: all of it) is its bundle (imports, source-relative files)
        from .pipeline.snapshot import source_root

        folder = source_root(wdl_key)
        s3io.download_prefix(bucket, folder, source, exclude=lambda rel: not runs.in_bundle(rel), progress=progress)
    else:  # at the top of a bucket: never download the whole bucket
        folder = ""
    wdl_path = os.path.join(source, wdl_key[len(folder) :])
    if not os.path.isfile(wdl_path):
        _download_submitted(run.workflow, wdl_path, progress)
    inputs_path = _download_submitted(run.inputs, os.path.join(source, ".inputs", "inputs.json"), progress)
    inputs_json.unescape_json(inputs_path)
    return wdl_path, inputs_path


class SubmittedFileGone(FileNotFoundError):
    """The run's WDL or inputs JSON was deleted between its submission and the driver's start."""


def _download_submitted(uri: str, path: str, progress: s3io.Progress | None) -> str:
    bucket, key = s3io.split(uri)
    try:
        return s3io.download_to(bucket, key, path, progress)
    except botocore.exceptions.ClientError as exn:  # download_file reports a missing key as a 404
        if not s3io.not_found(exn):
            raise
        raise SubmittedFileGone(f"{uri} was deleted after the run was submitted: submit it again") from None


def release_run_volume() -> None:
    """The run's WDL tasks are over: remove what the backend made for them alone (the aws_fargate
    backend's task definitions and EFS access point: ``run_resources``)."""
    run_resources.release(log)


#: the groups of entry points miniwdl looks its plugins up in
PLUGIN_GROUPS = ("file_download", "directory_download", "container_backend", "cache_backend", "task", "workflow")


def cache_plugin_entry_points() -> None:
    """miniwdl looks up its plugins' entry points, a scan of every installed package's metadata,
    each time it loads plugins: twice for every task it runs (a 300-way scatter scanned 600 times).
    In a driver the installed packages never change, so each group is scanned once and its answer
    kept (in this process: the driver's, or the test that runs one)."""
    if getattr(importlib.metadata.entry_points, "cached_for_the_driver", False):
        return
    scan = importlib.metadata.entry_points
    cached = functools.lru_cache(maxsize=None)(lambda **params: scan(**params))

    def entry_points(**params: str) -> importlib.metadata.EntryPoints:
        return cached(**params)

    entry_points.cached_for_the_driver = True  # type: ignore[attr-defined]
    importlib.metadata.entry_points = entry_points  # type: ignore[assignment]
    for group in PLUGIN_GROUPS:
        entry_points(group=f"miniwdl.plugin.{group}")


def miniwdl_run(
    wdl_path: str, inputs_path: str, run_dir: str, cfg: str | None = None, task: str | None = None,
    check_quant: bool = True,
) -> tuple[int, dict[str, Any]]:
    """``miniwdl run`` in-process (``--task task`` when the run names one, ``--no-quant-check``
    when its options say); return (exit status, the JSON miniwdl wrote: outputs or error)."""
    cache_plugin_entry_points()
    result_file = os.path.join(run_dir, f".result-{os.getpid()}.json")
    argv = ["run", wdl_path, "-i", inputs_path, "--dir", run_dir + "/", "-o", result_file, "--verbose"]
    if cfg:
        argv += ["--cfg", cfg]
    if task:
        argv += ["--task", task]
    if not check_quant:
        argv.append("--no-quant-check")
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


# -- the run's miniwdl configuration: the call cache on, in the filesystem's cache ------------------

def call_cache_defaults() -> dict[str, str]:
    """miniwdl's ``[call_cache]`` get and put for the stack's default mode (``[aws_fargate]
    call_cache``: true, false, read or write; the template's CallCache parameter)."""
    chosen = run_options.parse({"call_cache": config.option(config.loader(), "call_cache")})
    return {"get": str(bool(chosen.cache_get)).lower(), "put": str(bool(chosen.cache_put)).lower()}


RUN_CFG = config.RUN_CFG  # in the workflow bundle: this run's miniwdl configuration


#: the [aws_fargate] settings that are each run's own: its id (the backend tags its tasks with it
#: and names its EFS access point after it), its tags (its labels, name and workflow on every
#: task) and its limits (``run_limits``). The driver writes them in the run's configuration file
#: (``run_cfg``), which the backend reads as it reads every other setting.
RUN_OWN_SETTINGS = ("run_id", "tags", *LIMIT_OPTIONS)


def run_own_settings(run: DriverRun) -> dict[str, str]:
    """The run's ``RUN_OWN_SETTINGS``, as the run's configuration file holds them."""
    return {"run_id": run.run_id, "tags": json.dumps(run.tags()), **run_limits(run.read_options())}


def run_cfg(
    workdir: str, cache_dir: str, bundle_dir: str, options: dict[str, Any] | None = None, bundle_uri: str | None = None,
    cache_uri: str = "", own: dict[str, str] | None = None,
) -> str | None:
    """The run's miniwdl configuration file: the driver's defaults (the call cache as the stack's
    ``[aws_fargate] call_cache`` says, its entries in S3 under ``cache_uri`` when given
    (``callcache.s3cache``), its local files in ``cache_dir``; spare copies of inputs at EFS's
    link limit in ``cache_dir/links``), under the
    operator's file (``MINIWDL_CFG``), under the bundle's own ``miniwdl.cfg``. Environment
    variables (the deployment's) still win over all three, as always in miniwdl. None: no
    defaults and no files, miniwdl as configured. ``own``: the run's own ``[aws_fargate]``
    settings (``run_own_settings``), over all three. A file miniwdl could not read raises
    config.InvalidConfig naming it (the bundle's by ``bundle_uri``, where the user put it)."""
    merged = configparser.RawConfigParser()  # raw: values reach miniwdl exactly as written
    if cache_dir:
        merged.read_dict({"call_cache": {**call_cache_defaults(), "dir": os.path.join(cache_dir, "call")}})
        # spare copies of inputs at EFS's hard-link limit (backend.links): shared by the runs, like
        # the staged inputs they are mostly copies of
        merged.read_dict({"aws_fargate": {"link_spares_dir": os.path.join(cache_dir, "links")}})
        if cache_uri:  # the call cache's entries and files in S3 (callcache.s3cache)
            merged.read_dict({"call_cache": {"backend": "aws_s3"}, "aws_fargate": {"call_cache_uri": cache_uri}})
    sources = [f for f in os.environ.get("MINIWDL_CFG", "").split(":") if f and os.path.isfile(f)][:1]
    bundled = os.path.join(bundle_dir, RUN_CFG)
    if os.path.isfile(bundled):
        sources.append(bundled)
    for source in sources:
        config.check_cfg_file(source, bundle_uri if source == bundled and bundle_uri else source, run=source == bundled)
        merged.read(source)
        log.info("miniwdl configuration from %s", source)
    chosen = run_options.parse(options or {})  # the submitter's say for this run
    if chosen.cache_get is not None:
        merged.read_dict({"call_cache": {"get": str(chosen.cache_get).lower(), "put": str(chosen.cache_put).lower()}})
    if own:
        merged.read_dict({config.SECTION: own})
    if not merged.sections():
        return None
    path = os.path.join(workdir, RUN_CFG)
    with open(path, "w") as outfile:
        merged.write(outfile)
    return path


# -- what failed -----------------------------------------------------------------------------------


def tail(path: str | None, lines: int = STDERR_TAIL_LINES) -> list[str]:
    if not path or not os.path.isfile(path):
        return []
    with open(path, "rb") as infile:
        infile.seek(0, os.SEEK_END)
        size = infile.tell()
        infile.seek(max(0, size - 64 * 1024))
        text = infile.read().decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]


def failed_call(result: dict[str, Any]) -> str:
    """The call (as the run reports it: ``attempts.call_path_of``) that failed a run whose
    miniwdl ``result`` is an error; "" if none did (a success, or a failure of no call)."""
    cause = result.get("cause") if isinstance(result.get("cause"), dict) else result
    if "error" not in result or not cause.get("run"):
        return ""
    return attempts.call_path_of(str(cause.get("dir") or ""), str(cause["run"]))


#: what a failed command's stderr or exit status commonly means, and what to change
NO_SPACE = "no space left on device"


def exit_hint(failed: dict[str, Any]) -> str:
    """A hint after "failed with exit status N" where its stderr or status says what to change:
    its storage full (ENOSPC: the ephemeral storage ``runtime.disks`` sizes, where TMPDIR is too),
    or killed by SIGKILL without an out-of-memory reason (137: often memory all the same)."""
    if any(NO_SPACE in line.lower() for line in failed.get("stderr_tail") or ()):
        return " (its storage is full, \"No space left on device\": give it more with runtime.disks)"
    if failed.get("exit_status") == 137:
        return " (killed by SIGKILL: a possible indication that it ran out of memory; give it more with runtime.memory)"
    return ""


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
    if "run" in failed:  # (miniwdl's id of the call; its directory tells a sub-workflow's apart)
        failed.pop("run")
        failed["task"] = failed_call(error)
    stderr = tail(cause.get("stderr_file"))
    if stderr:
        failed["stderr_tail"] = stderr
    doc["failed_task"] = failed
    what = failed.get("task") or error.get("workflow") or error.get("task") or "the run"
    if "out_of_memory" in failed:
        doc["message"] = f"{what} ran out of memory (exit status {failed.get('exit_status')}): {failed['out_of_memory']}"
    elif "exit_status" in failed:
        doc["message"] = f"{what} failed with exit status {failed['exit_status']}" + exit_hint(failed)
    elif failed.get("task") and failed.get("message"):
        # (a call that failed before or without its command's exit: its image, its start, an
        # interruption; miniwdl's RunFailed around it has no message of its own)
        doc["message"] = f"{what} failed: {failed.get('error')}: {failed['message']}"
    else:
        doc["message"] = error.get("message") or f"{what} failed: {failed.get('error', error.get('error'))}"
    return doc


# -- the run's ECS tasks and figures ---------------------------------------------------------------


#: seconds between the calls of a driver's sweep of orphaned tasks (``sweep_orphans``)
ORPHAN_SWEEP_PACE = 0.5


def sweep_orphans() -> threading.Thread | None:
    """Stop WDL tasks left running by drivers that died (see ``sweep``): a driver's start-up is
    the one moment a crashed predecessor's tasks are sure to be noticed (the pipeline's
    DriverStopped and Finalize stop a run's tasks; this is the backstop). It looks at every task
    of the cluster, in the background and paced (``ORPHAN_SWEEP_PACE``): a cluster of ten runs of
    3,000 tasks is some 600 calls, which at once would take the account's ECS request rate from
    every other driver's polls, and would hold this run's start."""
    cluster = config.backend_cluster(config.loader())
    if not cluster:
        return None

    def sweep_now() -> None:
        try:
            stopped = sweep.sweep_orphans(cluster, pace=ORPHAN_SWEEP_PACE)
            if stopped:
                log.warning("stopped %d orphaned task(s) of dead drivers", len(stopped))
        except Exception:  # never let housekeeping fail a run
            log.exception("sweeping orphaned tasks failed")

    sweeper = threading.Thread(target=sweep_now, name="orphan-sweep", daemon=True)
    sweeper.start()
    return sweeper


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


def stop_run_tasks(run: DriverRun, reason: str) -> None:
    """Stop every ECS task of the run this driver launched (by the run and driver tags).
    miniwdl's backends stop the tasks they were waiting on when the stop signal came; this also
    catches a task whose RunTask was still in flight then. Only its own: a driver stopped because
    a new attempt of its run launched another must not stop that one or its tasks (a cancel or a
    timeout of the run stops all of them itself)."""
    cluster = config.backend_cluster(config.loader())
    if not cluster:
        return
    try:
        own = sweep.own_task_arn()
        sweep.stop_run(cluster, run.run_id, reason, exclude=[own] if own else [], driver=sweep.driver_identity())
    except Exception:  # stopping is best effort here: the driver's STOPPED event sweeps again
        log.exception("could not stop the tasks of run %s", run.run_id)


# -- the command (miniwdl-fargate driver) ----------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with StopSignals() as stop:  # from the very start: a stop at any moment ends cleanly
        heartbeat = lifecycle.Heartbeat.from_env()
        if heartbeat is not None:
            heartbeat.on_abandoned = stop.abandon  # (nothing else would stop it: an execution stopped from outside)
            heartbeat.start()
        try:
            run = DriverRun.from_env()
        except ValueError as exn:
            print(str(exn), file=sys.stderr)
            return 2
        return drive(run, stop)
