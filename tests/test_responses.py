"""Human reviews of the model's labels: accept, override, undo; they persist and reach training.

The store tests write the model's suggestions the way the loop does (``put_annotations``); the
review-service tests go through a real project; the end-to-end ones run the real loop."""

from __future__ import annotations

import pandas as pd
import pytest

from mollia_core.loop import LoopConfig
from mollia_core.project import Project, ProjectError
from mollia_core.store import (
    HUMAN_SOURCES,
    SOURCE_ACCEPT,
    AnnotationRow,
    ProjectStore,
    StoreError,
)

LABELS = ("neg", "pos", "neutral")


def _suggestion(index: int, label: int, iteration: int = 1) -> AnnotationRow:
    """The model's label for a text as the loop writes it: y+ with its probability, y-, d_anno and W_d."""
    return AnnotationRow(index, label, "molam", iteration, probability=0.7, annotator_label=label,
                         negatives=(0,) if label else (1,), proba=None, d_anno=True, weight=0.5)


@pytest.fixture
def path(tmp_path):
    path = tmp_path / "reviews.mollia.sqlite"
    with ProjectStore(path) as store:
        store.set_labels(LABELS)
        store.add_texts([f"text {i}" for i in range(6)])
        store.set_seed_labels({0: 1})
        store.put_annotations([_suggestion(1, 2), _suggestion(2, 0), _suggestion(3, 1)])
    return path


def test_accept_is_a_human_label_and_persists_across_reopening(path):
    assert SOURCE_ACCEPT == "accept" and SOURCE_ACCEPT in HUMAN_SOURCES
    with ProjectStore.open(path) as store:
        record = store.accept(1)
        assert (record.text_index, record.kind, record.label, record.previous_label, record.applied_iteration) == (
            1, "accept", 2, 2, None)
    with ProjectStore.open(path) as store:
        row = store.annotation(1)
        assert (row.label, row.source, row.is_human, row.weight, row.negatives) == (2, "accept", True, 1.0, ())
        assert (row.annotator_label, row.probability, row.d_anno) == (2, 0.7, True)  # the suggestion stays shown
        assert store.human_labels() == {0: 1, 1: 2}
        assert [(r.text_index, r.kind) for r in store.responses(pending_only=True)] == [(1, "accept")]
        assert store.overrides() == []  # an accept is no override


def test_override_then_undo_restores_the_model_suggestion(path):
    with ProjectStore.open(path) as store:
        store.add_override(2, 1)
    with ProjectStore.open(path) as store:
        assert (store.annotation(2).label, store.annotation(2).source) == (1, "override")
        assert store.human_labels() == {0: 1, 2: 1}
        withdrawn = store.undo_response(2)
        assert (withdrawn.text_index, withdrawn.kind, withdrawn.label, withdrawn.previous_label) == (2, "override", 1, 0)
    with ProjectStore.open(path) as store:
        row = store.annotation(2)
        assert (row.label, row.source, row.is_human, row.weight, row.negatives, row.iteration) == (
            0, "molam", False, 0.5, (1,), 1)
        assert store.responses() == [] and store.human_labels() == {0: 1}


def test_undo_of_an_accept_gives_the_label_back_to_its_model(path):
    with ProjectStore.open(path) as store:
        store.accept(3)
        assert store.undo_response(3).kind == "accept"
        row = store.annotation(3)
        assert (row.label, row.source, row.weight) == (1, "molam", 0.5)
        assert store.undo_response(3) is None  # nothing left to undo


def test_undo_walks_back_one_review_at_a_time(path):
    with ProjectStore.open(path) as store:
        store.accept(1)
        store.add_override(1, 0)
        assert [r.kind for r in store.responses()] == ["accept", "override"]
        store.undo_response(1)
        assert (store.annotation(1).label, store.annotation(1).source) == (2, "accept")
        store.undo_response(1)
        assert (store.annotation(1).label, store.annotation(1).source) == (2, "molam")


def test_undo_of_an_override_of_a_text_outside_l_takes_it_out_of_l(path):
    with ProjectStore.open(path) as store:
        assert 5 not in store.labeled_indices().tolist()
        store.add_override(5, 2)
        assert 5 in store.labeled_indices().tolist() and store.human_labels()[5] == 2
    with ProjectStore.open(path) as store:
        store.undo_response(5)
    with ProjectStore.open(path) as store:
        assert store.annotation(5) is None and 5 not in store.labeled_indices().tolist()
        assert store.n_labeled == 4


def test_seeds_are_not_undone_and_accept_needs_a_model_suggestion(path):
    with ProjectStore.open(path) as store:
        assert store.undo_response(0) is None and store.seed_labels() == {0: 1}
        with pytest.raises(StoreError, match="no model suggestion"):
            store.accept(4)  # unlabeled
        with pytest.raises(StoreError, match="no model suggestion"):
            store.accept(0)  # a seed has none
        store.add_override(0, 2)  # a human corrects a seed, then changes their mind
        store.undo_response(0)
        assert store.seed_labels() == {0: 1}


def test_responses_are_marked_applied_by_the_training_that_used_them(path):
    with ProjectStore.open(path) as store:
        store.accept(1)
        store.add_override(2, 1)
        assert store.mark_responses_applied(3) == 2
        store.add_override(3, 0)
        assert [r.applied_iteration for r in store.responses()] == [3, 3, None]
        assert [r.text_index for r in store.responses(pending_only=True)] == [3]


