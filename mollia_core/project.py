"""A labeling project: what the dashboard's pages call (and nothing of Streamlit).

A project is one SQLite file in the projects folder (``projects_dir()``), kept by
``mollia_core.store.ProjectStore``: the user's table (texts, gold labels, original
columns), the column choices and label set, the seed labels, the annotator panel,
the LLM evidence, MoLAM's annotation of every text, the active-learning
iterations and the human overrides. Every method that changes something commits
before it returns, so closing the browser or killing the server loses nothing
that was committed, and reopening the project resumes exactly.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from . import paths
from .evidence import EvidenceRecord, EvidenceSource, PanelEvidence, Progress
from .export import EXPORT_COLUMNS, normalize_export_frame, original_column_name
from .loop import LoopConfig
from .store import PROJECT_SUFFIX, SOURCE_OVERRIDE, SOURCE_SEED, ProjectStore, StoreError

DEFAULT_SEED_COUNT = 50
#: Seed texts per label that the prompt may show as examples (each lengthens every prompt).
MAX_DEMONSTRATIONS_PER_CLASS = 5
#: Share of the gold-labeled rows held out as the validation split the learning curve is measured on
#: (only when at least ``MIN_GOLD_FOR_VALIDATION`` rows carry a label, so seeds remain plentiful).
VALIDATION_FRACTION = 0.2
MIN_GOLD_FOR_VALIDATION = 100
MAX_VALIDATION = 1000
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


class ProjectError(Exception):
    """A user's request cannot be done as asked; the message says what is wrong and what to do."""


