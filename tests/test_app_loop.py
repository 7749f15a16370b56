"""The MoLAM, Active learning, Review and Export pages through AppTest, with the real MoLAM
(XGBoost), the real offline encoder (all-MiniLM-L6-v2, fast mode) and the paper's real evidence."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from app_helpers import app, assert_no_exception, errors, finish_job
from mollia_core.export import import_labeled, to_bytes
from mollia_core.loop import LoopConfig
from mollia_core.project import AnnotatorSpec, Project
from project_helpers import (  # noqa: F401 (the iterated fixture)
    ITERATED_BATCH, ITERATED_TEXTS, copy_project as _copy, iterated, trec_frame, trec_records,
)

pytestmark = pytest.mark.slow
N, BATCH = ITERATED_TEXTS, ITERATED_BATCH


def test_molam_page_fits_and_compares_honestly(projects, trec):
    project = Project.create("fit")
    frame = trec_frame(trec, N)
    project.set_dataset(frame, "question", id_column="qid", label_column="category")
    for model, records in trec_records(trec, N, models=3).items():
        spec = AnnotatorSpec(kind="replay", model=model)
        project.set_panel(project.panel() + [spec])
        project.import_evidence_records(spec, records)
    project.take_seeds_from_column(50)
    at = app("fit", "pages/3_molam.py")
    assert any("Not fitted yet" in i.value for i in at.info)
    finish_job(at.button[0].click().run(timeout=300))  # Fit MoLAM: a job
    assert_no_exception(at)
    assert not errors(at)
    report = project.fit_report()
    assert set(report.cv_accuracy) == {"MoLAM", "majority class", "text classifier", "majority vote",
                                       "mean probability", "replay:gemma", "replay:llama", "replay:mistral"}
    assert all(0 <= mean <= 1 and std >= 0 for mean, std in report.cv_accuracy.values())
    shown = at.dataframe[0].value
    assert list(shown["method"]) == list(report.cv_accuracy)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Texts annotated"] == f"{N} of {N}"
    assert metrics["With negative labels"] == str(report.n_with_negatives)


def test_active_learning_page_runs_the_next_iteration(iterated, projects):
    project = _copy(iterated, projects)
    at = app("loop", "pages/4_active_learning.py")
    assert_no_exception(at)
    assert any("iterations done: **1**" in m.value for m in at.markdown)
    finish_job(next(b for b in at.button if b.label == "Next iteration").click().run(timeout=300))
    assert_no_exception(at)
    assert not errors(at)
    curve = project.learning_curve()
    assert list(curve["iteration"]) == [0, 1, 2]
    assert curve["validation_accuracy"].between(0, 1).all()
    assert project.summary()["labeled"] == 50 + 2 * BATCH
    assert any("iterations done: **2**" in m.value for m in at.markdown)


def test_active_learning_page_bad_backbone_is_an_error(iterated, projects):
    _copy(iterated, projects)
    at = app("loop", "pages/4_active_learning.py")
    next(t for t in at.text_input if t.label == "Backbone").input("no-such/encoder-anywhere")
    finish_job(next(b for b in at.button if b.label == "Next iteration").click().run(timeout=300))
    assert_no_exception(at)
    assert errors(at), "an unknown backbone must be reported in the page"


def test_active_learning_page_switches_reach_the_loop(iterated, projects):
    """The ablation switches (Eq. 7 discrepancy weight, Eq. 8 negative learning) change the training set
    the loop used. Switched on (the paper's defaults, iteration 1 of the fixture) MoLAM's labels train
    with W_d = alpha where d_anno flagged them and with their y-; switched off on the page, the next
    training gives the same labels weight 1 and no y-."""
    project = _copy(iterated, projects)
    annotations = {row.text_index: row for row in project.store.annotations()}
    switches_on = project.store.training_set(1)
    rows = [annotations[i] for i in switches_on.index]
    flagged = np.array([not r.is_human and bool(r.d_anno) for r in rows])
    expected_negatives = np.zeros_like(switches_on.negatives)
    for k, r in enumerate(rows):
        if not r.is_human:
            expected_negatives[k, list(r.negatives)] = True
    assert flagged.any() or expected_negatives.any(), "nothing for the switches to turn off: the test would prove nothing"
    np.testing.assert_array_equal(switches_on.weight, np.where(flagged, LoopConfig().alpha, 1.0))
    np.testing.assert_array_equal(switches_on.negatives, expected_negatives)

    at = app("loop", "pages/4_active_learning.py")
    next(c for c in at.checkbox if c.label.startswith("Negative learning")).uncheck()
    next(c for c in at.checkbox if c.label.startswith("Discrepancy weight")).uncheck()
    finish_job(next(b for b in at.button if b.label == "Next iteration").click().run(timeout=300))
    assert_no_exception(at)
    assert not errors(at)
    switches_off = project.store.training_set(2)
    assert switches_off is not None and set(switches_on.index) < set(switches_off.index)
    assert (switches_off.weight == 1.0).all(), switches_off.weight
    assert not switches_off.negatives.any()


def test_review_page_filters_shows_evidence_and_overrides(iterated, projects, trec):
    project = _copy(iterated, projects)
    project.queue.ranked()  # the page opens on the review queue: its ranking's seed examples, computed once
    at = app("loop", "pages/5_review.py")
    at.segmented_control(key="review_mode").set_value("All labeled texts").run()
    assert_no_exception(at)
    at.multiselect(key="f_source").select("molam").run()
    table = at.dataframe[0].value
    assert len(table) == BATCH and set(table["source"]) == {"molam"}
    text_id = str(table.iloc[0]["id"])
    at.selectbox(key="review_text_-1").select(text_id).run()
    assert_no_exception(at)
    assert at.text[0].value == project.texts[project.index_of(text_id)]
    info = project.text_evidence(text_id)
    assert info.models == (*(f"replay:{m}" for m in ("gemma", "llama", "mistral", "qwen", "yi")), "text-classifier")
    assert info.molam_label in project.labels
    answers = at.dataframe[1].value
    assert list(answers["LLM"]) == list(info.models)
    new_label = next(label for label in project.labels if label != info.label)
    at.button(key=f"override_{text_id}_{project.labels.index(new_label)}").click().run()
    assert_no_exception(at)
    after = project.text_evidence(text_id)
    assert after.label == new_label and after.source == "override"
    assert after.molam_label == info.molam_label  # MoLAM's y+ is kept beside the human label
    assert after.overrides and after.overrides[0]["to"] == new_label


def test_export_page_round_trips_after_iterations(iterated, projects):
    project = _copy(iterated, projects)
    project.override(project.labeled_texts(sources=["molam"]).iloc[0]["id"], project.labels[0])
    at = app("loop", "pages/6_export.py")
    assert_no_exception(at)
    frame = project.export_frame()
    assert frame["source"].value_counts().to_dict() == {"seed": 50, "molam": BATCH - 1, "override": 1}
    for fmt in ("csv", "jsonl", "parquet"):
        back = import_labeled(io.BytesIO(to_bytes(frame, fmt)), fmt)
        pd.testing.assert_frame_equal(back, frame, check_exact=True, obj=fmt)
    everything = project.export_frame("all")
    assert len(everything) == N and (everything["source"] == "molam").sum() == N - 50 - 1
