"""What the Review and Export pages show: the labeled set with its filters, one text's evidence,
human overrides, MoLAM's annotation of every text, and the export table.

A text's MoLAM label, probability and negative labels are read from one place, the annotation
service's fit (``AnnotationService.result``); the loop labels its queries with that same fit. A
text's current label (and its source, iteration and flag) is its row of the labeled set
(``ProjectStore.annotations``): a seed, MoLAM's label written by the loop, or a human override.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..export import EXPORT_COLUMNS, normalize_export_frame, original_column_name
from ..store import ProjectStore, StoreError
from .annotation import AnnotationService
from .dataset import DatasetService
from .errors import ProjectError
from .panel import PanelService


@dataclass
class TextEvidence:
    """Everything known about one text, the way the paper's Fig. 12 shows it."""

    text_id: str
    text: str
    labels: tuple[str, ...]
    models: tuple[str, ...]
    label_probs: np.ndarray | None  # (N, K): z per LLM
    vote_shares: np.ndarray | None  # (N, K): c per LLM
    no_label_share: np.ndarray | None  # (N,)
    answers: list[tuple[str, ...]]
    vote_label: str | None
    mean_label: str | None
    molam_label: str | None
    molam_probability: float | None
    negative_labels: list[str]
    flag: bool | None
    label: str | None
    source: str | None
    iteration: int | None
    overrides: list[dict] = field(default_factory=list)
    # The AL model's prediction of the latest trained iteration, beside MoLAM's label (None before any training).
    al_label: str | None = None
    al_probability: float | None = None


