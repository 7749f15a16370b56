"""The text itself as evidence: a linear text classifier trained on the human labels.

MoLAM as the paper defines it (Eq. 4) never sees the text, so where every LLM is weak 50 good seed
labels can end up worse than a plain text classifier trained on them. This module gives the panel
one more member, ``"text-classifier"``:

- :class:`TextFeaturizer`: sparse TF-IDF word 1-2-grams + char_wb 2-5-grams and the frozen
  all-MiniLM-L6-v2 embeddings (standardised), one sparse matrix whose three blocks have unit row
  norm each, so none dominates by scale. Shared with the AL model's fast mode
  (:class:`mollia_core.learner.FastLearner`).
- :class:`TextClassifier`: scikit-learn style (``fit`` / ``predict_proba``, ``random_state``),
  logistic regression on those features; C chosen by cross-validated log-loss on its own
  training labels.
- :class:`TextMember`: the classifier's probabilities *cross-fitted*, so no
  text is scored by a model that saw its own label: out-of-fold (5 folds, stratified where every
  class has enough labels) for the labeled texts, a model fitted on all labeled texts for the rest.
  The member joins :class:`~mollia_core.evidence.PanelEvidence` with z = those probabilities and
  c = the same probabilities: c is the share of sampled answers naming each label, and for a
  classifier that always names a label the expected share of answers drawn from its distribution
  is that distribution (no_label_share 0). It is marked as a non-LLM member, so it never counts
  for the negative labels y- (classes every *LLM* rules out).
- :meth:`TextMember.fit_annotator`: co-training. After MoLAM's first fit the member is retrained on
  MoLAM's own labels of every text (cross-fitted over all texts, 3 folds), MoLAM refitted with it,
  ``MoLAM.text_member_rounds`` times: 50 seeds teach a text classifier little, thousands of MoLAM
  labels teach it the dataset.

The n-gram counts of each text are computed once per process (the analysers are the slow part), so
re-fitting for new labels, or a fresh AL model every iteration, only re-weights cached counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold
from threadpoolctl import threadpool_limits

from .encoder import DEFAULT_BACKBONE, embed_texts
from .evidence.record import PanelEvidence

__all__ = [
    "TEXT_MEMBER",
    "TextClassifier",
    "TextFeaturizer",
    "TextMember",
    "cross_fitted_proba",
    "text_folds",
]

TEXT_MEMBER = "text-classifier"
UNLABELED = -1
DEFAULT_C_GRID = (1.0, 10.0, 100.0)
# Co-training the member on an annotator's labels (TextMember.taught_proba): folds and C, chosen
# on the label-quality benchmark (C in {1, 10, 100} tried; benchmarks/README.md, "Label quality").
TEACHING_FOLDS = 3
TEACHING_C = 1.0

# Hashed n-gram spaces: 2^20 columns each makes collisions rare; only the columns present in the
# texts a featurizer is fitted on are kept, so the models never see the full width.
_N_FEATURES = 2**20
_VECTORIZERS = {
    "word": HashingVectorizer(ngram_range=(1, 2), n_features=_N_FEATURES, alternate_sign=False, norm=None),
    "char": HashingVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), n_features=_N_FEATURES, alternate_sign=False, norm=None
    ),
}
_COUNT_CACHE: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {name: {} for name in _VECTORIZERS}
_COUNT_CACHE_TEXTS = 100_000  # beyond this many texts per block the cache starts afresh


def _hashed_counts(block: str, texts: Sequence[str]) -> sp.csr_matrix:
    """n-gram counts of ``texts`` in the hashed space of ``block``; each text is analysed once."""
    cache = _COUNT_CACHE[block]
    missing = [t for t in dict.fromkeys(texts) if t not in cache]
    if len(cache) + len(missing) > _COUNT_CACHE_TEXTS:
        cache.clear()
        missing = list(dict.fromkeys(texts))
    if missing:
        counts = _VECTORIZERS[block].transform(missing).tocsr()
        counts.sort_indices()
        for i, text in enumerate(missing):
            row = slice(counts.indptr[i], counts.indptr[i + 1])
            cache[text] = (counts.indices[row].astype(np.int32), counts.data[row].astype(np.float32))
    rows = [cache[t] for t in texts]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r[0]) for r in rows], out=indptr[1:])
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int32)
    data = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), _N_FEATURES))


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string: wrap it in a list")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, not str: every text must be a string")
    return texts


class TextFeaturizer:
    """TF-IDF word 1-2-grams + char_wb 2-5-grams + standardised MiniLM embeddings, as one CSR matrix.

    ``fit(texts)`` learns the vocabulary (the n-grams present in ``texts``), the inverse document
    frequencies (sublinear tf) and the embeddings' per-dimension mean and spread; it reads no label.
    Each block of a transformed row has unit L2 norm (the dense one on average: standardised, then
    divided by sqrt(d)), so the word, character and embedding views weigh alike.
    ``embeddings=False`` leaves the encoder out (n-grams only).
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, embeddings: bool = True) -> None:
        self.backbone = backbone
        self.embeddings = embeddings

    def fit(self, texts: Sequence[str]) -> "TextFeaturizer":
        texts = _check_texts(texts)
        if not texts:
            raise ValueError("the text features need at least one text to fit on")
        self.columns_: dict[str, np.ndarray] = {}
        self.tfidf_: dict[str, TfidfTransformer] = {}
        for block in _VECTORIZERS:
            counts = _hashed_counts(block, texts)
            self.columns_[block] = np.unique(counts.indices)
            self.tfidf_[block] = TfidfTransformer(sublinear_tf=True).fit(counts[:, self.columns_[block]])
        if self.embeddings:
            vectors = embed_texts(texts, self.backbone)
            self.embedding_mean_ = vectors.mean(axis=0)
            # A dimension constant over the texts carries nothing; its spread floor keeps it ~0.
            self.embedding_scale_ = np.maximum(vectors.std(axis=0), 1e-3) * np.sqrt(vectors.shape[1])
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        if not hasattr(self, "columns_"):
            raise ValueError("the TextFeaturizer is not fitted yet: call fit(texts) first")
        texts = _check_texts(texts)
        blocks = [
            self.tfidf_[block].transform(_hashed_counts(block, texts)[:, self.columns_[block]])
            for block in _VECTORIZERS
        ]
        if self.embeddings:
            vectors = embed_texts(texts, self.backbone) if texts else np.zeros((0, len(self.embedding_mean_)))
            blocks.append(sp.csr_matrix((vectors - self.embedding_mean_) / self.embedding_scale_))
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.fit(texts).transform(texts)


