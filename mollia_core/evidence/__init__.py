"""Evidence sources and records (paper Eq. 1-3)."""

from .cache import CachedSource, EvidenceCache
from .parsing import AnswerParser, parse_answer, vote_shares
from .prompt import DEFAULT_TEMPLATE, PromptTemplate, PromptTemplateError
from .paper import PAPER_LABELS, PAPER_MODELS, PaperDataset, load_paper_evidence, write_paper_evidence
from .record import EvidenceRecord, PanelEvidence
from .replay import ReplaySource, read_evidence_jsonl, replay_panel, write_evidence_jsonl
from .server import OpenAICompatibleSource
from .source import Cancelled, EvidenceError, EvidenceSource, Progress, ProgressCallback

__all__ = [
    "DEFAULT_TEMPLATE",
    "PromptTemplate",
    "PromptTemplateError",
    "HuggingFaceSource",
    "EvidenceEngine",
    "DecodingSettings",
    "CachedSource",
    "EvidenceCache",
    "ReplaySource",
    "OpenAICompatibleSource",
    "read_evidence_jsonl",
    "replay_panel",
    "write_evidence_jsonl",
    "AnswerParser",
    "parse_answer",
    "vote_shares",
    "Cancelled",
    "EvidenceError",
    "EvidenceRecord",
    "EvidenceSource",
    "PAPER_LABELS",
    "PAPER_MODELS",
    "PanelEvidence",
    "PaperDataset",
    "Progress",
    "ProgressCallback",
    "load_paper_evidence",
    "write_paper_evidence",
]


def __getattr__(name: str):
    # The torch-backed engine and source load on first use, so importing the package stays light.
    if name in ("EvidenceEngine", "DecodingSettings"):
        from . import scoring

        return getattr(scoring, name)
    if name == "HuggingFaceSource":
        from .hf import HuggingFaceSource

        return HuggingFaceSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
