"""Evidence sources and records (paper Eq. 1-3)."""

from .paper import PAPER_LABELS, PAPER_MODELS, PaperDataset, load_paper_evidence
from .record import EvidenceRecord, PanelEvidence
from .source import Cancelled, EvidenceError, EvidenceSource, Progress, ProgressCallback

__all__ = [
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
