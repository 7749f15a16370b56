"""Each query strategy's choice on a small constructed pool.

The strategies are unit-tested against a tiny fake learner with fixed probabilities, embeddings and
perturbed predictions (the logic around the model, not the model); the last test runs every strategy
with the real FastLearner on real TREC texts.
"""

from __future__ import annotations

import numpy as np
import pytest

from mollia_core.query import (
    BEMPS,
    STRATEGIES,
    CoreSet,
    Margin,
    MaxEntropy,
    NoiseStability,
    QueryError,
    RandomSampling,
    bemps_core_mse,
    k_center_greedy,
    make_strategy,
)


class FakeLearner:
    """Fixed outputs per text; texts are "t0", "t1", ... so a text names its row."""

    def __init__(self, probs, embeddings=None, perturbed=None):
        self.probs = np.asarray(probs, dtype=float)
        self.embeddings = None if embeddings is None else np.asarray(embeddings, dtype=float)
        self.perturbed = None if perturbed is None else np.asarray(perturbed, dtype=float)
        self.n_labels = self.probs.shape[1]
        self.calls = []

    @staticmethod
    def rows(texts):
        return [int(t[1:]) for t in texts]

    def predict_proba(self, texts):
        return self.probs[self.rows(texts)]

    def embed(self, texts):
        return self.embeddings[self.rows(texts)]

    def predict_proba_perturbed(self, texts, n_samples, noise_scale, random_state):
        self.calls.append((n_samples, noise_scale))
        return self.perturbed[:n_samples, self.rows(texts)]


def texts_for(n):
    return [f"t{i}" for i in range(n)]


def random_learner(n=30, k=3, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k), size=n)
    perturbed = np.clip(probs[None] + rng.normal(0, 0.05, size=(40, n, k)), 1e-3, None)
    return FakeLearner(probs, rng.normal(size=(n, 4)), perturbed / perturbed.sum(axis=2, keepdims=True))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_returns_n_distinct_pool_indices(name):
    learner, texts = random_learner(), texts_for(30)
    pool, labeled = np.arange(5, 30), np.arange(5)
    chosen = make_strategy(name).query(learner, texts, pool, labeled, 7, random_state=3)
    assert len(chosen) == 7 and len(set(chosen.tolist())) == 7
    assert set(chosen.tolist()) <= set(pool.tolist())
    again = make_strategy(name).query(learner, texts, pool, labeled, 7, random_state=3)
    np.testing.assert_array_equal(chosen, again)  # reproducible with the same random_state
    everything = make_strategy(name).query(learner, texts, pool, labeled, len(pool), random_state=3)
    assert sorted(everything.tolist()) == pool.tolist()


def test_random_sampling_depends_on_the_seed():
    texts, pool = texts_for(100), np.arange(100)
    a = RandomSampling().query(None, texts, pool, np.arange(0), 10, random_state=1)
    b = RandomSampling().query(None, texts, pool, np.arange(0), 10, random_state=2)
    assert set(a.tolist()) != set(b.tolist())


def test_max_entropy_and_margin_pick_their_own_most_uncertain_text():
    probs = [
        [0.90, 0.05, 0.05],
        [0.45, 0.45, 0.10],  # smallest margin (0.00), entropy 0.95
        [0.34, 0.33, 0.33],  # nearly uniform: highest entropy (1.10), margin 0.01
        [0.70, 0.20, 0.10],
    ]
    learner, texts, pool = FakeLearner(probs), texts_for(4), np.arange(4)
    assert MaxEntropy().query(learner, texts, pool, np.arange(0), 1).tolist() == [2]
    assert Margin().query(learner, texts, pool, np.arange(0), 1).tolist() == [1]
    assert MaxEntropy().query(learner, texts, pool, np.arange(0), 4).tolist() == [2, 1, 3, 0]
    # indices are into texts, not positions in the pool
    assert Margin().query(learner, texts, np.array([3, 0, 1]), np.arange(0), 1).tolist() == [1]


