"""Issue 12, parts 3 and 4: the labeled set's estimated accuracy (no gold), and which LLMs earn
their cost (leave-one-LLM-out on the seeds), as the project stores and shows them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mollia_core.annotation import MoLAM, TemperatureCalibration, WithoutMember
from mollia_core.evidence import PanelEvidence
from mollia_core.export import export_metadata, molam_accuracy_estimate, read_export_metadata, write_export
from mollia_core.project import Project, ProjectError
from mollia_core.services.annotation import LLMValue, estimate_label_set, leave_one_llm_out
from mollia_core.store import SOURCE_ACCEPT
from project_helpers import replayed_project, trec_frame, write_trec_files

LABELS = ("a", "b", "c")


# ---------------------------------------------------------------------- leave one LLM out
def constructed_panel(n: int = 240, seed: int = 0) -> tuple[PanelEvidence, np.ndarray]:
    """Three LLMs on ``n`` texts: "strong" names the true label 90 % of the time, "weak" 60 %, and
    "noise" answers at random whatever the text."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(LABELS), n)

    def llm(right_share: float) -> np.ndarray:
        answer = np.where(rng.uniform(size=n) < right_share, truth, rng.integers(0, len(LABELS), n))
        z = np.full((n, len(LABELS)), 0.1)
        z[np.arange(n), answer] = 0.8
        return z

    z = np.stack([llm(0.9), llm(0.6), llm(0.0)], axis=1)
    evidence = PanelEvidence(LABELS, ("strong", "weak", "noise"), z, z.copy())
    return evidence, truth


def seeds_of(truth: np.ndarray, n_seeds: int) -> np.ndarray:
    y = np.full(len(truth), -1)
    y[:n_seeds] = truth[:n_seeds]
    return y


def test_leave_one_out_says_pure_noise_adds_nothing_and_the_strong_llm_is_needed():
    evidence, truth = constructed_panel()
    values = {v.model: v for v in leave_one_llm_out(MoLAM(C=0.3), evidence, seeds_of(truth, 120))}
    assert list(values) == ["strong", "weak", "noise"]
    assert values["noise"].adds_nothing
    assert not values["strong"].adds_nothing
    strong = values["strong"]
    assert strong.full_accuracy - strong.without_accuracy > 3 * strong.difference_se > 0
    assert all(v.full_accuracy == strong.full_accuracy and v.n_seeds == 120 for v in values.values())


def test_without_member_drops_only_that_member():
    evidence, truth = constructed_panel(n=60)
    y = seeds_of(truth, 30)
    without = WithoutMember(MoLAM(C=0.3), "strong").fit(evidence, y)
    alone = MoLAM(C=0.3).fit(evidence.select_models(["weak", "noise"]), y)
    np.testing.assert_allclose(without.predict_proba(evidence),
                               alone.predict_proba(evidence.select_models(["weak", "noise"])))
    with pytest.raises(ValueError, match="'strong' is not a member"):
        WithoutMember(MoLAM(), "strong").fit(evidence.select_models(["weak"]), y)


def test_an_llm_adds_nothing_only_within_one_standard_error():
    assert LLMValue("m", 0.80, 0.79, 0.02, 50).adds_nothing
    assert not LLMValue("m", 0.80, 0.77, 0.02, 50).adds_nothing
    assert LLMValue("m", 0.80, 0.85, 0.02, 50).adds_nothing  # better without it


# ---------------------------------------------------------------------- the labeled set's estimate
def calibration_of(seed: int = 0) -> TemperatureCalibration:
    rng = np.random.default_rng(seed)
    seed_proba = rng.dirichlet(np.ones(len(LABELS)), 60)
    return TemperatureCalibration.fit(seed_proba, rng.integers(0, len(LABELS), 60), n_bootstrap=100)


