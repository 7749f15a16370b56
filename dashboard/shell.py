"""The app shell every page runs inside: page config, navigation, the project sidebar.

Streamlit puts an app with a ``pages/`` folder beside its entrypoint in its legacy multipage mode until
some script run calls ``st.navigation``; the flag is per server process
(``streamlit.runtime.pages_manager.PagesManager.uses_pages_directory``). So on a cold server whose first
request is a deep link such as ``/molam``, Streamlit runs ``pages/3_molam.py`` by itself: no page
config, Streamlit's own file-name navigation, no project sidebar, no open project; and it stays so for
every session until one opens ``/``. Each page therefore starts with ``require_app_shell()``, which,
when the page runs without the shell, runs the shell instead: ``st.navigation`` resolves the requested
page by its URL path and runs it inside the shell, and the legacy mode ends for the whole server.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path

import streamlit as st

from dashboard.common import current_project, job_sidebar, keep_project_in_url, open_project_from_url, project_sidebar

# A local file, served by this server: a :material/...: icon or an emoji would make the browser fetch
# the favicon from Google's font CDN or an emoji CDN, and nothing may leave this machine.
PAGE_ICON = Path(__file__).resolve().parent.parent / "assets" / "icon.png"

# True while the shell runs a page (script runs are one thread each, and reset() ends it either way).
_inside_shell: ContextVar[bool] = ContextVar("inside_app_shell", default=False)


def _pages() -> list[st.Page]:
    return [
        st.Page("pages/1_data.py", title="Data", icon=":material/table:", default=True),
        st.Page("pages/2_annotators.py", title="Annotators", icon=":material/smart_toy:"),
        st.Page("pages/3_molam.py", title="MoLAM", icon=":material/merge:"),
        st.Page("pages/4_active_learning.py", title="Active learning", icon=":material/autorenew:"),
        st.Page("pages/5_review.py", title="Review", icon=":material/rate_review:"),
        st.Page("pages/6_export.py", title="Export", icon=":material/download:"),
    ]


def run_app() -> None:
    """One script run of the dashboard: the shell around the page the URL names."""
    st.set_page_config(page_title="MoLLIA", page_icon=str(PAGE_ICON), layout="wide")
    navigation = st.navigation(_pages())
    open_project_from_url()
    project_sidebar()
    project = current_project()
    keep_project_in_url(project)
    st.sidebar.text(f"Open: {project.name}" if project else "No project open")
    if project is not None and project.has_dataset():
        job_sidebar(project)
    token = _inside_shell.set(True)
    try:
        navigation.run()
    finally:
        _inside_shell.reset(token)


def require_app_shell() -> None:
    """Every page's first call: a page Streamlit runs by itself (see the module's docstring) is run by the
    shell instead, and this bare run stops."""
    if not _inside_shell.get():
        run_app()
        st.stop()
