"""Annotation models: MoLAM (paper Eq. 4-6), MoL and the baselines.

Every model reads a :class:`~mollia_core.evidence.PanelEvidence` (z and c of N LLMs on n texts over
K labels) and follows scikit-learn's conventions: ``fit(evidence, y)`` with ``y`` an int label index
per text and ``-1`` for unlabeled texts (the convention of ``sklearn.semi_supervised``),
``predict_proba`` returning proper class probabilities (rows sum to 1), ``predict``, and explicit
``random_state``. Negative labels (Eq. 6) follow the same delta rule for every model.

Classes absent from the seed set: the meta-learners are fitted on the classes present (XGBoost
needs contiguous labels, so they are remapped). By default (``unseen_class_backoff=True``) an
absent class k gets the panel's own opinion, the mean over LLMs of renormalised z^(k), and the
meta-learner's probabilities are scaled by what is left, so rows still sum to 1; with the back-off
off, absent classes get probability exactly 0 and can never be predicted until a seed of them is
labeled.
"""

from __future__ import annotations

import collections
import copy
from dataclasses import asdict, dataclass
from typing import Callable, Mapping

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from .evidence.record import PanelEvidence

UNLABELED = -1


class AnnotationError(ValueError):
    """Bad input to an annotation model (wrong shapes, labels out of range, no seed labels)."""


def negative_label_mask(label_probs: np.ndarray, delta: float = 0.001) -> np.ndarray:
    """Negative labels y- (Eq. 6): label k is negative for text x iff z_i^(k) < delta for EVERY LLM i.

    label_probs: z of the LLMs, shape (n, N, K). Returns a bool array (n, K); with no LLM (N = 0)
    nothing is ruled out. Pass LLM evidence only (``PanelEvidence.llm_only()``): the text member is
    no LLM, and a class it never saw in the seeds must not become negative for that reason.
    """
    label_probs = np.asarray(label_probs, dtype=float)
    if label_probs.ndim != 3:
        raise AnnotationError(
            f"label_probs must have shape (n_texts, n_llms, n_labels), got {label_probs.shape}"
        )
    if label_probs.shape[1] == 0:
        return np.zeros((label_probs.shape[0], label_probs.shape[2]), dtype=bool)
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

    The tie-breaker enters with a weight of 1e-9, so it only reorders exact ties (and, renormalised,
    stands in for a row whose primary scores are all 0); rows with no mass at all become uniform.
    ``argmax`` of the result is therefore the tie-broken decision.
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
        """y- by the delta rule of Eq. 6 over the LLMs (the same for every model), bool (n, K)."""
        _check_evidence(evidence)
        return negative_label_mask(evidence.llm_only().label_probs, getattr(self, "delta", 0.001))

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
    answers that named a label (ties broken by z; where no answer named a label, the LLM's z).
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
    label with the higher mean renormalised z (which also stands in where no answer named a label).
    A baseline of the LLM panel: a non-LLM member (the text classifier) takes no part.
    """

    def __init__(self, delta: float = 0.001) -> None:
        self.delta = delta

    def predict_proba(self, evidence: PanelEvidence) -> np.ndarray:
        self._check_fitted_evidence(evidence)
        evidence = evidence.llm_only()
        return _scores_to_proba(
            evidence.vote_shares.sum(axis=1), renormalised_label_probs(evidence.label_probs).mean(axis=1)
        )


class MeanProbability(AnnotationModel):
    """Mean of the LLMs' label probabilities: mean over LLMs of renormalised z, ties broken by votes.
    Like :class:`MajorityVote`, over the LLMs only."""

    def __init__(self, delta: float = 0.001) -> None:
        self.delta = delta

    def predict_proba(self, evidence: PanelEvidence) -> np.ndarray:
        self._check_fitted_evidence(evidence)
        evidence = evidence.llm_only()
        return _scores_to_proba(
            renormalised_label_probs(evidence.label_probs).mean(axis=1), evidence.vote_shares.sum(axis=1)
        )


class MajorityClass(AnnotationModel):
    """The most frequent seed label for every text: what any annotator must beat. Reads no evidence."""

    def __init__(self, delta: float = 0.001) -> None:
        self.delta = delta

    def fit(self, evidence: PanelEvidence, y: np.ndarray) -> "MajorityClass":
        super().fit(evidence, y)
        y = _check_targets(evidence, y)
        counts = np.bincount(y[y != UNLABELED], minlength=len(self.labels_))
        self.majority_ = int(counts.argmax())  # ties: the first label in label order
        return self

    def predict_proba(self, evidence: PanelEvidence) -> np.ndarray:
        self._check_fitted_evidence(evidence)
        proba = np.zeros((evidence.n_texts, len(self.labels_)))
        proba[:, self.majority_] = 1.0
        return proba


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


# ----------------------------------------------------------------------------------------------
# MoLAM and MoL (Eq. 4-6)
# ----------------------------------------------------------------------------------------------

FEATURE_SETS = ("paper", "log")
META_LEARNERS = ("pooled", "logistic", "xgboost")
LOG_FLOOR = 1e-4  # z below this carries no further information (the negative-label delta is 1e-3)


def molam_features(evidence: PanelEvidence, kind: str = "log") -> np.ndarray:
    """Meta-learner inputs, shape (n, d).

    ``"paper"``: h(x) = [z_1, c_1, ..., z_N, c_N] as stored (Eq. 4), 2NK values.
    ``"log"``: [log(renormalised z_i + 1e-4) for each LLM, c_i for each LLM, no-label share of each
    LLM]: 2NK + N values. Log-probabilities make a linear meta-learner a weighted log-linear pool
    of the LLMs (a product of experts), and renormalising repairs z vectors that do not sum to 1.
    """
    _check_evidence(evidence)
    n = evidence.n_texts
    if kind == "paper":
        return evidence.features()
    if kind == "log":
        log_z = np.log(renormalised_label_probs(evidence.label_probs) + LOG_FLOOR)
        return np.concatenate(
            [log_z.reshape(n, -1), evidence.vote_shares.reshape(n, -1), evidence.no_label_share], axis=1
        )
    raise AnnotationError(f"unknown feature set {kind!r}: choose one of {FEATURE_SETS}")


class _AllClasses(ClassifierMixin, BaseEstimator):
    """Fits ``estimator`` on the classes present in y, remapped to 0..m-1 (XGBoost needs contiguous
    labels), and reports probabilities over all ``n_classes`` with 0 for the absent ones."""

    def __init__(self, estimator: BaseEstimator, n_classes: int) -> None:
        self.estimator = estimator
        self.n_classes = n_classes

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "_AllClasses":
        self.classes_ = np.arange(self.n_classes)
        self.present_ = np.unique(y)
        if len(self.present_) == 1:  # one class seen: nothing to learn, it gets probability 1
            self.estimator_ = None
            return self
        self.estimator_ = clone(self.estimator).fit(X, np.searchsorted(self.present_, y), sample_weight=sample_weight)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        proba = np.zeros((len(X), self.n_classes))
        if self.estimator_ is None:
            proba[:, self.present_[0]] = 1.0
        else:
            proba[:, self.present_] = self.estimator_.predict_proba(X)
        return proba


class PooledLogit(ClassifierMixin, BaseEstimator):
    """A weighted log-linear pool of the panel: logit_k(x) = sum_j (a_j log z_j,k + b_j c_j,k) + bias_k,
    one weight per member and kind of evidence, shared by every label, one bias per label.

    Read from MoLAM's ``"log"`` features (:func:`molam_features`: the members' log z, then their c,
    then their no-label shares, which this model leaves out). A full multinomial logistic regression
    on the same features has (2NK + N) x K weights, and L2 shrinks them towards "no member says
    anything"; this one has 2N + K, and its simplest solution is "trust the best member": on 50 seeds
    and 5 labels that is the difference between MoLAM below and above its best LLM (BBC headlines,
    ``benchmarks/README.md``). Every label keeps a probability, seeded or not (no backoff needed).
    L2 penalty 1 / (2C) on all parameters, fitted by L-BFGS; sample weights as in sklearn.
    """

    def __init__(self, n_classes: int, C: float = 1.0) -> None:
        self.n_classes = n_classes
        self.C = C

    def _per_label(self, X: np.ndarray) -> np.ndarray:
        """(n, 2N, K): each member's log z and c per label, out of the (n, 2NK + N) "log" features."""
        n, k = len(X), self.n_classes
        n_members = X.shape[1] // (2 * k + 1)
        if X.shape[1] != n_members * (2 * k + 1):
            raise AnnotationError(f"PooledLogit reads MoLAM's 'log' features (2NK + N columns); got {X.shape[1]} "
                                  f"columns for {k} labels")
        return X[:, : 2 * n_members * k].reshape(n, 2 * n_members, k)

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "PooledLogit":
        from scipy.optimize import minimize

        F, y = self._per_label(np.asarray(X, dtype=float)), np.asarray(y, dtype=int)
        weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        n, d, k = F.shape
        rows, penalty = np.arange(n), 1.0 / (2.0 * self.C)

        def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
            log_p = _log_softmax(np.einsum("ndk,d->nk", F, theta[:d]) + theta[d:])
            residual = np.exp(log_p)
            residual[rows, y] -= 1.0
            residual *= weight[:, None]
            loss = -(weight * log_p[rows, y]).sum() + penalty * (theta @ theta)
            gradient = np.concatenate([np.einsum("ndk,nk->d", F, residual), residual.sum(axis=0)])
            return loss, gradient + 2.0 * penalty * theta

        theta = minimize(loss_and_gradient, np.zeros(d + k), jac=True, method="L-BFGS-B").x
        self.coef_, self.intercept_ = theta[:d], theta[d:]
        self.classes_ = np.arange(k)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        F = self._per_label(np.asarray(X, dtype=float))
        return np.exp(_log_softmax(np.einsum("ndk,d->nk", F, self.coef_) + self.intercept_))


