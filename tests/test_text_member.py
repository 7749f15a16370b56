"""The text member: features, cross-fitting without leaks, its place in the panel and in MoLAM."""

from __future__ import annotations

import numpy as np
import pytest

from mollia_core.annotation import MoLAM, SingleLLM, make_annotator
from mollia_core.evidence import PanelEvidence
from mollia_core.text_member import TEXT_MEMBER, TextClassifier, TextFeaturizer, TextMember, text_folds

TOPIC_WORDS = {
    0: ["goal", "match", "striker", "league", "coach", "stadium", "referee", "penalty"],
    1: ["oven", "flour", "recipe", "simmer", "garlic", "dough", "butter", "sauce"],
    2: ["rain", "forecast", "storm", "wind", "snow", "cloudy", "frost", "thunder"],
}


def topic_texts(n_per_class: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for label, words in TOPIC_WORDS.items():
        for i in range(n_per_class):
            texts.append(" ".join(rng.choice(words, 4)) + f" item {i} {label}x{i}")
            y.append(label)
    return texts, np.array(y)


def random_token_texts(n: int, seed: int = 0) -> list[str]:
    """Texts of unique random tokens: nothing in one text says anything about another's label."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return [" ".join("".join(rng.choice(letters, 9)) for _ in range(3)) for _ in range(n)]


def chance_panel(n: int, n_labels: int = 3, seed: int = 0) -> PanelEvidence:
    """Two LLMs whose evidence is noise: MoLAM can only learn from the text."""
    rng = np.random.default_rng(seed)
    z = rng.dirichlet(np.ones(n_labels), size=(n, 2))
    return PanelEvidence(labels=tuple("abc"[:n_labels]), models=("m0", "m1"), label_probs=z, vote_shares=z.copy())


def test_cross_fitting_cannot_leak_a_texts_own_label():
    # Unique random tokens with random labels: a model that saw a text's label scores it ~100 %
    # (it memorises the text's own n-grams); an honest out-of-fold probability is at chance.
    rng = np.random.default_rng(0)
    texts = random_token_texts(240)
    y = rng.integers(0, 3, len(texts))
    member = TextMember(texts, embeddings=False, C=100.0)
    oof = member.cross_fitted_proba(y, 3)
    leaked = TextClassifier(3, C=100.0, embeddings=False).fit(texts, y).predict_proba(texts)
    assert (leaked.argmax(1) == y).mean() > 0.95  # the leak this protocol must not have
    assert (oof.argmax(1) == y).mean() < 0.45  # chance is 1/3
    assert np.allclose(oof.sum(axis=1), 1.0)
    # Half labeled: unlabeled texts get the model fitted on all labeled ones, labeled ones stay out-of-fold.
    half = y.copy()
    half[120:] = -1
    partial = member.cross_fitted_proba(half, 3)
    assert (partial[:120].argmax(1) == y[:120]).mean() < 0.45
    assert np.allclose(partial.sum(axis=1), 1.0)  # each unlabeled text's own distribution over the 3 labels


def test_unlabeled_texts_get_the_probabilities_of_the_model_fitted_on_every_label():
    # The unlabeled texts are predicted through the full-width weights (no kernel); that must give
    # exactly what the kernel path gives, row by row, with more than two labels.
    from mollia_core.text_member import _fit_logistic, _predict_logistic, gram

    texts, y = topic_texts(12)
    seeds = y.copy()
    seeds[1::2] = -1
    member = TextMember(texts, embeddings=False, C=1.0)
    proba = member.cross_fitted_proba(seeds, 3)
    labeled, unlabeled = np.flatnonzero(seeds >= 0), np.flatnonzero(seeds < 0)
    X = member.features
    model = _fit_logistic(gram(X[labeled]), seeds[labeled], 1.0)
    expected = _predict_logistic(model, gram(X[unlabeled], X[labeled]), 3)
    np.testing.assert_allclose(proba[unlabeled], expected, atol=1e-6)
    assert np.allclose(proba.sum(axis=1), 1.0) and (proba[unlabeled].argmax(1) == y[unlabeled]).mean() >= 0.9


def test_text_classifier_is_sklearn_style_and_covers_absent_classes():
    texts, y = topic_texts(10)
    train = y != 2  # class 2 never seen in training
    model = TextClassifier(3, embeddings=False, random_state=0).fit([t for t, k in zip(texts, train) if k], y[train])
    proba = model.predict_proba(texts)
    assert proba.shape == (30, 3) and np.allclose(proba.sum(1), 1.0)
    assert (proba[:, 2] == 0).all()
    assert (model.predict(texts)[train] == y[train]).mean() == 1.0
    assert model.C_ in model.C_grid
    fresh_texts, fresh_y = topic_texts(5, seed=1)
    assert (TextClassifier(3, embeddings=False).fit(texts, y).predict(fresh_texts) == fresh_y).mean() >= 0.9


def test_featurizer_blocks_have_unit_norm_and_read_no_labels():
    texts, _ = topic_texts(5)
    features = TextFeaturizer(embeddings=False).fit_transform(texts)
    word_and_char = features.multiply(features).sum(axis=1)
    np.testing.assert_allclose(np.asarray(word_and_char).ravel(), 2.0, rtol=1e-5)  # two unit-norm blocks
    unseen = TextFeaturizer(embeddings=False).fit(texts).transform(["zzzz qqqq"])
    assert unseen.nnz <= 2  # n-grams absent from the fitted texts are dropped (a space-padded "z"/"q" may remain)


def test_folds_are_stratified_where_possible_and_shrink_with_few_labels():
    y = np.repeat([0, 1], 10)
    folds = text_folds(y, 5, 0)
    assert len(folds) == 5 and all(np.bincount(y[test]).tolist() == [2, 2] for _, test in folds)
    assert len(text_folds(np.array([0, 1, 1]), 5, 0)) == 3
    assert text_folds(np.array([1]), 5, 0) == []


def test_text_member_joins_the_panel_but_not_the_negative_labels():
    texts, y = topic_texts(10)
    n = len(texts)
    z = np.full((n, 2, 3), 0.3)
    z[:, :, 2] = 0.0  # every LLM rules out label c: negative
    z[:10, 0, 1] = 0.0005  # label b below delta for m0 only on the first texts: not negative
    evidence = PanelEvidence(labels=("a", "b", "c"), models=("m0", "m1"), label_probs=z, vote_shares=z.copy())
    seeds = np.full(n, -1)
    seeds[::3] = y[::3]
    with_text = TextMember(texts, embeddings=False).add_to(evidence, seeds)
    assert with_text.models == ("m0", "m1", TEXT_MEMBER) and with_text.non_llm_members == (TEXT_MEMBER,)
    assert with_text.llm_only().models == ("m0", "m1")
    np.testing.assert_allclose(with_text.vote_shares[:, 2], with_text.label_probs[:, 2])  # c = its probabilities
    assert (with_text.no_label_share[:, 2] == 0).all()
    # The text member gives class c (seen in the seeds) probability > 0, yet c stays negative; and where
    # it gives a class ~0, the class does not become negative because of it.
    model = MoLAM().fit(with_text, seeds)
    negatives = model.negative_labels(with_text)
    assert negatives[:, 2].all() and not negatives[:, :2].any()
    # Added twice (new labels): replaced, not duplicated; a subset keeps the marking.
    again = TextMember(texts, embeddings=False).add_to(with_text, y)
    assert again.models.count(TEXT_MEMBER) == 1 and again.subset([0, 1]).non_llm_members == (TEXT_MEMBER,)


def test_molam_learns_from_the_text_where_the_llms_are_at_chance_and_the_switch_gives_the_paper_panel():
    texts, y = topic_texts(40)
    seeds = np.full(len(texts), -1)
    rng = np.random.default_rng(0)
    chosen = np.concatenate([rng.choice(np.flatnonzero(y == k), 8, replace=False) for k in range(3)])
    seeds[chosen] = y[chosen]
    others = seeds == -1
    evidence = TextMember(texts, embeddings=False).add_to(chance_panel(len(texts)), seeds)
    with_text = MoLAM(random_state=0).fit(evidence, seeds)
    assert with_text.uses_text_member_
    accuracy = (with_text.predict(evidence)[others] == y[others]).mean()
    alone = (SingleLLM(TEXT_MEMBER).fit(evidence, seeds).predict(evidence)[others] == y[others]).mean()
    for name in ("molam-llm-only", "molam-paper"):
        llm_only = make_annotator(name, random_state=0).fit(evidence, seeds)
        assert not llm_only.wants_text_member() and not llm_only.uses_text_member_
        llm_accuracy = (llm_only.predict(evidence)[others] == y[others]).mean()
        assert llm_accuracy < 0.55, name  # noise evidence: near chance (1/3)
    assert accuracy > 0.85 and alone > 0.85
    # LLM-only MoLAM on the evidence with the member equals MoLAM on the LLM evidence alone.
    np.testing.assert_allclose(
        MoLAM(use_text_member=False).fit(evidence, seeds).predict_proba(evidence),
        MoLAM().fit(evidence.llm_only(), seeds).predict_proba(evidence.llm_only()),
    )


@pytest.mark.slow
def test_text_member_with_the_real_encoder(mollia_home):
    texts, y = topic_texts(10)
    seeds = y.copy()
    seeds[1::2] = -1
    member = TextMember(texts)  # TF-IDF + MiniLM
    assert member.features.shape[1] > 384
    proba = member.cross_fitted_proba(seeds, 3)
    assert (proba[seeds == -1].argmax(1) == y[seeds == -1]).mean() >= 0.9


@pytest.mark.slow
def test_project_fit_with_text_member_and_with_fewer_than_five_seeds(tmp_path, monkeypatch, mollia_home, trec):
    from mollia_core.project import AnnotatorSettings, AnnotatorSpec, Project

    from project_helpers import trec_frame, trec_records

    monkeypatch.setenv("MOLLIA_PROJECTS_DIR", str(tmp_path / "projects"))
    project = Project.create("few seeds")
    project.set_dataset(trec_frame(trec, 120), "question", id_column="qid", label_column="category",
                        source_name="trec.csv")
    for model, records in trec_records(trec, 120, models=2).items():
        spec = AnnotatorSpec(kind="replay", model=model, path="trec.jsonl")
        project.set_panel(project.panel() + [spec])
        project.import_evidence_records(spec, records)
    project.take_seeds_from_column(3)
    report = project.fit_annotator()  # no AnnotationError: fitted on the 3 seeds
    assert report.n_seeds == 3 and report.uses_text_member and report.cv_accuracy == {}
    estimates = report.accuracy_estimates()
    assert estimates.methods == {}
    assert estimates.warnings[0].startswith("Only 3 seed labels: no estimate of accuracy is possible; label at least 2 more")
    assert len(project.annotation_frame()) == 120
    info = project.text_evidence(project.text_ids[0])
    assert info.models[-1] == TEXT_MEMBER and len(info.label_probs) == len(info.models)

    project.take_seeds_from_column(40)
    report = project.fit_annotator(AnnotatorSettings(random_state=1))
    assert {"MoLAM", "majority class", "text classifier", "majority vote"} <= set(report.cv_accuracy)
    estimate = report.accuracy_estimates().methods["MoLAM"]
    assert estimate.low <= estimate.accuracy <= estimate.high and estimate.n == 40
    paper = project.fit_annotator(AnnotatorSettings(method="molam-llm-only"))
    assert not paper.uses_text_member and "text classifier" not in paper.cv_accuracy
    assert TEXT_MEMBER not in project.text_evidence(project.text_ids[0]).models


def test_taught_member_cannot_leak_a_texts_own_label():
    # Every text has a label here (as when MoLAM labels the whole pool); unique random tokens, random
    # labels: a model trained on a text's own label would echo it, the cross-fitted one is at chance.
    rng = np.random.default_rng(1)
    texts = random_token_texts(300)
    labels = rng.integers(0, 3, len(texts))
    member = TextMember(texts, embeddings=False)
    taught = member.taught_proba(labels, np.ones(len(texts)), 3)
    echo = TextClassifier(3, C=1.0, embeddings=False).fit(texts, labels).predict_proba(texts)
    assert (echo.argmax(1) == labels).mean() > 0.9  # the leak the folds must prevent
    assert (taught.argmax(1) == labels).mean() < 0.45  # chance is 1/3
    np.testing.assert_allclose(taught.sum(axis=1), 1.0)


def test_co_training_teaches_the_member_what_molam_labels_and_keeps_the_seeds_out_of_their_own_scores():
    # Six seeds teach the text classifier little; one LLM that is right on most texts gives MoLAM
    # hundreds of labels to teach it with. The taught member is far better than the seeds-only one.
    rng = np.random.default_rng(2)
    vocabulary = random_token_texts(3 * 30, seed=5)  # 30 words per class: six seeds see few of them
    y = np.repeat([0, 1, 2], 80)
    texts = [" ".join(rng.choice(vocabulary[30 * k : 30 * (k + 1)], 2)) for k in y]
    n = len(texts)
    right = rng.random(n) < 0.8
    llm_label = np.where(right, y, (y + 1) % 3)
    z = np.full((n, 1, 3), 0.05)
    z[np.arange(n), 0, llm_label] = 0.9
    evidence = PanelEvidence(labels=("a", "b", "c"), models=("m0",), label_probs=z, vote_shares=z.copy())
    seeds = np.full(n, -1)
    chosen = np.concatenate([rng.choice(np.flatnonzero(y == k), 2, replace=False) for k in range(3)])
    seeds[chosen] = y[chosen]
    member = TextMember(texts, embeddings=False)
    seeds_only = member.add_to(evidence, seeds)
    model = MoLAM(random_state=0)
    panel = member.fit_annotator(model, evidence, seeds)
    assert panel.models == ("m0", TEXT_MEMBER)
    others = seeds == -1
    before = (seeds_only.label_probs[others, 1].argmax(1) == y[others]).mean()
    after = (panel.label_probs[others, 1].argmax(1) == y[others]).mean()
    assert after > before + 0.15 and after > 0.9
    assert (model.predict(panel)[others] == y[others]).mean() > right[others].mean()  # beyond the LLM alone
    # No rounds: the seeds-only member, as before co-training.
    plain = member.fit_annotator(MoLAM(random_state=0, text_member_rounds=0), evidence, seeds)
    np.testing.assert_allclose(plain.label_probs, seeds_only.label_probs)


def test_the_cross_validated_estimate_co_trains_inside_every_fold(monkeypatch):
    # A held-out seed's label must not reach the member that scores it: inside each fold the member is
    # taught with the fold's human labels only, the held-out seeds getting MoLAM's labels like any text.
    from mollia_core import annotation

    texts, y = topic_texts(20, seed=3)
    seeds = np.full(len(texts), -1)
    seeds[::4] = y[::4]
    member = TextMember(texts, embeddings=False)
    taught_with: list[np.ndarray] = []
    original = TextMember.fit_annotator

    def spy(self, model, evidence, fold_y, panel=None):
        taught_with.append(np.asarray(fold_y).copy())
        return original(self, model, evidence, fold_y, panel=panel)

    monkeypatch.setattr(TextMember, "fit_annotator", spy)
    labeled, predictions, fold_of = annotation.out_of_fold_predictions(
        {"MoLAM": MoLAM(random_state=0)}, chance_panel(len(texts)), seeds, n_splits=5, text_member=member
    )
    assert len(taught_with) == 5
    for fold, fold_y in enumerate(taught_with):
        held_out = labeled[fold_of == fold]
        assert (fold_y[held_out] == -1).all() and (fold_y[labeled[fold_of != fold]] >= 0).all()


def test_leaving_an_llm_out_co_trains_like_the_model_it_is_compared_with():
    from mollia_core.annotation import WithoutMember, fit_annotator, reads_text_member

    without = WithoutMember(MoLAM(random_state=0), "m0")
    assert reads_text_member(without) and without.text_member_rounds == MoLAM().text_member_rounds
    assert WithoutMember(MoLAM(text_member_rounds=0), "m0").text_member_rounds == 0
    texts, y = topic_texts(15, seed=4)
    seeds = np.full(len(texts), -1)
    seeds[::3] = y[::3]
    member = TextMember(texts, embeddings=False)
    evidence = chance_panel(len(texts))
    panel = fit_annotator(without, evidence, seeds, member)
    seeds_only = member.add_to(evidence, seeds)
    assert panel.models == seeds_only.models and not np.allclose(panel.label_probs, seeds_only.label_probs)
