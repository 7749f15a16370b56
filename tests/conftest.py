"""Shared fixtures. The paper's evidence is read from ../shared/data/paper-evidence (never copied).

A test that needs that data is marked ``needs_shared``: using the ``trec`` or ``imdb`` fixture (directly
or through another fixture) marks it automatically, a test reading the folder itself carries the marker.
Without the data those tests are skipped, naming the folder and how to provide it; the others still run.

Tests leave the machine as they found it: MoLLIA's state (projects, evidence cache, embeddings) and
matplotlib's font cache go to a temporary folder for the whole session, never to the user's home.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Never reach a model hub from tests: everything is embedded or on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from mollia_core.evidence import load_paper_evidence  # noqa: E402
from mollia_core.paths import paper_evidence_dir  # noqa: E402


#: The paper's datasets in the shared data, each loaded by the fixture of its name: a test whose
#: fixtures include one of them needs the shared data.
PAPER_DATASETS = ("trec", "imdb")


def missing_shared_data() -> str | None:
    """Why the shared data tests cannot run here, or None when it is all present."""
    missing = [str(paper_evidence_dir(name) / "meta_x.npy") for name in PAPER_DATASETS
               if not (paper_evidence_dir(name) / "meta_x.npy").is_file()]
    if not missing:
        return None
    return ("needs ../shared/data/paper-evidence beside the repository (MOLLIA_SHARED_DATA overrides "
            f"../shared/data); not found: {', '.join(missing)}")


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the markers added here
def pytest_collection_modifyitems(config, items):
    reason = missing_shared_data()
    for item in items:
        if set(PAPER_DATASETS) & set(item.fixturenames):
            item.add_marker(pytest.mark.needs_shared)
        if reason and item.get_closest_marker("needs_shared"):
            item.add_marker(pytest.mark.skip(reason=reason))


def _paper_dataset(name: str):
    reason = missing_shared_data()
    if reason:  # reached only through request.getfixturevalue, which the marker cannot see
        pytest.skip(reason)
    return load_paper_evidence(paper_evidence_dir(name))


@pytest.fixture(scope="session")
def trec():
    return _paper_dataset("trec")


@pytest.fixture(scope="session")
def imdb():
    return _paper_dataset("imdb")


@pytest.fixture
def projects(tmp_path, monkeypatch, mollia_home):
    """An empty projects folder (``MOLLIA_PROJECTS_DIR``) for the dashboard's tests."""
    folder = tmp_path / "projects"
    folder.mkdir()
    monkeypatch.setenv("MOLLIA_PROJECTS_DIR", str(folder))
    return folder


@pytest.fixture(scope="session", autouse=True)
def session_mollia_home(tmp_path_factory):
    """A temporary ``MOLLIA_HOME`` (and ``MPLCONFIGDIR``) for every test and the processes tests start.

    The models this machine has prepared (``models/`` of the user's MoLLIA home) are linked in file by
    file, so a test that loads a model reads the prepared copy instead of converting its own; anything
    a test writes, a newly prepared model included, lands in the temporary home.
    """
    users_models = Path(os.environ.get("MOLLIA_HOME") or Path.home() / ".cache" / "mollia") / "models"
    home = tmp_path_factory.mktemp("mollia-home")
    _link_files(users_models, home / "models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOLLIA_HOME", str(home))
        patch.setenv("MPLCONFIGDIR", str(tmp_path_factory.mktemp("matplotlib")))
        yield home


def _link_files(source: Path, target: Path) -> None:
    """Mirror ``source``'s folders in ``target`` with a symlink per file (hidden entries, e.g. a
    conversion in progress, are left out)."""
    if not source.is_dir():
        return
    for folder, folders, files in os.walk(source):
        folders[:] = [name for name in folders if not name.startswith(".")]
        mirror = target / Path(folder).relative_to(source)
        mirror.mkdir(parents=True, exist_ok=True)
        for name in files:
            if not name.startswith("."):
                (mirror / name).symlink_to(Path(folder) / name)


@pytest.fixture
def mollia_home(tmp_path, monkeypatch):
    """An isolated MOLLIA_HOME so tests never touch the user's cache."""
    home = tmp_path / "mollia-home"
    monkeypatch.setenv("MOLLIA_HOME", str(home))
    return home
