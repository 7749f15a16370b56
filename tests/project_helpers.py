"""Small real projects for the dashboard's tests: TREC questions with the paper's real LLM evidence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mollia_core.evidence import EvidenceRecord, PaperDataset
from mollia_core.evidence.replay import records_from_panel, write_evidence_jsonl


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
