"""The services a Project is composed of (mollia_core.services), on real components: the SQLite store,
the paper's real LLM evidence, MoLAM (XGBoost) and the AL loop with the real learner.

The point of the split: one MoLAM fit per state of the seed labels, owned by the annotation service;
the loop labels its queries with that fit and the review reads a text's MoLAM label from it alone."""

from __future__ import annotations

import numpy as np
import pytest

from mollia_core import annotation as ann
from mollia_core import store as store_module
from mollia_core.evidence import PanelEvidence
from mollia_core.project import AnnotatorSettings, Project, ProjectError, list_projects
from mollia_core.services import (
    AnnotationService,
    DatasetService,
    LoopService,
    PanelService,
    ReviewService,
    StoredFitAnnotator,
)
from mollia_core.store import AnnotationResult, AnnotationRow, ProjectStore
from project_helpers import replayed_project

#: MoLAM on the LLMs' evidence alone: no text member, so no encoder (fast enough for the quick tests).
LLM_ONLY = AnnotatorSettings(method="molam-llm-only", random_state=1)


@pytest.fixture
def molam_fits(monkeypatch):
    """The MoLAM models fitted, each once however many times its co-training refits it (every fit
    still runs)."""
    calls = []
    original = ann.MoLAM.fit

    def counting_fit(self, *args, **kwargs):
        if not any(model is self for model in calls):
            calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ann.MoLAM, "fit", counting_fit)
    return calls


def test_project_is_composed_of_services_over_one_store(projects, trec):
    project = replayed_project(trec, "services")
    assert isinstance(project.dataset, DatasetService) and isinstance(project.panel, PanelService)
    assert isinstance(project.annotation, AnnotationService) and isinstance(project.loop, LoopService)
    assert isinstance(project.review, ReviewService)
    for service in (project.dataset, project.panel, project.annotation, project.loop, project.review):
        assert service.store is project.store
    # The methods kept for the pages answer what the services answer.
    assert project.panel() == project.panel.specs() and len(project.panel()) == 3
    assert project.panel_models() == project.panel.models()
    assert project.seeds() == project.dataset.seeds() and len(project.seeds()) == 40
    assert project.summary() == project.dataset.summary()
    assert project.require_evidence() is project.panel.require_evidence()


def test_the_fit_is_current_only_for_the_seed_labels_it_was_fitted_on(projects, trec):
    project = replayed_project(trec, "services")
    annotation = project.annotation
    assert annotation.result() is None and not annotation.is_current() and not project.is_annotated()
    project.fit_annotator(LLM_ONLY, cv=False)
    result = annotation.result()
    np.testing.assert_array_equal(result.fit_y, project.seed_vector())
    assert annotation.is_current() and project.is_annotated()
    assert result.text_member_proba is None  # the LLM-only recipe reads no text member
    assert project.annotator_settings() == LLM_ONLY
    # One seed more: the stored fit belongs to the labels before it.
    unlabeled = next(t for t in project.text_ids if t not in project.seeds())
    project.label_seed(unlabeled, project.labels[0])
    assert not annotation.is_current()


def test_the_loops_annotator_hands_out_the_stored_fit_by_text_id(projects, trec):
    project = replayed_project(trec, "services")
    project.fit_annotator(LLM_ONLY, cv=False)
    fitted = project.annotation.annotator_for_loop()
    assert isinstance(fitted, StoredFitAnnotator)
    result = project.annotation.result()
    evidence = project.require_evidence()
    rows = np.array([17, 3, 140, 3])
    assert fitted.fit(evidence, project.seed_vector()) is fitted  # fitting is the annotation service's job
    annotation = fitted.annotate(evidence.subset(rows))
    np.testing.assert_array_equal(annotation.labels, result.labels[rows])
    np.testing.assert_array_equal(annotation.probability, result.probability[rows])
    np.testing.assert_array_equal(annotation.proba, result.proba[rows])
    np.testing.assert_array_equal(annotation.negative_mask, result.negatives[rows])
    foreign = PanelEvidence(labels=evidence.labels, models=evidence.models, label_probs=evidence.label_probs[:1],
                            vote_shares=evidence.vote_shares[:1], text_ids=("not-a-text-of-this-project",))
    with pytest.raises(ProjectError, match="fit MoLAM again"):
        fitted.annotate(foreign)


