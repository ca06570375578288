"""The base class shared by the aws_fargate and host_process backends.

Both run the task command in the task's own directory, by its real path: ``container_dir`` is
``host_dir`` (as in miniwdl-aws). On Fargate every task container mounts the shared EFS
filesystem at the same path as the driver, so ``<task dir>/work`` is the same directory, with the
same absolute path, for miniwdl and for the command; locally it is simply the host directory.
Input files are hard-linked (not copied) into ``work/_miniwdl_inputs``, so they cost nothing on
EFS; ``[file_io] copy_input_files`` still makes real copies. ``task_script`` is the one shell
script a container runs.

Subclasses supply ``_start`` (launch the script; it returns the attempt's ``Job``, an object of
the backend's own type), ``_poll`` (wait briefly for news of that job) and ``_stop``.

Every attempt is recorded in ``attempts`` (one process-wide log, read by the driver's run report):
when it was queued, launched, running and stopped, its size and how it ended. A subclass may ask
for another attempt of the command inside the same miniwdl attempt (``_retry_attempt``: the
Fargate backend does so for a task killed for running out of memory); it runs in a fresh work
directory, the way miniwdl's own retries do, at the same path (``reset``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import stat
import time
from abc import abstractmethod
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Callable

from WDL.runtime.error import Interrupted, Terminated
from WDL.runtime.task_container import TaskContainer
from WDL._util import StructuredLogMessage as _

from .. import attempts, config
from .. import nfs
from . import links
from ..miniwdl_fixes import INPUTS_FOLDER


@dataclass
class JobStatus:
    """What a backend knows about a launched task command."""

    running: bool = False
    stopped: bool = False
    exit_code: int | None = None
    reason: str = ""
    detail: dict[str, Any] | None = None
    started_at: float | None = None  # epoch seconds the command started, if the backend knows
    stopped_at: float | None = None  # epoch seconds it stopped, if the backend knows


class Job:
    """One launched attempt of a task command. Each backend subclasses it with what it needs to
    follow and stop the attempt (``FargateJob``: the ECS task; ``HostProcessJob``: the process):
    ``_start`` returns it, ``_poll`` and ``_stop`` take it, and nothing is kept anywhere else."""


class StartAgain(Exception):
    """Raised by ``_exit_code`` when the command never started for a reason that passes (an
    image pull rate-limited or timed out): ``_run`` waits ``delay`` seconds and starts it again
    in the same work directory (nothing ran in it). miniwdl's own retries are not spent."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class InputOutsideDirectory(RuntimeError):
    """A Directory input holds a symbolic link that leads outside it."""


def directory_entries(source: str) -> list[tuple[str, str]]:
    """(path, path inside) of each file of the Directory ``source``, and ("", "<folder>/") of each
    folder, through its links as miniwdl reads a Directory, each once (a link back to a folder it
    is in is not followed again). A link that leads outside the Directory is refused
    (InputOutsideDirectory): miniwdl checks a Directory output's links to files, not to folders,
    and the driver mounts all of EFS, so a task's ``ln -s ../../../<another run> d/x`` would have
    given the next task every file there, hard-linked."""
    bound = os.path.realpath(source)
    found: list[tuple[str, str]] = []

    def walk(folder: str, real_folder: str, rel: str, seen: frozenset[str]) -> None:
        found.append(("", rel or "./"))
        with os.scandir(folder) as listed:
            entries = sorted(listed, key=lambda e: e.name)
        for entry in entries:
            inside = rel + entry.name
            # (resolved only where it is a link: a lookup per path part, on EFS, for each file)
            real = os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(real_folder, entry.name)
            if real != bound and not real.startswith(bound + os.sep):
                raise InputOutsideDirectory(
                    f"Directory input {source}: {inside} is a symbolic link leading outside it ({real}): refused"
                )
            if entry.is_dir():  # (follows links)
                if real not in seen:
                    walk(entry.path, real, inside + "/", seen | {real})
            elif entry.is_file():
                found.append((entry.path, inside))

    walk(source, bound, "", frozenset({bound}))
    return found