def text_folds(y: np.ndarray, n_splits: int, random_state: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) positions into ``y`` for ``n_splits``-fold cross-fitting / cross-validation.

    Stratified where every class present has at least ``n_splits`` labels, plain shuffled k-fold
    otherwise; fewer labels than folds gives one fold per label (leave-one-out).
    """
    y = np.asarray(y)
    n_splits = min(n_splits, len(y))
    if n_splits < 2:
        return []
    counts = np.bincount(y)
    if counts[counts > 0].min() >= n_splits:
        splitter = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
    else:
        splitter = KFold(n_splits, shuffle=True, random_state=random_state)
    return list(splitter.split(np.zeros(len(y)), y))


def span_projection(gram: np.ndarray) -> np.ndarray:
    """Coordinates in the span of the training rows, from their Gram matrix ``X X^T`` (n, n).

    An L2-penalised linear model's optimal weights lie in the span of its training rows (the
    representer theorem), so fitting it on ``z(x) = k(x) @ P`` with ``k(x) = x X^T`` and the
    returned ``P`` (n, r) gives exactly the model fitted on the full (here ~10^5-wide) features,
    at the cost of an n x n eigendecomposition. With ``X = U S V^T``, ``P = U S^-1`` and ``z = x V``.
    """
    with threadpool_limits(limits=1):  # small matrices: extra BLAS threads only contend
        eigenvalues, vectors = np.linalg.eigh(np.asarray(gram, dtype=np.float64))
    keep = eigenvalues > 1e-9 * max(float(eigenvalues.max(initial=0.0)), 1e-12)
    return vectors[:, keep] / np.sqrt(eigenvalues[keep])


def _fit_logistic(gram: np.ndarray, y: np.ndarray, C: float, sample_weight: np.ndarray | None = None):
    """Logistic regression on the training texts' Gram matrix (exact, see :func:`span_projection`)."""
    present = np.unique(y)
    if len(present) == 1:  # one class seen: nothing to learn, it gets probability 1
        return present, None, None
    projection = span_projection(gram)
    with threadpool_limits(limits=1):
        estimator = LogisticRegression(C=C, max_iter=5000).fit(
            gram @ projection, np.searchsorted(present, y), sample_weight=sample_weight
        )
    return present, estimator, projection


