"""``python -m mollia_core label``: label a whole table in one go, the way the dashboard would.

Rows whose label column is filled are the seeds; every other row gets MoLAM's label. The run is a
dashboard project (:class:`mollia_core.project.Project`) driven without the pages: create it, load
the table, take every filled label as a seed, run the panel's evidence (through the on-disk
evidence cache, so a rerun is fast), fit MoLAM (cross-validated on the seeds) and export every
text with its metadata.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .dataset import read_table
from .export import FORMATS, export_metadata, molam_accuracy_estimate, write_export
from .project import AnnotatorSpec, Project, make_source

#: Fewest seed labels MoLAM's cross-validated estimate (5 folds) can be computed from.
MIN_SEEDS = 5


class LabelError(Exception):
    """The labeling run cannot start as asked; the message says what to change."""


@dataclass(frozen=True)
class LabelRequest:
    data: Path
    text_column: str
    label_column: str
    out: Path
    id_column: str | None = None
    models: tuple[str, ...] | None = None  # None: the dashboard's default panel
    labels: tuple[str, ...] | None = None  # None: the values found in the label column
    project_dir: Path | None = None  # None: a temporary project, removed afterwards


def default_models() -> tuple[str, ...]:
    """The panel the dashboard ticks for a new project: every embedded model."""
    from .evidence.embedded import EMBEDDED_MODELS

    return tuple(EMBEDDED_MODELS)


def annotator_spec(name: str) -> AnnotatorSpec:
    """``hf:<hub id or folder>`` names a Hugging Face model; any other name an embedded model."""
    if name.startswith("hf:"):
        return AnnotatorSpec(kind="hf", model=name[3:])
    from .evidence.embedded import EMBEDDED_MODELS

    if name not in EMBEDDED_MODELS:
        raise LabelError(
            f"unknown model {name!r}: choose embedded models among {', '.join(EMBEDDED_MODELS)} "
            "or a Hugging Face model as hf:<id>"
        )
    return AnnotatorSpec(kind="embedded", model=name)


def _project_name(data: Path, root: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9 _.-]", "-", data.stem)[:40].strip(" .-_") or "table"
    name, n = f"label-{stem}", 1
    while (root / f"{name}.mollia.sqlite").exists():
        n += 1
        name = f"label-{stem}-{n}"
    return name


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def label_table(request: LabelRequest, say: Callable[[str], None] = _say) -> dict[str, Any]:
    """Run the whole labeling; returns the summary printed as the last line of ``label``."""
    if request.out.suffix.lstrip(".").lower() not in FORMATS + ("pq",):
        raise LabelError(f"--out {request.out} must end in .csv, .jsonl or .parquet (the export's format)")
    specs = [annotator_spec(name) for name in (request.models or default_models())]
    if not specs:
        raise LabelError("no model chosen: give --models NAME[,NAME...]")
    started = time.perf_counter()
    frame = read_table(request.data)
    if request.project_dir is not None:
        request.project_dir.mkdir(parents=True, exist_ok=True)
        return _label_in(request, frame, specs, request.project_dir, started, say, keep=True)
    with tempfile.TemporaryDirectory(prefix="mollia-label-") as folder:
        return _label_in(request, frame, specs, Path(folder), started, say, keep=False)


def _label_in(request, frame, specs, root: Path, started: float, say, keep: bool) -> dict[str, Any]:
    project = Project.create(_project_name(request.data, root), root)
    try:
        project.set_dataset(
            frame, request.text_column, id_column=request.id_column, label_column=request.label_column,
            labels=list(request.labels) if request.labels else None, source_name=request.data.name,
            hold_out_validation=False,  # every human label is a seed
        )
        n_seeds = _take_seeds(project, request.label_column)
        say(f"{project.store.n_texts} texts, {n_seeds} seeds, labels {', '.join(project.labels)}")
        project.set_panel(specs)
        project.panel.set_evidence_plan("full")  # every row gets MoLAM's label: every LLM answers every text
        llm_texts = _run_panel(project, specs, say)
        say("fitting MoLAM and cross-validating it on the seeds")
        report = project.fit_annotator()
        estimate = molam_accuracy_estimate(report.cv_accuracy, report.n_seeds)
        exported = project.export_frame("all")
        metadata = export_metadata(exported, estimate, labels=list(project.labels), models=project.panel_models(),
                                   source_file=request.data.name)
        metadata_at = write_export(exported, request.out, metadata)
        say(f"wrote {len(exported)} texts to {request.out}")
        return {
            "out": str(request.out),
            "metadata": str(metadata_at),
            "texts": int(len(exported)),
            "seeds": n_seeds,
            "labeled_by_molam": int((exported["source"] == "molam").sum()),
            "labels": list(project.labels),
            "models": project.panel_models(),
            "estimated_accuracy": estimate,
            "seed_cv": {name: {"mean": values[0], "std": values[1]} for name, values in report.cv_accuracy.items()},
            "llm_texts": llm_texts,
            "project": str(project.path) if keep else None,
            "wall_s": round(time.perf_counter() - started, 3),
        }
    finally:
        project.store.close()


def _take_seeds(project: Project, label_column: str) -> int:
    gold = project.gold()
    n_labeled, n_classes = int((gold >= 0).sum()), len(np.unique(gold[gold >= 0]))
    if n_labeled < MIN_SEEDS or n_classes < 2:
        raise LabelError(
            f"column {label_column!r} has {n_labeled} label(s) of {n_classes} class(es): MoLAM needs at least "
            f"{MIN_SEEDS} labeled rows of at least 2 classes (about 50 are best). Fill in more labels."
        )
    return project.take_seeds_from_column(None)


def _run_panel(project: Project, specs: Sequence[AnnotatorSpec], say) -> dict[str, dict[str, float]]:
    """Evidence of each model on every text, one model in memory at a time; per model, how many texts
    it answered in this run and how many came from the evidence cache."""
    texts, labels = project.texts, list(project.labels)
    prompt = project.prompt()  # the Annotators page's prompt: template, descriptions, demonstrations
    counts: dict[str, dict[str, float]] = {}
    for spec in specs:
        name = spec.display_name
        source = make_source(spec, prompt)
        missing = project.missing_evidence(name)
        cached = source.cached_count([texts[i] for i in missing], labels)
        say(f"{name}: {len(missing) - cached} texts to answer, {cached} from the evidence cache")
        last_report = [0.0]

        def report(model: str, progress) -> None:
            now = time.monotonic()
            if progress.done == progress.total or now - last_report[0] > 10:
                last_report[0] = now
                say(f"{model}: {progress.done} / {progress.total} texts")

        try:
            project.run_evidence([(spec, source)], progress=report)
        finally:
            source.close()
        counts[name] = {"answered": len(missing) - cached, "from_cache": cached}
    evidence = project.require_evidence()
    for j, name in enumerate(evidence.models):
        if name in counts and evidence.no_label_share is not None:
            counts[name]["no_label_share"] = round(float(np.mean(evidence.no_label_share[:, j])), 4)
    return counts