def test_human_labels_count_as_right_per_source_and_label():
    calibration = calibration_of()
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.2, 0.2, 0.6]])
    given = np.array([0, 1, 0, 2, 2])
    sources = ["seed", "molam", SOURCE_ACCEPT, "override", "molam"]
    human = np.array([True, False, True, True, False])
    estimate = estimate_label_set(calibration, proba, given, sources, human, LABELS, "labeled")
    for source in ("seed", SOURCE_ACCEPT, "override"):
        assert (estimate.per_source[source].accuracy, estimate.per_source[source].n) == (1.0, 1)
    molam = estimate.per_source["molam"]
    assert molam.n == 2 and molam.low <= molam.accuracy <= molam.high < 1.0
    # L: 3 human labels right, 2 of MoLAM's labels expected right at molam.accuracy each.
    assert estimate.overall.n == 5
    assert estimate.overall.accuracy == pytest.approx((3 + 2 * molam.accuracy) / 5)
    assert estimate.per_label["a"].accuracy == 1.0 and estimate.per_label["a"].n == 2  # a seed and an accept
    assert estimate.per_label["b"].n == 1 and estimate.per_label["b"].accuracy < 1.0
    assert estimate.n_human_labels == 60
    # A human label's MoLAM probabilities are never read: changing them changes nothing.
    changed = proba.copy()
    changed[human] = [0.0, 0.0, 1.0]
    assert estimate_label_set(calibration, changed, given, sources, human, LABELS, "labeled") == estimate
    json.dumps(estimate.to_dict())


@pytest.fixture
def fitted_project(trec, tmp_path):
    """150 TREC questions with the paper's evidence of three LLMs, 40 seeds, MoLAM fitted with CV."""
    _, evidence_file = write_trec_files(trec, tmp_path, n=150, models=3)
    project = Project.create("value", tmp_path)
    project.set_dataset(trec_frame(trec, 150), "question", id_column="qid", label_column="category")
    project.take_seeds_from_column(40)
    project.import_evidence_file(evidence_file)
    project.fit_annotator()
    project.annotation.measure_llm_value()
    yield project, project.fit_report()
    project.store.close()


@pytest.mark.slow  # MoLAM fitted with its cross-validation, then each LLM left out
def test_the_fit_stores_the_estimate_and_the_llm_value(fitted_project):
    project, report = fitted_project
    assert report.labeled_accuracy is not None and len(report.llm_value) == 3
    # The leave-one-out rows use the same folds as the MoLAM page: the full panel's accuracy is MoLAM's there.
    full = report.accuracy_estimates().methods["MoLAM"].accuracy
    values = project.annotation.llm_value()
    assert [v.model for v in values] == project.panel_models()
    assert all(v.full_accuracy == pytest.approx(full) and v.seconds_per_text is None for v in values)
    estimate = project.annotation.labeled_set_estimate()
    assert estimate.scope == "labeled" and estimate.per_source == {"seed": estimate.per_source["seed"]}
    assert estimate.overall.accuracy == 1.0 and estimate.overall.n == 40  # L holds the seeds alone
    everything = project.annotation.labeled_set_estimate("all")
    assert everything.overall.n == 150 and everything.per_source["molam"].n == 110
    assert everything.overall.low <= everything.overall.accuracy <= everything.overall.high < 1.0


@pytest.mark.slow  # MoLAM fitted with its cross-validation, then each LLM left out
def test_what_each_llm_adds_is_measured_on_the_folds_of_a_cross_validated_fit_only(trec, tmp_path):
    project = replayed_project(trec, "value-order", root=tmp_path)
    with pytest.raises(ProjectError, match="fit MoLAM with its cross-validation"):
        project.annotation.measure_llm_value()
    project.fit_annotator(cv=False)
    with pytest.raises(ProjectError, match="fit MoLAM with its cross-validation"):
        project.annotation.measure_llm_value()
    assert project.annotation.llm_value() == []
    project.fit_annotator()
    fitted = project.fit_report()
    assert fitted.llm_value is None  # a fit does not leave LLMs out: that is its own action
    values = project.annotation.measure_llm_value()
    assert [v.model for v in values] == project.panel_models()
    assert project.annotation.llm_value() == values and project.fit_report().estimates == fitted.estimates


@pytest.mark.slow  # MoLAM fitted with its cross-validation, then each LLM left out
def test_the_estimate_uses_no_gold(fitted_project, trec):
    project, _ = fitted_project
    before = project.annotation.labeled_set_estimate("all")
    store = project.store
    with store.transaction() as conn:  # every text's gold label changed to another label
        conn.execute("UPDATE texts SET gold = (COALESCE(gold, 0) + 1) % ?", (len(project.labels),))
    assert project.annotation.labeled_set_estimate("all") == before
    project.fit_annotator()
    assert project.annotation.labeled_set_estimate("all") == before