def read_only(path: str) -> None:
    """Take the write bits off an input file (each file of an input Directory), as miniwdl's
    Docker backend mounts inputs read-only. The file shares its inode with the staged copy other
    tasks and later runs reuse, so a task writing its input would change theirs: now the write
    fails (EACCES) in the task. It holds for a task that is not root on the filesystem: on EFS the
    access point's non-root POSIX user; locally the sandbox's unprivileged user."""
    paths = [path] if not os.path.isdir(path) else [
        os.path.join(root, name) for root, _dirs, files in os.walk(path) for name in files
    ]
    for each in paths:
        try:
            mode = os.lstat(each).st_mode
            if stat.S_ISREG(mode) and mode & 0o222:
                os.chmod(each, stat.S_IMODE(mode) & ~0o222)
        except OSError:  # not ours to change (standalone, a file of another user): left as is
            pass


class BaseTaskContainer(TaskContainer):
    """A TaskContainer whose command runs in the task's real directory (see the module's doc)."""

    #: copy the command's stdout/stderr to the container's own as well (for its log driver)
    stream_logs: bool = False
    #: seconds between the log forwarder's copies (``log_forwarder``)
    log_forward_seconds: float = 1.0
    #: seconds to wait for news of a running job between checks of ``terminating()``
    status_wait: float = 1.0
    #: every attempt of every task of this process (the driver's run report reads it)

    def __init__(self, cfg: Any, run_id: str, host_dir: str) -> None:
        super().__init__(cfg, run_id, host_dir)
        self.container_dir = host_dir  # the command sees its directory by its real path
        self._inputs_copied = False
        self._input_bytes: int | None = None  # (``input_bytes``, once)
        self._attempt: attempts.Attempt | None = None
        #: how many times the task's container has been started (``script_marker``)
        self._script_starts = 0
        #: the pipeline's run id ("" when miniwdl runs on its own); miniwdl's ``run_id`` is the call's
        self.pipeline_run_id = config.run_id(cfg)
        #: the tags of the run's resources besides the run id, driver and call (``[aws_fargate] tags``)
        self.run_tags = config.tags(cfg)

    # -- what subclasses provide ------------------------------------------------------------

    @abstractmethod
    def _start(self, logger: logging.Logger, script: str, terminating: Callable[[], bool]) -> Job:
        """Launch ``/bin/sh -c script``; return the attempt's job for ``_poll`` and ``_stop``. May
        raise Terminated if ``terminating()`` turns true before the launch happens."""

    @abstractmethod
    def _poll(self, logger: logging.Logger, job: Job, wait: float) -> JobStatus:
        """Wait up to ``wait`` seconds for news and return the job's status."""

    @abstractmethod
    def _stop(self, logger: logging.Logger, job: Job, reason: str) -> None:
        """Stop the job (idempotent)."""

    def _exit_code(self, logger: logging.Logger, job: Job, status: JobStatus) -> int:
        """Turn a stopped job's status into the command's exit code (or raise)."""
        if status.exit_code is None:
            raise RuntimeError(f"task stopped without an exit code: {status.reason}")
        return status.exit_code

    def _retry_attempt(self, logger: logging.Logger, job: Job, exit_code: int) -> bool:
        """After a failed attempt (its ``job``): whether to run the command again at once (having
        changed what it needs, e.g. its size). miniwdl's own retries (``maxRetries``,
        ``preemptible``) are not spent on it."""
        return False

    def _attempt_over(self, job: Job) -> None:
        """The attempt's job ended, however (stopped here or not): give back what it held. (A
        ``_start`` that fails gives back what it took itself.)"""

    def _halted(self, job: Job) -> Exception | None:
        """Why the running attempt must stop now though the run goes on ending (the run's budget
        is spent): the error to fail it with; None: carry on."""
        return None

    def attempt_facts(self) -> dict[str, Any]:
        """What the run report shows of this attempt's size and image, as far as known before
        launch (``attempts.Attempt`` fields)."""
        facts: dict[str, Any] = {"image": str(self.runtime_values.get("docker") or "")}
        if "cpu" in self.runtime_values:
            facts["cpu"] = int(float(self.runtime_values["cpu"]) * 1024)
        if "memory_reservation" in self.runtime_values:
            facts["memory"] = int(self.runtime_values["memory_reservation"]) // (1024 * 1024)
        return facts

    # -- the shared mechanics -----------------------------------------------------------------

    def copy_input_files(self, logger: logging.Logger) -> None:
        super().copy_input_files(logger)
        self._inputs_copied = True

    # -- one place for every attempt ----------------------------------------------------------
    # The command sees its directory by its real path (``container_dir`` is ``host_dir``), so the
    # paths it was given (its inputs under work/_miniwdl_inputs, an output it names by absolute
    # path, [file_io] mount_tmpdir's TMPDIR) name ``work`` on every attempt: where miniwdl's
    # retries move on to work2, stdout2.txt... (which its Docker backend mounts back at
    # .../work), each attempt here runs in ``work`` again, the failed attempt's files renamed
    # aside (``work.try1``, ``stdout.try1.txt``: kept for inspection), as miniwdl-aws does.

    def host_work_dir(self) -> str:
        return os.path.join(self.host_dir, "work")

    def host_stdout_txt(self) -> str:
        return os.path.join(self.host_dir, "stdout.txt")

    def host_stderr_txt(self) -> str:
        return os.path.join(self.host_dir, "stderr.txt")

    def reset(self, logger: logging.Logger) -> None:
        """Before another attempt: the last attempt's work directory and logs renamed aside
        (``work.try<N>``, ``stdout.try<N>.txt``; a task that ended under miniwdl's
        ``[file_io] delete_work`` has none), a fresh ``work``."""
        kept = []
        for path, aside in (
            (self.host_work_dir(), os.path.join(self.host_dir, f"work.try{self.try_counter}")),
            (self.host_stdout_txt(), os.path.join(self.host_dir, f"stdout.try{self.try_counter}.txt")),
            (self.host_stderr_txt(), os.path.join(self.host_dir, f"stderr.try{self.try_counter}.txt")),
        ):
            if os.path.lexists(path):
                os.rename(path, aside)
                kept.append(aside)
        if kept:
            logger.info(_("the last attempt's files kept aside", files=kept))
        super().reset(logger)
        self._inputs_copied = False

    def input_bytes(self) -> int:
        """What the task's input files hold, each once (a Directory's files too): what an attempt
        reads of the shared file system, at least (``attempts.Attempt.efs_read_bytes``)."""
        if self._input_bytes is None:
            files: dict[tuple[int, int], int] = {}
            for host_path in self.input_path_map:
                source = host_path.rstrip("/")
                with contextlib.suppress(OSError):
                    found = os.stat(source)
                    if stat.S_ISDIR(found.st_mode):
                        files.update(_directory_files(os.path.realpath(source), found.st_mtime_ns))
                    else:
                        files[(found.st_dev, found.st_ino)] = found.st_size
            self._input_bytes = sum(files.values())
        return self._input_bytes

    def link_input_files(self, logger: logging.Logger) -> None:
        """Hard-link each input into ``work/_miniwdl_inputs`` (a Directory input becomes a tree of
        directories and hard links). On one filesystem (EFS) this copies no data, and the command
        sees ordinary files; a file that has all the links EFS allows is linked from a spare copy
        (``links``); across filesystems it falls back to copying."""
        stats = links.LinkStats()
        policy = links.LinkPolicy.from_cfg(self.cfg)
        for host_path, container_path in self.input_path_map.items():
            source = host_path.rstrip("/")
            target = self.host_work_path(container_path).rstrip("/")
            if os.path.lexists(target):
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.isdir(source):
                for path, rel in directory_entries(source):
                    if rel.endswith("/"):
                        os.makedirs(os.path.join(target, rel), exist_ok=True)
                    else:
                        links.link_or_copy(path, os.path.join(target, rel), source, stats, policy)
            else:
                links.link_or_copy(source, target, source, stats, policy)
            read_only(target)
        if stats.spares or stats.copied:
            logger.info(_("linked input files", files=stats.linked, spare_copies=stats.spares, copied=stats.copied))
        elif self.input_path_map:
            logger.debug(_("linked input files", files=stats.linked))

    def write_command(self, command: str) -> str:
        path = os.path.join(self.host_dir, "command")
        with open(path, "w") as outfile:
            for key, value in self.runtime_values.get("env", {}).items():
                outfile.write(f"export {key}={shlex.quote(str(value))}\n")
            outfile.write(command)
        return path

    #: the file a task's script makes first, in its task directory (``script_marker``): a
    #: command that failed without it never ran (``script_ran``)
    SCRIPT_STARTED = ".miniwdl-fargate-started"

    def script_marker(self) -> str:
        """This start's marker: a name of its own each time the task's container is started (a
        name the driver never looked up: no negative entry of its NFS cache hides it)."""
        return os.path.join(self.host_dir, f"{self.SCRIPT_STARTED}.{self._script_starts}")

    def script_ran(self) -> bool:
        """Whether the last start's script ran its first line (as EFS has it now), its marker then
        removed. False: the container's /bin/sh never ran it (no /bin/sh in the image, or an image
        built for another CPU: "exec format error"), or could not write there."""
        marker = self.script_marker()
        ran = nfs.revalidate_file(marker)
        with contextlib.suppress(OSError):
            os.unlink(marker)
        return ran

    def task_script(self) -> str:
        """The shell script the task's container runs (``/bin/sh -c``): the WDL command, in the
        task's own work directory, by its real path.

        - The command runs in ``<task dir>/work`` on EFS, mounted at the same path as in the driver
          (``container_dir`` is ``host_dir``, as in miniwdl-aws): ``pwd -P``, ``realpath`` of an
          input and outputs named by absolute paths all mean what they say. Nothing is created
          outside EFS first, so an image whose USER is not root runs as well.
        - With ``command_shell`` (``/bin/bash`` by default; flags too, ``/bin/bash -x``, as miniwdl
          takes it) where the image has it, else ``/bin/sh`` (said in the container's log): an
          image without bash runs a command that needs only sh.
        - ``TMPDIR`` is a fresh directory in the container's own filesystem (``/tmp``: Fargate's
          ephemeral storage, which ``runtime.disks`` sizes), removed afterwards; a command that sets
          its own (``[file_io] mount_tmpdir``) overrides it. Where the container's environment
          names another TMPDIR (a task's EBS scratch volume) the directory is made there, or in
          ``/tmp`` if the container's user cannot write there.
        - ``TAR_OPTIONS=--no-same-owner`` unless the container's environment sets it: through the
          run's EFS access point every file belongs to its POSIX user (a user that is not root,
          https://docs.aws.amazon.com/efs/latest/ug/efs-access-points.html), so no one may give a
          file to another owner, and GNU tar run as root (most images' user), which restores each
          extracted file's owner, failed ("Cannot change ownership ... Operation not permitted",
          exit 2) on any archive made by someone else: a reference bundle's ``tar -xzf``.
        - The shell waits for the command in the background and passes a SIGTERM on (a stop, or a
          Spot interruption's two-minute warning): a foreground child of ``sh`` would not get it.
          A TERM that comes before the shell knows the command's process id is passed on as soon
          as it does. The script exits with the command's own status then too (a command that
          traps TERM and exits 7 exits 7), not with the interrupted ``wait``'s 143.
        - With ``stream_logs``, the command's stdout/stderr are also copied to the container's own
          (``log_forwarder``), every byte exactly once and in order, all of it before the script
          exits.
        - Each path is written once (the stdout/stderr files' in shell variables): the script
          travels in RunTask's overrides, at most 8,192 characters with their JSON
          (``fargate.MAX_OVERRIDES_CHARS``), and a task deep in subworkflows and scatters has long
          paths.
        """
        q = shlex.quote
        host = self.host_dir
        out, err = '"$stdout_txt"', '"$stderr_txt"'
        shell = self.cfg.get("task_runtime", "command_shell")
        closed = "3<&- 4<&- " if self.stream_logs else ""  # (the forwarder's descriptors are not the command's)
        assert os.path.dirname(self.script_marker()) == os.path.dirname(self.host_stdout_txt())
        lines = [
            f"stdout_txt={q(self.host_stdout_txt())}; stderr_txt={q(self.host_stderr_txt())}",
            # (``script_ran``: the script's first command ran; beside stdout.txt, its path not written
            # again. `command :`, not `:`: a special built-in whose redirection fails ends a POSIX
            # shell, as where the image's user may not write the task's folder, standalone)
            f'command : 2>/dev/null > "${{stdout_txt%/*}}/"{q(os.path.basename(self.script_marker()))}',
            f"cd {q(self.host_work_dir())} || exit 1",
            # the shell and its flags, as miniwdl takes command_shell ("/bin/bash -x"): the program
            # is its first word; where the image has none, /bin/sh, said in the container's log
            f"shell={q(shell)}",
            'set -- $shell; [ -x "$1" ] || { echo "miniwdl-fargate: the image has no $1; the command runs under /bin/sh" >&2; shell=/bin/sh; }',
            'scratch=$(mktemp -d "${TMPDIR:-/tmp}/miniwdl.XXXXXX" 2>/dev/null) || {',
            # said in the container's log (the task's stderr() is the command's alone): a 500 GiB
            # task silently on /tmp would fail later as "no space"
            '  [ -n "$TMPDIR" ] && echo "miniwdl-fargate: scratch $TMPDIR is not writable by uid $(id -u 2>/dev/null);'
            ' TMPDIR is /tmp instead (a non-root image user gets an EBS volume only if the task definition names it)" >&2',
            '  scratch=$(mktemp -d /tmp/miniwdl.XXXXXX 2>/dev/null); }',
            '[ -n "$scratch" ] && export TMPDIR="$scratch"',
            '[ -n "${TAR_OPTIONS+x}" ] || export TAR_OPTIONS=--no-same-owner',
        ]
        if self.stream_logs:
            lines += self.log_forwarder(out, err, self.log_forward_seconds)
        lines += [
            # TERM is passed on once, whenever it comes: a TERM before `child=$!` (the command
            # may already be running, even writing) is passed on as soon as there is a child
            'stop_child() { [ -z "$child" ] || [ -n "$sent" ] || { sent=1; kill -TERM $child 2>/dev/null; }; }',
            "termed=; sent=; child=; trap 'termed=1; stop_child' TERM",
            f'$shell {q(os.path.join(host, "command"))} {closed}>> {out} 2>> {err} & child=$!',
            '[ -z "$termed" ] || stop_child',
            "wait $child; rc=$?",
            "while kill -0 $child 2>/dev/null; do wait $child; rc=$?; done",
            # a TERM ended the wait (128+15) and the shell reaped the command before `kill -0`
            # looked: its own status is still the shell's to report (127 if it was reported)
            '[ -z "$termed" ] || [ "$rc" -le 128 ] || { wait $child 2>/dev/null; own=$?; [ "$own" -eq 127 ] || rc=$own; }',
            '[ -n "$scratch" ] && rm -rf "$scratch"',
            *self.after_command(),
        ]
        if self.stream_logs:
            lines += self.log_forwarder_drain(out, err)
        lines.append("exit $rc")
        return "\n".join(lines) + "\n"

    def after_command(self) -> list[str]:
        """Shell lines the task script runs once the command ended (its status in ``$rc``, which
        they leave as it is): none here; a backend's own (``fargate``: files given back to the
        invoking user)."""
        return []

    @staticmethod
    def log_forwarder(out: str, err: str, interval: float = 1.0) -> list[str]:
        """Shell lines starting the copy of the command's stdout/stderr files (``out``, ``err``:
        shell words naming them, quoted paths or quoted variables) to
        the container's own stdout/stderr (its log driver: CloudWatch Logs), as they grow.

        The script holds each file open on its own descriptor (3: stdout, 4: stderr) and the
        forwarder, a background subshell sharing those open files, copies from where the last
        copy stopped to the end with ``cat <&3`` every ``interval`` seconds: the kernel keeps the
        offset, so no byte is copied twice or skipped, however much the command writes. A file
        still empty (``[ -s ]``, the shell's own test) has nothing to copy: no ``cat`` is started
        for it, so a short task whose command writes little starts one or two programs for its
        logs instead of four or five. POSIX sh and ``cat``/``sleep`` only (busybox images have
        them; ``tail --pid`` is GNU's). The files themselves stay exactly as the command wrote
        them (miniwdl reads them); the command writes them in the same container, so its own
        NFS client's view of their size is current.

        Between copies it naps with ``sleep`` in the background and ``wait``: a trapped signal
        ends a ``wait`` at once, where it would wait for a foreground ``sleep`` to finish
        (POSIX, Shell Command Language 2.11 "Signals and Error Handling"), so a stopped command's
        task ends without waiting out the nap. A TERM that arrives while it copies (a command that
        ends while the forwarder copies what it wrote) runs the trap only once that copy is done
        (the same section): the trap then ends the nap if one has started, and a nap started
        once told to stop is ended at once, so the script does not wait out a nap it was told to
        skip (it once did, up to ``interval`` seconds, in about a third of short tasks; bash can
        still, rarely, when the TERM lands just as its ``wait`` begins), nor leaves one behind.
        A nap is ended with KILL: a TERM that reaches its process before it is ``sleep`` (a
        forked shell still holding the trap) is lost. The nap's own output goes nowhere: it
        holds no descriptor of the container's output open after the script ends."""
        copy = BaseTaskContainer.log_copy(out, err)
        return [
            f"exec 3<{out} 4<{err}",
            # told to stop (TERM), the forwarder ends after the copy it is making, never in the
            # middle of one; a TERM before its trap is set ends it before its first copy
            "( stop=; nap=; trap 'stop=1; [ -z \"$nap\" ] || kill -9 $nap 2>/dev/null' TERM; "
            f"while [ -z \"$stop\" ]; do {copy}; "
            f"sleep {interval:g} </dev/null >/dev/null 2>&1 & nap=$!; "
            "if [ -n \"$stop\" ]; then kill -9 $nap 2>/dev/null; else wait $nap; fi; nap=; done ) & fwd=$!",
        ]

    @staticmethod
    def log_copy(out: str, err: str) -> str:
        """Shell: copy what the command's stdout/stderr files (shell words naming them, open on 3 and 4)
        hold beyond the last copy to the container's stdout/stderr; an empty file is skipped.
        The file open on the descriptor is asked too (``/dev/fd/N``, which a container has) where
        the path says empty: a command that renamed or removed its own stdout.txt still writes
        to the file it had open, and that is what is copied."""
        return (
            f"if [ -s {out} ] || [ -s /dev/fd/3 ]; then cat <&3; fi; "
            f"if [ -s {err} ] || [ -s /dev/fd/4 ]; then cat <&4 >&2; fi"
        )

    @staticmethod
    def log_forwarder_drain(out: str, err: str) -> list[str]:
        """Shell lines run once the command ended: stop the forwarder, wait until it has, then
        copy what it had not (from the same shared offsets) before the script exits."""
        return [
            # (a forwarder stopped before its trap was set dies of the TERM, which some shells
            # report on stderr, "Terminated": that is not the command's output)
            "{ kill -TERM $fwd; while kill -0 $fwd; do wait $fwd; done; } 2>/dev/null",
            BaseTaskContainer.log_copy(out, err),
            "exec 3<&- 4<&-",
        ]

    def _run(self, logger: logging.Logger, terminating: Callable[[], bool], command: str) -> int:
        self.write_command(command)
        while True:
            try:
                exit_code, job = self._run_attempt(logger, terminating)
            except StartAgain as again:
                self._wait_to_start_again(logger, again, terminating)
                continue
            if self.success_exit_code(exit_code) or terminating() or not self._retry_attempt(logger, job, exit_code):
                return exit_code
            self._fresh_attempt(logger)

    def _wait_to_start_again(self, logger: logging.Logger, again: StartAgain, terminating: Callable[[], bool]) -> None:
        """Wait ``again.delay`` seconds before starting the command again (Terminated if the run
        ends meanwhile)."""
        logger.warning(_("task did not start; starting it again", reason=str(again), delay=round(again.delay, 1)))
        deadline = time.monotonic() + again.delay
        while time.monotonic() < deadline:
            if terminating():
                raise Terminated()
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    def refresh_task_dir(self, logger: logging.Logger) -> None:
        """After the task stopped, before miniwdl reads its outputs: make this host's NFS client
        see what the task's container wrote (``nfs``: attribute and directory entry caching can
        hide it for up to ``acdirmax`` seconds). Never fails the task."""
        try:
            dirs = nfs.revalidate_tree(self.host_work_dir())
            logs = sum(nfs.revalidate_file(path) for path in (self.host_stdout_txt(), self.host_stderr_txt()))
            logger.debug(_("refreshed the task directory (NFS)", directories=dirs, files=logs))
        except (OSError, RecursionError) as exn:  # (a tree deeper than Python's recursion: left as it is)
            logger.warning(_("could not refresh the task directory (NFS)", error=str(exn) or type(exn).__name__))

    def _fresh_attempt(self, logger: logging.Logger) -> None:
        """Start over in a fresh work directory (``reset``: the last attempt's renamed aside), as
        miniwdl's retries do: the failed attempt's files stay for inspection, and the next attempt
        does not trip over its half-written outputs."""
        copied = self._inputs_copied
        tmpdir = os.path.isdir(os.path.join(self.host_work_dir(), "_miniwdl_tmpdir"))
        self.reset(logger)
        if copied:
            self.copy_input_files(logger)
        if tmpdir:  # ([file_io] mount_tmpdir: miniwdl made one for the first attempt only)
            os.mkdir(os.path.join(self.host_work_dir(), "_miniwdl_tmpdir"), mode=0o770)

    def _run_attempt(self, logger: logging.Logger, terminating: Callable[[], bool]) -> tuple[int, Job]:
        """Run the command once; record the attempt for the run report. Its exit code and job."""
        attempt = self._attempt = attempts.LOG.begin(
            call=self.run_id,
            attempt=self.try_counter,
            run=self.pipeline_run_id,
            path=self.host_dir,
            **self.attempt_facts(),
        )
        try:
            exit_code, job = self._attempt_once(logger, terminating, attempt)
        except Terminated:
            attempts.LOG.finish(attempt, attempts.CANCELLED)
            raise
        except Interrupted as exn:
            attempts.LOG.finish(attempt, attempts.INTERRUPTED, detail=attempt.detail or str(exn))
            raise
        except StartAgain as exn:
            attempts.LOG.finish(attempt, attempts.FAILED_TO_START, detail=str(exn))
            raise
        except Exception as exn:
            outcome = attempts.FAILED if attempt.launched is not None else attempts.FAILED_TO_START
            attempts.LOG.finish(attempt, outcome, detail=attempt.detail or str(exn))
            raise
        outcome = attempts.SUCCEEDED if self.success_exit_code(exit_code) else attempts.FAILED
        attempts.LOG.finish(attempt, outcome, exit_code=exit_code)
        return exit_code, job

    def _attempt_once(
        self, logger: logging.Logger, terminating: Callable[[], bool], attempt: attempts.Attempt
    ) -> tuple[int, Job]:
        if not self._inputs_copied:
            self.link_input_files(logger)
        for stream in (self.host_stdout_txt(), self.host_stderr_txt()):
            open(stream, "a").close()
        self._script_starts += 1
        script = self.task_script()

        with ExitStack() as cleanup:
            poll_stderr = cleanup.enter_context(self.poll_stderr_context(logger))
            job = self._start(logger, script, terminating)
            cleanup.callback(self._attempt_over, job)  # (after the stop below, however the attempt ends)
            if attempt.launched is None:
                attempts.LOG.update(attempt, launched=time.time())
            finished = False

            def stop_unless_finished() -> None:
                if not finished:
                    self._stop(logger, job, "miniwdl stopped waiting for the task")

            cleanup.callback(stop_unless_finished)
            running = False
            while True:
                if terminating():
                    finished = True  # (stopped here: the cleanup need not stop it again)
                    self._stop(logger, job, "run terminated")
                    raise Terminated()
                halted = self._halted(job)
                if halted is not None:
                    finished = True
                    self._stop(logger, job, str(halted))
                    raise halted
                status = self._poll(logger, job, self.status_wait)
                if (status.running or status.stopped) and not running:
                    cleanup.enter_context(self.task_running_context())
                    running = True
                    if status.running or status.started_at:
                        # (its command ran: it read its inputs; one that never started read nothing)
                        attempts.LOG.update(attempt, running=status.started_at or time.time(), efs_read_bytes=self.input_bytes())
                elif status.started_at and attempt.running != status.started_at:
                    attempts.LOG.update(attempt, running=status.started_at)  # ECS's own time
                poll_stderr()
                if status.stopped:
                    finished = True
                    attempts.LOG.update(attempt, stopped=status.stopped_at or time.time())
                    self.refresh_task_dir(logger)
                    if attempt.running is not None:
                        attempts.LOG.update(attempt, efs_written_bytes=written_bytes(self.host_work_dir()))
                    return self._exit_code(logger, job, status), job


