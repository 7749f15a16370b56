"""Headless runs: a JSON or TOML file -> a project built and run through the dashboard's own
:class:`~mollia_core.project.Project`, with the calls the pages make, so the project file opens in
the dashboard; and a project made in the dashboard runs headless the same way (:func:`run_project`).

A config file has four tables (every key optional except a dataset source)::

    [dataset]
    paper_evidence = "trec"      # a name under ../shared/data/paper-evidence, or a directory
    # or: csv = "texts.csv", text_column = "text", label_column = "label", id_column = "id",
    #     labels = [...], evidence = "<dir with meta_x.npy aligned with the CSV rows>"
    limit = 0                    # use a random subset of this many texts (0: all)
    test_size = 1000             # texts held out for test metrics (need gold labels)
    validation_size = 500        # texts held out for validation metrics
    split_random_state = 0

    [seeds]
    n = 50                       # seed texts drawn at random from the pool (need gold labels) ...
    random_state = 0
    # column = "seed_label"      # ... or: the CSV column holding the seed labels (blank = unlabeled);
    #                            # it may be the label column itself, with test_size = validation_size = 0

    annotator = "molam"          # molam | mol | molam-paper | gold | vote | mean | best_llm | llm:<model>[:votes]
    evidence = "on-demand"       # the LLMs answer the seed texts, a self-training sample and each
                                 # iteration's queried texts, as the loop needs them; "full": every text first
    self_training_sample = 200   # pool texts answered up front for MoLAM's self-training ("all": the pool)

    [panel]                      # live LLMs, instead of stored evidence: the names the dashboard shows
    models = ["smollm2-135m", "hf:HuggingFaceTB/SmolLM2-360M-Instruct",
              {kind = "server", base_url = "http://localhost:8000/v1", model = "qwen", api_key_env = "KEY_VAR"}]

    [loop]                       # LoopConfig: batch_size, planned_iterations (old name n_iterations), strategy, ...

    output_dir = "runs/trec"     # results.json, learning_curve.png, project.mollia.sqlite

Relative paths are read relative to the config file. The project is built as the Data and
Annotators pages build one: ``Project.set_dataset`` (with the config's test and validation splits),
the evidence imported as replayed evidence (each LLM joins the panel as ``replay:<model>``), the
seeds (``take_seeds_from_column``, or the seed column's labels), and the loop's annotator
(``project.loop.set_annotator``). With a ``[panel]``, its LLMs answer what the project needs before
the loop (:func:`collect_evidence`: the seed texts and the self-training sample on demand, every text with
``evidence = "full"``), then each iteration's queried texts as its answer step
(:func:`panel_answerer`), one model answering at a time, through the evidence cache; a run killed
meanwhile resumes with the texts not answered yet. ``best_llm`` is the single LLM (its probabilities or its votes)
most accurate on the seed labels only; it is resolved once, to ``llm:<model>:<probs|votes>``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .annotation import is_meta_learner
from .evidence.record import PanelEvidence
from .loop import ActiveLearningLoop, LoopConfig, LoopError, StepResult
from .project import AnnotatorSettings, AnnotatorSpec, Project, ProjectError
from .services.panel import DEFAULT_EVIDENCE_MODE, DEFAULT_SELF_TRAINING_SAMPLE, EVIDENCE_MODES
from .store import PROJECT_SUFFIX

PROJECT_NAME = "project"
PROJECT_FILE = PROJECT_NAME + PROJECT_SUFFIX
_BUILT = "run_built"  # texts, panel and seeds stored; the live panel's evidence and the annotator may be to do
_PREPARED = "run_prepared"


class ConfigError(Exception):
    """The run configuration is wrong; the message names the key and what to do."""


@dataclass
class DatasetConfig:
    paper_evidence: str | None = None
    csv: str | None = None
    text_column: str = "text"
    label_column: str | None = None
    id_column: str | None = None
    labels: list[str] | None = None
    evidence: str | None = None
    limit: int = 0
    test_size: int = 0
    validation_size: int = 0
    split_random_state: int = 0


@dataclass
class SeedConfig:
    n: int = 50
    random_state: int = 0
    column: str | None = None


@dataclass
class RunConfig:
    dataset: DatasetConfig
    seeds: SeedConfig = field(default_factory=SeedConfig)
    annotator: str = "molam"
    loop: LoopConfig = field(default_factory=LoopConfig)
    output_dir: str = "runs/run"
    base_dir: Path = field(default_factory=Path.cwd)
    panel: list[AnnotatorSpec] = field(default_factory=list)
    api_key_env: dict[str, str] = field(default_factory=dict)  # panel member -> environment variable of its key
    evidence: str = DEFAULT_EVIDENCE_MODE
    #: Pool texts the panel answers up front on demand, for MoLAM's self-training (None: the whole pool).
    self_training_sample: int | None = DEFAULT_SELF_TRAINING_SAMPLE

    @property
    def output_path(self) -> Path:
        return self.resolve(self.output_dir)

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return (p if p.is_absolute() else self.base_dir / p).resolve()

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": {f.name: getattr(self.dataset, f.name) for f in fields(DatasetConfig)},
            "seeds": {f.name: getattr(self.seeds, f.name) for f in fields(SeedConfig)},
            "annotator": self.annotator,
            "evidence": self.evidence,
            "self_training_sample": self.self_training_sample,
            "panel": [asdict(spec) for spec in self.panel],
            "loop": self.loop.to_dict(),
            "output_dir": str(self.output_path),
        }


def _section(cls, values: Any, name: str):
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{name}] must be a table of settings, got {type(values).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in [{name}]; known keys: {sorted(known)}")
    try:
        return cls(**dict(values))
    except (TypeError, LoopError) as exc:
        raise ConfigError(f"[{name}]: {exc}") from None


_SPEC_KEYS = {"kind", "model", "base_url", "quantization", "api_key_env"}


def _panel_member(entry: Any) -> tuple[AnnotatorSpec, str | None]:
    """A ``[panel] models`` entry: an embedded model's name or ``hf:<id>`` (as ``label --models`` reads
    them), or a table ``{kind = "server" | "hf" | "embedded", model = ..., base_url = ...}``."""
    from .label import LabelError, annotator_spec

    if isinstance(entry, str):
        try:
            return annotator_spec(entry.strip()), None
        except LabelError as exc:
            raise ConfigError(f"[panel] models: {exc}") from None
    if not isinstance(entry, Mapping):
        raise ConfigError(f"[panel] models: each entry is a name or a table, got {entry!r}")
    unknown = sorted(set(entry) - _SPEC_KEYS)
    if unknown:
        raise ConfigError(f"[panel] models: unknown key(s) {unknown} in {dict(entry)}; known: {sorted(_SPEC_KEYS)}")
    kind, model = str(entry.get("kind", "")), str(entry.get("model", "")).strip()
    if kind not in ("server", "hf", "embedded") or not model:
        raise ConfigError(f"[panel] models: {dict(entry)} needs kind = \"server\", \"hf\" or \"embedded\" and a model")
    if kind == "server" and not str(entry.get("base_url", "")).strip():
        raise ConfigError(f"[panel] models: the server {model!r} needs its base_url (e.g. http://localhost:8000/v1)")
    if kind == "embedded":
        spec, _ = _panel_member(model)
        return spec, None
    spec = AnnotatorSpec(kind=kind, model=model, base_url=str(entry.get("base_url", "")).strip(),
                         quantization=str(entry.get("quantization", "auto")))
    return spec, entry.get("api_key_env")


def _parse_panel(values: Any) -> tuple[list[AnnotatorSpec], dict[str, str]]:
    if not isinstance(values, Mapping) or set(values) - {"models"}:
        raise ConfigError("[panel] is a table with one key: models = [\"smollm2-135m\", ...]")
    models = values.get("models", [])
    if not isinstance(models, list) or not models:
        raise ConfigError("[panel] models must be a list of at least one LLM, e.g. models = [\"smollm2-135m\"]")
    members = [_panel_member(entry) for entry in models]
    names = [spec.display_name for spec, _ in members]
    if len(set(names)) != len(names):
        raise ConfigError(f"[panel] models names the same LLM twice: {names}")
    return [spec for spec, _ in members], {spec.display_name: env for spec, env in members if env}


def parse_config(values: Mapping[str, Any], base_dir: str | Path | None = None) -> RunConfig:
    """Validate a config mapping (as read from JSON / TOML)."""
    known = {"dataset", "seeds", "annotator", "loop", "output_dir", "panel", "evidence", "self_training_sample"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {unknown}; known: {sorted(known)}")
    if "dataset" not in values:
        raise ConfigError("the config needs a [dataset] table (paper_evidence = \"trec\", or csv = ...)")
    dataset = _section(DatasetConfig, values["dataset"], "dataset")
    if bool(dataset.paper_evidence) == bool(dataset.csv):
        raise ConfigError("[dataset] needs exactly one of paper_evidence (a name or directory) or csv (a file)")
    annotator = values.get("annotator", "molam")
    if not isinstance(annotator, str) or not annotator:
        raise ConfigError(f"annotator must be a name such as \"molam\", got {annotator!r}")
    evidence = values.get("evidence", DEFAULT_EVIDENCE_MODE)
    if evidence not in EVIDENCE_MODES:
        raise ConfigError(f'evidence must be "on-demand" (the LLMs answer the seed texts, a self-training sample '
                          f'and what the loop queries) or "full" (every text first), got {evidence!r}')
    sample = values.get("self_training_sample", DEFAULT_SELF_TRAINING_SAMPLE)
    if sample == "all":
        sample = None
    elif not isinstance(sample, int) or isinstance(sample, bool) or sample < 0:
        raise ConfigError(f'self_training_sample must be a number of texts (0 or more) or "all", got {sample!r}')
    panel, api_key_env = _parse_panel(values["panel"]) if "panel" in values else ([], {})
    if panel and dataset.paper_evidence or panel and dataset.evidence:
        raise ConfigError("give the LLM evidence once: a [panel] of live LLMs, or stored evidence in [dataset], not both")
    return RunConfig(
        dataset=dataset,
        seeds=_section(SeedConfig, values.get("seeds", {}), "seeds"),
        annotator=annotator.strip().lower(),
        loop=_section(LoopConfig, LoopConfig.current_names(values.get("loop", {})), "loop"),
        output_dir=str(values.get("output_dir", "runs/run")),
        base_dir=Path(base_dir) if base_dir is not None else Path.cwd(),
        panel=panel,
        api_key_env=api_key_env,
        evidence=evidence,
        self_training_sample=sample,
    )


def load_config(path: str | Path) -> RunConfig:
    """Read a ``.json`` or ``.toml`` run configuration."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            values = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            raise ConfigError(f"{path}: a config file must end in .json or .toml")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    return parse_config(values, base_dir=path.parent.resolve())


