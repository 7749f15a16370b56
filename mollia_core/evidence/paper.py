"""Replay of the paper's stored evidence (``meta_x.npy`` / ``meta_y.npy``, optional jsonl).

Layout (see ``../shared/data/paper-evidence/README.md``): ``meta_x`` is (n, 2N, K) with rows
[z_gemma, c_gemma, z_llama, c_llama, ..., z_yi, c_yi]; ``meta_y`` is one-hot gold (n, K);
``<model>.jsonl`` (trec only) holds the text, gold label, z and the 10 raw sampled answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .record import PanelEvidence

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

    Label names come from the known datasets (trec, imdb) or are ``class_0..`` otherwise.
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
