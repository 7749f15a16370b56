"""The LLM panel: which LLMs annotate, the prompt they get, and their evidence (run or imported)."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..evidence import EvidenceRecord, EvidenceSource, PanelEvidence, Progress
from ..store import ProjectStore
from .dataset import DatasetService
from .errors import ProjectError

#: Seed texts per label that the prompt may show as examples (each lengthens every prompt).
MAX_DEMONSTRATIONS_PER_CLASS = 5

#: Which texts the LLMs answer (issue 11). ``on-demand`` ("label as you go"): the seed texts, a bounded
#: sample of the pool for MoLAM's self-training, and each AL iteration's queried texts, answered as a
#: step of the loop; ``full`` ("label everything"): every text, before MoLAM is fitted.
EVIDENCE_MODES = ("on-demand", "full")
DEFAULT_EVIDENCE_MODE = "on-demand"
#: Unlabeled pool texts the panel answers up front in on-demand mode, for MoLAM's self-training (Eq. 8).
DEFAULT_SELF_TRAINING_SAMPLE = 200
#: The sample is drawn once per dataset with this seed, independent of the seeds and the AL run.
_SAMPLE_RANDOM_STATE = 0


@dataclass(frozen=True)
class AnnotatorSpec:
    """One LLM of the panel, as the user configured it. API keys are never part of a spec.

    kind: ``embedded`` (model = a key of ``EMBEDDED_MODELS``), ``hf`` (model = hub id or
    folder, quantization ``auto``/``4bit``/``bf16``), ``server`` (base_url + model),
    ``replay`` (path = an evidence file in the project's JSONL format; model = its model name).
    """

    kind: str
    model: str
    base_url: str = ""
    quantization: str = "auto"
    path: str = ""

    @property
    def display_name(self) -> str:
        if self.kind == "server":
            return f"{self.model} @ {self.base_url}"
        if self.kind == "hf":
            return f"hf:{self.model}"
        if self.kind == "replay":
            return f"replay:{self.model}"
        return self.model


def make_source(spec: AnnotatorSpec, template=None, api_key: str | None = None) -> EvidenceSource:
    """The evidence source a spec describes, behind the on-disk evidence cache.

    ``template``: a template string, a ``PromptTemplate`` (``PanelService.prompt()``), or None.

    ``api_key`` is passed to a server source only; it is never stored or exported.
    Missing optional parts (a source module, a model package) raise ``ProjectError``.
    """
    from ..evidence.prompt import PromptTemplate
    from ..evidence.source import EvidenceError

    prompt = PromptTemplate(template=template) if isinstance(template, str) and template else template or None
    try:
        if spec.kind == "embedded":
            from ..evidence.embedded import EmbeddedSource

            source = EmbeddedSource(spec.model, **({"template": prompt} if prompt else {}))
        elif spec.kind == "hf":
            from ..evidence.hf import HuggingFaceSource

            source = HuggingFaceSource(spec.model, quantization=spec.quantization,
                                       **({"template": prompt} if prompt else {}))
        elif spec.kind == "server":
            from ..evidence.server import OpenAICompatibleSource

            source = OpenAICompatibleSource(spec.base_url, spec.model, api_key=api_key or None,
                                            **({"template": prompt} if prompt else {}))
        elif spec.kind == "replay":
            raise ProjectError("replayed evidence is imported from its file (import_evidence_file), not run")
        else:
            raise ProjectError(f"unknown annotator kind {spec.kind!r}: use embedded, hf, server or replay")
    except ImportError as exc:
        raise ProjectError(f"{spec.kind} annotators are not available in this installation ({exc})") from None
    except EvidenceError as exc:
        raise ProjectError(str(exc)) from None
    from ..evidence.cache import CachedSource, EvidenceCache

    return CachedSource(source, EvidenceCache())


def _in_label_order(record: EvidenceRecord, labels: tuple[str, ...]) -> EvidenceRecord:
    """The record with z and c in the project's label order (same set, maybe another order)."""
    if tuple(record.labels) == labels:
        return record
    if set(record.labels) != set(labels):
        raise ProjectError(
            f"evidence of {record.model} is over labels {list(record.labels)}, this project's are {list(labels)}"
        )
    order = [record.labels.index(label) for label in labels]
    return replace(record, labels=labels, label_probs=np.asarray(record.label_probs)[order],
                   vote_shares=np.asarray(record.vote_shares)[order])


class PanelService:
    """The panel, its prompt and its evidence in one project's store."""

    def __init__(self, store: ProjectStore, dataset: DatasetService) -> None:
        self.store = store
        self.dataset = dataset
        self._evidence_cache: tuple[Any, PanelEvidence] | None = None

    # ------------------------------------------------------------------ the panel
    def specs(self) -> list[AnnotatorSpec]:
        """The configured LLM panel, in order."""
        return [AnnotatorSpec(**spec) for spec in self.store.get_setting("panel", [])]

    # ``project.panel()`` (the pages, the tests) reads the panel as it did before this was a service.
    __call__ = specs

    def set_specs(self, specs: Sequence[AnnotatorSpec]) -> None:
        names = [s.display_name for s in specs]
        if len(set(names)) != len(names):
            raise ProjectError("the same LLM is in the panel twice: remove one")
        self.store.set_setting("panel", [asdict(s) for s in specs])

    def models(self) -> list[str]:
        return [s.display_name for s in self.specs()]

    # ------------------------------------------------------------------ the prompt
    @property
    def prompt_template(self) -> str | None:
        """The user's prompt template, or None for the default one."""
        return self.store.get_setting("prompt_template")

    def set_prompt_template(self, template: str | None) -> None:
        self.store.set_setting("prompt_template", template)

    @property
    def label_descriptions(self) -> dict[str, str]:
        """What each label means, told to the LLMs in the prompt (label -> description)."""
        return dict(self.store.get_setting("label_descriptions", None) or {})

    def set_label_descriptions(self, descriptions: dict[str, str]) -> None:
        unknown = sorted(set(descriptions) - set(self.dataset.labels))
        if unknown:
            raise ProjectError(f"descriptions for labels not in the label set: {', '.join(map(repr, unknown))}")
        kept = {label: " ".join(str(text).split()) for label, text in descriptions.items() if str(text).strip()}
        self.store.set_setting("label_descriptions", kept)

    @property
    def demonstrations_per_class(self) -> int:
        """How many seed texts per label the prompt shows as examples (0: none)."""
        return int(self.store.get_setting("demonstrations_per_class", 0) or 0)

    def set_demonstrations_per_class(self, per_class: int) -> None:
        if not isinstance(per_class, int) or not 0 <= per_class <= MAX_DEMONSTRATIONS_PER_CLASS:
            raise ProjectError(
                f"demonstrations per label must be a whole number from 0 to {MAX_DEMONSTRATIONS_PER_CLASS}, not {per_class!r}"
            )
        self.store.set_setting("demonstrations_per_class", per_class)

    def prompt(self):
        """The prompt every LLM of the panel gets: the template, the label descriptions and, when
        asked for, demonstrations chosen from the seed labels (``prompt.choose_demonstrations``)."""
        from ..evidence.prompt import PromptTemplate, choose_demonstrations

        demonstrations, spares = (), ()
        if self.demonstrations_per_class:
            texts = self.dataset.texts
            labeled = [(texts[self.dataset.index_of(text_id)], label) for text_id, label in self.dataset.seeds().items()]
            demonstrations, spares = choose_demonstrations(labeled, self.dataset.labels, self.demonstrations_per_class)
        try:
            return PromptTemplate(
                **({"template": self.prompt_template} if self.prompt_template else {}),
                descriptions=self.label_descriptions,
                demonstrations=demonstrations,
                spare_demonstrations=spares,
            )
        except ValueError as exc:
            raise ProjectError(str(exc)) from None

    # ------------------------------------------------------------------ which texts the LLMs answer
    @property
    def evidence_mode(self) -> str:
        """``on-demand`` (the default: only the texts MoLAM and the loop need) or ``full`` (every text)."""
        return self.store.get_setting("evidence_mode", None) or DEFAULT_EVIDENCE_MODE

    @property
    def self_training_sample(self) -> int | None:
        """How many unlabeled pool texts the panel answers up front in on-demand mode (None: the whole pool)."""
        value = self.store.get_setting("self_training_sample", DEFAULT_SELF_TRAINING_SAMPLE)
        return None if value is None else int(value)

    def set_evidence_plan(self, mode: str, self_training_sample: int | None = DEFAULT_SELF_TRAINING_SAMPLE) -> None:
        """Choose which texts the LLMs answer: ``mode`` in :data:`EVIDENCE_MODES`; in on-demand mode also
        the size of the self-training sample (0: none, None: the whole pool)."""
        if mode not in EVIDENCE_MODES:
            raise ProjectError(f"evidence mode must be one of {', '.join(EVIDENCE_MODES)}, not {mode!r}")
        if self_training_sample is not None and (not isinstance(self_training_sample, int) or self_training_sample < 0):
            raise ProjectError(f"the self-training sample is a number of texts (0 or more), not {self_training_sample!r}")
        self.store.update_settings({"evidence_mode": mode, "self_training_sample": self_training_sample})

    def sample_indices(self) -> np.ndarray:
        """The self-training sample: unlabeled pool texts in a fixed random order (one per dataset), the
        first ``self_training_sample`` of them that are not human-labeled."""
        pool = np.flatnonzero(self.dataset.splits() == "pool")
        human = set(np.flatnonzero(self.dataset.seed_vector() >= 0).tolist())
        order = np.random.default_rng(_SAMPLE_RANDOM_STATE).permutation(pool)
        unlabeled = np.array([i for i in order if i not in human], dtype=int)
        size = self.self_training_sample
        return unlabeled if size is None else unlabeled[:size]

    def needed_indices(self) -> np.ndarray:
        """The texts the panel has to answer now, most needed first: every text in ``full`` mode; in
        ``on-demand`` mode the human-labeled texts (MoLAM is fitted on them), then the self-training
        sample, then the texts the AL iterations queried (the loop answers those as its step)."""
        if self.evidence_mode == "full":
            return np.arange(self.store.n_texts)
        human = np.flatnonzero(self.dataset.seed_vector() >= 0)
        queried = [i for record in self.store.iterations() for i in record.queried]
        ordered = dict.fromkeys([*human.tolist(), *self.sample_indices().tolist(), *queried])
        return np.array(list(ordered), dtype=int)

    def covered_indices(self) -> np.ndarray:
        """The texts every LLM of the panel has answered (sorted): those MoLAM can label."""
        models = self.models()
        return self.store.covered_indices(models) if models else np.zeros(0, dtype=int)

    # ------------------------------------------------------------------ evidence
    def evidence_counts(self) -> dict[str, int]:
        """How many texts have evidence, per model of the panel (and any model stored before)."""
        coverage = self.store.evidence_coverage()
        return {m: coverage.get(m, 0) for m in dict.fromkeys(self.models() + list(coverage))}

    def missing_evidence(self, model: str, indices: Sequence[int] | None = None) -> list[int]:
        """Indices of the texts (of ``indices``, in their order; default every text) that have no evidence
        from ``model`` yet."""
        done = set(self.store.evidence_indices(model).tolist())
        wanted = range(self.store.n_texts) if indices is None else [int(i) for i in indices]
        return [i for i in wanted if i not in done]

    def run_evidence(
        self,
        sources: Sequence[tuple[AnnotatorSpec, EvidenceSource]],
        progress: Callable[[str, Progress], None] | None = None,
        cancel: threading.Event | None = None,
        chunk_size: int = 64,
        seconds_per_text: Mapping[str, float] | None = None,
        indices: Sequence[int] | None = None,
    ) -> dict[str, int]:
        """Ask each source for the texts (of ``indices``, in their order; default :meth:`needed_indices`)
        its model has not answered yet, and store the records.

        Texts go in chunks of ``chunk_size`` and each chunk is committed as soon as it is
        done, so a cancel (``Cancelled`` propagates) or a crash loses at most one chunk
        (and the source's own cache keeps even that). ``progress(model, Progress)`` reports
        over the whole run of a model: a ``plan.PanelProgress``, whose rate and ETA are measured after
        the model's first batch and whose ``panel_eta_s`` is the whole panel's (rates known before the
        run: ``seconds_per_text``, else this project's earlier runs). Returns the new records per model.
        """
        from ..plan import PanelEta, panel_progress

        labels, texts = list(self.dataset.labels), self.dataset.texts
        ids = self.dataset.text_ids
        added: dict[str, int] = {}
        wanted = self.needed_indices() if indices is None else indices
        todos = {spec.display_name: self.missing_evidence(spec.display_name, wanted) for spec, _ in sources}
        eta = PanelEta({model: len(todo) for model, todo in todos.items()},
                       {**self.seconds_per_text(), **(seconds_per_text or {})})
        for spec, source in sources:
            model = spec.display_name
            todo = todos[model]
            added[model] = 0
            started = time.monotonic()
            for begin in range(0, len(todo), chunk_size):
                chunk = todo[begin: begin + chunk_size]
                offset = begin

                def report(p: Progress, offset: int = offset) -> None:
                    if progress is not None:
                        progress(model, panel_progress(eta, model, offset + p.done, len(todo), time.monotonic() - started))

                chunk_started = time.monotonic()
                records = source.evidence(
                    [texts[i] for i in chunk], labels, text_ids=[ids[i] for i in chunk], progress=report, cancel=cancel
                )
                self._add_evidence_time(model, time.monotonic() - chunk_started, len(records))
                if len(records) != len(chunk):
                    raise ProjectError(f"{model} returned {len(records)} records for {len(chunk)} texts")
                self._put_records(model, spec, chunk, records)
                added[model] += len(records)
                report(Progress(len(chunk), len(chunk), 0.0))
        return added

    def answer(
        self,
        indices: Sequence[int] | None,
        source_for: Callable[[AnnotatorSpec], EvidenceSource],
        progress: Callable[[str, Progress], None] | None = None,
        cancel: threading.Event | None = None,
        release: Callable[[EvidenceSource], None] | None = None,
        models: Sequence[str] | None = None,
    ) -> dict[str, int]:
        """Every LLM of the panel that can run (``models``: only these; replayed evidence is not run)
        answers the texts of ``indices`` (default :meth:`needed_indices`) it has not answered, one model
        after the other: ``source_for(spec)`` gives its source (asked only when it has texts to do; the
        caller may keep it loaded for the next call), ``release(source)`` after it (e.g. to free memory). Returns the new records per model. What the evidence job, the CLI and
        the loop's answering step call."""
        wanted = self.needed_indices() if indices is None else [int(i) for i in indices]
        specs = [s for s in self.specs() if s.kind != "replay" and (models is None or s.display_name in models)]
        added: dict[str, int] = {}
        for spec in specs:
            if cancel is not None and cancel.is_set():
                break
            if not self.missing_evidence(spec.display_name, wanted):
                continue
            source = source_for(spec)
            try:
                added.update(self.run_evidence([(spec, source)], progress=progress, cancel=cancel, indices=wanted))
            finally:
                if release is not None:
                    release(source)
        return added

    def _add_evidence_time(self, model: str, seconds: float, n_texts: int) -> None:
        timing = self.store.get_setting("evidence_seconds", {})
        spent = timing.get(model, {"seconds": 0.0, "texts": 0})
        timing[model] = {"seconds": spent["seconds"] + seconds, "texts": spent["texts"] + n_texts}
        self.store.set_setting("evidence_seconds", timing)

    def seconds_per_text(self) -> dict[str, float]:
        """Measured wall seconds per text of each model that collected evidence in this project
        (over every run, answers from the evidence cache included); a model not timed is absent."""
        timing = self.store.get_setting("evidence_seconds", {})
        return {model: t["seconds"] / t["texts"] for model, t in timing.items() if t["texts"]}

    def _put_records(self, model: str, spec: AnnotatorSpec, indices: Sequence[int], records: Sequence[EvidenceRecord]) -> None:
        renamed = [[_in_label_order(replace(r, model=model), self.dataset.labels)] for r in records]
        info = {k: v for k, v in asdict(spec).items() if v}
        with self.store.transaction():
            self.store.put_evidence(PanelEvidence.from_records(renamed), indices, model_info={model: info})
            self.store.set_setting("evidence_version", self.store.get_setting("evidence_version", 0) + 1)

    def import_evidence_records(self, spec: AnnotatorSpec, records: Sequence[EvidenceRecord]) -> int:
        """Store records of one model matched by text id (e.g. read from a file); unknown ids are refused."""
        index = {tid: i for i, tid in enumerate(self.dataset.text_ids)}
        unknown = [r.text_id for r in records if r.text_id not in index]
        if unknown:
            raise ProjectError(
                f"{len(unknown)} evidence record(s) name texts not in this project (e.g. id {unknown[0]!r}): "
                "the evidence file must use this project's text ids"
            )
        self._put_records(spec.display_name, spec, [index[r.text_id] for r in records], records)
        return len(records)

    def import_evidence_file(self, path: str | Path, display_name: str | None = None) -> dict[str, int]:
        """Replay an evidence file (the project's JSONL evidence format): each model in it joins the
        panel as ``replay:<model>`` and its records are stored. Records are matched to texts by id,
        or by exact text when no id matches. Returns the number of records per panel member."""
        from ..evidence import EvidenceError
        from ..evidence.replay import read_evidence_jsonl, text_sha256

        try:
            records = list(read_evidence_jsonl(path))
        except (OSError, ValueError, EvidenceError) as exc:
            raise ProjectError(f"cannot read the evidence file {Path(path).name}: {exc}") from None
        if not records:
            raise ProjectError(f"the evidence file {Path(path).name} holds no records")
        labels = self.dataset.labels
        wrong = [r for r in records if set(r.labels) != set(labels)]
        if wrong:
            raise ProjectError(
                f"the evidence file is over labels {list(wrong[0].labels)}, this project's are {list(labels)}: "
                "replay evidence computed for this label set"
            )
        text_ids = self.dataset.text_ids
        ids = {tid: i for i, tid in enumerate(text_ids)}
        if not any(r.text_id in ids for r in records):
            by_sha = {text_sha256(t): text_ids[i] for i, t in enumerate(self.dataset.texts)}
            records = [replace(r, text_id=by_sha.get(r.meta.get("text_sha256"), r.text_id)) for r in records]
        by_model: dict[str, list[EvidenceRecord]] = {}
        for record in records:
            by_model.setdefault(record.model, []).append(record)
        added = {}
        panel = self.specs()
        for model, model_records in by_model.items():
            spec = AnnotatorSpec(kind="replay", model=model, path=str(Path(path).name))
            added[spec.display_name] = self.import_evidence_records(spec, model_records)
            if spec.display_name not in [s.display_name for s in panel]:
                panel.append(spec)
        self.set_specs(panel)
        return added

    def evidence(self, partial: bool = False) -> PanelEvidence | None:
        """The panel's evidence on every text, in dataset order; None while any text lacks some, unless
        ``partial``: then zeros stand where an LLM has not answered (:meth:`covered_indices` says which
        texts are complete; None before any evidence)."""
        models = self.models()
        coverage = self.store.evidence_coverage()
        complete = bool(models) and all(coverage.get(m, 0) >= self.store.n_texts for m in models)
        if not models or not (complete or partial and any(coverage.get(m, 0) for m in models)):
            return None
        key = (tuple(models), tuple(coverage.get(m, 0) for m in models), self.store.get_setting("evidence_version"))
        if self._evidence_cache is None or self._evidence_cache[0] != key:
            self._evidence_cache = (key, self.store.evidence(models, partial=not complete))
        return self._evidence_cache[1]

    def require_evidence(self) -> PanelEvidence:
        evidence = self.evidence()
        if evidence is None:
            if not self.specs():
                raise ProjectError("no LLM panel chosen: pick annotators on the Annotators page")
            raise ProjectError("LLM evidence is incomplete: run the annotators on the Annotators page first")
        return evidence

    def covered_evidence(self, required: Sequence[int] = ()) -> tuple[np.ndarray, PanelEvidence]:
        """The texts every LLM has answered and the panel's evidence on them (``PanelEvidence`` over those
        texts, in text order, with their ids): what MoLAM is fitted on and labels. ``required`` texts (the
        human-labeled ones) must be among them, else a ``ProjectError`` says how many lack evidence."""
        if not self.specs():
            raise ProjectError("no LLM panel chosen: pick annotators on the Annotators page")
        covered = self.covered_indices()
        lacking = np.setdiff1d(np.asarray(required, dtype=int), covered)
        if len(lacking) or not len(covered):
            raise ProjectError(
                f"{len(lacking) if len(lacking) else 'the'} labeled text(s) have no evidence from every LLM of the "
                "panel yet: run the annotators on the Annotators page first"
            )
        evidence = self.evidence(partial=True)
        return covered, evidence if len(covered) == self.store.n_texts else evidence.subset(covered)
