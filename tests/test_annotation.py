"""Annotation models: the negative-label rule (Eq. 6), baselines, MoLAM / MoL (Eq. 4-5 + self-training)."""

from __future__ import annotations

import numpy as np
import pytest

from mollia_core.annotation import (
    Annotation,
    AnnotationError,
    MajorityVote,
    MeanProbability,
    MoL,
    MoLAM,
    SingleLLM,
    cross_validated_accuracy,
    make_annotator,
    negative_label_mask,
    paper_baseline_predictions,
)
from mollia_core.evidence import PanelEvidence

LABELS = ("a", "b", "c")


def panel(z: list, c: list, models=("m0", "m1")) -> PanelEvidence:
    return PanelEvidence(
        labels=LABELS, models=tuple(models), label_probs=np.array(z, dtype=float), vote_shares=np.array(c, dtype=float)
    )


def unlabeled(n: int) -> np.ndarray:
    return np.full(n, -1)


def synthetic_panel(n_per_class: int, n_ambiguous: int, seed: int = 0) -> tuple[PanelEvidence, np.ndarray]:
    """Two LLMs that give the true class ~0.9 on clear texts, and uniform z on ambiguous ones."""
    rng = np.random.default_rng(seed)
    gold = np.repeat(np.arange(3), n_per_class)
    z = np.full((len(gold), 2, 3), 0.05)
    z[np.arange(len(gold)), :, gold] = 0.9
    z += rng.uniform(0, 0.02, z.shape)
    z_ambiguous = np.full((n_ambiguous, 2, 3), 1 / 3)
    z = np.concatenate([z, z_ambiguous])
    c = z / z.sum(-1, keepdims=True)
    gold = np.concatenate([gold, rng.integers(0, 3, n_ambiguous)])
    return panel(z.tolist(), c.tolist()), gold


# -- Eq. 6 ------------------------------------------------------------------------------------


def test_negative_label_mask_hand_computed():
    z = np.array(
        [
            # text 0: label c is below delta for both LLMs -> negative; b only for one LLM -> not.
            [[0.9, 0.0999, 0.0001], [0.99, 0.0, 0.0005]],
            # text 1: exactly delta is NOT below delta; a is 0 for both -> negative.
            [[0.0, 0.999, 0.001], [0.0, 0.5, 0.5]],
        ]
    )
    expected = np.array([[False, False, True], [True, False, False]])
    np.testing.assert_array_equal(negative_label_mask(z, delta=0.001), expected)
    # a larger delta rules out more labels
    np.testing.assert_array_equal(negative_label_mask(z, delta=0.05)[0], [False, False, True])
    np.testing.assert_array_equal(negative_label_mask(z, delta=0.2)[0], [False, True, True])


def test_negative_label_mask_rejects_wrong_shape():
    with pytest.raises(AnnotationError, match="n_texts, n_llms, n_labels"):
        negative_label_mask(np.zeros((3, 4)))


def test_every_model_uses_the_same_negative_rule():
    evidence, gold = synthetic_panel(10, 2)
    y = gold.copy()
    for model in (MajorityVote(), MeanProbability(), SingleLLM("m1"), MoL(C=1.0)):
        annotation = model.fit(evidence, y).annotate(evidence)
        np.testing.assert_array_equal(annotation.negative_mask, negative_label_mask(evidence.label_probs))


# -- baselines on hand-computed cases ---------------------------------------------------------


HAND = panel(
    z=[
        [[0.6, 0.3, 0.1], [0.1, 0.5, 0.4]],  # mean z: a .35, b .40, c .25 -> b
        [[0.0, 0.0, 0.0], [0.2, 0.2, 0.6]],  # m0 all zero -> uniform; mean: a .267 b .267 c .467 -> c
        [[2.0, 1.0, 1.0], [0.1, 0.1, 0.8]],  # broken z sums to 4: renormalised .5 .25 .25; mean -> c
    ],
    c=[
        [[0.7, 0.3, 0.0], [0.0, 0.6, 0.2]],  # pooled 0.7 / 0.9 / 0.2 -> b
        [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]],  # pooled tie a = b; tie-break by mean z (a .267 = b .267) -> a
        [[0.4, 0.4, 0.2], [0.0, 0.5, 0.5]],  # pooled .4 .9 .7 -> b
    ],
)


