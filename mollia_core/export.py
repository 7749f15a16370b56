"""Export of a project's labeled texts to CSV, JSONL and Parquet, and import back.

An export holds one row per labeled text with the columns of ``EXPORT_COLUMNS``
followed by the user's original columns (renamed ``original_<name>`` where a name
collides with one of ours). ``negative_labels`` is a list of label names: a native
list in JSONL and Parquet, a JSON array in a CSV cell. ``import_labeled`` reads any
of the three formats back into the same DataFrame.

CSV exports are safe to open in a spreadsheet: a cell (or column name) that a spreadsheet
would run as a formula -- it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return, possibly after single quotes -- gets one leading single quote (the OWASP rule
against CSV injection); plain numbers such as ``-1`` are left as they are. Import removes
exactly that quote, so the user's own ``'=x`` (exported as ``''=x``) reads back as ``'=x``.
``neutralize_formulas=False`` writes and reads the cells verbatim. JSONL and Parquet are
never changed.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence

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
SOURCES = ("seed", "molam", "override")  # always listed in the metadata; others (e.g. "accept") where present
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


# A cell a spreadsheet would evaluate, possibly behind quotes the user wrote: it gets one more quote.
_FORMULA_CELL = re.compile(r"'*[=+\-@\t\r]")
_GUARDED_CELL = re.compile(r"'+[=+\-@\t\r]")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


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


def neutralize_formula(value):
    """``value`` with one leading ``'`` if a spreadsheet would run it as a formula (non-strings unchanged)."""
    if isinstance(value, str) and _FORMULA_CELL.match(value) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def restore_formula(value):
    """Undo :func:`neutralize_formula`: drop the one quote it added (non-strings unchanged)."""
    if isinstance(value, str) and _GUARDED_CELL.match(value):
        return value[1:]
    return value


def _map_text_cells(frame: pd.DataFrame, function) -> pd.DataFrame:
    """``function`` applied to every text cell and column name (numbers, flags and missing cells untouched)."""
    out = frame.rename(columns=function)
    for column in out.columns:
        if pd.api.types.is_string_dtype(out[column]) or out[column].dtype == object:
            out[column] = out[column].map(function).astype(out[column].dtype)
    return out


def to_bytes(frame: pd.DataFrame, fmt: str, *, neutralize_formulas: bool = True) -> bytes:
    """Serialise an export frame as ``fmt`` (csv, jsonl, parquet); see :func:`write_labeled`."""
    buffer = io.BytesIO()
    write_labeled(frame, buffer, fmt, neutralize_formulas=neutralize_formulas)
    return buffer.getvalue()


def write_labeled(
    frame: pd.DataFrame,
    target: str | Path | BinaryIO,
    fmt: str | None = None,
    *,
    neutralize_formulas: bool = True,
) -> None:
    """Write an export frame to a path or binary file; ``fmt`` defaults to the path's suffix.

    neutralize_formulas: in CSV, prefix a ``'`` to cells a spreadsheet would run as formulas
    (see the module docstring); ignored for JSONL and Parquet, which are always exact.
    """
    fmt = _format_of(target, fmt)
    frame = normalize_export_frame(frame)
    if fmt == "csv":
        out = frame.copy()
        out["negative_labels"] = [json.dumps(v, ensure_ascii=False) for v in out["negative_labels"]]
        if neutralize_formulas:
            out = _map_text_cells(out, neutralize_formula)
        # CRLF rows (RFC 4180) also make the writer quote a cell holding a lone carriage return.
        data = out.to_csv(index=False, lineterminator="\r\n").encode("utf-8")
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


def import_labeled(
    source: str | Path | BinaryIO, fmt: str | None = None, *, neutralize_formulas: bool = True
) -> pd.DataFrame:
    """Read an export (CSV, JSONL or Parquet) back into the frame that was exported.

    neutralize_formulas: as the CSV was written (default True: the quote the export added
    in front of formula-like cells is removed; False: the cells are taken verbatim).
    """
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
    if fmt == "csv" and neutralize_formulas:
        frame = _map_text_cells(frame, restore_formula)
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


# ---------------------------------------------------------------------------------------------
# Metadata: how far each source's labels can be trusted

#: A CSV or JSONL export's metadata lives beside it, in ``<export file>`` + this suffix.
METADATA_SUFFIX = ".meta.json"
#: Key of the metadata (JSON) in a Parquet file's key-value metadata.
PARQUET_METADATA_KEY = b"mollia"
HUMAN_LABEL_NOTE = "human labels: taken as given, their accuracy is not estimated"


