"""Algorithm 1 of the paper: robust active learning with a mixture of LLMs as the annotator.

Iteration 0 trains the AL model on the human seed labels. Every later iteration t:

1. **query** B texts from the unlabeled pool U with the query strategy and the current AL model;
2. **label** them with the annotator (MoLAM, or any object with ``annotate(evidence)``: a gold
   oracle, a single LLM, majority vote): y+, its probability and the negative labels y-;
   d_anno = [argmax of the *previous* iteration's AL model != y+] and W_d (Eq. 7); move them to L;
3. **train** a fresh ("cold start") AL model on L with ``W_d * CE + lambda_t * L_neg`` (Eq. 9),
   lambda_t growing linearly (``lambda_schedule``); seed and human-override labels have weight 1
   and no negative labels. Then predict on every text: metrics (accuracy and macro-F1 on the
   validation / test splits where gold labels exist, else an estimate from the seed labels by
   K-fold (``seed_cv_accuracy`` with its interval); agreement of the AL model with the annotator
   on the pool, which is no accuracy) and the predictions the next iteration's d_anno needs.

With evidence on demand (issue 11) the LLMs have answered only the seed texts and a sample when the
loop starts: between query and label the loop then **answers** the queried texts, asking the panel
(``answer``, :class:`Answerer`) for the ones some LLM has not answered, each batch of answers committed
as it comes. That step needs no status of its own: an iteration is ``queried`` until it is labeled,
and the next step of a ``queried`` iteration is ``answer`` while any of its texts lacks evidence,
``label`` once every one has it -- a fact the store holds, so a kill while answering resumes asking
only for what is still missing.

Each of the steps is committed to the :class:`~mollia_core.store.ProjectStore` when it
ends (the iteration's ``status`` walks ``queried`` -> ``labeled`` -> ``trained``), together with
what it produced: the queried ids, the annotations, the training set, the predictions, the metrics
and timings. A run killed at any moment therefore resumes at the step it was in, with nothing
committed lost: :meth:`ActiveLearningLoop.resume`. The AL model itself is not stored; on resume
it is re-trained from the stored training set of the last iteration with the same random state.

:class:`LoopConfig` is immutable. Its ``planned_iterations`` fix lambda's schedule (Eq. 9) once for
the run: the lambda of an iteration depends on its number and the plan only, never on how the run
was split into calls or restarts; iterations run past the plan (``run(n)`` goes on as long as asked)
keep ``lambda_end``.

A human review -- an override (:meth:`ActiveLearningLoop.override`) or an accept of the annotator's
label (``ProjectStore.accept``) -- is time-stamped in the store and used from the next training on,
with weight 1 and no negative labels. Once the pool is empty, pending reviews still reach the AL
model: the next step is then a training-only iteration (``retrain``: nothing queried, L retrained
with them); with nothing pending the run is done. An annotator whose labels are a
human's (``human_labels = True``, e.g. :class:`GoldOracle`, the upper reference) is trained on
the same way; its d_anno flags are still recorded.

The annotator is fitted once, on the human labels present when the loop first runs (they are
stored, so a resumed run refits it on the same labels). Overrides made later change the training
set of the AL model, not the annotator. An annotator fitted elsewhere (e.g. one that hands out the
project's stored MoLAM fit) is passed with ``fit_annotator=False``: the loop then only calls its
``annotate``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from .annotation import Annotation, fit_annotator, reads_text_member, wilson_interval
from .evidence.record import PanelEvidence
from .losses import discrepancy_weights, lambda_schedule
from .store import AnnotationRow, IterationRecord, ProjectStore, StoreError, TrainingSet

LOOP_SETTING = "loop"
ANNOTATOR_SETTING = "loop_annotator"
#: Old names of loop settings, still read from project files and run configs: old -> current.
_RENAMED_SETTINGS = {"n_iterations": "planned_iterations"}


class LoopError(Exception):
    """The loop cannot run as asked; the message says what is wrong and how to fix it."""


class Answerer(Protocol):
    """Evidence on demand: makes every LLM of the panel answer the texts at ``indices`` (those some LLM has
    not answered yet) and stores the answers, committed as they come; stops at ``cancel`` (raising
    ``evidence.Cancelled``) with what was answered kept. E.g. ``PanelService.answer`` with the sources."""

    def __call__(self, indices: Sequence[int], cancel: threading.Event | None = None) -> Any: ...


class Annotator(Protocol):
    """What the loop needs of an annotation model (``mollia_core.annotation``)."""

    def fit(self, evidence: PanelEvidence, y: np.ndarray) -> Any: ...

    def annotate(self, evidence: PanelEvidence) -> Any:
        """An object with ``labels`` (n,), ``probability`` (n,), ``proba`` (n, K), ``negative_mask`` (n, K)."""


@dataclass(frozen=True)
class LoopConfig:
    """Settings of one AL run (the paper's defaults). Immutable: running the loop never changes its plan.

    ``planned_iterations`` is the length of Eq. 9's lambda schedule (lambda_start at iteration 1,
    lambda_end at the last planned one) and how far :meth:`ActiveLearningLoop.run` goes when not told
    otherwise; iterations run past the plan keep lambda_end.
    """

    batch_size: int = 50
    planned_iterations: int = 10
    alpha: float = 0.5
    lambda_start: float = 0.4
    lambda_end: float = 1.0
    negative_learning: bool = True
    discrepancy: bool = True
    strategy: str = "random"
    learner_mode: str = "fast"
    backbone: str = "all-MiniLM-L6-v2"
    random_state: int = 0
    #: Folds of the seed labels for the accuracy estimate of runs without gold labels (0: off).
    seed_cv_folds: int = 5

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise LoopError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.planned_iterations < 0:
            raise LoopError(f"planned_iterations cannot be negative, got {self.planned_iterations}")
        if not 0.0 <= self.alpha <= 1.0:
            raise LoopError(f"alpha down-weights disagreeing labels and must be in [0, 1], got {self.alpha}")
        if self.lambda_start < 0 or self.lambda_end < 0:
            raise LoopError("lambda_start and lambda_end must not be negative")
        if self.seed_cv_folds < 0 or self.seed_cv_folds == 1:
            raise LoopError(f"seed_cv_folds must be 0 (no estimate) or at least 2, got {self.seed_cv_folds}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def current_names(values: Any) -> Any:
        """``values`` with the old name of a renamed setting (``n_iterations``) read as its current
        name, unless that is given too (then the old one stays, and is reported as unknown)."""
        if not isinstance(values, Mapping):
            return values
        renamed = dict(values)
        for old, new in _RENAMED_SETTINGS.items():
            if old in renamed and new not in renamed:
                renamed[new] = renamed.pop(old)
        return renamed

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "LoopConfig":
        values = cls.current_names(values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise LoopError(f"unknown loop setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def lam(self, iteration: int) -> float:
        """lambda for AL iteration ``iteration`` (1-based; Eq. 9's schedule is 0-based); past the
        planned iterations it stays at ``lambda_end``."""
        if iteration > self.planned_iterations:
            return float(self.lambda_end)
        return lambda_schedule(iteration - 1, self.planned_iterations, self.lambda_start, self.lambda_end)


class GoldOracle:
    """The upper reference: labels every text with its gold label (probability 1, no negatives).

    ``gold_by_id`` maps text ids (``PanelEvidence.text_ids``) to label indices. Its labels are a
    human's (``human_labels``): trained with weight 1, like seeds, while d_anno is still recorded.
    """

    name = "gold"
    human_labels = True

    def __init__(self, gold_by_id: Mapping[str, int], n_labels: int) -> None:
        self.gold_by_id = {str(k): int(v) for k, v in gold_by_id.items()}
        self.n_labels = n_labels

    def fit(self, evidence: PanelEvidence, y: np.ndarray) -> "GoldOracle":
        return self

    def annotate(self, evidence: PanelEvidence) -> Annotation:
        if evidence.text_ids is None:
            raise LoopError("the gold oracle needs text ids on the evidence")
        missing = [t for t in evidence.text_ids if t not in self.gold_by_id]
        if missing:
            raise LoopError(f"no gold label for text(s) {missing[:5]}: the gold oracle needs a gold label for every text")
        labels = np.array([self.gold_by_id[t] for t in evidence.text_ids], dtype=int)
        proba = np.eye(self.n_labels)[labels]
        return Annotation(labels, np.ones(len(labels)), proba, np.zeros_like(proba, dtype=bool))


def classification_metrics(gold: np.ndarray, predicted: np.ndarray, n_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (over the label set) of ``predicted`` against ``gold``."""
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=list(range(n_labels)), average="macro", zero_division=0)),
    }


