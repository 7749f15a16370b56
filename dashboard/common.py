"""What every dashboard page shares: the open project, its cached resources, error display.

Durable state lives in the project's SQLite file (``mollia_core.project``); ``st.session_state``
holds only UI state (which project is open, form contents).
"""

from __future__ import annotations

from typing import Callable

import streamlit as st

from mollia_core import jobs
from mollia_core.annotation import AnnotationError
from mollia_core.dataset import DatasetError
from mollia_core.display import markdown_text
from mollia_core.encoder import EncoderError
from mollia_core.evidence import EvidenceError
from mollia_core.export import ExportError
from mollia_core.learner import LearnerError
from mollia_core.loop import LoopError
from mollia_core.project import Project, ProjectError, list_projects, project_path, projects_dir
from mollia_core.query import QueryError
from mollia_core.store import StoreError

PROJECT_KEY = "project_name"
# The open project's name in the URL (``?project=NAME``): a reload or a shared link reopens it.
PROJECT_QUERY_PARAM = "project"

# The core's errors whose message is written for the user (what is wrong, how to fix it): a page
# catches them around its actions and shows them with show_error; anything else is a bug.
USER_ERRORS = (ProjectError, StoreError, DatasetError, AnnotationError, LoopError, LearnerError, QueryError,
               EncoderError, EvidenceError, ExportError)


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
    try:
        return _project_at(str(path))
    except USER_ERRORS as exc:  # e.g. not a project file: say so and let the user open another
        show_error(exc)
        st.session_state.pop(PROJECT_KEY, None)
        return None


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
        st.page_link("pages/1_data.py", label="Go to Data", icon=":material/table:")
        st.stop()


def show_error(exc: Exception) -> None:
    """A user's mistake (or a fault the core explains), shown in the page as text: no stack trace, and the
    user's strings the message quotes stay literal."""
    st.error(markdown_text(exc), icon=":material/error:")


def open_project_from_url() -> None:
    """A fresh session (a reload, a link) opens the project its URL names; this session's choice wins."""
    name = st.query_params.get(PROJECT_QUERY_PARAM)
    if not name or st.session_state.get(PROJECT_KEY):
        return
    if name in list_projects():
        st.session_state[PROJECT_KEY] = name
    else:
        del st.query_params[PROJECT_QUERY_PARAM]
        st.warning(f"The link names the project {markdown_text(repr(name))}, which is not in "
                   f"{markdown_text(projects_dir())}: open or create a project in the sidebar.",
                   icon=":material/warning:")


def keep_project_in_url(project: Project | None) -> None:
    """The open project's name in the URL, on every page (Streamlit drops it on a page switch)."""
    if project is None:
        st.query_params.pop(PROJECT_QUERY_PARAM, None)
    elif st.query_params.get(PROJECT_QUERY_PARAM) != project.name:
        st.query_params[PROJECT_QUERY_PARAM] = project.name


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
                except USER_ERRORS as exc:
                    show_error(exc)
                else:
                    st.session_state[PROJECT_KEY] = new_name.strip()
                    st.rerun()
        st.caption(f"Projects are kept in {markdown_text(projects_dir())}")


# ---------------------------------------------------------------- jobs (mollia_core.jobs)
_STOP_BUTTONS = {"evidence": ("Cancel", "Stops after the batch in progress; what is done is kept and the next run "
                              "resumes there."),
                 "loop": ("Stop", "Stops after the step in progress; every finished step is kept.")}


def job_panel(project: Project, kind: str | tuple[str, ...], live: Callable[[], None] | None = None,
              secrets: dict | None = None) -> jobs.JobState | None:
    """The project's job as every tab sees it (it runs in the server, not in this session). While one runs,
    a fragment polls it every second: its progress, its Cancel, and ``live``, the part of the page that
    changes as it runs; the whole page reruns when it ends. How the last job of ``kind`` ended is shown,
    with Resume for one a server restart interrupted (``secrets`` are handed to it, never stored).
    Returns the job as it was when the page ran (None: the project never ran one). ``kind``: the job kind(s)
    this page starts."""
    kinds = (kind,) if isinstance(kind, str) else kind
    job = jobs.status(project.path)
    watching = job is not None and job.running

    @st.fragment(run_every=1.0 if watching else None)
    def panel() -> None:
        if live is not None:
            live()
        now = jobs.status(project.path)
        if now is None:
            return
        if now.running:
            st.progress(now.fraction, text=markdown_text(f"{now.title}: {now.message or 'starting'}"))
            st.caption(markdown_text(_sentence(now.describe())
                                     + (f" · {now.done} of {now.total} done" if now.total else "")))
            if now.cancel_requested:
                st.caption("Stopping after the batch or step in progress…")
            elif now.kind in _STOP_BUTTONS:
                label, why = _STOP_BUTTONS[now.kind]
                if st.button(label, icon=":material/stop:", key=f"stop_job_{now.kind}", help=why):
                    jobs.cancel(project.path)
        elif watching:
            st.rerun()  # it ended while this page watched it: show what it made
        elif now.kind in kinds:
            _job_end(project, now, secrets)

    panel()
    return job


def _job_end(project: Project, job: jobs.JobState, secrets: dict | None) -> None:
    ended = _sentence(f"{job.title} {job.status} at {jobs.clock(job.ended_at)}" if job.ended_at else job.title)
    if job.status == jobs.FAILED:
        show_error(job.error or "the job failed")
    elif job.status == jobs.CANCELLED:
        st.warning(markdown_text(f"{ended}: what was done is kept; run again to resume."), icon=":material/stop:")
    elif job.status == jobs.INTERRUPTED:
        st.warning(markdown_text(f"The {job.title} started at {jobs.clock(job.started_at)} was interrupted (the "
                                 f"server stopped) after {job.done} of {job.total}: what it finished is kept."),
                   icon=":material/warning:")
        if st.button("Resume", icon=":material/play_arrow:", key=f"resume_job_{job.kind}", type="primary"):
            try:
                jobs.resume(project.path, secrets=secrets)
            except USER_ERRORS as exc:
                show_error(exc)
            else:
                st.rerun()


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def job_sidebar(project: Project) -> None:
    """The project's counts in the sidebar, kept current (every 2 s) while a job changes them."""
    job = jobs.status(project.path)
    watching = job is not None and job.running

    @st.fragment(run_every=2.0 if watching else None)
    def summary() -> None:
        counts = project.summary()
        st.text(
            f"{counts['texts']} texts · {counts['seeds']} seeds\n"
            f"{counts['evidence_models']} LLMs with evidence · MoLAM {'fitted' if project.is_annotated() else 'not fitted'}\n"
            f"{max(counts['iterations'] - 1, 0)} iterations · {counts['labeled']} labeled · {counts['reviewed']} reviewed"
        )
        now = jobs.status(project.path)
        if now is not None and now.running:
            st.caption(markdown_text(f"Running: {now.title}, {now.done} of {now.total}"))
        elif watching:
            st.rerun()

    with st.sidebar:
        summary()

