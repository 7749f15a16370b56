"""The project's data: the user's table, its label set, the pool/validation splits and the seed labels."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import pandas as pd

from ..store import ProjectStore
from .errors import ProjectError

DEFAULT_SEED_COUNT = 50
#: Share of the gold-labeled rows held out as the validation split the learning curve is measured on
#: (only when at least ``MIN_GOLD_FOR_VALIDATION`` rows carry a label, so seeds remain plentiful).
VALIDATION_FRACTION = 0.2
MIN_GOLD_FOR_VALIDATION = 100
MAX_VALIDATION = 1000
#: Setting renewed whenever the texts are replaced: with the number of texts, the key of the
#: in-memory copy of the table's columns (texts, ids, gold, splits), so that a page rerun or a seed
#: label does not reread every row (200,000 rows take about a second to read).
TEXTS_VERSION = "texts_version"


class DatasetService:
    """The table, splits and seeds of one project's store."""

    def __init__(self, store: ProjectStore, lock: threading.RLock) -> None:
        self.store = store
        self._lock = lock
        self._columns_lock = threading.RLock()
        self._columns_key: tuple | None = None
        self._columns: dict[str, Any] = {}
        self._readers: dict[Hashable, Callable[[], Any]] = {
            "texts": store.texts, "text_ids": store.text_ids, "gold": store.gold, "splits": store.splits,
            "index": lambda: {text_id: i for i, text_id in enumerate(self._column("text_ids"))},
            "pool": lambda: np.flatnonzero(self._column("splits") == "pool"),
            "split_counts": lambda: dict(zip(*np.unique(self._column("splits").astype(str), return_counts=True))),
        }

    def _column(self, name: Hashable) -> Any:
        """One column of the table (or the id -> index map), read once per state of the texts; an
        import by another process is seen too. Callers must not change what it returns."""
        key = (self.store.n_texts, self.store.get_setting(TEXTS_VERSION))
        with self._columns_lock:
            if key != self._columns_key:
                self._columns_key, self._columns = key, {}
            if name not in self._columns:
                self._columns[name] = self._readers[name]()
            return self._columns[name]

    # ------------------------------------------------------------------ the table
    def set_dataset(
        self,
        frame: pd.DataFrame,
        text_column: str,
        id_column: str | None = None,
        label_column: str | None = None,
        labels: Sequence[str] | None = None,
        source_name: str = "",
        random_state: int = 0,
        hold_out_validation: bool = True,
        splits: Sequence[str] | None = None,
    ):
        """Validate ``frame`` with the chosen columns and label set, and make it this project's data.

        Raises ``mollia_core.dataset.DatasetError`` (row, column, fix) for bad input. Where at
        least ``MIN_GOLD_FOR_VALIDATION`` rows carry a label, ``VALIDATION_FRACTION`` of them
        (drawn with ``random_state``) become the validation split: never queried, never seeds,
        only measured on (``hold_out_validation=False``: none, every labeled row may be a seed).
        ``splits`` (headless runs): each row's split (``pool``, ``validation`` or ``test``, measured on
        like validation) instead of the drawn validation split.
        Replacing the data once evidence or labels exist is refused.
        """
        from ..dataset import load_dataset

        dataset = load_dataset(frame, text_column, id_column=id_column, label_column=label_column, labels=labels)
        if self.store.n_texts and not self.can_replace_dataset():
            raise ProjectError(
                "this project already has evidence or labels for its data: create a new project for another table"
            )
        gold = np.asarray(dataset.gold, dtype=int)
        if splits is not None:
            splits = np.asarray(splits, dtype=object)
            if len(splits) != len(gold) or not set(splits) <= {"pool", "validation", "test"}:
                raise ProjectError(f"give every one of the {len(gold)} rows a split: pool, validation or test")
            hold_out_validation = False
        else:
            splits = np.array(["pool"] * len(gold), dtype=object)
        labeled = np.flatnonzero(gold >= 0)
        if hold_out_validation and labeled.size >= MIN_GOLD_FOR_VALIDATION:
            rng = np.random.default_rng(random_state)
            n_validation = min(int(round(VALIDATION_FRACTION * labeled.size)), MAX_VALIDATION)
            splits[rng.choice(labeled, size=n_validation, replace=False)] = "validation"
        original = json.loads(frame.to_json(orient="records", date_format="iso", force_ascii=False))
        with self._lock, self.store.transaction():
            self.store.clear_texts()
            self.store.set_setting("labels", [str(label) for label in dataset.labels])
            self.store.add_texts(
                [str(t) for t in dataset.texts],
                text_ids=[str(i) for i in dataset.ids],
                gold=gold,
                splits=list(splits),
                columns=original,
            )
            self.store.update_settings(
                {
                    TEXTS_VERSION: uuid.uuid4().hex,
                    "dataset": {
                        "text_column": text_column,
                        "id_column": id_column,
                        "label_column": label_column,
                        "source_name": source_name,
                        "columns": [str(c) for c in frame.columns],
                    }
                }
            )
        return dataset

    def can_replace_dataset(self) -> bool:
        """Whether the data may still be replaced: nothing (evidence, labels, iterations) refers to it."""
        return not (self.store.evidence_models() or self.store.n_labeled or self.store.iterations())

    def clear_dataset(self) -> None:
        """Forget the table (to import another one); refused once evidence or labels refer to it."""
        if not self.can_replace_dataset():
            raise ProjectError(
                "this project already has evidence or labels for its data: create a new project for another table"
            )
        with self.store.transaction():
            self.store.clear_texts()
            self.store.set_setting(TEXTS_VERSION, uuid.uuid4().hex)

    def has_dataset(self) -> bool:
        return self.store.n_texts > 0

    @property
    def config(self) -> dict:
        """The column choices of the table (text, id and label column, source name, all columns)."""
        config = self.store.get_setting("dataset")
        if config is None or not self.has_dataset():
            raise ProjectError("this project has no data yet: upload a CSV or open an example on the Data page")
        return config

    @property
    def labels(self) -> tuple[str, ...]:
        return self.store.labels

    @property
    def text_ids(self) -> list[str]:
        return list(self._column("text_ids"))

    @property
    def texts(self) -> list[str]:
        return list(self._column("texts"))

    def index_of(self, text_id: str) -> int:
        index = self._column("index")
        if text_id not in index:
            raise ProjectError(f"no text with id {text_id!r} in this project")
        return index[text_id]

    def text_of(self, text_id: str) -> str:
        """The text with id ``text_id``."""
        return self._column("texts")[self.index_of(text_id)]

    def label_index(self, label: str) -> int:
        if label not in self.labels:
            raise ProjectError(f"{label!r} is not in the label set ({', '.join(self.labels)})")
        return self.labels.index(label)

    def gold(self) -> np.ndarray:
        """Gold label index per text from the label column, -1 where there is none."""
        return self._column("gold").copy()

    def splits(self) -> np.ndarray:
        return self._column("splits").copy()

    def original_frame(self, rows: int | None = None) -> pd.DataFrame:
        """The user's table as uploaded (column order kept); only its first ``rows`` rows if given."""
        return pd.DataFrame.from_records(self.store.original_columns(limit=rows), columns=self.config["columns"])

    # ------------------------------------------------------------------ seeds
    def seeds(self) -> dict[str, str]:
        """Seed labels (human labels): text id -> label."""
        ids, labels = self._column("text_ids"), self.labels
        return {ids[i]: labels[y] for i, y in self.store.seed_labels().items()}

    def seed_vector(self) -> np.ndarray:
        """y for the annotation model: the seed label index per text, -1 for the others."""
        y = np.full(self.store.n_texts, -1, dtype=int)
        for i, label in self.store.seed_labels().items():
            y[i] = label
        return y

    def require_seeds(self) -> np.ndarray:
        """``seed_vector()``, refused while there is no seed label."""
        y = self.seed_vector()
        if (y >= 0).sum() == 0:
            raise ProjectError(
                "no seed labels yet: take them from the label column or label about 50 texts on the Data page"
            )
        return y

    def _refuse_after_iterations(self, what: str) -> None:
        if self.store.iterations():
            raise ProjectError(f"iterations have started: {what} on the Review page (override) instead")

    def take_seeds_from_column(self, n: int | None = DEFAULT_SEED_COUNT, random_state: int = 0) -> int:
        """Make ``n`` randomly drawn pool rows that have a label in the label column the seeds (all if None).

        Replaces the previous seeds. Validation rows are never seeds. Returns how many were taken.
        """
        config = self.config
        self._refuse_after_iterations("change labels")
        if not config["label_column"]:
            raise ProjectError("no label column was chosen: pick one on the Data page, or label texts by hand")
        gold = self.gold()
        candidates = np.flatnonzero((gold >= 0) & (self.splits() == "pool"))
        if candidates.size == 0:
            raise ProjectError(
                f"column {config['label_column']!r} has no labels: fill some in, or label texts by hand below"
            )
        rng = np.random.default_rng(random_state)
        chosen = candidates if n is None or n >= candidates.size else rng.choice(candidates, size=n, replace=False)
        self.store.set_seed_labels({int(i): int(gold[i]) for i in sorted(chosen)}, replace=True)
        return int(len(chosen))

    def label_seed(self, text_id: str, label: str) -> None:
        """Store a seed label given by the user in the app."""
        self._refuse_after_iterations("change labels")
        self.store.set_seed_labels({self.index_of(text_id): self.label_index(label)})

    def remove_seed(self, text_id: str) -> None:
        self._refuse_after_iterations("change labels")
        index = self.index_of(text_id)
        remaining = {i: y for i, y in self.store.seed_labels().items() if i != index}
        self.store.set_seed_labels(remaining, replace=True)

    def seed_candidates(self, n: int = DEFAULT_SEED_COUNT, random_state: int = 0) -> list[str]:
        """``n`` pool text ids in a random order fixed by ``random_state``, for labeling seeds by hand."""
        key = ("candidates", n, random_state)
        if key not in self._readers:
            self._readers[key] = lambda: np.random.default_rng(random_state).permutation(self._column("pool"))[:n]
        ids = self._column("text_ids")
        return [ids[i] for i in self._column(key)]

    def summary(self) -> dict[str, Any]:
        """Counts the sidebar and pages show."""
        if not self.has_dataset():
            return {"texts": 0}
        split_counts = self._column("split_counts")
        return {
            "texts": self.store.n_texts,
            "pool": int(split_counts.get("pool", 0)),
            "validation": int(split_counts.get("validation", 0)),
            "labels": len(self.labels),
            "seeds": len(self.store.seed_labels()),
            "labeled": self.store.n_labeled,
            "evidence_models": len(self.store.evidence_models()),
            "iterations": len(self.store.iterations()),
            "overrides": len(self.store.overrides()),
            # Texts whose current label a reviewer gave (accepted or overridden), each counted once.
            "reviewed": len(self.store.human_labels()) - len(self.store.seed_labels()),
        }
