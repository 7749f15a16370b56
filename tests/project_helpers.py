"""Small real projects for the dashboard's tests: TREC questions with the paper's real LLM evidence."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from mollia_core.evidence import EvidenceRecord, PaperDataset
from mollia_core.evidence.replay import records_from_panel, write_evidence_jsonl
from mollia_core.loop import LoopConfig
from mollia_core.project import AnnotatorSettings, AnnotatorSpec, Project


def trec_frame(trec: PaperDataset, n: int = 300, with_gold: bool = True) -> pd.DataFrame:
    """The first ``n`` TREC questions as a user's table: qid (the evidence's text ids), question,
    category (gold), and a column of the user's own."""
    labels = trec.labels
    return pd.DataFrame(
        {
            "qid": list(trec.evidence.text_ids[:n]),
            "question": list(trec.texts[:n]),
            "category": [labels[k] for k in trec.gold[:n]] if with_gold else [""] * n,
            "note": [f"nöte {i}" for i in range(n)],
        }
    )


def trec_records(trec: PaperDataset, n: int, models: int = 5) -> dict[str, list[EvidenceRecord]]:
    """The paper's stored evidence of the first ``models`` LLMs on the first ``n`` TREC questions."""
    per_model = records_from_panel(trec.evidence.subset(range(n)))[:models]
    return {records[0].model: records for records in per_model}


def write_trec_files(trec: PaperDataset, folder: Path, n: int = 300, models: int = 5) -> tuple[Path, Path]:
    """A CSV a user would upload (columns id, text, label, note) and the matching evidence file."""
    frame = trec_frame(trec, n).rename(columns={"qid": "id", "question": "text", "category": "label"})
    csv = folder / "trec-questions.csv"
    frame.to_csv(csv, index=False)
    records = [r for rs in trec_records(trec, n, models).values() for r in rs]
    evidence = write_evidence_jsonl(folder / "trec-questions.evidence.jsonl", records)
    return csv, evidence


# TEST-NET-3 (RFC 5737): an address for documentation, never routed. Nothing listens there; tests only
# assert that nothing is ever asked of it.
REMOTE = "203.0.113.1"
#: User strings that Markdown or HTML would act on: an image fetched from REMOTE, bold, a Streamlit
#: colour directive, a javascript: link, an HTML link and an HTML image.
INJECTIONS = (
    f"![p](http://{REMOTE}/x.png)",
    "**bold**",
    ":red[x]",
    "[x](javascript:alert(1))",
    f'<a href="http://{REMOTE}/">a</a>',
    f"<img src=http://{REMOTE}/i.png>",
)


def replayed_project(trec: PaperDataset, name: str, n: int = 150, models: int = 3, seeds: int = 40,
                     root: Path | None = None):
    """A project over the first ``n`` TREC questions with the paper's evidence of ``models`` LLMs replayed
    and ``seeds`` seed labels from the gold column: ready for MoLAM and the loop."""
    project = Project.create(name, root=root)
    project.dataset.set_dataset(trec_frame(trec, n), "question", id_column="qid", label_column="category")
    for model, records in trec_records(trec, n, models=models).items():
        spec = AnnotatorSpec(kind="replay", model=model, path="trec.jsonl")
        project.panel.set_specs(project.panel.specs() + [spec])
        project.panel.import_evidence_records(spec, records)
    project.dataset.take_seeds_from_column(seeds)
    return project


ITERATED_TEXTS, ITERATED_BATCH = 200, 10


@pytest.fixture(scope="module")
def iterated(tmp_path_factory, trec):
    """A project with seeds, evidence, a fitted MoLAM and one AL iteration (built once, copied per test)."""
    folder = tmp_path_factory.mktemp("template")
    project = Project(folder / "template.mollia.sqlite")
    frame = trec_frame(trec, ITERATED_TEXTS)
    project.set_dataset(frame, "question", id_column="qid", label_column="category")
    specs = []
    for model, records in trec_records(trec, ITERATED_TEXTS).items():
        spec = AnnotatorSpec(kind="replay", model=model, path="trec.jsonl")
        specs.append(spec)
        project.set_panel(specs)
        project.import_evidence_records(spec, records)
    project.take_seeds_from_column(50)
    project.fit_annotator(AnnotatorSettings(), cv=False)
    project.run_iterations(1, LoopConfig(batch_size=ITERATED_BATCH))
    project.store.close()
    return folder / "template.mollia.sqlite"


def copy_project(template, projects, name="loop") -> Project:
    """A copy of the project file ``template`` in the projects folder, opened as ``name``."""
    shutil.copy(template, projects / f"{name}.mollia.sqlite")
    return Project.open(name)