def test_mean_probability_hand_computed():
    model = MeanProbability().fit(HAND, unlabeled(3))
    proba = model.predict_proba(HAND)
    np.testing.assert_allclose(proba[0], [0.35, 0.40, 0.25], atol=1e-8)
    np.testing.assert_allclose(proba[2], [(0.5 + 0.1) / 2, (0.25 + 0.1) / 2, (0.25 + 0.8) / 2], atol=1e-8)
    np.testing.assert_array_equal(model.predict(HAND), [1, 2, 2])


def test_majority_vote_hand_computed():
    model = MajorityVote().fit(HAND, unlabeled(3))
    proba = model.predict_proba(HAND)
    np.testing.assert_allclose(proba[0], np.array([0.7, 0.9, 0.2]) / 1.8, atol=1e-8)
    np.testing.assert_array_equal(model.predict(HAND), [1, 0, 1])


def test_single_llm_hand_computed():
    probs = SingleLLM("m0", use="probs").fit(HAND, unlabeled(3))
    np.testing.assert_allclose(probs.predict_proba(HAND)[1], [1 / 3] * 3)  # all-zero z -> uniform
    np.testing.assert_allclose(probs.predict_proba(HAND)[2], [0.5, 0.25, 0.25], atol=1e-8)
    # text 1: uniform z, ties broken by the votes (a = b = 0.5 -> a, the first)
    np.testing.assert_array_equal(probs.predict(HAND), [0, 0, 0])
    votes = SingleLLM(1, use="votes").fit(HAND, unlabeled(3))
    # text 1: m1 named no label at all -> falls back to its renormalised z (c = 0.6);
    # text 2: shares tie b = c, broken by its z (c = 0.8)
    np.testing.assert_allclose(votes.predict_proba(HAND)[1], [0.2, 0.2, 0.6], atol=1e-8)
    np.testing.assert_array_equal(votes.predict(HAND), [1, 2, 2])


def test_paper_baseline_rules_hand_computed():
    evidence = PanelEvidence(
        labels=LABELS,
        models=("m0", "m1"),
        label_probs=HAND.label_probs,
        vote_shares=HAND.vote_shares,
        answers=[
            # m0: '"a"' is the most common answer -> no label; pooled: b, '"a"', c tie -> b, sampled first
            [("b", '"a"', '"a"'), ("b", "c", "c")],
            [("a", "b"), ("c",)],  # m0: tie a/b -> first sampled (a); pooled a, b, c tie -> a
            [("c", "c", "b"), ("b", "b", "c")],  # pooled: c 3, b 3 -> c, sampled first
        ],
    )
    predictions = paper_baseline_predictions(evidence)
    np.testing.assert_array_equal(predictions["m0 (votes)"], [-1, 0, 2])
    np.testing.assert_array_equal(predictions["vote"], [1, 0, 2])
    np.testing.assert_array_equal(predictions["mean"], [1, 2, 0])  # raw z: text 2's broken z wins for a


def test_paper_whole_dataset_figures_reproduced(trec):
    """The paper's best single LLM / vote / mean on trec, to 3 decimals (paper-evidence README)."""
    predictions = paper_baseline_predictions(trec.evidence)
    accuracy = {name: round(float((p == trec.gold).mean()), 3) for name, p in predictions.items()}
    assert accuracy["yi (votes)"] == 0.768
    assert accuracy["vote"] == 0.732
    assert accuracy["mean"] == 0.711
    assert max(accuracy.values()) == 0.768


# -- probabilities, missing classes, self-training --------------------------------------------


