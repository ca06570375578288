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

    local = sub.add_parser("local", help="local mode: the whole pipeline on this machine (moto, no AWS account)")
    local_sub = local.add_subparsers(dest="local_command", required=True)
    from .local import cli as local_cli

    local_cli.add_arguments(local_sub)

    args = parser.parse_args(argv)
    if args.command == "driver":
        from . import driver

        return driver.main()
    if args.command == "config":
        sys.stdout.write(default_cfg_text())
        return 0
    if args.command == "local":
        return local_cli.run(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
