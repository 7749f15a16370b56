"""An on-disk cache of evidence, and a source wrapper that uses it: a rerun costs nothing,
an interrupted run resumes.

Records live in one SQLite file (default ``data_home()/evidence-cache.sqlite``), keyed by
(the source's ``cache_key``, sha256 of the text, the label list in order). The source's
cache key already names the model (and its file hash or revision), the prompt template
and the decoding settings, so a change to any of them misses the cache.

The database runs in WAL mode: readers (the dashboard) never block the writer, and each
chunk of texts is committed as soon as it is computed, so a killed run loses only the
chunk in flight (``chunk_size=1`` loses at most one text).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..paths import data_home
from .record import EvidenceRecord
from .replay import json_line, record_from_dict, record_to_dict, text_sha256
from .source import Cancelled, EvidenceError, EvidenceSource, Progress, ProgressCallback, resolve_text_ids

__all__ = ["CachedSource", "EvidenceCache", "default_cache_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evidence (
    source_key TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    labels TEXT NOT NULL,
    record TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (source_key, text_sha256, labels)
) WITHOUT ROWID
"""
_BATCH = 500  # keys per SELECT (SQLite limits the number of bound parameters)


def default_cache_path() -> Path:
    return data_home() / "evidence-cache.sqlite"


class EvidenceCache:
    """Evidence records on disk, keyed by (source cache key, text sha256, labels).

    Safe to share between threads (one connection per thread) and processes (SQLite
    locking, WAL mode, a busy timeout).
    """

    def __init__(self, path: str | Path | None = None, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._timeout_s = timeout_s
        self._local = threading.local()
        with self._connection() as conn:
            conn.execute(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self._timeout_s)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.DatabaseError as error:
                raise EvidenceError(
                    f"the evidence cache {self.path} cannot be opened ({error}): delete the file "
                    "(it only holds evidence that can be computed again)"
                ) from None
            self._local.conn = conn
        return conn

    @staticmethod
    def _labels_key(labels: Sequence[str]) -> str:
        return json.dumps(list(labels), ensure_ascii=False)

    def get_many(self, source_key: str, text_shas: Sequence[str], labels: Sequence[str]) -> dict[str, EvidenceRecord]:
        """Cached records by text sha256, for those of ``text_shas`` that are cached."""
        labels_key = self._labels_key(labels)
        wanted = list(dict.fromkeys(text_shas))
        found: dict[str, EvidenceRecord] = {}
        conn = self._connection()
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start : start + _BATCH]
            rows = conn.execute(
                f"SELECT text_sha256, record FROM evidence WHERE source_key = ? AND labels = ? "
                f"AND text_sha256 IN ({','.join('?' * len(batch))})",
                (source_key, labels_key, *batch),
            ).fetchall()
            for sha, record in rows:
                found[sha] = record_from_dict(json.loads(record), f"evidence cache {self.path}")
        return found

    def put_many(self, source_key: str, text_shas: Sequence[str], records: Sequence[EvidenceRecord]) -> None:
        """Store ``records[i]`` for text ``text_shas[i]``, in one committed transaction."""
        if len(text_shas) != len(records):
            raise ValueError(f"{len(text_shas)} text keys for {len(records)} records")
        now = time.time()
        rows = [
            (
                source_key,
                sha,
                self._labels_key(record.labels),
                json_line(record_to_dict(record)),
                now,
            )
            for sha, record in zip(text_shas, records)
        ]
        conn = self._connection()
        with conn:  # commits, or rolls back on error
            conn.executemany("INSERT OR REPLACE INTO evidence VALUES (?, ?, ?, ?, ?)", rows)

    def count(self, source_key: str | None = None) -> int:
        """Number of cached records (of one source, if given)."""
        if source_key is None:
            return self._connection().execute("SELECT COUNT(*) FROM evidence").fetchone()[0]
        return self._connection().execute(
            "SELECT COUNT(*) FROM evidence WHERE source_key = ?", (source_key,)
        ).fetchone()[0]

    def clear(self, source_key: str | None = None) -> None:
        """Forget cached evidence (of one source, if given)."""
        conn = self._connection()
        with conn:
            if source_key is None:
                conn.execute("DELETE FROM evidence")
            else:
                conn.execute("DELETE FROM evidence WHERE source_key = ?", (source_key,))

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class CachedSource(EvidenceSource):
    """Wraps any source: cached texts are answered from the cache, the others are sent to
    the wrapped source ``chunk_size`` texts at a time and each chunk is cached at once.

    Progress counts cached texts as done. ``cancel`` is honoured between chunks (and by
    the wrapped source inside one): ``Cancelled`` is raised once the finished chunks are
    saved, so the next call resumes with only the rest.
    """

    def __init__(self, source: EvidenceSource, cache: EvidenceCache | None = None, chunk_size: int = 8) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.source = source
        self.cache = cache if cache is not None else EvidenceCache()
        self.chunk_size = chunk_size
        self.name = source.name

    @property
    def cache_key(self) -> str:
        return self.source.cache_key

    def cached_count(self, texts: Sequence[str], labels: Sequence[str]) -> int:
        """How many of ``texts`` already have cached evidence over ``labels``."""
        shas = [text_sha256(t) for t in texts]
        found = self.cache.get_many(self.cache_key, shas, labels)
        return sum(sha in found for sha in shas)

    def evidence(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        text_ids: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[EvidenceRecord]:
        start = time.monotonic()
        labels = tuple(labels)
        ids = resolve_text_ids(texts, text_ids)
        key = self.cache_key
        shas = [text_sha256(t) for t in texts]
        found = self.cache.get_many(key, shas, labels)
        # Positions still to compute, one per distinct text (a repeated text is computed once).
        first_position: dict[str, int] = {}
        for i, sha in enumerate(shas):
            if sha not in found:
                first_position.setdefault(sha, i)
        todo = list(first_position.values())
        copies = Counter(sha for sha in shas if sha in first_position)
        done = len(texts) - sum(copies.values())

        def report(extra: int = 0) -> None:
            if progress is not None:
                progress(Progress(done + extra, len(texts), time.monotonic() - start))

        report()
        for begin in range(0, len(todo), self.chunk_size):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"cancelled after {done} of {len(texts)} texts; the finished ones are cached")
            chunk = todo[begin : begin + self.chunk_size]
            inner = (lambda p: report(p.done)) if progress is not None else None
            records = self.source.evidence(
                [texts[i] for i in chunk], labels, text_ids=[ids[i] for i in chunk], progress=inner, cancel=cancel
            )
            if len(records) != len(chunk):
                raise EvidenceError(
                    f"source {self.name!r} returned {len(records)} records for {len(chunk)} texts"
                )
            chunk_shas = [shas[i] for i in chunk]
            self.cache.put_many(key, chunk_shas, records)
            for sha, record in zip(chunk_shas, records):
                found[sha] = record
                done += copies[sha]
            report()
        return [replace(found[sha], text_id=ids[i]) for i, sha in enumerate(shas)]

    def close(self) -> None:
        self.source.close()