@pytest.mark.slow  # MoLAM fitted with its cross-validation, then each LLM left out
def test_the_export_metadata_carries_the_estimate(fitted_project, tmp_path):
    project, report = fitted_project
    frame = project.export_frame("all")
    estimate = project.annotation.labeled_set_estimate("all")
    path = tmp_path / "out.csv"
    write_export(frame, path, export_metadata(frame, molam_accuracy_estimate(report.cv_accuracy, report.n_seeds),
                                              labeled_estimate=estimate.to_dict()))
    meta = read_export_metadata(path)
    assert meta["labeled_set_estimate"]["overall"]["accuracy"] == pytest.approx(estimate.overall.accuracy)
    assert meta["labeled_set_estimate"]["n_human_labels"] == 40
    molam = meta["sources"]["molam"]
    assert molam["estimated_accuracy"]["mean"] == pytest.approx(estimate.per_source["molam"].accuracy)
    assert molam["estimated_accuracy"]["texts"] == 110
    assert molam["seed_cross_validation"]["mean"] == pytest.approx(report.cv_accuracy["MoLAM"][0])
    assert meta["sources"]["seed"]["estimated_accuracy"] is None and meta["sources"]["seed"]["human_labels"]
    assert set(meta["labeled_set_estimate"]["per_label"]) <= set(project.labels)
    assert isinstance(pd.read_csv(path), pd.DataFrame)


# ---------------------------------------------------------------------- on the pages, after a fit
@pytest.fixture
def dashboard_project(projects, trec):
    """A dashboard project: 150 TREC questions, three LLMs' paper evidence collected through
    ``run_evidence`` (so each LLM's seconds per text is measured), 40 seeds, MoLAM fitted with CV."""
    from mollia_core.evidence.replay import ReplaySource
    from mollia_core.project import AnnotatorSpec
    from project_helpers import trec_records

    project = Project.create("value")
    project.set_dataset(trec_frame(trec, 150), "question", id_column="qid", label_column="category")
    evidence = trec_records(trec, 150, models=3)
    specs = [AnnotatorSpec(kind="replay", model=model, path="trec.jsonl") for model in evidence]
    project.set_panel(specs)
    project.panel.set_evidence_plan("full")  # every text, the validation split's too
    project.panel.run_evidence([(spec, ReplaySource(records)) for spec, records in zip(specs, evidence.values())])
    project.take_seeds_from_column(40)
    project.fit_annotator()
    return project


@pytest.mark.slow  # MoLAM fitted with its cross-validation, then each LLM left out
def test_seconds_per_text_are_measured_while_collecting_evidence(dashboard_project):
    speeds = dashboard_project.panel.seconds_per_text()
    assert set(speeds) == set(dashboard_project.panel_models())
    assert all(0 < s < 1 for s in speeds.values())
    assert dashboard_project.store.get_setting("evidence_seconds")[dashboard_project.panel_models()[0]]["texts"] == 150
    dashboard_project.annotation.measure_llm_value()
    assert [v.seconds_per_text for v in dashboard_project.annotation.llm_value()] == [
        speeds[m] for m in dashboard_project.panel_models()]


@pytest.mark.slow  # MoLAM fitted with its cross-validation, then each LLM left out
def test_pages_show_the_reliability_plot_the_llm_value_table_and_the_estimate(dashboard_project):
    from app_helpers import app, assert_no_exception, finish_job

    at = app("value", "pages/3_molam.py")
    assert_no_exception(at)
    specs = [chart.proto.spec for chart in at.get("plotly_chart")]
    assert any("MoLAM's probability (out-of-fold)" in spec and "observed accuracy" in spec for spec in specs)
    assert any("Reliability on the seeds" in h.value for h in at.subheader)
    at = app("value", "pages/2_annotators.py")
    assert_no_exception(at)
    assert not any("MoLAM without it" in d.value.columns for d in at.dataframe)  # not measured by the fit
    measure = next(b for b in at.button if b.label == "Measure what each LLM adds")
    at = finish_job(measure.click().run())
    assert_no_exception(at)
    table = next(d.value for d in at.dataframe if "MoLAM without it" in d.value.columns)
    assert list(table["LLM"]) == dashboard_project.panel_models()
    assert table["MoLAM without it"].between(0, 1).all() and (table["seconds per text"] != "not measured").all()
    assert any("Which LLMs earn their cost" in h.value for h in at.header)
    for page in ("pages/5_review.py", "pages/6_export.py"):
        at = app("value", page)
        assert_no_exception(at)
        assert any("an estimate from 40 human seed labels" in m.value for m in at.markdown), page
