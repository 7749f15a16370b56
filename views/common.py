"""What every dashboard page shares: the open project, its cached resources, error display.

Durable state lives in the project's SQLite file (``mollia_core.project``); ``st.session_state``
holds only UI state (which project is open, form contents).
"""

from __future__ import annotations

import streamlit as st

from mollia_core.project import Project, ProjectError, list_projects, project_path, projects_dir

PROJECT_KEY = "project_name"


@st.cache_resource(show_spinner=False)
def _project_at(path: str) -> Project:
    return Project(path)


def current_project() -> Project | None:
    """The project open in this browser session, or None."""
    name = st.session_state.get(PROJECT_KEY)
    if not name:
        return None
    path = project_path(name)
    if not path.exists():
        st.session_state.pop(PROJECT_KEY, None)
        return None
    return _project_at(str(path))


def require_project() -> Project:
    """The open project; stops the page with a hint when there is none."""
    project = current_project()
    if project is None:
        st.info("Open or create a project in the sidebar to start.")
        st.stop()
    return project


def require_data(project: Project) -> None:
    if not project.has_dataset():
        st.warning("This project has no data yet: upload a CSV or open an example on the **Data** page.")
        st.page_link("views/1_data.py", label="Go to Data", icon=":material/table:")
        st.stop()


def show_error(exc: Exception) -> None:
    """A user's mistake, shown in the page as text (no stack trace)."""
    st.error(str(exc), icon=":material/error:")


def project_sidebar() -> None:
    """Open, create and switch projects."""
    with st.sidebar:
        st.subheader("Project")
        names = list_projects()
        current = st.session_state.get(PROJECT_KEY)
        if names:
            index = names.index(current) if current in names else None
            chosen = st.selectbox("Open project", names, index=index, placeholder="Choose a project",
                                  key="project_select")
            if chosen and chosen != current:
                st.session_state[PROJECT_KEY] = chosen
                st.rerun()
        with st.form("new_project", clear_on_submit=True, border=False):
            new_name = st.text_input("New project", placeholder="e.g. support-tickets")
            if st.form_submit_button("Create project", icon=":material/add:"):
                try:
                    Project.create(new_name)
                except ProjectError as exc:
                    show_error(exc)
                else:
                    st.session_state[PROJECT_KEY] = new_name.strip()
                    st.rerun()
        st.caption(f"Projects are kept in `{projects_dir()}`")


def progress_text(done: int, total: int, rate: float, eta_s: float | None) -> str:
    eta = "—" if eta_s is None else (f"{eta_s:.0f} s" if eta_s < 120 else f"{eta_s / 60:.1f} min")
    return f"{done} / {total} texts · {rate:.2f} texts/s · ETA {eta}"


_MARKDOWN_SPECIAL = set("\\`*_{}[]()<>#+-.!|~:$")


def md(value: object) -> str:
    """User data made inert for Streamlit's Markdown (labels, column names, file names):
    every character Markdown (or Streamlit's :color[] / :icon: syntax) could act on is escaped."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in str(value))
