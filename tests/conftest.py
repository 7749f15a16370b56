"""Shared fixtures. The paper's evidence is read from ../shared/data/paper-evidence (never copied).

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