@pytest.mark.parametrize(
    "model",
    [MajorityVote(), MeanProbability(), SingleLLM("m0"), SingleLLM("m1", use="votes"), MoL(C=1.0), MoLAM(C=1.0)],
    ids=["vote", "mean", "llm-probs", "llm-votes", "mol", "molam"],
)
def test_probabilities_are_proper(model):
    evidence, gold = synthetic_panel(10, 5)
    y = unlabeled(len(gold))
    y[::2] = gold[::2]
    annotation = model.fit(evidence, y).annotate(evidence)
    assert isinstance(annotation, Annotation)
    assert annotation.proba.shape == (len(gold), 3)
    assert (annotation.proba >= 0).all()
    np.testing.assert_allclose(annotation.proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(annotation.labels, annotation.proba.argmax(1))
    np.testing.assert_allclose(annotation.probability, annotation.proba.max(1))


@pytest.mark.parametrize("recipe, learner", [("mollia", "pooled"), ("mollia", "logistic"), ("paper", None)])
def test_class_missing_from_seeds(recipe, learner):
    evidence, gold = synthetic_panel(10, 0)
    y = unlabeled(len(gold))
    seeds = np.flatnonzero(gold != 2)[::2]  # no seed of class "c"
    y[seeds] = gold[seeds]
    kwargs = {"n_estimators": 20} if recipe == "paper" else {"C": 1.0, "meta_learner": learner}
    for backoff in (True, False):
        model = MoLAM(recipe=recipe, unseen_class_backoff=backoff, **kwargs).fit(evidence, y)
        proba = model.predict_proba(evidence)
        np.testing.assert_allclose(proba.sum(1), 1.0)
        # backoff: the panel's mean z for "c" (~0.9 on texts of class c) labels them c; the pooled model
        # reads each label's own evidence, so the LLMs' "c" reaches it without a backoff
        if backoff or learner == "pooled":
            assert (model.predict(evidence)[gold == 2] == 2).all()
        else:
            assert (proba[:, 2] == 0).all()
            assert not (model.predict(evidence) == 2).any()


def test_single_seed_class_does_not_crash():
    evidence, gold = synthetic_panel(5, 0)
    y = unlabeled(len(gold))
    y[:3] = 0
    proba = MoLAM(meta_learner="logistic", unseen_class_backoff=False).fit(evidence, y).predict_proba(evidence)
    np.testing.assert_allclose(proba, np.tile([1.0, 0.0, 0.0], (len(gold), 1)))
    # the pooled model (the default) still hears the LLMs on the labels nobody seeded
    pooled = MoLAM(unseen_class_backoff=False).fit(evidence, y)
    np.testing.assert_allclose(pooled.predict_proba(evidence).sum(axis=1), 1.0)
    assert (pooled.predict(evidence)[:3] == 0).all() and (pooled.predict(evidence)[gold == 1] == 1).mean() > 0.5


def test_self_training_adds_pseudo_labels_only_above_sigma():
    evidence, gold = synthetic_panel(20, 15)
    y = unlabeled(len(gold))
    seeds = np.concatenate([np.arange(0, 10), np.arange(20, 30), np.arange(40, 50)])
    y[seeds] = gold[seeds]
    sigma = 0.9
    # With one round, the texts added are exactly those the seed-only model (MoL) puts above sigma.
    first_model = MoL(C=1.0, sigma=sigma).fit(evidence, y)
    above = first_model.predict_proba(evidence).max(1) > sigma
    molam = MoLAM(C=1.0, sigma=sigma, max_self_training_rounds=1).fit(evidence, y)
    np.testing.assert_array_equal(molam.pseudo_labeled_, above & (y == -1))
    # the clear unlabeled texts pass sigma, the ambiguous (uniform z) ones do not
    clear_unlabeled = np.setdiff1d(np.arange(60), seeds)
    assert molam.pseudo_labeled_[clear_unlabeled].all()
    assert not molam.pseudo_labeled_[60:].any()
    np.testing.assert_array_equal(molam.transduction_[clear_unlabeled], gold[clear_unlabeled])
    np.testing.assert_array_equal(molam.transduction_[60:], -1)
    # seeds keep their labels and are never "pseudo-labeled"
    assert not molam.pseudo_labeled_[seeds].any()
    np.testing.assert_array_equal(molam.transduction_[seeds], gold[seeds])
    # a threshold above every probability adds nothing
    strict = MoLAM(C=1.0, sigma=0.999999999).fit(evidence, y)
    assert not strict.pseudo_labeled_.any()
    assert MoL(C=1.0).fit(evidence, y).n_self_training_rounds_ == 0


# -- honest estimate, construction by name, bad input -----------------------------------------


class _RecordingVote(MajorityVote):
    seen: list = []

    def fit(self, evidence, y):
        _RecordingVote.seen.append(np.array(y))
        return super().fit(evidence, y)


def test_cross_validated_accuracy_hides_held_out_labels():
    evidence, gold = synthetic_panel(10, 0)
    y = unlabeled(len(gold))
    y[::3] = gold[::3]
    _RecordingVote.seen = []
    mean, std = cross_validated_accuracy(_RecordingVote(), evidence, y, n_splits=5)
    assert len(_RecordingVote.seen) == 5
    hidden = np.zeros(len(y), dtype=int)
    for fold_y in _RecordingVote.seen:
        newly_hidden = (fold_y == -1) & (y != -1)
        hidden += newly_hidden
        np.testing.assert_array_equal(fold_y[fold_y != -1], y[fold_y != -1])
    np.testing.assert_array_equal(hidden, (y != -1).astype(int))  # each seed held out exactly once
    assert mean == 1.0 and std == 0.0  # the synthetic panel's vote is always right


def test_make_annotator_names():
    assert isinstance(make_annotator("molam"), MoLAM) and not isinstance(make_annotator("molam"), MoL)
    assert isinstance(make_annotator("mol"), MoL)
    assert make_annotator("molam-paper").recipe == "paper"
    assert make_annotator("molam").wants_text_member() and not make_annotator("molam-paper").wants_text_member()
    assert not make_annotator("molam-llm-only").wants_text_member() and not make_annotator("mol-llm-only").wants_text_member()
    assert make_annotator("text-classifier").model == "text-classifier"
    assert isinstance(make_annotator("vote"), MajorityVote)
    assert isinstance(make_annotator("mean"), MeanProbability)
    single = make_annotator("llm:yi:votes")
    assert (single.model, single.use) == ("yi", "votes")
    assert make_annotator("llm:2").model == 2
    with pytest.raises(AnnotationError, match="unknown annotator"):
        make_annotator("oracle")


def test_bad_input_errors():
    evidence, gold = synthetic_panel(5, 0)
    with pytest.raises(AnnotationError, match="one label index per text"):
        MoLAM().fit(evidence, gold[:-1])
    with pytest.raises(AnnotationError, match="not a label index"):
        MoLAM().fit(evidence, np.full(len(gold), 7))
    with pytest.raises(AnnotationError, match="needs seed labels"):
        MoLAM().fit(evidence, unlabeled(len(gold)))
    with pytest.raises(AnnotationError, match="not fitted"):
        MoLAM().predict_proba(evidence)
    with pytest.raises(AnnotationError, match="no LLM named"):
        SingleLLM("gpt").fit(evidence, gold)
    with pytest.raises(AnnotationError, match="unknown MoLAM recipe"):
        MoLAM(recipe="magic").fit(evidence, gold)
    with pytest.raises(AnnotationError, match="PanelEvidence"):
        MoLAM().fit(np.zeros((15, 12)), gold)


# -- real evidence ----------------------------------------------------------------------------


def test_molam_beats_vote_on_real_trec_evidence(trec):
    """50 random seed labels (the benchmark's first seed set), accuracy on the other 5,402 texts."""
    n = trec.evidence.n_texts
    seeds = np.random.default_rng(0).choice(n, 50, replace=False)
    y = unlabeled(n)
    y[seeds] = trec.gold[seeds]
    evaluate = y == -1

    def accuracy(model):
        return (model.fit(trec.evidence, y).predict(trec.evidence)[evaluate] == trec.gold[evaluate]).mean()

    molam, vote = accuracy(MoLAM()), accuracy(MajorityVote())
    assert molam > vote + 0.03, (molam, vote)


def test_paper_recipe_runs_real_xgboost_on_trec(trec):
    """The reference recipe with real XGBoost (fewer trees and rounds to keep the test quick)."""
    n = trec.evidence.n_texts
    seeds = np.random.default_rng(1).choice(n, 50, replace=False)
    y = unlabeled(n)
    y[seeds] = trec.gold[seeds]
    model = MoLAM(recipe="paper", n_estimators=100, max_self_training_rounds=3).fit(trec.evidence, y)
    assert model.pseudo_labeled_.sum() > 100
    evaluate = y == -1
    accuracy = (model.predict(trec.evidence)[evaluate] == trec.gold[evaluate]).mean()
    assert accuracy > 0.7


# -- honest estimates: intervals, warnings, few seeds ---------------------------------------------


def test_estimates_warn_about_a_panel_at_chance_and_one_label_for_everything():
    from mollia_core.annotation import MajorityClass, estimate_accuracy

    rng = np.random.default_rng(0)
    n = 200
    gold = rng.choice(3, n, p=[0.6, 0.2, 0.2])
    z = rng.dirichlet(np.ones(3), size=(n, 2))  # m0: noise
    z[:, 1] = [0.05, 0.9, 0.05]  # m1: 'b' for every text
    c = np.zeros_like(z)
    c[np.arange(n), 0, z[:, 0].argmax(1)] = 1.0
    c[:, 1, 1] = 1.0
    evidence = panel(z.tolist(), c.tolist())
    y = unlabeled(n)
    y[:50] = gold[:50]
    estimates = estimate_accuracy({"MoLAM": MoLAM()}, evidence, y)
    assert estimates.n_seeds == 50 and estimates.n_folds == 5
    assert set(estimates.methods) == {"MoLAM", "majority class"}
    molam = estimates.methods["MoLAM"]
    assert molam.low <= molam.accuracy <= molam.high and molam.n == 50
    majority = estimates.methods["majority class"]
    assert majority.accuracy == pytest.approx((gold[:50] == MajorityClass().fit(evidence, y).majority_).mean())
    text = "\n".join(estimates.warnings)
    assert "MoLAM (" in text and "is not clearly better than always answering 'a'" in text
    assert "m1 answered 'b' for all 200 texts it answered." in text
    assert "m0 is at chance on the seeds" in text and "m1 is at chance on the seeds" in text
    again = type(estimates).from_dict(estimates.to_dict())
    assert again == estimates


def test_estimates_do_not_warn_about_a_good_panel():
    from mollia_core.annotation import estimate_accuracy

    evidence, gold = synthetic_panel(30, 0)
    y = unlabeled(len(gold))
    y[::3] = gold[::3]
    estimates = estimate_accuracy({"MoLAM": MoLAM()}, evidence, y)
    assert estimates.methods["MoLAM"].accuracy > 0.9 and estimates.warnings == ()


def test_fewer_than_five_seeds_fit_and_say_no_estimate_is_possible():
    from mollia_core.annotation import estimate_accuracy

    evidence, gold = synthetic_panel(10, 0)
    y = unlabeled(len(gold))
    y[[0, 10, 20]] = gold[[0, 10, 20]]
    model = MoLAM().fit(evidence, y)  # fits on what there is
    assert (model.predict(evidence) == gold).mean() > 0.9
    estimates = estimate_accuracy({"MoLAM": MoLAM()}, evidence, y)
    assert estimates.methods == {} and estimates.n_folds == 0
    assert estimates.warnings[0] == (
        "Only 3 seed labels: no estimate of accuracy is possible; label at least 2 more "
        "(about 50 give a useful estimate)."
    )
    mean, _ = cross_validated_accuracy(MoLAM(), evidence, y)  # leave-one-out with 3 seeds
    assert 0.0 <= mean <= 1.0
    y[[10, 20]] = -1
    with pytest.raises(AnnotationError, match="at least 2 seed labels"):
        cross_validated_accuracy(MoLAM(), evidence, y)


def test_the_pooled_meta_learner_trusts_the_member_that_is_right():
    # 5 labels, 40 seeds: LLM 1 names the right label, LLMs 0 and 2 a random one. One weight per member,
    # shared by the labels, learns that from few seeds where a per-label logistic regression cannot.
    from mollia_core.annotation import PooledLogit, molam_features

    rng = np.random.default_rng(0)
    n, k = 400, 5
    gold = rng.integers(0, k, n)
    said = np.stack([rng.integers(0, k, n), gold, rng.integers(0, k, n)], axis=1)
    z = np.full((n, 3, k), 0.02)
    z[np.arange(n)[:, None], np.arange(3)[None, :], said] = 0.92
    evidence = PanelEvidence(tuple("abcde"), ("m0", "m1", "m2"), z, z.copy())
    X = molam_features(evidence, "log")
    pooled = PooledLogit(k).fit(X[:40], gold[:40])
    assert (pooled.predict_proba(X[40:]).argmax(1) == gold[40:]).mean() > 0.95
    log_z_weights = pooled.coef_[:3]
    assert log_z_weights.argmax() == 1 and log_z_weights[1] > 2 * np.abs(log_z_weights[[0, 2]]).max()
    np.testing.assert_allclose(pooled.predict_proba(X).sum(axis=1), 1.0)