class ReviewService:
    """The review and export view models of one project's store."""

    def __init__(self, store: ProjectStore, dataset: DatasetService, panel: PanelService,
                 annotation: AnnotationService) -> None:
        self.store = store
        self.dataset = dataset
        self.panel = panel
        self.annotation = annotation

    def _labeled_rows(self) -> pd.DataFrame:
        """The labeled set L as a frame in text order."""
        labels, ids, texts = self.dataset.labels, self.dataset.text_ids, self.dataset.texts
        rows = []
        for a in self.store.annotations():
            rows.append(
                {
                    "id": ids[a.text_index],
                    "text": texts[a.text_index],
                    "label": labels[a.label],
                    "source": a.source,
                    "molam_probability": a.probability,
                    "negative_labels": [labels[k] for k in a.negatives],
                    "flag": bool(a.d_anno) if a.d_anno is not None else False,
                    "iteration": a.iteration,
                    "annotator_label": labels[a.annotator_label] if a.annotator_label is not None else None,
                    "updated_at": a.updated_at,
                    "_index": a.text_index,
                }
            )
        columns = list(EXPORT_COLUMNS) + ["annotator_label", "updated_at", "_index"]
        return pd.DataFrame(rows, columns=columns)

    def labeled_texts(
        self,
        iterations: Sequence[int] | None = None,
        labels: Sequence[str] | None = None,
        sources: Sequence[str] | None = None,
        min_probability: float | None = None,
        max_probability: float | None = None,
        flagged: bool | None = None,
    ) -> pd.DataFrame:
        """Every labeled text (seeds, MoLAM's labels, overrides) with the review filters applied.

        Columns: id, text, label, source, molam_probability, negative_labels, flag, iteration,
        annotator_label (MoLAM's y+ kept after an override), updated_at. A probability filter
        keeps human labels (they have none) out.
        """
        frame = self._labeled_rows()
        keep = np.ones(len(frame), dtype=bool)
        if iterations is not None:
            keep &= frame["iteration"].isin(list(iterations)).to_numpy()
        if labels is not None:
            keep &= frame["label"].isin(list(labels)).to_numpy()
        if sources is not None:
            keep &= frame["source"].isin(list(sources)).to_numpy()
        probability = pd.to_numeric(frame["molam_probability"], errors="coerce")
        if min_probability is not None:
            keep &= (probability >= min_probability).to_numpy()
        if max_probability is not None:
            keep &= (probability <= max_probability).to_numpy()
        if flagged is not None:
            keep &= (frame["flag"] == flagged).to_numpy()
        return frame[keep].drop(columns="_index").reset_index(drop=True)

    def text_evidence(self, text_id: str) -> TextEvidence:
        """One text's evidence (per-LLM z, c, raw answers), MoLAM's view of it and its current label."""
        index = self.dataset.index_of(text_id)
        labels = self.dataset.labels
        panel = self.panel.evidence(partial=True)
        if panel is not None and index not in set(self.panel.covered_indices().tolist()):
            panel = None  # not answered by every LLM yet (evidence on demand)
        models = panel.models if panel is not None else ()
        z = panel.label_probs[index] if panel is not None else None
        c = panel.vote_shares[index] if panel is not None else None
        none = panel.no_label_share[index] if panel is not None else None
        answers = list(panel.answers[index]) if panel is not None and panel.answers is not None else []
        fit = self.annotation.result()
        if panel is not None and fit is not None and fit.text_member_proba is not None:
            from ..text_member import TEXT_MEMBER  # the text classifier of the last MoLAM fit, beside the LLMs

            models, answers = models + (TEXT_MEMBER,), (answers + [()] if answers else [])
            z, c = np.vstack([z, fit.text_member_proba[index]]), np.vstack([c, fit.text_member_proba[index]])
            none = np.append(none, 0.0)
        molam_label = molam_probability = vote_label = mean_label = None
        negatives: list[str] = []
        if fit is not None and fit.labels[index] >= 0:
            molam_label = labels[int(fit.labels[index])]
            molam_probability = float(fit.probability[index])
            negatives = [labels[j] for j in np.flatnonzero(fit.negatives[index])]
            vote_label = labels[int(fit.vote[index])]
            mean_label = labels[int(fit.mean[index])]
        annotation = self.store.annotation(index)
        overrides = [
            {"at": o.created_at, "from": labels[o.old_label] if o.old_label is not None else None,
             "to": labels[o.new_label], "used_from_iteration": o.applied_iteration}
            for o in self.store.overrides() if o.text_index == index
        ]
        predictions = self.store.latest_predictions()
        al_label = al_probability = None
        if predictions is not None:
            al_label = labels[int(predictions.labels[index])]
            al_probability = float(predictions.proba[index, int(predictions.labels[index])])
        return TextEvidence(
            text_id=text_id,
            text=self.dataset.texts[index],
            labels=labels,
            models=models,
            label_probs=z,
            vote_shares=c,
            no_label_share=none,
            answers=answers,
            vote_label=vote_label,
            mean_label=mean_label,
            molam_label=molam_label,
            molam_probability=molam_probability,
            negative_labels=negatives,
            flag=annotation.d_anno if annotation is not None else None,
            label=labels[annotation.label] if annotation is not None else None,
            source=annotation.source if annotation is not None else None,
            iteration=annotation.iteration if annotation is not None else None,
            overrides=overrides,
            al_label=al_label,
            al_probability=al_probability,
        )

    def override(self, text_id: str, label: str) -> None:
        """A human sets a text's label: stored with its time, shown as human-labeled (source
        ``override``), used by every training from the next one on."""
        index, label_index = self.dataset.index_of(text_id), self.dataset.label_index(label)
        try:
            self.store.add_override(index, label_index)
        except StoreError as exc:
            raise ProjectError(str(exc)) from None

    def accept(self, text_id: str) -> None:
        """A human accepts the model's suggestion for a text of L: it becomes a human label (source
        ``accept``), used by every training from the next one on."""
        index = self.dataset.index_of(text_id)
        try:
            self.store.accept(index)
        except StoreError as exc:
            raise ProjectError(f"{text_id!r}: {exc}") from None

    def accept_many(self, text_ids: Sequence[str]) -> int:
        """Accept the model's suggestion for every listed text that has one and no human label yet
        (seeds and reviewed texts are left as they are), in one commit; returns how many were accepted."""
        indices = [self.dataset.index_of(text_id) for text_id in text_ids]
        with self.store.transaction():
            current = {a.text_index: a for a in self.store.annotations()}
            acceptable = [i for i in dict.fromkeys(indices)
                          if i in current and not current[i].is_human and current[i].annotator_label is not None]
            for index in acceptable:
                self.store.accept(index)
        return len(acceptable)

    def undo(self, text_id: str) -> None:
        """Withdraw the text's latest accept or override: it goes back to the model's suggestion (or
        leaves L if a human review alone put it there). Nothing to undo (no review, or a seed label:
        change seeds on the Data page) is a :class:`ProjectError`."""
        if self.store.undo_response(self.dataset.index_of(text_id)) is None:
            raise ProjectError(f"{text_id!r} has no accept or override to undo")

    def annotation_frame(self) -> pd.DataFrame:
        """MoLAM's annotation of every text: text_id, label, probability, negatives (list), vote and mean label;
        a text the panel has not answered (evidence on demand) has no label (None) and no probability."""
        labels = self.dataset.labels
        fit = self.annotation.result()
        if fit is None:
            raise ProjectError("MoLAM is not fitted yet: fit it on the MoLAM page")

        def named(values) -> list:
            return [labels[k] if k >= 0 else None for k in values]

        return pd.DataFrame(
            {
                "text_id": self.dataset.text_ids,
                "label": named(fit.labels),
                "probability": fit.probability,
                "negatives": [[labels[k] for k in np.flatnonzero(row)] for row in fit.negatives],
                "vote_label": named(fit.vote),
                "mean_label": named(fit.mean),
            }
        )

    def export_frame(self, scope: str = "labeled") -> pd.DataFrame:
        """The export: ``EXPORT_COLUMNS`` then the user's other original columns (all but the
        text and id columns, which are ``text`` and ``id``).

        scope ``labeled``: the labeled set L (seeds, MoLAM's labels, overrides).
        scope ``all``: every text MoLAM has labeled; those outside L get MoLAM's label from its fit (source
        ``molam``, no iteration); texts MoLAM has not seen (fitted before they were added, or not answered by
        the panel: evidence on demand) are left out.
        """
        if scope not in ("labeled", "all"):
            raise ProjectError(f"unknown export scope {scope!r}: use 'labeled' or 'all'")
        frame = self._labeled_rows()
        if scope == "all" and self.annotation.is_annotated():
            labeled = set(frame["_index"])
            annotation = self.annotation_frame()
            rest = [i for i in np.flatnonzero(self.annotation.result().labels >= 0).tolist() if i not in labeled]
            texts = self.dataset.texts
            extra = pd.DataFrame(
                {
                    "id": annotation["text_id"].iloc[rest].to_numpy(),
                    "text": [texts[i] for i in rest],
                    "label": annotation["label"].iloc[rest].to_numpy(),
                    "source": "molam",
                    "molam_probability": annotation["probability"].iloc[rest].to_numpy(),
                    "negative_labels": annotation["negatives"].iloc[rest].tolist(),
                    "flag": False,
                    "iteration": pd.array([pd.NA] * len(rest), dtype="Int64"),
                    "_index": rest,
                }
            )
            frame = pd.concat([frame, extra], ignore_index=True).sort_values("_index", kind="stable")
        original = self.dataset.original_frame()
        config = self.dataset.config
        # The text and id columns are already there, as ``text`` and ``id``.
        original = original.drop(columns=[c for c in (config["text_column"], config["id_column"]) if c])
        original.columns = [original_column_name(c) for c in original.columns]
        original = original.iloc[frame["_index"].to_numpy()].reset_index(drop=True)
        out = pd.concat([frame[list(EXPORT_COLUMNS)].reset_index(drop=True), original], axis=1)
        return normalize_export_frame(out)
