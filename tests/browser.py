"""A real browser for the tests: headless Chromium driven over its DevTools protocol on a pipe
(`--remote-debugging-pipe`: JSON messages ended by a NUL byte, Chromium reading fd 3 and
writing fd 4), so a test clicks with the mouse at a place on the page and reads the DOM back,
with nothing but the standard library and Debian's `chromium`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def _above(fd: int, lowest: int) -> int:
    """`fd` moved to a number >= `lowest`."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, lowest)
    os.close(fd)
    return moved


class Browser:
    """One headless Chromium with one page: `open(url)`, `js(expression)`, `wait_until(expression)`,
    `click(x, y)`."""

    def __init__(self, width: int = 1400, height: int = 1000, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.TemporaryDirectory()
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        # above 4, so that the shell's `3<&A 4>&B` cannot overwrite one with the other
        to_browser, from_browser = (_above(to_browser, 10), _above(from_browser, 10))
        # the protocol's pipes must be fds 3 and 4 in the browser: bash puts them there
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}', CHROMIUM,
             *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self.profile.name}",
             f"--window-size={width},{height}", "about:blank"],
            pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next = 0
        self.events: list[dict] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.send("Page.enable", session=True)
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, session: bool = False, **params) -> dict:
        """Call `method` and wait for its result (events that arrive meanwhile are kept)."""
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed its pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def open(self, url: str) -> None:
        """Load `url` and wait until its load event (its inline scripts have run)."""
        self.events.clear()
        self.send("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load")
            self.events.append(self._read())

    def js(self, expression: str):
        """The value of a JavaScript expression on the page (returned by value)."""
        result = self.send("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str) -> bool:
        """Whether the JavaScript `expression` turned true within the timeout, polled every
        0.1 s; while a click's navigation replaces the page (no body, no script context yet)
        it counts as false."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                if self.js(f"!!({expression})"):
                    return True
            except RuntimeError:
                pass  # the page is being replaced
            time.sleep(0.1)
        return False

    def click(self, x: float, y: float) -> None:
        """A left mouse click at (x, y) in the viewport, as a person's."""
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", session=True, type=kind, x=x, y=y,
                      button="left", clickCount=1)

    def click_element(self, selector: str, index: int = 0) -> None:
        """Scroll the `index`-th element matching `selector` into view and click its centre."""
        box = self.js(f"""(function () {{
            var e = document.querySelectorAll({json.dumps(selector)})[{index}];
            e.scrollIntoView({{block: "center", inline: "center"}});
            var r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
        self.click(*box)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)
        self.profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