def _predict_logistic(model, kernel: np.ndarray, n_labels: int) -> np.ndarray:
    """Probabilities over all ``n_labels`` classes from ``kernel`` = rows x training rows^T;
    0 for classes absent from the training labels."""
    present, estimator, projection = model
    proba = np.zeros((kernel.shape[0], n_labels))
    if estimator is None:
        proba[:, present[0]] = 1.0
    else:
        with threadpool_limits(limits=1):
            proba[:, present] = estimator.predict_proba(kernel @ projection)
    return proba


def full_width_weights(train_features: sp.csr_matrix, projection: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weights over the full features of weights ``(out, r)`` fitted on span coordinates:
    ``x @ result == z(x) @ weights.T`` for any x, so predicting costs one sparse product."""
    return np.asarray(train_features.T @ (projection @ weights.T))


def _predict_logistic_full(model, train_features: sp.csr_matrix, features: sp.csr_matrix, n_labels: int) -> np.ndarray:
    """:func:`_predict_logistic` for many rows, through :func:`full_width_weights` (no kernel)."""
    present, estimator, projection = model
    proba = np.zeros((features.shape[0], n_labels))
    if estimator is None:
        proba[:, present[0]] = 1.0
        return proba
    with threadpool_limits(limits=1):
        decision = features @ full_width_weights(train_features, projection, estimator.coef_) + estimator.intercept_
    if len(present) == 2:  # sklearn's binary model: one logit for the second class
        positive = expit(decision[:, 0])
        proba[:, present] = np.column_stack([1.0 - positive, positive])
    else:
        proba[:, present] = softmax(decision, axis=1)
    return proba


def gram(rows: sp.csr_matrix, columns: sp.csr_matrix | None = None, chunk: int = 256) -> np.ndarray:
    """Dense ``rows @ columns^T`` of two feature matrices (``columns`` defaults to ``rows``).

    Sparse times dense, ``chunk`` columns at a time: the product is dense, and a sparse-sparse
    product builds it an order of magnitude slower.
    """
    columns = rows if columns is None else columns
    out = np.empty((rows.shape[0], columns.shape[0]), dtype=np.float64)
    with threadpool_limits(limits=1):
        for start in range(0, columns.shape[0], chunk):
            block = columns[start : start + chunk].toarray().T
            out[:, start : start + chunk] = rows @ block
    return out


def choose_C(
    gram_matrix: np.ndarray, y: np.ndarray, n_labels: int, C_grid: Sequence[float], random_state: int,
    sample_weight: np.ndarray | None = None,
) -> float:
    """C by cross-validated log-loss on the training labels alone (ties: the smaller C)."""
    folds = text_folds(y, 5, random_state)
    if len(C_grid) == 1 or not folds:
        return float(C_grid[0])
    weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    losses = []
    for C in C_grid:
        loss = 0.0
        for train, test in folds:
            model = _fit_logistic(gram_matrix[np.ix_(train, train)], y[train], C, weight[train])
            proba = _predict_logistic(model, gram_matrix[np.ix_(test, train)], n_labels)
            loss -= (weight[test] * np.log(np.clip(proba[np.arange(len(test)), y[test]], 1e-6, 1.0))).sum()
        losses.append(loss)
    return float(C_grid[int(np.argmin(losses))])


class TextClassifier(ClassifierMixin, BaseEstimator):
    """Logistic regression on :class:`TextFeaturizer` features, scikit-learn style.

    ``fit(texts, y)`` with label indices ``y`` in ``[0, n_labels)``; ``predict_proba`` covers all
    ``n_labels`` classes (0 for a class absent from the training labels). ``C=None`` chooses it from
    ``C_grid`` by cross-validated log-loss on the training labels. ``random_state`` fixes the folds.
    """

    def __init__(
        self,
        n_labels: int,
        C: float | None = None,
        C_grid: tuple[float, ...] = DEFAULT_C_GRID,
        backbone: str = DEFAULT_BACKBONE,
        embeddings: bool = True,
        random_state: int = 0,
    ) -> None:
        self.n_labels = n_labels
        self.C = C
        self.C_grid = C_grid
        self.backbone = backbone
        self.embeddings = embeddings
        self.random_state = random_state

    def fit(self, texts: Sequence[str], y: np.ndarray) -> "TextClassifier":
        texts = _check_texts(texts)
        y = _check_labels(y, len(texts), self.n_labels, allow_unlabeled=False)
        self.featurizer_ = TextFeaturizer(self.backbone, self.embeddings).fit(texts)
        self.train_features_ = self.featurizer_.transform(texts)
        train_gram = gram(self.train_features_)
        self.C_ = float(self.C) if self.C is not None else choose_C(
            train_gram, y, self.n_labels, self.C_grid, self.random_state
        )
        self.model_ = _fit_logistic(train_gram, y, self.C_)
        self.classes_ = np.arange(self.n_labels)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise ValueError("the TextClassifier is not fitted yet: call fit(texts, y) first")
        features = self.featurizer_.transform(texts)
        return _predict_logistic_full(self.model_, self.train_features_, features, self.n_labels)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_proba(texts).argmax(axis=1)


def _check_labels(y, n_texts: int, n_labels: int, allow_unlabeled: bool) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n_texts,):
        raise ValueError(f"y must hold one label index per text ({n_texts}), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError("y must hold integer label indices, not label names")
    low = UNLABELED if allow_unlabeled else 0
    if len(y) and (y.min() < low or y.max() >= n_labels):
        raise ValueError(f"label indices must lie in [{low}, {n_labels}), got {y.min()}..{y.max()}")
    return y.astype(int)


class TextMember:
    """The text classifier as a panel member over a fixed list of texts.

    The texts are featurised once (vocabulary and IDF from all of them: no label is read), so the
    member can be cross-fitted for any labeling of them cheaply: :meth:`cross_fitted_proba` and
    :meth:`add_to` take ``y`` with ``-1`` for unlabeled texts.
    """

    def __init__(
        self,
        texts: Sequence[str],
        random_state: int = 0,
        n_splits: int = 5,
        C: float | None = None,
        C_grid: tuple[float, ...] = DEFAULT_C_GRID,
        backbone: str = DEFAULT_BACKBONE,
        embeddings: bool = True,
    ) -> None:
        self.texts = _check_texts(texts)
        self.random_state = random_state
        self.n_splits = n_splits
        self.C = C
        self.C_grid = C_grid
        self.features = TextFeaturizer(backbone, embeddings).fit_transform(self.texts)

    def cross_fitted_proba(self, y: np.ndarray, n_labels: int) -> np.ndarray:
        """(n, n_labels) probabilities; a labeled text's come from a model that never saw its label.

        Labeled texts (y >= 0): out-of-fold over ``n_splits`` folds of the labeled texts (fewer
        folds when there are fewer labels; a single label gets the uniform distribution).
        Unlabeled texts: the model fitted on every labeled text. C is chosen once, by
        cross-validated log-loss on all labeled texts (one scalar from a short grid).
        """
        y = _check_labels(y, len(self.texts), n_labels, allow_unlabeled=True)
        labeled = np.flatnonzero(y != UNLABELED)
        proba = np.full((len(y), n_labels), 1.0 / n_labels)
        if not len(labeled):
            return proba
        X, y_labeled = self.features[labeled], y[labeled]
        labeled_gram = gram(X)
        C = float(self.C) if self.C is not None else choose_C(
            labeled_gram, y_labeled, n_labels, self.C_grid, self.random_state
        )
        self.C_ = C
        for train, test in text_folds(y_labeled, self.n_splits, self.random_state):
            model = _fit_logistic(labeled_gram[np.ix_(train, train)], y_labeled[train], C)
            proba[labeled[test]] = _predict_logistic(model, labeled_gram[np.ix_(test, train)], n_labels)
        unlabeled = np.flatnonzero(y == UNLABELED)
        if len(unlabeled):
            model = _fit_logistic(labeled_gram, y_labeled, C)
            proba[unlabeled] = _predict_logistic_full(model, X, self.features[unlabeled], n_labels)
        return proba

    def taught_proba(self, labels: np.ndarray, weights: np.ndarray, n_labels: int) -> np.ndarray:
        """(n, n_labels) probabilities of the classifier trained on a label for *every* text (the
        human labels and an annotator's own), weighted per text; each text scored by a model fitted
        on the other ``TEACHING_FOLDS`` - 1 folds, so no text's probability comes from its own label.

        The annotator's labels are many (every text) but noisy, so the fit is cheap and strongly
        regularised (``TEACHING_C``) rather than cross-validated: the n-gram vocabulary of a
        10,000-text pool makes the span trick of the seed fit (n x n) too costly here.
        """
        labels = _check_labels(labels, len(self.texts), n_labels, allow_unlabeled=False)
        proba = np.zeros((len(labels), n_labels))
        for train, test in KFold(min(TEACHING_FOLDS, len(labels)), shuffle=True,
                                 random_state=self.random_state).split(labels):
            present = np.unique(labels[train])
            if len(present) == 1:
                proba[test, present[0]] = 1.0
                continue
            with threadpool_limits(limits=1):
                model = LogisticRegression(C=TEACHING_C, max_iter=200, tol=1e-3).fit(
                    self.features[train], labels[train], sample_weight=weights[train]
                )
                proba[np.ix_(test, model.classes_)] = model.predict_proba(self.features[test])
        return proba

    def fit_annotator(
        self, model, evidence: PanelEvidence, y: np.ndarray, panel: PanelEvidence | None = None
    ) -> PanelEvidence:
        """Fit ``model`` (an annotation model) on ``evidence`` plus this member; return the panel it was
        last fitted on, the one to annotate with.

        The member is first cross-fitted on the human labels ``y`` (:meth:`add_to`). Then, for
        ``model.text_member_rounds`` rounds (co-training, our extension of MoLAM's self-training),
        it is retrained on every text: human labels where ``y`` has one, else the model's own label
        weighted by its probability (:meth:`taught_proba`, cross-fitted), and the model is refitted
        on the seeds with that member. 50 seeds teach a text classifier little; thousands of MoLAM
        labels teach it the dataset's vocabulary (benchmarks/README.md, "Label quality"). ``panel``:
        :meth:`add_to` of ``evidence`` and ``y`` when the caller has it already.
        """
        panel = panel if panel is not None else self.add_to(evidence, y)
        model.fit(panel, y)
        human = np.asarray(y) != UNLABELED
        for _ in range(int(getattr(model, "text_member_rounds", 0))):
            proba = model.predict_proba(panel)
            labels = np.where(human, y, proba.argmax(axis=1))
            weights = np.where(human, 1.0, proba.max(axis=1))
            panel = self._with_member(evidence, self.taught_proba(labels, weights, len(panel.labels)))
            model.fit(panel, y)
        return panel

    def add_to(self, evidence: PanelEvidence, y: np.ndarray) -> PanelEvidence:
        """``evidence`` with the text member (cross-fitted on ``y``) as its last member.

        A text member already in ``evidence`` is replaced. ``evidence`` must cover the member's
        texts in the same order.
        """
        return self._with_member(evidence, None, y)

    def _with_member(self, evidence: PanelEvidence, proba: np.ndarray | None, y: np.ndarray | None = None) -> PanelEvidence:
        """``evidence`` with the member's ``proba`` (or, if None, its probabilities cross-fitted on
        ``y``) as its last member, replacing a text member already there."""
        if evidence.n_texts != len(self.texts):
            raise ValueError(
                f"the evidence covers {evidence.n_texts} texts but the text member {len(self.texts)}: "
                "give the texts in the evidence's order"
            )
        base = evidence.select_models([m for m in evidence.models if m != TEXT_MEMBER])
        proba = (self.cross_fitted_proba(y, len(base.labels)) if proba is None else proba)[:, None, :]
        return PanelEvidence(
            labels=base.labels,
            models=base.models + (TEXT_MEMBER,),
            label_probs=np.concatenate([base.label_probs, proba], axis=1),
            vote_shares=np.concatenate([base.vote_shares, proba], axis=1),
            no_label_share=np.concatenate([base.no_label_share, np.zeros((base.n_texts, 1))], axis=1),
            text_ids=base.text_ids,
            answers=[list(row) + [()] for row in base.answers] if base.answers is not None else None,
            non_llm_members=base.non_llm_members + (TEXT_MEMBER,),
        )


def cross_fitted_proba(
    texts: Sequence[str], y: np.ndarray, n_labels: int, n_splits: int = 5, random_state: int = 0
) -> np.ndarray:
    """The text classifier's cross-fitted probabilities (see :meth:`TextMember.cross_fitted_proba`)."""
    return TextMember(texts, random_state=random_state, n_splits=n_splits).cross_fitted_proba(y, n_labels)