def _xgboost(n_estimators: int, learning_rate: float, max_depth: int, n_jobs: int, random_state: int):
    import xgboost  # imported here: only the XGBoost meta-learner needs it

    # XGBClassifier picks a softmax objective (multi:softprob) for K > 2 classes: proper probabilities.
    return xgboost.XGBClassifier(
        n_estimators=n_estimators,
        learning_rate=learning_rate,
        max_depth=max_depth,
        tree_method="hist",
        n_jobs=n_jobs,
        random_state=random_state,
        verbosity=0,
    )


RECIPES = {
    # The paper's reference: XGBoost on the raw h(x) of Eq. 4, pseudo-labels above sigma.
    # The paper's MoLAM sees the LLMs' evidence only.
    "paper": {"features": "paper", "meta_learner": "xgboost", "pseudo_label_share": None, "text_member": False},
    # MoLLIA's default (figures and the variants tried: benchmarks/README.md, "Annotation accuracy" and
    # "Label quality"): a weighted log-linear pool of the members (PooledLogit: one weight per member
    # and kind of evidence, shared by the labels) on log-probability features. The multinomial logistic
    # regression on the same features ("logistic", C by cross-validation on the seeds) was the default
    # until 2026-12-03: as good on TREC, IMDB, Rotten Tomatoes and drug reviews, 7 points worse on BBC
    # headlines (5 labels, one strong LLM), where it fell below that LLM alone.
    # Pseudo-labels weighted to count together as much as the seeds: unweighted, thousands of
    # confident (easy) texts swamp the 50 seeds and the model forgets the seeds' hard cases.
    # The text classifier (mollia_core.text_member), where the evidence carries it, is one more member.
    "mollia": {"features": "log", "meta_learner": "pooled", "pseudo_label_share": 1.0, "text_member": True},
}
DEFAULT_C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
FALLBACK_C = 0.1  # used when there are too few seeds to cross-validate C


