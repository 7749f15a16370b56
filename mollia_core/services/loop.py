"""Driving the AL loop (Algorithm 1, ``mollia_core.loop``) from the dashboard: its settings, runs of
iterations, the learning curve. The loop's annotator is the annotation service's MoLAM fit, or, for
headless runs and benchmarks (``set_annotator``), a reference: the gold oracle or a baseline."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..annotation import is_meta_learner
from ..loop import ANNOTATOR_SETTING, LoopConfig
from ..store import ProjectStore, StoreError
from .annotation import AnnotationService, StoredFitAnnotator
from .dataset import DatasetService
from .errors import ProjectError

_DASHBOARD_LOOP_SETTINGS = "dashboard_loop_settings"
LEARNING_CURVE_COLUMNS = ["iteration", "n_labeled", "validation_accuracy", "validation_macro_f1", "seed_cv_accuracy",
                          "seed_cv_low", "seed_cv_high", "annotator_agreement", "n_flagged", "lambda", "seconds"]


class LoopService:
    """The AL loop over one project's store, labeling with the project's MoLAM fit."""

    def __init__(self, store: ProjectStore, dataset: DatasetService, annotation: AnnotationService,
                 lock: threading.RLock) -> None:
        self.store = store
        self.dataset = dataset
        self.annotation = annotation
        self._lock = lock
        self._loop_cache: tuple[Any, Any] | None = None

    def loop_settings(self) -> LoopConfig:
        """The AL settings the dashboard last ran with (the paper's defaults before that)."""
        stored = self.store.get_setting(_DASHBOARD_LOOP_SETTINGS)
        return LoopConfig.from_dict(stored) if stored else LoopConfig()

    def annotator_name(self) -> str:
        """What labels the queried texts, the ``source`` of its labels: a MoLAM method (the project's
        MoLAM fit; ``molam`` unless :meth:`set_annotator` chose another) or a reference annotator."""
        return self.store.get_setting(ANNOTATOR_SETTING, "molam")

    def set_annotator(self, name: str) -> None:
        """Label the queried texts with ``name``: a MoLAM method (``molam``, ``mol``, ``molam-paper``, ...:
        the project's MoLAM fit, fitted with the method of the annotator settings), ``gold`` (the gold
        oracle, the upper reference) or a baseline (``vote``, ``mean``, ``llm:<panel member>[:votes]``),
        fitted by the loop on the seed labels. Refused once iterations have started."""
        name = name.strip()
        if self.store.iterations() and name != self.annotator_name():
            raise ProjectError(f"iterations have started with {self.annotator_name()}: start a new project for {name}")
        if not is_meta_learner(name):
            self._reference_annotator(name)  # an unknown name is refused now, not at the first labeling
        self.store.set_setting(ANNOTATOR_SETTING, name)

    def _reference_annotator(self, name: str):
        from ..annotation import AnnotationError, SingleLLM, make_annotator
        from ..loop import GoldOracle

        if name == "gold":
            gold = self.dataset.gold()
            return GoldOracle({t: g for t, g in zip(self.dataset.text_ids, gold) if g >= 0}, len(self.dataset.labels))
        delta = self.annotation.settings().delta
        if name.startswith("llm:"):
            model, _, use = name[4:].partition(":")
            panel = self.annotation.panel
            members = {**{spec.model: spec.display_name for spec in panel.specs()}, **{m: m for m in panel.models()}}
            if model not in members or use not in ("", "probs", "votes"):
                raise ProjectError(f"annotator {name!r}: use llm:<model>[:probs|votes] with a model of the panel "
                                   f"({', '.join(members)})")
            return SingleLLM(model=members[model], use=use or "probs", delta=delta)
        try:
            return make_annotator(name, delta=delta)
        except AnnotationError as exc:
            raise ProjectError(f"{exc} (or 'gold')") from None

    def active_loop(self, settings: LoopConfig | None = None):
        """The AL loop over this project's store (resuming from it), labeling with the loop's annotator;
        rebuilt when the settings or the annotator (MoLAM's fit, refitted here when the human labels it
        is fitted on changed) change, kept otherwise (so the AL model is not re-trained between runs)."""
        from ..loop import ActiveLearningLoop

        settings = settings or self.loop_settings()
        name = self.annotator_name()
        if is_meta_learner(name):
            annotator: Any = self.annotation.annotator_for_loop()
            fit = hashlib.sha256(annotator.result.labels.tobytes() + annotator.result.probability.tobytes()).hexdigest()
        else:
            annotator, fit = self._reference_annotator(name), name
        key = (json.dumps(settings.to_dict(), sort_keys=True),
               json.dumps(asdict(self.annotation.settings()), sort_keys=True), fit)
        if self._loop_cache is None or self._loop_cache[0] != key:
            loop = ActiveLearningLoop.resume(self.store, annotator, settings, annotator_name=name,
                                             fit_annotator=not isinstance(annotator, StoredFitAnnotator),
                                             evidence_models=self.annotation.panel.models() or None)
            if self._loop_cache is not None and self._loop_cache[0][0] == key[0]:
                # Only the annotator changed (MoLAM refitted on reviewed labels): the AL model trained so
                # far depends on the stored training sets alone, so it is kept rather than re-trained.
                previous = self._loop_cache[1]
                loop.learner, loop._learner_iteration = previous.learner, previous._learner_iteration
            self._loop_cache = (key, loop)
        return self._loop_cache[1]

    def run_iterations(
        self,
        n: int,
        settings: LoopConfig | None = None,
        progress: Callable[[Any], None] | None = None,
        cancel: threading.Event | None = None,
        answer: Callable[..., Any] | None = None,
    ) -> list:
        """Run ``n`` more AL iterations (the first call also trains on the seeds: iteration 0).

        One iteration at a time: before each, MoLAM is fitted again (without the CV estimate) where
        it has not been fitted on the human labels as they are now (``AnnotationService.fit_labels``:
        with ``refit_on_reviews``, reviews made while the loop runs reach the next batch's labels).
        Every step (query, answer, label, train) is committed when it ends; ``progress(StepResult)``
        reports each one; ``cancel`` stops between steps (and between batches of answers).
        ``answer`` (``loop.Answerer``) asks the panel's LLMs for queried texts they have not answered
        (evidence on demand); without it every queried text must have evidence already.
        Returns the stored iterations.
        """
        if n < 1:
            raise ProjectError("run at least one iteration")
        settings = settings or self.loop_settings()
        self.store.set_setting(_DASHBOARD_LOOP_SETTINGS, settings.to_dict())
        from ..encoder import EncoderError
        from ..learner import LearnerError
        from ..loop import LoopError
        from ..query import QueryError

        with self._lock:
            try:
                records = self.store.iterations()
                for _ in range(n):
                    if cancel is not None and cancel.is_set():
                        break
                    before = self.store.last_iteration()
                    loop = self.active_loop(settings)
                    loop.answer = answer
                    records = loop.run(1, progress=progress, cancel=cancel)
                    if self.store.last_iteration() == before:  # nothing left to do (the pool is empty)
                        break
                return records
            except (LoopError, StoreError, LearnerError, QueryError, EncoderError) as exc:
                self._loop_cache = None  # a bad setting must not stick to the cached loop
                raise ProjectError(str(exc)) from None

    def pool_size(self) -> int:
        """Texts still unlabeled in the pool split (what the strategy may query)."""
        labeled = np.zeros(self.store.n_texts, dtype=bool)
        labeled[self.store.labeled_indices()] = True
        return int(((self.dataset.splits() == "pool") & ~labeled).sum())

    def iterations(self) -> list:
        """The stored AL iterations (``store.IterationRecord``), iteration 0 = training on the seeds."""
        return self.store.iterations()

    def learning_curve(self) -> pd.DataFrame:
        """Per trained iteration: labeled count, validation accuracy (where gold exists), else the
        accuracy estimated on held-out seed labels with its 95 % interval, agreement of the AL model
        with MoLAM on the pool (no accuracy), and how many texts it flagged (d_anno)."""
        rows = []
        for record in self.iterations():
            if record.status != "trained":
                continue
            metrics = record.metrics
            rows.append(
                {
                    "iteration": record.iteration,
                    "n_labeled": metrics.get("n_labeled"),
                    "validation_accuracy": metrics.get("validation_accuracy"),
                    "validation_macro_f1": metrics.get("validation_macro_f1"),
                    "seed_cv_accuracy": metrics.get("seed_cv_accuracy"),
                    "seed_cv_low": metrics.get("seed_cv_low"),
                    "seed_cv_high": metrics.get("seed_cv_high"),
                    "annotator_agreement": metrics.get("annotator_agreement"),
                    "n_flagged": metrics.get("n_flagged", 0),
                    "lambda": record.lam,
                    "seconds": sum(record.timings.values()),
                }
            )
        return pd.DataFrame(rows, columns=LEARNING_CURVE_COLUMNS)
