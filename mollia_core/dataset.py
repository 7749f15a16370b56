"""Loading and validating the user's data: a table of texts with optional ids and gold labels.

``read_table`` turns a path, raw bytes, an uploaded file or a DataFrame into a DataFrame;
``load_dataset`` checks the chosen columns and builds a :class:`Dataset`. Every problem
with the input raises :class:`DatasetError`, whose message says what is wrong, where,
and how to fix it.

Rows are numbered the way a user counts them in a spreadsheet *below the header*:
row 1 is the first data row (it sits on line 2 of a CSV file, after the header line).

Formats: CSV (separator ``,``, ``;``, tab or ``|``, taken from the header line), TSV,
JSON Lines, a JSON array of objects, and Parquet — the formats MoLLIA exports, so an
exported file reads back. Nothing is ever unpickled: pickle files are refused.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from numbers import Number
from pathlib import Path
from typing import Any, BinaryIO, Sequence, Union

import numpy as np
import pandas as pd

__all__ = ["Dataset", "DatasetError", "load_dataset", "read_table"]

TableSource = Union[str, Path, bytes, bytearray, BinaryIO, pd.DataFrame]

_MAX_LISTED = 10  # rows or values named in one message before "and N more"
_SEPARATORS = (",", ";", "\t", "|")
_SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


class DatasetError(ValueError):
    """The user's data cannot be used as it is; the message says where and how to fix it.

    ``row`` is the first offending data row (1-based, below the header) or None,
    ``rows`` all offending rows, ``column`` the offending column or None.
    """

    def __init__(
        self, message: str, *, row: int | None = None, column: str | None = None, rows: Sequence[int] = ()
    ) -> None:
        super().__init__(message)
        self.rows = tuple(rows) if rows else ((row,) if row is not None else ())
        self.row = row if row is not None else (self.rows[0] if self.rows else None)
        self.column = column


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated table of texts.

    texts, ids:  one per row, in the file's order (ids are generated row numbers "1", "2", ...
                 when no id column was chosen).
    labels:      the label set, in the order every label index refers to.
    gold:        (n,) int index into ``labels`` of each row's gold label, -1 where unlabeled.
    frame:       the user's original columns, row order kept (RangeIndex).
    """

    texts: tuple[str, ...]
    ids: tuple[str, ...]
    labels: tuple[str, ...]
    gold: np.ndarray
    frame: pd.DataFrame
    text_column: str
    id_column: str | None = None
    label_column: str | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def labeled_indices(self) -> np.ndarray:
        """Positions of the rows that carry a gold label."""
        return np.flatnonzero(self.gold >= 0)

    def label_index(self, name: str) -> int:
        """Index of label ``name`` in :attr:`labels`."""
        try:
            return self.labels.index(name)
        except ValueError:
            raise DatasetError(f"{name!r} is not in the label set {list(self.labels)}") from None


# ---------------------------------------------------------------------------------------------
# Reading


def read_table(source: TableSource, name: str | None = None) -> pd.DataFrame:
    """Read a table from a path, bytes, a file-like object (e.g. Streamlit's UploadedFile)
    or a DataFrame (copied). ``name`` (a file name) helps pick the format of raw bytes.

    CSV cells are read as text, exactly as written (``007`` stays ``007``); an empty
    CSV cell reads as an empty string.
    """
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
    else:
        data, name = _read_bytes(source, name)
        frame = _parse_bytes(data, name)
    if frame.shape[1] == 0:
        raise DatasetError("the table has no columns: give a file with a header row naming its columns")
    if len(frame) == 0:
        raise DatasetError(
            f"the table has no rows: it has the columns {_names(frame.columns)} but no data under them. "
            "Add at least one row of data."
        )
    return frame.reset_index(drop=True)


