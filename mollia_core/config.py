"""Headless run configuration: a JSON or TOML file -> a prepared project store and a loop.

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
    # column = "seed_label"      # ... or: the CSV column holding the seed labels (blank = unlabeled)

    annotator = "molam"          # molam | mol | gold | vote | mean | best_llm | llm:<model>

    [loop]                       # LoopConfig: batch_size, n_iterations, strategy, learner_mode, ...

    output_dir = "runs/trec"     # results.json, learning_curve.png, project.mollia.sqlite

Relative paths are read relative to the config file. ``best_llm`` picks the single LLM (and
whether its probabilities or its votes are used) with the best accuracy on the seed labels only.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .evidence.record import PanelEvidence
from .loop import ActiveLearningLoop, GoldOracle, LoopConfig, LoopError, seed_sample
from .paths import paper_evidence_dir
from .store import ProjectStore

PROJECT_FILE = "project.mollia.sqlite"
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


def parse_config(values: Mapping[str, Any], base_dir: str | Path | None = None) -> RunConfig:
    """Validate a config mapping (as read from JSON / TOML)."""
    known = {"dataset", "seeds", "annotator", "loop", "output_dir"}
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
    return RunConfig(
        dataset=dataset,
        seeds=_section(SeedConfig, values.get("seeds", {}), "seeds"),
        annotator=annotator,
        loop=_section(LoopConfig, values.get("loop", {}), "loop"),
        output_dir=str(values.get("output_dir", "runs/run")),
        base_dir=Path(base_dir) if base_dir is not None else Path.cwd(),
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


# ---------------------------------------------------------------------- dataset -> store
@dataclass
class LoadedDataset:
    texts: list[str]
    labels: tuple[str, ...]
    gold: np.ndarray  # -1 where unknown
    evidence: PanelEvidence | None
    text_ids: list[str]
    columns: list[dict] | None = None
    seed_labels: dict[int, int] | None = None


def _load_paper(config: RunConfig) -> LoadedDataset:
    from .evidence.paper import load_paper_evidence

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
    n = len(data.texts)
    return LoadedDataset(
        texts=list(data.texts), labels=data.labels, gold=np.asarray(data.gold, dtype=int),
        evidence=data.evidence, text_ids=[str(i) for i in range(n)],
    )


def _load_csv(config: RunConfig) -> LoadedDataset:
    from .dataset import DatasetError
    from .dataset import load_dataset as load_table
    from .evidence.paper import load_paper_evidence

    d = config.dataset
    path = config.resolve(d.csv)
    if not path.is_file():
        raise ConfigError(f"[dataset] csv: {path} not found")
    try:
        table = load_table(path, d.text_column, d.id_column, d.label_column, d.labels)
        seeds = None
        if config.seeds.column:
            seed_table = load_table(path, d.text_column, d.id_column, config.seeds.column, table.labels or None)
            if not table.labels:
                table = load_table(path, d.text_column, d.id_column, d.label_column, seed_table.labels)
            seeds = {int(i): int(seed_table.gold[i]) for i in seed_table.labeled_indices()}
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
    others = table.frame.drop(columns=[d.text_column])
    return LoadedDataset(
        texts=list(table.texts), labels=table.labels, gold=np.asarray(table.gold, dtype=int), evidence=evidence,
        text_ids=list(table.ids), columns=others.astype(object).where(others.notna(), None).to_dict("records"),
        seed_labels=seeds,
    )


def load_dataset(config: RunConfig) -> LoadedDataset:
    return _load_paper(config) if config.dataset.paper_evidence else _load_csv(config)


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


def prepare_store(config: RunConfig, path: str | Path) -> ProjectStore:
    """Create the run's project store (texts, splits, evidence, seeds), or reopen a prepared one."""
    path = Path(path)
    if path.exists():
        store = ProjectStore.open(path)
        if store.get_setting(_PREPARED):
            return store
        store.close()  # killed while it was being prepared: start over
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    data = load_dataset(config)
    n = len(data.texts)
    rng_subset = np.arange(n)
    if config.dataset.limit and config.dataset.limit < n:
        rng_subset = np.sort(np.random.default_rng(config.dataset.split_random_state).choice(n, config.dataset.limit, replace=False))
    texts = [data.texts[i] for i in rng_subset]
    gold = data.gold[rng_subset]
    splits = assign_splits(
        len(texts), config.dataset.test_size, config.dataset.validation_size, config.dataset.split_random_state, gold >= 0
    )
    if data.seed_labels is not None:
        position = {int(i): p for p, i in enumerate(rng_subset)}
        seeds = {position[i]: y for i, y in data.seed_labels.items() if i in position and splits[position[i]] == "pool"}
    else:
        candidates = np.flatnonzero((splits == "pool") & (gold >= 0))
        chosen = seed_sample(candidates, config.seeds.n, config.seeds.random_state)
        seeds = {int(i): int(gold[i]) for i in chosen}
    if not seeds:
        raise ConfigError("no seed labels: set [seeds] n, or a seeds column with some labels")
    store = ProjectStore(path)
    with store.transaction():
        store.set_labels(data.labels)
        store.add_texts(
            texts, text_ids=[data.text_ids[i] for i in rng_subset], gold=gold, splits=list(splits),
            columns=[data.columns[i] for i in rng_subset] if data.columns else None,
        )
        if data.evidence is not None:
            store.put_evidence(data.evidence.subset(rng_subset))
        store.set_seed_labels(seeds)
        store.update_settings({"run_config": config.to_dict(), _PREPARED: True})
    return store


# ---------------------------------------------------------------------- annotators
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


def build_annotator(name: str, store: ProjectStore, random_state: int = 0) -> tuple[Any, str]:
    """The annotator called ``name`` for a prepared store, and the source name its labels carry.

    ``gold`` is :class:`~mollia_core.loop.GoldOracle`; ``best_llm`` the single LLM best on the seed
    labels (:func:`best_single_llm`); any other name goes to
    :func:`mollia_core.annotation.make_annotator` (molam, mol, molam-paper, vote, mean, llm:<name>[:votes]).
    """
    from .annotation import AnnotationError, make_annotator

    key = name.strip().lower()
    if key == "gold":
        gold = store.gold()
        return GoldOracle({t: g for t, g in zip(store.text_ids(), gold) if g >= 0}, len(store.labels)), "gold"
    if key == "best_llm":
        evidence = store.evidence(with_answers=False)
        if evidence is None:
            raise ConfigError("annotator best_llm needs LLM evidence in the dataset")
        seeds = store.seed_labels()
        model, use = best_single_llm(evidence, np.array(list(seeds)), np.array(list(seeds.values())))
        key = f"llm:{model}:{use}"
    try:
        kwargs = {"random_state": random_state} if key.startswith("mol") else {}
        return make_annotator(key, **kwargs), key
    except AnnotationError as exc:
        raise ConfigError(f"{exc} (or 'gold', 'best_llm')") from None


def build_loop(config: RunConfig, store: ProjectStore, **kwargs: Any) -> ActiveLearningLoop:
    """The loop of a prepared store (resuming it where it stopped)."""
    annotator, source = build_annotator(config.annotator, store, config.loop.random_state)
    return ActiveLearningLoop.resume(store, annotator, config.loop, annotator_name=source, **kwargs)
