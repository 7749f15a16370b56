"""The project store: one SQLite file per project, shared by the headless loop and the dashboard.

Everything a project holds -- settings, the dataset, LLM evidence, labels, the
active-learning iterations, human labels and reviews, model artifacts -- lives in one
SQLite file (WAL journal). Every public write runs in a transaction and is
committed before the call returns, so a process killed at any point loses
nothing that a call had returned from; reopening the file resumes exactly.
Nothing is ever pickled: arrays are stored with ``np.save(allow_pickle=False)``,
structured values as JSON, model weights as whatever byte format their owner
chooses (XGBoost JSON/UBJ, safetensors) through :meth:`ProjectStore.put_blob`.

Schema (version ``SCHEMA_VERSION``)
-----------------------------------
``meta(key PK, value JSON)``
    schema_version, created_at.
``settings(key PK, value JSON)``
    project settings, one key each (``labels``: the label list, ``name``, loop
    config, annotator, panel, ...). Label values everywhere else are indices into
    ``settings['labels']``.
``texts(idx PK, text_id UNIQUE, text, gold NULL, split, columns JSON)``
    the dataset, in row order ``idx = 0..n-1``; ``gold`` is a label index or NULL;
    ``split`` is ``pool`` / ``validation`` / ``test`` (only ``pool`` texts are ever
    queried); ``columns`` are the user's original columns of that row.
``evidence_models(model PK, position, info JSON)``
    the panel's LLMs in order, with a description of their source.
``evidence(idx, model, label_probs BLOB, vote_shares BLOB, no_label_share, answers JSON)``
    one row per (text, LLM): z and c as K raw little-endian float64 (Eq. 1-2), the raw
    sampled answers as a JSON list. Per-record rows let evidence be computed
    model by model and resumed.
``suggestions(idx PK, agent, label, probability, proba JSON, negatives JSON, iteration, d_anno, weight, created_at)``
    the model's label for a text, one row per text the annotator labeled: ``agent`` is the annotator
    (``molam``, ``gold``, ``llm:<name>``, ``vote``, ...), ``label`` its y+ with its ``probability`` and
    class probabilities, ``negatives`` y- (label indices), ``iteration`` the AL iteration that queried
    it, ``d_anno`` the discrepancy flag (Eq. 8), ``weight`` W_d.
``responses(id PK, idx, kind, label, previous_label NULL, created_at, applied_iteration NULL, withdrawn_at NULL)``
    the human labels, in order: ``kind`` is ``seed``, ``accept`` (the suggestion confirmed) or
    ``override`` (the human's own label); ``previous_label`` the text's label before it;
    ``applied_iteration`` the first training that used an accept or override (NULL while pending);
    ``withdrawn_at`` set by an undo (the row stays, as history).

``iterations(iteration PK, status, queried JSON, lambda, metrics JSON, timings JSON,``
``info JSON, started_at, updated_at)``
    one row per AL iteration; iteration 0 is the initial training on the seeds.
    ``status`` walks ``queried`` -> ``labeled`` -> ``trained`` (see ``STATUSES``).
``arrays(name PK, data BLOB, updated_at)`` / ``blobs(name PK, data BLOB, info JSON, updated_at)``
    named numpy arrays (``.npy`` bytes) and opaque byte artifacts (models). MoLAM's latest fit
    (``AnnotationResult``) is kept as arrays behind ``put_annotation_result``/``annotation_result``.

The labeled set L is derived, never stored twice (``annotations()``, ``AnnotationRow``): a text is in L
when it has a suggestion or a human response; its label is its latest response not withdrawn, else its
suggestion; ``source`` is that response's kind, else the suggestion's agent; ``annotator_label``,
``probability`` and ``d_anno`` are the suggestion's, shown beside a human label. Human labels train
with weight 1 and no negatives (seeds: iteration 0). A version-1 file (one ``annotations`` row per
labeled text and an ``overrides`` log) is migrated to these tables when it is opened, in one
transaction.

The AL loop (``mollia_core.loop``) keeps its settings under ``settings['loop']`` (the
``LoopConfig``) and ``settings['loop_annotator']``, and its state behind typed methods (the array
names under ``loop/`` are this module's own):

- ``put_annotator_fit_labels(y)`` / ``annotator_fit_labels() -> ndarray | None``: the human labels
  (per text, -1 for none) the loop's annotator was fitted on, so a resumed run refits it identically;
- ``put_training_set(iteration, TrainingSet)`` / ``training_set(iteration) -> TrainingSet | None``:
  L as the training of that iteration used it (text indices, labels, W_d, y- masks; Eq. 9);
- ``put_predictions(iteration, proba)`` / ``predictions(iteration) -> Predictions | None`` /
  ``latest_predictions() -> Predictions | None``: the AL model of an iteration on every text. Its
  predicted labels are kept for every iteration (d_anno of iteration t+1 compares with those of t,
  Eq. 7), its class probabilities for the latest iteration only.

Public API
----------
``ProjectStore(path)`` opens or creates a project file (``ProjectStore.open``
refuses to create). Settings: ``get_setting``, ``set_setting``,
``update_settings``, ``settings``, ``labels``/``set_labels``. Dataset:
``add_texts``, ``n_texts``, ``texts``, ``text_ids``, ``gold``, ``splits``,
``set_splits``, ``original_columns``. Evidence: ``put_evidence``,
``evidence``, ``evidence_models``, ``evidence_coverage``, ``evidence_indices``,
``delete_evidence_model``. Labels:
``set_seed_labels``, ``seed_labels``, ``put_annotations`` (the model's suggestions), ``annotations``,
``annotation``, ``labeled_indices``. MoLAM's fit: ``put_annotation_result``,
``annotation_result``, ``has_annotation_result``. Loop: ``put_iteration``,
``update_iteration``, ``iterations``, ``iteration``, ``last_iteration``,
``clear_loop``, and the loop state above. Human reviews: ``accept``, ``add_override``,
``undo_response``, ``responses``, ``human_labels``, ``mark_responses_applied`` (``overrides`` and
``mark_overrides_applied``, the older names, for the overrides alone). Artifacts: ``put_array``/``get_array``,
``put_blob``/``get_blob``. Grouping: ``with store.transaction(): ...`` makes
several writes one atomic commit. Projects folder: ``projects_dir``,
``list_projects``.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .evidence.record import PanelEvidence
from .paths import data_home

SCHEMA_VERSION = 2
PROJECT_SUFFIX = ".mollia.sqlite"
SOURCE_SEED = "seed"
SOURCE_OVERRIDE = "override"
SOURCE_ACCEPT = "accept"
HUMAN_SOURCES = (SOURCE_SEED, SOURCE_ACCEPT, SOURCE_OVERRIDE)
#: What a human's review of a text can be: accept the model's suggestion, or override it.
RESPONSE_KINDS = (SOURCE_ACCEPT, SOURCE_OVERRIDE)
SPLITS = ("pool", "validation", "test")
STATUSES = ("queried", "labeled", "trained")
_VECTOR_DTYPE = np.dtype("<f8")  # evidence vectors: raw little-endian float64, K values

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS texts (
    idx INTEGER PRIMARY KEY,
    text_id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    gold INTEGER,
    split TEXT NOT NULL DEFAULT 'pool' CHECK (split IN ('pool', 'validation', 'test')),
    columns TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS evidence_models (
    model TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    info TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS evidence (
    idx INTEGER NOT NULL REFERENCES texts(idx) ON DELETE CASCADE,
    model TEXT NOT NULL REFERENCES evidence_models(model) ON DELETE CASCADE,
    label_probs BLOB NOT NULL,
    vote_shares BLOB NOT NULL,
    no_label_share REAL NOT NULL,
    answers TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (idx, model)
);
CREATE TABLE IF NOT EXISTS suggestions (
    idx INTEGER PRIMARY KEY REFERENCES texts(idx) ON DELETE CASCADE,
    agent TEXT NOT NULL,
    label INTEGER NOT NULL,
    probability REAL,
    proba TEXT,
    negatives TEXT NOT NULL DEFAULT '[]',
    iteration INTEGER NOT NULL,
    d_anno INTEGER,
    weight REAL NOT NULL DEFAULT 1.0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS responses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idx INTEGER NOT NULL REFERENCES texts(idx) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('seed', 'accept', 'override')),
    label INTEGER NOT NULL,
    previous_label INTEGER,
    created_at TEXT NOT NULL,
    applied_iteration INTEGER,
    withdrawn_at TEXT
);
CREATE TABLE IF NOT EXISTS iterations (
    iteration INTEGER PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('queried', 'labeled', 'trained')),
    queried TEXT NOT NULL DEFAULT '[]',
    lambda REAL,
    metrics TEXT NOT NULL DEFAULT '{}',
    timings TEXT NOT NULL DEFAULT '{}',
    info TEXT NOT NULL DEFAULT '{}',
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS arrays (name TEXT PRIMARY KEY, data BLOB NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (
    name TEXT PRIMARY KEY, data BLOB NOT NULL, info TEXT NOT NULL DEFAULT '{}', updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_idx ON responses(idx);
"""