# ---------------------------------------------------------------------- the dataset, as the Data page gets it
@dataclass
class SourceTable:
    """A dataset source as the Data page would receive it: the user's table and the column choices,
    plus the LLM evidence that comes with it (aligned with the rows) and the seed column's labels."""

    frame: pd.DataFrame
    text_column: str
    id_column: str | None
    label_column: str | None
    labels: tuple[str, ...]
    gold: np.ndarray  # label index per row from the label column, -1 where blank
    source_name: str
    evidence: PanelEvidence | None = None
    seed_labels: np.ndarray | None = None  # label index per row from the seed column, -1 where blank


def _load_paper(config: RunConfig) -> SourceTable:
    from .evidence.paper import load_paper_evidence
    from .paths import paper_evidence_dir

    source = config.dataset.paper_evidence
    directory = config.resolve(source) if ("/" in source or source.startswith(".")) else paper_evidence_dir(source)
    try:
        data = load_paper_evidence(directory)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    if data.texts is None:
        raise ConfigError(
            f"{directory} holds no texts (no <model>.jsonl files): the AL model needs the texts; "
            "use a dataset whose evidence comes with its texts (trec)"
        )
    gold = np.asarray(data.gold, dtype=int)
    frame = pd.DataFrame({
        "id": [str(i) for i in range(len(data.texts))],
        "text": list(data.texts),
        "label": [data.labels[g] if g >= 0 else "" for g in gold],
    })
    return SourceTable(frame, "text", "id", "label", tuple(data.labels), gold, directory.name, data.evidence)


