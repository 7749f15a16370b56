"""End to end in a real headless Chromium (Debian's ``chromium``) driven by Playwright, against
``streamlit run app.py`` started here on loopback: upload a CSV, take seeds, annotate with replayed
real LLM evidence (the paper's five LLMs on TREC), fit MoLAM, run two iterations, override a
flagged label, export CSV and check the file. Screenshots of every page go to ``assets/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mollia_core.export import import_labeled
from project_helpers import write_trec_files

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
N_TEXTS, BATCH, SEEDS = 300, 20, 50
LONG = 240_000  # ms: fitting, the encoder's first load and training on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    env = dict(os.environ, MOLLIA_PROJECTS_DIR=str(tmp_path / "projects"), MOLLIA_HOME=str(tmp_path / "home"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = (tmp_path / "streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         # No hot reload: a source file edited while the test runs must not swap classes under the app.
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
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
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("Debian's chromium is not installed: apt-get install -y --no-install-recommends chromium")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def _go(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).wait_for()


def _shot(page, name: str) -> None:
    charts = page.locator("[data-testid=stPlotlyChart]")
    for i in range(charts.count()):  # Plotly draws after the page settles
        charts.nth(i).locator(".main-svg").first.wait_for(state="attached")
    page.wait_for_timeout(800)
    page.evaluate("document.querySelectorAll('[data-testid=stMain], section.main').forEach(e => e.scrollTo(0, 0))")
    page.screenshot(path=str(ASSETS / f"{name}.png"))


def _wait_for(page, locator, timeout: int = 60_000) -> None:
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


def _settle(page) -> None:
    """Wait until the app has finished the rerun a click started."""
    page.wait_for_timeout(1500)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=LONG)


def _choose(page, label: str, option: str | None = None) -> str:
    """Pick ``option`` (default: the first one) in the Streamlit selectbox labeled ``label``."""
    page.get_by_label(label).click()
    choice = page.get_by_role("option", name=option, exact=True) if option else page.get_by_role("option").first
    choice.wait_for()
    picked = choice.inner_text().strip()
    choice.click()
    _settle(page)
    return picked


def test_from_csv_to_exported_labels_in_a_real_browser(server, browser, trec, tmp_path):
    ASSETS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1500}, accept_downloads=True)
    page.set_default_timeout(60_000)
    try:
        _walk_through(page, server, trec, tmp_path)
    except BaseException:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"screenshot of the failure: {tmp_path / 'failure.png'}")
        raise


def _walk_through(page, server, trec, tmp_path) -> None:
    csv, evidence = write_trec_files(trec, tmp_path, n=N_TEXTS)
    page.goto(server)

    # A new project.
    page.get_by_label("New project").fill("trec-questions")
    page.get_by_role("button", name="Create project").click()
    page.get_by_text("Open: trec-questions").wait_for()

    # 1 Data: upload, columns (id, text, label are recognised), seeds from the label column.
    page.locator("input[type=file]").set_input_files(str(csv))
    page.get_by_role("button", name="Use this data").click()
    _wait_for(page, page.get_by_role("heading", name="Seed labels"))
    page.get_by_role("button", name=f"Take {SEEDS} seeds from column 'label'").click()
    page.get_by_text(f"{SEEDS} seed labels").wait_for()
    _shot(page, "1-data")

    # 2 Annotators: replay the five LLMs' real evidence.
    _go(page, "Annotators")
    page.get_by_text("Replay an evidence file (no LLM needed)").click()
    page.locator("input[type=file]").set_input_files(str(evidence))
    page.get_by_role("button", name="Import evidence").click()
    _wait_for(page, page.get_by_role("heading", name="Each LLM on the seed labels"))
    _shot(page, "2-annotators")

    # 3 MoLAM.
    _go(page, "MoLAM")
    page.get_by_role("button", name="Fit MoLAM").click()
    _wait_for(page, page.get_by_role("heading", name="Accuracy on the seeds (cross-validated)"), LONG)
    _shot(page, "3-molam")

    # 4 Active learning: batch of 20, two iterations.
    _go(page, "Active learning")
    batch = page.get_by_label("Batch size B")
    batch.fill(str(BATCH))
    batch.press("Enter")
    n_more = page.get_by_label("N", exact=True)
    n_more.fill("2")
    n_more.press("Enter")
    page.get_by_role("button", name="Run 2 iterations").click()
    _wait_for(page, page.get_by_text("iterations done: 2"), LONG)
    _shot(page, "4-active-learning")

    # 5 Review: the flagged texts; override the first one's label in one click.
    _go(page, "Review")
    _choose(page, "Flag (d_anno)", "flagged")
    flagged_id = _choose(page, "Text to inspect (or select a row above)")
    _wait_for(page, page.get_by_role("heading", name="What each LLM said"))
    page.get_by_role("heading", name=f"Text {flagged_id}").wait_for()
    current = page.get_by_test_id("stMetric").first.get_by_test_id("stMetricValue").inner_text().strip()
    labels = list(trec.labels)
    new_label = next(label for label in labels if label != current)
    # The button's accessible name ends with its keyboard shortcut: "3 · entity 3".
    page.get_by_role("button", name=f"{labels.index(new_label) + 1} · {new_label}").click()
    page.get_by_text("Overrides of this text").wait_for()
    _shot(page, "5-review")

    # 6 Export: CSV.
    _go(page, "Export")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    exported = tmp_path / "export.csv"
    download.value.save_as(exported)
    _shot(page, "6-export")

    frame = import_labeled(exported)
    assert len(frame) == SEEDS + 2 * BATCH
    assert frame["id"].is_unique
    assert set(frame["label"]) <= set(labels)
    counts = frame["source"].value_counts().to_dict()
    assert counts == {"seed": SEEDS, "molam": 2 * BATCH - 1, "override": 1}
    overridden = frame.set_index("id").loc[flagged_id]
    assert overridden["source"] == "override" and overridden["label"] == new_label
    assert overridden["flag"]
    molam = frame[frame["source"] == "molam"]
    assert molam["molam_probability"].between(0, 1).all()
    assert set(molam["iteration"]) == {1, 2}
    # The user's own column travels with each text.
    assert frame["note"].str.startswith("nöte").all()
