"""Shared fixtures. The paper's evidence is read from ../shared/data/paper-evidence (never copied)."""

from __future__ import annotations

import os

import pytest

# Never reach a model hub from tests: everything is embedded or on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from mollia_core.evidence import load_paper_evidence  # noqa: E402
from mollia_core.paths import paper_evidence_dir  # noqa: E402


def _require_paper_evidence(name: str):
    directory = paper_evidence_dir(name)
    if not (directory / "meta_x.npy").is_file():
        pytest.fail(
            f"paper evidence not found at {directory}: tests expect ../shared beside the repository "
            "(or MOLLIA_SHARED_DATA pointing at shared/data)"
        )
    return load_paper_evidence(directory)


@pytest.fixture(scope="session")
def trec():
    return _require_paper_evidence("trec")


@pytest.fixture(scope="session")
def imdb():
    return _require_paper_evidence("imdb")


@pytest.fixture
def mollia_home(tmp_path, monkeypatch):
    """An isolated MOLLIA_HOME so tests never touch the user's cache."""
    home = tmp_path / "mollia-home"
    monkeypatch.setenv("MOLLIA_HOME", str(home))
    return home
