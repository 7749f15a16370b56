"""Which model labels a person should review first (issue 12): the signs that a label is wrong, per
text, and a ranking model over them learned from human labels alone. Plain arrays in and out; the
project's queue (``mollia_core.services.queue``) feeds it from the store.

Signs (columns of :func:`wrong_label_features`, larger = more likely wrong), for a text and the label
the annotator gave it:

- ``molam_doubt``: 1 - MoLAM's probability of its label (Eq. 5);
- ``llm_disagreement``: the share of the panel's LLMs whose vote (most common sampled answer, else
  most probable label) is another label;
- ``text_member_disagreement``: 1 - the text classifier's probability of the label (0 without one);
- ``d_anno``: the previous AL model disagreed with the label when it was given (Eq. 8);
- ``al_disagreement``: the AL model trained on it still predicts another label.

:class:`WrongLabelRanker` learns how to weigh them from texts whose true label a human gave: the seeds,
with MoLAM's out-of-fold label on each (:func:`seed_examples`: right or wrong), and the reviewed texts
(an accept: the label was right; an override to another label: wrong). The seeds carry no AL signs
(the AL model was trained on their human labels, so its agreement there says nothing): those are
missing, and the model learns their weight from the reviewed texts alone. With too few wrong (or
right) examples it falls back to ``molam_doubt``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from .evidence.record import PanelEvidence

FEATURES = ("molam_doubt", "llm_disagreement", "text_member_disagreement", "d_anno", "al_disagreement")
#: Fewer wrong (or right) human-checked examples than this: no ranking model is learned.
MIN_EXAMPLES_PER_OUTCOME = 5
#: Below this MoLAM probability, a reason says how unsure MoLAM is.
UNSURE_PROBABILITY = 0.6


def llm_votes(evidence: PanelEvidence | None) -> np.ndarray:
    """(n, N) each LLM's vote per text: its most common sampled answer (ties and texts it never
    answered with a label: its most probable label), as ``SingleLLM(use="votes")`` decides."""
    from .annotation import SingleLLM

    if evidence is None:
        return np.zeros((0, 0), dtype=int)
    llms = evidence.llm_only()
    unlabeled = np.full(llms.n_texts, -1, dtype=int)
    votes = [SingleLLM(j, use="votes").fit(llms, unlabeled).predict(llms) for j in range(len(llms.models))]
    return np.stack(votes, axis=1) if votes else np.zeros((llms.n_texts, 0), dtype=int)


def wrong_label_features(
    labels: np.ndarray,
    molam_probability: np.ndarray,
    votes: np.ndarray | None = None,
    text_member_proba: np.ndarray | None = None,
    d_anno: np.ndarray | None = None,
    al_labels: np.ndarray | None = None,
) -> np.ndarray:
    """(n, len(FEATURES)) signs that ``labels`` (n,) are wrong, in the order of :data:`FEATURES`.

    ``votes`` (n, N): the LLMs' votes (:func:`llm_votes`); ``text_member_proba`` (n, K); ``d_anno`` (n,)
    with NaN where unknown; ``al_labels`` (n,) the AL model's labels, -1 where unknown. A missing sign
    is NaN (unknown) for d_anno and the AL model, 0 for the panel and the text member (none to ask).
    """
    labels = np.asarray(labels, dtype=int)
    n, rows = len(labels), np.arange(len(labels))
    features = np.zeros((n, len(FEATURES)))
    features[:, 0] = 1.0 - np.asarray(molam_probability, dtype=float)
    if votes is not None and np.size(votes):
        features[:, 1] = (np.asarray(votes) != labels[:, None]).mean(axis=1)
    if text_member_proba is not None:
        features[:, 2] = 1.0 - np.asarray(text_member_proba, dtype=float)[rows, labels]
    features[:, 3] = np.nan if d_anno is None else np.asarray(d_anno, dtype=float)
    if al_labels is None:
        features[:, 4] = np.nan
    else:
        al_labels = np.asarray(al_labels, dtype=int)
        features[:, 4] = np.where(al_labels >= 0, (al_labels != labels).astype(float), np.nan)
    return features


@dataclass(frozen=True)
class SeedExamples:
    """MoLAM's out-of-fold view of the seeds: the label a fit without the seed's label gave it, its
    probability, the text member's out-of-fold probabilities (None without one) and whether the
    label was wrong (against the seed's human label)."""

    index: np.ndarray
    labels: np.ndarray
    probability: np.ndarray
    text_member_proba: np.ndarray | None
    wrong: np.ndarray


def seed_examples(model, evidence: PanelEvidence, y: np.ndarray, *, text_member=None, n_splits: int = 5,
                  random_state: int = 0) -> SeedExamples:
    """Each seed's label from ``model`` (an annotation model, unfitted) fitted with the seed's fold
    hidden (``annotation._out_of_fold_proba``); with ``text_member``, the text classifier is refitted
    in every fold on the fold's labels too, and its out-of-fold probabilities are returned."""
    from .annotation import SingleLLM, _out_of_fold_proba, reads_text_member
    from .text_member import TEXT_MEMBER

    text_member = text_member if reads_text_member(model) else None
    models = {"model": clone(model)}
    if text_member is not None:
        models["text member"] = SingleLLM(TEXT_MEMBER)
    labeled, probas, _ = _out_of_fold_proba(models, evidence, y, n_splits, random_state, text_member)
    proba = probas["model"]
    given = proba.argmax(axis=1)
    return SeedExamples(labeled, given, proba[np.arange(len(given)), given], probas.get("text member"),
                        given != np.asarray(y)[labeled])


class WrongLabelRanker:
    """The chance that a label is wrong, from its signs (:func:`wrong_label_features`).

    ``fit(X, wrong)`` on human-checked examples: a logistic regression (missing signs imputed as 0
    with a missing-indicator, standardised; a sign whose weight comes out negative is dropped and the
    rest refitted, ``used_``) when there are at least ``min_examples`` wrong and right examples;
    otherwise ``learned_`` is False and :meth:`wrong_chance` is ``molam_doubt``.
    ``C`` is fixed (nothing is tuned: the few human labels go to the fit itself).
    """

    def __init__(self, C: float = 1.0, min_examples: int = MIN_EXAMPLES_PER_OUTCOME) -> None:
        self.C = C
        self.min_examples = min_examples

    def fit(self, X: np.ndarray, wrong: np.ndarray) -> "WrongLabelRanker":
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X, wrong = np.asarray(X, dtype=float), np.asarray(wrong, dtype=bool)
        self.n_examples_, self.n_wrong_ = len(wrong), int(wrong.sum())
        self.learned_ = min(self.n_wrong_, self.n_examples_ - self.n_wrong_) >= self.min_examples
        self.used_ = np.ones(X.shape[1], dtype=bool)
        while self.learned_:
            # Every sign is oriented so that larger means more likely wrong: one that gets a negative
            # weight beside the others is noise in the few human-checked examples, and is left out.
            self.model_ = make_pipeline(
                SimpleImputer(strategy="constant", fill_value=0.0, add_indicator=True, keep_empty_features=True),
                StandardScaler(), LogisticRegression(C=self.C, max_iter=1000),
            ).fit(np.where(self.used_, X, 0.0), wrong)
            negative = self.used_ & (self.model_[-1].coef_[0][: X.shape[1]] < 0)
            if not negative.any():
                break
            self.used_ &= ~negative
        return self

    def wrong_chance(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if not self.learned_:
            return np.nan_to_num(X[:, FEATURES.index("molam_doubt")], nan=0.5)
        return self.model_.predict_proba(np.where(self.used_, X, 0.0))[:, 1]

    def weights(self) -> dict[str, float]:
        """The learned weight of each sign (per standard deviation; {} in the fallback)."""
        if not self.learned_:
            return {}
        return dict(zip(FEATURES, np.where(self.used_, self.model_[-1].coef_[0][: len(FEATURES)], 0.0).tolist()))


def wrong_label_reasons(features: np.ndarray, labels: np.ndarray, label_names: tuple[str, ...], n_llms: int,
                        al_labels: np.ndarray | None = None, text_member_labels: np.ndarray | None = None) -> list[str]:
    """Short plain words per text saying why its label (``labels``) may be wrong, from its signs (the
    rows of ``features``); ``al_labels`` / ``text_member_labels``: what the AL model (-1: none) and the
    text classifier say."""
    out = []
    for row, f in enumerate(np.asarray(features, dtype=float)):
        label, parts = int(labels[row]), []
        if al_labels is not None and 0 <= al_labels[row] != label:
            parts.append(f"AL model says {label_names[int(al_labels[row])]}")
        elif f[3] == 1:
            parts.append("the previous AL model disagreed")
        disagreeing = int(round(f[1] * n_llms))
        if disagreeing:
            parts.append(f"{disagreeing} of {n_llms} LLMs disagree")
        if text_member_labels is not None and text_member_labels[row] != label:
            parts.append(f"text classifier says {label_names[int(text_member_labels[row])]}")
        if 1.0 - f[0] < UNSURE_PROBABILITY:
            parts.append(f"MoLAM {1.0 - f[0]:.0%} sure")
        out.append("; ".join(parts) if parts else "no sign of a wrong label")
    return out
