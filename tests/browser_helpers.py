"""What the browser tests share: ``streamlit run app.py`` started on loopback (``server``), a headless
Chromium page whose every request is recorded and anything not addressed to 127.0.0.1 aborted
(``browser``, ``recorded``), and the small steps a walk is made of. Test modules import from here
(fixtures included), never from each other."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from mollia_core.display import WORD_JOINER

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
LONG = 240_000  # ms: fitting, the encoder's first load and training on a busy 2-core machine
# Background networking, component updates and sync are the browser's own traffic, not the page's.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def projects_dir(tmp_path: Path) -> Path:
    """The projects folder of the server a test starts."""
    return tmp_path / "projects"


@pytest.fixture
def server(tmp_path):
    """A fresh ``streamlit run app.py``: its first request is a cold start."""
    port = free_port()
    env = dict(os.environ, MOLLIA_PROJECTS_DIR=str(projects_dir(tmp_path)), MOLLIA_HOME=str(tmp_path / "home"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = (tmp_path / "streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", LOOPBACK, "--server.headless", "true", "--browser.gatherUsageStats", "false",
         # No hot reload: a source file edited while the test runs must not swap classes under the app.
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://{LOOPBACK}:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"streamlit did not start: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def browser(tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("Debian's chromium is not installed: apt-get install -y --no-install-recommends chromium")
    # Chromium keeps crash-report settings and a dconf database under the home folder: a temporary one.
    home = tmp_path / "browser-home"
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"))
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS, env=env)
        yield browser
        browser.close()


class RecordedPage:
    """A browser page whose every request is logged; a request for another host is aborted."""

    def __init__(self, browser) -> None:
        self.requests: list[str] = []
        self.context = browser.new_context(viewport={"width": 1400, "height": 1500}, accept_downloads=True)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)

    def _route(self, route) -> None:
        self.requests.append(route.request.url)
        if leaves_the_machine(route.request.url):
            route.abort()
        else:
            route.continue_()

    def outside_requests(self) -> list[str]:
        """Requests (and resource URLs the page holds: favicon, images, scripts) not for 127.0.0.1."""
        in_page = self.page.evaluate(
            """() => [
                ...performance.getEntriesByType('resource').map(e => e.name),
                ...[...document.querySelectorAll('img, script, iframe, source, link, image')]
                    .map(e => e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('xlink:href') || '')
                    .filter(Boolean).map(ref => new URL(ref, document.baseURI).href),
            ]"""
        )
        return sorted({url for url in self.requests + in_page if leaves_the_machine(url)})


def leaves_the_machine(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme not in ("data", "blob", "about") and parts.hostname != LOOPBACK


@pytest.fixture
def recorded(browser, tmp_path):
    recorded = RecordedPage(browser)
    yield recorded
    recorded.context.close()


def screenshots_dir(tmp_path: Path) -> Path:
    """Where the page screenshots go: the README's ``assets/`` only when scripts/screenshots.py asks."""
    folder = Path(os.environ.get("MOLLIA_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def go(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).wait_for()


def wait_for_charts(page, expected: int = 0) -> None:
    """Wait until the page's Plotly charts (at least ``expected`` of them) are drawn: Plotly loads and
    draws after the page settles."""
    charts = page.locator("[data-testid=stPlotlyChart]")
    for i in range(max(charts.count(), expected)):
        charts.nth(i).locator(".main-svg").first.wait_for(state="attached")


def shot(page, folder: Path, name: str) -> None:
    wait_for_charts(page)
    page.wait_for_timeout(800)
    page.evaluate("document.querySelectorAll('[data-testid=stMain], section.main').forEach(e => e.scrollTo(0, 0))")
    page.screenshot(path=str(folder / f"{name}.png"))


def wait_for(page, locator, timeout: int = 60_000) -> None:
    """Wait for ``locator``; fail at once with the page's message if the app shows an error instead."""
    problems = page.locator("[data-testid=stException], [data-testid=stAlertContentError]")
    deadline = time.monotonic() + timeout / 1000
    while time.monotonic() < deadline:
        if locator.count() and locator.first.is_visible():
            return
        if problems.count():
            pytest.fail(f"the app reported: {problems.first.inner_text()[:2000]}")
        page.wait_for_timeout(250)
    pytest.fail(f"timed out waiting for {locator}")


def settle(page) -> None:
    """Wait until the app has finished the rerun a click started."""
    page.wait_for_timeout(1500)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=LONG)


def choose(page, label: str, option: str | None = None) -> str:
    """Pick ``option`` (default: the first one) in the Streamlit selectbox labeled ``label``."""
    page.get_by_label(label).click()
    choice = page.get_by_role("option", name=option, exact=True) if option else page.get_by_role("option").first
    choice.wait_for()
    picked = choice.inner_text().strip()
    choice.click()
    settle(page)
    return picked


def run_recorded(recorded: RecordedPage, tmp_path: Path, walk) -> None:
    """Run ``walk(page)``; then no request may have left 127.0.0.1. A failure leaves a full-page screenshot."""
    try:
        walk(recorded.page)
    except BaseException:
        recorded.page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"screenshot of the failure: {tmp_path / 'failure.png'}")
        raise
    finally:
        outside = recorded.outside_requests()
    assert outside == [], f"the page asked for resources off this machine: {outside}"
    icons = recorded.page.evaluate("[...document.querySelectorAll('link[rel~=icon]')].map(link => link.href)")
    assert icons and all("/media/" in icon for icon in icons), f"the page icon is not served here: {icons}"


def show_all_labeled_texts(page) -> None:
    """On the Review page, leave the review queue for the table of every labeled text."""
    page.get_by_test_id("stButtonGroup").get_by_text("All labeled texts", exact=True).click()
    wait_for(page, page.get_by_text("Flag (d_anno)"))


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")


def read(text: str) -> str:
    """Page text as the user reads it: the invisible word joiners that keep autolinks off dropped, and
    Plotly's no-break spaces read as spaces."""
    return text.replace(WORD_JOINER, "").replace("\u00a0", " ")