def test_coreset_picks_the_far_point_then_the_next_uncovered_one():
    embeddings = [
        [0.0, 0.0], [0.1, 0.0],  # labeled: the initial centers
        [0.2, 0.1], [0.0, 0.3],  # pool texts already covered
        [10.0, 10.0],  # far from everything
        [-8.0, 0.0],  # far from the labeled, and from the first pick
        [9.5, 10.0],  # far from the labeled but next to [10, 10]
    ]
    learner, texts = FakeLearner(np.full((7, 2), 0.5), embeddings), texts_for(7)
    pool, labeled = np.arange(2, 7), np.arange(2)
    assert CoreSet().query(learner, texts, pool, labeled, 1).tolist() == [4]
    assert CoreSet().query(learner, texts, pool, labeled, 2).tolist() == [4, 5]
    # nothing labeled: a random first center, then k-center from it
    chosen = CoreSet().query(learner, texts, np.arange(7), np.arange(0), 3, random_state=0)
    assert len(set(chosen.tolist())) == 3 and len({4, 6} & set(chosen.tolist())) >= 1


def test_k_center_greedy_from_the_origin_takes_the_largest_norm_first():
    points = np.array([[0.1, 0.0], [3.0, 0.0], [0.0, 2.0], [2.9, 0.2]])
    # the origin stays a center: [0.1, 0] (0.1 from it) is better covered than [2.9, 0.2] (0.22 from [3, 0])
    assert k_center_greedy(points, 3).tolist() == [1, 2, 3]
    assert k_center_greedy(points, 2, centers=np.array([[3.0, 0.0]])).tolist() == [2, 0]


def test_noise_stability_picks_the_text_whose_prediction_flips():
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8], [0.6, 0.4]])
    rng = np.random.default_rng(0)
    perturbed = np.repeat(probs[None], 10, axis=0) + rng.normal(0, 1e-4, size=(10, 4, 2))
    perturbed[::2, 3] = [0.35, 0.65]  # text 3 flips from label 0 to label 1 under half the perturbations
    learner, texts = FakeLearner(probs, perturbed=perturbed), texts_for(4)
    strategy = NoiseStability(n_samples=10, noise_scale=1e-3)
    assert strategy.query(learner, texts, np.arange(4), np.arange(0), 1, random_state=0).tolist() == [3]
    assert learner.calls == [(10, 1e-3)]
    # text 1 is the most uncertain one (margin) but perfectly stable: NoiseStability still prefers 3
    assert Margin().query(learner, texts, np.arange(4), np.arange(0), 1).tolist() == [1]


def _bemps_by_the_reference_formula(posterior, reference):
    """The CoreMSE of Tan et al.'s code, term by term (small arrays only)."""
    m, e, k = posterior.shape
    rr = np.zeros((m, len(reference)))
    for x in range(m):
        p_y = posterior[x].mean(axis=0)
        for y in range(k):
            w = posterior[x, :, y] / posterior[x, :, y].sum()
            for r, ref in enumerate(reference):
                q = w @ ref  # updated predictive at x'
                rr[x, r] += p_y[y] * ((ref - q) ** 2).sum()
    return rr / len(reference)


def test_bemps_core_mse_matches_the_reference_formula():
    rng = np.random.default_rng(1)
    posterior = rng.dirichlet(np.ones(3), size=(7, 4))  # (m=7, E=4, K=3)
    reference = posterior[[0, 2, 5]]
    np.testing.assert_allclose(bemps_core_mse(posterior, reference, chunk=3), _bemps_by_the_reference_formula(posterior, reference))


