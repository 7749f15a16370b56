"""Evidence of LLM annotators (paper Eq. 1-3) and the MoLAM feature vector (Eq. 4).

One ``EvidenceRecord`` is what one LLM said about one text. A ``PanelEvidence``
stacks the records of N LLMs on n texts into arrays, the form every annotation
model, baseline and benchmark consumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class EvidenceRecord:
    """What one LLM said about one text, over a fixed label list.

    label_probs:  z (Eq. 1), the probability of each label as the answer; sums to <= 1
                  (exact scoring sums to 1 over the label set after renormalisation).
    vote_shares:  c (Eq. 2), share of the T sampled answers naming each label; sums to
                  1 - no_label_share.
    no_label_share: share of sampled answers that named no label or several.
    answers:      the raw sampled answers, kept for the review page.
    """

    text_id: str
    model: str
    labels: tuple[str, ...]
    label_probs: np.ndarray
    vote_shares: np.ndarray
    no_label_share: float = 0.0
    answers: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PanelEvidence:
    """Evidence of a panel of N LLMs on n texts over K labels.

    label_probs (z) and vote_shares (c) have shape (n, N, K); no_label_share (n, N).
    ``answers[i][j]`` holds model j's raw sampled answers on text i, when known.
    ``non_llm_members`` names members that are not LLMs (the text classifier of
    :mod:`mollia_core.text_member`): they are evidence for the meta-learner, but the negative
    labels y- (Eq. 6) and the LLM baselines read the LLMs alone (:meth:`llm_only`).
    """

    labels: tuple[str, ...]
    models: tuple[str, ...]
    label_probs: np.ndarray
    vote_shares: np.ndarray
    no_label_share: np.ndarray | None = None
    text_ids: tuple[str, ...] | None = None
    answers: list[list[tuple[str, ...]]] | None = None
    non_llm_members: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n, n_models, n_labels = self.label_probs.shape
        if self.vote_shares.shape != self.label_probs.shape:
            raise ValueError(
                f"vote_shares shape {self.vote_shares.shape} != label_probs shape {self.label_probs.shape}"
            )
        if n_models != len(self.models) or n_labels != len(self.labels):
            raise ValueError(
                f"evidence arrays are (n={n}, N={n_models}, K={n_labels}) but "
                f"{len(self.models)} models and {len(self.labels)} labels were named"
            )
        if self.no_label_share is None:
            object.__setattr__(self, "no_label_share", np.clip(1.0 - self.vote_shares.sum(-1), 0.0, 1.0))
        unknown = set(self.non_llm_members) - set(self.models)
        if unknown:
            raise ValueError(f"non-LLM members {sorted(unknown)} are not among the models {self.models}")

    @property
    def llm_models(self) -> tuple[str, ...]:
        """The members that are LLMs (every member but the ``non_llm_members``)."""
        return tuple(m for m in self.models if m not in self.non_llm_members)

    def llm_only(self) -> "PanelEvidence":
        """The LLMs' evidence alone: the panel as the paper defines it."""
        return self if not self.non_llm_members else self.select_models(self.llm_models)

    @property
    def n_texts(self) -> int:
        return self.label_probs.shape[0]

    def __len__(self) -> int:
        return self.n_texts

    def features(self) -> np.ndarray:
        """h(x) = [z_1, c_1, ..., z_N, c_N] (Eq. 4), shape (n, 2NK)."""
        return self.meta_x().reshape(self.n_texts, -1)

    def meta_x(self) -> np.ndarray:
        """The paper's layout: shape (n, 2N, K), rows z_1, c_1, z_2, c_2, ..."""
        stacked = np.stack([self.label_probs, self.vote_shares], axis=2)  # (n, N, 2, K)
        return stacked.reshape(self.n_texts, 2 * len(self.models), len(self.labels))

    @classmethod
    def from_meta_x(
        cls,
        meta_x: np.ndarray,
        labels: Sequence[str],
        models: Sequence[str],
        text_ids: Sequence[str] | None = None,
    ) -> "PanelEvidence":
        n, rows, k = meta_x.shape
        if rows != 2 * len(models):
            raise ValueError(f"meta_x has {rows} rows per text, expected 2 x {len(models)} models")
        pairs = meta_x.reshape(n, len(models), 2, k)
        return cls(
            labels=tuple(labels),
            models=tuple(models),
            label_probs=np.ascontiguousarray(pairs[:, :, 0, :]),
            vote_shares=np.ascontiguousarray(pairs[:, :, 1, :]),
            text_ids=tuple(text_ids) if text_ids is not None else None,
        )

    @classmethod
    def from_records(cls, records: Sequence[Sequence[EvidenceRecord]]) -> "PanelEvidence":
        """Stack ``records[i][j]`` (text i, model j) into a panel."""
        if not records or not records[0]:
            raise ValueError("no evidence records to stack")
        first = records[0]
        labels = first[0].labels
        models = tuple(r.model for r in first)
        for row in records:
            if tuple(r.model for r in row) != models or any(r.labels != labels for r in row):
                raise ValueError("every text needs evidence from the same models over the same labels")
        return cls(
            labels=labels,
            models=models,
            label_probs=np.array([[r.label_probs for r in row] for row in records], dtype=float),
            vote_shares=np.array([[r.vote_shares for r in row] for row in records], dtype=float),
            no_label_share=np.array([[r.no_label_share for r in row] for row in records], dtype=float),
            text_ids=tuple(row[0].text_id for row in records),
            answers=[[tuple(r.answers) for r in row] for row in records],
        )

    def subset(self, index: np.ndarray | Sequence[int]) -> "PanelEvidence":
        index = np.asarray(index, dtype=int)
        return PanelEvidence(
            labels=self.labels,
            models=self.models,
            label_probs=self.label_probs[index],
            vote_shares=self.vote_shares[index],
            no_label_share=self.no_label_share[index],
            text_ids=tuple(self.text_ids[i] for i in index) if self.text_ids is not None else None,
            answers=[self.answers[i] for i in index] if self.answers is not None else None,
            non_llm_members=self.non_llm_members,
        )

    def select_models(self, models: Sequence[str]) -> "PanelEvidence":
        cols = [self.models.index(m) for m in models]
        return PanelEvidence(
            labels=self.labels,
            models=tuple(models),
            label_probs=self.label_probs[:, cols],
            vote_shares=self.vote_shares[:, cols],
            no_label_share=self.no_label_share[:, cols],
            text_ids=self.text_ids,
            answers=[[row[c] for c in cols] for row in self.answers] if self.answers is not None else None,
            non_llm_members=tuple(m for m in self.non_llm_members if m in models),
        )