def _load_csv(config: RunConfig) -> SourceTable:
    from .dataset import DatasetError, load_dataset, read_table
    from .evidence.paper import load_paper_evidence

    d = config.dataset
    path = config.resolve(d.csv)
    if not path.is_file():
        raise ConfigError(f"[dataset] csv: {path} not found")
    try:
        frame = read_table(path)
        table = load_dataset(frame, d.text_column, d.id_column, d.label_column, d.labels)
        seed_labels = None
        if config.seeds.column:
            seed_table = load_dataset(frame, d.text_column, d.id_column, config.seeds.column, table.labels or None)
            if not table.labels:  # no label column: the seed column names the label set
                table = load_dataset(frame, d.text_column, d.id_column, d.label_column, seed_table.labels)
            seed_labels = np.asarray(seed_table.gold, dtype=int)
    except DatasetError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if len(table.labels) < 2:
        raise ConfigError("need at least 2 labels: give [dataset] labels = [...] or a label column")
    evidence = None
    if d.evidence:
        try:
            panel = load_paper_evidence(config.resolve(d.evidence), with_answers=False).evidence
        except FileNotFoundError as exc:
            raise ConfigError(str(exc)) from None
        if panel.n_texts != len(table) or len(panel.labels) != len(table.labels):
            raise ConfigError(
                f"evidence in {d.evidence} covers {panel.n_texts} texts x {len(panel.labels)} labels, "
                f"the CSV has {len(table)} rows x {len(table.labels)} labels"
            )
        evidence = PanelEvidence(labels=table.labels, models=panel.models, label_probs=panel.label_probs,
                                 vote_shares=panel.vote_shares, no_label_share=panel.no_label_share)
    return SourceTable(frame, d.text_column, d.id_column, d.label_column, tuple(table.labels),
                       np.asarray(table.gold, dtype=int), path.name, evidence, seed_labels)