class StoreError(Exception):
    """The project file cannot be used as asked; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class AnnotationRow:
    """The current label of one labeled text, derived from its suggestion and human responses."""

    text_index: int
    label: int
    source: str
    iteration: int
    probability: float | None = None
    annotator_label: int | None = None
    negatives: tuple[int, ...] = ()
    proba: tuple[float, ...] | None = None
    d_anno: bool | None = None
    weight: float = 1.0
    created_at: str = ""
    updated_at: str = ""

    @property
    def is_human(self) -> bool:
        """Seed, accepted and overridden labels are a human's: weight 1, no negative labels."""
        return self.source in HUMAN_SOURCES


@dataclass(frozen=True)
class IterationRecord:
    """One AL iteration as stored (iteration 0 = initial training on the seeds)."""

    iteration: int
    status: str
    queried: tuple[int, ...] = ()
    lam: float | None = None
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    started_at: str = ""
    updated_at: str = ""


@dataclass(frozen=True)
class TrainingSet:
    """L as one training of the AL model used it (Eq. 9), one row per labeled text: the text indices,
    their labels ``y``, the weights W_d (``weight``) and the y- masks (``negatives``, (n, K) bool)."""

    index: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    negatives: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, selection: np.ndarray | slice) -> "TrainingSet":
        """The training set restricted to ``selection`` (a boolean mask, indices or a slice of rows)."""
        return TrainingSet(self.index[selection], self.y[selection], self.weight[selection], self.negatives[selection])


@dataclass(frozen=True)
class Predictions:
    """The AL model of one iteration on every text: predicted label (n,) and class probabilities
    (n, K; None for any but the latest iteration, whose probabilities alone are kept)."""

    iteration: int
    labels: np.ndarray
    proba: np.ndarray | None


_LOOP_ARRAY_PREFIX = "loop/"
_ANNOTATOR_FIT_LABELS = "loop/annotator_fit_y"
_TRAINING_SET_PARTS = ("index", "y", "weight", "negatives")


def _training_set_name(iteration: int, part: str) -> str:
    return f"loop/train/{int(iteration)}/{part}"


def _predicted_labels_name(iteration: int) -> str:
    return f"loop/prediction/{int(iteration)}"


_PROBA_PREFIX = "loop/proba/"


def _proba_name(iteration: int) -> str:
    return f"{_PROBA_PREFIX}{int(iteration)}"


@dataclass(frozen=True)
class OverrideRecord:
    """A human override of one text's label, time-stamped."""

    id: int
    text_index: int
    old_label: int | None
    new_label: int
    created_at: str
    applied_iteration: int | None


@dataclass(frozen=True)
class ResponseRecord:
    """A human's review of one text, time-stamped: ``accept`` (the model's suggestion becomes a human
    label) or ``override`` (the human's own label). ``previous_label`` is the text's label before it
    (None if the text was not labeled); ``applied_iteration`` the first training that used it."""

    id: int
    text_index: int
    kind: str
    label: int
    previous_label: int | None
    created_at: str
    applied_iteration: int | None


