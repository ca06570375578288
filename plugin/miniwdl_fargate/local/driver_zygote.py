"""Starts local drivers fast: ``python -m ... SOCKET_FD``, a fork server (``forkserver``).

A fresh driver spends most of its first seconds on what is the same in every run: importing
miniwdl, boto3 and the backend, building miniwdl's WDL parsers (``WDL._parser`` builds one Lark
parser per grammar version and start symbol, at first use), scanning the installed packages'
entry points for miniwdl's plugins, importing the plugins' modules and parsing botocore's models
of the services it calls. This process does all that once, then forks one driver per
driver task (``ecs_runner`` asks through SOCKET_FD). A child is then what the driver's container
would be: its own session, a private mount namespace with a tmpfs on /mnt and each volume
bind-mounted at its container path (what ``unshare --mount --propagation private``, or where
local mode does not run as root ``unshare --user --map-root-user --mount ...``, and the mounts
``NamespaceSupport.wrap`` makes give a fresh driver), /dev/null as stdin, the log file as
stdout and stderr, the task's environment and working directory, and then the container's
command, ``miniwdl-fargate driver``, run as its entry point would run it.

A request is one JSON message ``{"argv", "cwd", "env", "mounts", "user_namespace"}`` with the
log file and the status pipe (``user_namespace``: the child makes a user namespace of its own
too, as ``--user --map-root-user`` would); the answer is the driver's pidfd. No thread is
started before a fork.
"""

from __future__ import annotations

import importlib
import logging
import mimetypes
import os
import socket
import sys

from .. import driver
from ..process_exit import ended_as_interpreter
from . import forkserver, remount

#: what the driver imports that costs the most, imported before any fork
LIBRARIES = (
    "boto3",
    "botocore.session",
    "botocore.client",
    "WDL",
    "WDL.CLI",
    "WDL.runtime",
    "miniwdl_fargate.cli",
    "miniwdl_fargate.driver",
    "miniwdl_fargate.backend.fargate",
    # imported by the driver's command and its end (seen in a profile of a forked driver)
    "miniwdl_fargate.client",
    "miniwdl_fargate.local.cli",
    "aws_lambda_powertools.metrics",
    "ruamel.yaml",
    "coloredlogs",
    "tomllib",
)
#: the driver container's command, run in the forked process itself
COMMAND = ["miniwdl-fargate", "driver"]

def preload() -> None:
    """Import the driver's libraries, build the WDL parsers, scan the plugins' entry points and
    parse the AWS models the driver's clients need."""
    for name in LIBRARIES:
        importlib.import_module(name)
    forkserver.build_wdl_parsers()
    driver.cache_plugin_entry_points()  # (scanned here, once for every driver forked)
    import_plugins()
    forkserver.preload_aws()
    # a local driver reads its task metadata from a file:// URL (``sweep.own_task_arn``), and
    # urllib's file handler guesses the file's type: mimetypes reads the system's type tables
    # (/etc/mime.types: about 6 ms of CPU) at its first use, here once instead of in every driver
    mimetypes.init()


def import_plugins() -> None:
    """Import the module of every plugin miniwdl's runner may load, its built-in ones included
    (``WDL.runtime.config.load_all_plugins``): the runner imports each enabled one as it starts,
    and the built-in container backends bring psutil and miniwdl's subprocess backend (a tenth of
    a forked driver's CPU in a profile). A plugin that cannot be imported is left for the driver,
    which reports it as it would have. (Enabled or not: a run's own configuration decides that.)"""
    from WDL.runtime import config

    cfg = config.Loader(logging.getLogger("miniwdl-fargate.driver-zygote"), overrides={})
    for group in driver.PLUGIN_GROUPS:
        for _enabled, plugin in config.load_all_plugins(cfg, group):
            try:
                plugin.load()
            except Exception:  # noqa: BLE001, S112 (the driver meets it again, and says so)
                continue


def private_mounts(mounts: list[list[str]], as_user: bool = False) -> None:
    """A private mount namespace with a tmpfs on /mnt and each (container path, host path)
    bind-mounted (the driver is root here, as on Fargate; ``as_user``: the root of a user
    namespace of its own, local mode not running as root)."""
    remount.private_namespace(as_user)
    remount.mount("tmpfs", "/mnt", "tmpfs", 0, None)
    for container_path, host_path in mounts:
        if not container_path.startswith("/mnt/"):
            raise ValueError(f"local mode mounts volumes under /mnt only, not {container_path}")
        os.makedirs(container_path, exist_ok=True)
        remount.mount(host_path, container_path, None, remount.MS_BIND, None)


def become_driver(request: dict, fds: list[int], server: socket.socket) -> None:
    """In the forked child: turn into the driver's container and run its command; never returns."""
    code = 1
    try:
        (log,) = fds
        forkserver.into_session(server, os.open(os.devnull, os.O_RDONLY), log)
        private_mounts(request["mounts"], request.get("user_namespace", False))
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        listen_for_wakeups()
        code = run_command(list(request["argv"]))
    except SystemExit as exn:
        code = exn.code if isinstance(exn.code, int) else (0 if exn.code is None else 1)
    except BaseException:  # noqa: BLE001 (what an uncaught exception would print, then exit 1)
        import traceback

        traceback.print_exc()
    finally:
        os._exit(ended_as_interpreter(code))


def listen_for_wakeups() -> None:
    """The local ECS runner tells this driver when one of its tasks changed (``wakeups``): its
    pollers then ask at once. The FIFO is in the task's metadata folder (a ``file://`` URL here)."""
    uri = os.environ.get("ECS_CONTAINER_METADATA_URI_V4", "")
    if uri.startswith("file://"):
        from ..backend import poller
        from . import wakeups

        wakeups.listen(uri[len("file://"):], poller.wake_all)


def run_command(argv: list[str]) -> int:
    """The container's command: ``miniwdl-fargate ...`` in this process, as its console script
    would run it; any other program is executed (a new program in the prepared container)."""
    if argv[0] != COMMAND[0]:
        os.execvpe(argv[0], argv, os.environ)
    sys.argv = argv
    from miniwdl_fargate import cli

    return cli.main(argv[1:])


def main() -> int:
    return forkserver.server_main(become_driver, 1, preload)


if __name__ == "__main__":
    sys.exit(main())
