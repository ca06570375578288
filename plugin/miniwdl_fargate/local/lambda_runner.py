"""Local Lambda: warm execution environments, as the Lambda service keeps them.

Each function gets a pool of worker processes (``lambda_bootstrap``), keyed by what makes an
execution environment: the function's name, its code, handler, memory and environment. A worker
imports the handler's module once and then serves one invocation at a time, so module globals
(clients, caches, Powertools' cold-start flag) live from one invocation to the next, as they do
in a reused Lambda execution environment
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html). An invocation
takes an idle worker or starts a new one, so the pool grows with concurrent invocations
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html: "Lambda provisions a
separate instance of your execution environment" for each concurrent request).

A new environment is forked from ``lambda_zygote``, a process that has the stack's handlers'
libraries (boto3, Powertools, pydantic, ...) imported already (``preload``, as the stack's runner
asks), so a cold start costs the handler module's own import, not the whole interpreter's; in a
stack, from the runtime's ``python_zygote`` first (``shared_zygote``: the same libraries and the
driver's, one process forking both); without either (or if it fails) each environment is a new
interpreter. Either way it imports the handler's
module itself, in its own environment.

What each invocation answers, as the Lambda service would:
- the handler's return value, JSON-encoded;
- an exception: ``{"errorType", "errorMessage", "stackTrace"}``;
- past the function's timeout: ``Sandbox.Timedout``; the worker is killed (Lambda resets an
  environment whose invocation timed out, lambda-runtime-environment.html above) and the next
  invocation gets a fresh one;
- a worker that dies mid-invocation: ``Runtime.ExitError``.
Every invocation's output (the function's logs) is returned and appended to
``logs/lambda-<name>.log`` under a header naming the environment that served it. Nothing here
knows moto: ``local.moto.hooks.function_spec`` turns moto's function into a ``FunctionSpec``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .forkserver import ForkServer, readable
from .lambda_zygote import PRELOAD_ENV

log = logging.getLogger("miniwdl-fargate.local")

#: seconds a worker gets to leave on its own at shutdown before it is killed
STOP_GRACE_SECONDS = 2.0
#: how long an execution environment stays warm unused beside a newer idle one of its function:
#: Lambda reclaims idle environments (when, it does not say), and a burst of concurrent
#: invocations left local mode a pool of warm processes for good (a helper saw 25, 1 GB). The most
#: recently used environment of each function stays, as the warm one an invocation finds.
IDLE_SECONDS = 300.0


@dataclass
class FunctionSpec:
    """What the runner needs of a Lambda function."""

    name: str
    arn: str
    handler: str  # module.function, relative to the code package's root
    code_digest: str
    code: bytes | str  # the deployment package (zip bytes) or an already unpacked directory
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 3.0
    memory: int = 128

    @property
    def key(self) -> tuple[Any, ...]:
        """Invocations with the same key may share an execution environment."""
        return (self.name, self.code_digest, self.handler, self.memory, tuple(sorted(self.environment.items())))


@dataclass
class Invocation:
    """One invocation's answer: the response payload, whether it is an error, and its logs."""

    result: str
    errored: bool
    logs: str


def error(kind: str, message: str) -> str:
    return json.dumps({"errorType": kind, "errorMessage": message})


