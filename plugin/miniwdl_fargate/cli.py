"""``miniwdl-fargate``: the product's one console script."""

from __future__ import annotations

import argparse
import sys

from .config import default_cfg_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="miniwdl-fargate", description="Run WDL workflows on AWS Fargate with zero idle cost."
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
    sweep_p.add_argument("--run", metavar="RUN_ID", help="stop every running task of this run")
    sweep_p.add_argument("--dry-run", action="store_true", help="only list what would be stopped")

    local = sub.add_parser("local", help="local mode: the whole pipeline on this machine (moto, no AWS account)")
    local_sub = local.add_subparsers(dest="local_command", required=True)
    from .local import cli as local_cli

    local_cli.add_arguments(local_sub)

    args = parser.parse_args(argv)
    if args.command == "driver":
        from . import driver

        return driver.main()
    if args.command == "sweep":
        return sweep_command(args)
    if args.command == "config":
        sys.stdout.write(default_cfg_text())
        return 0
    if args.command == "local":
        return local_cli.run(args)
    parser.error(f"unknown command {args.command}")
    return 2


def sweep_command(args: argparse.Namespace) -> int:
    import logging

    from WDL.runtime import config as wdl_config

    from . import sweep
    from .config import FargateSettings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    cluster = args.cluster or FargateSettings.from_cfg(wdl_config.Loader(logging.getLogger("sweep"))).cluster
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
