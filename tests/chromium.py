"""Drive headless Chromium over the DevTools protocol on a pipe, to check pages like a browser would.

``--remote-debugging-pipe`` makes Chromium read protocol commands on fd 3 and write replies and
events on fd 4 (NUL-separated JSON), so no websocket client or free port is needed. Every console
message, uncaught exception and failed resource load is collected while the page loads.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-pipe",
)


@dataclass
class PageReport:
    """What one page load produced."""

    text: str
    problems: list[str]
    screenshot: bytes
    scroll_width: int
    inner_width: int
    body_background: str
    console: list[str] = field(default_factory=list)
    #: the value of ``load(..., script=...)``, run after the page loaded
    script_result: Any = None


class Browser:
    """One headless Chromium process; ``load`` opens a page and reports what happened."""

    def __init__(self, executable: str = CHROMIUM, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="aitune-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()

        def wire_fds() -> None:  # in the child: the protocol's fds are 3 (commands in) and 4 (replies out)
            # Copy to fds >= 5 first: a copy landing on 3 or 4 would make dup2 a no-op that keeps CLOEXEC.
            a, b = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 5), fcntl.fcntl(res_w, fcntl.F_DUPFD, 5)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)
            os.close(a)
            os.close(b)

        self._log = open(os.path.join(self._profile, "chromium.log"), "w+b")  # noqa: SIM115 - closed in close()
        self._proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            preexec_fn=wire_fds,
            close_fds=False,  # fds 3/4 are created in the child; our own fds are non-inheritable anyway
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        os.close(cmd_r)
        os.close(res_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._call("Browser.close")
        except Exception:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        for fd in (self._cmd_w, self._res_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _died(self) -> RuntimeError:
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.seek(0)
        tail = self._log.read().decode(errors="replace")[-2000:]
        return RuntimeError(f"Chromium exited (status {self._proc.poll()}); its log ends with:\n{tail}")

    def _send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise self._died() from None
        return self._next_id

    def _receive(self, predicate: Any, timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if predicate(message):
                    return message
                self._events.append(message)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._res_r], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer within {timeout or self.timeout:g} s")
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise self._died()
            self._buffer += chunk

    def _call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        call_id = self._send(method, params, session)
        reply = self._receive(lambda m: m.get("id") == call_id)
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def load(
        self,
        path: str | Path,
        *,
        width: int = 1280,
        height: int = 900,
        mobile: bool = False,
        dark: bool = False,
        script: str | None = None,
    ) -> PageReport:
        """Open ``path`` in a fresh tab at the given viewport and colour scheme; collect what went wrong.

        ``script`` (a JavaScript expression) is evaluated after the load; its value is returned.
        """
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            self._call(domain, session=session)
        self._call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
            session,
        )
        scheme = "dark" if dark else "light"
        self._call(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}, session
        )
        self._events.clear()
        self._call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session)
        self._receive(lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == session)
        self._call(
            "Runtime.evaluate", {"expression": "new Promise(r => setTimeout(r, 100))", "awaitPromise": True}, session
        )

        def evaluate(expression: str) -> Any:
            reply = self._call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
            return reply["result"].get("value")

        script_result = evaluate(script) if script else None
        text = evaluate("document.body.innerText")
        scroll_width = evaluate("document.documentElement.scrollWidth")
        inner_width = evaluate("window.innerWidth")
        background = evaluate("getComputedStyle(document.body).backgroundColor")
        shot = self._call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session)
        self._call("Target.closeTarget", {"targetId": target})
        problems, console = [], []
        for event in self._events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                problems.append(
                    f"uncaught: {details.get('text')} {details.get('exception', {}).get('description', '')}".strip()
                )
            elif method == "Runtime.consoleAPICalled":
                message = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                console.append(f"{params.get('type')}: {message}")
                if params.get("type") in ("error", "warning", "assert"):
                    problems.append(f"console.{params['type']}: {message}")
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                entry = params["entry"]
                problems.append(
                    f"{entry.get('source')} {entry['level']}: {entry.get('text')} {entry.get('url', '')}".strip()
                )
        return PageReport(
            text=text or "",
            problems=problems,
            screenshot=base64.b64decode(shot["data"]),
            scroll_width=int(scroll_width),
            inner_width=int(inner_width),
            body_background=str(background),
            console=console,
            script_result=script_result,
        )