# ---------------------------------------------------------------------- the review service
@pytest.fixture
def project(projects):
    project = Project.create("reviews")
    frame = pd.DataFrame({"id": [f"t{i}" for i in range(6)], "text": [f"text {i}" for i in range(6)]})
    project.dataset.set_dataset(frame, "text", id_column="id", labels=LABELS, hold_out_validation=False)
    project.dataset.label_seed("t0", "pos")
    project.store.put_annotations([_suggestion(1, 2), _suggestion(2, 0), _suggestion(3, 1)])
    return project


def test_review_service_accepts_undoes_and_says_what_is_wrong(project):
    review = project.review
    review.accept("t1")
    assert project.store.annotation(1).source == "accept"
    review.undo("t1")
    assert project.store.annotation(1).source == "molam"
    with pytest.raises(ProjectError, match="no text with id 'nope'"):
        review.accept("nope")
    with pytest.raises(ProjectError, match="'t4'.*no model suggestion"):
        review.accept("t4")
    with pytest.raises(ProjectError, match="'t2' has no accept or override to undo"):
        review.undo("t2")
    with pytest.raises(ProjectError, match="no text with id 'nope'"):
        review.undo("nope")


def test_accept_many_accepts_what_has_a_suggestion_and_no_human_label(project):
    review = project.review
    review.override("t2", "pos")
    # t0 is a seed, t2 overridden, t4 has no suggestion: only t1 and t3 are accepted.
    assert review.accept_many(["t0", "t1", "t2", "t3", "t4", "t1"]) == 2
    assert project.store.human_labels() == {0: 1, 1: 2, 2: 1, 3: 1}
    assert [(r.text_index, r.kind) for r in project.store.responses()] == [(2, "override"), (1, "accept"), (3, "accept")]
    with pytest.raises(ProjectError, match="no text with id 'nope'"):
        review.accept_many(["t5", "nope"])
    reopened = Project.open("reviews")
    assert reopened.store.human_labels() == {0: 1, 1: 2, 2: 1, 3: 1}


# ---------------------------------------------------------------------- reviews reach the real loop
USED_UP = LoopConfig(batch_size=100, random_state=1, seed_cv_folds=0)  # one batch takes the whole pool


def _used_up_project(trec, name: str) -> Project:
    """A real project whose pool one AL iteration used up (80 TREC questions, MoLAM on 3 LLMs)."""
    from mollia_core.project import AnnotatorSettings, AnnotatorSpec
    from project_helpers import trec_frame, trec_records

    project = Project.create(name)
    project.dataset.set_dataset(trec_frame(trec, 80), "question", id_column="qid", label_column="category")
    for model, records in trec_records(trec, 80, models=3).items():
        spec = AnnotatorSpec(kind="replay", model=model, path="trec.jsonl")
        project.panel.set_specs(project.panel.specs() + [spec])
        project.panel.import_evidence_records(spec, records)
    project.dataset.take_seeds_from_column(30)
    project.annotation.fit(AnnotatorSettings(method="molam-llm-only", random_state=1), cv=False)
    project.run_iterations(1, USED_UP)
    assert project.loop.pool_size() == 0
    return project


@pytest.mark.slow
def test_a_review_made_after_the_pool_is_used_up_reaches_the_next_training(projects, trec):
    project = _used_up_project(trec, "used up")
    before = project.store.last_iteration().iteration
    assert project.run_iterations(1, USED_UP)[-1].iteration == before  # nothing pending: nothing to do

    labeled = project.review.labeled_texts(sources=["molam"])
    overridden, accepted = labeled["id"].iloc[0], labeled["id"].iloc[1]
    new_label = next(label for label in project.dataset.labels if label != labeled["label"].iloc[0])
    project.review.override(overridden, new_label)
    project.review.accept(accepted)
    steps = []
    Project.open("used up").run_iterations(1, USED_UP, progress=steps.append)  # a new process, too

    record = project.store.last_iteration()
    assert (record.iteration, record.status, record.queried) == (before + 1, "trained", ())
    assert record.metrics["reviews_used"] == 2 and [s.step for s in steps][-1] == "retrain"
    train = project.store.training_set(record.iteration)
    by_text = dict(zip(train.index.tolist(), zip(train.y.tolist(), train.weight.tolist(), train.negatives.any(1))))
    index = project.dataset.index_of(overridden)
    assert by_text[index] == (project.dataset.label_index(new_label), 1.0, False)
    assert by_text[project.dataset.index_of(accepted)][1:] == (1.0, False)
    assert [r.applied_iteration for r in project.store.responses()] == [record.iteration] * 2


@pytest.mark.slow
def test_the_active_learning_page_says_what_an_empty_pool_does(projects, trec):
    from app_helpers import app, assert_no_exception, errors, finish_job

    project = _used_up_project(trec, "page")
    before = project.store.last_iteration().iteration

    def next_iteration():
        at = app("page", "pages/4_active_learning.py")
        finish_job(next(b for b in at.button if b.label == "Next iteration").click().run(timeout=300))
        assert_no_exception(at)
        assert not errors(at)
        return at

    at = next_iteration()
    assert any("The pool is empty and no review is waiting" in i.value for i in at.info)
    assert project.store.last_iteration().iteration == before
    project.review.override(project.review.labeled_texts(sources=["molam"])["id"].iloc[0], project.dataset.labels[0])
    at = next_iteration()
    assert project.store.last_iteration().iteration == before + 1
    assert any(f"The pool is empty: retrained on 1 pending reviews (iteration {before + 1})" in i.value
               for i in app("page", "pages/4_active_learning.py").info)
