"""MoLLIA dashboard: ``streamlit run app.py``. The pages (``pages/``) are thin; the work is in ``mollia_core``,
the shell around the pages in ``dashboard.shell``."""

from dashboard.shell import run_app

run_app()
