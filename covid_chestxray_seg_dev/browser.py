"""Headless Chromium for the tests: open a local page and report what a reader's browser saw.

Debian's `chromium` (`apt-get install -y chromium`), driven over the DevTools protocol (CDP)
through `--remote-debugging-pipe`: NUL-terminated JSON messages, Chromium reading fd 3 and
writing fd 4, the transport Playwright and Puppeteer use. No pip package, no TCP port, no
websocket. What `open_page` reports: every request that failed, every console error, log
error or uncaught exception, each `<img>` and whether it decoded, the page's text and a
screenshot.

Facts about the browser this was written against (Chromium 156.0.8078.114, Debian 12, checked
on 2026-12-04; see the measurements behind them in the project's notes):

- `/usr/bin/chromium` is a shell wrapper that adds `--enable-remote-extensions`, which turns
  its own `--disable-background-networking` off; the binary `/usr/lib/chromium/chromium` is run
  directly, with the flags below.
- Even with every `--disable-*` flag, Chromium 156 asks Google for the time, a component
  update and the signed-in accounts; `--host-resolver-rules=MAP * ~NOTFOUND` makes every
  name (IP literals too) fail inside the browser: no DNS query, no connection leaves it.
- `--window-size=1280,900` gives a 1280 x 813 viewport in the new headless mode;
  `Emulation.setDeviceMetricsOverride` gives the exact one.
- A truncated `data:` PNG causes no failed request and no console message: only an image's
  `naturalWidth` (0) tells.
- The two `chrome_crashpad_handler` processes call `setsid()` and leave the browser's process
  group: they are found by the temporary profile's path in their command line and killed.

Set `CHROMIUM` to use another binary. As a command, a picture of part of a page (the README's
picture of the report):

    python -m covid_chestxray_seg_dev.browser PAGE.html OUT.png --section headline --height 1500
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = [
    "CHROMIUM_VARIABLE",
    "BrowserError",
    "ImageState",
    "PageLoad",
    "colour_count",
    "find_chromium",
    "main",
    "open_page",
    "screenshot",
]

CHROMIUM_VARIABLE = "CHROMIUM"
# Debian's binary first (not its wrapper, see above), then whatever `chromium` is on the PATH.
_CANDIDATES = ("/usr/lib/chromium/chromium",)
_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-default-apps",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
    "--mute-audio",
)
# Every <img> decoded (or failed to), then whether it has pixels.
_IMAGES_JS = """Promise.all(Array.from(document.images, i => i.decode().then(() => 0, () => 0)
  .then(() => ({src: i.src.slice(0, 80), ok: i.complete && i.naturalWidth > 0, width: i.naturalWidth}))))"""
_SECTIONS_JS = """Object.fromEntries(Array.from(document.querySelectorAll('section[id]'),
  s => [s.id, Math.round(s.getBoundingClientRect().top + window.scrollY)]))"""
# The longest page a screenshot takes whole (Chromium's texture limit is about this).
_MAX_HEIGHT = 16384


class BrowserError(RuntimeError):
    """Chromium did not start, answer in time, or load the page."""


@dataclass(frozen=True)
class ImageState:
    """One `<img>` of the page: the start of its `src`, whether it decoded to pixels, its width."""

    src: str
    ok: bool
    natural_width: int


@dataclass(frozen=True)
class PageLoad:
    """What loading a page showed.

    Attributes:
        failed_requests: (URL, error) of every request that failed or got an HTTP error.
        console_errors: console errors and assertions, log entries at level error, uncaught
            exceptions.
        images: every `<img>`, in document order.
        text: the page's visible text (`document.body.innerText`).
        screenshot: a PNG of the viewport, or of the whole page.
        sections: the id of every `<section id>` -> its top, in CSS pixels from the page's top.
    """

    failed_requests: list[tuple[str, str]]
    console_errors: list[str]
    images: list[ImageState]
    text: str
    screenshot: bytes
    sections: dict[str, int]

    @property
    def images_ok(self) -> bool:
        """Every `<img>` decoded to at least one pixel."""
        return all(image.ok for image in self.images)


def find_chromium() -> str | None:
    """The Chromium binary: `$CHROMIUM`, Debian's, or `chromium` on the PATH; None without one."""
    chosen = os.environ.get(CHROMIUM_VARIABLE)
    if chosen:
        return chosen
    for candidate in _CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


