"""The Annotators page runs a real embedded LLM (SmolLM2-135M, the smallest) on a few texts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app_helpers import app, assert_no_exception, errors, finish_job
from mollia_core.project import AnnotatorSpec, Project

pytestmark = pytest.mark.slow


@pytest.fixture
def prepared_smollm2(mollia_home):
    """Reuse this machine's prepared SmolLM2 (sha256-verified by its marker) when there is one, so the
    test measures the page, not the one-time conversion; without one the test prepares it itself."""
    from pathlib import Path

    prepared = Path.home() / ".cache" / "mollia" / "models" / "smollm2-135m"
    if prepared.is_dir():
        (mollia_home / "models").mkdir(parents=True, exist_ok=True)
        (mollia_home / "models" / "smollm2-135m").symlink_to(prepared)


def test_annotators_page_runs_smollm2_and_stores_its_evidence(projects, prepared_smollm2):
    texts = ["The striker scored twice in the final.", "Parliament passed the budget bill.",
             "The new phone has a faster chip.", "Shares fell after the earnings report.",
             "The midfielder signed a new contract.", "The minister resigned on Tuesday."]
    project = Project.create("embedded")
    project.set_dataset(pd.DataFrame({"text": texts}), "text", labels=["sport", "politics", "tech", "business"])
    project.set_panel([AnnotatorSpec(kind="embedded", model="smollm2-135m")])
    at = app("embedded", "pages/2_annotators.py")
    assert_no_exception(at)
    start = next(b for b in at.button if b.label.startswith("Run evidence"))
    finish_job(start.click().run(timeout=600))
    assert_no_exception(at)
    assert not errors(at)
    evidence = project.require_evidence()
    assert evidence.models == ("smollm2-135m",)
    z = evidence.label_probs[:, 0]
    assert z.shape == (6, 4) and np.all(z >= 0) and np.allclose(z.sum(-1), 1, atol=1e-6)
    assert all(len(a[0]) == 10 for a in evidence.answers)  # T = 10 raw answers kept per text
    assert any("every text" in s.value for s in at.success)