@dataclass(frozen=True)
class StepResult:
    """What :meth:`ActiveLearningLoop.step` did."""

    iteration: int
    #: "train" (iteration 0 or after labeling), "query", "answer" (the LLMs answered the queried texts:
    #: evidence on demand), "label", "retrain" (a training-only iteration:
    #: the pool is empty but human reviews wait for a training; its metrics' ``reviews_used`` says how
    #: many), or "done"
    step: str
    record: IterationRecord | None


ProgressHook = Callable[[StepResult], None]


class ActiveLearningLoop:
    """Algorithm 1 over a project store (texts, label set, seed labels, evidence).

    ``annotator`` is fitted on the human labels the first time the loop runs (the labels it was
    fitted on are stored, so a resumed run refits it identically) unless ``fit_annotator`` is False
    (an already fitted annotator). ``annotator_name`` is the ``source`` written on its labels.
    ``evidence_models``: the panel whose evidence the annotator reads (default: every model with stored
    evidence); ``answer`` (:class:`Answerer`): evidence on demand for queried texts they have not answered.
    ``learner_factory(iteration)`` and ``strategy`` default to :func:`mollia_core.learner.make_learner`
    (a fresh learner each training: the paper's cold start) and
    :func:`mollia_core.query.make_strategy` of the config.
    """

    def __init__(
        self,
        store: ProjectStore,
        annotator: Annotator,
        config: LoopConfig | None = None,
        *,
        annotator_name: str = "molam",
        fit_annotator: bool = True,
        learner_factory: Callable[[int], Any] | None = None,
        strategy: Any | None = None,
        answer: Answerer | None = None,
        evidence_models: Sequence[str] | None = None,
    ) -> None:
        self.store = store
        self.answer = answer
        self.evidence_models = list(evidence_models) if evidence_models is not None else None
        self.labels = store.labels
        if not self.labels:
            raise LoopError("the project has no label set: set the labels before running the loop")
        if store.n_texts == 0:
            raise LoopError("the project has no texts: add the dataset before running the loop")
        stored = store.get_setting(LOOP_SETTING)
        if config is None:
            config = LoopConfig.from_dict(stored) if stored else LoopConfig()
        self.config = config
        self.annotator = annotator
        self.annotator_name = annotator_name
        self._fit_annotator = fit_annotator
        self._annotator_ready = False
        self.learner_factory = learner_factory or self._default_learner_factory
        self.strategy = strategy if strategy is not None else self._default_strategy()
        self.texts = store.texts()
        self.text_ids = store.text_ids()
        self.splits = store.splits()
        self.gold = store.gold()
        self._read_evidence()
        self.learner: Any | None = None
        self._learner_iteration: int | None = None
        self._annotator_labels: np.ndarray | None = None
        with store.transaction():
            store.set_setting(LOOP_SETTING, config.to_dict())
            store.set_setting(ANNOTATOR_SETTING, annotator_name)

    # ------------------------------------------------------------------ construction
    @classmethod
    def resume(cls, store: ProjectStore, annotator: Annotator, config: LoopConfig | None = None, **kwargs: Any) -> "ActiveLearningLoop":
        """Reopen a run from its store: the stored config (unless one is given) and state.

        The next :meth:`step` / :meth:`run` carries on at the step the run was in.
        """
        kwargs.setdefault("annotator_name", store.get_setting(ANNOTATOR_SETTING, "molam"))
        return cls(store, annotator, config, **kwargs)

    def _default_learner_factory(self, iteration: int) -> Any:
        from .learner import make_learner

        return make_learner(
            self.config.learner_mode,
            len(self.labels),
            backbone=self.config.backbone,
            random_state=self.config.random_state * 1000 + iteration,
        )

    def _default_strategy(self) -> Any:
        from .query import make_strategy

        return make_strategy(self.config.strategy)

    def _read_evidence(self) -> None:
        """The stored evidence (zeros where an LLM has not answered) and which texts every LLM answered."""
        models = self.evidence_models if self.evidence_models else None
        self.evidence = self.store.evidence(models, partial=True) or self._empty_evidence()
        models = list(self.evidence.models)
        self.covered = np.zeros(len(self.texts), dtype=bool)
        if models:
            self.covered[self.store.covered_indices(models)] = True
        else:
            self.covered[:] = True  # no evidence at all: an annotator that reads none (the gold oracle)

    def unanswered(self, indices: Sequence[int]) -> list[int]:
        """The texts of ``indices`` some LLM has not answered."""
        return [int(i) for i in indices if not self.covered[int(i)]]

    def _empty_evidence(self) -> PanelEvidence:
        n, k = self.store.n_texts, len(self.labels)
        return PanelEvidence(
            labels=self.labels, models=(), label_probs=np.zeros((n, 0, k)), vote_shares=np.zeros((n, 0, k)),
            text_ids=tuple(self.store.text_ids()),
        )

    # ------------------------------------------------------------------ state
    @property
    def last(self) -> IterationRecord | None:
        return self.store.last_iteration()

    @property
    def completed_iterations(self) -> int:
        """AL iterations fully done (iteration 0, the seed training, not counted)."""
        last = self.last
        if last is None:
            return 0
        return last.iteration if last.status == "trained" else last.iteration - 1

    def pool_indices(self) -> np.ndarray:
        """Unlabeled texts of the ``pool`` split: what the strategy may query."""
        labeled = np.zeros(len(self.texts), dtype=bool)
        labeled[self.store.labeled_indices()] = True
        return np.flatnonzero((self.splits == "pool") & ~labeled)

    def next_step(self, target: int | None = None) -> str:
        """``train`` / ``query`` / ``answer`` / ``label``, ``retrain`` (the pool is empty but human reviews are pending:
        an iteration that queries nothing and trains on L with them), or ``done``: ``target`` AL iterations
        (default: the planned ones) are trained, or the pool is empty and no review is pending. A half-done
        iteration is always finished first."""
        last = self.last
        if last is None:
            return "train"
        if last.status == "queried":
            return "answer" if self.unanswered(last.queried) else "label"
        if last.status == "labeled":
            return "train"
        target = self.config.planned_iterations if target is None else target
        if last.iteration >= target:
            return "done"
        if len(self.pool_indices()) == 0:
            return "retrain" if self.store.responses(pending_only=True) else "done"
        return "query"

    # ------------------------------------------------------------------ public actions
    def step(self) -> StepResult:
        """Do the next step towards the planned iterations (and commit it); ``step == "done"`` once
        nothing is left."""
        return self._do(self.next_step())

    def _do(self, action: str, cancel: threading.Event | None = None) -> StepResult:
        last = self.last
        if action == "done":
            return StepResult(last.iteration if last else 0, "done", last)
        if action == "train":
            iteration = 0 if last is None else last.iteration
            return StepResult(iteration, "train", self._train(iteration))
        if action == "answer":
            return StepResult(last.iteration, "answer", self._answer(last, cancel))
        if action == "label":
            return StepResult(last.iteration, "label", self._label(last))
        if action == "retrain":
            return StepResult(last.iteration + 1, "retrain", self._retrain(last.iteration + 1))
        return StepResult(last.iteration + 1, "query", self._query(last.iteration + 1))

    def run(
        self,
        n: int | None = None,
        *,
        progress: ProgressHook | None = None,
        cancel: threading.Event | None = None,
    ) -> list[IterationRecord]:
        """Run ``n`` more AL iterations (default: until the planned ones are trained), a half-done one
        finished first; returns the stored iterations. The plan, and so the lambda schedule, stays as
        configured: iterations past it train with lambda_end. ``cancel`` stops between steps."""
        target = self.config.planned_iterations if n is None else self.completed_iterations + n
        while not (cancel is not None and cancel.is_set()):
            action = self.next_step(target)
            if action == "done":
                break
            result = self._do(action, cancel)
            if progress is not None:
                progress(result)
        return self.store.iterations()

    def run_iteration(self) -> IterationRecord | None:
        """Finish the current iteration, or do one more (query, label, train)."""
        last = self.last
        records = self.run(1 if last is not None and last.status == "trained" else 0)
        return records[-1] if records else None

    def override(self, text_index: int, label: int) -> None:
        """A human's label for a text: stored with its time, used from the next training on."""
        self.store.add_override(text_index, label)

    # ------------------------------------------------------------------ annotator
    def _ensure_annotator(self) -> None:
        if self._annotator_ready:
            return
        if self._fit_annotator:
            y = self.store.annotator_fit_labels()
            if y is None:
                y = np.full(len(self.texts), -1, dtype=int)
                for row in self.store.annotations():
                    if row.is_human:
                        y[row.text_index] = row.label
                if not (y >= 0).any():
                    raise LoopError("no seed labels: label some texts (about 50) before running the loop")
                self.store.put_annotator_fit_labels(y)
            if not self.covered.all():
                raise LoopError(
                    f"{self.annotator_name} is fitted by the loop on every text's evidence, and "
                    f"{int((~self.covered).sum())} texts have none yet: run the annotators on every text "
                    "(label everything), or label with MoLAM, which works on the texts answered so far"
                )
            text_member = None
            if reads_text_member(self.annotator):
                # The text classifier joins the panel, cross-fitted on the labels the annotator is fitted on.
                from .text_member import TextMember

                text_member = TextMember(self.texts, random_state=self.config.random_state)
            self.evidence = fit_annotator(self.annotator, self.evidence, y, text_member)
        self._annotator_ready = True

    def _annotator_labels_on(self, indices: np.ndarray) -> np.ndarray:
        """The annotator's labels on ``indices`` (computed once per text, for the agreement metric)."""
        if self._annotator_labels is None:
            self._annotator_labels = np.full(len(self.texts), -1, dtype=int)
        missing = indices[self._annotator_labels[indices] < 0]
        if len(missing):
            self._ensure_annotator()
            self._annotator_labels[missing] = self.annotator.annotate(self.evidence.subset(missing)).labels
        return self._annotator_labels[indices]

    # ------------------------------------------------------------------ the three steps
    def _query(self, iteration: int) -> IterationRecord:
        learner = self._current_learner(iteration - 1)
        pool = self.pool_indices()
        labeled = self.store.labeled_indices()
        n = min(self.config.batch_size, len(pool))
        start = time.perf_counter()
        chosen = self.strategy.query(
            learner, self.texts, pool, labeled, n, random_state=self.config.random_state * 1000 + iteration
        )
        query_s = time.perf_counter() - start
        chosen = [int(i) for i in np.asarray(chosen).ravel()]
        if len(set(chosen)) != len(chosen) or not set(chosen) <= set(pool.tolist()):
            raise LoopError(f"strategy {self.config.strategy!r} returned texts outside the unlabeled pool or repeats")
        record = IterationRecord(
            iteration=iteration, status="queried", queried=tuple(chosen), lam=self._lambda(iteration),
            timings={"query_s": query_s},
        )
        self.store.put_iteration(record)
        return record

    def _retrain(self, iteration: int) -> IterationRecord:
        """An iteration with nothing to query (the pool is empty): L, with the pending human reviews, is
        trained on as it stands, so that they reach the AL model."""
        self.store.put_iteration(IterationRecord(
            iteration=iteration, status="labeled", queried=(), lam=self._lambda(iteration),
            metrics={"n_labeled_by_annotator": 0, "n_flagged": 0}, info={"training_only": True},
        ))
        return self._train(iteration)

    def _answer(self, record: IterationRecord, cancel: threading.Event | None) -> IterationRecord:
        """Evidence on demand: the panel answers the queried texts some LLM has not answered (committed
        per batch by ``answer``; a kill here resumes with only the rest to ask)."""
        todo = self.unanswered(record.queried)
        if self.answer is None:
            raise LoopError(
                f"{len(todo)} queried texts have no evidence from every LLM and this run cannot ask the LLMs: "
                "run the loop from the Active learning page or the CLI with the panel's LLMs (evidence on demand)"
            )
        start = time.perf_counter()
        self.answer(todo, cancel)
        answer_s = time.perf_counter() - start
        self._read_evidence()
        still = self.unanswered(record.queried)
        if still and not (cancel is not None and cancel.is_set()):
            raise LoopError(f"{len(still)} queried texts still have no evidence from every LLM after asking the panel: "
                            "an LLM whose evidence is replayed from a file cannot be asked for more; import its "
                            "evidence for every text, or take it out of the panel")
        answered = record.metrics.get("n_answered", 0) + len(todo) - len(still)
        return self.store.update_iteration(record.iteration, metrics={"n_answered": answered},
                                           timings={"answer_s": record.timings.get("answer_s", 0.0) + answer_s})

    def _lambda(self, iteration: int) -> float:
        return self.config.lam(iteration) if self.config.negative_learning else 0.0

    def _label(self, record: IterationRecord) -> IterationRecord:
        self._ensure_annotator()
        iteration = record.iteration
        # A text a human labeled after it was queried keeps the human's label.
        labeled = set(self.store.labeled_indices().tolist())
        to_label = np.array([i for i in record.queried if i not in labeled], dtype=int)
        unanswered = self.unanswered(to_label)
        if unanswered:
            raise LoopError(f"{len(unanswered)} queried texts have no evidence from every LLM: the answer step comes first")
        start = time.perf_counter()
        annotation = self.annotator.annotate(self.evidence.subset(to_label)) if len(to_label) else None
        label_s = time.perf_counter() - start
        rows: list[AnnotationRow] = []
        n_flagged = 0
        if annotation is not None:
            y_plus = np.asarray(annotation.labels, dtype=int)
            previous = self.store.predictions(iteration - 1)
            d_anno, w_d = discrepancy_weights(
                None if previous is None else previous.labels[to_label], y_plus, self.config.alpha
            )
            if not self.config.discrepancy or getattr(self.annotator, "human_labels", False):
                w_d = np.ones(len(y_plus))
            n_flagged = int(d_anno.sum())
            negatives = np.asarray(annotation.negative_mask, dtype=bool)
            for row, idx in enumerate(to_label):
                rows.append(AnnotationRow(
                    text_index=int(idx), label=int(y_plus[row]), source=self.annotator_name, iteration=iteration,
                    probability=float(annotation.probability[row]), annotator_label=int(y_plus[row]),
                    negatives=tuple(int(k) for k in np.flatnonzero(negatives[row])),
                    proba=tuple(float(p) for p in np.asarray(annotation.proba)[row]),
                    d_anno=bool(d_anno[row]), weight=float(w_d[row]),
                ))
        metrics: dict[str, Any] = {"n_labeled_by_annotator": len(rows), "n_flagged": n_flagged}
        gold = self.gold[to_label]
        if len(rows) and (gold >= 0).all():
            metrics["annotator_batch_accuracy"] = float(np.mean(gold == np.array([r.label for r in rows])))
        with self.store.transaction():
            self.store.put_annotations(rows)
            updated = self.store.update_iteration(iteration, status="labeled", metrics=metrics, timings={"label_s": label_s})
        return updated

    def _training_set(self) -> TrainingSet:
        """L as it stands: labels, W_d, y- masks; human labels weight 1, no negatives (Eq. 9)."""
        rows = self.store.annotations()
        k = len(self.labels)
        index = np.array([r.text_index for r in rows], dtype=int)
        y = np.array([r.label for r in rows], dtype=int)
        weight = np.array(
            [1.0 if r.is_human or not self.config.discrepancy else r.weight for r in rows], dtype=float
        )
        negatives = np.zeros((len(rows), k), dtype=bool)
        if self.config.negative_learning:
            for row, r in enumerate(rows):
                if not r.is_human:
                    negatives[row, list(r.negatives)] = True
        return TrainingSet(index, y, weight, negatives)

    def _fit(self, iteration: int, train: TrainingSet, lam: float) -> Any:
        learner = self._fresh_learner_on(iteration, train, lam)
        self.learner, self._learner_iteration = learner, iteration
        return learner

    def _fresh_learner_on(self, iteration: int, train: TrainingSet, lam: float) -> Any:
        """A new learner trained on the training set ``train``."""
        learner = self.learner_factory(iteration)
        learner.fit(
            [self.texts[i] for i in train.index],
            train.y,
            negative_mask=train.negatives,
            sample_weight=train.weight,
            negative_weight=lam,
        )
        return learner

    def _train(self, iteration: int) -> IterationRecord:
        if iteration == 0:
            if not self.store.human_labels():
                raise LoopError("no seed labels: label some texts (about 50) before running the loop")
            self.store.put_iteration(IterationRecord(iteration=0, status="labeled", lam=0.0))
        self._ensure_annotator()
        lam = self._lambda(iteration) if iteration > 0 else 0.0
        train = self._training_set()
        pending = len(self.store.responses(pending_only=True))
        start = time.perf_counter()
        learner = self._fit(iteration, train, lam)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        proba = np.asarray(learner.predict_proba(self.texts), dtype=np.float32)
        predict_s = time.perf_counter() - start
        metrics = self._metrics(proba.argmax(axis=1), train)
        metrics["reviews_used"] = pending  # human accepts and overrides this training used for the first time
        timings = {"train_s": train_s, "predict_s": predict_s}
        if not any(k.endswith("_accuracy") for k in metrics):  # no gold labels to measure on
            start = time.perf_counter()
            estimate = self._seed_cv_accuracy(iteration, train, lam)
            if estimate:
                metrics.update(estimate)
                timings["seed_cv_s"] = time.perf_counter() - start
        with self.store.transaction():
            self.store.put_training_set(iteration, train)
            self.store.put_predictions(iteration, proba)
            self.store.mark_responses_applied(iteration)
            record = self.store.update_iteration(
                iteration, status="trained", metrics=metrics, lam=lam, timings=timings,
            )
        return record

    def _seed_cv_accuracy(self, iteration: int, train: TrainingSet, lam: float) -> dict[str, Any]:
        """The estimate of this iteration's accuracy where no gold labels exist: K-fold over the seed
        labels, each fold's seeds left out of L, a fresh learner trained on the rest of L exactly as the
        AL model is, and scored on the left-out seeds (human labels it never saw). Pooled over the
        folds, with a Wilson 95 % interval. MoLAM's labels in L come from MoLAM fitted on every seed,
        so a held-out seed still reaches the fold's training set through them, weakly."""
        folds = self.config.seed_cv_folds
        seeds = set(self.store.seed_labels())
        seed_rows = np.flatnonzero(np.isin(train.index, list(seeds)))
        if folds == 0 or len(seed_rows) < folds:
            return {}
        from sklearn.model_selection import KFold

        correct = 0
        splitter = KFold(folds, shuffle=True, random_state=self.config.random_state)
        for _, held_out in splitter.split(seed_rows):
            keep = np.ones(len(train), dtype=bool)
            keep[seed_rows[held_out]] = False
            learner = self._fresh_learner_on(iteration, train.rows(keep), lam)
            left_out = train.rows(seed_rows[held_out])
            predicted = np.asarray(learner.predict_proba([self.texts[i] for i in left_out.index])).argmax(axis=1)
            correct += int((predicted == left_out.y).sum())
        low, high = wilson_interval(correct, len(seed_rows))
        return {"seed_cv_accuracy": correct / len(seed_rows), "seed_cv_low": low, "seed_cv_high": high,
                "seed_cv_n": int(len(seed_rows)), "seed_cv_folds": folds}

    def _metrics(self, prediction: np.ndarray, train: TrainingSet) -> dict[str, Any]:
        k = len(self.labels)
        metrics: dict[str, Any] = {"n_labeled": len(train)}
        for split in ("validation", "test"):
            members = np.flatnonzero((self.splits == split) & (self.gold >= 0))
            if len(members):
                for name, value in classification_metrics(self.gold[members], prediction[members], k).items():
                    metrics[f"{split}_{name}"] = value
        pool = self.pool_indices()
        answered = pool[self.covered[pool]]  # the annotator labels only texts the LLMs have answered
        if len(answered):
            metrics["annotator_agreement"] = float(np.mean(self._annotator_labels_on(answered) == prediction[answered]))
        return metrics

    def _current_learner(self, iteration: int) -> Any:
        """The AL model trained at ``iteration``, re-trained from its stored training set after a restart."""
        if self.learner is not None and self._learner_iteration == iteration:
            return self.learner
        train = self.store.training_set(iteration)
        if train is None:
            raise StoreError(f"the training set of iteration {iteration} is missing from the store")
        record = self.store.iteration(iteration)
        return self._fit(iteration, train, record.lam or 0.0)

    # ------------------------------------------------------------------ results
    def latest_proba(self) -> np.ndarray | None:
        """The latest AL model's class probabilities on every text (n, K), if trained."""
        latest = self.store.latest_predictions()
        return None if latest is None else latest.proba

    def results(self) -> dict[str, Any]:
        """The run as plain data (JSON-ready): config, and per iteration what was recorded."""
        annotations = {r.text_index: r for r in self.store.annotations()}
        iterations = []
        for record in self.store.iterations():
            labeled = [annotations[i] for i in record.queried if i in annotations and annotations[i].iteration == record.iteration]
            iterations.append({
                "iteration": record.iteration,
                "status": record.status,
                "lambda": record.lam,
                "queried_ids": [self.text_ids[i] for i in record.queried],
                "y_plus": [self.labels[r.annotator_label] for r in labeled if r.annotator_label is not None],
                "probability": [r.probability for r in labeled],
                "y_minus": [[self.labels[k] for k in r.negatives] for r in labeled],
                "d_anno": [r.d_anno for r in labeled],
                "W_d": [r.weight for r in labeled],
                "metrics": record.metrics,
                "timings": record.timings,
            })
        return {
            "config": self.config.to_dict(),
            "annotator": self.annotator_name,
            "labels": list(self.labels),
            "n_texts": len(self.texts),
            "n_seeds": len(self.store.seed_labels()),
            "overrides": [
                {"text_id": self.text_ids[o.text_index], "kind": o.kind,
                 "old": None if o.previous_label is None else self.labels[o.previous_label],
                 "new": self.labels[o.label], "at": o.created_at, "applied_iteration": o.applied_iteration}
                for o in self.store.responses()
            ],
            "iterations": iterations,
        }


def seed_sample(
    candidates: Sequence[int] | np.ndarray, n: int, random_state: int
) -> np.ndarray:
    """``n`` seed texts drawn uniformly at random from ``candidates`` (sorted)."""
    candidates = np.asarray(candidates, dtype=int)
    if n > len(candidates):
        raise LoopError(f"cannot draw {n} seeds from {len(candidates)} texts")
    return np.sort(np.random.default_rng(random_state).choice(candidates, size=n, replace=False))


__all__ = [
    "ActiveLearningLoop",
    "Annotator",
    "Answerer",
    "GoldOracle",
    "LoopConfig",
    "LoopError",
    "StepResult",
    "classification_metrics",
    "seed_sample",
]
