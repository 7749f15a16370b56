"""The annotation model (MoLAM, DESIGN §1): one fit per state of the seed labels, its report and
its honest accuracy estimates, and the fit handed to the AL loop as its annotator.

MoLAM is fitted on the human labels: the seeds (given before the loop; the loop refuses seed changes
once it has started) and, with ``AnnotatorSettings.refit_on_reviews``, every accepted or overridden
label of a reviewed text (``ProjectStore.human_labels``). Algorithm 1 fits MoLAM once, on the seeds;
refitting on the reviews is our extension (issue 12), on by default (``benchmarks/review_effort.py``:
higher final AL accuracy on each of 5 TREC seed sets): the loop refits it, without the cross-validated
estimate, before it labels the next batch whenever the human labels changed, or the LLMs answered more
texts (evidence on demand). The fit, with the human
labels it was fitted on, is stored (``ProjectStore.put_annotation_result``); the loop labels its
queries with that same fit (:meth:`AnnotationService.annotator_for_loop`). The cross-validated
estimates are always computed on the seeds alone: reviewed texts are the ones the queue picked as
likely wrong, not a random sample, so they would bias an estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import numpy as np

from ..annotation import Annotation
from ..evidence import PanelEvidence
from ..store import AnnotationResult, ProjectStore
from .dataset import DatasetService
from .errors import ProjectError
from .panel import PanelService


REFIT_ON_REVIEWS_DEFAULT = True
_SEED_EXAMPLES = "annotation/seed_examples"
_SEED_EXAMPLES_KEY = "seed_examples_key"


@dataclass(frozen=True)
class AnnotatorSettings:
    """MoLAM's settings (DESIGN §1): sigma = self-training threshold, delta = negative-label rule."""

    method: str = "molam"
    sigma: float = 0.9
    delta: float = 0.001
    random_state: int = 0
    #: Refit MoLAM on seeds + reviewed labels before the loop labels the next batch (our extension of
    #: Algorithm 1, issue 12; benchmarks/review_effort.py measured it).
    refit_on_reviews: bool = REFIT_ON_REVIEWS_DEFAULT


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
    #: Reviewed texts (accepted or overridden) among the human labels the fit used.
    n_reviewed: int = 0
    #: Which seeds and settings ``cv_accuracy`` / ``estimates`` were computed for (:func:`_seed_key`).
    seed_key: str = ""
    #: annotation.LabeledAccuracy.to_dict() on the seeds (its calibration estimates the labeled set,
    #: :meth:`AnnotationService.labeled_set_estimate`); None: fitted without cv or too few seeds.
    labeled_accuracy: dict | None = None
    #: [asdict(LLMValue)] from :func:`leave_one_llm_out` on the seeds (None: not computed).
    llm_value: list | None = None

    def labeled_accuracy_estimate(self):
        """The stored :class:`~mollia_core.annotation.LabeledAccuracy`, or None."""
        from ..annotation import LabeledAccuracy

        return LabeledAccuracy.from_dict(self.labeled_accuracy) if self.labeled_accuracy else None

    def accuracy_estimates(self):
        """The stored :class:`~mollia_core.annotation.AccuracyEstimates`, or None."""
        from ..annotation import AccuracyEstimates

        return AccuracyEstimates.from_dict(self.estimates) if self.estimates else None


@dataclass(frozen=True)
class FitScope:
    """The texts MoLAM is fitted on and labels (``indices``, sorted: those every LLM answered), the panel's
    evidence on them, and the human labels (``y``, what the fit uses) and seed labels on them (-1: none)."""

    indices: np.ndarray
    evidence: PanelEvidence
    y: np.ndarray
    seeds: np.ndarray


def make_molam(settings: AnnotatorSettings):
    from ..annotation import make_annotator

    return make_annotator(settings.method, sigma=settings.sigma, delta=settings.delta, random_state=settings.random_state)


