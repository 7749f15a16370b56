"""Evidence sources and records (paper Eq. 1-3)."""

from .cache import CachedSource, EvidenceCache
from .parsing import AnswerParser, parse_answer, vote_shares
from .paper import PAPER_LABELS, PAPER_MODELS, PaperDataset, load_paper_evidence
from .record import EvidenceRecord, PanelEvidence
from .replay import ReplaySource, read_evidence_jsonl, replay_panel, write_evidence_jsonl
from .server import OpenAICompatibleSource
from .source import Cancelled, EvidenceError, EvidenceSource, Progress, ProgressCallback

__all__ = [
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
]
