"""MoLLIA dashboard: ``streamlit run app.py``. The pages are thin; the work is in ``mollia_core``."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import streamlit as st  # noqa: E402

from views.common import current_project, project_sidebar  # noqa: E402

# A local file, served by this server: a :material/...: icon or an emoji would make the browser fetch
# the favicon from Google's font CDN or an emoji CDN, and nothing may leave this machine.
PAGE_ICON = Path(__file__).resolve().parent / "assets" / "icon.png"
st.set_page_config(page_title="MoLLIA", page_icon=str(PAGE_ICON), layout="wide")

PAGES = [
    st.Page("views/1_data.py", title="Data", icon=":material/table:", default=True),
    st.Page("views/2_annotators.py", title="Annotators", icon=":material/smart_toy:"),
    st.Page("views/3_molam.py", title="MoLAM", icon=":material/merge:"),
    st.Page("views/4_active_learning.py", title="Active learning", icon=":material/autorenew:"),
    st.Page("views/5_review.py", title="Review", icon=":material/rate_review:"),
    st.Page("views/6_export.py", title="Export", icon=":material/download:"),
]

navigation = st.navigation(PAGES)
project_sidebar()
project = current_project()
st.sidebar.text(f"Open: {project.name}" if project else "No project open")
if project is not None and project.has_dataset():
    summary = project.summary()
    st.sidebar.text(
        f"{summary['texts']} texts · {summary['seeds']} seeds\n"
        f"{summary['evidence_models']} LLMs with evidence · MoLAM {'fitted' if project.is_annotated() else 'not fitted'}\n"
        f"{max(summary['iterations'] - 1, 0)} iterations · {summary['labeled']} labeled · {summary['overrides']} overrides"
    )
navigation.run()
