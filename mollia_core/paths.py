"""Where MoLLIA keeps things on the user's machine, and where the shared test data is."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_home() -> Path:
    """Root of MoLLIA's local state (model copies, caches, projects).

    ``MOLLIA_HOME`` overrides the default ``~/.cache/mollia``.
    """
    home = Path(os.environ.get("MOLLIA_HOME", Path.home() / ".cache" / "mollia"))
    home.mkdir(parents=True, exist_ok=True)
    return home


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository: benchmark data, never part of the product.

    ``MOLLIA_SHARED_DATA`` overrides it.
    """
    return Path(os.environ.get("MOLLIA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def paper_evidence_dir(dataset: str | None = None) -> Path:
    root = shared_data_dir() / "paper-evidence"
    return root / dataset if dataset else root