def test_a_texts_molam_label_comes_from_the_fit_alone(projects, trec):
    project = replayed_project(trec, "services")
    project.fit_annotator(LLM_ONLY, cv=False)
    result = project.annotation.result()
    index = next(i for i in range(project.store.n_texts) if i not in project.store.seed_labels())
    text_id = project.text_ids[index]
    other = (int(result.labels[index]) + 1) % len(project.labels)
    # A labeled-set row whose annotator label disagrees with the fit (as a second, separate fit's
    # would): the review no longer prefers it, it shows the fit's label and the row's current label.
    project.store.put_annotations([AnnotationRow(text_index=index, label=other, source="molam", iteration=1,
                                                 probability=0.5, annotator_label=other)])
    shown = project.text_evidence(text_id)
    assert shown.molam_label == project.labels[result.labels[index]]
    assert shown.molam_probability == pytest.approx(result.probability[index])
    assert shown.negative_labels == [project.labels[k] for k in np.flatnonzero(result.negatives[index])]
    assert (shown.label, shown.source) == (project.labels[other], "molam")
    project.override(text_id, project.labels[0])
    overridden = project.text_evidence(text_id)
    assert overridden.molam_label == shown.molam_label
    assert (overridden.label, overridden.source) == (project.labels[0], "override")


def test_the_annotation_result_is_stored_typed_and_survives_reopening(tmp_path):
    path = tmp_path / "typed.mollia.sqlite"
    store = ProjectStore(path)
    assert store.annotation_result() is None and not store.has_annotation_result()
    result = AnnotationResult(
        labels=np.array([1, 0, 2]), probability=np.array([0.9, 0.6, 0.7]), proba=np.eye(3)[[1, 0, 2]],
        negatives=np.array([[True, False, False], [False, False, True], [False, False, False]]),
        vote=np.array([1, 1, 2]), mean=np.array([1, 0, 0]), text_member_proba=np.full((3, 3), 1 / 3),
        fit_y=np.array([1, -1, -1]),
    )
    store.put_annotation_result(result)
    store.close()
    reopened = ProjectStore.open(path)
    assert reopened.has_annotation_result()
    stored = reopened.annotation_result()
    for name in ("labels", "probability", "proba", "negatives", "vote", "mean", "text_member_proba", "fit_y"):
        np.testing.assert_array_equal(getattr(stored, name), getattr(result, name))
    # A later fit without the text member replaces the earlier one's.
    reopened.put_annotation_result(AnnotationResult(**{**result.__dict__, "text_member_proba": None}))
    assert reopened.annotation_result().text_member_proba is None


def test_one_projects_folder_honours_mollia_projects_dir(projects):
    assert store_module.projects_dir() == projects
    Project.create("one")
    assert [p.name for p in store_module.list_projects()] == ["one.mollia.sqlite"]
    assert list_projects() == ["one"]


@pytest.mark.slow
def test_the_loop_labels_with_the_one_molam_fit(projects, trec, molam_fits):
    from mollia_core.loop import LoopConfig

    settings = LoopConfig(batch_size=8, random_state=1, seed_cv_folds=0)
    # Never fitted: running the loop fits MoLAM first, once, in the annotation service.
    project = replayed_project(trec, "never fitted")
    project.run_iterations(1, settings)
    assert len(molam_fits) == 1 and project.annotation.is_current() and project.fit_report() is not None
    project.run_iterations(1, settings)
    assert len(molam_fits) == 1
    assert project.store.annotator_fit_labels() is None  # the loop fitted no annotator of its own

    # Fitted on the MoLAM page: the loop does not fit again, and labels its queries with that fit.
    molam_fits.clear()
    fitted = replayed_project(trec, "fitted")
    fitted.fit_annotator(AnnotatorSettings(random_state=1), cv=False)
    assert len(molam_fits) == 1
    result = fitted.annotation.result()
    fitted.run_iterations(2, settings)
    assert len(molam_fits) == 1
    queried = [i for record in fitted.iterations() for i in record.queried]
    assert len(queried) == 16
    rows = {row.text_index: row for row in fitted.store.annotations()}
    assert [rows[i].label for i in queried] == result.labels[queried].tolist()
    assert [rows[i].probability for i in queried] == pytest.approx(result.probability[queried].tolist())
    for i in queried:
        shown = fitted.text_evidence(fitted.text_ids[i])
        assert shown.molam_label == shown.label == fitted.labels[result.labels[i]]
    # A new process resumes with the same fit, without fitting MoLAM again.
    molam_fits.clear()
    Project.open("fitted").run_iterations(1, settings)
    assert molam_fits == []