#: the most files one measure of a task's working directory or Directory input looks at (a lower
#: bound beyond: a measure, not the task's work)
MEASURED_FILES = 10_000


@functools.lru_cache(maxsize=256)
def _directory_files(path: str, _mtime_ns: int) -> tuple[tuple[tuple[int, int], int], ...]:
    """((device, inode), size) of the files of a Directory input (``MEASURED_FILES`` at most),
    measured once per process while its folder stays (a scatter's thousand tasks share one)."""
    found: list[tuple[tuple[int, int], int]] = []
    try:
        entries = directory_entries(path)
    except (OSError, InputOutsideDirectory):  # (said where the inputs are linked)
        return ()
    for file, _rel in entries:
        if file and len(found) < MEASURED_FILES:
            with contextlib.suppress(OSError):
                st = os.stat(file)
                found.append(((st.st_dev, st.st_ino), st.st_size))
    return tuple(found)


def written_bytes(work_dir: str) -> int:
    """What the files left in a task's working directory hold, each once, its linked inputs
    (``_miniwdl_inputs``) left out: what an attempt wrote to the shared file system, at least
    (files it wrote and removed are not seen; ``attempts.Attempt.efs_written_bytes``)."""
    files: dict[tuple[int, int], int] = {}
    looked = 0
    for root, dirs, names in os.walk(work_dir):
        if root == work_dir:
            dirs[:] = [d for d in dirs if d != INPUTS_FOLDER]
        for name in names[: MEASURED_FILES - looked]:
            with contextlib.suppress(OSError):
                found = os.lstat(os.path.join(root, name))
                if stat.S_ISREG(found.st_mode):
                    files[(found.st_dev, found.st_ino)] = found.st_size
        looked += len(names)
        if looked >= MEASURED_FILES:
            break
    return sum(files.values())


def _global_init_again_after_fork() -> None:
    """A forked child runs a backend as a new process would: miniwdl's once-per-process
    ``global_init`` (its ``_global_init`` flag on the backend class, ``WDL.runtime.task_container.new``)
    runs again in it, with the child's own configuration (``fargate`` also drops what the parent
    registered and held)."""
    pending = [BaseTaskContainer]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if vars(cls).get("_global_init"):
            cls._global_init = False  # type: ignore[attr-defined]


os.register_at_fork(after_in_child=_global_init_again_after_fork)
