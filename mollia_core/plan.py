"""A plan before the panel runs: seconds per text of each LLM measured on this machine, what each
choice of evidence costs (texts each LLM answers, expected wall time), and the ETA of a running panel
from its measured rates after warm-up.

The choices (:func:`plan_choices`): label as you go (evidence on demand: the seed texts, a self-training
sample and each iteration's queried texts), the self-training sample alone, and the whole pool.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from .evidence.source import Progress
from .services.errors import ProjectError

if TYPE_CHECKING:
    from .project import Project
    from .services.panel import AnnotatorSpec

#: Texts timed per LLM after the warm-up text (which pays for loading the model and the prompt prefix).
DEFAULT_TIMED_TEXTS = 4


@dataclass(frozen=True)
class MeasuredRate:
    """One LLM timed on this machine: loading it and its first (warm-up) text, then ``texts`` texts."""

    model: str
    warmup_s: float
    seconds_per_text: float
    texts: int


@dataclass(frozen=True)
class PlanChoice:
    """One way of getting evidence: how many texts each LLM still answers, and the expected wall time
    (the LLMs run one after the other; texts already answered or in the evidence cache cost nothing)."""

    name: str
    texts_per_model: dict[str, int]
    expected_s: float


def _measured_texts(project: "Project", count: int) -> list[str]:
    """The first seed texts (the pool's first texts where there are too few seeds)."""
    dataset = project.dataset
    ids = list(dataset.seeds()) + [i for i in dataset.seed_candidates(count) if i not in dataset.seeds()]
    return [dataset.text_of(text_id) for text_id in ids[:count]]


def measure_rates(project: "Project", specs: Sequence["AnnotatorSpec"] | None = None,
                  timed_texts: int = DEFAULT_TIMED_TEXTS, say: Callable[[str], None] | None = None,
                  api_key: str | None = None) -> list[MeasuredRate]:
    """Time each LLM of the panel (default: the project's, replayed ones left out) on the first seed texts,
    straight through the model (never the evidence cache), one model in memory at a time."""
    from .services.panel import make_source

    specs = [s for s in (specs if specs is not None else project.panel.specs()) if s.kind != "replay"]
    texts = _measured_texts(project, timed_texts + 1)
    if len(texts) < 2:
        raise ProjectError("the project needs at least 2 texts to time the LLMs on: load more on the Data page")
    labels, prompt = list(project.dataset.labels), project.panel.prompt()
    rates = []
    for spec in specs:
        if say is not None:
            say(f"timing {spec.display_name} on {len(texts) - 1} seed texts after a warm-up text")
        cached = make_source(spec, prompt, api_key=api_key)
        model = cached.source  # the LLM itself: a cached answer would time the cache
        try:
            started = time.perf_counter()
            model.evidence(texts[:1], labels)
            warm = time.perf_counter()
            model.evidence(texts[1:], labels)
            done = time.perf_counter()
        finally:
            cached.close()
        rates.append(MeasuredRate(spec.display_name, warm - started, (done - warm) / (len(texts) - 1), len(texts) - 1))
    return rates


def texts_to_answer(project: "Project", indices: Sequence[int], specs: Sequence["AnnotatorSpec"] | None = None) -> dict[str, int]:
    """Per LLM (replayed ones left out), how many of the texts at ``indices`` it still has to answer:
    not stored in the project and not in the on-disk evidence cache."""
    from .services.panel import make_source

    specs = [s for s in (specs if specs is not None else project.panel.specs()) if s.kind != "replay"]
    texts, labels = project.dataset.texts, list(project.dataset.labels)
    wanted = set(int(i) for i in indices)
    counts = {}
    for spec in specs:
        missing = [i for i in project.panel.missing_evidence(spec.display_name) if i in wanted]
        source = make_source(spec, project.panel.prompt())  # loads nothing until asked for evidence
        counts[spec.display_name] = len(missing) - source.cached_count([texts[i] for i in missing], labels)
    return counts


def plan_choices(project: "Project", rates: Sequence[MeasuredRate]) -> list[PlanChoice]:
    """What each choice of evidence costs, with the texts every timed LLM still answers and the wall time
    expected at the measured rates (plus each model's warm-up, paid once per run):

    - ``label as you go``: the seed texts and the self-training sample up front, then each planned AL
      iteration's queried texts (batch size x planned iterations of the loop settings; not known before
      they are queried, so counted as not answered);
    - ``self-training sample``: the seed texts and the sample, what the evidence run answers on demand;
    - ``whole pool``: every text (pool, validation and test), what "label everything" answers first.
    """
    panel = project.panel
    human = np.flatnonzero(project.dataset.seed_vector() >= 0)
    sample = panel.sample_indices()
    up_front = np.unique(np.concatenate([human, sample])).astype(int)
    settings = project.loop.loop_settings()
    # Queried texts come from the unlabeled pool; those in the sample are answered already.
    unanswered_pool = max(project.loop.pool_size() - len(sample), 0)
    queries = min(settings.batch_size * settings.planned_iterations, unanswered_pool)
    specs = [s for s in panel.specs() if s.display_name in {r.model for r in rates}]
    choices = []
    for name, indices, extra in (("label as you go", up_front, queries), ("self-training sample", up_front, 0),
                                 ("whole pool", range(project.store.n_texts), 0)):
        todo = {model: n + extra for model, n in texts_to_answer(project, indices, specs).items()}
        expected = sum(todo[r.model] * r.seconds_per_text + (r.warmup_s if todo[r.model] else 0.0) for r in rates)
        choices.append(PlanChoice(name, todo, expected))
    return choices


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------------- ETA while the panel runs
@dataclass
class RateMeter:
    """Seconds per text of one running LLM, measured after its first batch.

    The first report says what was done before any work (texts answered from the cache); the first
    batch after it pays for loading the model and warming its prompt prefix, so the rate is measured
    only from the end of that batch on. Until then ``prior_seconds_per_text`` (e.g. timed by
    :func:`measure_rates`) stands in, or nothing is known.
    """

    prior_seconds_per_text: float | None = None
    _start: tuple[int, float] | None = None
    _warm: tuple[int, float] | None = None
    _last: tuple[int, float] | None = None

    def update(self, done: int, elapsed_s: float) -> None:
        if self._start is None:
            self._start = (done, elapsed_s)
        elif self._warm is None and done > self._start[0]:
            self._warm = (done, elapsed_s)
        self._last = (done, elapsed_s)

    @property
    def seconds_per_text(self) -> float | None:
        if self._warm is not None and self._last[0] > self._warm[0]:
            return (self._last[1] - self._warm[1]) / (self._last[0] - self._warm[0])
        return self.prior_seconds_per_text


@dataclass
class PanelEta:
    """One ETA for the whole panel: the LLMs run one after the other, each on its own texts to do.

    ``todo``: texts each LLM has to do in this run, in running order; ``prior_seconds_per_text``: rates
    known before the run (a plan), used for an LLM until its own rate is measured after warm-up.
    """

    todo: Mapping[str, int]
    prior_seconds_per_text: Mapping[str, float] = field(default_factory=dict)
    _meters: dict[str, RateMeter] = field(default_factory=dict)
    _done: dict[str, int] = field(default_factory=dict)

    def update(self, model: str, done: int, elapsed_s: float) -> None:
        """``done`` of the model's ``todo`` texts after ``elapsed_s`` seconds of its run."""
        meter = self._meters.setdefault(model, RateMeter(self.prior_seconds_per_text.get(model)))
        meter.update(done, elapsed_s)
        self._done[model] = done

    def seconds_per_text(self, model: str) -> float | None:
        meter = self._meters.get(model)
        return meter.seconds_per_text if meter is not None else self.prior_seconds_per_text.get(model)

    def model_remaining_s(self, model: str) -> float | None:
        left = self.todo[model] - self._done.get(model, 0)
        if left <= 0:
            return 0.0
        rate = self.seconds_per_text(model)
        return None if rate is None else left * rate

    def remaining_s(self) -> float | None:
        """Seconds until every LLM is done; None while an LLM with texts left has no known rate."""
        total = 0.0
        for model in self.todo:
            left = self.model_remaining_s(model)
            if left is None:
                return None
            total += left
        return total


def panel_progress(eta: PanelEta, model: str, done: int, total: int, elapsed_s: float) -> Progress:
    """What a panel run reports for ``model``: its :class:`Progress` with the rate and ETA measured after
    warm-up, and ``panel_eta_s``, the whole panel's ETA."""
    eta.update(model, done, elapsed_s)
    return PanelProgress(done, total, elapsed_s, eta.seconds_per_text(model), eta.remaining_s())


@dataclass(frozen=True)
class PanelProgress(Progress):
    """One LLM's progress in a panel run. ``rate`` and ``eta_s`` come from its rate measured after its
    first batch (not from the elapsed time, which includes loading the model); ``panel_eta_s`` is the
    ETA of the whole panel (None while some LLM with texts left has no known rate)."""

    seconds_per_text: float | None = None
    panel_eta_s: float | None = None

    @property
    def rate(self) -> float:
        return 1.0 / self.seconds_per_text if self.seconds_per_text else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.done) * self.seconds_per_text if self.seconds_per_text is not None else None
