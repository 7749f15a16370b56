"""The review queue (issue 12): the model-labeled texts of L that no human has reviewed, most likely
wrong first, and the review budget per iteration.

The chance that a label is wrong combines its signs (``mollia_core.review_queue``: MoLAM's doubt, the
LLMs' and the text classifier's disagreement, d_anno, the AL model's disagreement) with weights learned
on human labels only: the seeds, by MoLAM's out-of-fold labels on them
(:meth:`AnnotationService.seed_examples`), and the reviewed texts (accepted: the label was right;
overridden to another label: wrong). A reviewed text's signs are the ones it had before its human
label reached any training: its row keeps MoLAM's label, probability and flag, and the AL model is
the one of the iteration before its review was first trained on. Gold labels are never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..review_queue import WrongLabelRanker, llm_votes, wrong_label_features, wrong_label_reasons
from ..store import RESPONSE_KINDS, AnnotationRow, ProjectStore
from .annotation import AnnotationService
from .dataset import DatasetService
from .errors import ProjectError
from .panel import PanelService

REVIEW_BUDGET_SETTING = "review_budget"
DEFAULT_REVIEW_BUDGET = 10
#: The label source of the gold oracle (the upper reference): its labels are nobody's to review.
_GOLD_SOURCE = "gold"
QUEUE_COLUMNS = ["id", "text", "label", "molam_probability", "al_label", "al_probability", "wrong_chance", "reasons",
                 "iteration"]


@dataclass(frozen=True)
class QueueRanking:
    """How the queue is ordered: ``learned`` (a ranking model over the signs, with its ``weights``)
    or not (1 - MoLAM's probability), on how many human-checked examples, and in plain words."""

    learned: bool
    n_seed_examples: int
    n_reviewed_examples: int
    n_wrong: int
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def message(self) -> str:
        examples = (f"{self.n_seed_examples} seed labels (MoLAM's cross-validated labels on them) and "
                    f"{self.n_reviewed_examples} reviewed texts; MoLAM was wrong on {self.n_wrong} of all these")
        if self.learned:
            return f"Ordered by the chance of a wrong label, learned from {examples}."
        return (f"Ordered by 1 - MoLAM's probability: too few wrong labels among the human-checked ones to learn "
                f"more ({examples}).")


class ReviewQueueService:
    """The review queue over one project's store (``project.queue``)."""

    def __init__(self, store: ProjectStore, dataset: DatasetService, panel: PanelService,
                 annotation: AnnotationService) -> None:
        self.store = store
        self.dataset = dataset
        self.panel = panel
        self.annotation = annotation
        self._votes_cache: tuple[object, np.ndarray] | None = None

    # ------------------------------------------------------------------ the budget
    def budget(self) -> int:
        """How many texts to review per iteration (default 10)."""
        return int(self.store.get_setting(REVIEW_BUDGET_SETTING, DEFAULT_REVIEW_BUDGET))

    def set_budget(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ProjectError(f"the review budget is a number of texts per iteration (0 or more), got {k!r}")
        self.store.set_setting(REVIEW_BUDGET_SETTING, int(k))

    # ------------------------------------------------------------------ the queue
    def ranked(self, budget: int | None = None) -> pd.DataFrame:
        """The model-labeled texts of L no human has reviewed, most likely wrong first (columns
        ``QUEUE_COLUMNS``); ``budget``: only the first ``budget`` of them (None: all).
        ``wrong_chance``: the estimated chance that ``label`` is wrong; ``al_label`` /
        ``al_probability``: the latest AL model's label and its probability (None before training).
        How the order was made: :meth:`ranking` (also in the frame's ``attrs["ranking"]``)."""
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0):
            raise ProjectError(f"budget must be a number of texts (0 or more) or None for all, got {budget!r}")
        ranker, ranking = self._ranker()
        rows = [r for r in self.store.annotations() if not r.is_human and r.source != _GOLD_SOURCE]
        latest = self.store.latest_predictions()
        index = np.array([r.text_index for r in rows], dtype=int)
        al_labels = latest.labels[index] if latest is not None else np.full(len(rows), -1)
        features = self._features(rows, al_labels)
        chance = ranker.wrong_chance(features) if len(rows) else np.zeros(0)
        labels = self.dataset.labels
        fit = self.annotation.result()
        member = fit.text_member_proba[index].argmax(axis=1) if fit is not None and fit.text_member_proba is not None \
            else None
        n_llms = len(self.panel.models())
        ids, texts = self.dataset.text_ids, self.dataset.texts
        frame = pd.DataFrame({
            "id": [ids[i] for i in index],
            "text": [texts[i] for i in index],
            "label": [labels[r.label] for r in rows],
            "molam_probability": [r.probability for r in rows],
            "al_label": [labels[int(k)] if k >= 0 else None for k in al_labels],
            "al_probability": [float(latest.proba[i].max()) if latest is not None and latest.proba is not None else None
                               for i in index],
            "wrong_chance": chance,
            "reasons": wrong_label_reasons(features, np.array([r.label for r in rows], dtype=int), labels, n_llms,
                                           al_labels, member),
            "iteration": [r.iteration for r in rows],
        }, columns=QUEUE_COLUMNS)
        # most likely wrong first; ties (the fallback's equal probabilities): the earlier iteration, text order
        order = np.lexsort((index, frame["iteration"].to_numpy(), -frame["wrong_chance"].to_numpy()))
        frame = frame.iloc[order].reset_index(drop=True)
        if budget is not None:
            frame = frame.head(int(budget))
        frame.attrs["ranking"] = ranking.message
        return frame

    def ranking(self) -> QueueRanking:
        """How :meth:`ranked` orders the queue now."""
        return self._ranker()[1]

    # ------------------------------------------------------------------ signs and the ranking model
    def _features(self, rows: list[AnnotationRow], al_labels: np.ndarray) -> np.ndarray:
        """The signs (``review_queue.FEATURES``) of the label each row's annotator gave its text."""
        index = np.array([r.text_index for r in rows], dtype=int)
        given = np.array([r.label if r.annotator_label is None else r.annotator_label for r in rows], dtype=int)
        fit = self.annotation.result()
        member = fit.text_member_proba[index] if fit is not None and fit.text_member_proba is not None else None
        probability = np.array([np.nan if r.probability is None else r.probability for r in rows], dtype=float)
        d_anno = np.array([np.nan if r.d_anno is None else float(r.d_anno) for r in rows], dtype=float)
        return wrong_label_features(given, probability, self._votes()[index] if len(index) else None, member, d_anno,
                                    al_labels)

    def _votes(self) -> np.ndarray:
        evidence = self.panel.evidence(partial=True)  # the panel service keeps one evidence object per state
        if evidence is None:
            return np.zeros((self.store.n_texts, 0), dtype=int)
        if self._votes_cache is None or self._votes_cache[0] is not evidence:
            self._votes_cache = (evidence, llm_votes(evidence))
        return self._votes_cache[1]

    def _reviewed_examples(self) -> tuple[np.ndarray, np.ndarray]:
        """Signs and outcome (wrong: the human's label is another) of every reviewed model label."""
        rows = [r for r in self.store.annotations()
                if r.source in RESPONSE_KINDS and r.annotator_label is not None and r.probability is not None]
        first_applied: dict[int, int] = {}
        for response in self.store.responses():
            if response.applied_iteration is not None:
                first_applied.setdefault(response.text_index, response.applied_iteration)
        latest = self.store.latest_predictions()
        cache: dict[int, np.ndarray | None] = {}

        def al_label(text_index: int) -> int:
            # the AL model trained just before this text's human label first reached a training
            applied = first_applied.get(text_index)
            if applied is None:
                predictions = latest.labels if latest is not None else None
            else:
                if applied - 1 not in cache:
                    record = self.store.predictions(applied - 1)
                    cache[applied - 1] = None if record is None else record.labels
                predictions = cache[applied - 1]
            return -1 if predictions is None else int(predictions[text_index])

        al_labels = np.array([al_label(r.text_index) for r in rows], dtype=int)
        wrong = np.array([r.label != r.annotator_label for r in rows], dtype=bool)
        return self._features(rows, al_labels), wrong

    def _ranker(self) -> tuple[WrongLabelRanker, QueueRanking]:
        seeds = self.annotation.seed_examples()
        parts, outcomes = [], []
        n_seeds = 0
        if seeds is not None:
            votes = self._votes()[seeds.index]
            parts.append(wrong_label_features(seeds.labels, seeds.probability, votes, seeds.text_member_proba))
            outcomes.append(seeds.wrong)
            n_seeds = len(seeds.index)
        reviewed, reviewed_wrong = self._reviewed_examples()
        parts.append(reviewed)
        outcomes.append(reviewed_wrong)
        X, wrong = np.vstack(parts), np.concatenate(outcomes)
        ranker = WrongLabelRanker().fit(X, wrong)
        return ranker, QueueRanking(ranker.learned_, n_seeds, len(reviewed_wrong), int(wrong.sum()), ranker.weights())
