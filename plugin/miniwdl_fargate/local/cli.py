"""``miniwdl-fargate local ...``: local mode from the command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .. import arguments, aws, client, s3io

if TYPE_CHECKING:
    from .gateway import Gateway


#: where `local up` serves the API over HTTP unless told (`--api-port`)
DEFAULT_API_PORT = 8080

ZIP_HELP = (
    "run WORKFLOW.wdl as a bundle built with `miniwdl zip`: the WDL and every WDL it imports, from anywhere "
    "(not its folder's other files)"
)


def add_arguments(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser(
        "up",
        help="serve the local stack until interrupted, for `miniwdl-fargate submit|status|list|logs|outputs|cancel|resume|cost|cache|gc --local`",
        description="Deploy template.yaml into an embedded moto server and keep it running (Ctrl-C stops it). "
        "The commands that work on a deployed stack work on this one with --local.",
    )
    up.add_argument("--state-dir", help="where local mode keeps EFS and logs (default: a new temp dir)")
    up.add_argument("--template", type=arguments.existing_file, help="the SAM template to deploy (default: this checkout's template.yaml)")
    up.add_argument("--file", help=f"where to write how to reach it (default {client.LOCAL_FILE})")
    up.add_argument(
        "--api-port", type=arguments.port, default=None, metavar="PORT",
        help="serve the run API and GA4GH WES over HTTP on 127.0.0.1:PORT, as API Gateway would "
        f"(default {DEFAULT_API_PORT}, or any free port if it is taken; 0: any free port)",
    )
    add_engine_argument(up)
    add_parameter_argument(up)
    up.add_argument(
        "--seed-s3", metavar="DIR", action="append", default=[], type=arguments.existing_dir,
        help="upload DIR/<bucket>/<key> into local S3 first (stand-ins for data already in your S3)",
    )
    run = sub.add_parser(
        "run",
        help="run a workflow through the whole pipeline on this machine, like `miniwdl run`",
        description=(
            "Deploy template.yaml into an embedded moto server, stage WORKFLOW.wdl (with its folder) or a "
            "`miniwdl zip` bundle and "
            "the local files its INPUTS name into the local bucket, drop inputs.json into runs/<name>/, "
            "follow the run, and print its outputs (File values as s3:// URIs)."
        ),
    )
    run.add_argument(
        "wdl", metavar="WORKFLOW",
        help="the main .wdl file (its folder is staged with it), or a `miniwdl zip` bundle (.zip)",
    )
    run.add_argument(
        "inputs", metavar="INPUTS", nargs="*",
        help="a miniwdl inputs JSON (or YAML) file, local paths relative to it, and/or NAME=VALUE inputs as `miniwdl run` "
        "takes them, over the file's (optional: a bundle's default inputs apply, these over them)",
    )
    run.add_argument("--name", type=arguments.run_name, help="run name (default: the workflow's name and the time)")
    run.add_argument("--zip", action="store_true", help=ZIP_HELP)
    arguments.add_input_arguments(run)
    arguments.add_task_argument(run)
    arguments.add_quant_check_argument(run)
    arguments.add_import_path_argument(run)
    run.add_argument(
        "--seed-s3",
        metavar="DIR",
        action="append",
        default=[],
        type=arguments.existing_dir,
        help="upload DIR/<bucket>/<key> into local S3 first (stand-ins for data already in your S3)",
    )
    run.add_argument("--state-dir", help="where local mode keeps EFS, logs and the mirrored results (default: a new temp dir)")
    run.add_argument("--template", type=arguments.existing_file, help="the SAM template to deploy (default: this checkout's template.yaml)")
    run.add_argument("--timeout", type=arguments.positive_seconds, default=3600, help="seconds to wait for the run (default 3600)")
    run.add_argument(
        "--faults",
        metavar="JSON",
        help='inject faults, e.g. \'{"spot_interruptions": 1, "kill_driver_after_tasks": 2}\' '
        "(see RELIABILITY.md; also MINIWDL_FARGATE_LOCAL_FAULTS)",
    )
    add_engine_argument(run)
    add_parameter_argument(run)
    run.add_argument("-v", "--verbose", action="store_true", help="log what local mode does")


def add_parameter_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parameter", metavar="KEY=VALUE", action="append", default=[], type=arguments.stack_parameter,
        help="deploy the template with this parameter (repeatable), e.g. ManagedInstances=Enabled",
    )


def add_engine_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine", choices=("auto", "podman", "docker", "none"),
        help="how WDL tasks run: in their images with podman or docker (auto: the first that works), "
        "or none: as sandboxed host processes (also MINIWDL_FARGATE_LOCAL_ENGINE)",
    )


def seed(dirs: list[str]) -> int:
    s3 = aws.client("s3")
    count = 0
    for top in dirs:
        top_path = Path(top)
        if not top_path.is_dir():
            raise client.ClientError(f"--seed-s3 {top}: no such folder")
        for bucket_dir in sorted(p for p in top_path.iterdir() if p.is_dir()):
            bucket = bucket_dir.name
            try:
                s3.create_bucket(Bucket=bucket)
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
            for path in sorted(p for p in bucket_dir.rglob("*") if p.is_file()):
                s3.upload_file(str(path), bucket, path.relative_to(bucket_dir).as_posix())
                count += 1
    return count


def stack_already_up(path: Path) -> str | None:
    """What says that the stack whose connection file is ``path`` still serves (its process alive
    and listening): another ``local up`` would write over that file, and the first stack, still
    running with its runs, could no longer be reached with ``--local``. None when it does not."""
    try:
        info = client.read_connection(path)
        os.kill(int(info["pid"]), 0)
        client.check_listening(info["endpoint"])
    except (OSError, ValueError, KeyError, TypeError, client.ClientError):  # (none there, or it outlived its stack)
        return None
    local = "--local" if path == client.LOCAL_FILE else f"--local={path}"
    return (f"a local stack is already up (pid {info['pid']}, {info['endpoint']}, state in {info.get('state_dir')}), reached "
            f"with {local}: stop it first (Ctrl-C where it runs), or give this one a --file of its own (and use --local=FILE)")


def up(args: argparse.Namespace, say) -> int:
    """Serve the local stack until SIGINT, SIGTERM or SIGHUP (``stop_signals_noted``; a second
    Ctrl-C quits without waiting for what it started to stop); write where it is to ``--file``."""
    signals = StopSignals()
    try:
        with stop_signals_noted(signals):
            return serve(args, say, signals)
    except (KeyboardInterrupt, Terminated):
        if signals.forced:
            say(f"interrupted twice: {QUIT_AT_ONCE}")
            return 130
    say("local stack stopped")
    return 0


def serve(args: argparse.Namespace, say, signals: StopSignals) -> int:
    """``local up`` once its signals are noted: deploy, serve until one comes, stop."""
    from .stack import LocalStack

    path = Path(args.file) if args.file else client.LOCAL_FILE
    with LocalStack(state_dir=args.state_dir, template=args.template, parameters=dict(args.parameter), check=signals.check) as stack:
        if args.seed_s3:
            say(f"seeded {seed(args.seed_s3)} object(s) into local S3")
        try:
            gateway = api_gateway(stack.stack_name, args.api_port, say)
        except OSError as exn:  # (only for a port asked for: the default falls back to a free one)
            print(f"error: --api-port {args.api_port}: {exn.strerror or exn}: give another port, or none for a free one",
                  file=sys.stderr)
            return 2
        with gateway as api_url:
            # (said, and written for the other commands, once everything it says is up)
            stack.write_connection(path)
            say(f"local stack up at {stack.endpoint} (bucket s3://{stack.outputs['BucketName']}, state in {stack.state_dir})")
            local = "--local" if path == client.LOCAL_FILE else f"--local={path}"
            say(f"try: miniwdl-fargate submit {local} examples/hello/workflow.wdl examples/hello/inputs.json --follow")
            say(f"the run API at {api_url}/runs, GA4GH WES at {api_url}/ga4gh/wes/v1 (no SigV4: this machine only)")
            say("Ctrl-C stops it")
            try:
                signals.wait()
            finally:
                if path.is_file() and json.loads(path.read_text()).get("endpoint") == stack.endpoint:
                    path.unlink()
    return 0


def api_gateway(stack_name: str, port: int | None, say) -> Gateway:
    """The local API gateway of the stack on ``port``; unless a port was asked for,
    DEFAULT_API_PORT or, if that is taken, any free one (said)."""
    from .gateway import Gateway

    if port is not None:
        return Gateway.for_stack(stack_name, port=port)
    try:
        return Gateway.for_stack(stack_name, port=DEFAULT_API_PORT)
    except OSError as exn:
        say(f"port {DEFAULT_API_PORT} is not free ({exn.strerror}): serving the API on another")
        return Gateway.for_stack(stack_name, port=0)


def mirror(bucket: str, prefix: str, dest: str) -> str:
    """Copy a prefix of the (in-memory) local bucket to disk, so it outlives local mode."""
    target = os.path.join(dest, bucket, prefix)
    s3io.download_prefix(bucket, prefix, target)
    return target


def template_problems(template: Path, parameters: dict[str, str]) -> list[str]:
    """Why ``template`` cannot be deployed with ``parameters``, before anything starts, each
    problem a line: not YAML (where, as PyYAML says it), not UTF-8, YAML that is not a template's
    mapping, or a parameter CloudFormation would refuse (``stack.parameter_problems``). None for
    a template that is not there, which the stack's start reports."""
    import yaml

    from .stack import parameter_problems, read_template

    if not template.is_file():
        return []
    try:
        read = read_template(template)
    except yaml.YAMLError as exn:
        return [f"{template}: not YAML: {' '.join(str(exn).split())}"]
    except UnicodeDecodeError as exn:
        return [f"{template}: not UTF-8 text: {exn.reason} at byte {exn.start}"]
    if not isinstance(read, dict) or not isinstance(read.get("Resources"), dict):
        return [f"{template}: not a template: a YAML mapping with Resources"]
    return [f"--parameter {problem}" for problem in parameter_problems(read, template.name, parameters)]


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    def say(msg: str) -> None:
        print(f"[local] {msg}", file=sys.stderr, flush=True)

    if getattr(args, "engine", None):
        os.environ["MINIWDL_FARGATE_LOCAL_ENGINE"] = args.engine
    if args.local_command in ("up", "run"):
        from .stack import template_path

        # (parameters as CloudFormation refuses them; moto deploys anything)
        problems = template_problems(template_path(args.template), dict(args.parameter))
        if problems:
            print(f"error: {problems[0]}" + (f" (and {len(problems) - 1} more)" if problems[1:] else ""), file=sys.stderr)
            return 2
    if args.local_command == "up":
        from .stack import state_dir_problem

        if problem := state_dir_problem(args.state_dir):
            print(f"error: --state-dir {args.state_dir}: {problem}", file=sys.stderr)
            return 2
        if problem := stack_already_up(Path(args.file) if args.file else client.LOCAL_FILE):
            print(f"error: {problem}", file=sys.stderr)
            return 2
        return up(args, say)
    if args.local_command != "run":
        return 2
    # check what we can before starting anything
    try:
        given = arguments.input_option(getattr(args, "input_file", None))
        args.inputs, args.assignments = arguments.inputs_and_assignments(args.inputs, given)
    except ValueError as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    for path, what in ((args.wdl, "WDL file"), (args.inputs, "inputs file")):
        if isinstance(path, str) and not os.path.isfile(path):
            found = "is a folder, not a file" if os.path.isdir(path) else "not found"
            print(f"error: {what} {path} {found}", file=sys.stderr)
            return 2
    from .stack import state_dir_problem

    import zipfile

    workflow_dir = None if zipfile.is_zipfile(args.wdl) else os.path.dirname(os.path.abspath(args.wdl))  # (a bundle goes alone)
    if problem := state_dir_problem(args.state_dir, workflow_dir):
        print(f"error: --state-dir {args.state_dir}: {problem}", file=sys.stderr)
        return 2
    if args.faults is not None:
        from .faults import ENV, Faults

        try:
            Faults.parse(args.faults)
        except ValueError as exn:
            print(f"error: {exn}", file=sys.stderr)
            return 2
        os.environ[ENV] = args.faults
    started = time.monotonic()
    signals = StopSignals()
    try:
        with stop_signals_noted(signals):
            return run_once(args, say, started, signals)
    except (KeyboardInterrupt, Terminated) as exn:
        signum = exn.signum if isinstance(exn, Terminated) else signal.SIGINT
        said = "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
        if signals.forced:
            say(f"{said} twice: {QUIT_AT_ONCE}")
        elif signals.late:
            say(f"{said} after the run ended: local mode stopped its stack")
        elif not signals.submitting:
            say(f"{said} before the run was submitted: local mode stopped its stack")
        else:
            say(f"{said}: local mode stopped the run and everything it started")
        return 128 + signum


