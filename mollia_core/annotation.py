"""Annotation models: MoLAM (paper Eq. 4-6), MoL and the baselines.

Every model reads a :class:`~mollia_core.evidence.PanelEvidence` (z and c of N LLMs on n texts over
K labels) and follows scikit-learn's conventions: ``fit(evidence, y)`` with ``y`` an int label index
per text and ``-1`` for unlabeled texts (the convention of ``sklearn.semi_supervised``),
``predict_proba`` returning proper class probabilities (rows sum to 1), ``predict``, and explicit
``random_state``. Negative labels (Eq. 6) follow the same delta rule for every model.

Classes absent from the seed set: the meta-learners are fitted on the classes present (XGBoost
needs contiguous labels, so they are remapped) and give every absent class probability exactly 0.
Such a class can never be predicted until a seed of it is labeled — the honest outcome, since
nothing in the seeds says what its evidence looks like.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.semi_supervised import SelfTrainingClassifier

from .evidence.record import PanelEvidence

UNLABELED = -1


class AnnotationError(ValueError):
    """Bad input to an annotation model (wrong shapes, labels out of range, no seed labels)."""


def negative_label_mask(label_probs: np.ndarray, delta: float = 0.001) -> np.ndarray:
    """Negative labels y- (Eq. 6): label k is negative for text x iff z_i^(k) < delta for EVERY LLM i.

    label_probs: z, shape (n, N, K). Returns a bool array (n, K).
    """
    label_probs = np.asarray(label_probs, dtype=float)
    if label_probs.ndim != 3:
        raise AnnotationError(
            f"label_probs must have shape (n_texts, n_llms, n_labels), got {label_probs.shape}"
        )
    return (label_probs < delta).all(axis=1)


@dataclass(frozen=True)
class Annotation:
    """What an annotation model says about n texts.

    labels:        y+, the predicted label index (n,).
    probability:   the model's probability of y+ (n,).
    proba:         class probabilities (n, K), rows sum to 1.
    negative_mask: y- (Eq. 6), True where label k is ruled out for the text (n, K).
    """

    labels: np.ndarray
    probability: np.ndarray
    proba: np.ndarray
    negative_mask: np.ndarray


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def renormalised_label_probs(label_probs: np.ndarray) -> np.ndarray:
    """z scaled to sum to 1 over the labels (uniform where an LLM gave every label 0).

    The reference code's z summed the top-100 next-token probabilities whose text is a substring of
    a label; in the paper's evidence llama/mistral/yi vectors sum to as much as 6, so raw z is not
    comparable across LLMs. Renormalising restores a distribution over the label set.
    """
    totals = label_probs.sum(axis=-1, keepdims=True)
    uniform = np.full_like(label_probs, 1.0 / label_probs.shape[-1])
    return np.where(totals > 0, label_probs / np.where(totals > 0, totals, 1.0), uniform)


def _scores_to_proba(primary: np.ndarray, tie_breaker: np.ndarray | None = None) -> np.ndarray:
    """Proper probabilities from non-negative scores (n, K), ties broken by ``tie_breaker``.

    The tie-breaker enters with a weight of 1e-9, so it only reorders exact ties; rows with no mass
    at all become uniform. ``argmax`` of the result is therefore the tie-broken decision.
    """
    scores = np.asarray(primary, dtype=float)
    if tie_breaker is not None:
        scores = scores + 1e-9 * np.asarray(tie_breaker, dtype=float)
    totals = scores.sum(axis=1, keepdims=True)
    k = scores.shape[1]
    return np.where(totals > 0, scores / np.where(totals > 0, totals, 1.0), 1.0 / k)


def _check_evidence(evidence: PanelEvidence) -> None:
    if not isinstance(evidence, PanelEvidence):
        raise AnnotationError(
            f"annotation models take a PanelEvidence (z and c of the LLM panel), got {type(evidence).__name__}"
        )


def _check_targets(evidence: PanelEvidence, y: np.ndarray) -> np.ndarray:
    _check_evidence(evidence)
    y = np.asarray(y)
    if y.shape != (evidence.n_texts,):
        raise AnnotationError(
            f"y must hold one label index per text ({evidence.n_texts}), got shape {y.shape}; "
            "use -1 for texts without a label"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise AnnotationError("y must hold integer label indices (0..K-1, -1 = unlabeled), not label names")
    n_labels = len(evidence.labels)
    bad = (y < UNLABELED) | (y >= n_labels)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise AnnotationError(
            f"y[{row}] = {y[row]} is not a label index: use 0..{n_labels - 1} for {evidence.labels} or -1 for unlabeled"
        )
    return y.astype(int)


# ----------------------------------------------------------------------------------------------
# The interface
# ----------------------------------------------------------------------------------------------


class AnnotationModel(ClassifierMixin, BaseEstimator):
    """Base of every annotation model: fit on seed labels, then label texts with y+ and y-."""

    delta: float = 0.001

    def fit(self, evidence: PanelEvidence, y: np.ndarray) -> "AnnotationModel":
        """Record the label set; ``y`` holds label indices, -1 for unlabeled texts."""
        y = _check_targets(evidence, y)
        self.labels_ = tuple(evidence.labels)
        self.models_ = tuple(evidence.models)
        self.classes_ = np.arange(len(self.labels_))
        self.n_seed_labels_ = int((y != UNLABELED).sum())
        return self

    def _check_fitted_evidence(self, evidence: PanelEvidence) -> None:
        _check_evidence(evidence)
        if not hasattr(self, "labels_"):
            raise AnnotationError(f"{type(self).__name__} is not fitted yet: call fit(evidence, y) first")
        if tuple(evidence.labels) != self.labels_ or tuple(evidence.models) != self.models_:
            raise AnnotationError(
                f"evidence is over labels {evidence.labels} from {evidence.models}, but the model was fitted "
                f"on labels {self.labels_} from {self.models_}"
            )

    def predict_proba(self, evidence: PanelEvidence) -> np.ndarray:
        """Class probabilities (n, K); each row sums to 1."""
        raise NotImplementedError

    def predict(self, evidence: PanelEvidence) -> np.ndarray:
        """y+: the most probable label index per text (n,)."""
        return self.predict_proba(evidence).argmax(axis=1)

    def negative_labels(self, evidence: PanelEvidence) -> np.ndarray:
        """y- by the delta rule of Eq. 6 (the same for every model), bool (n, K)."""
        _check_evidence(evidence)
        return negative_label_mask(evidence.label_probs, getattr(self, "delta", 0.001))

    def annotate(self, evidence: PanelEvidence) -> Annotation:
        """y+, its probability, all class probabilities and y- for every text."""
        proba = self.predict_proba(evidence)
        labels = proba.argmax(axis=1)
        return Annotation(
            labels=labels,
            probability=proba[np.arange(len(labels)), labels],
            proba=proba,
            negative_mask=self.negative_labels(evidence),
        )


# ----------------------------------------------------------------------------------------------
# Baselines: no training
# ----------------------------------------------------------------------------------------------


class SingleLLM(AnnotationModel):
    """One LLM of the panel on its own: its label probabilities z (``use="probs"``) or vote shares c.

    Probabilities: z renormalised over the labels (ties broken by c); votes: c renormalised over the
    answers that named a label (ties broken by z; a text where no answer named a label is uniform).
    """

    def __init__(self, model: str | int = 0, use: str = "probs", delta: float = 0.001) -> None:
        self.model = model
        self.use = use
        self.delta = delta

    def fit(self, evidence: PanelEvidence, y: np.ndarray) -> "SingleLLM":
        if self.use not in ("probs", "votes"):
            raise AnnotationError(f"SingleLLM use={self.use!r}: choose 'probs' (z) or 'votes' (c)")
        super().fit(evidence, y)
        self.model_index_ = self._model_index(evidence)
        return self

    def _model_index(self, evidence: PanelEvidence) -> int:
        if isinstance(self.model, (int, np.integer)):
            if not 0 <= self.model < len(evidence.models):
                raise AnnotationError(f"LLM index {self.model} out of range: the panel is {evidence.models}")
            return int(self.model)
        if self.model not in evidence.models:
            raise AnnotationError(f"no LLM named {self.model!r} in the panel {evidence.models}")
        return evidence.models.index(self.model)

    def predict_proba(self, evidence: PanelEvidence) -> np.ndarray:
        self._check_fitted_evidence(evidence)
        z = renormalised_label_probs(evidence.label_probs[:, self.model_index_])
        c = evidence.vote_shares[:, self.model_index_]
        return _scores_to_proba(z, c) if self.use == "probs" else _scores_to_proba(c, z)


class MajorityVote(AnnotationModel):
    """Majority vote: the label named by most of the panel's N x T sampled answers (pooled c).

    Probabilities are the pooled vote shares over the answers that named a label; ties go to the
    label with the higher mean renormalised z.
    """

    def __init__(self, delta: float = 0.001) -> None:
        self.delta = delta

    def predict_proba(self, evidence: PanelEvidence) -> np.ndarray:
        self._check_fitted_evidence(evidence)
        return _scores_to_proba(
            evidence.vote_shares.sum(axis=1), renormalised_label_probs(evidence.label_probs).mean(axis=1)
        )


class MeanProbability(AnnotationModel):
    """Mean of the LLMs' label probabilities: mean over LLMs of renormalised z, ties broken by votes."""

    def __init__(self, delta: float = 0.001) -> None:
        self.delta = delta

    def predict_proba(self, evidence: PanelEvidence) -> np.ndarray:
        self._check_fitted_evidence(evidence)
        return _scores_to_proba(
            renormalised_label_probs(evidence.label_probs).mean(axis=1), evidence.vote_shares.sum(axis=1)
        )