def molam_accuracy_estimate(cv_accuracy: Mapping[str, Sequence[float]], n_seeds: int) -> dict[str, Any] | None:
    """MoLAM's accuracy estimated on the seeds, with a 95 % interval, from a fit report's CV figures.

    ``cv_accuracy["MoLAM"]`` is (mean, std over folds); the Wilson interval treats the mean as
    round(mean * n_seeds) right answers out of the ``n_seeds`` held-out seed labels (every seed is
    held out exactly once). None when MoLAM was not cross-validated.
    """
    from .annotation import wilson_interval

    if "MoLAM" not in cv_accuracy or n_seeds < 1:
        return None
    mean, std = (float(v) for v in cv_accuracy["MoLAM"][:2])
    low, high = wilson_interval(round(mean * n_seeds), n_seeds)
    return {
        "mean": mean,
        "std_over_folds": std,
        "interval_95": [low, high],
        "n_seeds": int(n_seeds),
        "method": "k-fold cross-validation on the seed labels (each seed held out once)",
    }


def export_metadata(
    frame: pd.DataFrame, molam_accuracy: Mapping[str, Any] | None, *, labeled_estimate: Mapping[str, Any] | None = None,
    **about: Any,
) -> dict[str, Any]:
    """The metadata of an export: per source (seed / molam / override / accept) how many texts it
    labeled and how accurate its labels are estimated to be. ``about`` adds context (project, labels,
    models).

    ``molam_accuracy``: MoLAM's cross-validated accuracy on the seeds (:func:`molam_accuracy_estimate`).
    ``labeled_estimate``: ``LabeledSetEstimate.to_dict()`` of the exported texts (services/annotation.py:
    MoLAM's calibrated probabilities, human labels counted as right); when given, it is MoLAM's
    source's ``estimated_accuracy`` (the cross-validation moves to ``seed_cross_validation``) and
    the whole estimate is under ``labeled_set_estimate``.
    """
    from .store import HUMAN_SOURCES

    counts = frame["source"].value_counts()
    molam_estimate = (labeled_estimate or {}).get("per_source", {}).get("molam")
    sources: dict[str, Any] = {}
    for source in dict.fromkeys(SOURCES + tuple(counts.index)):
        human = source in HUMAN_SOURCES
        entry: dict[str, Any] = {"texts": int(counts.get(source, 0)), "human_labels": human}
        if human:
            entry.update(estimated_accuracy=None, note=HUMAN_LABEL_NOTE)
        elif molam_estimate is not None and source == "molam":
            entry.update(
                estimated_accuracy={"mean": molam_estimate["accuracy"],
                                    "interval_95": [molam_estimate["low"], molam_estimate["high"]],
                                    "texts": molam_estimate["n"], "n_human_labels": labeled_estimate["n_human_labels"],
                                    "method": labeled_estimate["method"]},
                seed_cross_validation=dict(molam_accuracy) if molam_accuracy is not None else None,
                note=f"MoLAM's labels: an estimate from {labeled_estimate['n_human_labels']} human labels, "
                     "not a measurement",
            )
        else:
            entry.update(
                estimated_accuracy=dict(molam_accuracy) if molam_accuracy is not None else None,
                note="MoLAM's labels: accuracy estimated on the seed labels alone" if molam_accuracy is not None
                else "MoLAM's labels: no accuracy estimate (MoLAM was not cross-validated)",
            )
        sources[source] = entry
    out = {"mollia_export_metadata": 1, "texts": int(len(frame)), **about, "sources": sources}
    if labeled_estimate is not None:
        out["labeled_set_estimate"] = dict(labeled_estimate)
    return out


def metadata_path(path: str | Path) -> Path:
    """The sidecar metadata file of a CSV or JSONL export at ``path``."""
    return Path(f"{path}{METADATA_SUFFIX}")


def add_parquet_metadata(data: bytes, metadata: Mapping[str, Any]) -> bytes:
    """A Parquet export's bytes with ``metadata`` stored under ``PARQUET_METADATA_KEY``."""
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    merged = {**(table.schema.metadata or {}), PARQUET_METADATA_KEY: json.dumps(metadata).encode("utf-8")}
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(merged), buffer)
    return buffer.getvalue()


def write_export(frame: pd.DataFrame, path: str | Path, metadata: Mapping[str, Any], fmt: str | None = None) -> Path:
    """Write an export and its metadata: inside the file for Parquet, in ``metadata_path(path)`` for
    CSV and JSONL. Returns where the metadata went."""
    fmt = _format_of(path, fmt)
    path = Path(path)
    if fmt == "parquet":
        path.write_bytes(add_parquet_metadata(to_bytes(frame, fmt), metadata))
        return path
    write_labeled(frame, path, fmt)
    sidecar = metadata_path(path)
    sidecar.write_text(json.dumps(metadata, indent=2, ensure_ascii=False), encoding="utf-8")
    return sidecar


def read_export_metadata(path: str | Path) -> dict[str, Any] | None:
    """The metadata written with the export at ``path`` (None if it has none)."""
    path = Path(path)
    if _format_of(path, None) == "parquet":
        import pyarrow.parquet as pq

        stored = (pq.read_schema(path).metadata or {}).get(PARQUET_METADATA_KEY)
        return json.loads(stored) if stored is not None else None
    sidecar = metadata_path(path)
    return json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else None