def _read_bytes(source: Any, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), name or ""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DatasetError(f"file {str(path)!r} not found: check the path (or upload the file)")
        return path.read_bytes(), name or path.name
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)
        data = source.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
        return data, name or str(getattr(source, "name", "") or "")
    raise DatasetError(
        f"cannot read a table from a {type(source).__name__}: give a file path, the file's bytes, "
        "an uploaded file or a pandas DataFrame"
    )


def _parse_bytes(data: bytes, name: str) -> pd.DataFrame:
    suffix = Path(name).suffix.lower()
    if suffix in (".pkl", ".pickle", ".joblib", ".npy", ".npz"):
        raise DatasetError(
            f"{name!r} is a pickle-type file, which MoLLIA never opens (it can run code). "
            "Save the table as CSV (UTF-8), JSON Lines or Parquet."
        )
    if suffix in (".xlsx", ".xls", ".ods") or data[:2] == b"PK":
        raise DatasetError(
            f"{name or 'the file'!r} looks like a spreadsheet workbook: save it as 'CSV UTF-8' "
            "(Excel: File > Save As > CSV UTF-8) and load the CSV"
        )
    if suffix in (".parquet", ".pq") or data[:4] == b"PAR1":
        try:
            return pd.read_parquet(io.BytesIO(data))
        except Exception as error:  # pyarrow raises several types for a damaged file
            raise DatasetError(f"cannot read {name or 'the file'!r} as Parquet ({error}): re-export it") from None
    text = _decode(data)
    if not text.strip():
        raise DatasetError("the file is empty: it holds no header and no rows")
    first = text.lstrip()[0]
    if suffix in (".jsonl", ".ndjson") or (suffix != ".json" and suffix not in (".csv", ".tsv") and first == "{"):
        return _parse_json_lines(text)
    if suffix == ".json" or (suffix not in (".csv", ".tsv") and first == "["):
        return _parse_json_array(text)
    return _parse_csv(text, sep="\t" if suffix == ".tsv" else None)


