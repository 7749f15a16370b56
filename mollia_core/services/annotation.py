"""The annotation model (MoLAM, DESIGN §1): one fit per state of the seed labels, its report and
its honest accuracy estimates, and the fit handed to the AL loop as its annotator.

MoLAM is fitted on the seed labels (the human labels given before the loop; the loop refuses seed
changes once it has started, and later overrides train the AL model, not MoLAM). The fit, with
the seed labels it was fitted on, is stored (``ProjectStore.put_annotation_result``); the loop
labels its queries with that same fit (:meth:`AnnotationService.annotator_for_loop`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np

from ..annotation import Annotation
from ..evidence import PanelEvidence
from ..store import AnnotationResult, ProjectStore
from .dataset import DatasetService
from .errors import ProjectError
from .panel import PanelService


@dataclass(frozen=True)
class AnnotatorSettings:
    """MoLAM's settings (DESIGN §1): sigma = self-training threshold, delta = negative-label rule."""

    method: str = "molam"
    sigma: float = 0.9
    delta: float = 0.001
    random_state: int = 0


@dataclass
class FitReport:
    """What fitting the annotation model showed: honest CV accuracy on the seeds per method."""

    cv_accuracy: dict[str, tuple[float, float]]
    n_seeds: int
    n_with_negatives: int
    fitted_at: str
    # annotation.AccuracyEstimates.to_dict(): intervals and plain-words warnings (None: fitted without cv)
    estimates: dict | None = None
    uses_text_member: bool = False

    def accuracy_estimates(self):
        """The stored :class:`~mollia_core.annotation.AccuracyEstimates`, or None."""
        from ..annotation import AccuracyEstimates

        return AccuracyEstimates.from_dict(self.estimates) if self.estimates else None


def make_molam(settings: AnnotatorSettings):
    from ..annotation import make_annotator

    return make_annotator(settings.method, sigma=settings.sigma, delta=settings.delta, random_state=settings.random_state)