def load_source(config: RunConfig) -> SourceTable:
    return _load_paper(config) if config.dataset.paper_evidence else _load_csv(config)


def _subset(source: SourceTable, rows: np.ndarray) -> SourceTable:
    return replace(
        source,
        frame=source.frame.iloc[rows].reset_index(drop=True),
        gold=source.gold[rows],
        evidence=source.evidence.subset(rows) if source.evidence is not None else None,
        seed_labels=source.seed_labels[rows] if source.seed_labels is not None else None,
    )


def assign_splits(n: int, test_size: int, validation_size: int, random_state: int, has_gold: np.ndarray) -> np.ndarray:
    """Split labels per text: ``test_size`` and ``validation_size`` texts with gold labels drawn at random
    (``random_state``), the rest ``pool``."""
    candidates = np.flatnonzero(has_gold)
    if test_size + validation_size > len(candidates):
        raise ConfigError(
            f"test_size + validation_size = {test_size + validation_size} but only {len(candidates)} texts have gold labels"
        )
    order = np.random.default_rng(random_state).permutation(candidates)
    splits = np.array(["pool"] * n, dtype=object)
    splits[order[:test_size]] = "test"
    splits[order[test_size : test_size + validation_size]] = "validation"
    return splits


# ---------------------------------------------------------------------- config -> project
def prepare_project(config: RunConfig, path: str | Path, say: Callable[[str], None] | None = None) -> Project:
    """Build the run's project at ``path`` through the dashboard's Project API (texts and splits,
    evidence and panel, seeds, annotator), or reopen one already built there; a project killed while
    its live panel answered carries on with the texts not answered yet. ``say``: progress lines."""
    project = build_project(config, path)
    try:
        if not project.get_setting(_PREPARED):
            _finish(project, config, say)
    except BaseException:
        project.store.close()
        raise
    return project


