"""The review queue (issue 12): texts ranked by the chance that their label is wrong, the ranking learned
from human labels only, and MoLAM refitted on the reviewed labels. Real components: the SQLite store,
the paper's real LLM evidence, MoLAM and (slow tests) the AL loop with the real fast learner."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mollia_core.project import AnnotatorSettings, Project, ProjectError
from mollia_core.review_queue import FEATURES, WrongLabelRanker, wrong_label_features, wrong_label_reasons
from mollia_core.services.queue import DEFAULT_REVIEW_BUDGET, QUEUE_COLUMNS
from mollia_core.store import AnnotationRow
from project_helpers import replayed_project  # 150 TREC questions, 3 LLMs' replayed evidence, 40 seeds

#: MoLAM on the LLMs' evidence alone: no text member, so no encoder (fast enough for the quick tests).
LLM_ONLY = AnnotatorSettings(method="molam-llm-only", random_state=1)
REFIT = AnnotatorSettings(method="molam-llm-only", random_state=1, refit_on_reviews=True)


def _molam_rows(project: Project, specs: dict[int, tuple[int, float, bool]]) -> None:
    """Write MoLAM-labeled rows of L as the loop would: {text index: (label, probability, d_anno)}."""
    project.store.put_annotations([
        AnnotationRow(text_index=i, label=label, source="molam", iteration=1, probability=p, annotator_label=label,
                      d_anno=flag)
        for i, (label, p, flag) in specs.items()
    ])


def _unseeded(project: Project, n: int) -> list[int]:
    seeds = project.store.seed_labels()
    return [i for i in range(project.store.n_texts) if i not in seeds][:n]


# ---------------------------------------------------------------------------------------- pure core
def test_the_learned_ranking_puts_the_label_with_every_sign_of_error_first():
    rng = np.random.default_rng(0)
    n = 200
    # Human-checked examples: a label was wrong where MoLAM doubted it and the AL model disagreed.
    doubt, al = rng.uniform(0, 0.8, n), rng.integers(0, 2, n).astype(float)
    wrong = (doubt + 0.4 * al + rng.normal(0, 0.1, n)) > 0.6
    X = np.column_stack([doubt, rng.uniform(0, 1, n), rng.uniform(0, 1, n), rng.integers(0, 2, n), al])
    ranker = WrongLabelRanker().fit(X, wrong)
    assert ranker.learned_ and ranker.weights()["molam_doubt"] > 0 and ranker.weights()["al_disagreement"] > 0
    candidates = np.array([[0.1, 0.5, 0.5, 0, 0],   # sure, AL agrees: last
                           [0.7, 0.5, 0.5, 0, 1],   # unsure, AL disagrees: first
                           [0.7, 0.5, 0.5, 0, 0]])  # unsure, AL agrees: between
    assert list(np.argsort(-ranker.wrong_chance(candidates))) == [1, 2, 0]


def test_too_few_wrong_examples_fall_back_to_molams_doubt():
    X = np.column_stack([np.linspace(0, 0.5, 30)] + [np.zeros(30)] * (len(FEATURES) - 1))
    wrong = np.zeros(30, dtype=bool)
    wrong[:4] = True  # 4 wrong examples: fewer than MIN_EXAMPLES_PER_OUTCOME
    ranker = WrongLabelRanker().fit(X, wrong)
    assert not ranker.learned_ and ranker.weights() == {}
    np.testing.assert_allclose(ranker.wrong_chance(np.array([[0.3, 1, 1, 1, 1], [0.2, 0, 0, 0, 0]])), [0.3, 0.2])


def test_seeds_lack_the_al_signs_and_the_ranker_learns_them_from_reviews_alone():
    # Seeds: MoLAM's doubt alone says who is wrong; the AL signs are unknown there (NaN).
    seeds = wrong_label_features(np.zeros(40, dtype=int), np.linspace(0.3, 1.0, 40))
    assert np.isnan(seeds[:, FEATURES.index("d_anno")]).all() and np.isnan(seeds[:, FEATURES.index("al_disagreement")]).all()
    seed_wrong = np.linspace(0.3, 1.0, 40) < 0.5
    ranker = WrongLabelRanker().fit(seeds, seed_wrong)
    assert ranker.weights()["al_disagreement"] == pytest.approx(0.0)  # nothing to learn it from yet
    # Reviewed texts: wrong exactly where the AL model disagreed.
    al = np.tile([0, 1], 10)
    reviewed = wrong_label_features(np.zeros(20, dtype=int), np.full(20, 0.8), d_anno=np.zeros(20),
                                    al_labels=np.where(al == 1, 1, 0))
    ranker = WrongLabelRanker().fit(np.vstack([seeds, reviewed]), np.concatenate([seed_wrong, al == 1]))
    assert ranker.weights()["al_disagreement"] > 0


def test_a_sign_that_learns_a_negative_weight_is_left_out():
    # 60 human-checked labels: wrong exactly where the LLMs disagree; MoLAM's doubt, by chance, is higher on
    # the right ones. Larger doubt must never make a label look less likely wrong: the sign is dropped.
    rng = np.random.default_rng(0)
    wrong = np.arange(60) % 3 == 0
    doubt = np.where(wrong, 0.2, 0.5) + rng.uniform(0, 0.1, 60)
    X = wrong_label_features(np.zeros(60, dtype=int), 1.0 - doubt, votes=np.where(wrong, 1, 0)[:, None])
    ranker = WrongLabelRanker().fit(X, wrong)
    assert ranker.weights()["molam_doubt"] == 0.0 and ranker.weights()["llm_disagreement"] > 0
    more_doubt = X[:1].copy()
    more_doubt[0, FEATURES.index("molam_doubt")] += 0.5
    assert ranker.wrong_chance(more_doubt)[0] == pytest.approx(ranker.wrong_chance(X[:1])[0])


def test_reasons_say_in_plain_words_why_a_label_may_be_wrong():
    features = wrong_label_features(np.array([0, 0]), np.array([0.45, 0.99]), votes=np.array([[1, 1, 0, 0], [0, 0, 0, 0]]),
                                    al_labels=np.array([2, 0]), d_anno=np.array([1.0, 0.0]))
    reasons = wrong_label_reasons(features, np.array([0, 0]), ("a", "b", "c"), 4, np.array([2, 0]))
    assert reasons == ["AL model says c; 2 of 4 LLMs disagree; MoLAM 45% sure", "no sign of a wrong label"]


# ---------------------------------------------------------------------------------------- the service
def test_the_queue_lists_unreviewed_model_labels_most_likely_wrong_first(projects, trec):
    project = replayed_project(trec, "queue")
    project.fit_annotator(LLM_ONLY, cv=False)
    a, b, c, d = _unseeded(project, 4)
    votes = project.queue._votes()
    majority = lambda i: int(np.bincount(votes[i]).argmax())  # noqa: E731  the LLMs' own choice
    minority = lambda i: int(next(k for k in range(len(project.labels)) if k not in votes[i]))  # noqa: E731
    # a: MoLAM sure and the LLMs agree; b: unsure, flagged and against every LLM; c: in between; d: reviewed.
    _molam_rows(project, {a: (majority(a), 0.99, False), b: (minority(b), 0.2, True), c: (majority(c), 0.5, False),
                          d: (majority(d), 0.3, True)})
    project.review.accept(project.text_ids[d])
    queue = project.queue.ranked()
    assert list(queue.columns) == QUEUE_COLUMNS
    # the seeds and the reviewed text are not in it; b, with every sign against it, comes first (how a and c
    # compare depends on the weights the 40 seeds teach: MoLAM's doubt may carry none on them)
    assert queue["id"][0] == project.text_ids[b]
    assert sorted(queue["id"][1:]) == sorted([project.text_ids[a], project.text_ids[c]])
    assert queue["wrong_chance"].is_monotonic_decreasing and queue["wrong_chance"].between(0, 1).all()
    assert "3 of 3 LLMs disagree" in queue["reasons"][0] and queue["al_label"].isna().all()  # no AL model yet
    assert list(project.queue.ranked(2)["id"]) == list(queue["id"][:2])
    ranking = project.queue.ranking()
    assert ranking.n_seed_examples == 40 and ranking.n_reviewed_examples == 1
    assert queue.attrs["ranking"] == ranking.message and ("learned" in ranking.message) == ranking.learned


def test_the_ranking_learns_from_human_labels_only_not_gold(projects, trec):
    project = replayed_project(trec, "queue")
    project.fit_annotator(LLM_ONLY, cv=False)
    texts = _unseeded(project, 30)
    result = project.annotation.result()
    _molam_rows(project, {i: (int(result.labels[i]), float(result.probability[i]), bool(i % 3 == 0)) for i in texts})
    for i in texts[:6]:  # reviews: the human's labels (here: MoLAM's label was right for half of them)
        label = int(result.labels[i]) if i % 2 else (int(result.labels[i]) + 1) % len(project.labels)
        project.review.override(project.text_ids[i], project.labels[label])
    before = project.queue.ranked()
    assert project.queue.ranking().n_reviewed_examples == 6
    with project.store.transaction() as conn:  # every gold label changed: nothing the queue uses may move
        conn.execute("UPDATE texts SET gold = (gold + 1) % ?", (len(project.labels),))
    project.store.close()
    after = Project.open("queue").queue.ranked()
    assert list(after["id"]) == list(before["id"])
    np.testing.assert_allclose(after["wrong_chance"], before["wrong_chance"])


def test_the_budget_is_a_project_setting(projects, trec):
    project = replayed_project(trec, "queue", n=60)
    assert project.queue.budget() == DEFAULT_REVIEW_BUDGET == 10
    project.queue.set_budget(25)
    assert Project.open("queue").queue.budget() == 25
    for bad in (-1, 2.5, "ten", True):
        with pytest.raises(ProjectError, match="review budget"):
            project.queue.set_budget(bad)


def test_a_review_makes_the_fit_stale_only_with_refit_on_reviews(projects, trec):
    project = replayed_project(trec, "queue")
    project.fit_annotator(replace(LLM_ONLY, refit_on_reviews=False), cv=False)
    text = _unseeded(project, 1)[0]
    result = project.annotation.result()
    _molam_rows(project, {text: (int(result.labels[text]), float(result.probability[text]), False)})
    assert project.annotation.is_current()
    project.review.accept(project.text_ids[text])
    assert project.annotation.is_current()  # refit_on_reviews turned off: MoLAM keeps the seeds' fit
    assert project.annotation.fit_labels()[text] == -1 and project.annotation.fit_labels(REFIT)[text] == result.labels[text]
    project.fit_annotator(REFIT, cv=False)
    assert project.annotation.is_current() and project.fit_report().n_reviewed == 1
    assert project.annotation.result().fit_y[text] == result.labels[text]
    project.review.undo(project.text_ids[text])  # the review withdrawn: the fit is stale again
    assert not project.annotation.is_current()


@pytest.mark.slow
def test_the_loop_refits_molam_on_reviewed_labels_before_the_next_batch(projects, trec):
    from mollia_core.loop import LoopConfig

    project = replayed_project(trec, "queue", n=200)
    project.fit_annotator(REFIT, cv=False)
    settings = LoopConfig(batch_size=20, random_state=1, seed_cv_folds=0)
    project.run_iterations(1, settings)
    labeled = [r for r in project.store.annotations() if not r.is_human]
    assert len(labeled) == 20
    overridden = labeled[:3]
    for row in overridden:  # the human says otherwise
        project.review.override(project.text_ids[row.text_index], project.labels[(row.label + 1) % len(project.labels)])
    project.review.accept(project.text_ids[labeled[3].text_index])
    project.run_iterations(1, settings)
    fit_y = project.annotation.result().fit_y
    for row in overridden:
        assert fit_y[row.text_index] == (row.label + 1) % len(project.labels)
    assert fit_y[labeled[3].text_index] == labeled[3].label
    assert (fit_y >= 0).sum() == 40 + 4 and project.annotation.is_current()
    assert project.fit_report().n_reviewed == 4
    assert [r.applied_iteration for r in project.store.responses()] == [2] * 4  # the AL model trained on them too