class StoredFitAnnotator:
    """The stored MoLAM fit as the loop's annotator: ``fit`` does nothing (the annotation service
    fitted it), ``annotate`` returns the fit's outputs for the texts of the evidence, by text id.
    A text the fit has no label for (answered by the LLMs after it: evidence on demand) makes it ask
    ``refit`` for a fit over the texts answered now, once, before it answers."""

    def __init__(self, result: AnnotationResult, text_ids: Sequence[str],
                 refit: Callable[[], AnnotationResult] | None = None) -> None:
        self.result = result
        self._index = {text_id: i for i, text_id in enumerate(text_ids)}
        self._refit = refit

    def fit(self, evidence: PanelEvidence, y: np.ndarray) -> "StoredFitAnnotator":
        return self

    def annotate(self, evidence: PanelEvidence) -> Annotation:
        unknown = [t for t in (evidence.text_ids or ()) if t not in self._index]
        if evidence.text_ids is None or unknown:
            raise ProjectError("MoLAM's fit does not cover these texts: fit MoLAM again on the MoLAM page")
        rows = np.array([self._index[t] for t in evidence.text_ids], dtype=int)
        if (self.result.labels[rows] < 0).any() and self._refit is not None:
            self.result = self._refit()
        if (self.result.labels[rows] < 0).any():
            raise ProjectError("MoLAM's fit has no label for some of these texts (no evidence from every LLM yet)")
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
        y = self.dataset.require_seeds()
        seeded = np.flatnonzero(y >= 0)
        covered, evidence = self.panel.covered_evidence(required=seeded)
        from ..annotation import SingleLLM

        subset = evidence.subset(np.searchsorted(covered, seeded))
        return {
            name: float((SingleLLM(j).fit(subset, y[seeded]).annotate(subset).labels == y[seeded]).mean())
            for j, name in enumerate(evidence.models)
        }

    def fit_labels(self, settings: AnnotatorSettings | None = None) -> np.ndarray:
        """y MoLAM is fitted on (label index per text, -1 for the rest): the seed labels, and with
        ``refit_on_reviews`` (of ``settings``, default the last fit's) every reviewed text's human label."""
        settings = settings or self.settings()
        y = self.dataset.seed_vector()
        if settings.refit_on_reviews:
            for index, label in self.store.human_labels().items():
                y[index] = label
        return y

    def scope(self, settings: AnnotatorSettings | None = None) -> "FitScope":
        """What MoLAM is fitted on now: the texts every LLM has answered (all of them with full evidence;
        with evidence on demand the human-labeled texts, the self-training sample and the queried texts),
        their evidence, the human labels and seeds on them. Refused while a human-labeled text lacks evidence."""
        settings = settings or self.settings()
        seeds = self.dataset.require_seeds()
        y = self.fit_labels(settings)
        covered, evidence = self.panel.covered_evidence(required=np.flatnonzero(y >= 0))
        return FitScope(covered, evidence, y[covered], seeds[covered])

    def fit(self, settings: AnnotatorSettings | None = None, cv: bool = True) -> FitReport:
        """Fit MoLAM on the human labels (:meth:`fit_labels`; self-training on the other texts),
        annotate every text and store it.

        The text classifier (``mollia_core.text_member``) joins the panel when the method reads it
        (the default; "molam-llm-only" / "molam-paper" do not): trained on the seeds, then co-trained
        on MoLAM's labels (``annotation.fit_annotator``).
        With ``cv``, also estimate accuracy honestly on the seeds by cross-validation
        (``annotation.estimate_accuracy``, 95 % intervals and warnings): MoLAM beside the majority
        class, the text member, each single LLM, majority vote and the mean of probabilities, all on
        the same folds, over the seeds alone. With fewer than 5 seeds MoLAM is fitted and the report
        says that no estimate is possible. Without ``cv`` (the loop's refit on reviewed labels) the
        last report's estimates are kept while they are for the same seeds and settings.
        Nothing is chosen on the validation split. With evidence on demand all of this is over the texts
        the panel has answered (:meth:`scope`); the others get no label (-1) until they are answered.
        """
        settings = settings or self.settings()
        scope = self.scope(settings)
        evidence, seeds, y = scope.evidence, scope.seeds, scope.y
        from .. import annotation as ann
        from ..encoder import EncoderError

        molam = make_molam(settings)
        try:
            text_member = self._text_member(settings.random_state, scope.indices) if ann.reads_text_member(molam) else None
            panel = ann.fit_annotator(molam, evidence, y, text_member)
            result = molam.annotate(panel)
            estimates = labeled_accuracy = llm_value = None  # llm_value: measure_llm_value
            if cv:
                estimates = ann.estimate_accuracy(
                    self._comparison_models(settings, panel), evidence, seeds,
                    random_state=settings.random_state, text_member=text_member,
                )
                if estimates.methods:
                    labeled_accuracy = self._seed_calibration(settings, molam, panel, evidence, seeds, text_member)
        except (ann.AnnotationError, EncoderError) as exc:
            raise ProjectError(str(exc)) from None
        vote = ann.MajorityVote().fit(evidence, y).annotate(evidence)
        mean = ann.MeanProbability().fit(evidence, y).annotate(evidence)
        cv_accuracy: dict[str, tuple[float, float]] = {}
        estimates_dict = None
        seed_key = self._seed_key(seeds, settings, evidence)
        previous = None if cv else self.fit_report()
        if estimates is not None:
            cv_accuracy = {name: (e.accuracy, e.fold_std) for name, e in estimates.methods.items()}
            estimates_dict = estimates.to_dict()
        elif previous is not None and previous.seed_key == seed_key:
            cv_accuracy, estimates_dict = previous.cv_accuracy, previous.estimates
            labeled_accuracy, llm_value = previous.labeled_accuracy, previous.llm_value
        negative_mask = np.asarray(result.negative_mask, dtype=bool)
        n_seeds = int((seeds >= 0).sum())
        report = FitReport(
            cv_accuracy=cv_accuracy,
            n_seeds=n_seeds,
            n_with_negatives=int(negative_mask.any(axis=1).sum()),
            fitted_at=_now(),
            estimates=estimates_dict,
            uses_text_member=text_member is not None,
            n_reviewed=int((y >= 0).sum()) - n_seeds,
            seed_key=seed_key,
            labeled_accuracy=labeled_accuracy,
            llm_value=llm_value,
        )
        n, rows = self.store.n_texts, scope.indices

        def every_text(values, missing) -> np.ndarray:
            """``values`` over the scope's texts spread over every text, ``missing`` where no evidence is."""
            values = np.asarray(values)
            out = np.full((n, *values.shape[1:]), missing, dtype=np.result_type(values.dtype, type(missing)))
            out[rows] = values
            return out

        stored = AnnotationResult(
            labels=every_text(np.asarray(result.labels, dtype=int), -1),
            probability=every_text(np.asarray(result.probability, dtype=float), np.nan),
            proba=every_text(np.asarray(result.proba, dtype=float), 0.0),
            negatives=every_text(negative_mask, False),
            vote=every_text(np.asarray(vote.labels, dtype=int), -1),
            mean=every_text(np.asarray(mean.labels, dtype=int), -1),
            # The Review page shows the text member beside the LLMs.
            text_member_proba=every_text(panel.label_probs[:, -1], 0.0) if text_member is not None else None,
            fit_y=self.fit_labels(settings),
        )
        with self.store.transaction():
            self.store.put_annotation_result(stored)
            self.store.update_settings({"annotator_settings": asdict(settings), "fit_report": asdict(report)})
        if cv:
            # The review queue learns from these out-of-fold fits (co-trained in every fold: tens of
            # seconds on a few thousand texts): made here, in the fit's job, not when the Review page opens.
            self.seed_examples()
        return report

    def _seed_calibration(self, settings: AnnotatorSettings, fitted, fitted_panel: PanelEvidence,
                          evidence: PanelEvidence, seeds: np.ndarray, text_member) -> dict:
        """MoLAM's calibration on the seeds' out-of-fold probabilities (``LabeledAccuracy.to_dict()``), on
        the seeds alone: a random sample, unlike reviewed texts (the queue picks those as likely wrong)."""
        from .. import annotation as ann

        return ann.estimate_labeled_accuracy(
            make_molam(settings), evidence, seeds, text_member=text_member, random_state=settings.random_state,
            fitted=fitted, fitted_panel=fitted_panel,
        ).to_dict()

    def measure_llm_value(self) -> list[LLMValue]:
        """Leave each LLM out (:func:`leave_one_llm_out`, on the seeds and the folds of the last fit with
        cross-validation) and store the table with that fit's report. Its own action, not part of every
        fit: it refits MoLAM once per fold and LLM (on 1,000 TREC texts and five LLMs, about 80 s against
        about 35 s for the whole fit with its cross-validation)."""
        report = self.fit_report()
        settings = self.settings()
        scope = self.scope(settings)
        seeds = scope.seeds
        if report is None or report.estimates is None or report.seed_key != self._seed_key(seeds, settings, scope.evidence):
            raise ProjectError("fit MoLAM with its cross-validation on the MoLAM page first: what each LLM adds "
                               "is measured on the same seeds and folds")
        from .. import annotation as ann
        from ..encoder import EncoderError

        molam = make_molam(settings)
        try:
            text_member = self._text_member(settings.random_state, scope.indices) if ann.reads_text_member(molam) else None
            values = leave_one_llm_out(molam, scope.evidence, seeds,
                                       random_state=settings.random_state, text_member=text_member)
        except (ann.AnnotationError, EncoderError) as exc:
            raise ProjectError(str(exc)) from None
        data = self.store.get_setting("fit_report")
        self.store.set_setting("fit_report", {**data, "llm_value": [asdict(v) for v in values]})
        return self.llm_value()

    def labeled_set_estimate(self, scope: str = "labeled") -> LabeledSetEstimate | None:
        """Estimated accuracy of the labeled set L (scope ``labeled``) or of every text MoLAM labels
        (``all``: L, and MoLAM's current label elsewhere), overall, per source and per label, with 95 %
        intervals (:func:`estimate_label_set`). Human labels count as right; each of MoLAM's labels in L
        is estimated from the probabilities stored with it. Read from the last fit with cross-validation
        (nothing is refitted); None before one, or with fewer than 5 seed labels."""
        report = self.fit_report()
        stored = report.labeled_accuracy_estimate() if report is not None else None
        if stored is None or stored.calibration is None:
            return None
        rows = self.store.annotations()
        fit = self.result()
        n_labels = len(self.dataset.labels)
        proba = np.zeros((len(rows), n_labels))
        for i, row in enumerate(rows):
            if not row.is_human:
                proba[i] = row.proba if row.proba is not None else fit.proba[row.text_index]
        given = [row.label for row in rows]
        sources = [row.source for row in rows]
        human = [row.is_human for row in rows]
        if scope == "all" and fit is not None:
            rest = np.setdiff1d(np.flatnonzero(fit.labels >= 0), [row.text_index for row in rows])
            proba = np.vstack([proba, fit.proba[rest]])
            given += fit.labels[rest].tolist()
            sources += ["molam"] * len(rest)
            human += [False] * len(rest)
        elif scope != "labeled":
            raise ProjectError(f"unknown scope {scope!r}: use 'labeled' or 'all'")
        if not rows and scope == "labeled":
            return None
        return estimate_label_set(stored.calibration, proba, np.array(given, dtype=int), sources, np.array(human),
                                  self.dataset.labels, scope)

    def llm_value(self) -> list[LLMValue]:
        """What each LLM adds (:func:`leave_one_llm_out`, from the last fit with cross-validation) with its
        measured seconds per text (``PanelService.seconds_per_text``); empty before such a fit."""
        report = self.fit_report()
        speeds = self.panel.seconds_per_text()
        return [LLMValue(**v).with_speed(speeds.get(v["model"])) for v in (report.llm_value or [])] if report else []

    def _text_member(self, random_state: int, indices: np.ndarray):
        """The text member over the texts at ``indices`` (the fit's scope), featurised once per process and
        set of texts."""
        from ..text_member import TextMember

        ids, texts = self.dataset.text_ids, self.dataset.texts
        key = (tuple(ids[i] for i in indices), random_state)
        if self._text_member_cache is None or self._text_member_cache[0] != key:
            self._text_member_cache = (key, TextMember([texts[i] for i in indices], random_state=random_state))
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
        """Whether the stored fit was fitted on the human labels it would be fitted on now
        (:meth:`fit_labels`: the seeds, and the reviewed labels with ``refit_on_reviews``)."""
        result = self.result()
        return (result is not None and result.fit_y is not None and np.array_equal(result.fit_y, self.fit_labels())
                and np.array_equal(np.flatnonzero(result.labels >= 0), self.panel.covered_indices()))

    def _seed_key(self, seeds: np.ndarray, settings: AnnotatorSettings, evidence: PanelEvidence) -> str:
        """What a computation on the seeds alone depends on: the seeds, MoLAM's settings (but for
        ``refit_on_reviews``) and the panel's evidence on them (``seeds`` and ``evidence`` over the same
        texts; texts the panel answers later, as the loop asks, leave it unchanged)."""
        import hashlib
        import json

        seeded = np.flatnonzero(np.asarray(seeds) >= 0)
        described = {**asdict(settings), "refit_on_reviews": None, "models": list(evidence.models)}
        return hashlib.sha256(np.asarray(seeds, dtype=np.int64)[seeded].tobytes()
                              + np.ascontiguousarray(evidence.label_probs[seeded]).tobytes()
                              + np.ascontiguousarray(evidence.vote_shares[seeded]).tobytes()
                              + json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()

    def seed_examples(self):
        """MoLAM's out-of-fold labels on the seeds (``review_queue.seed_examples``: wrong or right),
        what the review queue learns its ranking from; computed once per state of the seeds, settings
        and evidence, and stored. None without the panel's evidence or with too few seeds for folds."""
        from .. import annotation as ann
        from ..review_queue import SeedExamples, seed_examples

        if (self.dataset.seed_vector() >= 0).sum() < ann.MIN_SEEDS_FOR_ESTIMATE:
            return None
        settings = self.settings()
        try:
            scope = self.scope(settings)
        except ProjectError:  # no evidence on the seeds yet
            return None
        evidence, seeds = scope.evidence, scope.seeds
        key = self._seed_key(seeds, settings, evidence)
        stored = self.store.get_array(_SEED_EXAMPLES) if self.store.get_setting(_SEED_EXAMPLES_KEY) == key else None
        if stored is not None:
            member = stored[:, 4:] if stored.shape[1] > 4 else None
            return SeedExamples(stored[:, 0].astype(int), stored[:, 1].astype(int), stored[:, 2], member,
                                stored[:, 3].astype(bool))
        molam = make_molam(settings)
        try:
            text_member = self._text_member(settings.random_state, scope.indices) if ann.reads_text_member(molam) else None
            examples = seed_examples(molam, evidence, seeds, text_member=text_member,
                                     random_state=settings.random_state)
        except ann.AnnotationError as exc:
            raise ProjectError(str(exc)) from None
        examples = replace(examples, index=scope.indices[examples.index])  # text indices of the project
        columns = [examples.index, examples.labels, examples.probability, examples.wrong]
        table = np.column_stack(columns + ([examples.text_member_proba] if examples.text_member_proba is not None else []))
        with self.store.transaction():
            self.store.put_array(_SEED_EXAMPLES, table.astype(float))
            self.store.set_setting(_SEED_EXAMPLES_KEY, key)
        return examples

    def annotator_for_loop(self) -> StoredFitAnnotator:
        """The loop's annotator: the stored fit, fitted first (without the CV estimate) if the human
        labels it is fitted on (:meth:`fit_labels`) changed since the last fit or there was none."""
        return StoredFitAnnotator(self.current_result(), self.dataset.text_ids, refit=self.current_result)

    def current_result(self) -> AnnotationResult:
        """The stored fit, fitted again first (without the CV estimate) when it is not :meth:`is_current`:
        the human labels it is fitted on changed, or the LLMs answered more texts."""
        if not self.is_current():
            self.fit(cv=False)
        return self.result()


# ----------------------------------------------------------------------------------------------
# How good is the labeled set, without gold; which LLMs earn their cost (issue 12)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabeledSetEstimate:
    """Estimated accuracy of a set of labels (the labeled set L, or every text), from human labels only.

    Human labels (seeds, accepted and overridden texts) are counted as right; MoLAM's labels are
    estimated by its probabilities, calibrated on ``n_human_labels`` seed labels
    (:class:`~mollia_core.annotation.TemperatureCalibration`). ``overall``, ``per_source`` and
    ``per_label`` are :class:`~mollia_core.annotation.AccuracyInterval` (95 % interval, ``n`` texts).
    """

    scope: str
    overall: Any
    per_source: dict[str, Any]
    per_label: dict[str, Any]
    n_human_labels: int
    temperature: float

    METHOD = ("MoLAM's probabilities recalibrated by one temperature fitted on the seed labels' out-of-fold "
              "probabilities; human labels counted as right; 95 % bootstrap interval over the seed labels")

    def to_dict(self) -> dict:
        return {**asdict(self), "method": self.METHOD}


def estimate_label_set(
    calibration, proba: np.ndarray, given: np.ndarray, sources: Sequence[str], human: np.ndarray,
    labels: Sequence[str], scope: str,
) -> LabeledSetEstimate:
    """:class:`LabeledSetEstimate` of the labels ``given`` (label index per text) from ``sources``:
    rows where ``human`` are right; the others' accuracy is expected from their MoLAM ``proba`` (n, K)
    by ``calibration``. Per source and per label, each over the texts of that source / label."""
    from ..annotation import AccuracyInterval, with_human_labels

    given, human, sources = np.asarray(given, dtype=int), np.asarray(human, dtype=bool), np.asarray(sources)
    model = ~human
    model_sources = sorted(set(sources[model].tolist()))
    groups: dict[Any, np.ndarray] = {None: model}
    groups.update({("source", s): model & (sources == s) for s in model_sources})
    groups.update({("label", k): model & (given == k) for k in range(len(labels))})
    # Only MoLAM's rows are estimated; human rows' proba (if any) is never read.
    rows = np.flatnonzero(model)
    estimated = calibration.expected_accuracy(np.asarray(proba)[rows], given[rows],
                                              {key: g[rows] for key, g in groups.items()})
    per_source = {s: AccuracyInterval(1.0, 1.0, 1.0, int((human & (sources == s)).sum()))
                  for s in dict.fromkeys(sources[human].tolist())}
    per_source.update({s: estimated[("source", s)] for s in model_sources})
    per_label = {label: with_human_labels(estimated[("label", k)], int((human & (given == k)).sum()))
                 for k, label in enumerate(labels) if (given == k).any()}
    return LabeledSetEstimate(scope, with_human_labels(estimated[None], int(human.sum())), per_source, per_label,
                              calibration.n_labels, calibration.temperature)


#: An LLM "adds nothing" when MoLAM without it is at most this many standard errors (of the
#: paired difference over the seeds) below the full panel.
ADDS_NOTHING_WITHIN_SE = 1.0


@dataclass(frozen=True)
class LLMValue:
    """What one LLM adds to MoLAM: cross-validated accuracy on the seeds of the full panel and of
    the panel without this LLM (same folds, same seeds), the standard error of their paired
    difference over the seeds, and the LLM's measured seconds per text (None: not measured)."""

    model: str
    full_accuracy: float
    without_accuracy: float
    difference_se: float
    n_seeds: int
    seconds_per_text: float | None = None

    @property
    def adds_nothing(self) -> bool:
        """Its removal does not lower the CV accuracy by more than one standard error."""
        return self.full_accuracy - self.without_accuracy <= ADDS_NOTHING_WITHIN_SE * self.difference_se

    def with_speed(self, seconds_per_text: float | None) -> "LLMValue":
        from dataclasses import replace

        return replace(self, seconds_per_text=seconds_per_text)


def leave_one_llm_out(
    model, evidence: PanelEvidence, y: np.ndarray, *, n_splits: int = 5, random_state: int = 0, text_member=None,
) -> list[LLMValue]:
    """For each LLM of ``evidence``: ``model``'s cross-validated accuracy on the labels ``y`` without
    that LLM, beside the full panel's, on the same folds (one :func:`~mollia_core.annotation.out_of_fold_predictions`
    call: the text member, if any, is cross-fitted once per fold for all of them). A panel of one LLM
    and no text member has nothing to fall back on: it gets no row."""
    from .. import annotation as ann

    llms = list(evidence.llm_models)
    if len(llms) < 2 and text_member is None:
        return []
    models = {"": model} | {name: ann.WithoutMember(model, name) for name in llms}
    labeled, predictions, _ = ann.out_of_fold_predictions(models, evidence, y, n_splits, random_state, text_member)
    truth = np.asarray(y)[labeled]
    full = (predictions[""] == truth).astype(float)
    out = []
    for name in llms:
        without = (predictions[name] == truth).astype(float)
        difference = full - without
        se = float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0
        out.append(LLMValue(name, float(full.mean()), float(without.mean()), se, len(truth)))
    return out