@dataclass(frozen=True)
class AnnotationResult:
    """MoLAM's latest fit, over every text in text order (what ``put_annotation_result`` stores).

    labels / probability / proba / negatives: y+, its probability, the class probabilities and the
    y- mask (Eq. 4-6); vote / mean: majority vote's and the mean probability's label, shown beside it;
    text_member_proba: the text classifier's probabilities when the fit read it (None otherwise);
    fit_y: the human labels it was fitted on (label index, -1 for the rest; None in older projects).
    """

    labels: np.ndarray
    probability: np.ndarray
    proba: np.ndarray
    negatives: np.ndarray
    vote: np.ndarray
    mean: np.ndarray
    text_member_proba: np.ndarray | None = None
    fit_y: np.ndarray | None = None


_ANNOTATION_ARRAY_PREFIX = "annotation/"
_ANNOTATION_ARRAYS = ("labels", "probability", "proba", "negatives", "vote", "mean", "text_member_proba", "fit_y")


def now() -> str:
    """UTC time stamp as stored (ISO 8601, microseconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def array_to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def array_from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def projects_dir() -> Path:
    """The folder that holds one ``<name>.mollia.sqlite`` per project.

    ``MOLLIA_PROJECTS_DIR`` overrides the default ``<MoLLIA home>/projects``.
    """
    override = os.environ.get("MOLLIA_PROJECTS_DIR")
    folder = Path(override) if override else data_home() / "projects"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def list_projects(folder: str | Path | None = None) -> list[Path]:
    """Project files in ``folder`` (default :func:`projects_dir`), most recently changed first."""
    folder = Path(folder) if folder is not None else projects_dir()
    files = [p for p in folder.glob(f"*{PROJECT_SUFFIX}") if p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def _disk_error(exc: BaseException, path: Path) -> StoreError | None:
    """The plain message for SQLite's full-disk and disk-failure errors (None for any other error)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    message = str(exc).lower()
    if "database or disk is full" in message:
        return StoreError(
            f"The disk holding the project {path} is full: free some space and retry. "
            "Nothing already stored was lost."
        )
    if "disk i/o error" in message:
        return StoreError(
            f"The disk holding the project {path} could not be written (disk I/O error: the disk may be full, "
            "failing or disconnected): check it and retry. Nothing already stored was lost."
        )
    return None


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_HUMAN_SOURCES_SQL = "('seed', 'accept', 'override')"


