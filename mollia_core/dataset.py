"""Loading and validating the user's data: a table of texts with optional ids and gold labels.

``open_table`` turns a path, raw bytes, an uploaded file or a DataFrame into a :class:`Table`
(the DataFrame plus warnings for the preview; ``read_table`` gives the DataFrame alone);
``load_dataset`` checks the chosen columns and builds a :class:`Dataset`. Every problem
with the input raises :class:`DatasetError`, whose message says what is wrong, where,
and how to fix it.

Rows are numbered the way a user counts them in a spreadsheet *below the header*:
row 1 is the first data row (it sits on line 2 of a CSV file, after the header line).

Formats: CSV (separator ``,``, ``;``, tab or ``|``, taken from the header line), TSV,
JSON Lines, a JSON array of objects, and Parquet — the formats MoLLIA exports, so an
exported file reads back. A file is read as what it holds (JSON Lines named ``.csv`` is
read as JSON Lines, with a warning) or refused: a CSV row with more or fewer fields than
the header, a header naming a column twice, and NUL characters are errors, never guessed
around. Nothing is ever unpickled: pickle files are refused.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, replace
from numbers import Number
from pathlib import Path
from typing import Any, BinaryIO, Sequence, Union

import numpy as np
import pandas as pd

__all__ = ["Dataset", "DatasetError", "Table", "load_dataset", "open_table", "read_table"]

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


@dataclass(frozen=True)
class Table:
    """A table as read: the frame, the format it was read as, and warnings to show with its preview.

    format:   "CSV" (with its separator), "JSON Lines", "JSON", "Parquet" or "DataFrame".
    warnings: things that were read but look wrong (a header line that looks like data, JSON
              content in a .csv file), each a sentence saying what to check.
    """

    frame: pd.DataFrame
    format: str
    warnings: tuple[str, ...] = ()


def read_table(source: TableSource, name: str | None = None) -> pd.DataFrame:
    """The frame of :func:`open_table` (its warnings dropped)."""
    return open_table(source, name).frame


def open_table(source: TableSource, name: str | None = None) -> Table:
    """Read a table from a path, bytes, a file-like object (e.g. Streamlit's UploadedFile)
    or a DataFrame (copied). ``name`` (a file name) helps pick the format of raw bytes;
    JSON and JSON Lines content is read as such whatever the name says.

    CSV cells are read as text, exactly as written (``007`` stays ``007``); an empty
    CSV cell reads as an empty string. Every CSV row must have as many fields as the
    header, and no cell may hold a NUL character.
    """
    if isinstance(source, pd.DataFrame):
        table = Table(source.copy(), "DataFrame")
    else:
        data, name = _read_bytes(source, name)
        table = _parse_bytes(data, name)
    frame = table.frame
    if frame.shape[1] == 0:
        raise DatasetError("the table has no columns: give a file with a header row naming its columns")
    if len(frame) == 0:
        raise DatasetError(
            f"the table has no rows: it has the columns {_names(frame.columns)} but no data under them. "
            "Add at least one row of data."
        )
    _refuse_nul_characters(frame)
    return replace(table, frame=frame.reset_index(drop=True))


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


def _parse_bytes(data: bytes, name: str) -> Table:
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
            return Table(pd.read_parquet(io.BytesIO(data)), "Parquet")
        except Exception as error:  # pyarrow raises several types for a damaged file
            raise DatasetError(f"cannot read {name or 'the file'!r} as Parquet ({error}): re-export it") from None
    text = _decode(data)
    if not text.strip():
        raise DatasetError("the file is empty: it holds no header and no rows")
    kind = "JSON Lines" if suffix in (".jsonl", ".ndjson") else _json_kind(text)
    if suffix == ".json" and kind is None:
        kind = "JSON"  # its syntax error is reported as JSON's
    if kind is None:
        return _parse_csv(text, sep="\t" if suffix == ".tsv" else None)
    frame = _parse_json_lines(text) if kind == "JSON Lines" else _parse_json_array(text)
    misnamed = suffix not in (".json", ".jsonl", ".ndjson")
    warning = (f"{name or 'the file'!r} holds {kind}, not CSV: it was read as {kind}.",) if misnamed else ()
    return Table(frame, kind, warning)


def _json_kind(text: str) -> str | None:
    """"JSON" or "JSON Lines" where the text is one of them, None otherwise (CSV)."""
    text = text.strip()
    if text[0] not in "[{":
        return None
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, list):
        return "JSON"
    try:
        first_line = json.loads(text.splitlines()[0])
    except json.JSONDecodeError:
        return None
    return "JSON Lines" if isinstance(first_line, dict) else None


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


def _parse_csv(text: str, sep: str | None) -> Table:
    if sep is None:
        header_line = text.lstrip("\r\n").splitlines()[0]
        counts = {s: header_line.count(s) for s in _SEPARATORS}
        sep = max(counts, key=counts.get) if max(counts.values()) > 0 else ","
    separator = _SEPARATOR_NAMES[sep]
    records, first_lines = _csv_records(text, sep)
    header, rows = records[0], records[1:]
    _refuse_duplicate_names(header)
    wrong = [(number, len(row)) for number, row in enumerate(rows, start=1) if len(row) != len(header)]
    if wrong:
        raise _field_count_error(wrong, len(header), sep, first_lines)
    names = [name or f"Unnamed: {position}" for position, name in enumerate(header)]  # pandas' name for ""
    frame = pd.DataFrame(rows, columns=names, dtype=str)
    warning = _header_warning(header, rows)
    return Table(frame, f"CSV ({separator}-separated)", (warning,) if warning else ())


def _field_count_error(wrong: list[tuple[int, int]], expected: int, sep: str, first_lines: list[int]) -> DatasetError:
    """The error naming the rows (1-based, with their field counts) whose field count is not the header's."""
    separator = _SEPARATOR_NAMES[sep]
    by_count: dict[int, list[int]] = {}
    for number, count in wrong:
        by_count.setdefault(count, []).append(number)
    found = " and ".join(
        f"{_row_list(numbers)} {'has' if len(numbers) == 1 else 'have'} {count} field{'s' * (count != 1)}"
        for count, numbers in by_count.items()
    )
    fixes = []
    if any(count > expected for count in by_count):
        fixes.append(f"quote cells that contain a {separator}: put double quotes around them (\"like{sep} this\")")
    if any(count < expected for count in by_count):
        fixes.append(f"give every row {expected} fields (an empty cell is still written, as two {separator}s in a row)")
    first = wrong[0][0]
    return DatasetError(
        f"cannot read the CSV: {found} but the header has {expected} ({separator}-separated; rows counted from 1 "
        f"below the header, row {first} is on line {first_lines[first]} of the file). To fix it, "
        f"{'; '.join(fixes)}; or re-export the file as CSV from your spreadsheet",
        rows=[number for number, _ in wrong],
    )


def _csv_records(text: str, sep: str) -> tuple[list[list[str]], list[int]]:
    """The non-blank records of a CSV text (header first) and the file line each one starts on."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    records: list[list[str]] = []
    first_lines: list[int] = []
    line = 1
    try:
        for record in reader:
            if len(record) > 1 or (record and record[0].strip()):
                records.append(record)
                first_lines.append(line)
            line = reader.line_num + 1
    except csv.Error as error:
        raise DatasetError(
            f"cannot read the CSV at line {reader.line_num} ({error}): check that quotes are closed and that a "
            'quote inside a quoted cell is doubled ("say ""hi"""); re-exporting from a spreadsheet as '
            "'CSV UTF-8' usually fixes it",
            row=len(records) or None,
        ) from None
    if not records:
        raise DatasetError("the file is empty: it holds no header and no rows")
    return records, first_lines


