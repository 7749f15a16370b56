"""The no-gold estimate of how right MoLAM's labels are: calibration on human labels only."""

from __future__ import annotations

import inspect
import json

import numpy as np
from sklearn.base import clone
import pytest

from mollia_core.annotation import (
    AnnotationError,
    LabeledAccuracy,
    MoLAM,
    apply_temperature,
    calibrated_accuracy,
    estimate_labeled_accuracy,
    fit_temperature,
    reliability_curve,
)

LABELS = ("a", "b", "c", "d")


def world(n: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Texts whose true label is drawn from softmax(logits); the model reports softmax(logits / T).

    T = 1: a perfectly calibrated model; T < 1: an over-confident one. Returns (reported
    probabilities, true labels)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, len(LABELS))) * 1.5
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = (truth.cumsum(axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    return apply_temperature(truth, temperature), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_calibrated_model_is_estimated_within_its_interval(seed):
    seed_proba, seed_labels = world(50, 1.0, seed)
    proba, truth = world(5000, 1.0, seed + 100)
    estimate = calibrated_accuracy(seed_proba, seed_labels, proba, LABELS, random_state=seed)
    true_accuracy = (proba.argmax(axis=1) == truth).mean()
    assert estimate.overall.low <= true_accuracy <= estimate.overall.high
    assert estimate.overall.low < estimate.overall.accuracy < estimate.overall.high
    assert estimate.overall.n == 5000 and estimate.n_seeds == 50


def test_an_over_confident_model_is_corrected_by_the_calibration():
    seed_proba, seed_labels = world(50, 0.4, 0)
    proba, truth = world(5000, 0.4, 1)
    true_accuracy = (proba.argmax(axis=1) == truth).mean()
    as_reported = proba.max(axis=1).mean()
    estimate = calibrated_accuracy(seed_proba, seed_labels, proba, LABELS)
    assert as_reported > true_accuracy + 0.1  # the model claims far more than it delivers
    assert estimate.temperature > 1.5  # the calibration softens it
    assert estimate.overall.low <= true_accuracy <= estimate.overall.high
    assert as_reported > estimate.overall.high
    assert abs(estimate.overall.accuracy - true_accuracy) < 0.05


def test_per_label_estimates_cover_the_texts_given_each_label():
    seed_proba, seed_labels = world(60, 1.0, 3)
    proba, truth = world(3000, 1.0, 4)
    estimate = calibrated_accuracy(seed_proba, seed_labels, proba, LABELS)
    given = proba.argmax(axis=1)
    assert set(estimate.per_label) == set(LABELS)
    assert sum(e.n for e in estimate.per_label.values()) == len(proba)
    for k, label in enumerate(LABELS):
        cell = estimate.per_label[label]
        assert cell.n == (given == k).sum()
        assert cell.low <= (given[given == k] == truth[given == k]).mean() <= cell.high
    # the overall figure is the per-label figures weighted by their texts
    weighted = sum(e.accuracy * e.n for e in estimate.per_label.values()) / len(proba)
    assert estimate.overall.accuracy == pytest.approx(weighted)
    assert estimate.reliability == tuple(reliability_curve(seed_proba, seed_labels))
    assert sum(b.n for b in estimate.reliability) == 60
    stored = json.loads(json.dumps(estimate.to_dict()))  # as a project or an export keeps it
    assert LabeledAccuracy.from_dict(stored) == estimate


def test_the_labeled_set_counts_human_labels_as_right():
    seed_proba, seed_labels = world(50, 1.0, 5)
    proba, _ = world(150, 1.0, 6)
    estimate = calibrated_accuracy(seed_proba, seed_labels, proba, LABELS)
    labeled_set = estimate.labeled_set(n_human=50)
    assert labeled_set.n == 200
    assert labeled_set.accuracy == pytest.approx(0.25 + 0.75 * estimate.overall.accuracy)
    assert labeled_set.low == pytest.approx(0.25 + 0.75 * estimate.overall.low)


def test_temperature_recovers_how_over_confident_a_model_is():
    proba, labels = world(4000, 0.5, 7)
    assert fit_temperature(proba, labels) == pytest.approx(2.0, rel=0.1)
    proba, labels = world(4000, 1.0, 8)
    assert fit_temperature(proba, labels) == pytest.approx(1.0, rel=0.1)


def test_reliability_curve_hand_computed():
    seed_proba = np.array([[0.9, 0.1], [0.95, 0.05], [0.6, 0.4], [0.4, 0.6], [0.55, 0.45]])
    seed_labels = np.array([0, 1, 0, 1, 1])
    bins = reliability_curve(seed_proba, seed_labels, n_bins=2)  # bins [0.5, 0.75), [0.75, 1]
    assert [(b.low, b.high, b.n) for b in bins] == [(0.5, 0.75, 3), (0.75, 1.0, 2)]
    assert bins[0].predicted == pytest.approx((0.6 + 0.6 + 0.55) / 3)
    assert bins[0].observed == pytest.approx(2 / 3)  # 0 right, 1 right, 0 wrong
    assert bins[1].predicted == pytest.approx(0.925) and bins[1].observed == pytest.approx(0.5)


def test_bad_input_is_explained():
    proba, labels = world(10, 1.0, 9)
    with pytest.raises(AnnotationError, match="at least 2 human labels"):
        calibrated_accuracy(proba[:1], labels[:1], proba, LABELS)
    with pytest.raises(AnnotationError, match="must both be"):
        calibrated_accuracy(proba, labels, proba[:, :3], LABELS)
    with pytest.raises(AnnotationError, match="label indices 0..3"):
        calibrated_accuracy(proba, np.full(10, 4), proba, LABELS)


# -- end to end on real evidence: MoLAM (real logistic meta-learner) on a TREC subset -------------


def trec_subset(trec, n: int = 800, n_seeds: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = rng.choice(trec.evidence.n_texts, size=n, replace=False)
    evidence, gold = trec.evidence.subset(rows), trec.gold[rows]
    y = np.full(n, -1)
    y[:n_seeds] = gold[:n_seeds]  # rows are already in random order: the first n_seeds are the seeds
    return evidence, gold, y


def quick_molam(**kw) -> MoLAM:
    """MoLAM on the LLM evidence, C fixed and few self-training rounds: a fit in a fraction of a second."""
    return MoLAM(**{"use_text_member": False, "C": 0.1, "max_self_training_rounds": 2, **kw})


def test_molam_on_real_trec_evidence_is_estimated_near_its_accuracy(trec):
    evidence, gold, y = trec_subset(trec)
    model = quick_molam()
    estimate = estimate_labeled_accuracy(model, evidence, y, n_bootstrap=200)
    others = y == -1
    true_accuracy = (model.fit(evidence, y).predict(evidence)[others] == gold[others]).mean()
    assert estimate.overall.n == others.sum()
    assert estimate.overall.low <= true_accuracy <= estimate.overall.high
    assert abs(estimate.overall.accuracy - true_accuracy) < 0.05
    assert 0.0 < estimate.overall.low < estimate.overall.high < 1.0


def test_no_gold_label_reaches_the_estimate(trec):
    parameters = set(inspect.signature(estimate_labeled_accuracy).parameters)
    assert not {p for p in parameters if "gold" in p or "truth" in p}
    evidence, gold, y = trec_subset(trec, n=400)
    model = quick_molam()
    before = estimate_labeled_accuracy(model, evidence, y, n_bootstrap=50)
    # Other gold labels for the texts without a human label: the inputs, and so the estimate, stay the same.
    shuffled = gold.copy()
    shuffled[y == -1] = np.random.default_rng(1).permutation(gold[y == -1])
    y_again = np.where(y == -1, -1, shuffled)
    assert (y_again == y).all()
    assert estimate_labeled_accuracy(model, evidence, y_again, n_bootstrap=50) == before
    # A human label, on the other hand, is what the estimate rests on.
    y_more = y.copy()
    y_more[np.flatnonzero(y == -1)[:20]] = gold[y == -1][:20]
    assert estimate_labeled_accuracy(model, evidence, y_more, n_bootstrap=50) != before


def test_too_few_human_labels_say_how_many_are_needed(trec):
    evidence, _, y = trec_subset(trec, n=100, n_seeds=3)
    with pytest.raises(AnnotationError, match="at least 5"):
        estimate_labeled_accuracy(quick_molam(), evidence, y)


def test_fold_models_keep_the_C_chosen_on_all_the_seeds(trec):
    from mollia_core.annotation import _with_chosen_hyperparameters

    evidence, _, y = trec_subset(trec, n=300)
    unfitted = MoLAM(use_text_member=False, max_self_training_rounds=0, meta_learner="logistic")
    fitted = clone(unfitted).fit(evidence, y)
    fold_model = _with_chosen_hyperparameters(unfitted, fitted)
    assert fitted.C_ in fitted.C_grid and fold_model.C == fitted.C_
    assert not hasattr(fold_model, "C_")  # unfitted: each fold fits it afresh


@pytest.mark.slow
def test_with_the_text_member_the_fold_models_keep_its_C_and_the_caller_s_member_is_untouched(trec):
    from mollia_core.text_member import TextMember

    rows = np.random.default_rng(2).choice(trec.evidence.n_texts, size=300, replace=False)
    evidence, gold = trec.evidence.subset(rows), trec.gold[rows]
    y = np.where(np.arange(300) < 50, gold, -1)
    member = TextMember([trec.texts[i] for i in rows])
    estimate = estimate_labeled_accuracy(quick_molam(use_text_member=True), evidence, y, text_member=member,
                                         n_bootstrap=100)
    assert member.C is None  # its C is re-chosen on the caller's next fit, as before
    assert estimate.overall.n == 250 and 0.0 < estimate.overall.low <= estimate.overall.high < 1.0


# -- the widened interval (the app's): the calibration's own check on n labels, and few texts ------


def test_the_widened_interval_holds_the_narrow_one_and_widens_most_for_few_texts():
    seed_proba, seed_labels = world(50, 1.0, 11)
    proba, _ = world(2000, 1.0, 12)
    narrow = calibrated_accuracy(seed_proba, seed_labels, proba, LABELS, widen=False)
    widened = calibrated_accuracy(seed_proba, seed_labels, proba, LABELS)
    assert widened.overall.accuracy == narrow.overall.accuracy  # the same point estimate
    assert widened.overall.low < narrow.overall.low and widened.overall.high > narrow.overall.high
    # A handful of texts: their own binomial spread dominates; the same calibration says so.
    few = proba[:4]
    given = few.argmax(axis=1)
    groups = {"few": np.ones(4, dtype=bool)}
    few_widened = widened.calibration.expected_accuracy(few, given, groups)["few"]
    few_narrow = narrow.calibration.expected_accuracy(few, given, groups)["few"]
    assert few_widened.high - few_widened.low > 2 * (few_narrow.high - few_narrow.low)
    assert 0.0 <= few_widened.low <= few_widened.accuracy <= few_widened.high <= 1.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_an_over_confident_model_on_few_seeds_is_within_the_widened_interval(seed):
    seed_proba, seed_labels = world(30, 0.5, 20 + seed)
    proba, truth = world(3000, 0.5, 40 + seed)
    estimate = calibrated_accuracy(seed_proba, seed_labels, proba, LABELS, random_state=seed)
    assert estimate.overall.low <= (proba.argmax(axis=1) == truth).mean() <= estimate.overall.high