class MoLAM(AnnotationModel):
    """Mixture-of-LLMs annotation model (Eq. 4-6): a meta-learner over the panel's evidence, fitted
    on the seed labels and self-trained on the unlabeled texts whose top probability exceeds sigma.

    recipe: ``"mollia"`` (default: a weighted log-linear pool of the members on log-probability
      features, :class:`PooledLogit`) or ``"paper"`` (XGBoost on the raw h(x), the reference code's
      recipe). ``features`` / ``meta_learner`` (``META_LEARNERS``: ``"pooled"``, ``"logistic"``, a
      multinomial logistic regression with C chosen by k-fold cross-validation on the seeds, or
      ``"xgboost"``) override the recipe's choices.
    sigma: confidence threshold for pseudo-labels; max_self_training_rounds: self-training rounds
      (0 = no self-training, i.e. MoL). Each round refits on seeds + pseudo-labels and adds every
      unlabeled text whose top probability exceeds sigma (sklearn ``SelfTrainingClassifier``'s
      threshold rule; pseudo-labels are kept once given).
    pseudo_label_share: total weight of all pseudo-labels relative to the seeds' total, or None for
      weight 1 each (the paper). The "mollia" recipe uses 1.0 (the ``"recipe"`` sentinel picks it).
    delta: negative-label threshold (Eq. 6).
    use_text_member: read the text classifier's member of the evidence (added by
      :meth:`mollia_core.text_member.TextMember.add_to`) beside the LLMs' (None: the recipe's choice,
      on for "mollia", off for "paper"); False gives the paper's MoLAM, LLM evidence only. Evidence
      without a text member gives the LLM-only model either way (``uses_text_member_`` says which).
    text_member_rounds: rounds in which the text member is retrained on MoLAM's own labels of every
      text and MoLAM refitted with it (co-training, our extension; run by
      :meth:`mollia_core.text_member.TextMember.fit_annotator`, which knows the texts). 0 = the
      member learns from the human labels only.
    C: inverse L2 strength of the logistic meta-learner; None = chosen from ``C_grid`` by
      cross-validated accuracy on the seeds (ties go to the stronger regularisation).
    unseen_class_backoff: for classes absent from the seeds, use the panel's mean renormalised z as
      their probability (and scale the meta-learner's down by the rest) instead of probability 0, so a
      text every LLM calls "abbreviation" can still be labeled so before any abbreviation is seeded.
    n_estimators, learning_rate, max_depth, n_jobs: XGBoost's hyper-parameters (paper Table 5 ranges:
      lr 0.01-0.07, depth 3-6, 300-500 trees). n_jobs defaults to 1: on a busy 2-core machine two
      threads per fit were measured up to 100x slower than one.

    After ``fit``: ``C_`` (the C used), ``pseudo_labeled_`` (bool per text: joined by self-training),
    ``transduction_`` (labels used in the final fit, -1 where none), ``n_self_training_rounds_``.
    """

    def __init__(
        self,
        sigma: float = 0.9,
        delta: float = 0.001,
        max_self_training_rounds: int = 10,
        random_state: int = 0,
        recipe: str = "mollia",
        features: str | None = None,
        meta_learner: str | None = None,
        C: float | None = None,
        C_grid: tuple[float, ...] = DEFAULT_C_GRID,
        cv_folds: int = 5,
        unseen_class_backoff: bool = True,
        pseudo_label_share: float | None | str = "recipe",
        use_text_member: bool | None = None,
        text_member_rounds: int = 2,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        max_depth: int = 3,
        n_jobs: int = 1,
    ) -> None:
        self.sigma = sigma
        self.delta = delta
        self.max_self_training_rounds = max_self_training_rounds
        self.random_state = random_state
        self.recipe = recipe
        self.features = features
        self.meta_learner = meta_learner
        self.C = C
        self.C_grid = C_grid
        self.cv_folds = cv_folds
        self.unseen_class_backoff = unseen_class_backoff
        self.pseudo_label_share = pseudo_label_share
        self.use_text_member = use_text_member
        self.text_member_rounds = text_member_rounds
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.n_jobs = n_jobs

    # -- configuration ------------------------------------------------------------------------

    def _self_training_rounds(self) -> int:
        return int(self.max_self_training_rounds)

    def _resolved(self) -> tuple[str, str]:
        if self.recipe not in RECIPES:
            raise AnnotationError(f"unknown MoLAM recipe {self.recipe!r}: choose one of {tuple(RECIPES)}")
        features = self.features or RECIPES[self.recipe]["features"]
        learner = self.meta_learner or RECIPES[self.recipe]["meta_learner"]
        if features not in FEATURE_SETS:
            raise AnnotationError(f"unknown feature set {features!r}: choose one of {FEATURE_SETS}")
        if learner not in META_LEARNERS:
            raise AnnotationError(f"unknown meta_learner {learner!r}: choose one of {META_LEARNERS}")
        if learner == "pooled" and features != "log":
            raise AnnotationError(f"meta_learner {learner!r} reads the 'log' features, not {features!r}")
        if not 0.0 < self.sigma < 1.0:
            raise AnnotationError(f"sigma must be a probability threshold in (0, 1), got {self.sigma}")
        return features, learner

    def _meta_learner(self, learner: str, C: float | None, n_classes: int) -> BaseEstimator:
        """The meta-learner, able to give all ``n_classes`` a probability."""
        if learner == "pooled":
            return PooledLogit(n_classes)  # every label has its own features: no remapping
        if learner == "xgboost":
            return _AllClasses(_xgboost(self.n_estimators, self.learning_rate, self.max_depth, self.n_jobs,
                                        self.random_state), n_classes)
        return _AllClasses(LogisticRegression(C=C, max_iter=5000), n_classes)

    def _choose_C(self, X: np.ndarray, y: np.ndarray, n_classes: int) -> float:
        """The logistic meta-learner's C by k-fold cross-validated accuracy on the seed labels alone."""
        if self.C is not None:
            return float(self.C)
        if len(y) < 2 * self.cv_folds:
            return FALLBACK_C
        folds = KFold(self.cv_folds, shuffle=True, random_state=self.random_state)
        scores = []
        for C in self.C_grid:
            estimator = self._meta_learner("logistic", C, n_classes)
            hits = [(estimator.fit(X[train], y[train]).predict_proba(X[test]).argmax(1) == y[test]).mean()
                    for train, test in folds.split(X)]
            scores.append(np.mean(hits))
        return float(self.C_grid[int(np.argmax(scores))])  # argmax: first (smallest C) among ties

    # -- fitting and prediction ---------------------------------------------------------------

    def _pseudo_label_share(self) -> float | None:
        if self.pseudo_label_share == "recipe":
            return RECIPES[self.recipe]["pseudo_label_share"]
        return self.pseudo_label_share

    def wants_text_member(self) -> bool:
        """Whether this model reads a text member of the evidence (the loop adds one if so)."""
        if self.recipe not in RECIPES:
            raise AnnotationError(f"unknown MoLAM recipe {self.recipe!r}: choose one of {tuple(RECIPES)}")
        return RECIPES[self.recipe]["text_member"] if self.use_text_member is None else bool(self.use_text_member)

    def _panel(self, evidence: PanelEvidence) -> PanelEvidence:
        _check_evidence(evidence)
        return evidence if self.wants_text_member() else evidence.llm_only()

    def fit(self, evidence: PanelEvidence, y: np.ndarray) -> "MoLAM":
        """Fit on the seed labels (y >= 0) and self-train on the unlabeled texts (y == -1)."""
        features, learner = self._resolved()
        evidence = self._panel(evidence)
        super().fit(evidence, y)
        self.uses_text_member_ = bool(evidence.non_llm_members)
        y = _check_targets(evidence, y)
        seeds = y != UNLABELED
        if not seeds.any():
            raise AnnotationError("MoLAM needs seed labels: give at least one text a label index (y >= 0)")
        n_classes = len(self.labels_)
        X = molam_features(evidence, features)
        with threadpool_limits(limits=1):  # small problems: extra BLAS/OpenMP threads only contend
            self.meta_learner_ = learner
            self.C_ = self._choose_C(X[seeds], y[seeds], n_classes) if learner == "logistic" else None
            base = self._meta_learner(learner, self.C_, n_classes)
            self._self_train(base, X, y)
        self.features_ = features
        self.seen_classes_ = np.unique(y[seeds])
        return self

    def _self_train(self, base: BaseEstimator, X: np.ndarray, y: np.ndarray) -> None:
        """Seed fit, then rounds of pseudo-labels above sigma (MoLAM's self-training, DESIGN §1)."""
        seeds = y != UNLABELED
        labels = y.copy()
        share = self._pseudo_label_share()
        rounds = 0
        while True:
            pseudo = (labels != UNLABELED) & ~seeds
            weight = np.ones(len(y))
            if share is not None and pseudo.any():
                weight[pseudo] = share * seeds.sum() / pseudo.sum()
            used = labels != UNLABELED
            self.estimator_ = base.fit(X[used], labels[used], sample_weight=weight[used])
            if rounds >= self._self_training_rounds() or used.all():
                break
            proba = self.estimator_.predict_proba(X[~used])
            confident = proba.max(axis=1) > self.sigma
            if not confident.any():
                break
            rounds += 1
            labels[np.flatnonzero(~used)[confident]] = proba[confident].argmax(axis=1)
        self.transduction_ = labels
        self.pseudo_labeled_ = (labels != UNLABELED) & ~seeds
        self.n_self_training_rounds_ = rounds

    def predict_proba(self, evidence: PanelEvidence) -> np.ndarray:
        evidence = self._panel(evidence)
        self._check_fitted_evidence(evidence)
        with threadpool_limits(limits=1):
            proba = self.estimator_.predict_proba(molam_features(evidence, self.features_))
        unseen = np.setdiff1d(self.classes_, self.seen_classes_)
        llms = evidence.llm_only()  # the text member never saw an unseen class: the LLMs speak for it
        pooled = getattr(self, "meta_learner_", None) == "pooled"  # it gives every label its own probability
        if self.unseen_class_backoff and len(unseen) and llms.models and not pooled:
            panel = renormalised_label_probs(llms.label_probs).mean(axis=1)
            proba = proba * (1.0 - panel[:, unseen].sum(axis=1, keepdims=True))
            proba[:, unseen] = panel[:, unseen]
        return proba / proba.sum(axis=1, keepdims=True)


