"""Driving the real dashboard through streamlit.testing's AppTest, shared by the page tests."""

from __future__ import annotations

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

from mollia_core.display import WORD_JOINER

APP = Path(__file__).resolve().parent.parent / "app.py"
TIMEOUT = 60


def app(project: str | None = None, page: str | None = None) -> AppTest:
    """The app after its first run, with ``project`` open and on ``page`` (relative to app.py)."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if project:
        at.session_state["project_name"] = project
    if page:
        at.switch_page(page)
    return at.run()


def upload(at: AppTest, name: str, content: bytes) -> AppTest:
    """Upload ``content`` as the CSV ``name`` on the Data page."""
    at.file_uploader(key="data_upload").set_value((name, content, "text/csv"))
    return at.run()


def errors(at: AppTest) -> list[str]:
    """The error messages as the user reads them (the page escapes them for Markdown)."""
    return [shown(e.value) for e in at.error]


def error_markdown(at: AppTest) -> list[str]:
    """The error messages as the page hands them to Streamlit's Markdown."""
    return [e.value for e in at.error]


def shown(markdown: str) -> str:
    """What the user reads of escaped Markdown: the punctuation itself, without the invisible joiners."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace(WORD_JOINER, "")


def assert_no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def finish_job(at: AppTest, timeout: float = 600) -> AppTest:
    """When the page shows a job running (its progress bar), wait for it to end, then rerun the page: the job
    runs in the server (``mollia_core.jobs``), and AppTest does not run the fragment that polls it."""
    from mollia_core import jobs
    from mollia_core.project import project_path

    if not at.get("progress"):
        return at
    jobs.wait(project_path(at.session_state["project_name"]), timeout)
    return at.run(timeout=timeout)
