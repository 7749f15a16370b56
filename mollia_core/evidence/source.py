"""The one interface every evidence source implements (embedded GGUF, Hugging Face,
OpenAI-compatible server, replay of stored evidence)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

from .record import EvidenceRecord


@dataclass(frozen=True)
class Progress:
    """Reported to the ``progress`` callback while a source works."""

    done: int
    total: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        """Texts per second so far."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None


ProgressCallback = Callable[[Progress], None]


class Cancelled(Exception):
    """Raised by a source when its ``cancel`` event was set; work done so far stays cached."""


class EvidenceError(Exception):
    """A source cannot give evidence; the message says what is wrong and how to fix it."""


def resolve_text_ids(texts: Sequence[str], text_ids: Sequence[str] | None) -> list[str]:
    """The ids of ``texts``: the given ones (one per text), else their positions as strings."""
    if text_ids is None:
        return [str(i) for i in range(len(texts))]
    if len(text_ids) != len(texts):
        raise EvidenceError(f"{len(text_ids)} text ids for {len(texts)} texts: give one id per text")
    return [str(i) for i in text_ids]


class EvidenceSource(ABC):
    """An LLM (or a store of what an LLM said) that gives evidence for texts.

    ``name`` is the short name shown to users; ``cache_key`` identifies everything
    that changes the evidence (model and its file hash or revision, prompt template,
    decoding settings) so that cached records are reused only when still valid.
    """

    name: str

    @property
    @abstractmethod
    def cache_key(self) -> str: ...

    @abstractmethod
    def evidence(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        text_ids: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[EvidenceRecord]:
        """One record per text, in order. Raise ``Cancelled`` if ``cancel`` is set."""

    def close(self) -> None:
        """Release the model (sources hold at most one model in memory)."""