class MoL(MoLAM):
    """MoLAM without self-training (the paper's MoL): the meta-learner fitted on the seeds only."""

    def _self_training_rounds(self) -> int:
        return 0


# ----------------------------------------------------------------------------------------------
# Honest accuracy estimate and construction by name
# ----------------------------------------------------------------------------------------------


def _cv_folds(n_labeled: int, n_splits: int, random_state: int) -> list[tuple[np.ndarray, np.ndarray]]:
    n_splits = min(n_splits, n_labeled)  # fewer seeds than folds: leave-one-out
    if n_splits < 2:
        raise AnnotationError(
            f"cross-validation needs at least 2 seed labels, got {n_labeled}: label more texts"
        )
    return list(KFold(n_splits, shuffle=True, random_state=random_state).split(np.arange(n_labeled)))


def out_of_fold_predictions(
    models: Mapping[str, AnnotationModel],
    evidence: PanelEvidence,
    y: np.ndarray,
    n_splits: int = 5,
    random_state: int = 0,
    text_member=None,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Each seed's label as predicted by each model fitted with that seed's fold hidden.

    k-fold over the labeled texts (y >= 0; fewer folds when there are fewer seeds). Each fold
    refits a clone of every model with the held-out seeds' labels hidden (set to -1, so a
    self-training model may still use them as unlabeled texts). With ``text_member`` (a
    :class:`mollia_core.text_member.TextMember` over the evidence's texts) the text member is
    cross-fitted again inside every fold on the fold's labels alone, so a held-out seed's label
    reaches neither the meta-learner nor the text classifier.
    Returns (indices of the seeds, {name: predicted label per seed}, fold number per seed).
    """
    labeled, probas, fold_of = _out_of_fold_proba(models, evidence, y, n_splits, random_state, text_member)
    return labeled, {name: proba.argmax(axis=1) for name, proba in probas.items()}, fold_of


def _out_of_fold_proba(
    models: Mapping[str, AnnotationModel], evidence: PanelEvidence, y: np.ndarray, n_splits: int,
    random_state: int, text_member,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """:func:`out_of_fold_predictions` with each seed's class probabilities (n_seeds, K)."""
    y = _check_targets(evidence, y)
    labeled = np.flatnonzero(y != UNLABELED)
    probas = {name: np.zeros((len(labeled), len(evidence.labels))) for name in models}
    fold_of = np.zeros(len(labeled), dtype=int)
    for fold, (_, test) in enumerate(_cv_folds(len(labeled), n_splits, random_state)):
        y_fold = y.copy()
        y_fold[labeled[test]] = UNLABELED
        fold_of[test] = fold
        fold_panel = text_member.add_to(evidence, y_fold) if text_member is not None else None
        for name, model in models.items():
            fold_model = clone(model)
            fold_evidence = fit_annotator(fold_model, evidence, y_fold, text_member, panel=fold_panel)
            probas[name][test] = fold_model.predict_proba(fold_evidence.subset(labeled[test]))
    return labeled, probas, fold_of


class WithoutMember(AnnotationModel):
    """``model`` fitted and applied with one member of the panel left out (its evidence dropped):
    what the panel is worth without that member (leave-one-LLM-out)."""

    def __init__(self, model: AnnotationModel, member: str) -> None:
        self.model = model
        self.member = member

    def wants_text_member(self) -> bool:
        return reads_text_member(self.model)

    @property
    def text_member_rounds(self) -> int:
        """The wrapped model's co-training rounds (:func:`fit_annotator` runs them for this model too)."""
        return int(getattr(self.model, "text_member_rounds", 0))

    def _without(self, evidence: PanelEvidence) -> PanelEvidence:
        if self.member not in evidence.models:
            raise AnnotationError(f"{self.member!r} is not a member of the panel {evidence.models}")
        return evidence.select_models([m for m in evidence.models if m != self.member])

    def fit(self, evidence: PanelEvidence, y: np.ndarray) -> "WithoutMember":
        super().fit(evidence, y)
        self.model_ = clone(self.model).fit(self._without(evidence), y)
        return self

    def predict_proba(self, evidence: PanelEvidence) -> np.ndarray:
        self._check_fitted_evidence(evidence)
        return self.model_.predict_proba(self._without(evidence))


def cross_validated_accuracy(
    model: AnnotationModel, evidence: PanelEvidence, y: np.ndarray, n_splits: int = 5, random_state: int = 0,
    text_member=None,
) -> tuple[float, float]:
    """Accuracy estimated from the seed labels alone (see :func:`out_of_fold_predictions`).

    Returns (mean, standard deviation) of the accuracy over the folds.
    """
    labeled, predictions, fold_of = out_of_fold_predictions(
        {"model": model}, evidence, y, n_splits, random_state, text_member
    )
    hits = predictions["model"] == np.asarray(y)[labeled]
    scores = [float(hits[fold_of == f].mean()) for f in np.unique(fold_of)]
    return float(np.mean(scores)), float(np.std(scores))


# ----------------------------------------------------------------------------------------------
# What the estimate is worth: intervals and warnings in plain words
# ----------------------------------------------------------------------------------------------

MIN_SEEDS_FOR_ESTIMATE = 5  # below this, k-fold estimates are not worth showing
USEFUL_SEEDS = 50
ONE_LABEL_SHARE = 0.95  # an LLM whose answers name one label this often "gives one label to everything"
NO_LABEL_SHARE = 0.5


def fit_annotator(
    model: AnnotationModel, evidence: PanelEvidence, y: np.ndarray, text_member=None,
    panel: PanelEvidence | None = None,
) -> PanelEvidence:
    """Fit ``model`` on the human labels ``y`` and return the panel it was fitted on (annotate with it).

    ``evidence``: the LLMs'. With ``text_member`` (a :class:`~mollia_core.text_member.TextMember` over
    the evidence's texts) a model that reads it is fitted by
    :meth:`~mollia_core.text_member.TextMember.fit_annotator` (the member co-trained on its labels);
    any other model on ``panel`` (``evidence`` plus the member cross-fitted on ``y``, computed here
    if not given: the "text member alone" baseline reads it) or, without a member, on ``evidence``.
    """
    if text_member is not None:
        panel = panel if panel is not None else text_member.add_to(evidence, y)
        if reads_text_member(model):
            return text_member.fit_annotator(model, evidence, y, panel=panel)
    target = panel if panel is not None else evidence
    model.fit(target, y)
    return target


def reads_text_member(annotator: object) -> bool:
    """Whether ``annotator`` reads the text member of the panel (MoLAM's default recipe does)."""
    wants = getattr(annotator, "wants_text_member", None)
    return bool(wants()) if callable(wants) else False


def wilson_interval(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (hits of n)."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    interval = binomtest(int(hits), int(n)).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class MethodEstimate:
    """One method's accuracy on held-out seeds: the pooled out-of-fold accuracy and its 95 % Wilson
    interval over the ``n`` seeds, and the standard deviation over the folds."""

    accuracy: float
    low: float
    high: float
    fold_std: float
    n: int


@dataclass(frozen=True)
class AccuracyEstimates:
    """Cross-validated accuracy on the seeds of each method (same folds for all), and warnings.

    ``methods`` is empty when there are too few seeds for an estimate (a warning says so);
    ``primary`` names the method the estimate is about (MoLAM). Warnings are plain sentences
    that may hold user strings (labels, model names): escape them for Markdown.
    """

    n_seeds: int
    n_folds: int
    primary: str
    methods: dict[str, MethodEstimate]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "AccuracyEstimates":
        return cls(
            n_seeds=int(data["n_seeds"]), n_folds=int(data["n_folds"]), primary=str(data["primary"]),
            methods={name: MethodEstimate(**values) for name, values in data["methods"].items()},
            warnings=tuple(data["warnings"]),
        )


def panel_warnings(evidence: PanelEvidence, y: np.ndarray) -> list[str]:
    """Plain-words warnings about the LLMs: one label for everything (over every text an LLM
    answered), mostly no label, or zero-shot accuracy on the seeds not clearly above always
    answering the most common seed label."""
    y = _check_targets(evidence, y)
    llms = evidence.llm_only()
    labels = llms.labels
    seeds = np.flatnonzero(y != UNLABELED)
    majority_share = np.bincount(y[seeds], minlength=len(labels)).max() / len(seeds) if len(seeds) else 0.0
    majority_label = labels[int(np.bincount(y[seeds], minlength=len(labels)).argmax())] if len(seeds) else None
    out: list[str] = []
    for j, model in enumerate(llms.models):
        votes, z = llms.vote_shares[:, j], llms.label_probs[:, j]
        answered = votes.sum(axis=1) > 0
        top = np.where(answered, votes.argmax(axis=1), z.argmax(axis=1))
        counted = answered if answered.any() else np.ones(len(top), dtype=bool)
        if counted.sum() >= 2:
            counts = np.bincount(top[counted], minlength=len(labels))
            if counts.max() >= ONE_LABEL_SHARE * counted.sum():
                how_many = "all" if counts.max() == counted.sum() else f"{counts.max()} of the"
                out.append(f"{model} answered '{labels[int(counts.argmax())]}' for {how_many} "
                           f"{int(counted.sum())} texts it answered.")
        no_label = float(llms.no_label_share[:, j].mean())
        if answered.any() and no_label > NO_LABEL_SHARE:
            out.append(f"{model} named no label in {no_label:.0%} of its sampled answers.")
        if len(seeds) >= MIN_SEEDS_FOR_ESTIMATE:
            predicted = SingleLLM(j).fit(llms, y).predict(llms.subset(seeds))
            hits = int((predicted == y[seeds]).sum())
            low, _ = wilson_interval(hits, len(seeds))
            if low <= majority_share:
                out.append(f"{model} is at chance on the seeds: {hits} of {len(seeds)} right "
                           f"({hits / len(seeds):.2f}); always answering '{majority_label}' gives {majority_share:.2f}.")
    return out


def estimate_accuracy(
    models: Mapping[str, AnnotationModel],
    evidence: PanelEvidence,
    y: np.ndarray,
    *,
    primary: str = "MoLAM",
    majority: str = "majority class",
    n_splits: int = 5,
    random_state: int = 0,
    text_member=None,
) -> AccuracyEstimates:
    """Honest accuracy of each of ``models`` from the seed labels alone, with 95 % intervals and
    warnings in plain words (see :class:`AccuracyEstimates`).

    All models are scored on the same folds (:func:`out_of_fold_predictions`). A
    :class:`MajorityClass` is added under ``majority`` if absent. Warnings: too few seeds for an
    estimate (below ``MIN_SEEDS_FOR_ESTIMATE`` no model is cross-validated), ``primary`` not
    clearly better than the majority class (their intervals overlap), and :func:`panel_warnings`.
    """
    y = _check_targets(evidence, y)
    n_seeds = int((y != UNLABELED).sum())
    warnings = []
    methods: dict[str, MethodEstimate] = {}
    n_folds = 0
    if n_seeds < MIN_SEEDS_FOR_ESTIMATE:
        warnings.append(
            f"Only {n_seeds} seed label{'s' if n_seeds != 1 else ''}: no estimate of accuracy is possible; "
            f"label at least {MIN_SEEDS_FOR_ESTIMATE - n_seeds} more (about {USEFUL_SEEDS} give a useful estimate)."
        )
    else:
        models = dict(models)
        models.setdefault(majority, MajorityClass())
        labeled, predictions, fold_of = out_of_fold_predictions(
            models, evidence, y, n_splits, random_state, text_member
        )
        n_folds = int(fold_of.max()) + 1
        for name, predicted in predictions.items():
            hits = predicted == y[labeled]
            low, high = wilson_interval(int(hits.sum()), len(hits))
            fold_std = float(np.std([hits[fold_of == f].mean() for f in range(n_folds)]))
            methods[name] = MethodEstimate(float(hits.mean()), low, high, fold_std, len(hits))
        if n_seeds < USEFUL_SEEDS // 2:
            warnings.append(f"Only {n_seeds} seed labels: the estimates below are rough (see their 95 % intervals); "
                            f"about {USEFUL_SEEDS} give a useful estimate.")
        main, base = methods.get(primary), methods[majority]
        if main is not None and main.low <= base.high:
            label = evidence.labels[int(np.bincount(y[labeled], minlength=len(evidence.labels)).argmax())]
            warnings.append(
                f"{primary} ({main.accuracy:.2f}, 95 % interval {main.low:.2f}-{main.high:.2f}) is not clearly "
                f"better than always answering '{label}' ({base.accuracy:.2f}) on these {n_seeds} seeds."
            )
    warnings.extend(panel_warnings(evidence, y))
    return AccuracyEstimates(n_seeds, n_folds, primary, methods, tuple(warnings))


# ----------------------------------------------------------------------------------------------
# How good are the labels a model gives, without gold: its calibrated probabilities
# ----------------------------------------------------------------------------------------------

TEMPERATURE_BOUNDS = (0.05, 20.0)
# The bootstrap refits the temperature on every resample: on this grid (1.5 % apart), all at once.
BOOTSTRAP_TEMPERATURES = np.geomspace(*TEMPERATURE_BOUNDS, 400)


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature T whose softmax(log p / T) has the least log-loss on the labels ``y``
    (temperature scaling, Guo et al. 2017): one parameter, so 50 human labels fit it.

    T > 1 softens an over-confident model's probabilities, T < 1 sharpens an under-confident one's;
    the most probable label never changes.
    """
    log_proba = _log_proba(proba)
    y = np.asarray(y, dtype=int)
    rows = np.arange(len(y))

    def log_loss(log_temperature: float) -> float:
        return -float(_log_softmax(log_proba / np.exp(log_temperature))[rows, y].sum())

    low, high = np.log(TEMPERATURE_BOUNDS)
    return float(np.exp(minimize_scalar(log_loss, bounds=(low, high), method="bounded").x))


def _log_proba(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(proba, dtype=float), 1e-12, 1.0))


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    # plain numpy: scipy.special's array-API dispatch costs more than the sums on these small arrays
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): ``proba`` recalibrated by the temperature T (rows sum to 1)."""
    return np.exp(_log_softmax(_log_proba(proba) / temperature))


def _given_probability(gaps: np.ndarray, temperature: float) -> np.ndarray:
    """The given label's probability under softmax(log p / T) per row, from ``gaps`` = log p minus
    the given label's log p in that row."""
    return 1.0 / np.exp(gaps / temperature).sum(axis=1)


@dataclass(frozen=True)
class AccuracyInterval:
    """An estimated accuracy over ``n`` texts with its 95 % interval."""

    accuracy: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class TemperatureCalibration:
    """A temperature fitted on human labels' out-of-fold probabilities, and its bootstrap over those
    labels: what :meth:`expected_accuracy` needs to estimate how right any set of labels is.

    Per bootstrap resample of the human labels: the temperature it fits (``bootstrap_temperatures``)
    and, when ``widened``, how far its mean calibration residual (right or not, minus the calibrated
    probability of the label given) lies from that of all the labels (``bootstrap_residuals``).
    """

    temperature: float
    n_labels: int
    bootstrap_temperatures: tuple[float, ...]
    bootstrap_residuals: tuple[float, ...]
    widened: bool
    random_state: int = 0

    @classmethod
    def fit(cls, seed_proba: np.ndarray, seed_labels: np.ndarray, *, n_bootstrap: int = 500, widen: bool = True,
            random_state: int = 0) -> "TemperatureCalibration":
        """Fit on the human labels ``seed_labels`` and the model's out-of-fold ``seed_proba``."""
        temperature = fit_temperature(seed_proba, seed_labels)
        # Each resample of the labels is a count per label; its log-loss at each grid temperature is
        # then the counts times the labels' own log-losses there.
        seed_log_proba, rows = _log_proba(seed_proba), np.arange(len(seed_labels))
        seed_losses = np.stack([-_log_softmax(seed_log_proba / t)[rows, seed_labels] for t in BOOTSTRAP_TEMPERATURES],
                               axis=1)
        counts = np.random.default_rng(random_state).multinomial(
            len(seed_labels), np.full(len(seed_labels), 1.0 / len(seed_labels)), size=n_bootstrap
        )
        chosen = (counts @ seed_losses).argmin(axis=1)
        residuals = np.zeros(n_bootstrap)
        if widen:
            hits = (seed_proba.argmax(axis=1) == seed_labels).astype(float)
            gaps = seed_log_proba - seed_log_proba.max(axis=1, keepdims=True)
            grid_residuals = np.stack([hits - _given_probability(gaps, t) for t in BOOTSTRAP_TEMPERATURES], axis=1)
            residuals = ((counts * grid_residuals[:, chosen].T).sum(axis=1) / len(seed_labels)
                         - (hits - _given_probability(gaps, temperature)).mean())
        return cls(temperature, len(seed_labels), tuple(float(t) for t in BOOTSTRAP_TEMPERATURES[chosen]),
                   tuple(float(r) for r in residuals), widen, random_state)

    def expected_accuracy(
        self, proba: np.ndarray, given: np.ndarray, groups: Mapping, confidence: float = 0.95
    ) -> dict:
        """How many of the labels ``given`` (label index per row of ``proba``, the model's (n, K)
        probabilities of those texts) are right, per group of rows (``groups``: {key: boolean mask});
        an empty group is estimated at 1 over n = 0 (nothing in it can be wrong).

        The estimate is the mean calibrated probability of the label given. The interval: percentiles
        over the bootstrap resamples, each with its own temperature; ``widened`` adds to each resample
        its residual's deviation (the calibration on n human labels is checked only that closely) and
        a draw of the group's own binomial spread (its texts are finitely many).
        """
        proba, given = np.asarray(proba, dtype=float), np.asarray(given, dtype=int)
        log_proba = _log_proba(proba)
        gaps = log_proba - log_proba[np.arange(len(given)), given][:, None]
        masks = [np.asarray(g, dtype=bool) for g in groups.values()]

        def group_means(temperature: float) -> tuple[np.ndarray, np.ndarray]:
            p = _given_probability(gaps, temperature)
            means = np.array([p[g].mean() if g.any() else 1.0 for g in masks])
            spread = np.array([np.sqrt((p[g] * (1 - p[g])).sum()) / g.sum() if g.any() else 0.0 for g in masks])
            return means, spread

        point, _ = group_means(self.temperature)
        temperatures = np.asarray(self.bootstrap_temperatures)
        used, resample_of = np.unique(temperatures, return_inverse=True)
        means, spreads = (np.array(v)[resample_of] for v in zip(*(group_means(t) for t in used)))
        if self.widened:
            noise = np.random.default_rng(self.random_state + 1).standard_normal(means.shape)
            means = means + np.asarray(self.bootstrap_residuals)[:, None] + noise * spreads
        tail = (1.0 - confidence) / 2 * 100
        low, high = (np.clip(np.percentile(means, q, axis=0), 0.0, 1.0) for q in (tail, 100 - tail))
        return {key: AccuracyInterval(float(point[i]), float(min(low[i], point[i])), float(max(high[i], point[i])),
                                      int(g.sum()))
                for i, (key, g) in enumerate(zip(groups, masks))}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "TemperatureCalibration":
        return cls(**{**data, "bootstrap_temperatures": tuple(data["bootstrap_temperatures"]),
                      "bootstrap_residuals": tuple(data["bootstrap_residuals"])})


@dataclass(frozen=True)
class ReliabilityBin:
    """Seeds whose out-of-fold top probability fell in [low, high): their mean top probability
    (``predicted``) and the share whose top label matched the human label (``observed``)."""

    low: float
    high: float
    predicted: float
    observed: float
    n: int


@dataclass(frozen=True)
class LabeledAccuracy:
    """How right a model's labels are on the texts it labels, estimated from human labels only.

    ``overall``: over all the texts the model labels; ``per_label``: over the texts it gives each
    label (a label it gives to no text is left out). ``temperature``: the calibration fitted on the
    seeds' out-of-fold probabilities; ``n_seeds``: the human labels it rests on;
    ``cross_validated``: the plain out-of-fold accuracy on those seeds, for comparison;
    ``reliability``: the reliability plot of those out-of-fold probabilities as the model gave them
    (:func:`reliability_curve`); ``calibration``: the calibration itself, to estimate other sets of
    the model's labels later (e.g. the labeled set as it grows).
    """

    overall: AccuracyInterval
    per_label: dict[str, AccuracyInterval]
    temperature: float
    n_seeds: int
    cross_validated: float
    reliability: tuple[ReliabilityBin, ...] = ()
    calibration: TemperatureCalibration | None = None

    def labeled_set(self, n_human: int) -> AccuracyInterval:
        """Accuracy of the whole labeled set: ``n_human`` human labels (seeds, reviewed texts), taken
        as right, and the model's labels on the others."""
        return with_human_labels(self.overall, n_human)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "LabeledAccuracy":
        calibration = data.get("calibration")
        return cls(
            overall=AccuracyInterval(**data["overall"]),
            per_label={label: AccuracyInterval(**v) for label, v in data["per_label"].items()},
            temperature=float(data["temperature"]), n_seeds=int(data["n_seeds"]),
            cross_validated=float(data["cross_validated"]),
            reliability=tuple(ReliabilityBin(**b) for b in data.get("reliability", ())),
            calibration=TemperatureCalibration.from_dict(calibration) if calibration else None,
        )


def with_human_labels(estimate: AccuracyInterval, n_human: int) -> AccuracyInterval:
    """Accuracy of ``estimate.n`` model labels together with ``n_human`` human labels, taken as right."""
    n = n_human + estimate.n
    if n == 0:
        return AccuracyInterval(1.0, 1.0, 1.0, 0)
    share = estimate.n / n
    return AccuracyInterval(*(1.0 - share * (1.0 - v) for v in (estimate.accuracy, estimate.low, estimate.high)), n)


def calibrated_accuracy(
    seed_proba: np.ndarray,
    seed_labels: np.ndarray,
    proba: np.ndarray,
    labels: tuple[str, ...] | list[str],
    *,
    n_bootstrap: int = 500,
    confidence: float = 0.95,
    random_state: int = 0,
    widen: bool = True,
) -> LabeledAccuracy:
    """Expected accuracy of labels argmax(``proba``), from human labels only.

    ``seed_proba`` (n_seeds, K): the model's out-of-fold probabilities of the human-labeled texts
    (each from a fit that did not see that text's label), ``seed_labels`` their human labels;
    ``proba`` (n, K): the model's probabilities of the texts it labels. A temperature fitted on the
    seeds calibrates ``proba``; the expected accuracy is then the mean calibrated probability of
    the label given, overall and per label (:meth:`TemperatureCalibration.expected_accuracy`). The
    interval: percentiles over ``n_bootstrap`` resamples of the seeds, each fitting its own
    temperature; ``widen`` (default) adds the calibration residual's own sampling spread and each
    group's binomial spread. Without ``widen`` it covers the temperature's uncertainty only and was
    too narrow (the true accuracy in 3 of 5 seed sets on the paper's TREC and IMDB evidence;
    ``benchmarks/estimate_quality.py`` measures both).
    """
    seed_proba, proba = np.asarray(seed_proba, dtype=float), np.asarray(proba, dtype=float)
    seed_labels = np.asarray(seed_labels, dtype=int)
    if seed_proba.ndim != 2 or proba.ndim != 2 or not seed_proba.shape[1] == proba.shape[1] == len(labels):
        raise AnnotationError(
            f"seed_proba {seed_proba.shape} and proba {proba.shape} must both be (texts, {len(labels)} labels)"
        )
    if len(seed_labels) != len(seed_proba) or len(seed_labels) < 2:
        raise AnnotationError(
            f"calibration needs at least 2 human labels, one per row of seed_proba; got {len(seed_labels)} "
            f"labels for {len(seed_proba)} rows"
        )
    if seed_labels.min() < 0 or seed_labels.max() >= len(labels):
        raise AnnotationError(f"seed_labels must be label indices 0..{len(labels) - 1} for {tuple(labels)}")
    calibration = TemperatureCalibration.fit(seed_proba, seed_labels, n_bootstrap=n_bootstrap, widen=widen,
                                             random_state=random_state)
    given = proba.argmax(axis=1)
    # The texts given any label, then those given each label it gives at all.
    groups = {None: np.ones(len(given), dtype=bool)}
    groups.update({label: given == k for k, label in enumerate(labels) if (given == k).any()})
    intervals = calibration.expected_accuracy(proba, given, groups, confidence)
    overall = intervals.pop(None)
    cross_validated = float((seed_proba.argmax(axis=1) == seed_labels).mean())
    return LabeledAccuracy(overall, intervals, calibration.temperature, len(seed_labels), cross_validated,
                           tuple(reliability_curve(seed_proba, seed_labels)), calibration)


def reliability_curve(
    seed_proba: np.ndarray, seed_labels: np.ndarray, n_bins: int = 5, temperature: float = 1.0
) -> list[ReliabilityBin]:
    """Reliability-plot data from human labels: out-of-fold top-class probability (recalibrated by
    ``temperature``; 1 = as the model gave it) against observed accuracy, in ``n_bins`` equal-width
    bins over [1/K, 1] (a top probability is never below 1/K); empty bins are left out."""
    proba = apply_temperature(seed_proba, temperature)
    top, hits = proba.max(axis=1), proba.argmax(axis=1) == np.asarray(seed_labels)
    edges = np.linspace(1.0 / proba.shape[1], 1.0, n_bins + 1)
    bin_of = np.clip(np.searchsorted(edges, top, side="right") - 1, 0, n_bins - 1)
    return [ReliabilityBin(float(edges[b]), float(edges[b + 1]), float(top[bin_of == b].mean()),
                           float(hits[bin_of == b].mean()), int((bin_of == b).sum()))
            for b in range(n_bins) if (bin_of == b).any()]


def _with_chosen_hyperparameters(model: AnnotationModel, fitted: AnnotationModel) -> AnnotationModel:
    """An unfitted copy of ``model`` that keeps what ``fitted`` chose on all the seeds (MoLAM's C).

    Re-chosen on each fold's 40 seeds, C swings over its whole grid, and with it the confidence of
    the fold models: their calibration then says little about the model fitted on all the seeds
    (measured on TREC: benchmarks/estimate_quality.py). One scalar chosen from a short grid is
    what the held-out seeds' labels reach.
    """
    chosen = getattr(fitted, "C_", None)
    return clone(model).set_params(C=chosen) if chosen is not None and "C" in model.get_params() else clone(model)


def estimate_labeled_accuracy(
    model: AnnotationModel,
    evidence: PanelEvidence,
    y: np.ndarray,
    *,
    text_member=None,
    n_splits: int = 5,
    random_state: int = 0,
    n_bootstrap: int = 500,
    fitted: AnnotationModel | None = None,
    fitted_panel: PanelEvidence | None = None,
    widen: bool = True,
) -> LabeledAccuracy:
    """How right ``model``'s labels are on the texts without a human label, from the human labels
    ``y`` alone (label index per text, -1 where none): :func:`calibrated_accuracy` of the model
    fitted on all of ``y``, calibrated by out-of-fold probabilities of the labeled texts.

    ``evidence``: the LLMs' evidence; ``text_member`` (a :class:`~mollia_core.text_member.TextMember`
    over the same texts) is cross-fitted on ``y`` for the full fit, and again on each fold's labels.
    The fold models keep the hyperparameters the full fit chose (:func:`_with_chosen_hyperparameters`).
    ``fitted``: ``model`` already fitted on ``y`` by :func:`fit_annotator` (as the app fits it), to
    save refitting it, and ``fitted_panel`` the panel that returned (needed with a text member);
    None fits a clone of ``model``. ``widen``: see :func:`calibrated_accuracy`.
    """
    y = _check_targets(evidence, y)
    n_seeds = int((y != UNLABELED).sum())
    if n_seeds < MIN_SEEDS_FOR_ESTIMATE:
        raise AnnotationError(
            f"only {n_seeds} human labels: estimating accuracy needs at least {MIN_SEEDS_FOR_ESTIMATE} "
            f"(about {USEFUL_SEEDS} give a useful estimate); label more texts"
        )
    text_member = text_member if reads_text_member(model) else None
    if fitted is None:
        fitted = clone(model)
        panel = fit_annotator(fitted, evidence, y, text_member)
    elif fitted_panel is None and text_member is not None:
        raise ValueError("give the panel the fitted model was fitted on (fitted_panel) with its text member")
    else:
        panel = fitted_panel if fitted_panel is not None else evidence
    proba = fitted.predict_proba(panel)
    if text_member is not None:
        text_member = copy.copy(text_member)
        text_member.C = text_member.C_  # the text member's C, chosen on all the seeds, kept likewise
    labeled, seed_proba, _ = _out_of_fold_proba(
        {"model": _with_chosen_hyperparameters(model, fitted)}, evidence, y, n_splits, random_state, text_member
    )
    return calibrated_accuracy(seed_proba["model"], y[labeled], proba[y == UNLABELED], evidence.labels,
                               n_bootstrap=n_bootstrap, random_state=random_state, widen=widen)


ANNOTATOR_NAMES = (
    "molam", "molam-llm-only", "molam-paper", "mol", "mol-llm-only", "mol-paper", "vote", "mean",
    "majority-class", "text-classifier", "llm:<name>[:votes]",
)


_META_LEARNERS: dict[str, Callable[..., AnnotationModel]] = {
    "molam": MoLAM,
    "mol": MoL,
    "molam-llm-only": lambda **k: MoLAM(**{"use_text_member": False, **k}),
    "mol-llm-only": lambda **k: MoL(**{"use_text_member": False, **k}),
    "molam-paper": lambda **k: MoLAM(recipe="paper", **k),
    "mol-paper": lambda **k: MoL(recipe="paper", **k),
}


def is_meta_learner(name: str) -> bool:
    """Whether ``name`` (as :func:`make_annotator` reads it) is a MoLAM / MoL method, fitted on the
    seeds by the annotation service, rather than a baseline or a reference annotator."""
    return name.strip().lower() in _META_LEARNERS


def make_annotator(name: str, **kw) -> AnnotationModel:
    """Build an annotation model by name.

    ``"molam"``, ``"mol"`` (MoLLIA's recipe, with the text member where the evidence has one),
    ``"molam-llm-only"``, ``"mol-llm-only"`` (the same on the LLMs' evidence alone), ``"molam-paper"``,
    ``"mol-paper"`` (the paper's recipe: XGBoost, LLM evidence only), ``"vote"``, ``"mean"``,
    ``"majority-class"``, ``"text-classifier"`` (the text member alone), ``"llm:<name>"`` (that LLM's
    probabilities) or ``"llm:<name>:votes"``.
    Keyword arguments go to the model's constructor; those a baseline does not take (``sigma``,
    ``random_state``, ...) are ignored, so one settings dict serves every name.
    """
    key = name.strip().lower()
    if key in _META_LEARNERS:
        return _META_LEARNERS[key](**kw)
    baseline_kw = {"delta": kw["delta"]} if "delta" in kw else {}
    if key == "vote":
        return MajorityVote(**baseline_kw)
    if key == "mean":
        return MeanProbability(**baseline_kw)
    if key == "majority-class":
        return MajorityClass(**baseline_kw)
    if key == "text-classifier":
        from .text_member import TEXT_MEMBER

        return SingleLLM(model=TEXT_MEMBER, **baseline_kw)
    if key.startswith("llm:"):
        model, _, use = name.strip()[4:].partition(":")
        if not model:
            raise AnnotationError("llm:<name> needs the LLM's name or index, e.g. 'llm:yi' or 'llm:0:votes'")
        use = use or kw.get("use", "probs")
        return SingleLLM(model=int(model) if model.isdigit() else model, use=use, **baseline_kw)
    raise AnnotationError(f"unknown annotator {name!r}: choose one of {ANNOTATOR_NAMES}")
