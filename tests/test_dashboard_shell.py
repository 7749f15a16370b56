"""The app shell around every page (dashboard/shell.py): each page asks for it first, and the open
project travels in the URL. The browser side (a cold server's deep links, a reload) is in
test_e2e_browser.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_helpers import APP, TIMEOUT, assert_no_exception
from mollia_core.project import Project

PAGE_FILES = sorted((Path(__file__).resolve().parent.parent / "pages").glob("*.py"))


def test_pages_holds_the_six_pages_only():
    assert [path.name for path in PAGE_FILES] == [
        "1_data.py", "2_annotators.py", "3_molam.py", "4_active_learning.py", "5_review.py", "6_export.py"]


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda path: path.name)
def test_every_page_asks_for_the_app_shell_before_it_draws_anything(path):
    statements = [node for node in ast.parse(path.read_text()).body
                  if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign))
                  and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    first = ast.unparse(statements[0])
    assert first == "require_app_shell()", f"{path.name} starts with {first!r}"


def _app_with_url(project: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["project"] = project
    return at


def test_a_url_naming_a_project_opens_it_and_every_page_keeps_it_there(projects):
    Project.create("alpha")
    Project.create("beta")  # the most recent: a fresh session must not fall back to it
    at = _app_with_url("alpha").run()
    assert_no_exception(at)
    assert at.session_state["project_name"] == "alpha"
    assert "Open: alpha" in [t.value for t in at.sidebar.text]
    at.switch_page("pages/3_molam.py").run()
    assert_no_exception(at)
    assert at.query_params["project"] == "alpha"


def test_choosing_a_project_puts_it_in_the_url(projects):
    Project.create("alpha")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert "project" not in at.query_params
    at.selectbox(key="project_select").select("alpha").run()
    assert at.query_params["project"] == "alpha"


@pytest.mark.parametrize("name", ["gone", "../../etc/passwd", "**bold** [x](http://example.org)"])
def test_a_url_naming_no_project_says_so_and_opens_none(projects, name):
    Project.create("alpha")
    at = _app_with_url(name).run()
    assert_no_exception(at)
    assert "project_name" not in at.session_state
    assert "No project open" in [t.value for t in at.sidebar.text]
    warnings = [w.value for w in at.warning]
    assert any("The link names the project" in w and "open or create a project in the sidebar" in w
               for w in warnings), warnings
    assert "project" not in at.query_params
