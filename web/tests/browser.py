"""Real-browser test helpers: the ASGI app under uvicorn on a loopback port, Debian's Chromium via chromedriver."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import pytest
import uvicorn
from django.conf import settings

from testsupport import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts" / "web"
SAMPLE = Path(settings.BASE_DIR) / "data" / "sample" / "gemini_ETHUSD_trades_2021-07-01.csv.gz"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


class AsgiServer:
    """cryptopred.asgi under uvicorn in a thread; stop() drops every websocket, start() comes back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        from cryptopred.asgi import application

        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=self.port,
            ws="core.wsframes:FrameTransportProtocol",
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        started = threading.Event()
        for _ in range(600):
            if self.server.started or not self.thread.is_alive():
                break
            started.wait(0.05)
        if not self.server.started:
            raise RuntimeError(f"uvicorn did not start on port {self.port}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(10)
            self.server = None


def chrome(profile: Path):
    """A headless Chromium; skipped locally when Debian's packages are missing, a failure in CI."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        reason = f"browser tests need Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason + ": apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The network events of every page (see foreign_requests): nothing may come from another host; and the
    # console, where Chromium reports what the Content-Security-Policy blocked (see csp_violations).
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900"]:
        options.add_argument(flag)
    # An explicit driver path: selenium-manager is never asked to download anything.
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def foreign_requests(driver, origin: str) -> list[str]:
    """URLs the browser requested (or opened a websocket to) since the last call, on a host other than origin's.

    Read from Chromium's performance log, so it sees every request: documents, scripts, styles, images, fonts,
    fetches and websockets, including the ones a page makes after it loaded.
    """
    import json
    from urllib.parse import urlsplit

    host = urlsplit(origin).netloc
    foreign = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message.get("method") == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
        elif message.get("method") == "Network.webSocketCreated":
            url = params.get("url", "")
        else:
            continue
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about", "chrome", "devtools") or not parts.scheme:
            continue
        if parts.netloc != host:
            foreign.append(url)
    return foreign


def csp_violations(driver) -> list[str]:
    """Console messages since the last call that report something the Content-Security-Policy refused."""
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


RESOURCE_URLS_JS = "return performance.getEntriesByType('resource').map((e) => e.name).concat([location.href]);"


def screenshot(driver, name: str) -> Path:
    """NAME.png: what the window shows; NAME-full.png: the whole page at the same width."""
    import base64

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    full = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    (ARTIFACTS / f"{name}-full.png").write_bytes(base64.b64decode(full["data"]))
    return path


def sample_slice(dest: Path, first: int, count: int) -> Path:
    """Rows first .. first+count of the bundled real Gemini ETH/USD day, as a trades file of their own."""
    with gzip.open(SAMPLE, "rt") as src:
        lines = src.readlines()
    with gzip.open(dest, "wt") as out:
        out.write(lines[0])
        out.writelines(lines[1 + first : 1 + first + count])
    return dest


def wait_until(driver, condition, timeout: float = 60, message: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message)
