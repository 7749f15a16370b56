"""Query strategies behind one interface, small-text style.

Every strategy answers ``query(learner, texts, pool, labeled, n, random_state)`` with ``n`` indices
into ``texts``, a subset of ``pool``, in the order chosen. The strategies of the paper:

- :class:`RandomSampling`
- :class:`MaxEntropy` — highest predictive entropy
- :class:`Margin` — smallest gap between the two most probable labels
- :class:`CoreSet` — greedy k-center on the learner's embeddings, the labeled texts as initial centers
  (Sener & Savarese 2018, "Active learning for convolutional neural networks: a core-set approach")
- :class:`BEMPS` — expected change of a strictly proper score (Brier: CoreMSE), with diversity by
  k-means (Tan, Du & Buntine 2021, "Diversity enhanced active learning with strictly proper scoring
  rules", NeurIPS)
- :class:`NoiseStability` — how much the predictions move under small weight perturbations, picked
  diverse by k-center (Li et al. 2024, "Deep active learning with noise stability", AAAI)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from .learner import Learner

__all__ = [
    "BEMPS",
    "STRATEGIES",
    "CoreSet",
    "Margin",
    "MaxEntropy",
    "NoiseStability",
    "QueryError",
    "QueryStrategy",
    "RandomSampling",
    "k_center_greedy",
    "make_strategy",
]


class QueryError(ValueError):
    """A query that cannot be answered as asked (pool too small, bad indices, unknown strategy)."""


class QueryStrategy(ABC):
    """Chooses which unlabeled texts to label next."""

    name: str

    def query(
        self,
        learner: Learner,
        texts: Sequence[str],
        pool: np.ndarray,
        labeled: np.ndarray,
        n: int,
        random_state: int | np.random.Generator | None = None,
    ) -> np.ndarray:
        """``n`` indices into ``texts``, all from ``pool`` (the unlabeled candidates), in choice order.

        ``labeled`` are the indices already labeled (CoreSet's initial centers); ``learner`` is the
        current AL model, fitted on them (Random needs none).
        """
        pool = np.asarray(pool, dtype=np.int64).ravel()
        labeled = np.asarray(labeled, dtype=np.int64).ravel()
        if n < 1:
            raise QueryError(f"asked for {n} texts: the batch size must be at least 1")
        if n > len(pool):
            raise QueryError(f"asked for {n} texts but the pool holds only {len(pool)}: lower the batch size")
        if len(np.unique(pool)) != len(pool):
            raise QueryError("the pool lists the same text twice")
        for name, indices in (("pool", pool), ("labeled", labeled)):
            if len(indices) and (indices.min() < 0 or indices.max() >= len(texts)):
                raise QueryError(f"{name} holds indices outside the {len(texts)} texts")
        chosen = np.asarray(self._select(learner, texts, pool, labeled, n, np.random.default_rng(random_state)))
        return pool[chosen]

    @abstractmethod
    def _select(self, learner, texts, pool, labeled, n, rng: np.random.Generator) -> np.ndarray:
        """``n`` distinct positions into ``pool``."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def _subset(texts: Sequence[str], indices: np.ndarray) -> list[str]:
    return [texts[i] for i in indices]


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` highest scores, highest first (ties: lower position first)."""
    return np.argsort(-scores, kind="stable")[:n]


class RandomSampling(QueryStrategy):
    """Uniformly at random, without replacement."""

    name = "random"

    def _select(self, learner, texts, pool, labeled, n, rng):
        return rng.choice(len(pool), size=n, replace=False)


class MaxEntropy(QueryStrategy):
    """Highest entropy of the predicted label distribution."""

    name = "max_entropy"

    def _select(self, learner, texts, pool, labeled, n, rng):
        probs = np.clip(learner.predict_proba(_subset(texts, pool)), 1e-12, 1.0)
        return _top(-(probs * np.log(probs)).sum(axis=1), n)


class Margin(QueryStrategy):
    """Smallest margin between the most and second most probable labels."""

    name = "margin"

    def _select(self, learner, texts, pool, labeled, n, rng):
        probs = np.sort(learner.predict_proba(_subset(texts, pool)), axis=1)
        return _top(-(probs[:, -1] - probs[:, -2]), n)


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, (len(a), len(b))."""
    return np.maximum((a**2).sum(axis=1)[:, None] - 2.0 * a @ b.T + (b**2).sum(axis=1)[None, :], 0.0)


def _min_sq_distances(points: np.ndarray, centers: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Squared Euclidean distance of each point to its nearest center (centers in chunks)."""
    best = np.full(len(points), np.inf)
    for start in range(0, len(centers), chunk):
        best = np.minimum(best, _sq_distances(points, centers[start : start + chunk]).min(axis=1))
    return best


def k_center_greedy(points: np.ndarray, n: int, centers: np.ndarray | None = None) -> np.ndarray:
    """Greedy k-center: ``n`` times take the point farthest from every center so far.

    ``centers`` are the initial centers (CoreSet: the labeled texts); None starts from the origin, as
    NoiseStability does (its first pick is the point of largest norm). Returns positions in ``points``.
    """
    points = np.asarray(points, dtype=np.float64)
    if centers is None or len(centers) == 0:
        min_d2 = (points**2).sum(axis=1)
    else:
        min_d2 = _min_sq_distances(points, np.asarray(centers, dtype=np.float64))
    chosen = np.empty(n, dtype=np.int64)
    for i in range(n):
        pick = int(np.argmax(min_d2))
        chosen[i] = pick
        min_d2 = np.minimum(min_d2, ((points - points[pick]) ** 2).sum(axis=1))
        min_d2[chosen[: i + 1]] = -1.0  # never again, even among duplicate points
    return chosen


class CoreSet(QueryStrategy):
    """Greedy k-center on ``learner.embed`` with the labeled texts as the initial centers.

    Sener & Savarese 2018. With nothing labeled yet, the first center is a random pool text.
    """

    name = "coreset"

    def _select(self, learner, texts, pool, labeled, n, rng):
        embeddings = learner.embed(_subset(texts, np.concatenate([pool, labeled])))
        candidates, centers = embeddings[: len(pool)], embeddings[len(pool) :]
        if len(centers):
            return k_center_greedy(candidates, n, centers)
        first = int(rng.integers(len(pool)))
        rest = k_center_greedy(candidates, n, candidates[[first]])
        return np.concatenate([[first], rest[rest != first][: n - 1]])


class NoiseStability(QueryStrategy):
    """Li et al. 2024 (AAAI), "Deep active learning with noise stability".

    The learner's weights get ``n_samples`` Gaussian perturbations of relative norm ``noise_scale``
    (default 0.001, the paper's). For each text the change of its predicted distribution under each
    perturbation, divided by the norm of the unperturbed prediction, is concatenated into one vector;
    greedy k-center from the origin then takes the least stable text first and keeps the batch
    diverse in how the predictions move.
    """

    name = "noise_stability"

    def __init__(self, n_samples: int = 30, noise_scale: float = 1e-3):
        self.n_samples = n_samples
        self.noise_scale = noise_scale

    def _select(self, learner, texts, pool, labeled, n, rng):
        pool_texts = _subset(texts, pool)
        probs = learner.predict_proba(pool_texts)
        perturbed = learner.predict_proba_perturbed(
            pool_texts, self.n_samples, self.noise_scale, int(rng.integers(2**31))
        )
        change = (perturbed - probs[None]) / np.linalg.norm(probs, axis=1)[None, :, None]  # (S, m, K)
        features = change.transpose(1, 0, 2).reshape(len(pool), -1)
        return k_center_greedy(features, n)


def bemps_core_mse(posterior: np.ndarray, reference: np.ndarray, chunk: int = 256) -> np.ndarray:
    """BEMPS' CoreMSE matrix (Tan et al. 2021): ``rr[x, x']``, the expected Brier-score change at x'.

    ``posterior`` (m, E, K): p(y | theta_e, x) for the candidates x under E posterior samples;
    ``reference`` (r, E, K): the same for the texts x' the score is estimated on. With
    p(theta | L) uniform, observing label y at x reweights the samples to
    ``w(theta | x, y) ∝ p(y | theta, x)``, the predictive at x' becomes
    ``q(. | x') = sum_theta w(theta | x, y) p(. | theta, x')``, and

        rr[x, x'] = sum_y p(y | x) * sum_theta ||p(. | theta, x') - q(. | x')||^2 / r

    with ``p(y | x)`` the mean over samples. The squared norm is expanded so no (m, K, r, E, K)
    tensor is ever built.
    """
    m, e, k = posterior.shape
    sample_sq = (reference**2).sum(axis=(1, 2))  # (r,)  sum_theta ||p_theta(x')||^2
    summed = reference.sum(axis=1)  # (r, K)  sum_theta p_theta(x')
    cross = np.einsum("rek,rk->re", reference, summed)  # (r, E)
    gram = np.einsum("rek,rfk->ref", reference, reference).reshape(len(reference), e * e)  # (r, E*E)
    out = np.empty((m, len(reference)))
    for start in range(0, m, chunk):
        p = posterior[start : start + chunk]  # (c, E, K)
        weights = p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)  # (c, E, K): w(theta | x, y=k)
        w = weights.transpose(0, 2, 1)  # (c, K, E)
        ww = np.einsum("cke,ckf->ckef", w, w).reshape(len(p), k, e * e)
        core = sample_sq[None, None, :] - 2.0 * (w @ cross.T) + e * (ww @ gram.T)  # (c, K, r)
        out[start : start + chunk] = np.einsum("ck,ckr->cr", p.mean(axis=1), core) / len(reference)
    return out


class BEMPS(QueryStrategy):
    """Tan, Du & Buntine 2021 (NeurIPS), "Diversity enhanced active learning with strictly proper
    scoring rules": CoreMSE in its batch (diversity-enhanced) form.

    Posterior samples theta are ``n_samples`` weight perturbations of the learner
    (``predict_proba_perturbed``; the paper used an ensemble of 5). Each candidate x gets the vector
    ``rr[x, :]`` of expected Brier-score changes over ``reference_fraction`` of the pool (at most
    ``max_reference`` texts) drawn at random (:func:`bemps_core_mse`); the ``top_fraction`` of the pool
    with the largest total goes on; their L2-normalised vectors are clustered by k-means into ``n``
    clusters (k-means++, one initialisation), and the text nearest each centroid is taken. Defaults
    follow the paper's code (0.3, 0.5); ``max_reference`` bounds the cost on a CPU. Should two
    centroids share a nearest text, the highest-scoring unchosen candidates fill the batch.
    """

    name = "bemps"

    def __init__(
        self,
        n_samples: int = 5,
        noise_scale: float = 0.1,
        reference_fraction: float = 0.3,
        max_reference: int = 1000,
        top_fraction: float = 0.5,
    ):
        self.n_samples = n_samples
        self.noise_scale = noise_scale
        self.reference_fraction = reference_fraction
        self.max_reference = max_reference
        self.top_fraction = top_fraction

    def _select(self, learner, texts, pool, labeled, n, rng):
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        posterior = learner.predict_proba_perturbed(
            _subset(texts, pool), self.n_samples, self.noise_scale, int(rng.integers(2**31))
        ).transpose(1, 0, 2)  # (m, E, K)
        m = len(pool)
        n_reference = int(np.clip(round(self.reference_fraction * m), 1, self.max_reference))
        reference = posterior[np.sort(rng.choice(m, size=n_reference, replace=False))]
        rr = bemps_core_mse(posterior, reference)
        scores = rr.sum(axis=1)
        candidates = _top(scores, max(n, int(round(self.top_fraction * m))))
        if n == len(candidates):
            return candidates
        vectors = rr[candidates] / np.clip(np.linalg.norm(rr[candidates], axis=1, keepdims=True), 1e-12, None)
        # One thread: on a busy 2-core CPU, k-means on 2 threads ran 4x slower here (waiting for the other).
        with threadpool_limits(1):
            kmeans = KMeans(n_clusters=n, n_init=1, random_state=int(rng.integers(2**31))).fit(vectors)
        nearest = _sq_distances(kmeans.cluster_centers_, vectors).argmin(axis=1)
        chosen = list(dict.fromkeys(candidates[nearest].tolist()))
        for position in candidates:  # already in descending score order
            if len(chosen) == n:
                break
            if position not in chosen:
                chosen.append(int(position))
        return np.asarray(chosen)


STRATEGIES: dict[str, type[QueryStrategy]] = {
    cls.name: cls for cls in (RandomSampling, MaxEntropy, Margin, CoreSet, BEMPS, NoiseStability)
}


_ALIASES = {"entropy": "max_entropy", "kcenter": "coreset"}


def _normalize_name(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def make_strategy(name: str, **kw) -> QueryStrategy:
    """The strategy called ``name`` (a key of :data:`STRATEGIES` or the class name, any case)."""
    wanted = _normalize_name(name)
    wanted = _normalize_name(_ALIASES.get(wanted, wanted))
    for key, cls in STRATEGIES.items():
        if wanted in {_normalize_name(key), _normalize_name(cls.__name__)}:
            try:
                return cls(**kw)
            except TypeError as error:
                raise QueryError(f"bad settings for the {key} strategy: {error}") from None
    raise QueryError(f"unknown query strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