class StoredFitAnnotator:
    """The stored MoLAM fit as the loop's annotator: ``fit`` does nothing (the annotation service
    fitted it), ``annotate`` returns the fit's outputs for the texts of the evidence, by text id."""

    def __init__(self, result: AnnotationResult, text_ids: Sequence[str]) -> None:
        self.result = result
        self._index = {text_id: i for i, text_id in enumerate(text_ids)}

    def fit(self, evidence: PanelEvidence, y: np.ndarray) -> "StoredFitAnnotator":
        return self

    def annotate(self, evidence: PanelEvidence) -> Annotation:
        unknown = [t for t in (evidence.text_ids or ()) if t not in self._index]
        if evidence.text_ids is None or unknown:
            raise ProjectError("MoLAM's fit does not cover these texts: fit MoLAM again on the MoLAM page")
        rows = np.array([self._index[t] for t in evidence.text_ids], dtype=int)
        result = self.result
        return Annotation(result.labels[rows], result.probability[rows], result.proba[rows],
                          np.asarray(result.negatives, dtype=bool)[rows])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class AnnotationService:
    """MoLAM over one project's seeds and panel evidence."""

    def __init__(self, store: ProjectStore, dataset: DatasetService, panel: PanelService) -> None:
        self.store = store
        self.dataset = dataset
        self.panel = panel
        self._text_member_cache: tuple[Any, Any] | None = None

    def settings(self) -> AnnotatorSettings:
        """The settings of the last fit (the defaults before one)."""
        return AnnotatorSettings(**self.store.get_setting("annotator_settings", {}))

    def llm_seed_accuracy(self) -> dict[str, float]:
        """Zero-shot accuracy of each LLM (its most probable label, z) on the seed labels; nothing is fitted."""
        evidence, y = self.panel.require_evidence(), self.dataset.require_seeds()
        from ..annotation import SingleLLM

        seeded = np.flatnonzero(y >= 0)
        subset = evidence.subset(seeded)
        return {
            name: float((SingleLLM(j).fit(subset, y[seeded]).annotate(subset).labels == y[seeded]).mean())
            for j, name in enumerate(evidence.models)
        }

    def fit(self, settings: AnnotatorSettings | None = None, cv: bool = True) -> FitReport:
        """Fit MoLAM on the seeds (self-training on the other texts), annotate every text and store it.

        The text classifier trained on the seeds (``mollia_core.text_member``) joins the panel
        when the method reads it (the default; "molam-llm-only" / "molam-paper" do not).
        With ``cv``, also estimate accuracy honestly on the seeds by cross-validation
        (``annotation.estimate_accuracy``, 95 % intervals and warnings): MoLAM beside the majority
        class, the text member, each single LLM, majority vote and the mean of probabilities, all on
        the same folds. With fewer than 5 seeds MoLAM is fitted and the report says that no
        estimate is possible. Nothing is chosen on the validation split.
        """
        settings = settings or self.settings()
        evidence, y = self.panel.require_evidence(), self.dataset.require_seeds()
        from .. import annotation as ann
        from ..encoder import EncoderError

        molam = make_molam(settings)
        try:
            text_member = self._text_member(settings.random_state) if ann.reads_text_member(molam) else None
            panel = text_member.add_to(evidence, y) if text_member is not None else evidence
            molam.fit(panel, y)
            result = molam.annotate(panel)
            estimates = None
            if cv:
                estimates = ann.estimate_accuracy(
                    self._comparison_models(settings, panel), evidence, y,
                    random_state=settings.random_state, text_member=text_member,
                )
        except (ann.AnnotationError, EncoderError) as exc:
            raise ProjectError(str(exc)) from None
        vote = ann.MajorityVote().fit(evidence, y).annotate(evidence)
        mean = ann.MeanProbability().fit(evidence, y).annotate(evidence)
        cv_accuracy: dict[str, tuple[float, float]] = {}
        if estimates is not None:
            cv_accuracy = {name: (e.accuracy, e.fold_std) for name, e in estimates.methods.items()}
        negative_mask = np.asarray(result.negative_mask, dtype=bool)
        report = FitReport(
            cv_accuracy=cv_accuracy,
            n_seeds=int((y >= 0).sum()),
            n_with_negatives=int(negative_mask.any(axis=1).sum()),
            fitted_at=_now(),
            estimates=estimates.to_dict() if estimates is not None else None,
            uses_text_member=text_member is not None,
        )
        stored = AnnotationResult(
            labels=np.asarray(result.labels, dtype=int),
            probability=np.asarray(result.probability, dtype=float),
            proba=np.asarray(result.proba, dtype=float),
            negatives=negative_mask,
            vote=np.asarray(vote.labels, dtype=int),
            mean=np.asarray(mean.labels, dtype=int),
            # The Review page shows the text member beside the LLMs.
            text_member_proba=panel.label_probs[:, -1] if text_member is not None else None,
            fit_y=np.asarray(y, dtype=int),
        )
        with self.store.transaction():
            self.store.put_annotation_result(stored)
            self.store.update_settings({"annotator_settings": asdict(settings), "fit_report": asdict(report)})
        return report

    def _text_member(self, random_state: int):
        """The text member over this project's texts (featurised once per process and dataset)."""
        from ..text_member import TextMember

        key = (tuple(self.dataset.text_ids), random_state)
        if self._text_member_cache is None or self._text_member_cache[0] != key:
            self._text_member_cache = (key, TextMember(self.dataset.texts, random_state=random_state))
        return self._text_member_cache[1]

    def _comparison_models(self, settings: AnnotatorSettings, evidence: PanelEvidence) -> dict[str, Any]:
        from .. import annotation as ann
        from ..text_member import TEXT_MEMBER

        models: dict[str, Any] = {"MoLAM": make_molam(settings), "majority class": ann.MajorityClass()}
        if TEXT_MEMBER in evidence.models:
            models["text classifier"] = ann.SingleLLM(TEXT_MEMBER)
        models["majority vote"] = ann.MajorityVote()
        models["mean probability"] = ann.MeanProbability()
        for name in evidence.llm_models:
            models[name] = ann.SingleLLM(name)
        return models

    def fit_report(self) -> FitReport | None:
        data = self.store.get_setting("fit_report")
        if data is None:
            return None
        data["cv_accuracy"] = {k: tuple(v) for k, v in data["cv_accuracy"].items()}
        return FitReport(**data)

    def is_annotated(self) -> bool:
        return self.store.has_annotation_result()

    def result(self) -> AnnotationResult | None:
        """MoLAM's latest fit over every text (None before the first)."""
        return self.store.annotation_result()

    def is_current(self) -> bool:
        """Whether the stored fit was fitted on the seed labels as they are now."""
        result = self.result()
        return result is not None and result.fit_y is not None and np.array_equal(result.fit_y, self.dataset.seed_vector())

    def annotator_for_loop(self) -> StoredFitAnnotator:
        """The loop's annotator: the stored fit, fitted first (without the CV estimate) if the seed
        labels changed since the last fit or there was none."""
        if not self.is_current():
            self.fit(cv=False)
        return StoredFitAnnotator(self.result(), self.dataset.text_ids)