def build_project(config: RunConfig, path: str | Path) -> Project:
    """The run's project with its texts and splits, panel (stored evidence imported) and seeds, before any
    live LLM answers: built at ``path``, or reopened there."""
    path = Path(path)
    if path.exists():
        project = Project(path)
        if project.get_setting(_BUILT) or project.get_setting(_PREPARED):
            return project
        project.store.close()  # killed while it was being built: start over
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    source = load_source(config)
    n = len(source.frame)
    limit = config.dataset.limit
    if limit and limit < n:
        source = _subset(source, np.sort(np.random.default_rng(config.dataset.split_random_state).choice(n, limit, replace=False)))
    d = config.dataset
    splits = assign_splits(len(source.frame), d.test_size, d.validation_size, d.split_random_state, source.gold >= 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    project = Project.create(path.name.removesuffix(PROJECT_SUFFIX), path.parent) if path.name.endswith(PROJECT_SUFFIX) \
        else Project(path)
    try:
        _build(project, config, source, splits)
    except BaseException:
        project.store.close()
        raise
    return project


def _build(project: Project, config: RunConfig, source: SourceTable, splits: np.ndarray) -> None:
    from .dataset import DatasetError

    try:
        project.set_dataset(source.frame, source.text_column, id_column=source.id_column,
                            label_column=source.label_column, labels=list(source.labels),
                            source_name=source.source_name, splits=list(splits))
    except DatasetError as exc:
        raise ConfigError(f"[dataset]: {exc}") from None
    if source.evidence is not None:
        _import_evidence(project, source)
    elif config.panel:
        project.panel.set_specs(config.panel)
    project.panel.set_evidence_plan(config.evidence, config.self_training_sample)
    _take_seeds(project, config, source, splits)
    project.set_setting(_BUILT, True)


def _finish(project: Project, config: RunConfig, say: Callable[[str], None] | None) -> None:
    """The live panel's evidence (what is not answered yet), then the loop's annotator."""
    if config.panel:
        collect_evidence(project, config, say)
    annotator = best_llm_annotator(project) if config.annotator == "best_llm" else config.annotator
    try:
        if is_meta_learner(annotator):  # MoLAM's fit, as the MoLAM page makes it (without its cross-validation)
            project.fit_annotator(AnnotatorSettings(method=annotator, random_state=config.loop.random_state), cv=False)
        project.loop.set_annotator(annotator)
    except ProjectError as exc:
        raise ConfigError(f"annotator {annotator!r}: {exc}") from None
    project.set_setting("run_config", config.to_dict())
    project.set_setting(_PREPARED, True)


def collect_evidence(project: Project, config: RunConfig, say: Callable[[str], None] | None = None) -> None:
    """The live LLMs of the panel answer the texts the project needs before the loop
    (``PanelService.needed_indices``: every text with ``evidence = "full"``; the seed texts and the
    self-training sample on demand), through :func:`panel_answerer`."""
    panel_answerer(project, config.api_key_env, say)(None)


def panel_answerer(project: Project, api_key_env: Mapping[str, str] | None = None,
                   say: Callable[[str], None] | None = None, report_every_s: float = 10.0):
    """``answer(indices, cancel=None)``: each live LLM of the panel answers the texts of ``indices``
    (None: ``needed_indices``) it has not answered yet, one model answering at a time, through the
    evidence cache, each batch committed as it is done (``PanelService.answer``; the loop's
    ``Answerer``); a model once loaded stays loaded for the next call (the next iteration's queries). A server's API key is read from the environment variable ``api_key_env`` names for it.
    ``say`` gets a line every ``report_every_s`` seconds with the LLM's and the whole panel's ETA."""
    import os
    import time

    from .plan import PanelEta, format_seconds
    from .project import make_source

    api_key_env = dict(api_key_env or {})
    # Loaded once and kept for the next call (each AL iteration asks again; loading costs seconds per model).
    loaded: dict[Any, Any] = {}

    def answer(indices, cancel=None) -> dict[str, int]:
        panel = project.panel
        wanted = panel.needed_indices() if indices is None else list(indices)
        todo = {spec.display_name: len(panel.missing_evidence(spec.display_name, wanted))
                for spec in panel.specs() if spec.kind != "replay"}
        eta = PanelEta(todo, panel.seconds_per_text())
        last_said = {"at": 0.0, "done": (None, -1)}

        def report(model: str, progress) -> None:
            eta.update(model, progress.done, progress.elapsed_s)
            now, done = time.monotonic(), (model, progress.done)
            due = progress.done == progress.total or now - last_said["at"] >= report_every_s
            if say is not None and due and done != last_said["done"]:
                last_said.update(at=now, done=done)
                say(f"{model}: {progress.done} / {progress.total} texts, {format_seconds(progress.eta_s)} left for "
                    f"it, {format_seconds(eta.remaining_s())} for the panel")

        def source_for(spec):
            variable = api_key_env.get(spec.display_name)
            if variable and not os.environ.get(variable):
                raise ConfigError(f"[panel] {spec.display_name}: its API key is read from ${variable}, which is not set")
            if say is not None:
                say(f"{spec.display_name}: answering {todo[spec.display_name]} texts")
            key = (spec, repr(panel.prompt()))
            if key not in loaded:
                loaded[key] = make_source(spec, panel.prompt(), api_key=os.environ.get(variable) if variable else None)
            return loaded[key]

        return panel.answer(wanted, source_for, progress=report, cancel=cancel)

    return answer


def _import_evidence(project: Project, source: SourceTable) -> None:
    """The dataset's stored LLM evidence, replayed as the Annotators page imports an evidence file."""
    from .evidence.replay import records_from_panel

    panel = replace(source.evidence, text_ids=tuple(project.text_ids))
    specs = [AnnotatorSpec(kind="replay", model=model, path=source.source_name) for model in panel.models]
    project.set_panel(specs)
    for spec, records in zip(specs, records_from_panel(panel)):
        project.import_evidence_records(spec, records)


def _take_seeds(project: Project, config: RunConfig, source: SourceTable, splits: np.ndarray) -> None:
    if source.seed_labels is not None:
        seeds = np.flatnonzero((source.seed_labels >= 0) & (splits == "pool"))
        if seeds.size == 0:
            raise ConfigError(f"no seed labels: column {config.seeds.column!r} has no label in the pool texts")
        if config.seeds.column == source.label_column:
            project.take_seeds_from_column(None)
        else:
            ids, labels = project.text_ids, project.labels
            for i in seeds:
                project.label_seed(ids[i], labels[source.seed_labels[i]])
        return
    if config.seeds.n < 1 or not source.label_column:
        raise ConfigError("no seed labels: set [seeds] n and a label column, or a seeds column with some labels")
    candidates = int(((source.gold >= 0) & (splits == "pool")).sum())
    if config.seeds.n > candidates:
        raise ConfigError(
            f"[seeds] n = {config.seeds.n} but only {candidates} pool texts have gold labels: "
            "lower n, or give a seeds column"
        )
    project.take_seeds_from_column(config.seeds.n, config.seeds.random_state)


def best_single_llm(evidence: PanelEvidence, indices: np.ndarray, y: np.ndarray) -> tuple[str, str]:
    """The (model, "probs" | "votes") whose argmax is most accurate on the given (seed) labels.

    Ties go to the earlier model, probabilities before votes. Only seed labels may be used here.
    """
    best, best_accuracy = ("", ""), -1.0
    for j, model in enumerate(evidence.models):
        for use, values in (("probs", evidence.label_probs), ("votes", evidence.vote_shares)):
            accuracy = float(np.mean(values[indices, j].argmax(axis=1) == y))
            if accuracy > best_accuracy:
                best, best_accuracy = (model, use), accuracy
    return best


def best_llm_annotator(project: Project) -> str:
    """``llm:<model>:<probs|votes>`` of the panel member best on the project's seed labels."""
    evidence = project.evidence()
    if evidence is None:
        raise ConfigError("annotator best_llm needs LLM evidence in the dataset")
    seeds = project.seed_vector()
    seeded = np.flatnonzero(seeds >= 0)
    member, use = best_single_llm(evidence, seeded, seeds[seeded])
    model = next(spec.model for spec in project.panel() if spec.display_name == member)
    return f"llm:{model}:{use}"


# ---------------------------------------------------------------------- running a project
def run_project(
    project: Project,
    iterations: int | None = None,
    settings: LoopConfig | None = None,
    progress: Callable[[StepResult], None] | None = None,
    answer: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Run ``iterations`` more AL iterations of a project (default: up to its planned ones; a half-done
    iteration is finished first) with ``Project.run_iterations``, as the Active learning page does,
    with ``settings`` (default: the ones it last ran with); the panel's live LLMs answer the queried
    texts (``answer``, default :func:`panel_answerer` without API keys). Returns the loop's results."""
    if iterations is not None and iterations < 1:
        raise ConfigError(f"--iterations must be at least 1, got {iterations}")
    settings = settings or project.loop_settings()
    if iterations is None:
        iterations = settings.planned_iterations - build_loop(project, settings).completed_iterations
    if iterations > 0:
        project.loop.run_iterations(iterations, settings, progress=progress, answer=answer or panel_answerer(project))
    elif not project.iterations():
        raise ConfigError("planned_iterations is 0: plan at least one iteration, or give --iterations N")
    return build_loop(project, settings).results()


def build_loop(project: Project, settings: LoopConfig | None = None) -> ActiveLearningLoop:
    """The AL loop a project runs (``project.loop.active_loop``), resuming where it stopped; the
    benchmarks drive it directly."""
    return project.loop.active_loop(settings)