def _migrate_from_version_1(conn: sqlite3.Connection) -> None:
    """Schema 1 kept one row per labeled text (``annotations``: the current label, with the annotator's
    y+ in ``annotator_label``) and a log of ``overrides``. Its annotator rows, and the y+ kept on rows a
    human overrode, become suggestions (schema 1 kept no y- or W_d of an overridden row: none and 1);
    seeds become seed responses (a seed a human overrode too, from the override's old label), the
    overrides override responses in their order; then the old tables go."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='annotations'").fetchone() is None:
        return
    agent = conn.execute("SELECT value FROM settings WHERE key='loop_annotator'").fetchone()
    agent = json.loads(agent[0]) if agent else "molam"
    conn.execute(
        "INSERT INTO suggestions(idx, agent, label, probability, proba, negatives, iteration, d_anno, weight, created_at) "
        f"SELECT idx, CASE WHEN source IN {_HUMAN_SOURCES_SQL} THEN ? ELSE source END, COALESCE(annotator_label, label), "
        "probability, proba, negatives, iteration, d_anno, weight, created_at FROM annotations "
        f"WHERE source NOT IN {_HUMAN_SOURCES_SQL} OR annotator_label IS NOT NULL",
        (agent,),
    )
    conn.execute("INSERT INTO responses(idx, kind, label, created_at) "
                 "SELECT idx, 'seed', label, created_at FROM annotations WHERE source='seed' ORDER BY idx")
    conn.execute(
        "INSERT INTO responses(idx, kind, label, created_at) SELECT a.idx, 'seed', o.old_label, a.created_at "
        "FROM annotations a JOIN overrides o ON o.id = (SELECT MIN(id) FROM overrides WHERE idx = a.idx) "
        "WHERE a.source='override' AND a.annotator_label IS NULL AND o.old_label IS NOT NULL ORDER BY a.idx"
    )
    conn.execute(
        "INSERT INTO responses(idx, kind, label, previous_label, created_at, applied_iteration) "
        "SELECT idx, 'override', new_label, old_label, created_at, applied_iteration FROM overrides ORDER BY id"
    )
    conn.execute(  # a human label without its log entry (none is expected) is kept all the same
        "INSERT INTO responses(idx, kind, label, created_at) SELECT idx, 'override', label, updated_at FROM annotations a "
        "WHERE source='override' AND NOT EXISTS (SELECT 1 FROM overrides o WHERE o.idx = a.idx) ORDER BY idx"
    )
    conn.execute("DROP TABLE overrides")
    conn.execute("DROP TABLE annotations")


class ProjectStore:
    """One project's SQLite file. Thread-safe within a process (one connection, one lock);
    several processes may open the same file (WAL, busy timeout)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise StoreError(f"no project file at {self.path}: create the project first")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise self._cannot_open(exc) from None
        self._init_schema()

    def _cannot_open(self, exc: sqlite3.DatabaseError) -> StoreError:
        return _disk_error(exc, self.path) or StoreError(f"{self.path} is not a MoLLIA project file ({exc})")

    @classmethod
    def open(cls, path: str | Path) -> "ProjectStore":
        """Open an existing project file; a missing file is an error, not a new project."""
        return cls(path, create=False)

    def _init_schema(self) -> None:
        try:
            with self._lock:
                # executescript commits on its own; the schema is idempotent (IF NOT EXISTS).
                self._conn.executescript(_SCHEMA)
            with self.transaction() as conn:
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (_dumps(SCHEMA_VERSION),))
                    conn.execute("INSERT INTO meta VALUES ('created_at', ?)", (_dumps(now()),))
                elif json.loads(row[0]) > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path} was written by a newer MoLLIA (schema {json.loads(row[0])} > "
                        f"{SCHEMA_VERSION}): upgrade MoLLIA to open it"
                    )
                elif json.loads(row[0]) < SCHEMA_VERSION:
                    _migrate_from_version_1(conn)  # in this transaction: the file is migrated whole or not at all
                    conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (_dumps(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise self._cannot_open(exc) from None

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "ProjectStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Group writes into one atomic commit; nested uses join the outer transaction.

        A full or failing disk raises :class:`StoreError` with a plain message; the
        transaction is rolled back, so what earlier commits stored stays intact.
        """
        with self._lock:
            outer = self._depth == 0
            self._depth += 1
            try:
                if outer:
                    self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
                if outer:
                    self._conn.execute("COMMIT")
            except BaseException as exc:
                if outer and self._conn.in_transaction:
                    # SQLite may already have rolled back on its own (it does for SQLITE_FULL / IOERR).
                    self._conn.execute("ROLLBACK")
                disk_error = _disk_error(exc, self.path)
                if disk_error is not None:
                    raise disk_error from None
                raise
            finally:
                self._depth -= 1

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:  # a read can need temporary disk space too
                raise _disk_error(exc, self.path) or exc

    # ------------------------------------------------------------------ settings
    def get_setting(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM settings WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        self.update_settings({key: value})

    def update_settings(self, values: Mapping[str, Any]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO settings(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                [(k, _dumps(v)) for k, v in values.items()],
            )

    def settings(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._query("SELECT key, value FROM settings ORDER BY key")}

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.get_setting("labels", ()))

    def set_labels(self, labels: Sequence[str]) -> None:
        """Set the label set. Changing it once labels or evidence exist would silently re-map them."""
        labels = [str(label) for label in labels]
        if len(set(labels)) != len(labels) or not labels:
            raise StoreError(f"the label set must be non-empty and without repeats, got {labels}")
        current = list(self.labels)
        if current and current != labels and (self.n_labeled or self.evidence_models()):
            raise StoreError(
                f"the project already has labels or evidence over {current}; "
                "start a new project to use a different label set"
            )
        self.set_setting("labels", labels)

    # ------------------------------------------------------------------ dataset
    def add_texts(
        self,
        texts: Sequence[str],
        *,
        text_ids: Sequence[str] | None = None,
        gold: Sequence[int | None] | np.ndarray | None = None,
        splits: Sequence[str] | None = None,
        columns: Sequence[Mapping[str, Any]] | None = None,
    ) -> range:
        """Append texts (indices continue after the existing ones); returns their indices.

        ``text_ids`` default to the row index as a string; ``gold`` holds label indices
        (``None`` or a negative value for "unknown"); ``columns`` the user's original
        columns of each row (JSON-serialisable values).
        """
        start = self.n_texts
        n = len(texts)
        for name, values in (("text_ids", text_ids), ("gold", gold), ("splits", splits), ("columns", columns)):
            if values is not None and len(values) != n:
                raise StoreError(f"{name} has {len(values)} entries for {n} texts")
        ids = [str(t) for t in text_ids] if text_ids is not None else [str(start + i) for i in range(n)]
        gold_values = [None if g is None or int(g) < 0 else int(g) for g in gold] if gold is not None else [None] * n
        split_values = list(splits) if splits is not None else ["pool"] * n
        bad = sorted(set(split_values) - set(SPLITS))
        if bad:
            raise StoreError(f"unknown split(s) {bad}: use one of {SPLITS}")
        column_values = [_dumps(dict(c)) for c in columns] if columns is not None else ["{}"] * n
        try:
            with self.transaction() as conn:
                conn.executemany(
                    "INSERT INTO texts(idx, text_id, text, gold, split, columns) VALUES (?, ?, ?, ?, ?, ?)",
                    zip(range(start, start + n), ids, (str(t) for t in texts), gold_values, split_values, column_values),
                )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"text ids must be unique within a project ({exc})") from None
        return range(start, start + n)

    @property
    def n_texts(self) -> int:
        # Indices run 0..n-1 (add_texts appends, clear_texts empties): the primary key's last value is
        # read in one step, where COUNT(*) reads every row (milliseconds per call on 200,000 texts).
        return self._query("SELECT COALESCE(MAX(idx) + 1, 0) FROM texts")[0][0]

    def texts(self) -> list[str]:
        return [r[0] for r in self._query("SELECT text FROM texts ORDER BY idx")]

    def text_ids(self) -> list[str]:
        return [r[0] for r in self._query("SELECT text_id FROM texts ORDER BY idx")]

    def gold(self) -> np.ndarray:
        """Gold label index per text, -1 where unknown."""
        return np.array([-1 if g is None else g for (g,) in self._query("SELECT gold FROM texts ORDER BY idx")], dtype=int)

    def splits(self) -> np.ndarray:
        return np.array([s for (s,) in self._query("SELECT split FROM texts ORDER BY idx")], dtype=object)

    def set_splits(self, splits: Mapping[int, str] | Sequence[str]) -> None:
        items = splits.items() if isinstance(splits, Mapping) else enumerate(splits)
        rows = [(str(s), int(i)) for i, s in items]
        bad = sorted({s for s, _ in rows} - set(SPLITS))
        if bad:
            raise StoreError(f"unknown split(s) {bad}: use one of {SPLITS}")
        with self.transaction() as conn:
            conn.executemany("UPDATE texts SET split=? WHERE idx=?", rows)

    def original_columns(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The user's original columns of each row, in order (only the first ``limit`` rows if given)."""
        sql = "SELECT columns FROM texts ORDER BY idx" + (" LIMIT ?" if limit is not None else "")
        return [json.loads(c) for (c,) in self._query(sql, () if limit is None else (int(limit),))]

    # ------------------------------------------------------------------ evidence
    def put_evidence(
        self,
        evidence: PanelEvidence,
        text_indices: Sequence[int] | None = None,
        *,
        model_info: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """Store (or replace) the panel's evidence for ``text_indices`` (default: 0..n-1)."""
        if self.labels and tuple(evidence.labels) != self.labels:
            raise StoreError(f"evidence is over labels {evidence.labels}, the project's are {self.labels}")
        indices = list(range(evidence.n_texts)) if text_indices is None else [int(i) for i in text_indices]
        if len(indices) != evidence.n_texts:
            raise StoreError(f"{len(indices)} text indices for evidence on {evidence.n_texts} texts")
        model_info = model_info or {}
        with self.transaction() as conn:
            known = {m for (m,) in conn.execute("SELECT model FROM evidence_models")}
            position = len(known)
            for model in evidence.models:
                if model not in known:
                    conn.execute(
                        "INSERT INTO evidence_models(model, position, info) VALUES (?, ?, ?)",
                        (model, position, _dumps(dict(model_info.get(model, {})))),
                    )
                    position += 1
                elif model in model_info:
                    conn.execute("UPDATE evidence_models SET info=? WHERE model=?", (_dumps(dict(model_info[model])), model))
            rows = []
            for row, idx in enumerate(indices):
                for j, model in enumerate(evidence.models):
                    answers = evidence.answers[row][j] if evidence.answers is not None else ()
                    rows.append((
                        idx,
                        model,
                        np.asarray(evidence.label_probs[row, j], dtype=_VECTOR_DTYPE).tobytes(),
                        np.asarray(evidence.vote_shares[row, j], dtype=_VECTOR_DTYPE).tobytes(),
                        float(evidence.no_label_share[row, j]),
                        _dumps(list(answers)),
                    ))
            conn.executemany(
                "INSERT OR REPLACE INTO evidence(idx, model, label_probs, vote_shares, no_label_share, answers) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def evidence_models(self) -> list[str]:
        return [m for (m,) in self._query("SELECT model FROM evidence_models ORDER BY position")]

    def evidence_model_info(self) -> dict[str, dict]:
        return {m: json.loads(i) for m, i in self._query("SELECT model, info FROM evidence_models ORDER BY position")}

    def evidence_coverage(self) -> dict[str, int]:
        """How many texts each panel model has evidence for."""
        counts = dict(self._query("SELECT model, COUNT(*) FROM evidence GROUP BY model"))
        return {m: counts.get(m, 0) for m in self.evidence_models()}

    def clear_texts(self) -> None:
        """Forget the dataset rows; refused once evidence, labels or iterations refer to them."""
        if self.evidence_models() or self.n_labeled or self.iterations():
            raise StoreError("the texts are referred to by evidence, labels or iterations: create a new project instead")
        with self.transaction() as conn:
            conn.execute("DELETE FROM texts")

    def evidence_indices(self, model: str) -> np.ndarray:
        """Indices of the texts that ``model`` already has evidence for (to resume a panel run)."""
        return np.array([i for (i,) in self._query("SELECT idx FROM evidence WHERE model=? ORDER BY idx", (model,))], dtype=int)

    def delete_evidence_model(self, model: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM evidence WHERE model=?", (model,))
            conn.execute("DELETE FROM evidence_models WHERE model=?", (model,))

    def covered_indices(self, models: Sequence[str] | None = None) -> np.ndarray:
        """Indices (sorted) of the texts that every one of ``models`` (default: every stored model) has
        evidence for: the texts MoLAM can read (evidence on demand leaves the others unanswered)."""
        models = list(models) if models is not None else self.evidence_models()
        if not models:
            return np.zeros(0, dtype=int)
        placeholders = ",".join("?" * len(models))
        rows = self._query(
            f"SELECT idx FROM evidence WHERE model IN ({placeholders}) GROUP BY idx "
            f"HAVING COUNT(DISTINCT model) = ? ORDER BY idx", (*models, len(models)),
        )
        return np.array([i for (i,) in rows], dtype=int)

    def evidence(self, models: Sequence[str] | None = None, *, with_answers: bool = True,
                 partial: bool = False) -> PanelEvidence | None:
        """The panel evidence over all texts, in text order (``None`` if no model has any).

        Raises ``StoreError`` if a requested model lacks evidence for some texts, unless ``partial``:
        then a text a model has not answered has zeros in that model's rows (``covered_indices`` says
        which texts are complete).
        """
        models = list(models) if models is not None else self.evidence_models()
        if not models:
            return None
        n, k = self.n_texts, len(self.labels)
        coverage = self.evidence_coverage()
        missing = [m for m in models if coverage.get(m, 0) < n]
        if missing and not partial:
            raise StoreError(
                f"evidence is incomplete for {', '.join(missing)} "
                f"({', '.join(f'{coverage.get(m, 0)}/{n}' for m in missing)} texts): run the annotators first"
            )
        z = np.zeros((n, len(models), k))
        c = np.zeros((n, len(models), k))
        none_share = np.zeros((n, len(models)))
        answers: list[list[tuple[str, ...]]] | None = [[() for _ in models] for _ in range(n)] if with_answers else None
        column = {m: j for j, m in enumerate(models)}
        placeholders = ",".join("?" * len(models))
        sql = (
            f"SELECT idx, model, label_probs, vote_shares, no_label_share{', answers' if with_answers else ''} "
            f"FROM evidence WHERE model IN ({placeholders})"
        )
        rows = self._query(sql, models)
        if rows:
            i = np.array([r[0] for r in rows])
            j = np.array([column[r[1]] for r in rows])
            z[i, j] = np.frombuffer(b"".join(r[2] for r in rows), dtype=_VECTOR_DTYPE).reshape(len(rows), k)
            c[i, j] = np.frombuffer(b"".join(r[3] for r in rows), dtype=_VECTOR_DTYPE).reshape(len(rows), k)
            none_share[i, j] = [r[4] for r in rows]
            if answers is not None:
                for r, ii, jj in zip(rows, i, j):
                    answers[ii][jj] = tuple(json.loads(r[5]))
        return PanelEvidence(
            labels=self.labels,
            models=tuple(models),
            label_probs=z,
            vote_shares=c,
            no_label_share=none_share,
            text_ids=tuple(self.text_ids()),
            answers=answers,
        )

    # ------------------------------------------------------------------ labels
    def _check_label(self, label: int) -> int:
        label = int(label)
        if not 0 <= label < len(self.labels):
            raise StoreError(f"label index {label} is outside the label set {self.labels}")
        return label

    def _check_text(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < self.n_texts:
            raise StoreError(f"text index {index} is outside 0..{self.n_texts - 1}")
        return index

    def set_seed_labels(self, labels: Mapping[int, int], *, replace: bool = False) -> None:
        """Record human seed labels {text index: label index} (iteration 0, weight 1): seed responses,
        each replacing an earlier seed of its text. With ``replace`` the previous seed labels are dropped
        first."""
        rows = [(self._check_text(i), self._check_label(y)) for i, y in labels.items()]
        stamp = now()
        with self.transaction() as conn:
            if replace:
                conn.execute("DELETE FROM responses WHERE kind=?", (SOURCE_SEED,))
            else:
                conn.executemany("DELETE FROM responses WHERE kind=? AND idx=?", [(SOURCE_SEED, i) for i, _ in rows])
            conn.executemany(
                "INSERT INTO responses(idx, kind, label, created_at) VALUES (?, ?, ?, ?)",
                [(i, SOURCE_SEED, y, stamp) for i, y in rows],
            )

    def seed_labels(self) -> dict[int, int]:
        """The seed labels of the texts whose current label is their seed (a human review may replace it)."""
        return {i: r.label for i, r in self._current_responses().items() if r.kind == SOURCE_SEED}

    def put_annotations(self, rows: Sequence[AnnotationRow]) -> None:
        """Insert or replace the model's suggestions for some texts (one atomic write). A row whose
        source is a human's (seed / accept / override) is recorded as that human response instead."""
        stamp = now()
        suggestions, human = [], []
        for r in rows:
            self._check_text(r.text_index)
            self._check_label(r.label)
            if r.source in HUMAN_SOURCES:
                human.append(r)
                continue
            suggestions.append((
                int(r.text_index), r.source, int(r.label),
                None if r.probability is None else float(r.probability),
                None if r.proba is None else _dumps([float(p) for p in r.proba]),
                _dumps([int(k) for k in r.negatives]), int(r.iteration),
                None if r.d_anno is None else int(bool(r.d_anno)), float(r.weight), r.created_at or stamp,
            ))
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO suggestions(idx, agent, label, probability, proba, negatives, iteration, "
                "d_anno, weight, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                suggestions,
            )
            for r in human:
                if r.source == SOURCE_SEED:
                    self.set_seed_labels({r.text_index: r.label})
                else:
                    self._add_response(r.text_index, r.source, r.label, self.annotation(r.text_index))

    def _suggestions(self, text_index: int | None = None) -> dict[int, tuple]:
        sql = ("SELECT idx, agent, label, probability, proba, negatives, iteration, d_anno, weight, created_at "
               "FROM suggestions")
        rows = self._query(sql + " WHERE idx=?", (int(text_index),)) if text_index is not None else self._query(sql)
        return {r[0]: r for r in rows}

    def _current_responses(self, text_index: int | None = None) -> dict[int, ResponseRecord]:
        """Each text's latest response that was not withdrawn: its current human label."""
        sql = (f"SELECT {self._RESPONSE_COLUMNS} FROM responses r WHERE withdrawn_at IS NULL AND id = "
               "(SELECT MAX(id) FROM responses WHERE idx = r.idx AND withdrawn_at IS NULL)")
        rows = self._query(sql + " AND idx=?", (int(text_index),)) if text_index is not None else self._query(sql)
        return {r[1]: ResponseRecord(*r) for r in rows}

    def _first_response_times(self, text_index: int | None = None) -> dict[int, str]:
        sql = "SELECT idx, MIN(created_at) FROM responses WHERE withdrawn_at IS NULL"
        if text_index is not None:
            return dict(self._query(sql + " AND idx=? GROUP BY idx", (int(text_index),)))
        return dict(self._query(sql + " GROUP BY idx"))

    def _derived_annotations(self, text_index: int | None = None) -> list[AnnotationRow]:
        """The labeled set L, derived: a text's label is its current human response, else the model's
        suggestion; the suggestion (y+, probability, flag) is shown beside a human label."""
        suggestions = self._suggestions(text_index)
        responses = self._current_responses(text_index)
        first = self._first_response_times(text_index)
        last = None
        rows = []
        for index in sorted(set(suggestions) | set(responses)):
            s, r = suggestions.get(index), responses.get(index)
            if r is None:
                rows.append(AnnotationRow(
                    text_index=index, label=s[2], source=s[1], iteration=s[6], probability=s[3], annotator_label=s[2],
                    negatives=tuple(json.loads(s[5])), proba=None if s[4] is None else tuple(json.loads(s[4])),
                    d_anno=None if s[7] is None else bool(s[7]), weight=s[8], created_at=s[9], updated_at=s[9],
                ))
                continue
            if s is not None:
                iteration = s[6]
            elif r.kind == SOURCE_SEED:
                iteration = 0
            elif r.applied_iteration is not None:
                iteration = r.applied_iteration
            else:  # a human labeled a text outside L: it joins L with the iteration under way
                if last is None:
                    record = self.last_iteration()
                    last = record.iteration if record is not None else 0
                iteration = last
            created = min(s[9], first.get(index, s[9])) if s is not None else first.get(index, r.created_at)
            rows.append(AnnotationRow(
                text_index=index, label=r.label, source=r.kind, iteration=iteration,
                probability=None if s is None else s[3], annotator_label=None if s is None else s[2],
                proba=None if s is None or s[4] is None else tuple(json.loads(s[4])),
                d_anno=None if s is None or s[7] is None else bool(s[7]), created_at=created, updated_at=r.created_at,
            ))
        return rows

    def annotations(self) -> list[AnnotationRow]:
        """Every labeled text's annotation (its current label, derived), by text index."""
        return self._derived_annotations()

    def annotation(self, text_index: int) -> AnnotationRow | None:
        rows = self._derived_annotations(int(text_index))
        return rows[0] if rows else None

    _LABELED_SQL = "SELECT idx FROM suggestions UNION SELECT idx FROM responses WHERE withdrawn_at IS NULL"

    def labeled_indices(self) -> np.ndarray:
        return np.array([i for (i,) in self._query(self._LABELED_SQL + " ORDER BY idx")], dtype=int)

    @property
    def n_labeled(self) -> int:
        return self._query(f"SELECT COUNT(*) FROM ({self._LABELED_SQL})")[0][0]

    # ------------------------------------------------------------------ MoLAM's annotation of every text
    def put_annotation_result(self, result: AnnotationResult) -> None:
        """Store MoLAM's latest fit (replacing the previous one) in one commit."""
        with self.transaction():
            for name in _ANNOTATION_ARRAYS:
                value = getattr(result, name)
                key = _ANNOTATION_ARRAY_PREFIX + name
                if value is None:
                    self.delete(key)
                else:
                    self.put_array(key, np.asarray(value))

    def annotation_result(self) -> AnnotationResult | None:
        """MoLAM's latest fit, or None before the first one."""
        arrays = {name: self.get_array(_ANNOTATION_ARRAY_PREFIX + name) for name in _ANNOTATION_ARRAYS}
        if arrays["labels"] is None:
            return None
        text_member = arrays["text_member_proba"]
        if text_member is not None and len(text_member) != len(arrays["labels"]):
            text_member = None  # older projects stored an empty array for a fit without the text member
        return AnnotationResult(**{**arrays, "text_member_proba": text_member})

    def has_annotation_result(self) -> bool:
        return bool(self._query("SELECT 1 FROM arrays WHERE name=?", (_ANNOTATION_ARRAY_PREFIX + "labels",)))

    # ------------------------------------------------------------------ iterations
    def put_iteration(self, record: IterationRecord) -> None:
        """Insert or replace one iteration's row."""
        if record.status not in STATUSES:
            raise StoreError(f"iteration status must be one of {STATUSES}, got {record.status!r}")
        stamp = now()
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO iterations(iteration, status, queried, lambda, metrics, timings, info, "
                "started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    int(record.iteration), record.status, _dumps([int(i) for i in record.queried]),
                    None if record.lam is None else float(record.lam), _dumps(record.metrics),
                    _dumps(record.timings), _dumps(record.info), record.started_at or stamp, stamp,
                ),
            )

    def update_iteration(
        self,
        iteration: int,
        *,
        status: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        timings: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
        lam: float | None = None,
    ) -> IterationRecord:
        """Change an iteration's status and merge new metrics / timings / info into it."""
        with self.transaction():
            current = self.iteration(iteration)
            if current is None:
                raise StoreError(f"iteration {iteration} does not exist")
            updated = IterationRecord(
                iteration=current.iteration,
                status=status or current.status,
                queried=current.queried,
                lam=current.lam if lam is None else lam,
                metrics={**current.metrics, **(metrics or {})},
                timings={**current.timings, **(timings or {})},
                info={**current.info, **(info or {})},
                started_at=current.started_at,
            )
            self.put_iteration(updated)
        return self.iteration(iteration)  # type: ignore[return-value]

    _ITERATION_COLUMNS = "iteration, status, queried, lambda, metrics, timings, info, started_at, updated_at"

    @staticmethod
    def _iteration(row: tuple) -> IterationRecord:
        return IterationRecord(
            iteration=row[0], status=row[1], queried=tuple(json.loads(row[2])), lam=row[3],
            metrics=json.loads(row[4]), timings=json.loads(row[5]), info=json.loads(row[6]),
            started_at=row[7], updated_at=row[8],
        )

    def iterations(self) -> list[IterationRecord]:
        return [self._iteration(r) for r in self._query(f"SELECT {self._ITERATION_COLUMNS} FROM iterations ORDER BY iteration")]

    def iteration(self, iteration: int) -> IterationRecord | None:
        rows = self._query(f"SELECT {self._ITERATION_COLUMNS} FROM iterations WHERE iteration=?", (int(iteration),))
        return self._iteration(rows[0]) if rows else None

    def last_iteration(self) -> IterationRecord | None:
        rows = self._query(f"SELECT {self._ITERATION_COLUMNS} FROM iterations ORDER BY iteration DESC LIMIT 1")
        return self._iteration(rows[0]) if rows else None

    def clear_loop(self) -> None:
        """Forget the AL run (iterations, the model's suggestions, stored predictions); keep the human
        responses (reviewed texts stay labeled by their human label), pending again."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM iterations")
            conn.execute("DELETE FROM suggestions")
            conn.execute("UPDATE responses SET applied_iteration=NULL")
            conn.execute("DELETE FROM arrays WHERE name LIKE ?", (_LOOP_ARRAY_PREFIX + "%",))
            conn.execute("DELETE FROM blobs WHERE name LIKE ?", (_LOOP_ARRAY_PREFIX + "%",))

    # ------------------------------------------------------------------ the loop's state
    def put_annotator_fit_labels(self, y: np.ndarray) -> None:
        """The human labels (label index per text, -1 for none) the loop's annotator was fitted on."""
        self.put_array(_ANNOTATOR_FIT_LABELS, np.asarray(y, dtype=int))

    def annotator_fit_labels(self) -> np.ndarray | None:
        return self.get_array(_ANNOTATOR_FIT_LABELS)

    def put_training_set(self, iteration: int, training_set: TrainingSet) -> None:
        """L as the training of ``iteration`` used it (one commit)."""
        with self.transaction():
            for part in _TRAINING_SET_PARTS:
                self.put_array(_training_set_name(iteration, part), getattr(training_set, part))

    def training_set(self, iteration: int) -> TrainingSet | None:
        """The training set of ``iteration``, or None if it was not stored (or only in part)."""
        parts = {part: self.get_array(_training_set_name(iteration, part)) for part in _TRAINING_SET_PARTS}
        if any(values is None for values in parts.values()):
            return None
        return TrainingSet(**parts)

    def put_predictions(self, iteration: int, proba: np.ndarray) -> None:
        """The AL model of ``iteration`` on every text, from its class probabilities (n, K): the
        predicted labels are kept, the probabilities replace those of any earlier iteration."""
        proba = np.asarray(proba)
        with self.transaction() as conn:
            self.put_array(_predicted_labels_name(iteration), proba.argmax(axis=1))
            conn.execute("DELETE FROM arrays WHERE name LIKE ?", (_PROBA_PREFIX + "%",))
            self.put_array(_proba_name(iteration), proba)

    def predictions(self, iteration: int) -> Predictions | None:
        labels = self.get_array(_predicted_labels_name(iteration))
        if labels is None:
            return None
        return Predictions(int(iteration), labels, self.get_array(_proba_name(iteration)))

    def latest_predictions(self) -> Predictions | None:
        """The predictions of the latest iteration whose probabilities are stored (None before any)."""
        names = self._query("SELECT name FROM arrays WHERE name LIKE ?", (_PROBA_PREFIX + "%",))
        iterations = [int(name[len(_PROBA_PREFIX):]) for (name,) in names]
        return self.predictions(max(iterations)) if iterations else None

    # ------------------------------------------------------------------ human reviews (accept / override / undo)
    _RESPONSE_COLUMNS = "id, idx, kind, label, previous_label, created_at, applied_iteration"

    def _add_response(self, text_index: int, kind: str, label: int, current: AnnotationRow | None) -> ResponseRecord:
        if current is not None and current.is_human and current.label == label:
            latest = self._current_responses(text_index)[text_index]
            if latest.kind != SOURCE_SEED:  # the human's label already: nothing changes
                return latest
            raise StoreError(f"text {text_index} is a seed labeled {self.labels[label]!r} already")
        stamp = now()
        previous = None if current is None else current.label
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO responses(idx, kind, label, previous_label, created_at) VALUES (?, ?, ?, ?, ?)",
                (text_index, kind, label, previous, stamp),
            )
        return ResponseRecord(cursor.lastrowid, text_index, kind, label, previous, stamp, None)

    def add_override(self, text_index: int, label: int) -> ResponseRecord:
        """A human sets a text's label: logged with its time, and the text's label becomes a human
        label (source ``override``, weight 1, no negatives). The model's suggestion (y+, probability,
        flag) stays for review. An unlabeled text joins L."""
        text_index, label = self._check_text(text_index), self._check_label(label)
        with self.transaction():
            return self._add_response(text_index, SOURCE_OVERRIDE, label, self.annotation(text_index))

    def accept(self, text_index: int) -> ResponseRecord:
        """A human accepts the model's suggestion for a text: it becomes a human label (source
        ``accept``), used from the next training on."""
        text_index = self._check_text(text_index)
        with self.transaction():
            current = self.annotation(text_index)
            if current is None or current.annotator_label is None:
                raise StoreError(f"text {text_index} has no model suggestion to accept: label it by hand instead")
            if current.source == SOURCE_SEED:
                raise StoreError(f"text {text_index} is a seed label: it is a human's label already")
            if current.source == SOURCE_ACCEPT:
                return self._current_responses(text_index)[text_index]
            return self._add_response(text_index, SOURCE_ACCEPT, current.annotator_label, current)

    def undo_response(self, text_index: int) -> ResponseRecord | None:
        """Withdraw the text's latest accept or override (None if it has none; seeds are not undone
        here): it goes back to its previous human response, else to the model's suggestion, else
        (labeled only by a human review) it leaves L. Returns the withdrawn response."""
        text_index = self._check_text(text_index)
        with self.transaction() as conn:
            latest = self._current_responses(text_index).get(text_index)
            if latest is None or latest.kind == SOURCE_SEED:
                return None
            conn.execute("UPDATE responses SET withdrawn_at=? WHERE id=?", (now(), latest.id))
        return latest

    def responses(self, *, pending_only: bool = False) -> list[ResponseRecord]:
        """The human reviews (accepts and overrides, not withdrawn), in order; ``pending_only``: those no
        training used yet."""
        sql = (f"SELECT {self._RESPONSE_COLUMNS} FROM responses WHERE kind IN (?, ?) AND withdrawn_at IS NULL"
               + (" AND applied_iteration IS NULL" if pending_only else ""))
        return [ResponseRecord(*r) for r in self._query(sql + " ORDER BY id", RESPONSE_KINDS)]

    def human_labels(self) -> dict[int, int]:
        """The current human label of every text that has one: seeds, accepted and overridden labels."""
        return {i: r.label for i, r in sorted(self._current_responses().items())}

    def overrides(self, *, pending_only: bool = False) -> list[OverrideRecord]:
        """The overrides among the responses (accepts left out), in order."""
        return [OverrideRecord(r.id, r.text_index, r.previous_label, r.label, r.created_at, r.applied_iteration)
                for r in self.responses(pending_only=pending_only) if r.kind == SOURCE_OVERRIDE]

    def mark_responses_applied(self, iteration: int) -> int:
        """Mark every pending response as used by training ``iteration``; returns how many."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE responses SET applied_iteration=? WHERE applied_iteration IS NULL AND kind IN (?, ?) "
                "AND withdrawn_at IS NULL",
                (int(iteration), *RESPONSE_KINDS),
            )
            return cursor.rowcount

    mark_overrides_applied = mark_responses_applied  # the older name

    # ------------------------------------------------------------------ arrays and artifacts
    def put_array(self, name: str, array: np.ndarray) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO arrays(name, data, updated_at) VALUES (?, ?, ?)",
                (name, array_to_bytes(array), now()),
            )

    def get_array(self, name: str) -> np.ndarray | None:
        rows = self._query("SELECT data FROM arrays WHERE name=?", (name,))
        return array_from_bytes(rows[0][0]) if rows else None

    def put_blob(self, name: str, data: bytes, info: Mapping[str, Any] | None = None) -> None:
        """Store opaque bytes (a model in its own format: XGBoost JSON/UBJ, safetensors, ...)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO blobs(name, data, info, updated_at) VALUES (?, ?, ?, ?)",
                (name, bytes(data), _dumps(dict(info or {})), now()),
            )

    def get_blob(self, name: str) -> tuple[bytes, dict] | None:
        rows = self._query("SELECT data, info FROM blobs WHERE name=?", (name,))
        return (bytes(rows[0][0]), json.loads(rows[0][1])) if rows else None

    def delete(self, name: str) -> None:
        """Delete a named array or blob."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM arrays WHERE name=?", (name,))
            conn.execute("DELETE FROM blobs WHERE name=?", (name,))