def _refuse_duplicate_names(header: Sequence[str]) -> None:
    repeated = sorted({name for name in header if name and header.count(name) > 1})  # "" is named by position
    if repeated:
        listed = ", ".join(
            f"{name!r} (fields {', '.join(str(i + 1) for i, n in enumerate(header) if n == name)})" for name in repeated
        )
        raise DatasetError(
            f"the header line names the same column more than once: {listed}. Give every column its own name "
            "(if the file has no header line, add one naming the columns, e.g. text,label, as its first line)"
        )


def _header_warning(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str | None:
    """A warning when the header line reads like a row of data (a file without a header line)."""
    reasons = []
    for position, name in enumerate(header):
        if _is_number(name):
            reasons.append(f"{name!r} is a number")
        elif len(name.split()) >= 4 or len(name) > 50:
            reasons.append(f"{_shorten(name)!r} reads like a text")
        elif name.strip() and any(row[position] == name for row in rows):
            reasons.append(f"{name!r} is also a value in its column")
    if not reasons:
        return None
    return (
        f"The first line was read as the column names ({_names(_shorten(name) for name in header)}), but it "
        f"looks like a row of data: {'; '.join(reasons[:3])}. If the file has no header line, add one naming "
        "the columns (e.g. text,label) as its first line; if these are the column names, ignore this."
    )


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _refuse_nul_characters(frame: pd.DataFrame) -> None:
    """NUL is never part of a text: it marks a binary file or a wrong encoding (e.g. UTF-16 without BOM)."""
    fix = (
        "a text file never holds them, so the file is probably binary or in another encoding (UTF-16?): "
        "remove them, or re-save the file as CSV UTF-8"
    )
    names = [str(name) for name in frame.columns if "\x00" in str(name)]
    if names:
        raise DatasetError(f"the header holds NUL characters (\\x00), in the column name {names[0]!r}: {fix}")
    for column in frame.columns:
        has_nul = frame[column].map(lambda value: isinstance(value, str) and "\x00" in value).to_numpy(dtype=bool)
        if has_nul.any():
            rows = np.flatnonzero(has_nul)
            raise DatasetError(
                f"column {str(column)!r} holds NUL characters (\\x00) in {_rows(rows)}: {fix}",
                column=str(column),
                rows=[int(i) + 1 for i in rows],
            )


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
    if len(label_set) < 2 and (labels is not None or label_column is not None):
        raise DatasetError(_too_few_labels(label_set, label_column if labels is None else None), column=label_column)
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


def _too_few_labels(label_set: tuple[str, ...], inferred_from: str | None) -> str:
    """Why a label set of fewer than two labels is refused (a classifier tells labels apart)."""
    if inferred_from is None:
        return (
            f"the label set has only one label, {label_set[0]!r}: MoLLIA learns to tell labels apart, so it needs "
            "at least two. Add the other labels (e.g. sport, politics, tech)"
        )
    if not label_set:
        return (
            f"label column {inferred_from!r} is empty in every row: choose the column that holds the labels, "
            "or type the label set"
        )
    return (
        f"label column {inferred_from!r} holds only one label, {label_set[0]!r}: MoLLIA learns to tell labels "
        "apart, so it needs at least two. Type the full label set (the rows labeled "
        f"{label_set[0]!r} keep their label), or choose another label column"
    )


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
    return f"{_row_list([int(i) + 1 for i in indices])} (counting from 1 below the header)"


def _row_list(numbers: Sequence[int]) -> str:
    """'row 3' / 'rows 3, 7 and 9' / 'rows 1, 2, ... and 40 more' from 1-based row numbers."""
    numbers = [str(n) for n in numbers]
    if len(numbers) == 1:
        return f"row {numbers[0]}"
    if len(numbers) <= _MAX_LISTED:
        return f"rows {', '.join(numbers[:-1])} and {numbers[-1]}"
    return f"rows {', '.join(numbers[:_MAX_LISTED])} and {len(numbers) - _MAX_LISTED} more"


def _names(columns: Sequence[Any]) -> str:
    return ", ".join(repr(str(c)) for c in columns)
