"""Export of a project's labeled texts to CSV, JSONL and Parquet, and import back.

An export holds one row per labeled text with the columns of ``EXPORT_COLUMNS``
followed by the user's original columns (renamed ``original_<name>`` where a name
collides with one of ours). ``negative_labels`` is a list of label names: a native
list in JSONL and Parquet, a JSON array in a CSV cell. ``import_labeled`` reads any
of the three formats back into the same DataFrame.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import BinaryIO

import pandas as pd

EXPORT_COLUMNS = (
    "id",
    "text",
    "label",
    "source",
    "molam_probability",
    "negative_labels",
    "flag",
    "iteration",
)
FORMATS = ("csv", "jsonl", "parquet")
SOURCES = ("seed", "molam", "override")
MIME_TYPES = {"csv": "text/csv", "jsonl": "application/jsonl", "parquet": "application/vnd.apache.parquet"}

# Our own columns get fixed dtypes, so a file reads back the same whatever its values.
_DTYPES = {
    "id": "string",
    "text": "string",
    "label": "string",
    "source": "string",
    "molam_probability": "Float64",
    "flag": "boolean",
    "iteration": "Int64",
}


class ExportError(Exception):
    """An export cannot be written or read back; the message says why and what to do."""


def original_column_name(column: str) -> str:
    """Name under which a user's column appears in an export."""
    return f"original_{column}" if column in EXPORT_COLUMNS else column


def normalize_export_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Put an export frame into its canonical form: our columns first, fixed dtypes,
    ``negative_labels`` as lists of str."""
    missing = [c for c in EXPORT_COLUMNS if c not in frame.columns]
    if missing:
        raise ExportError(
            f"not a MoLLIA export: column(s) {', '.join(missing)} missing. "
            "Export the file again from the Export page."
        )
    out = frame.copy()
    for column, dtype in _DTYPES.items():
        out[column] = out[column].astype(dtype)
    out["negative_labels"] = [_as_label_list(v) for v in out["negative_labels"]]
    rest = [c for c in out.columns if c not in EXPORT_COLUMNS]
    return out[list(EXPORT_COLUMNS) + rest].reset_index(drop=True)


def _as_label_list(value) -> list[str]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    return [str(v) for v in list(value)]


def to_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """Serialise an export frame as ``fmt`` (csv, jsonl, parquet)."""
    buffer = io.BytesIO()
    write_labeled(frame, buffer, fmt)
    return buffer.getvalue()


def write_labeled(frame: pd.DataFrame, target: str | Path | BinaryIO, fmt: str | None = None) -> None:
    """Write an export frame to a path or binary file; ``fmt`` defaults to the path's suffix."""
    fmt = _format_of(target, fmt)
    frame = normalize_export_frame(frame)
    if fmt == "csv":
        out = frame.copy()
        out["negative_labels"] = [json.dumps(v, ensure_ascii=False) for v in out["negative_labels"]]
        data = out.to_csv(index=False).encode("utf-8")
    elif fmt == "jsonl":
        # json (not pandas' writer, which rounds floats to 10 digits) writes floats that read back exactly.
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        data = "".join(json.dumps(r, ensure_ascii=False, default=_json_value) + "\n" for r in records).encode("utf-8")
    else:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    if isinstance(target, (str, Path)):
        Path(target).write_bytes(data)
    else:
        target.write(data)


def import_labeled(source: str | Path | BinaryIO, fmt: str | None = None) -> pd.DataFrame:
    """Read an export (CSV, JSONL or Parquet) back into the frame that was exported."""
    fmt = _format_of(source, fmt)
    try:
        if fmt == "csv":
            frame = pd.read_csv(source, dtype={c: "string" for c in ("id", "text", "label", "source")},
                                keep_default_na=True, encoding="utf-8")
        elif fmt == "jsonl":
            text = source.read() if hasattr(source, "read") else Path(source).read_bytes()
            lines = (text.decode("utf-8") if isinstance(text, bytes) else text).splitlines()
            frame = pd.DataFrame.from_records([json.loads(line) for line in lines if line.strip()])
        else:
            frame = pd.read_parquet(source)
    except (ValueError, UnicodeDecodeError, OSError) as exc:  # json.JSONDecodeError is a ValueError
        raise ExportError(f"cannot read this {fmt.upper()} file as a MoLLIA export: {exc}") from exc
    # Empty strings in CSV text cells come back as missing; an export never holds missing text.
    if fmt == "csv" and "text" in frame.columns:
        frame["text"] = frame["text"].fillna("")
    return normalize_export_frame(frame)


def _json_value(value):
    """JSON for the numpy / pandas scalars a frame holds."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot be written to JSONL")


def _format_of(target, fmt: str | None) -> str:
    if fmt is None:
        name = str(target) if isinstance(target, (str, Path)) else getattr(target, "name", "")
        fmt = Path(name).suffix.lstrip(".").lower()
    fmt = fmt.lower().lstrip(".")
    if fmt == "pq":
        fmt = "parquet"
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt
