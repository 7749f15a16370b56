"""A job outlives the browser (mollia_core.jobs), end to end: a real headless Chromium against
``streamlit run app.py`` on loopback (the fixtures of test_e2e_browser), the paper's real TREC evidence,
the real MoLAM and the real AL loop (offline encoder, fast learner).

A run of AL iterations is started from the Active learning page; the page is closed in the middle; the
job goes on in the server; a new page on the project's URL shows the same job running, then done.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mollia_core import jobs
from mollia_core.project import AnnotatorSettings, Project
from project_helpers import replayed_project
from browser_helpers import LONG, RecordedPage, go, projects_dir, set_number, wait_for
from browser_helpers import browser, recorded, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

NAME, N_TEXTS, SEEDS, BATCH, ITERATIONS = "jobs-e2e", 200, 50, 20, 3
SCREENSHOT = Path("/tmp/h4_jobs.png")


def _ready_project(trec, folder: Path) -> Project:
    """Seeds, the replayed evidence of three LLMs and MoLAM fitted: ready for the loop."""
    folder.mkdir(parents=True, exist_ok=True)
    project = replayed_project(trec, NAME, n=N_TEXTS, seeds=SEEDS, root=folder)
    project.annotation.fit(AnnotatorSettings(method="molam-llm-only"), cv=False)
    return project


def _open(browser, url: str) -> RecordedPage:
    recorded = RecordedPage(browser)
    recorded.page.goto(url)
    recorded.page.get_by_text(f"Open: {NAME}").wait_for()
    go(recorded.page, "Active learning")
    return recorded


def test_a_job_goes_on_when_the_page_closes_and_a_new_page_shows_it(server, browser, trec, tmp_path):
    project = _ready_project(trec, projects_dir(tmp_path))
    url = f"{server}/?project={NAME}"

    first = _open(browser, url)
    try:
        page = first.page
        set_number(page, "Batch size B", BATCH)
        set_number(page, "Iterations to run now", ITERATIONS)
        page.get_by_role("button", name=f"Run {ITERATIONS} more iterations").click()
        wait_for(page, page.get_by_text("active-learning run:"), LONG)
        wait_for(page, page.get_by_role("button", name="Stop"))
        outside = first.outside_requests()
    finally:
        first.context.close()  # the tab goes away in the middle of the job
    assert outside == [], f"the page asked for resources off this machine: {outside}"

    closed_at = jobs.status(project.path)
    assert closed_at.running and closed_at.kind == "loop", closed_at

    second = _open(browser, url)
    try:
        page = second.page
        wait_for(page, page.get_by_text("active-learning run:"), LONG)  # the same job, live
        page.get_by_role("button", name="Stop").wait_for()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        assert jobs.status(project.path).id == closed_at.id
        wait_for(page, page.get_by_text(f"iterations done: {ITERATIONS}"), 3 * LONG)
        page.get_by_text("active-learning run:").wait_for(state="detached", timeout=LONG)
        page.get_by_role("heading", name="Learning curve").wait_for(timeout=LONG)
        assert second.outside_requests() == []
    except BaseException:
        second.page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"screenshot of the failure: {tmp_path / 'failure.png'}")
        raise
    finally:
        second.context.close()

    ended = jobs.status(project.path)
    assert ended.id == closed_at.id and ended.status == jobs.DONE, ended
    assert jobs.completed_iterations(project) == ITERATIONS
    assert project.summary()["labeled"] == SEEDS + ITERATIONS * BATCH