def colour_count(png: bytes, *, limit: int = 256) -> int:
    """The distinct colours of a PNG, counted up to `limit` (a count above it is `limit` + 1).

    A blank page is one colour; a page with text, tables and pictures has hundreds.
    """
    with Image.open(io.BytesIO(png)) as image:
        colours = image.convert("RGB").getcolors(maxcolors=limit)
    return limit + 1 if colours is None else len(colours)


@dataclass
class _Connection:
    """One CDP connection over the pipe: commands answered by id, events kept in order."""

    process: subprocess.Popen
    to_browser: int
    from_browser: int
    deadline: float
    buffer: bytes = b""
    last_id: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    def _message(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_browser], [], [], left)[0]:
                raise BrowserError("chromium did not answer in time")
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium closed the pipe (exit code {self.process.poll()})")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: Mapping[str, Any] | None = None, *, session: str | None = None) -> Any:
        self.last_id += 1
        message: dict[str, Any] = {"id": self.last_id, "method": method, "params": dict(params or {})}
        if session is not None:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._message()
            if answer.get("id") == self.last_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                return answer["result"]
            self.events.append(answer)

    def wait_for(self, method: str) -> dict[str, Any]:
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method:
                    return event
            seen = len(self.events)
            self.events.append(self._message())

    def evaluate(self, expression: str, *, session: str) -> Any:
        answer = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=session,
        )
        return answer["result"].get("value")