def test_bemps_picks_uncertain_texts_and_keeps_the_batch_diverse():
    # 4 posterior samples (theta). Texts 0-3: every sample agrees. Texts 4-5 (kind A): samples {0, 1}
    # say label 0, samples {2, 3} label 1. Texts 6-7 (kind B): samples {0, 2} say label 1, {1, 3} label 2.
    sure = [0.96, 0.02, 0.02]
    a0, a1 = [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]
    b1, b2 = [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]
    per_text = [[sure] * 4] * 4 + [[a0, a0, a1, a1]] * 2 + [[b1, b2, b1, b2]] * 2
    perturbed = np.array(per_text).transpose(1, 0, 2)  # (S=4, n=8, K=3)
    learner = FakeLearner(perturbed.mean(axis=0), perturbed=perturbed)
    strategy = BEMPS(n_samples=4, reference_fraction=1.0, top_fraction=0.5)
    scores = bemps_core_mse(perturbed.transpose(1, 0, 2), perturbed.transpose(1, 0, 2)).sum(axis=1)
    assert scores[4:].min() > scores[:4].max()  # observing an uncertain text changes the score more
    chosen = strategy.query(learner, texts_for(8), np.arange(8), np.arange(0), 2, random_state=0).tolist()
    assert len({4, 5} & set(chosen)) == 1 and len({6, 7} & set(chosen)) == 1  # one of each kind


def test_make_strategy_names_and_errors():
    assert isinstance(make_strategy("random"), RandomSampling)
    assert isinstance(make_strategy("MaxEntropy"), MaxEntropy)
    assert isinstance(make_strategy("entropy"), MaxEntropy)
    assert isinstance(make_strategy("CoreSet"), CoreSet)
    assert isinstance(make_strategy("Noise-Stability", n_samples=5), NoiseStability)
    assert make_strategy("bemps", top_fraction=0.2).top_fraction == 0.2
    assert set(STRATEGIES) == {"random", "max_entropy", "margin", "coreset", "bemps", "noise_stability"}
    for key, cls in STRATEGIES.items():
        assert cls.name == key
    with pytest.raises(QueryError, match="unknown query strategy 'badge'"):
        make_strategy("badge")
    with pytest.raises(QueryError, match="bad settings for the margin"):
        make_strategy("margin", n_samples=3)


def test_query_input_errors():
    learner, texts = random_learner(), texts_for(30)
    with pytest.raises(QueryError, match="pool holds only 3"):
        MaxEntropy().query(learner, texts, np.arange(3), np.arange(0), 5)
    with pytest.raises(QueryError, match="at least 1"):
        MaxEntropy().query(learner, texts, np.arange(3), np.arange(0), 0)
    with pytest.raises(QueryError, match="outside the 30 texts"):
        MaxEntropy().query(learner, texts, np.array([1, 40]), np.arange(0), 1)
    with pytest.raises(QueryError, match="same text twice"):
        MaxEntropy().query(learner, texts, np.array([1, 1, 2]), np.arange(0), 1)


@pytest.mark.slow
def test_every_strategy_with_the_real_fast_learner_on_trec(trec, mollia_home):
    from mollia_core.learner import FastLearner

    texts, gold = list(trec.texts[:240]), trec.gold[:240]
    labeled, pool = np.arange(40), np.arange(40, 240)
    learner = FastLearner(len(trec.labels), random_state=0).fit([texts[i] for i in labeled], gold[labeled])
    chosen = {}
    for name in STRATEGIES:
        picked = make_strategy(name).query(learner, texts, pool, labeled, 20, random_state=0)
        assert len(set(picked.tolist())) == 20 and set(picked.tolist()) <= set(pool.tolist())
        chosen[name] = set(picked.tolist())
    probs = learner.predict_proba([texts[i] for i in pool])
    entropy = -(probs * np.log(probs)).sum(axis=1)
    picked_entropy = entropy[[int(np.flatnonzero(pool == i)[0]) for i in chosen["max_entropy"]]]
    assert picked_entropy.min() >= np.sort(entropy)[-20] - 1e-12  # exactly the 20 most uncertain
    assert chosen["random"] != chosen["max_entropy"] and chosen["coreset"] != chosen["max_entropy"]
