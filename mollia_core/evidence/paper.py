"""Replay of the paper's stored evidence (``meta_x.npy`` / ``meta_y.npy``, optional jsonl).

Layout (see ``../shared/data/paper-evidence/README.md``): ``meta_x`` is (n, 2N, K) with rows
[z_gemma, c_gemma, z_llama, c_llama, ..., z_yi, c_yi]; ``meta_y`` is one-hot gold (n, K);
``<model>.jsonl`` (trec only) holds the text, gold label, z and the 10 raw sampled answers.
A folder written by :func:`write_paper_evidence` also holds ``names.json`` (``{"labels": [...],
"models": [...]}``), so that evidence of any panel on any dataset reads back with its own names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .record import PanelEvidence

NAMES_FILE = "names.json"
PAPER_MODELS = ("gemma", "llama", "mistral", "qwen", "yi")
PAPER_LABELS = {
    "trec": ("abbreviation", "entity", "description", "human", "location", "numeric"),
    "imdb": ("negative", "positive"),
}


@dataclass(frozen=True)
class PaperDataset:
    """Evidence, gold labels and (where stored) texts of one paper-evidence directory."""

    name: str
    evidence: PanelEvidence
    gold: np.ndarray  # (n,) int label index
    texts: tuple[str, ...] | None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.evidence.labels


def load_paper_evidence(directory: str | Path, with_answers: bool = True) -> PaperDataset:
    """Load a directory in the paper-evidence layout.

    Label and model names come from ``names.json`` when the folder has one, else from the known
    datasets (trec, imdb), else they are ``class_0..`` and ``llm_0..``.
    With ``with_answers`` and jsonl files present, texts and raw answers are loaded too.
    """
    directory = Path(directory)
    meta_x_path, meta_y_path = directory / "meta_x.npy", directory / "meta_y.npy"
    for path in (meta_x_path, meta_y_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: a paper-evidence directory holds meta_x.npy and meta_y.npy "
                "(e.g. ../shared/data/paper-evidence/trec)"
            )
    meta_x = np.load(meta_x_path, allow_pickle=False)
    meta_y = np.load(meta_y_path, allow_pickle=False)
    n, rows, k = meta_x.shape
    labels = PAPER_LABELS.get(directory.name, tuple(f"class_{i}" for i in range(k)))
    models = PAPER_MODELS if rows == 2 * len(PAPER_MODELS) else tuple(f"llm_{i}" for i in range(rows // 2))
    names_path = directory / NAMES_FILE
    if names_path.is_file():
        names = json.loads(names_path.read_text(encoding="utf-8"))
        labels, models = tuple(names["labels"]), tuple(names["models"])
        if (len(models), len(labels)) != (rows // 2, k):
            raise ValueError(f"{names_path} names {len(models)} models and {len(labels)} labels, but meta_x.npy "
                             f"holds {rows // 2} models x {k} labels")
    texts = answers = None
    jsonl_paths = [directory / f"{m}.jsonl" for m in models]
    if with_answers and all(p.is_file() for p in jsonl_paths):
        per_model = [[json.loads(line) for line in p.open(encoding="utf-8")] for p in jsonl_paths]
        if any(len(rows_) != n for rows_ in per_model):
            raise ValueError(f"jsonl files in {directory} do not have {n} lines each")
        texts = tuple(r["text"] for r in per_model[0])
        answers = [[tuple(per_model[j][i]["llm_label"]) for j in range(len(models))] for i in range(n)]
    evidence = PanelEvidence.from_meta_x(meta_x, labels, models, text_ids=tuple(str(i) for i in range(n)))
    if answers is not None:
        evidence = PanelEvidence(
            labels=evidence.labels,
            models=evidence.models,
            label_probs=evidence.label_probs,
            vote_shares=evidence.vote_shares,
            text_ids=evidence.text_ids,
            answers=answers,
        )
    return PaperDataset(name=directory.name, evidence=evidence, gold=meta_y.argmax(1), texts=texts)


def write_paper_evidence(directory: str | Path, evidence: PanelEvidence, gold: np.ndarray,
                         texts: Sequence[str] | None = None) -> Path:
    """Write ``evidence`` (and gold label indices, and texts when given) in the paper-evidence layout
    that :func:`load_paper_evidence` reads back: meta_x.npy, meta_y.npy, names.json and, with texts,
    one ``<model>.jsonl`` per model (text, gold label, the raw sampled answers as ``llm_label``)."""
    directory = Path(directory)
    gold = np.asarray(gold, dtype=int)
    if len(gold) != evidence.n_texts or (texts is not None and len(texts) != evidence.n_texts):
        raise ValueError(f"{evidence.n_texts} texts of evidence, {len(gold)} gold labels"
                         + (f", {len(texts)} texts" if texts is not None else ""))
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "meta_x.npy", evidence.meta_x())
    np.save(directory / "meta_y.npy", np.eye(len(evidence.labels))[gold])
    (directory / NAMES_FILE).write_text(json.dumps({"labels": list(evidence.labels), "models": list(evidence.models)}),
                                        encoding="utf-8")
    if texts is not None:
        for j, model in enumerate(evidence.models):
            with (directory / f"{model}.jsonl").open("w", encoding="utf-8") as out:
                for i, text in enumerate(texts):
                    answers = list(evidence.answers[i][j]) if evidence.answers is not None else []
                    out.write(json.dumps({"text": text, "label": evidence.labels[gold[i]], "llm_label": answers}) + "\n")
    return directory
