"""The HTML report in headless Chromium: loads offline with no console errors and no network
requests, its figures decode, hostile strings stay text, and a screenshot is taken.

Chromium is driven over the DevTools protocol (websocket-client), so console messages,
exceptions and every request the page makes are observed, not guessed from a DOM dump.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest

from results.loader import load_all
from results.report import build_report
from results.synthetic import write_runs

websocket = pytest.importorskip("websocket")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--remote-debugging-port=0",
    "--window-size=1280,2000",
]
HOSTILE = '<script>alert("x")</script><img src=http://example.invalid/x.png onerror=alert(1)>'


class Browser:
    """A headless Chromium with one page, reached over the DevTools websocket."""

    def __init__(self, profile: pathlib.Path) -> None:
        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: close() ends its helpers too
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            pages = [t for t in json.load(resp) if t["type"] == "page"]
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(e.get("method") == method for e in self.events):
            assert time.monotonic() < deadline, f"no {method} within {timeout_s} s"
            self.events.append(json.loads(self.ws.recv()))

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)
        # renderer, GPU and crash-handler processes may outlive the browser process and still
        # write into the profile; end the whole group before the profile is removed
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("browser")
    paths = write_runs(
        root / "runs", num_rows=20_000, runs_per_side=3, sizes=(1024, 65536, 1 << 20)
    )
    text = paths[0].read_text().splitlines()
    header = json.loads(text[0])
    header["metadata"]["hosts"] = [HOSTILE, "node1"]
    header["metadata"]["label"] = HOSTILE
    paths[0].write_text("\n".join([json.dumps(header), *text[1:]]) + "\n")
    loaded = load_all([root / "runs"])
    return build_report(loaded, root / "report", by=["fabric"], title=HOSTILE).html


def test_report_renders_offline_without_errors(report: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = Browser(pathlib.Path(profile))
        try:
            for domain in ("Runtime", "Log", "Network", "Page"):
                browser.call(f"{domain}.enable")
            browser.call("Page.navigate", url=report.as_uri())
            browser.wait_event("Page.loadEventFired")
            result = browser.call(
                "Runtime.evaluate",
                returnByValue=True,
                expression=(
                    "JSON.stringify({images: document.images.length, decoded: Array.from("
                    "document.images).filter(i => i.complete && i.naturalWidth > 0).length, "
                    "scripts: document.scripts.length, title: document.title})"
                ),
            )
            page = json.loads(result["result"]["value"])
            shot = browser.call("Page.captureScreenshot", format="png")
        finally:
            browser.close()
    png = base64.b64decode(shot["data"])
    (report.parent / "screenshot.png").write_bytes(png)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    errors = [
        e
        for e in browser.events
        if e.get("method") in ("Runtime.exceptionThrown", "Runtime.consoleAPICalled")
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert errors == []
    requests = [
        e["params"]["request"]["url"]
        for e in browser.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert page["scripts"] == 0  # the hostile <script> stayed text
    assert page["title"] == HOSTILE
    assert page["images"] >= 5 and page["decoded"] == page["images"]