def projects_dir() -> Path:
    """The folder that holds one ``<name>.mollia.sqlite`` per project.

    ``MOLLIA_PROJECTS_DIR`` overrides the default ``<MoLLIA home>/projects``.
    """
    override = os.environ.get("MOLLIA_PROJECTS_DIR")
    folder = Path(override) if override else paths.data_home() / "projects"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def list_projects(root: str | Path | None = None) -> list[str]:
    """Names of the projects in ``root`` (default ``projects_dir()``), most recently changed first."""
    folder = Path(root) if root is not None else projects_dir()
    files = sorted(folder.glob(f"*{PROJECT_SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [p.name[: -len(PROJECT_SUFFIX)] for p in files]


def project_path(name: str, root: str | Path | None = None) -> Path:
    """Where the project ``name`` lives; the name must be usable as a file name."""
    name = name.strip()
    if not _NAME_PATTERN.match(name):
        raise ProjectError(
            f"{name!r} is not a usable project name: use 1-64 letters, digits, spaces, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    folder = Path(root) if root is not None else projects_dir()
    return folder / f"{name}{PROJECT_SUFFIX}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
        from .annotation import AccuracyEstimates

        return AccuracyEstimates.from_dict(self.estimates) if self.estimates else None


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


class Project:
    """One labeling project over its ``ProjectStore``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name.removesuffix(PROJECT_SUFFIX)
        try:
            self.store = ProjectStore(self.path)
        except StoreError as exc:
            raise ProjectError(str(exc)) from None
        self._lock = threading.RLock()
        self._loop_cache: tuple[Any, Any] | None = None
        self._evidence_cache: tuple[Any, PanelEvidence] | None = None

    # ------------------------------------------------------------------ projects
    @classmethod
    def create(cls, name: str, root: str | Path | None = None) -> "Project":
        """Create a new, empty project; fails if one of that name exists."""
        path = project_path(name, root)
        if path.exists():
            raise ProjectError(f"a project named {name.strip()!r} already exists: open it, or choose another name")
        project = cls(path)
        project.store.set_setting("name", name.strip())
        return project

    @classmethod
    def open(cls, name: str, root: str | Path | None = None) -> "Project":
        """Open an existing project."""
        path = project_path(name, root)
        if not path.exists():
            raise ProjectError(f"no project named {name!r} in {path.parent}: create it first")
        return cls(path)

    def get_setting(self, key: str, default: Any = None) -> Any:
        return self.store.get_setting(key, default)

    def set_setting(self, key: str, value: Any) -> None:
        self.store.set_setting(key, value)

    # ------------------------------------------------------------------ dataset
    def set_dataset(
        self,
        frame: pd.DataFrame,
        text_column: str,
        id_column: str | None = None,
        label_column: str | None = None,
        labels: Sequence[str] | None = None,
        source_name: str = "",
        random_state: int = 0,
        hold_out_validation: bool = True,
    ):
        """Validate ``frame`` with the chosen columns and label set, and make it this project's data.

        Raises ``mollia_core.dataset.DatasetError`` (row, column, fix) for bad input. Where at
        least ``MIN_GOLD_FOR_VALIDATION`` rows carry a label, ``VALIDATION_FRACTION`` of them
        (drawn with ``random_state``) become the validation split: never queried, never seeds,
        only measured on (``hold_out_validation=False``: none, every labeled row may be a seed).
        Replacing the data once evidence or labels exist is refused.
        """
        from .dataset import load_dataset

        dataset = load_dataset(frame, text_column, id_column=id_column, label_column=label_column, labels=labels)
        if self.store.n_texts and not self.can_replace_dataset():
            raise ProjectError(
                "this project already has evidence or labels for its data: create a new project for another table"
            )
        gold = np.asarray(dataset.gold, dtype=int)
        splits = np.array(["pool"] * len(gold), dtype=object)
        labeled = np.flatnonzero(gold >= 0)
        if hold_out_validation and labeled.size >= MIN_GOLD_FOR_VALIDATION:
            rng = np.random.default_rng(random_state)
            n_validation = min(int(round(VALIDATION_FRACTION * labeled.size)), MAX_VALIDATION)
            splits[rng.choice(labeled, size=n_validation, replace=False)] = "validation"
        original = json.loads(frame.to_json(orient="records", date_format="iso", force_ascii=False))
        with self._lock, self.store.transaction():
            self.store.clear_texts()
            self.store.set_setting("labels", [str(label) for label in dataset.labels])
            self.store.add_texts(
                [str(t) for t in dataset.texts],
                text_ids=[str(i) for i in dataset.ids],
                gold=gold,
                splits=list(splits),
                columns=original,
            )
            self.store.update_settings(
                {
                    "dataset": {
                        "text_column": text_column,
                        "id_column": id_column,
                        "label_column": label_column,
                        "source_name": source_name,
                        "columns": [str(c) for c in frame.columns],
                    }
                }
            )
        return dataset

    def can_replace_dataset(self) -> bool:
        """Whether the data may still be replaced: nothing (evidence, labels, iterations) refers to it."""
        return not (self.store.evidence_models() or self.store.n_labeled or self.store.iterations())

    def clear_dataset(self) -> None:
        """Forget the table (to import another one); refused once evidence or labels refer to it."""
        if not self.can_replace_dataset():
            raise ProjectError(
                "this project already has evidence or labels for its data: create a new project for another table"
            )
        self.store.clear_texts()

    def has_dataset(self) -> bool:
        return self.store.n_texts > 0

    @property
    def dataset_config(self) -> dict:
        config = self.store.get_setting("dataset")
        if config is None or not self.has_dataset():
            raise ProjectError("this project has no data yet: upload a CSV or open an example on the Data page")
        return config

    @property
    def labels(self) -> tuple[str, ...]:
        return self.store.labels

    @property
    def text_ids(self) -> list[str]:
        return self.store.text_ids()

    @property
    def texts(self) -> list[str]:
        return self.store.texts()

    def index_of(self, text_id: str) -> int:
        index = {tid: i for i, tid in enumerate(self.text_ids)}
        if text_id not in index:
            raise ProjectError(f"no text with id {text_id!r} in this project")
        return index[text_id]

    def gold(self) -> np.ndarray:
        """Gold label index per text from the label column, -1 where there is none."""
        return self.store.gold()

    def splits(self) -> np.ndarray:
        return self.store.splits()

    def original_frame(self) -> pd.DataFrame:
        """The user's table as uploaded (column order kept)."""
        columns = self.dataset_config["columns"]
        return pd.DataFrame.from_records(self.store.original_columns(), columns=columns)

    def summary(self) -> dict[str, Any]:
        """Counts the sidebar and pages show."""
        if not self.has_dataset():
            return {"texts": 0}
        splits = self.splits()
        return {
            "texts": self.store.n_texts,
            "pool": int((splits == "pool").sum()),
            "validation": int((splits == "validation").sum()),
            "labels": len(self.labels),
            "seeds": len(self.store.seed_labels()),
            "labeled": self.store.n_labeled,
            "evidence_models": len(self.store.evidence_models()),
            "iterations": len(self.iterations()),
            "overrides": len(self.store.overrides()),
        }

    # ------------------------------------------------------------------ seeds
    def seeds(self) -> dict[str, str]:
        """Seed labels (human labels): text id -> label."""
        ids, labels = self.text_ids, self.labels
        return {ids[i]: labels[y] for i, y in self.store.seed_labels().items()}

    def seed_vector(self) -> np.ndarray:
        """y for the annotation model: the seed label index per text, -1 for the others."""
        y = np.full(self.store.n_texts, -1, dtype=int)
        for i, label in self.store.seed_labels().items():
            y[i] = label
        return y

    def _refuse_after_iterations(self, what: str) -> None:
        if self.iterations():
            raise ProjectError(f"iterations have started: {what} on the Review page (override) instead")

    def take_seeds_from_column(self, n: int | None = DEFAULT_SEED_COUNT, random_state: int = 0) -> int:
        """Make ``n`` randomly drawn pool rows that have a label in the label column the seeds (all if None).

        Replaces the previous seeds. Validation rows are never seeds. Returns how many were taken.
        """
        config = self.dataset_config
        self._refuse_after_iterations("change labels")
        if not config["label_column"]:
            raise ProjectError("no label column was chosen: pick one on the Data page, or label texts by hand")
        gold = self.gold()
        candidates = np.flatnonzero((gold >= 0) & (self.splits() == "pool"))
        if candidates.size == 0:
            raise ProjectError(
                f"column {config['label_column']!r} has no labels: fill some in, or label texts by hand below"
            )
        rng = np.random.default_rng(random_state)
        chosen = candidates if n is None or n >= candidates.size else rng.choice(candidates, size=n, replace=False)
        self.store.set_seed_labels({int(i): int(gold[i]) for i in sorted(chosen)}, replace=True)
        return int(len(chosen))

    def label_seed(self, text_id: str, label: str) -> None:
        """Store a seed label given by the user in the app."""
        self._refuse_after_iterations("change labels")
        self.store.set_seed_labels({self.index_of(text_id): self._label_index(label)})

    def remove_seed(self, text_id: str) -> None:
        self._refuse_after_iterations("change labels")
        index = self.index_of(text_id)
        remaining = {i: y for i, y in self.store.seed_labels().items() if i != index}
        self.store.set_seed_labels(remaining, replace=True)

    def seed_candidates(self, n: int = DEFAULT_SEED_COUNT, random_state: int = 0) -> list[str]:
        """``n`` pool text ids in a random order fixed by ``random_state``, for labeling seeds by hand."""
        ids = self.text_ids
        pool = np.flatnonzero(self.splits() == "pool")
        order = np.random.default_rng(random_state).permutation(pool)[:n]
        return [ids[i] for i in order]

    def _label_index(self, label: str) -> int:
        if label not in self.labels:
            raise ProjectError(f"{label!r} is not in the label set ({', '.join(self.labels)})")
        return self.labels.index(label)

    # ------------------------------------------------------------------ annotator panel
    def panel(self) -> list[AnnotatorSpec]:
        """The configured LLM panel, in order."""
        return [AnnotatorSpec(**spec) for spec in self.store.get_setting("panel", [])]

    def set_panel(self, specs: Sequence[AnnotatorSpec]) -> None:
        names = [s.display_name for s in specs]
        if len(set(names)) != len(names):
            raise ProjectError("the same LLM is in the panel twice: remove one")
        self.store.set_setting("panel", [asdict(s) for s in specs])

    def panel_models(self) -> list[str]:
        return [s.display_name for s in self.panel()]

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
        unknown = sorted(set(descriptions) - set(self.labels))
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
        from .evidence.prompt import PromptTemplate, choose_demonstrations

        demonstrations, spares = (), ()
        if self.demonstrations_per_class:
            texts = self.texts
            labeled = [(texts[self.index_of(text_id)], label) for text_id, label in self.seeds().items()]
            demonstrations, spares = choose_demonstrations(labeled, self.labels, self.demonstrations_per_class)
        try:
            return PromptTemplate(
                **({"template": self.prompt_template} if self.prompt_template else {}),
                descriptions=self.label_descriptions,
                demonstrations=demonstrations,
                spare_demonstrations=spares,
            )
        except ValueError as exc:
            raise ProjectError(str(exc)) from None

    def evidence_counts(self) -> dict[str, int]:
        """How many texts have evidence, per model of the panel (and any model stored before)."""
        coverage = self.store.evidence_coverage()
        return {m: coverage.get(m, 0) for m in dict.fromkeys(self.panel_models() + list(coverage))}

    def missing_evidence(self, model: str) -> list[int]:
        """Indices of the texts that have no evidence from ``model`` yet."""
        done = set(self.store.evidence_indices(model).tolist())
        return [i for i in range(self.store.n_texts) if i not in done]

    def run_evidence(
        self,
        sources: Sequence[tuple[AnnotatorSpec, EvidenceSource]],
        progress: Callable[[str, Progress], None] | None = None,
        cancel: threading.Event | None = None,
        chunk_size: int = 64,
    ) -> dict[str, int]:
        """Ask each source for the texts its model has not answered yet, and store the records.

        Texts go in chunks of ``chunk_size`` and each chunk is committed as soon as it is
        done, so a cancel (``Cancelled`` propagates) or a crash loses at most one chunk
        (and the source's own cache keeps even that). ``progress(model, Progress)`` reports
        over the whole run of a model. Returns the number of new records per model.
        """
        import time

        labels, texts = list(self.labels), self.texts
        ids = self.text_ids
        added: dict[str, int] = {}
        for spec, source in sources:
            model = spec.display_name
            todo = self.missing_evidence(model)
            added[model] = 0
            started = time.monotonic()
            for begin in range(0, len(todo), chunk_size):
                chunk = todo[begin: begin + chunk_size]
                offset = begin

                def report(p: Progress, offset: int = offset) -> None:
                    if progress is not None:
                        progress(model, Progress(offset + p.done, len(todo), time.monotonic() - started))

                records = source.evidence(
                    [texts[i] for i in chunk], labels, text_ids=[ids[i] for i in chunk], progress=report, cancel=cancel
                )
                if len(records) != len(chunk):
                    raise ProjectError(f"{model} returned {len(records)} records for {len(chunk)} texts")
                self._put_records(model, spec, chunk, records)
                added[model] += len(records)
                report(Progress(len(chunk), len(chunk), 0.0))
        return added

    def _put_records(self, model: str, spec: AnnotatorSpec, indices: Sequence[int], records: Sequence[EvidenceRecord]) -> None:
        renamed = [[_in_label_order(replace(r, model=model), self.labels)] for r in records]
        info = {k: v for k, v in asdict(spec).items() if v}
        with self.store.transaction():
            self.store.put_evidence(PanelEvidence.from_records(renamed), indices, model_info={model: info})
            self.store.set_setting("evidence_version", self.store.get_setting("evidence_version", 0) + 1)

    def import_evidence_records(self, spec: AnnotatorSpec, records: Sequence[EvidenceRecord]) -> int:
        """Store records of one model matched by text id (e.g. read from a file); unknown ids are refused."""
        index = {tid: i for i, tid in enumerate(self.text_ids)}
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
        from .evidence import EvidenceError
        from .evidence.replay import read_evidence_jsonl, text_sha256

        try:
            records = list(read_evidence_jsonl(path))
        except (OSError, ValueError, EvidenceError) as exc:
            raise ProjectError(f"cannot read the evidence file {Path(path).name}: {exc}") from None
        if not records:
            raise ProjectError(f"the evidence file {Path(path).name} holds no records")
        labels = self.labels
        wrong = [r for r in records if set(r.labels) != set(labels)]
        if wrong:
            raise ProjectError(
                f"the evidence file is over labels {list(wrong[0].labels)}, this project's are {list(labels)}: "
                "replay evidence computed for this label set"
            )
        ids = {tid: i for i, tid in enumerate(self.text_ids)}
        if not any(r.text_id in ids for r in records):
            by_sha = {text_sha256(t): self.text_ids[i] for i, t in enumerate(self.texts)}
            records = [replace(r, text_id=by_sha.get(r.meta.get("text_sha256"), r.text_id)) for r in records]
        by_model: dict[str, list[EvidenceRecord]] = {}
        for record in records:
            by_model.setdefault(record.model, []).append(record)
        added = {}
        panel = self.panel()
        for model, model_records in by_model.items():
            spec = AnnotatorSpec(kind="replay", model=model, path=str(Path(path).name))
            added[spec.display_name] = self.import_evidence_records(spec, model_records)
            if spec.display_name not in [s.display_name for s in panel]:
                panel.append(spec)
        self.set_panel(panel)
        return added

    def evidence(self) -> PanelEvidence | None:
        """The panel's evidence on every text, in dataset order; None while any text lacks some."""
        models = self.panel_models()
        coverage = self.store.evidence_coverage()
        if not models or any(coverage.get(m, 0) < self.store.n_texts for m in models):
            return None
        key = (tuple(models), tuple(coverage.get(m, 0) for m in models), self.store.get_setting("evidence_version"))
        if self._evidence_cache is None or self._evidence_cache[0] != key:
            self._evidence_cache = (key, self.store.evidence(models))
        return self._evidence_cache[1]

    def require_evidence(self) -> PanelEvidence:
        evidence = self.evidence()
        if evidence is None:
            if not self.panel():
                raise ProjectError("no LLM panel chosen: pick annotators on the Annotators page")
            raise ProjectError("LLM evidence is incomplete: run the annotators on the Annotators page first")
        return evidence

    # ------------------------------------------------------------------ annotation model (MoLAM)
    def annotator_settings(self) -> AnnotatorSettings:
        return AnnotatorSettings(**self.store.get_setting("annotator_settings", {}))

    def _require_seeds(self) -> np.ndarray:
        y = self.seed_vector()
        if (y >= 0).sum() == 0:
            raise ProjectError(
                "no seed labels yet: take them from the label column or label about 50 texts on the Data page"
            )
        return y

    def llm_seed_accuracy(self) -> dict[str, float]:
        """Zero-shot accuracy of each LLM (its most probable label, z) on the seed labels; nothing is fitted."""
        evidence, y = self.require_evidence(), self._require_seeds()
        from .annotation import SingleLLM

        seeded = np.flatnonzero(y >= 0)
        subset = evidence.subset(seeded)
        return {
            name: float((SingleLLM(j).fit(subset, y[seeded]).annotate(subset).labels == y[seeded]).mean())
            for j, name in enumerate(evidence.models)
        }

    def fit_annotator(self, settings: AnnotatorSettings | None = None, cv: bool = True) -> FitReport:
        """Fit MoLAM on the seeds (self-training on the other texts), annotate every text and store it.

        The text classifier trained on the seeds (``mollia_core.text_member``) joins the panel
        when the method reads it (the default; "molam-llm-only" / "molam-paper" do not).
        With ``cv``, also estimate accuracy honestly on the seeds by cross-validation
        (``annotation.estimate_accuracy``, 95 % intervals and warnings): MoLAM beside the majority
        class, the text member, each single LLM, majority vote and the mean of probabilities, all on
        the same folds. With fewer than 5 seeds MoLAM is fitted and the report says that no
        estimate is possible. Nothing is chosen on the validation split.
        """
        settings = settings or self.annotator_settings()
        evidence, y = self.require_evidence(), self._require_seeds()
        from . import annotation as ann
        from .encoder import EncoderError

        molam = _make_molam(settings)
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
        with self.store.transaction():
            self.store.put_array("annotation/labels", np.asarray(result.labels, dtype=int))
            self.store.put_array("annotation/probability", np.asarray(result.probability, dtype=float))
            self.store.put_array("annotation/proba", np.asarray(result.proba, dtype=float))
            self.store.put_array("annotation/negatives", negative_mask)
            self.store.put_array("annotation/vote", np.asarray(vote.labels, dtype=int))
            self.store.put_array("annotation/mean", np.asarray(mean.labels, dtype=int))
            # The Review page shows the text member beside the LLMs (an empty array: this fit had none).
            self.store.put_array("annotation/text_member_proba",
                                 panel.label_probs[:, -1] if text_member is not None else np.zeros((0, len(self.labels))))
            self.store.update_settings({"annotator_settings": asdict(settings), "fit_report": asdict(report)})
        return report

    def _text_member(self, random_state: int):
        """The text member over this project's texts (featurised once per process and dataset)."""
        from .text_member import TextMember

        key = (tuple(self.text_ids), random_state)
        cached = getattr(self, "_text_member_cache", None)
        if cached is None or cached[0] != key:
            self._text_member_cache = (key, TextMember(self.texts, random_state=random_state))
        return self._text_member_cache[1]

    def _comparison_models(self, settings: AnnotatorSettings, evidence: PanelEvidence) -> dict[str, Any]:
        from . import annotation as ann
        from .text_member import TEXT_MEMBER

        models: dict[str, Any] = {"MoLAM": _make_molam(settings), "majority class": ann.MajorityClass()}
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
        return self.store.get_array("annotation/labels") is not None

    def annotation_frame(self) -> pd.DataFrame:
        """MoLAM's annotation of every text: text_id, label, probability, negatives (list), vote and mean label."""
        labels = self.labels
        arrays = {name: self.store.get_array(f"annotation/{name}") for name in
                  ("labels", "probability", "negatives", "vote", "mean")}
        if arrays["labels"] is None:
            raise ProjectError("MoLAM is not fitted yet: fit it on the MoLAM page")
        return pd.DataFrame(
            {
                "text_id": self.text_ids,
                "label": [labels[k] for k in arrays["labels"]],
                "probability": arrays["probability"],
                "negatives": [[labels[k] for k in np.flatnonzero(row)] for row in arrays["negatives"]],
                "vote_label": [labels[k] for k in arrays["vote"]],
                "mean_label": [labels[k] for k in arrays["mean"]],
            }
        )

    # ------------------------------------------------------------------ active learning
    def loop_settings(self) -> LoopConfig:
        """The AL settings the dashboard last ran with (the paper's defaults before that)."""
        stored = self.store.get_setting("dashboard_loop_settings")
        return LoopConfig.from_dict(stored) if stored else LoopConfig()

    def _loop(self, settings: LoopConfig):
        """The AL loop over this project's store; rebuilt (resuming from the store) when settings change."""
        from .loop import ActiveLearningLoop

        completed = self._loop_cache[1].completed_iterations if self._loop_cache else 0
        # The lambda schedule spans the planned iterations; a run past the plan stays at lambda_end.
        config = replace(settings, n_iterations=max(settings.n_iterations, completed))
        key = (json.dumps(settings.to_dict(), sort_keys=True), json.dumps(asdict(self.annotator_settings()), sort_keys=True))
        if self._loop_cache is None or self._loop_cache[0] != key:
            self.require_evidence()
            self._require_seeds()
            annotator = _make_molam(self.annotator_settings())
            self._loop_cache = (key, ActiveLearningLoop.resume(self.store, annotator, config, annotator_name="molam"))
        return self._loop_cache[1]

    def run_iterations(
        self,
        n: int,
        settings: LoopConfig | None = None,
        progress: Callable[[Any], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list:
        """Run ``n`` more AL iterations (the first call also trains on the seeds: iteration 0).

        Every step (query, label, train) is committed when it ends; ``progress(StepResult)``
        reports each one; ``cancel`` stops between steps. Returns the stored iterations.
        """
        if n < 1:
            raise ProjectError("run at least one iteration")
        settings = settings or self.loop_settings()
        self.store.set_setting("dashboard_loop_settings", settings.to_dict())
        from .encoder import EncoderError
        from .learner import LearnerError
        from .loop import LoopError
        from .query import QueryError

        with self._lock:
            try:
                loop = self._loop(settings)
                return loop.run(n, progress=progress, cancel=cancel)
            except (LoopError, StoreError, LearnerError, QueryError, EncoderError) as exc:
                self._loop_cache = None  # a bad setting must not stick to the cached loop
                raise ProjectError(str(exc)) from None

    def pool_size(self) -> int:
        """Texts still unlabeled in the pool split (what the strategy may query)."""
        labeled = np.zeros(self.store.n_texts, dtype=bool)
        labeled[self.store.labeled_indices()] = True
        return int(((self.splits() == "pool") & ~labeled).sum())

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
        return pd.DataFrame(
            rows,
            columns=["iteration", "n_labeled", "validation_accuracy", "validation_macro_f1", "seed_cv_accuracy",
                     "seed_cv_low", "seed_cv_high", "annotator_agreement", "n_flagged", "lambda", "seconds"],
        )

    # ------------------------------------------------------------------ review
    def iterations(self) -> list:
        """The stored AL iterations (``store.IterationRecord``), iteration 0 = training on the seeds."""
        return self.store.iterations()

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
        frame = _labeled_rows(self)
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
        index = self.index_of(text_id)
        labels = self.labels
        panel = self.evidence()
        models = panel.models if panel is not None else ()
        z = panel.label_probs[index] if panel is not None else None
        c = panel.vote_shares[index] if panel is not None else None
        none = panel.no_label_share[index] if panel is not None else None
        answers = list(panel.answers[index]) if panel is not None and panel.answers is not None else []
        text_member = self.store.get_array("annotation/text_member_proba")
        if panel is not None and text_member is not None and len(text_member) == len(self.text_ids):
            from .text_member import TEXT_MEMBER  # the text classifier of the last MoLAM fit, beside the LLMs

            models, answers = models + (TEXT_MEMBER,), (answers + [()] if answers else [])
            z, c = np.vstack([z, text_member[index]]), np.vstack([c, text_member[index]])
            none = np.append(none, 0.0)
        annotated = self.is_annotated()
        annotation = self.store.annotation(index)
        molam_label = molam_probability = vote_label = mean_label = None
        negatives: list[str] = []
        if annotated:
            k = int(self.store.get_array("annotation/labels")[index])
            molam_label = labels[k]
            molam_probability = float(self.store.get_array("annotation/probability")[index])
            negatives = [labels[j] for j in np.flatnonzero(self.store.get_array("annotation/negatives")[index])]
            vote_label = labels[int(self.store.get_array("annotation/vote")[index])]
            mean_label = labels[int(self.store.get_array("annotation/mean")[index])]
        if annotation is not None and annotation.source not in (SOURCE_SEED, SOURCE_OVERRIDE):
            # The loop's own record of what labeled this text wins over the latest MoLAM fit.
            molam_label = labels[annotation.annotator_label if annotation.annotator_label is not None else annotation.label]
            molam_probability = annotation.probability
            negatives = [labels[j] for j in annotation.negatives]
        elif annotation is not None and annotation.source == SOURCE_OVERRIDE and annotation.annotator_label is not None:
            molam_label = labels[annotation.annotator_label]
            molam_probability = annotation.probability
        overrides = [
            {"at": o.created_at, "from": labels[o.old_label] if o.old_label is not None else None,
             "to": labels[o.new_label], "used_from_iteration": o.applied_iteration}
            for o in self.store.overrides() if o.text_index == index
        ]
        return TextEvidence(
            text_id=text_id,
            text=self.texts[index],
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
        )

    def override(self, text_id: str, label: str) -> None:
        """A human sets a text's label: stored with its time, shown as human-labeled (source
        ``override``), used by every training from the next one on."""
        self.store.add_override(self.index_of(text_id), self._label_index(label))

    # ------------------------------------------------------------------ export
    def export_frame(self, scope: str = "labeled") -> pd.DataFrame:
        """The export: ``EXPORT_COLUMNS`` then the user's other original columns (all but the
        text and id columns, which are ``text`` and ``id``).

        scope ``labeled``: the labeled set L (seeds, MoLAM's labels, overrides).
        scope ``all``: every text; those outside L get MoLAM's latest label (source ``molam``,
        no iteration), those MoLAM has not seen are left out.
        """
        if scope not in ("labeled", "all"):
            raise ProjectError(f"unknown export scope {scope!r}: use 'labeled' or 'all'")
        frame = _labeled_rows(self)
        if scope == "all" and self.is_annotated():
            labeled = set(frame["_index"])
            annotation = self.annotation_frame()
            rest = [i for i in range(self.store.n_texts) if i not in labeled]
            texts = self.texts
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
        original = self.original_frame()
        config = self.dataset_config
        # The text and id columns are already there, as ``text`` and ``id``.
        original = original.drop(columns=[c for c in (config["text_column"], config["id_column"]) if c])
        original.columns = [original_column_name(c) for c in original.columns]
        original = original.iloc[frame["_index"].to_numpy()].reset_index(drop=True)
        out = pd.concat([frame[list(EXPORT_COLUMNS)].reset_index(drop=True), original], axis=1)
        return normalize_export_frame(out)


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


def _make_molam(settings: AnnotatorSettings):
    from .annotation import make_annotator

    return make_annotator(settings.method, sigma=settings.sigma, delta=settings.delta, random_state=settings.random_state)


def _labeled_rows(project: "Project") -> pd.DataFrame:
    """The labeled set L as a frame in text order (helper of ``Project.labeled_texts``)."""
    labels, ids, texts = project.labels, project.text_ids, project.texts
    rows = []
    for a in project.store.annotations():
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


def make_source(spec: AnnotatorSpec, template=None, api_key: str | None = None) -> EvidenceSource:
    """The evidence source a spec describes, behind the on-disk evidence cache.

    ``template``: a template string, a ``PromptTemplate`` (``Project.prompt()``), or None.

    ``api_key`` is passed to a server source only; it is never stored or exported.
    Missing optional parts (a source module, a model package) raise ``ProjectError``.
    """
    from .evidence.source import EvidenceError

    from .evidence.prompt import PromptTemplate

    prompt = PromptTemplate(template=template) if isinstance(template, str) and template else template or None
    try:
        if spec.kind == "embedded":
            from .evidence.embedded import EmbeddedSource

            source = EmbeddedSource(spec.model, **({"template": prompt} if prompt else {}))
        elif spec.kind == "hf":
            from .evidence.hf import HuggingFaceSource

            source = HuggingFaceSource(spec.model, quantization=spec.quantization,
                                       **({"template": prompt} if prompt else {}))
        elif spec.kind == "server":
            from .evidence.server import OpenAICompatibleSource

            source = OpenAICompatibleSource(spec.base_url, spec.model, api_key=api_key or None,
                                            **({"template": prompt} if prompt else {}))
        elif spec.kind == "replay":
            raise ProjectError("replayed evidence is imported from its file (Project.import_evidence_file), not run")
        else:
            raise ProjectError(f"unknown annotator kind {spec.kind!r}: use embedded, hf, server or replay")
    except ImportError as exc:
        raise ProjectError(f"{spec.kind} annotators are not available in this installation ({exc})") from None
    except EvidenceError as exc:
        raise ProjectError(str(exc)) from None
    from .evidence.cache import CachedSource, EvidenceCache

    return CachedSource(source, EvidenceCache())
