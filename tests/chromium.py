"""Headless Chromium for tests, driven over the Chrome DevTools Protocol with nothing but the
standard library: Chromium started with ``--remote-debugging-pipe`` reads the protocol's
commands from its file descriptor 3 and writes its answers and events to its descriptor 4, one
JSON message each, ended by a NUL byte (https://chromedevtools.github.io/devtools-protocol/ is
the protocol's reference; the pipe is how Puppeteer's ``pipe: true`` talks to the browser).

``Browser``: one browser process, one page (a target attached in flat mode: its commands carry
the session's id), every event kept in order (``events``), so a test can read the console
messages and exceptions a page caused.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

#: the names Debian's chromium package and Google's builds install under
BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell")
#: a browser that says nothing within this long is taken for hung (a bound, not a timing: the
#: test's browser answers in well under a second)
PATIENCE = 60.0


def find_binary() -> str | None:
    """The Chromium to use: ``MINIWDL_FARGATE_CHROMIUM`` if set, else the first of BINARIES on PATH."""
    named = os.environ.get("MINIWDL_FARGATE_CHROMIUM")
    if named:
        return shutil.which(named)
    return next((found for found in map(shutil.which, BINARIES) if found), None)


def flags(profile: Path) -> list[str]:
    """Headless, in a profile of its own, and quiet: no first-run pages, no extensions, no
    background requests to Google's services (the machine reaches no network beyond its package
    registries), no GPU; ``--no-sandbox`` only as root (Chromium refuses to start as root
    otherwise; CI runs as root)."""
    return [
        "--headless",
        "--remote-debugging-pipe",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--no-pings",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # (and no host name resolves: the tests open files)
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--mute-audio",
        *(["--no-sandbox"] if os.geteuid() == 0 else []),
        "about:blank",
    ]


def _above_4(fd: int) -> int:
    """The same pipe end as a descriptor above 4 (so that putting the pipes at 3 and 4 in the
    browser cannot overwrite one with the other)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class BrowserError(RuntimeError):
    """The browser answered a command with an error, went quiet, or exited."""


class Browser:
    """One headless Chromium and one page in it (see the module's docstring)."""

    def __init__(self, binary: str, profile: Path, log: Path) -> None:
        to_browser, self._commands = os.pipe()
        self._answers, from_browser = os.pipe()
        to_browser, from_browser = _above_4(to_browser), _above_4(from_browser)
        # the browser's descriptors 3 and 4 are these pipes' ends (bash puts them there: dash takes no
        # descriptor above 9; and no preexec_fn in a process that may have threads)
        script = f'exec 3<&{to_browser} 4>&{from_browser} {to_browser}<&- {from_browser}>&-; exec "$@"'
        with open(log, "wb") as stderr:
            self.process = subprocess.Popen(
                ["bash", "-c", script, "bash", binary, *flags(profile)],
                pass_fds=(to_browser, from_browser), stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
            )
        os.close(to_browser)
        os.close(from_browser)
        self._log = log
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        self.session = ""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    # -- the protocol ---------------------------------------------------------------------------

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command (to the page, once attached) and return its result; events that
        arrive meanwhile go to ``events``."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._receive()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            if "method" in answer:
                self.events.append(answer)

    def wait_event(self, method: str, since: int = 0) -> dict[str, Any]:
        """The first event ``method`` at or after ``events[since]``, waiting for it to come."""
        while True:
            found = next((e for e in self.events[since:] if e["method"] == method), None)
            if found:
                return found
            message = self._receive()
            if "method" in message:
                self.events.append(message)

    def _receive(self) -> dict[str, Any]:
        """The next message from the browser."""
        deadline = time.monotonic() + PATIENCE
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._answers], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise BrowserError(f"the browser said nothing for {PATIENCE}s; its log: {self.log_tail()}")
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                raise BrowserError(f"the browser exited ({self.process.poll()}); its log: {self.log_tail()}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def log_tail(self) -> str:
        return self._log.read_text(errors="replace")[-2000:]

    # -- what the tests do ----------------------------------------------------------------------

    def open(self, path: Path, width: int = 1200, height: int = 900) -> None:
        """Load a file in the page, at this window size, and wait for its load event (``events``
        from then on are this page's)."""
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.events = []
        self.send("Page.navigate", url=path.resolve().as_uri())
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (an exception in it fails)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, to: Path, full_page: bool = True) -> bytes:
        """A PNG of the page (the whole page, or what the window shows), written to ``to``."""
        png = base64.b64decode(self.send("Page.captureScreenshot", format="png", captureBeyondViewport=full_page)["data"])
        to.write_bytes(png)
        return png

    def problems(self) -> list[str]:
        """What the page said went wrong: uncaught exceptions, console errors and warnings,
        and the browser's own log errors and warnings (a resource that failed to load, a
        parse error, ...)."""
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                found.append(f"console.{params['type']}: {[a.get('value', a.get('description')) for a in params['args']]}")
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                entry = params["entry"]
                found.append(f"{entry['source']} {entry['level']}: {entry['text']} ({entry.get('url', '')})")
        return found

    def close(self) -> None:
        """Close the browser, and wait for it to exit (killed if it will not)."""
        try:
            self.session = ""
            self.send("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._commands)
            os.close(self._answers)
