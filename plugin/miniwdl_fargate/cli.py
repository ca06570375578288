"""``miniwdl-fargate``: the product's one console script."""

from __future__ import annotations

import os
import signal
import threading


def _interrupted_while_loading(*_: object) -> None:
    """A Ctrl-C while the command's modules load: exit 130 as a later one does, not a traceback
    from the middle of an import."""
    os._exit(130)


#: (only for this module's imports, in the main thread: an importer's own SIGINT handling is back after)
_LOADING = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler
if _LOADING:
    signal.signal(signal.SIGINT, _interrupted_while_loading)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

from . import arguments  # noqa: E402
from .config import default_cfg_text  # noqa: E402
from .process_exit import ended_as_interpreter  # noqa: E402

if _LOADING:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    """Parse and run one command. No user-facing command ends in a traceback: a bad argument is
    one line and exit 2 (arguments.Parser), a known problem ``error: ...`` from the command, and
    anything else ``error: ...`` from the last-line guard (the traceback with --debug)."""
    parser = arguments.Parser(
        prog="miniwdl-fargate", description="Run WDL workflows on AWS Fargate with zero idle cost."
    )
    parser.add_argument(
        "--debug", action="store_true",
        help=f"show the traceback of an unexpected error (also {arguments.DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("driver", help="run one workflow run (the driver task's entry point; reads RUN_* from the environment)")
    sub.add_parser("config", help="print the commented [aws_fargate] configuration section")
    sweep_p = sub.add_parser(
        "sweep",
        help="stop WDL tasks whose driver task has stopped (orphans), or every task of one run",
        description="Every WDL task is tagged with its run id and its driver. Without --run, stop the running "
        "tasks whose driver is an ECS task that is no longer running; with --run, stop every task of that run.",
    )
    sweep_p.add_argument("--cluster", help="ECS cluster (default: [aws_fargate] cluster of your miniwdl configuration)")
    sweep_p.add_argument("--run", metavar="RUN_ID", type=arguments.run_id, help="stop every running task of this run")
    sweep_p.add_argument("--dry-run", action="store_true", help="only list what would be stopped")

    add_run_commands(sub)

    local = sub.add_parser("local", help="local mode: the whole pipeline on this machine (moto, no AWS account)")
    local_sub = local.add_subparsers(dest="local_command", required=True)
    from .local import cli as local_cli

    local_cli.add_arguments(local_sub)

    words = sys.argv[1:] if argv is None else argv
    args, extra = parser.parse_known_args(arguments.value_only_after_equals(words, ("--local",), frozenset(RUN_COMMANDS)))
    if extra and arguments.takes_late_inputs(args) and not any(word.startswith("-") for word in extra):
        args.inputs = list(args.inputs or []) + extra  # (INPUTS after an option: `submit wf.wdl -i in.json x=1`)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "driver":  # not a user's command: the driver's log keeps any traceback
        from . import driver

        return driver.main()
    try:
        code = dispatch(parser, local_cli, args)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # (`... | head` stopped reading: the rest is not wanted; said nowhere)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 128 + signal.SIGPIPE
    except Exception as exn:
        code = arguments.guard_failure(exn, argv)
    if argv is None and args.command in LEAVE_AT_ONCE:  # (the console script, not a caller's call)
        leave(code)
    return code


#: the user's commands whose process, once done, ends without tearing itself down: the client
#: commands, and local mode's (`local run` exited 1.7 s after its last line: the teardown of moto,
#: its backends' objects and everything the stack had loaded)
LEAVE_AT_ONCE = frozenset({"submit", "status", "list", "logs", "outputs", "cancel", "resume", "cost", "gc", "cache", "local"})


def leave(code: int) -> NoReturn:
    """End the process with ``code`` now: what an interpreter's end does that anyone could see
    (``ended_as_interpreter``), but not its teardown of every module and object one at a time,
    which for a client with boto3 and miniwdl loaded took 0.3 to 0.6 s of a loaded machine after
    the command had printed its last line. These commands hold no file open for writing of their
    own once done (local mode's stack has stopped)."""
    os._exit(ended_as_interpreter(code))


def dispatch(parser: argparse.ArgumentParser, local_cli, args: argparse.Namespace) -> int:
    if args.command == "sweep":
        return sweep_command(args)
    if args.command in RUN_COMMANDS:
        return run_command(args)
    if args.command == "config":
        sys.stdout.write(default_cfg_text())
        return 0
    if args.command == "local":
        return local_cli.run(args)
    parser.error(f"unknown command {args.command}")
    return 2


WORKFLOW_HELP = (
    "the main .wdl file (its folder is uploaded with it: imports, miniwdl.cfg, files read by relative path), "
    "or a `miniwdl zip` bundle (.zip, uploaded as it is)"
)
INPUTS_HELP = (
    "a miniwdl inputs JSON (or YAML) file, local paths relative to it, and/or NAME=VALUE inputs as `miniwdl run` "
    "takes them (over the file's; an array by repeating its NAME). Optional: a bundle's default inputs apply, "
    "these over them input by input"
)
ZIP_HELP = (
    "submit WORKFLOW.wdl as a bundle built with `miniwdl zip`: the WDL and every WDL it imports, from anywhere, "
    "with its folder's other files (a WDL importing from outside its folder or by URL is sent so by itself)"
)
RUN_COMMANDS = ("submit", "status", "list", "logs", "outputs", "cancel", "resume", "cost", "gc", "cache", "api-proxy")


def add_run_commands(sub: argparse._SubParsersAction) -> None:
    where = argparse.ArgumentParser(add_help=False)
    group = where.add_argument_group("which deployment")
    group.add_argument("--stack", help="CloudFormation stack name (default: MINIWDL_FARGATE_STACK, or samconfig.toml's)")
    group.add_argument("--region", help="AWS region (default: samconfig.toml's, or your AWS configuration's)")
    group.add_argument(
        "--local", nargs="?", const="", metavar="=FILE",
        help="the local-mode stack that `miniwdl-fargate local up` serves; another stack's file as --local=FILE "
        "(default ~/.local/state/miniwdl-fargate/local.json)",
    )
    p = sub.add_parser("submit", parents=[where], help="submit WORKFLOW.wdl (or a `miniwdl zip` bundle) with its INPUTS: a JSON or YAML file, NAME=VALUE (local files are uploaded)")
    p.add_argument("wdl", metavar="WORKFLOW", help=WORKFLOW_HELP)
    p.add_argument("inputs", metavar="INPUTS", nargs="*", help=INPUTS_HELP)
    p.add_argument("--name", type=arguments.run_name, help="run name (default: the workflow's name and the time)")
    p.add_argument("--follow", "-f", action="store_true", help="show progress until the run ends, then its outputs or error")
    p.add_argument("--zip", action="store_true", help=ZIP_HELP)
    arguments.add_input_arguments(p)
    arguments.add_task_argument(p)
    arguments.add_quant_check_argument(p)
    arguments.add_import_path_argument(p)
    add_option_arguments(p)
    p = sub.add_parser(
        "api-proxy", parents=[where],
        help="serve the stack's API (runs and GA4GH WES) on 127.0.0.1, signing each request with SigV4 (for WES clients that cannot)",
    )
    p.add_argument("--port", type=arguments.port, default=8080, help="the local port (default 8080; 0: any free port)")
    p = sub.add_parser("status", parents=[where], help="a run's status, timings, task counts, outputs or error")
    p.add_argument("run_id", metavar="RUN", type=arguments.run_id)
    p.add_argument("--json", action="store_true", help="print the whole description as JSON")
    p = sub.add_parser("list", parents=[where], help="list runs, newest first within each name")
    p.add_argument("--name", type=arguments.run_name, help="only runs of this name")
    p.add_argument("--limit", type=arguments.positive_int, default=50, help="at most this many runs (default 50)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("logs", parents=[where], help="the driver's log, or a task's (--task NAME)")
    p.add_argument("run_id", metavar="RUN", type=arguments.run_id)
    p.add_argument("--task", metavar="NAME", help="the calls NAME names: a call's name (greet: call-greet-0-…, call-greet-1-…; a sub-workflow's: "
                   "its calls), a call id or its start (call-greet-1), or call-sub/call-x")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    p = sub.add_parser("outputs", parents=[where], help="a run's outputs (File values as s3:// URIs)")
    p.add_argument("run_id", metavar="RUN", type=arguments.run_id)
    p.add_argument("--download", metavar="DIR", help="download the output files into DIR")
    p.add_argument("--overwrite", action="store_true", help="with --download: replace files already in DIR")
    p = sub.add_parser("cancel", parents=[where], help="cancel a run: its execution, its driver and every task")
    p.add_argument("run_id", metavar="RUN", type=arguments.run_id)
    p = sub.add_parser(
        "resume", parents=[where],
        help="a new run of a FAILED or CANCELLED run: its workflow, inputs and options, its finished calls from the call cache",
    )
    p.add_argument("run_id", metavar="RUN", type=arguments.run_id)
    p.add_argument("--follow", "-f", action="store_true", help="show progress until the new run ends, then its outputs or error")
    add_option_arguments(p, " (overrides the resumed run's own)")
    p = sub.add_parser("cost", parents=[where], help="the runs' estimated cost per label value (their cost.json added up)")
    p.add_argument("--label", metavar="KEY", help="only this label (e.g. project)")
    p.add_argument("--name", type=arguments.run_name, help="only runs of this name")
    p.add_argument("--limit", type=arguments.positive_int, default=1000, help="at most this many runs (default 1000)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser(
        "gc", parents=[where], help="remove finished runs' directories left on the stack's EFS",
        description="Runs as a task of the driver's task definition (EFS is mounted only in the stack's VPC) and "
        "prints what it removed. A run's directory goes when its status.json says SUCCEEDED, or FAILED or "
        "CANCELLED more than --keep-failed-days ago; never while the run is SUBMITTED, STARTING or RUNNING.",
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed, and why")
    p.add_argument("--keep-failed-days", type=arguments.days, metavar="DAYS",
                   help="keep failed and cancelled runs' directories this long (default: the stack's KeepFailedRunDays)")
    p.add_argument("--here", action="store_true",
                   help="collect the EFS mounted here ([aws_fargate] efs_mountpoint), as the gc task does")
    p.add_argument("--bucket", help="with --here: the runs bucket (the runs' status.json)")
    p.add_argument("--report", metavar="KEY", help="with --here: also write the report to this key of --bucket")

    p = sub.add_parser("cache", help="the call cache: why a call was reused or ran again (cache explain RUN CALL)")
    cache = p.add_subparsers(dest="cache_command", required=True, metavar="explain")
    p = cache.add_parser(
        "explain", parents=[where],
        help="whether a call of RUN was reused (from which run), or what differed from the closest earlier call",
    )
    p.add_argument("run_id", metavar="RUN", type=arguments.run_id)
    p.add_argument("call", metavar="CALL", help="a call of RUN: its directory (call-greet-0) or its task's name (greet)")


def add_option_arguments(p: argparse.ArgumentParser, which: str = "") -> None:
    """``--label`` and ``--option`` (run_options.parse_assignments)."""
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help=f"a label of the run: an AWS tag of its driver and every task (repeatable){which}")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a run option (repeatable): call_cache=true|false|read|write, max_run_hours=H, "
                   f"max_cost_usd=USD, max_concurrent_tasks=N, max_vcpus=N, task=NAME, quant_check=false{which}")


def run_command(args: argparse.Namespace) -> int:
    from . import client
    from .runs import run_prefix
    from .status import UnreadableStatus
    from .upload import RunInputError

    if args.command == "gc" and args.here:
        return gc_here(args)
    if args.command == "gc" and (args.bucket or args.report):
        print("error: --bucket and --report go with --here (a stack's gc finds its bucket itself)", file=sys.stderr)
        return 2
    try:
        if args.command in ("submit", "resume"):  # everything the user gave is checked before connecting
            from .run_options import OptionsProblems, parse_assignments

            try:
                options = parse_assignments(args.label, args.option, getattr(args, "task", None),
                                            getattr(args, "no_quant_check", False))
            except OptionsProblems as exn:
                raise RunInputError(str(exn)) from None
        if args.command == "submit":
            from .upload import prepare, scratch_folder

            zip_into = scratch_folder() if args.zip else None
            try:
                inputs_file, assignments = arguments.inputs_and_assignments(args.inputs, arguments.input_option(args.input_file))
            except ValueError as exn:
                raise RunInputError(str(exn)) from None
            prepared = prepare(
                args.wdl, inputs_file if inputs_file is not None else {}, args.name, options, zip_into, assignments,
                empty=args.empty, none=args.none, import_path=args.path,
            )
        if args.command == "outputs" and args.download:
            client.check_download_dir(args.download)
        deployment = client.connect(args.stack, args.region, args.local)
        if args.command == "submit":
            name, run_id, version = client.submit(deployment, prepared)
            print(f"submitted run {run_id} (s3://{deployment.bucket}/{run_prefix(name)}inputs.json)", file=sys.stderr)
            # the pipeline's answer first: "submitted" must not stand for a run it refuses
            if prepared.refusal is not None:
                return _finish(client, {"run_id": run_id, "status": "FAILED", "error": prepared.refusal})
            if not args.follow:
                if not prepared.answered:
                    print(f"warning: the pipeline has not taken run {run_id} yet (see `{_command(args, 'status', run_id)}`)", file=sys.stderr)
                client.emit({"run_id": run_id, "name": name})
                return 0
            return _finish(client, _followed(args, deployment, run_id, name=name, inputs_version=version))
        if args.command == "status":
            doc = client.describe(deployment, args.run_id)
            print(json.dumps(doc, indent=2, default=str) if args.json else client.status_text(doc))
            return 0
        if args.command == "list":
            found, stopped_at = client.list_runs(deployment, args.limit, args.name, on_unreadable=_warn)
            if args.json:
                client.emit([r.model_dump() for r in found])
            else:
                print(client.runs_table(found))
            if stopped_at is not None:  # (runs go by name: the newest may be among those left out)
                _warn(f"more runs than --limit {args.limit}: the list goes by run name, each name's newest first; "
                      "give a larger --limit, or --name NAME for one name's runs")
            return 0
        if args.command == "logs":
            incomplete = client.print_logs(deployment, args.run_id, args.task, args.follow)
            for problem in incomplete:
                _warn(problem)
            return 1 if incomplete else 0
        if args.command == "outputs":
            doc = client.describe(deployment, args.run_id)
            if doc["status"] != "SUCCEEDED":
                raise client.ClientError(f"run {args.run_id} is {doc['status']}: no outputs (see `{_command(args, 'status', args.run_id)}`)")
            if args.download:
                got = client.download_outputs(doc["outputs"], args.download, doc["results"], args.overwrite)
                print(f"downloaded {len(got)} file(s) into {args.download}", file=sys.stderr)
                elsewhere = client.outside_results(doc["outputs"], doc["results"])
                if elsewhere:
                    _warn(f"{len(elsewhere)} s3:// value(s) not under the run's results left as they are (e.g. {elsewhere[0]}): "
                          "Strings, or File outputs the workflow gave as URIs")
            client.emit(doc["outputs"])
            return 0
        if args.command == "cost":
            doc = client.cost_by_label(deployment, args.limit, args.name, on_unreadable=_warn)
            if args.label is not None:
                doc["by_label"] = {k: v for k, v in doc["by_label"].items() if k == args.label}
            print(json.dumps(doc, indent=2) if args.json else client.cost_table(doc))
            return 0
        if args.command == "cache":  # (explain, the one cache command)
            print("\n".join(client.explain_call(deployment, args.run_id, args.call)))
            return 0
        if args.command == "cancel":
            final = client.cancel(deployment, args.run_id)
            print(f"run {args.run_id} {final.status}", file=sys.stderr)
            return 0
        if args.command == "resume":
            record = client.resume(deployment, args.run_id, options)
            print(f"resumed run {args.run_id} as run {record.run_id}", file=sys.stderr)
            if not args.follow:
                client.emit({"run_id": record.run_id, "name": record.name, "resumed_from": args.run_id})
                return 0
            return _finish(client, _followed(args, deployment, record.run_id))
        if args.command == "api-proxy":
            return serve_api_proxy(deployment, args.port)
        if args.command == "gc":
            report = client.collect_remotely(deployment, args.dry_run, args.keep_failed_days)
            print("\n".join(client.gc_lines(report)))
            return 1 if any(d["action"] in ("partly removed", "unknown") for d in report["directories"]) else 0
    except (client.ClientError, RunInputError, UnreadableStatus) as exn:
        print(f"error: {exn}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


def _followed(args: argparse.Namespace, deployment: Any, run_id: str, **known: Any) -> dict[str, Any]:
    """``client.follow`` of a run this command started; interrupted (Ctrl-C), it says that the run
    goes on (and bills, on AWS) and how to stop it: only the following stopped."""
    from . import client

    try:
        return client.follow(deployment, run_id, **known)
    except KeyboardInterrupt:
        print(f"\nstopped following run {run_id}; the run goes on (`{_command(args, 'status', run_id)}`; to stop it: "
              f"`{_command(args, 'cancel', run_id)}`)", file=sys.stderr)
        raise


def serve_api_proxy(deployment: Any, port: int) -> int:
    """``api-proxy``: the stack's API, SigV4-signed on the way, on 127.0.0.1 until Ctrl-C; a local
    stack's API needs no signing (``local up`` serves it)."""
    import boto3

    from . import client
    from .api_proxy import SigningProxy, stage_url

    if deployment.local:
        raise client.ClientError("a local stack's API is served without signing by `miniwdl-fargate local up` (--api-port)")
    credentials = boto3.session.Session().get_credentials()  # the caller's: environment, profile, SSO, role
    if credentials is None:
        raise client.ClientError("no AWS credentials found to sign requests with (configure a profile, SSO or keys)")
    with SigningProxy(stage_url(deployment.outputs["ApiUrl"]), credentials, deployment.region, port=port) as url:
        print(f"{deployment.outputs['ApiUrl']} signed at {url}: the run API at {url}/runs, GA4GH WES at {url}/ga4gh/wes/v1", file=sys.stderr)
        print("Ctrl-C stops it", file=sys.stderr)
        threading.Event().wait()
    return 0


def gc_here(args: argparse.Namespace) -> int:
    """``gc --here``: collect the run directories of the EFS mounted here (what the gc task runs),
    print the report as JSON and, with --report, write it to the bucket. It stops collecting after
    ``gc_task.MAX_SECONDS`` and ends a little after that whatever it is doing (no task of it,
    started by a schedule nothing watches, bills for good)."""
    import logging
    import threading
    import time

    from . import config, efs_cleanup, gc_task, s3io

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = config.loader()
    mountpoint = str(config.option(cfg, "efs_mountpoint"))
    if not args.bucket or not mountpoint:
        print("error: gc --here needs --bucket and [aws_fargate] efs_mountpoint (MINIWDL__AWS_FARGATE__EFS_MOUNTPOINT)", file=sys.stderr)
        return 2
    days = args.keep_failed_days if args.keep_failed_days is not None else float(config.option(cfg, "keep_failed_run_days"))  # type: ignore[arg-type]
    cache_days = float(config.option(cfg, "keep_unused_cache_days"))  # type: ignore[arg-type]
    deadline = time.monotonic() + gc_task.MAX_SECONDS
    watchdog = threading.Timer(gc_task.MAX_SECONDS + gc_task.EXIT_GRACE_SECONDS, os._exit, (124,))
    watchdog.daemon = True
    watchdog.start()
    try:
        report = efs_cleanup.collection(os.path.join(mountpoint, "runs"), args.bucket, days, args.dry_run, cache_days, deadline)
        if args.report:
            s3io.put_json(args.bucket, args.report, report)
    finally:
        watchdog.cancel()
    print(json.dumps(report, indent=2))
    return 0


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _command(args: argparse.Namespace, *words: str) -> str:
    """A command line to suggest: ``miniwdl-fargate WORDS`` against the same deployment."""
    where = [f"--local={args.local}" if args.local else "--local"] if args.local is not None else []
    where += [f"--stack {args.stack}"] if getattr(args, "stack", None) else []
    where += [f"--region {args.region}"] if getattr(args, "region", None) else []
    return " ".join(["miniwdl-fargate", *words, *where])


def _finish(client, doc: dict) -> int:
    """A run's end said: its outputs (0), its error (1), or the refusal of its submission (2: bad
    input, as for everything refused before anything starts)."""
    if doc["status"] == "SUCCEEDED":
        client.emit({"run_id": doc["run_id"], "outputs": doc.get("outputs", {}), "results": doc.get("results")})
        return 0
    error = doc.get("error") or doc
    if isinstance(error, dict) and error.get("error") == "InvalidSubmission":  # one line, as for any bad input
        print(f"error: run {doc['run_id']} was refused: {client.manage.problems_text(error)}", file=sys.stderr)
        return 2
    client.emit(client.shown_error(error, doc.get("error_json", "")) if isinstance(error, dict) else error, sys.stderr)
    return 1


def sweep_command(args: argparse.Namespace) -> int:
    import logging

    from . import config, sweep

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    cluster = args.cluster or config.FargateSettings.from_cfg(config.loader()).cluster
    if args.run:
        found = sweep.run_tasks(cluster, args.run)
    else:
        found = sweep.orphans(cluster)
    for task in found:
        tags = sweep.tags_of(task)
        print(f"{task['taskArn']}\trun={tags.get(sweep.RUN_TAG, '?')}\tdriver={tags.get(sweep.DRIVER_TAG, '?')}")
    if args.dry_run:
        print(f"{len(found)} task(s) would be stopped (dry run)", file=sys.stderr)
        return 0
    reason = f"miniwdl-fargate sweep: run {args.run} stopped" if args.run else "miniwdl-fargate sweep: driver gone"
    stopped = sweep.stop_tasks(cluster, [t["taskArn"] for t in found], reason)
    print(f"stopped {len(stopped)} of {len(found)} task(s) in cluster {cluster}", file=sys.stderr)
    return 0 if len(stopped) == len(found) else 1


if __name__ == "__main__":
    sys.exit(main())