class Terminated(BaseException):
    """``local run`` got SIGTERM (``kill``, ``timeout``, a CI job cancelled, systemd) or SIGHUP
    (its terminal closed). A BaseException, as KeyboardInterrupt is: no ``except Exception`` on
    its way out takes it for an error to handle."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: the signals that stop ``local run`` and ``local up`` (each as its stack stops what it started)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: at most this long between a stop signal and ``local up`` noticing it, whatever its main thread was doing
WAKE_SECONDS = 0.5
#: what ``local run`` and ``local up`` say after a second Ctrl-C (``StopSignals.forced``)
QUIT_AT_ONCE = (
    "local mode quit without waiting for what it started to stop (what a stack killed outright leaves: docs/local-mode.md)"
)


class StopSignals:
    """The stop signals (``STOP_SIGNALS``), as ``stop_signals_noted`` notes them."""

    def __init__(self) -> None:
        self.noted: list[int] = []
        #: a Ctrl-C after another stop signal raised KeyboardInterrupt where it landed (the stack's
        #: stop may not have finished)
        self.forced = False
        #: the signal was raised on leaving the block (it came after the last check)
        self.late = False
        #: ``local run`` began to upload the run's inputs (from then on a run may have started)
        self.submitting = False

    def on_signal(self, signum: int, frame: object) -> None:
        # (no lock: the handler runs between two bytecodes of the main thread, which may hold it)
        if signum == signal.SIGINT and self.noted:
            self.forced = True
            raise KeyboardInterrupt
        self.noted.append(signum)

    def check(self) -> None:
        """Raise KeyboardInterrupt (SIGINT) or Terminated (the others) if one was noted."""
        if self.noted:
            raise KeyboardInterrupt if self.noted[0] == signal.SIGINT else Terminated(self.noted[0])

    def wait(self) -> None:
        """Wait until a stop signal comes, in turns of ``WAKE_SECONDS``: Python runs a signal's
        handler on the main thread once it is back from what it waits on, and a signal that lands
        just before the wait begins, or on another thread, interrupts no wait at all: a wait with
        no end would have waited with it for ever (``lifecycle.SignalWatcher`` says more). A
        sleep, not an event: the handler cannot set an event without its lock, which the main
        thread may hold in the wait it interrupted."""
        while not self.noted:
            time.sleep(WAKE_SECONDS)


@contextlib.contextmanager
def stop_signals_noted(signals: StopSignals | None = None) -> Iterator[StopSignals]:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP (``STOP_SIGNALS``) end ``local run`` and ``local up``
    so that the stack stops everything it started on the way out (the driver, every task's
    process, their mounts): Python's default for SIGTERM and SIGHUP ends the process at once,
    leaving them running (and a task's idmapped mount mounted), and its default for SIGINT raises
    KeyboardInterrupt wherever the main thread is, where code it interrupts can catch it or a
    lock it was taking stays held (then the stack's stop waits on it for ever: seen once in a
    loaded test run). So a signal is only noted where it lands; ``check`` raises KeyboardInterrupt
    (SIGINT) or Terminated (the others) once one was, at the points that call it (the run's
    follower asks before each look), and so does leaving the block (a signal after the last
    check, while the results were copied or the stack stopped, is not dropped: ``late``). A
    Ctrl-C after a first stop signal raises KeyboardInterrupt at once, as Python's default would,
    for whoever will not wait. A signal ignored when this begins stays ignored (a shell starts a
    background job with SIGINT ignored, ``nohup`` a command with SIGHUP ignored)."""
    signals = signals if signals is not None else StopSignals()
    if threading.current_thread() is not threading.main_thread():  # (signals go to the main thread)
        yield signals
        return
    previous = {
        sig: signal.signal(sig, signals.on_signal) for sig in STOP_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN
    }
    try:
        yield signals
        signals.late = bool(signals.noted)
        signals.check()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_once(args: argparse.Namespace, say: Callable[[str], None], started: float, signals: StopSignals) -> int:
    """``local run`` once its arguments are checked: deploy, submit, follow, print, stop
    (``signals.check`` between the steps)."""
    from ..run_options import RunOptions
    from ..upload import RunInputError, prepare, scratch_folder, wait
    from . import changes
    from .stack import CLIENT_POLL_SECONDS, LocalStack

    check = signals.check
    try:
        zip_into = scratch_folder() if args.zip else None
        submission = prepare(
            args.wdl, args.inputs if args.inputs is not None else {}, args.name, zip_into=zip_into,
            options=RunOptions(task=getattr(args, "task", None), quant_check=False if getattr(args, "no_quant_check", False) else None),
            assignments=getattr(args, "assignments", []), empty=getattr(args, "empty", []), none=getattr(args, "none", []),
            import_path=getattr(args, "path", []),
        )
        check()
        # (a Ctrl-C noted while the stack starts stops it between its steps, not once deployed)
        with LocalStack(state_dir=args.state_dir, template=args.template, parameters=dict(args.parameter), check=check) as stack:
            check()
            bucket = stack.outputs["BucketName"]
            say(f"stack deployed into moto ({time.monotonic() - started:.1f}s); bucket s3://{bucket}, state in {stack.state_dir}")
            if args.seed_s3:
                say(f"seeded {seed(args.seed_s3)} object(s) into local S3")
            signals.submitting = True
            # (looks when its run changed, local.changes; a signal stops the wait at once)
            longest, pause = changes.pace(stack.state_dir, CLIENT_POLL_SECONDS, check, changes.RUN_FILE, submission.name)
            name, run_id = submission.upload(bucket, interval=longest, pause=pause)
            say(f"submitted s3://{bucket}/runs/{name}/inputs.json -> run {run_id}")
            if submission.refusal is not None:  # bad input, said on one line as `submit` says it
                from ..pipeline.manage import problems_text

                print(f"error: run {run_id} was refused: {problems_text(submission.refusal)}", file=sys.stderr)
                return 2
            result = wait(
                bucket, stack.outputs["StateMachineArn"], name, run_id, args.timeout,
                on_status=lambda s: say(f"run {run_id}: {s}"), inputs_version=submission.inputs_version,
                interval=longest, check=check, pause=pause,
            )
            check()
            local_copy = mirror(bucket, result.results.split("/", 3)[3], os.path.join(stack.state_dir, "s3"))
    except (RunInputError, client.ClientError) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    except TimeoutError as exn:  # (local mode stopped with the stack: nothing is left running)
        print(f"error: {exn} (--timeout {args.timeout:g}); local mode stopped it", file=sys.stderr)
        return 1
    say(f"{'outputs' if result.status == 'SUCCEEDED' else 'error'}: {result.outputs_uri}")
    say(f"results copied to {local_copy}")
    page = os.path.join(local_copy, "report.html")
    if os.path.isfile(page):
        estimate = result.document.get("estimated_cost_usd")
        cost = f" (estimated cost {estimate:.4f} USD, on AWS at the configured prices)" if estimate is not None else ""
        say(f"run report: {page}{cost}; task timeline {os.path.join(local_copy, 'timeline.svg')}")
    if result.status == "SUCCEEDED":
        print(json.dumps({"run_id": result.run_id, "outputs": result.document.get("outputs", {}), "results": result.results}, indent=2))
        say(f"SUCCEEDED in {time.monotonic() - started:.1f}s")
        return 0
    print(json.dumps(client.shown_error(result.document, result.outputs_uri), indent=2), file=sys.stderr)
    say(f"FAILED: {result.document.get('message', '')}")
    return 1
