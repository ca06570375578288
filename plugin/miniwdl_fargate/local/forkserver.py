"""A fork server: a process that imports what its children need once, then forks one child per
request, so a child starts with its libraries already loaded (``lambda_zygote`` for Lambda
execution environments, ``driver_zygote`` for the local driver, ``python_zygote`` for both in a
stack: a request's ``kind`` says which), or without an interpreter's start (``task_zygote`` for
sandboxed WDL tasks).

The server (``serve``) reads requests from a SOCK_SEQPACKET socket: one JSON message with the
descriptors the child needs. It forks; the child (``become``, the server's own function) turns
into what was asked and never returns. The answer is ``{"pid"}`` with the child's pidfd, or
``{"error"}``. The server is the children's parent: it reaps each as it ends (it watches their
pidfds) and, when the request said ``"status": true`` (its last descriptor is then a pipe's write
end), writes the child's exit code there (``os.waitstatus_to_exitcode``: negative for a signal)
before closing it, which is how whoever asked learns how the child ended. No thread is started
here, before or after a fork.

``ForkServer`` is the other end: it starts the server's module and asks it for children.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, NoReturn

from .. import wdl_parsers
from ..process_exit import flush_standard_streams
from . import heap

log = logging.getLogger("miniwdl-fargate.local")

MAX_MESSAGE = 1 << 20
MAX_FDS = 8
STOP_GRACE_SECONDS = 5.0
#: how long a fork server's trial child may take (``trial``)
TRIAL_SECONDS = 30.0

#: the child's side: (request, its descriptors, the server socket to close) -> never returns
Become = Callable[[dict, list[int], socket.socket], NoReturn]
#: the folder of built WDL parsers a fork server reads them from (``wdl_parsers.cache_folder()`` of
#: the process that starts it: the server's own HOME may be a Lambda environment's)
PARSER_CACHE_ENV = "MINIWDL_FARGATE_WDL_PARSER_CACHE"
#: the AWS services the children (Lambda handlers, the driver) make clients of (``sts``:
#: ``aws.region()``; ``scheduler``: each run's finalize step, ``gc_task.schedule``). Only a user's commands (``client``), the stack's own process (``local.stack``,
#: ``local.gateway``) and the standalone plugin's provisioning (``backend.standalone``) call
#: CloudFormation, Lambda, EC2 and IAM: their models, half a second of each fork server's start,
#: are not read here (a child that did call one would read its model then). Service Quotas is read:
#: the launch function asks it at every run's TakeDriverSlot (MaxConcurrentRuns 0, the default)
AWS_SERVICES = ("s3", "ecs", "stepfunctions", "logs", "efs", "events", "scheduler", "service-quotas", "sts")
RARELY_CALLED: tuple[str, ...] = ()
#: the modules that run in no child of a fork server (``AWS_SERVICES``)
NOT_IN_A_CHILD = ("client.py", "local/stack.py", "local/gateway.py", "local/schedules.py", "backend/standalone.py")


#: a WDL document per grammar version miniwdl knows, to build each version's parser once
WDL_VERSIONS = ("draft-2", "1.0", "1.1", "development")


def build_wdl_parsers() -> None:
    """In the server, before any fork: every WDL grammar version's document and expression
    parsers (``WDL._parser`` builds one Lark parser per version and start symbol at first use, and
    memoizes it), for the driver and for the handlers that load a submitted workflow (building
    one took a seventh of a local run's busy time, in each new Lambda environment). Each is read
    from the machine's cache of built parsers when it is there (``wdl_parsers``: about 0.1 s for
    all of them instead of 1 s, in every fork server of every local stack)."""
    import WDL

    folder = os.environ.get(PARSER_CACHE_ENV)
    wdl_parsers.use_cache(Path(folder) if folder else None)
    for version in WDL_VERSIONS:
        header = "" if version == "draft-2" else f"version {version}\n"
        WDL.parse_document(header + "workflow w {}\n")
        WDL.parse_expr("1", version=version)


def preload_aws() -> None:
    """In the server, before any fork: one shared botocore data loader with every model the
    children's clients need already parsed (``aws.share_data_loaders``), so that a child's first
    client of each service costs no JSON parsing (it took a fifth of a local run's busy time)."""
    from .. import aws

    aws.share_data_loaders()
    aws.preload_models(AWS_SERVICES)


class Children:
    """The server's children still running: pidfd -> (pid, status pipe or -1)."""

    def __init__(self) -> None:
        self.watched: dict[int, tuple[int, int]] = {}

    def add(self, pid: int, pidfd: int, status_fd: int) -> None:
        self.watched[pidfd] = (pid, status_fd)

    def close_all(self) -> None:
        """In a new child: its siblings' descriptors are not its own."""
        for pidfd, (_pid, status_fd) in self.watched.items():
            os.close(pidfd)
            if status_fd >= 0:
                os.close(status_fd)
        self.watched.clear()

    def kill_all(self) -> None:
        """Kill every child still running, with its process group, and reap it: the server's
        other end closed while they ran, so whoever started the server ended without stopping
        them (killed, crashed: local mode stops every task before its fork servers). Left alone
        they would run on with nobody to watch or stop them, a driver polling a stack that is
        gone for ever; a container's processes end with its runtime too."""
        for pidfd, (pid, _status_fd) in list(self.watched.items()):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:  # not yet in a session of its own (its first step makes one)
                try:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                except ProcessLookupError:  # (ended meanwhile)
                    pass
            self.reap(pidfd)

    def reap(self, pidfd: int) -> None:
        """The child behind ``pidfd`` ended: reap it, report its exit code, forget it."""
        pid, status_fd = self.watched.pop(pidfd)
        _pid, status = os.waitpid(pid, 0)
        if status_fd >= 0:
            try:
                os.write(status_fd, str(os.waitstatus_to_exitcode(status)).encode())
            except OSError:  # nobody listens any more
                pass
            os.close(status_fd)
        os.close(pidfd)


def readable(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` is readable (a pidfd: its process has ended) within ``timeout`` seconds
    (None: wait as long as it takes). poll(2), not select(2): select takes no descriptor numbered
    1024 or more, which a process running hundreds of tasks holds."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))


def answer(server: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    socket.send_fds(server, [json.dumps(message).encode()], list(fds))


def into_session(server: socket.socket, stdin: int, output: int) -> None:
    """A forked child's first steps to become what was asked (``Become``): the server's socket
    closed, SIGCHLD as a new process has it (its own children are its to wait for), a session of
    its own, ``stdin`` as its standard input and ``output`` as its stdout and stderr (both
    descriptors closed once copied)."""
    server.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    os.dup2(stdin, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    for fd in {stdin, output} - {0, 1, 2}:
        os.close(fd)


def fork_child(server: socket.socket, request: dict, fds: list[int], become: Become, children: Children) -> None:
    """Fork one child for ``request``; answer with its pidfd."""
    status_fd = fds.pop() if request.get("status") else -1
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        pid = os.fork()
    except OSError as exn:  # (no more processes, no memory): the caller starts a new process
        for fd in fds + ([status_fd] if status_fd >= 0 else []):
            os.close(fd)
        answer(server, {"error": f"fork: {exn}"})
        return
    if pid == 0:
        if status_fd >= 0:
            os.close(status_fd)
        children.close_all()
        become(request, fds, server)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)  # it is not reaped before we reap it: the pid is still its own
    children.add(pid, pidfd, status_fd)
    answer(server, {"pid": pid}, (pidfd,))


#: how many descriptors a request brings (beside the status pipe): one number for every request, or
#: a number by the request's ``"kind"`` (a server forking children of more than one kind)
ExpectedFds = int | dict[str, int]


def wanted_fds(request: dict, expected_fds: ExpectedFds) -> int | None:
    """How many descriptors ``request`` must bring (None: a kind the server does not make)."""
    return expected_fds if isinstance(expected_fds, int) else expected_fds.get(request.get("kind"))


def serve(server: socket.socket, become: Become, expected_fds: ExpectedFds) -> None:
    """Fork children as asked until the socket's other end closes, then kill any child still
    running (``Children.kill_all``). A request has ``expected_fds`` descriptors, plus the status
    pipe if it says ``"status": true``."""
    children = Children()
    # (poll(2): the server holds two descriptors per child, beyond select's 1024 with 500 children)
    poller = select.poll()
    poller.register(server, select.POLLIN)
    while True:
        ready = {fd for fd, _event in poller.poll()}
        for pidfd in ready - {server.fileno()}:
            poller.unregister(pidfd)
            children.reap(pidfd)
        if server.fileno() not in ready:
            continue
        message, fds, _flags, _addr = socket.recv_fds(server, MAX_MESSAGE, MAX_FDS)
        if not message:  # the other end closed: nobody can ask for (or stop) a child any more
            children.kill_all()
            return
        try:
            request = json.loads(message)
            status = bool(request.get("status"))
            wanted = wanted_fds(request, expected_fds)
        except (ValueError, AttributeError) as exn:  # (not one JSON object: refused, the server serves on)
            request, status = None, False
            problem = f"not a request: {exn}"
        else:
            problem = (
                f"no child of kind {request.get('kind')!r} here" if wanted is None
                else "" if len(fds) == wanted + status else f"expected {wanted} descriptors, got {len(fds)}"
            )
        if problem:
            for fd in fds:
                os.close(fd)
            answer(server, {"error": problem})
            continue
        before = set(children.watched)
        fork_child(server, request, fds, become, children)
        for pidfd in set(children.watched) - before:
            poller.register(pidfd, select.POLLIN)


class ForkServer:
    """A fork server process (``python -m <module> SOCKET_FD``) and the socket to ask it for children."""

    def __init__(self, module: str, work_dir: str, env: dict[str, str], output_name: str) -> None:
        self._lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with open(os.path.join(work_dir, output_name), "ab") as output:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", module, str(theirs.fileno())],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=work_dir,
                    # the machine's cache of built WDL parsers, which the server's own HOME (a Lambda
                    # environment's, under the stack's state) would not find (build_wdl_parsers)
                    env={**env, PARSER_CACHE_ENV: str(wdl_parsers.cache_folder())},
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,  # a terminal's Ctrl-C is for local mode, which stops it
                )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._socket = ours

    def fork(self, request: dict, fds: list[int]) -> tuple[int, int]:
        """A new child; (pid, pidfd). The caller keeps (and closes) its descriptors. OSError if
        the server cannot make one."""
        with self._lock:
            socket.send_fds(self._socket, [json.dumps(request).encode()], fds)
            message, got, _flags, _addr = socket.recv_fds(self._socket, 65536, 1)
        reply = json.loads(message or b'{"error": "the fork server is gone"}')
        if "pid" not in reply or len(got) != 1:
            for fd in got:
                os.close(fd)
            raise OSError(reply.get("error", "no child"))
        return reply["pid"], got[0]

    def fork_watched(self, request: dict, output: int) -> tuple[int, int, int]:
        """A new child writing to ``output`` whose exit code the server reports when it reaps it:
        (pid, pidfd, the status pipe's read end, for ``reported_exit_code``). The caller closes
        the two descriptors. OSError if the server cannot make one."""
        status_r, status_w = os.pipe()
        try:
            pid, pidfd = self.fork({**request, "status": True}, [output, status_w])
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        return pid, pidfd, status_r

    def close(self) -> None:
        """Forget a server that has ended (its socket)."""
        self._socket.close()

    def stop(self) -> None:
        self._socket.close()  # its loop ends
        try:
            self.proc.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def reported_exit_code(data: bytes) -> int:
    """The exit code a status pipe reported (``os.waitstatus_to_exitcode``'s); nothing read (the
    pipe ended unwritten: the server died before its child) counts as killed."""
    return int(data) if data else -signal.SIGKILL


def trial(server: ForkServer, request: dict) -> str | None:
    """Why a child of ``server`` asked ``request`` (a command that ends at once, exit status 0)
    did not end well, or None: whether the children it forks can be made here at all."""
    with tempfile.TemporaryFile() as output:
        try:
            pid, pidfd, status = server.fork_watched(request, output.fileno())
        except OSError as exn:
            return f"it cannot fork ({exn})"
        try:
            if not readable(status, TRIAL_SECONDS):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                return f"its trial child (pid {pid}) did not end within {TRIAL_SECONDS:.0f} s"
            code = reported_exit_code(os.read(status, 64))
        finally:
            os.close(pidfd)
            os.close(status)
        if code == 0:
            return None
        output.seek(0)
        said = output.read().decode(errors="replace").strip().splitlines()
        return f"its trial child ended with exit status {code}: {said[-1] if said else 'it said nothing'}"


class LazyForkServer:
    """A ``ForkServer`` started at first use (``get``) and kept, started again if it has ended
    (killed, crashed: ``RESTARTS`` times); once it could not start, None ever after (whoever
    asked then starts a new process). ``trial_request``: what a first child of each server it
    starts is asked (a command that ends at once, exit status 0; None: no trial); if that child cannot be made
    here (``trial``: say a user namespace the interpreter may not make, where ``unshare`` may),
    the server is stopped and None returned ever after, rather than every child failing."""

    #: how many times a server that ended is started again (then: new processes, as if it never started)
    RESTARTS = 3

    def __init__(
        self, module: str, work_dir: str, env: Callable[[], dict[str, str]], enabled: bool,
        trial_request: Callable[[], dict | None] | None = None,
    ) -> None:
        self.module, self.work_dir, self.env = module, work_dir, env
        self.trial_request = trial_request
        self.enabled = enabled
        self._server: ForkServer | None = None
        #: the trial of the server last started (``_try``), which ``get`` waits for
        self._trying: threading.Thread | None = None
        self._lock = threading.Lock()
        self._restarts_left = self.RESTARTS

    def start(self) -> None:
        """Start the server now if it is not running (a prewarm: its preload then overlaps the
        caller's work), without waiting for it or for its trial child."""
        with self._lock:
            self._start()

    def get(self) -> ForkServer | None:
        with self._lock:
            self._start()
            trying = self._trying
        if trying is not None:  # (the server's first child, before any other: ``trial``)
            trying.join()
        with self._lock:
            return self._server

    def _start(self) -> None:
        """(With the lock held.) The server started if it is not running and forking is on; its
        trial in a thread of its own (``_try``)."""
        if self._server is not None and self._server.proc.poll() is not None:
            ended, self._server = self._server, None
            ended.close()
            self.enabled = self.enabled and self._restarts_left > 0
            self._restarts_left -= 1
            log.warning(
                "local mode: the fork server %s ended (exit status %s): %s", self.module, ended.proc.returncode,
                "starting it again" if self.enabled else "new processes from now on",
            )
        if self._server is None and self.enabled:
            os.makedirs(self.work_dir, exist_ok=True)
            try:
                self._server = ForkServer(self.module, self.work_dir, self.env(), "zygote.out")
            except OSError:
                log.exception("local mode: cannot start the fork server %s: new processes instead", self.module)
                self.enabled = False
                return
            if self.trial_request is not None:
                self._trying = threading.Thread(target=self._try, args=(self._server,), name=f"trial-{self.module}", daemon=True)
                self._trying.start()

    def _try(self, server: ForkServer) -> None:
        """The trial of a server just started: if its child cannot be made, the server stopped
        and forking off, said once."""
        assert self.trial_request is not None  # (only started where there is one)
        request = self.trial_request()
        problem = trial(server, request) if request is not None else None
        with self._lock:
            if problem is None or self._server is not server:  # (fine, or stopped meanwhile)
                return
            self._server, self.enabled = None, False
        log.warning("local mode: the fork server %s cannot make its children here (%s): new processes instead", self.module, problem)
        server.stop()

    def stop(self) -> None:
        """Stop the server (if it started); none is started after this."""
        with self._lock:
            server, self._server, self.enabled = self._server, None, False
        if server is not None:
            server.stop()


def server_main(become: Become, expected_fds: ExpectedFds, prepare: Callable[[], None]) -> NoReturn:
    """A fork server's ``main``: ``prepare`` (the imports), then serve on ``sys.argv[1]``; once
    its socket's other end closed, it ends at once with ``os._exit`` (its output flushed). It holds
    nothing to finalize, but every library its children need (the driver's: boto3, miniwdl...),
    whose teardown by the interpreter took about 0.5 s of each local stack's stop. What
    ``prepare`` loads is left alone by the garbage collector (``heap``), here and in every child."""
    server = socket.socket(fileno=int(sys.argv[1]))
    with heap.load_then_freeze():
        prepare()
    serve(server, become, expected_fds)
    flush_standard_streams()
    os._exit(0)
