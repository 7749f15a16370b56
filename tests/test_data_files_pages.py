"""Malformed files and spreadsheet-safe exports through the real Data and Export pages (AppTest)."""

from __future__ import annotations

import pandas as pd
import pytest

from app_helpers import app, upload
from mollia_core.display import markdown_text as shown  # what the page's Markdown holds for a message
from mollia_core.project import Project

HEADERLESS = b"The striker scored twice,sport\nShares fell,business\nNew phone,sport\n"


def test_a_header_line_that_looks_like_data_is_pointed_out_in_the_preview(projects):
    Project.create("p")
    at = upload(app("p"), "news.csv", HEADERLESS)
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("The first line was read as the column names" in w and "add one naming the columns" in w
               for w in warnings), warnings
    assert not Project.open("p").has_dataset()


def test_json_lines_named_csv_is_read_as_json_lines(projects):
    Project.create("p")
    content = b'{"text": "a b", "label": "x"}\n{"text": "c d", "label": "y"}\n'
    at = upload(app("p"), "data.csv", content)
    assert not at.exception
    assert any(shown("holds JSON Lines, not CSV: it was read as JSON Lines") in w.value for w in at.warning)
    at.selectbox(key="label_column").select("label").run()
    next(b for b in at.button if b.label == "Use this data").click().run()
    assert not at.exception
    project = Project.open("p")
    assert project.texts == ["a b", "c d"] and project.labels == ("x", "y")


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"id,text,label\n1,hello, world,a\n2,bye,b\n", "row 1 has 4 fields but the header has 3"),
        (b"id,text\n1,fi\x00ne\n", "column 'text' holds NUL characters"),
    ],
)
def test_a_malformed_file_is_refused_with_its_rows_and_nothing_is_stored(projects, content, expected):
    Project.create("p")
    at = upload(app("p"), "bad.csv", content)
    assert not at.exception
    assert any(shown(expected) in e.value for e in at.error), [e.value for e in at.error]
    assert not Project.open("p").has_dataset()


def test_a_single_label_is_refused_on_the_data_page(projects):
    Project.create("p")
    at = upload(app("p"), "one.csv", b"text,label\nfirst text,sport\nsecond text,sport\n")
    at.selectbox(key="label_column").select("label").run()
    next(b for b in at.button if b.label == "Use this data").click().run()
    assert not at.exception
    assert any(shown("holds only one label, 'sport'") in e.value for e in at.error), [e.value for e in at.error]
    assert not Project.open("p").has_dataset()


def test_the_export_page_offers_spreadsheet_safe_csv_by_default(projects):
    project = Project.create("p")
    project.set_dataset(
        pd.DataFrame({"text": ['=HYPERLINK("http://x","y")', "fine"], "label": ["a", "b"]}),
        "text", label_column="label",
    )
    project.take_seeds_from_column(2)
    at = app("p", "pages/6_export.py")
    assert not at.exception
    assert at.checkbox(key="export_neutralize_formulas").value is True
    at.checkbox(key="export_neutralize_formulas").uncheck().run()
    assert not at.exception