class Started:
    """An environment this process started itself (``subprocess``)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.pid = proc.pid

    def ended(self, timeout: float = 0) -> bool:
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    @property
    def exit_status(self) -> int | None:
        return self.proc.returncode

    def close(self) -> None:
        pass


class Forked:
    """An environment the zygote forked, watched through its pidfd (its exit status is the
    zygote's: unknown here)."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self._ended = False
        self.exit_status: int | None = None

    def ended(self, timeout: float = 0) -> bool:
        if not self._ended and self._pidfd >= 0:
            self._ended = readable(self._pidfd, timeout)
        return self._ended or self._pidfd < 0

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


Process = Started | Forked


def start_process(handler: str, code_dir: str, env: dict[str, str], log_path: str) -> tuple[Process, int, int]:
    """A new ``lambda_bootstrap`` interpreter; (process, request pipe, response pipe)."""
    requests_r, requests_w = os.pipe()
    responses_r, responses_w = os.pipe()
    try:
        with open(log_path, "ab") as logfile:
            proc = subprocess.Popen(
                [sys.executable, "-m", "miniwdl_fargate.local.lambda_bootstrap", handler, str(responses_w)],
                stdin=requests_r,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                cwd=code_dir,
                env=env,
                pass_fds=(responses_w,),
                start_new_session=True,  # its own process group: a timeout kills what it started too
            )
    except BaseException:
        os.close(requests_w)
        os.close(responses_r)
        raise
    finally:
        os.close(requests_r)
        os.close(responses_w)
    return Started(proc), requests_w, responses_r


def fork_environment(
    server: ForkServer, handler: str, code_dir: str, env: dict[str, str], log_path: str,
) -> tuple[Process, int, int]:
    """An environment forked by ``server`` (a ``lambda_zygote``, or the runtime's
    ``python_zygote``); (process, request pipe, response pipe). OSError if it cannot make one."""
    requests_r, requests_w = os.pipe()
    responses_r, responses_w = os.pipe()
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        request = {"kind": "lambda", "handler": handler, "cwd": code_dir, "env": env}
        pid, pidfd = server.fork(request, [requests_r, responses_w, log])
    except BaseException:
        os.close(requests_w)
        os.close(responses_r)
        raise
    finally:
        for fd in (requests_r, responses_w, log):
            os.close(fd)
    return Forked(pid, pidfd), requests_w, responses_r


class Zygote:
    """The ``lambda_zygote`` process: new environments forked from it (with ``preload``, from
    the stack's handlers' libraries imported)."""

    def __init__(self, work_dir: str, env: dict[str, str], preload: bool = False) -> None:
        env = {**env, PRELOAD_ENV: "1"} if preload else env
        self.server = ForkServer("miniwdl_fargate.local.lambda_zygote", work_dir, env, "zygote.out")

    def spawn(self, handler: str, code_dir: str, env: dict[str, str], log_path: str) -> tuple[Process, int, int]:
        """A forked environment; (process, request pipe, response pipe). OSError if the zygote
        cannot make one."""
        return fork_environment(self.server, handler, code_dir, env, log_path)

    def stop(self) -> None:
        self.server.stop()


class Worker:
    """One execution environment: a ``lambda_bootstrap`` serving one request at a time."""

    def __init__(self, process: Process, requests: int, responses: int, log_path: str, number: int = 0) -> None:
        #: which environment this is (the runner's count), named in the function's log
        self.number = number
        self.log_path = log_path
        self.process = process
        self._requests = requests
        self._responses = responses
        #: each descriptor is closed once, by whichever thread gets to it first
        self._closing = threading.Lock()
        self._buffer = b""
        #: when it last finished an invocation (time.monotonic()): the runner reclaims it once
        #: it has been idle ``IDLE_SECONDS`` beside a newer idle one
        self.idle_since = time.monotonic()
        #: where the next invocation's logs start in this environment's own log file: what the
        #: environment wrote before its first invocation (its init, an import error) is the first
        #: invocation's, as Lambda shows init logs with the first invocation
        self._log_offset = 0

    def alive(self) -> bool:
        return self._responses >= 0 and not self.process.ended()

    def invoke(self, payload: str, timeout: float) -> Invocation:
        offset = self._log_offset
        request = {"event": payload, "request_id": str(uuid.uuid4()), "deadline": time.time() + timeout}
        try:
            self._write((json.dumps(request) + "\n").encode())
            line = self._read_line(time.monotonic() + timeout)
        except OSError:  # the worker is gone (broken pipe)
            line = b""
        if line is None:
            self.kill()
            answer = Invocation(error("Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds"), True, "")
        elif not line:
            self.kill()
            status = self.process.exit_status
            died = "handler process died" + (f" (exit status {status})" if status is not None else "")
            answer = Invocation(error("Runtime.ExitError", died), True, "")
        else:
            response = json.loads(line)
            answer = Invocation(response["body"], bool(response["errored"]), "")
        answer.logs = self._logs_since(offset)
        return answer

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._requests, view) :]

    def _read_line(self, deadline: float) -> bytes | None:
        """The next response line; b"" if the worker closed its end; None past the deadline."""
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not readable(self._responses, remaining):
                return None
            chunk = os.read(self._responses, 65536)
            if not chunk:
                return b""
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _logs_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as logfile:
            logfile.seek(offset)
            data = logfile.read()
        self._log_offset = offset + len(data)
        return data.decode(errors="replace")

    def kill(self) -> None:
        if not self.process.ended():
            self.interrupt()
            self.process.ended(STOP_GRACE_SECONDS)
        self._close()

    def interrupt(self) -> None:
        """Kill the environment's processes (its session's group: what it started too), and only
        that: another thread may be invoking it, whose invocation then ends ("handler process
        died") and closes the descriptors it is reading (closed under it, a descriptor's number
        can be another file's by the time it reads)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        """End the worker: its request stream closes and it exits; killed if it does not."""
        self._close_requests()
        self.process.ended(STOP_GRACE_SECONDS)
        self.kill()

    def _close_requests(self) -> None:
        with self._closing:
            fd, self._requests = self._requests, -1
        if fd >= 0:
            os.close(fd)

    def _close(self) -> None:
        self._close_requests()
        with self._closing:
            fd, self._responses = self._responses, -1
            if fd >= 0:
                self.process.close()
        if fd >= 0:
            os.close(fd)


class LambdaRunner:
    """Pools of warm workers, one pool per execution-environment key."""

    def __init__(
        self, work_dir: str, logs_dir: str, environment: Mapping[str, str], zygote: bool = True, preload: bool = False,
        shared_zygote: Callable[[], ForkServer | None] | None = None,
    ) -> None:
        #: unpacked code packages and the workers' own output files
        self.work_dir = work_dir
        #: fork new environments from one process, started once (else: start each as a new
        #: interpreter)
        self.use_zygote = zygote
        #: the zygote imports the stack's handlers' libraries, builds miniwdl's WDL parsers and
        #: parses the AWS models (about 2 s of CPU at its start, each new environment's to save);
        #: without it, the zygote imports nothing of its own
        self.preload = preload
        #: a fork server shared with others that forks environments too, its owner's to start and
        #: stop (the runtime's ``python_zygote``: its ``get``, None once it cannot fork); new
        #: environments come from it first, from the runner's own zygote where it has none to give
        self.shared_zygote = shared_zygote if zygote else None
        self._zygote: Zygote | None = None
        self._zygote_lock = threading.Lock()
        self.logs_dir = logs_dir
        #: what every function's process gets before its own variables (PATH, AWS endpoint, ...)
        self.environment = dict(environment)
        self._lock = threading.Lock()
        self._idle: dict[tuple[Any, ...], list[Worker]] = {}
        self._workers: set[Worker] = set()
        self._numbers = itertools.count(1)
        self._closed = False
        os.makedirs(work_dir, exist_ok=True)
        os.makedirs(logs_dir, exist_ok=True)

    def invoke(self, spec: FunctionSpec, event: Any) -> Invocation:
        payload = event if isinstance(event, str) else json.dumps(event)
        started = time.monotonic()
        environment = "none"
        try:
            if self._closed:  # (an invoke as local mode stops, e.g. from a state machine still running)
                raise OSError("local Lambda is shut down")
            worker = self._acquire(spec)
        except OSError as exn:
            answer = Invocation(error("Runtime.ExitError", f"handler process died ({exn})"), True, "")
        else:
            environment = str(worker.number)
            try:
                answer = worker.invoke(payload, spec.timeout)
            finally:
                self._release(spec, worker)
        header = f"--- invoke ({time.monotonic() - started:.1f}s, error={answer.errored}, environment {environment})"
        with self._lock, open(os.path.join(self.logs_dir, f"lambda-{spec.name}.log"), "a") as logfile:
            logfile.write(f"{header}\n{answer.logs}\n")
        return answer

    def prewarm(self, specs: list[FunctionSpec]) -> threading.Thread:
        """Start one idle environment for each of ``specs`` that has none, in the background
        (as provisioned concurrency would); the thread doing it."""
        thread = threading.Thread(target=self._prewarm, args=(specs,), name="lambda-prewarm", daemon=True)
        thread.start()
        return thread

    def _prewarm(self, specs: list[FunctionSpec]) -> None:
        for spec in specs:
            with self._lock:
                if self._closed or self._idle.get(spec.key):
                    continue
            try:
                worker = self._start(spec)
            except OSError:
                with self._lock:
                    if self._closed:
                        return  # shut down meanwhile
                log.warning("local mode: could not start a warm environment for %s", spec.name, exc_info=True)
                continue  # (its first invocation starts one)
            self._release(spec, worker)

    def warm(self, spec: FunctionSpec) -> bool:
        """Whether ``spec`` has an idle, live execution environment."""
        with self._lock:
            return any(w.alive() for w in self._idle.get(spec.key, []))

    def workers(self) -> int:
        """Live execution environments (idle or busy)."""
        with self._lock:
            return sum(1 for w in self._workers if w.alive())

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            idle = {worker for pool in self._idle.values() for worker in pool}
            self._workers.clear()
            self._idle.clear()
        for worker in workers:
            if worker in idle:
                worker.stop()
            else:  # (invoked as the stack stops: the invocation ends, and its thread closes the worker)
                worker.interrupt()
        with self._zygote_lock:
            zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.stop()

    def _acquire(self, spec: FunctionSpec) -> Worker:
        with self._lock:
            idle = self._idle.get(spec.key, [])
            while idle:
                worker = idle.pop()
                if worker.alive():
                    return worker
                self._workers.discard(worker)
                worker.kill()
        return self._start(spec)

    def _release(self, spec: FunctionSpec, worker: Worker) -> None:
        with self._lock:
            kept = worker.alive() and not self._closed
            if kept:
                worker.idle_since = time.monotonic()
                self._idle.setdefault(spec.key, []).append(worker)
                stale = self._reclaim()
            else:
                self._workers.discard(worker)
        if not kept:
            worker.kill()
        elif stale:  # (in the background: the invocation that found them answers now)
            threading.Thread(target=lambda: [w.stop() for w in stale], name="lambda-reclaim", daemon=True).start()

    def _reclaim(self) -> list[Worker]:
        """(Under the lock.) Take out the idle environments unused for ``IDLE_SECONDS`` that are
        not their function's most recently used one; they, to stop."""
        now, stale = time.monotonic(), []
        for idle in self._idle.values():  # (each list: oldest first, the newest last)
            while len(idle) > 1 and now - idle[0].idle_since >= IDLE_SECONDS:
                worker = idle.pop(0)
                self._workers.discard(worker)
                stale.append(worker)
        return stale

    def _start(self, spec: FunctionSpec) -> Worker:
        code_dir = self._code_dir(spec)
        number = next(self._numbers)
        log_path = os.path.join(self.work_dir, f"worker-{number}.out")
        process, requests, responses = self._spawn(spec.handler, code_dir, self._environment(spec, code_dir), log_path)
        worker = Worker(process, requests, responses, log_path, number)
        with self._lock:
            self._workers.add(worker)
            closed = self._closed
        if closed:  # shut down meanwhile
            self._workers.discard(worker)
            worker.kill()
            raise OSError("local Lambda is shut down")
        return worker

    def start_zygote(self) -> None:
        """Start the zygote now (with ``preload``, it imports the libraries while the caller goes
        on) rather than at the first new environment. (A shared one is its owner's to start.)"""
        if self.shared_zygote is None:
            self._zygote_now()

    def _zygote_now(self) -> Zygote | None:
        with self._zygote_lock:
            if self.use_zygote and self._zygote is None and not self._closed:
                self._zygote = Zygote(self.work_dir, self.environment, self.preload)
            return self._zygote

    def _spawn(self, handler: str, code_dir: str, env: dict[str, str], log_path: str) -> tuple[Process, int, int]:
        """A new environment: forked by the zygote, or (without one, or if it fails) a new
        interpreter."""
        shared = self.shared_zygote() if self.shared_zygote is not None else None
        if shared is not None:
            try:
                return fork_environment(shared, handler, code_dir, env, log_path)
            except OSError:  # (stopped meanwhile, or broken: its owner's to restart; this one from ours)
                log.warning("local Lambda: the shared fork server made no environment: the runner's own zygote instead")
        zygote = self._zygote_now()
        if zygote is not None:
            try:
                return zygote.spawn(handler, code_dir, env, log_path)
            except OSError:
                with self._zygote_lock:
                    if self._zygote is zygote:  # it is broken: from now on, new interpreters
                        self.use_zygote, self._zygote = False, None
                zygote.stop()
        return start_process(handler, code_dir, env, log_path)

    def _environment(self, spec: FunctionSpec, code_dir: str) -> dict[str, str]:
        env = dict(self.environment)
        env.update({k: str(v) for k, v in spec.environment.items()})
        env.update(
            {
                "_HANDLER": spec.handler,
                "LAMBDA_TASK_ROOT": code_dir,
                "PYTHONPATH": code_dir,
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_ARN": spec.arn,
            }
        )
        return env

    def _code_dir(self, spec: FunctionSpec) -> str:
        if isinstance(spec.code, str):
            return spec.code
        digest = spec.code_digest or hashlib.sha256(spec.code).hexdigest()
        target = os.path.join(self.work_dir, f"{spec.name}-{digest[:12].replace('/', '_')}")
        with self._lock:
            if not os.path.isdir(target):
                tmp = target + ".part"
                shutil.rmtree(tmp, ignore_errors=True)
                with zipfile.ZipFile(io.BytesIO(spec.code)) as zf:
                    zf.extractall(tmp)
                os.replace(tmp, target)
        return target
