"""Export round trips: CSV, JSONL and Parquet read back unchanged (negative label lists, unicode)."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest

from mollia_core.export import (
    EXPORT_COLUMNS,
    ExportError,
    FORMATS,
    import_labeled,
    normalize_export_frame,
    original_column_name,
    to_bytes,
    write_labeled,
)


def _export_frame() -> pd.DataFrame:
    return normalize_export_frame(
        pd.DataFrame(
            {
                "id": ["a1", "002", "x-3", "4"],
                "text": ['Où est la gare ? "quoted", comma', "naïve café ☕ — 東京", "line one\nline two", ""],
                "label": ["location", "entity", "human", "numeric"],
                "source": ["seed", "molam", "override", "molam"],
                "molam_probability": [None, 0.8125, 0.51, 1 / 3],
                "negative_labels": [[], ["abbreviation", "numeric"], ["entity"], ["état, «x»"]],
                "flag": [False, False, True, False],
                "iteration": [0, 1, 2, None],
                "score": [1.5, -2.0, 3.25, 0.0],
                "count": [1, 2, 3, 4],
                "note": ["ok", "ünïcödé", None, "tab\there"],
            }
        )
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_keeps_every_value(tmp_path, fmt):
    frame = _export_frame()
    path = tmp_path / f"labeled.{fmt}"
    write_labeled(frame, path)
    back = import_labeled(path)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back.loc[1, "negative_labels"] == ["abbreviation", "numeric"]
    assert back.loc[1, "text"] == "naïve café ☕ — 東京"


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_round_trip(fmt):
    frame = _export_frame()
    buffer = io.BytesIO(to_bytes(frame, fmt))
    pd.testing.assert_frame_equal(import_labeled(buffer, fmt), frame, check_exact=True)


def test_export_columns_come_first_and_collisions_are_renamed():
    frame = _export_frame()
    assert list(frame.columns[: len(EXPORT_COLUMNS)]) == list(EXPORT_COLUMNS)
    assert original_column_name("label") == "original_label"
    assert original_column_name("topic") == "topic"


def test_unknown_format_and_foreign_file_are_clear_errors(tmp_path):
    with pytest.raises(ExportError, match="unknown export format"):
        to_bytes(_export_frame(), "xlsx")
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ExportError, match="not a MoLLIA export"):
        import_labeled(foreign)


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _formula_frame() -> pd.DataFrame:
    """Cells a spreadsheet would run, the user's own quotes, and harmless look-alikes."""
    return normalize_export_frame(
        pd.DataFrame(
            {
                "id": ["@SUM(A1)", "-2+3", "plain", "q1", "q2", "n1"],
                "text": ['=HYPERLINK("http://x","y")', "\tindented", "\rcarriage", "'=x", "''=y", "- a bullet"],
                "label": ["+cmd|' /C calc'!A0", "=1+1", "ok", "'plain", "'", "-1"],
                "source": ["seed", "molam", "override", "molam", "seed", "seed"],
                "molam_probability": [None, 0.5, 0.25, 0.75, None, None],
                "negative_labels": [[], ["=1+1"], [], [], [], []],
                "flag": [False, True, False, False, False, False],
                "iteration": [0, 1, 2, 1, 0, 0],
                "=evil column": ["@x", "fine", "-3", "+", "'@y", "2"],
                "score": [-2.5, 1.0, 0.0, -1.0, 3.0, 4.0],
            }
        )
    )


def _csv_cells(data: bytes) -> list[list[str]]:
    """The cells exactly as a spreadsheet receives them (header row first)."""
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_csv_export_neutralises_formula_cells_by_default():
    frame = _formula_frame()
    cells = _csv_cells(to_bytes(frame, "csv"))
    header, rows = cells[0], cells[1:]
    assert "'=evil column" in header
    column = {name: [row[header.index(name)] for row in rows] for name in header}
    assert column["text"] == [
        '\'=HYPERLINK("http://x","y")', "'\tindented", "'\rcarriage", "''=x", "'''=y", "'- a bullet"
    ]
    assert column["label"] == ["'+cmd|' /C calc'!A0", "'=1+1", "ok", "'plain", "'", "-1"]  # -1 is a number
    assert column["id"] == ["'@SUM(A1)", "'-2+3", "plain", "q1", "q2", "n1"]
    assert column["'=evil column"] == ["'@x", "fine", "-3", "'+", "''@y", "2"]
    assert column["score"][0] == "-2.5"  # numbers are written as numbers
    dangerous = [c for c in (cell for row in cells for cell in row) if c.startswith(FORMULA_TRIGGERS)]
    assert all(_is_number(c) for c in dangerous), dangerous


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("neutralize", [True, False])
def test_formula_cells_round_trip_through_csv(tmp_path, neutralize):
    frame = _formula_frame()
    path = tmp_path / "labeled.csv"
    write_labeled(frame, path, neutralize_formulas=neutralize)
    back = import_labeled(path, neutralize_formulas=neutralize)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back.loc[3, "text"] == "'=x" and back.loc[4, "text"] == "''=y"  # the user's own quotes are kept
    assert back.loc[0, "label"] == "+cmd|' /C calc'!A0"


def test_verbatim_csv_keeps_formula_cells_as_written():
    cells = _csv_cells(to_bytes(_formula_frame(), "csv", neutralize_formulas=False))
    assert cells[1][cells[0].index("text")] == '=HYPERLINK("http://x","y")'
    assert "=evil column" in cells[0]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_jsonl_and_parquet_keep_formula_cells_exact(fmt):
    frame = _formula_frame()
    data = to_bytes(frame, fmt)
    assert data == to_bytes(frame, fmt, neutralize_formulas=False)
    if fmt == "jsonl":
        first = json.loads(data.decode("utf-8").splitlines()[0])
        assert first["text"] == '=HYPERLINK("http://x","y")' and first["=evil column"] == "@x"
    pd.testing.assert_frame_equal(import_labeled(io.BytesIO(data), fmt), frame, check_exact=True)