def paper_baseline_predictions(evidence: PanelEvidence) -> dict[str, np.ndarray]:
    """The paper's baseline decisions exactly as its reported whole-dataset figures count them.

    Returns label indices per text; -1 where the winning answer is not a label (counted wrong).
    Worked out on the stored evidence; these rules reproduce the paper's figures to 3 decimals
    (trec: yi votes 0.768, vote 0.732, mean 0.711; imdb: yi 0.950, vote 0.942, mean 0.942):

    - ``<llm> (votes)``: the most common RAW sampled answer of that LLM (``Counter.most_common``:
      exact string match, ties go to the answer sampled first); if that answer is not a label
      (e.g. ``'"human"'``, ``'date'``) the text counts as wrong. Without raw answers (imdb stores
      only c), the argmax of c with ties to the first label in label order.
    - ``<llm> (probs)``: argmax of the stored z, ties to the first label in label order.
    - ``vote``: the most common answer among ALL N x T raw answers pooled (same Counter rule);
      without raw answers, argmax of the summed c, ties to the first label.
    - ``mean``: argmax of the summed (= mean) stored z, ties to the first label.

    These differ from the product's baselines (:class:`SingleLLM`, :class:`MajorityVote`,
    :class:`MeanProbability`), which count only answers that parse as a label and renormalise z.
    """
    labels = list(evidence.labels)
    index = {label: k for k, label in enumerate(labels)}

    def most_common(answers) -> int:
        if not answers:
            return UNLABELED
        return index.get(collections.Counter(answers).most_common(1)[0][0], UNLABELED)

    out: dict[str, np.ndarray] = {}
    z, c = evidence.label_probs, evidence.vote_shares
    for j, name in enumerate(evidence.models):
        out[f"{name} (probs)"] = z[:, j].argmax(axis=1)
        if evidence.answers is not None:
            out[f"{name} (votes)"] = np.array([most_common(row[j]) for row in evidence.answers])
        else:
            out[f"{name} (votes)"] = c[:, j].argmax(axis=1)
    if evidence.answers is not None:
        out["vote"] = np.array([most_common([a for answers in row for a in answers]) for row in evidence.answers])
    else:
        out["vote"] = c.sum(axis=1).argmax(axis=1)
    out["mean"] = z.sum(axis=1).argmax(axis=1)
    return out