def _decode(data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DatasetError(
            "the file is UTF-16 encoded: re-save it as UTF-8 (Excel: Save As > 'CSV UTF-8'; "
            "a text editor: Save with encoding UTF-8)"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        bad = data[error.start : error.start + 1].hex()
        raise DatasetError(
            f"the file is not UTF-8: byte 0x{bad} at byte offset {error.start} (line {line}, character "
            f"{column}) is not valid UTF-8. Re-save the file with UTF-8 encoding (Excel: Save As > "
            "'CSV UTF-8'; LibreOffice: Save As, 'Edit filter settings', character set 'Unicode (UTF-8)')",
            row=line - 1 if line > 1 else None,
        ) from None


def _parse_csv(text: str, sep: str | None) -> pd.DataFrame:
    if sep is None:
        header = text.lstrip("\r\n").splitlines()[0]
        counts = {s: header.count(s) for s in _SEPARATORS}
        sep = max(counts, key=counts.get) if max(counts.values()) > 0 else ","
    try:
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise DatasetError("the file is empty: it holds no header and no rows") from None
    except pd.errors.ParserError as error:
        message = str(error)
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
        if found:
            expected, line, saw = map(int, found.groups())
            raise DatasetError(
                f"cannot read the CSV: line {line} (row {line - 1}) has {saw} cells but the header has "
                f"{expected} ({_SEPARATOR_NAMES[sep]}-separated). A cell probably contains an unquoted "
                f"{_SEPARATOR_NAMES[sep]}: put double quotes around such cells (\"like, this\"), or re-export "
                "the file as CSV from your spreadsheet",
                row=line - 1,
            ) from None
        raise DatasetError(
            f"cannot read the CSV ({message.strip()}): check that quotes are closed and every line has "
            "as many cells as the header; re-exporting from a spreadsheet as 'CSV UTF-8' usually fixes it"
        ) from None


def _parse_json_lines(text: str) -> pd.DataFrame:
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(
                f"cannot read the JSON Lines file: line {line_number} is not valid JSON ({error.msg} at "
                f"character {error.colno}). Each line must be one JSON object such as "
                '{"text": "...", "label": "..."}',
                row=len(records) + 1,
            ) from None
        if not isinstance(record, dict):
            raise DatasetError(
                f"line {line_number} of the JSON Lines file is a {type(record).__name__}, not an object: "
                'write one object per line, such as {"text": "...", "label": "..."}',
                row=len(records) + 1,
            )
        records.append(record)
    return pd.DataFrame.from_records(records)


def _parse_json_array(text: str) -> pd.DataFrame:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"cannot read the JSON file: {error.msg} at line {error.lineno}, character {error.colno}. "
            "Give a JSON array of objects, or JSON Lines (one object per line)"
        ) from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DatasetError(
            'a JSON file must hold an array of objects such as [{"text": "...", "label": "..."}]'
        )
    return pd.DataFrame.from_records(records)


# ---------------------------------------------------------------------------------------------
# Validation


def load_dataset(
    source: TableSource,
    text_column: str,
    id_column: str | None = None,
    label_column: str | None = None,
    labels: Sequence[str] | None = None,
    *,
    name: str | None = None,
) -> Dataset:
    """Read ``source`` (see :func:`read_table`) and validate the chosen columns.

    labels: the label set; if None, the sorted distinct values of the label column
            (empty when there is no label column). Empty label cells mean "unlabeled".
    Ids: taken from ``id_column`` (as text, must be unique and non-empty), or row numbers.
    """
    frame = read_table(source, name=name)
    for column in (text_column, id_column, label_column):
        if column is not None:
            _require_column(frame, column)
    texts = _validate_texts(frame, text_column)
    ids = _validate_ids(frame, id_column) if id_column is not None else tuple(str(i + 1) for i in range(len(frame)))
    label_cells = (
        [_cell_text(v) for v in frame[label_column]] if label_column is not None else [""] * len(frame)
    )
    label_set = _validate_label_set(labels) if labels is not None else tuple(sorted({c for c in label_cells if c}))
    gold = _gold_indices(label_cells, label_set, label_column)
    return Dataset(
        texts=texts,
        ids=ids,
        labels=label_set,
        gold=gold,
        frame=frame,
        text_column=text_column,
        id_column=id_column,
        label_column=label_column,
    )


def _require_column(frame: pd.DataFrame, column: str) -> None:
    if column in frame.columns:
        return
    hint = ""
    close = [c for c in frame.columns if str(c).strip().casefold() == str(column).strip().casefold()]
    if close:
        hint = f" Did you mean {str(close[0])!r}? Column names are case- and space-sensitive."
    raise DatasetError(
        f"column {column!r} not found. The table has the columns {_names(frame.columns)}: pick one of "
        f"them.{hint}",
        column=column,
    )


def _validate_texts(frame: pd.DataFrame, column: str) -> tuple[str, ...]:
    values = list(frame[column])
    non_text = [i for i, v in enumerate(values) if not _is_missing(v) and not isinstance(v, str)]
    if non_text:
        if len(non_text) == len(values):
            raise DatasetError(
                f"column {column!r} holds no text (its cells are {type(values[0]).__name__} values such as "
                f"{values[0]!r}): choose the column that holds the texts ({_names(frame.columns)})",
                column=column,
                rows=[i + 1 for i in non_text],
            )
        raise DatasetError(
            f"column {column!r} has cells that are not text in {_rows(non_text)} (e.g. {values[non_text[0]]!r} "
            f"in row {non_text[0] + 1}): make those cells text or remove those rows",
            column=column,
            rows=[i + 1 for i in non_text],
        )
    empty = [i for i, v in enumerate(values) if _is_missing(v) or not v.strip()]
    if empty:
        raise DatasetError(
            f"column {column!r} has empty texts in {_rows(empty)}: fill them in or delete those rows",
            column=column,
            rows=[i + 1 for i in empty],
        )
    return tuple(values)


def _validate_ids(frame: pd.DataFrame, column: str) -> tuple[str, ...]:
    ids = [_cell_text(v) for v in frame[column]]
    empty = [i for i, v in enumerate(ids) if not v]
    if empty:
        raise DatasetError(
            f"id column {column!r} is empty in {_rows(empty)}: give every row an id, or choose no id "
            "column to number the rows",
            column=column,
            rows=[i + 1 for i in empty],
        )
    where: dict[str, list[int]] = {}
    for i, value in enumerate(ids):
        where.setdefault(value, []).append(i)
    duplicates = {value: rows for value, rows in where.items() if len(rows) > 1}
    if duplicates:
        listed = "; ".join(
            f"{value!r} in rows {', '.join(str(r + 1) for r in rows)}"
            for value, rows in list(duplicates.items())[:_MAX_LISTED]
        )
        more = f"; and {len(duplicates) - _MAX_LISTED} more" if len(duplicates) > _MAX_LISTED else ""
        rows = sorted(r + 1 for rows_ in duplicates.values() for r in rows_)
        raise DatasetError(
            f"id column {column!r} has duplicate ids: {listed}{more} (rows counted from 1 below the header). "
            "Make the ids unique, or choose no "
            "id column to number the rows",
            column=column,
            rows=rows,
        )
    return tuple(ids)


def _validate_label_set(labels: Sequence[str]) -> tuple[str, ...]:
    if isinstance(labels, str):
        raise DatasetError(f"the label set must be a list of labels, not the string {labels!r}")
    label_set = tuple(_cell_text(label) for label in labels)
    if not label_set:
        raise DatasetError("the label set is empty: give at least two labels (e.g. positive, negative)")
    if any(not label for label in label_set):
        raise DatasetError(f"the label set {list(labels)!r} contains an empty label: remove it")
    repeated = sorted({label for label in label_set if label_set.count(label) > 1})
    if repeated:
        raise DatasetError(f"the label set names {repeated} more than once: list each label once")
    return label_set


def _gold_indices(cells: list[str], label_set: tuple[str, ...], column: str | None) -> np.ndarray:
    position = {label: k for k, label in enumerate(label_set)}
    gold = np.array([position.get(c, -2) if c else -1 for c in cells], dtype=int)
    outside = np.flatnonzero(gold == -2).tolist()
    if outside:
        values = sorted({cells[i] for i in outside})
        shown = ", ".join(repr(v) for v in values[:_MAX_LISTED]) + (" ..." if len(values) > _MAX_LISTED else "")
        hints = {v: [l for l in label_set if l.casefold() == v.casefold()] for v in values[:_MAX_LISTED]}
        hint = "".join(f" {v!r} differs from {h[0]!r} only in case." for v, h in hints.items() if h)
        raise DatasetError(
            f"label column {column!r} has labels outside the label set {list(label_set)}: {shown} in "
            f"{_rows(outside)}.{hint} Add them to the label set, correct those cells, or empty them to "
            "leave the rows unlabeled",
            column=column,
            rows=[i + 1 for i in outside],
        )
    return gold


# ---------------------------------------------------------------------------------------------
# Helpers


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _cell_text(value: Any) -> str:
    """A cell as text for ids and labels: stripped; missing -> ""; 3.0 -> "3"."""
    if _is_missing(value):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, Number) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _rows(indices: Sequence[int]) -> str:
    """'row 3 (...)' / 'rows 3, 7 and 9 (...)' / 'rows 1, 2, ... and 40 more (...)' from 0-based positions."""
    numbers = [str(i + 1) for i in indices]
    if len(numbers) == 1:
        listed = f"row {numbers[0]}"
    elif len(numbers) <= _MAX_LISTED:
        listed = f"rows {', '.join(numbers[:-1])} and {numbers[-1]}"
    else:
        listed = f"rows {', '.join(numbers[:_MAX_LISTED])} and {len(numbers) - _MAX_LISTED} more"
    return f"{listed} (counting from 1 below the header)"


def _names(columns: Sequence[Any]) -> str:
    return ", ".join(repr(str(c)) for c in columns)
