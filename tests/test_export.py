"""Export round trips: CSV, JSONL and Parquet read back unchanged (negative label lists, unicode)."""

from __future__ import annotations

import io

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