def _high_fd(fd: int) -> int:
    """`fd` moved to 10 or above (the original closed): putting the two ends on 3 and 4 must
    never overwrite the other end."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _start(executable: str, profile: str, *, width: int, height: int) -> tuple[subprocess.Popen, int, int]:
    """Chromium with its CDP pipe on fds 3 and 4; (the process, our write end, our read end)."""
    browser_reads, we_write = os.pipe()
    we_read, browser_writes = os.pipe()
    browser_reads, browser_writes = _high_fd(browser_reads), _high_fd(browser_writes)
    command = [
        executable,
        *_FLAGS,
        f"--user-data-dir={profile}",
        f"--disk-cache-dir={profile}/cache",
        f"--window-size={width},{height}",
        "--remote-debugging-pipe",
        "about:blank",
    ]
    # A bare Python puts the pipe on fds 3 and 4 and execs Chromium (same pid): unlike a
    # preexec_fn, safe in a process with threads (the test session's local Hub runs some);
    # unlike dash, it takes descriptors above 9.
    trampoline = [
        sys.executable,
        "-I",
        "-S",
        "-c",
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
        "os.execv(sys.argv[3], sys.argv[3:])",
        str(browser_reads),
        str(browser_writes),
    ]
    env = {
        **os.environ,
        # crashpad's "Crash Reports" follows XDG_CONFIG_HOME; no dconf writes under ~/.cache.
        "XDG_CONFIG_HOME": profile,
        "GSETTINGS_BACKEND": "memory",
    }
    try:
        process = subprocess.Popen(
            [*trampoline, *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            pass_fds=(browser_reads, browser_writes),
            start_new_session=True,  # its own process group, killed whole
        )
    except OSError as error:
        for fd in (browser_reads, browser_writes, we_write, we_read):
            os.close(fd)
        raise BrowserError(f"cannot start {executable}: {error}") from None
    os.close(browser_reads)
    os.close(browser_writes)
    return process, we_write, we_read


def _stop(process: subprocess.Popen, profile: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    # crashpad's handlers left the group (setsid): ours are the ones started with our profile.
    marker = profile.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if marker in Path(f"/proc/{entry}/cmdline").read_bytes():
                os.kill(int(entry), signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(profile, ignore_errors=True)


def open_page(
    path: Path,
    *,
    width: int = 1280,
    height: int = 900,
    full_page: bool = False,
    timeout: float = 60.0,
) -> PageLoad:
    """Load a local HTML file in a fresh headless Chromium and report what it showed.

    Args:
        path: the page.
        width, height: the viewport, in CSS pixels.
        full_page: screenshot the whole page (up to 16384 px high), not only the viewport.
        timeout: seconds for everything, start to screenshot.

    Returns:
        The failed requests, console errors, images, text and screenshot.

    Raises:
        BrowserError: no Chromium, or it did not start, answer in time or load the page.
    """
    executable = find_chromium()
    if executable is None:
        raise BrowserError("no chromium: apt-get install -y chromium, or set CHROMIUM")
    profile = tempfile.mkdtemp(prefix="covid-seg-chromium-")
    try:
        process, to_browser, from_browser = _start(executable, profile, width=width, height=height)
    except BrowserError:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    try:
        connection = _Connection(process, to_browser, from_browser, deadline=time.monotonic() + timeout)
        return _load(connection, Path(path).resolve().as_uri(), width=width, height=height, full_page=full_page)
    finally:
        os.close(to_browser)
        os.close(from_browser)
        _stop(process, profile)


def _load(connection: _Connection, url: str, *, width: int, height: int, full_page: bool) -> PageLoad:
    target = connection.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = connection.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Network", "Runtime", "Log"):
        connection.send(f"{domain}.enable", session=session)
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    connection.send("Emulation.setDeviceMetricsOverride", metrics, session=session)
    navigated = connection.send("Page.navigate", {"url": url}, session=session)
    if navigated.get("errorText"):
        raise BrowserError(f"{url}: {navigated['errorText']}")
    connection.wait_for("Page.loadEventFired")
    images = [
        ImageState(src=image["src"], ok=image["ok"], natural_width=image["width"])
        for image in connection.evaluate(_IMAGES_JS, session=session)
    ]
    text = connection.evaluate("document.body ? document.body.innerText : ''", session=session)
    sections = connection.evaluate(_SECTIONS_JS, session=session)
    capture: dict[str, Any] = {"format": "png"}
    if full_page:
        size = connection.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        page_height = min(int(size["height"]) + 1, _MAX_HEIGHT)
        capture.update(
            captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "height": page_height, "scale": 1}
        )
    screenshot = base64.b64decode(connection.send("Page.captureScreenshot", capture, session=session)["data"])
    failed, errors = _problems(connection.events)
    return PageLoad(
        failed_requests=failed,
        console_errors=errors,
        images=images,
        text=text,
        screenshot=screenshot,
        sections={name: int(top) for name, top in sections.items()},
    )


def _problems(events: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], list[str]]:
    """The failed requests and the errors among the events received."""
    urls: dict[str, str] = {}
    failed: list[tuple[str, str]] = []
    errors: list[str] = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            failed.append((urls.get(params["requestId"], "?")[:120], params["errorText"]))
        elif method == "Network.responseReceived" and params["response"].get("status", 200) >= 400:
            failed.append((params["response"]["url"][:120], f"HTTP {params['response']['status']}"))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            words = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"])
            errors.append(f"console.{params['type']}: {words}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append("exception: " + details.get("exception", {}).get("description", details["text"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            errors.append(f"log/{entry['source']}: {entry['text']} {entry.get('url', '')[:120]}")
    return failed, errors


def screenshot(page: Path, out: Path, *, section: str | None = None, height: int = 1500, width: int = 1280) -> Path:
    """A PNG of `height` CSS pixels of a page, from the top of one of its sections (or its top).

    Args:
        page: the HTML file.
        out: the PNG written.
        section: the id of the `<section>` the picture starts at.
        height, width: the picture's size in CSS pixels (one pixel each).

    Returns:
        `out`.

    Raises:
        BrowserError: as `open_page`, or the page has no such section.
    """
    load = open_page(page, width=width, full_page=True)
    if section is not None and section not in load.sections:
        raise BrowserError(f"{page}: no section {section!r} (it has {', '.join(load.sections)})")
    top = 0 if section is None else max(0, load.sections[section] - 16)
    with Image.open(io.BytesIO(load.screenshot)) as whole:
        part = whole.crop((0, top, width, min(whole.height, top + height)))
        # Optimised: the picture is committed to the repository.
        part.save(out, format="PNG", optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m covid_chestxray_seg_dev.browser PAGE OUT [--section ID] [--height H]`."""
    import argparse

    parser = argparse.ArgumentParser(description="A picture of part of an HTML page, by headless Chromium.")
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--section", default=None, help="the id of the <section> to start at (default: the top)")
    parser.add_argument("--height", type=int, default=1500, help="CSS pixels (default: 1500)")
    parser.add_argument("--width", type=int, default=1280, help="CSS pixels (default: 1280)")
    args = parser.parse_args(argv)
    screenshot(args.page, args.out, section=args.section, height=args.height, width=args.width)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
