"""mollia_core.display: user strings come out of a real Markdown renderer, Plotly's entity decoding and
matplotlib exactly as they went in (the browser side is tests/test_e2e_browser.py)."""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from mollia_core.display import WORD_JOINER, chart_text, markdown_text, matplotlib_text
from mollia_core.plots import plot_learning_curves
from project_helpers import INJECTIONS

STRINGS = (*INJECTIONS, "see https://example.org or www.example.org", "mail a.b@example.org", "# heading", "1. item", "- item", "> quote", "`code`", "a_b_c", "$x^2$", ":smile:",
           "&lt;b&gt;", "| a | b |", "~~gone~~", "<!-- c -->", "back\\slash", "café — ✓")


@pytest.mark.parametrize("value", STRINGS)
def test_markdown_text_renders_as_the_string_itself(value):
    rendered = MarkdownIt("commonmark").enable("table").enable("strikethrough").render(markdown_text(value))
    inner = rendered.removeprefix("<p>").removesuffix("</p>\n")
    assert "<" not in inner, rendered  # no element: every character stayed text
    text = html.unescape(inner)
    assert text.replace(WORD_JOINER, "") == value
    # What Streamlit's renderer looks for in the parsed text (GFM autolinks, :emoji: and :icon: codes).
    assert not re.search(r"(?i)https?:|www\.|[-.\w+]@|:[\w+-]", text), text


@pytest.mark.parametrize("value", STRINGS)
def test_chart_text_is_inert_html_that_reads_as_the_string(value):
    assert "<" not in chart_text(value)
    assert html.unescape(chart_text(value)) == value


def test_matplotlib_text_draws_dollars_literally(tmp_path):
    name = "cost $\\frac{ in $"  # unescaped, mathtext fails to parse it when the figure is drawn
    with pytest.raises(ValueError):
        _draw_raw(name, tmp_path / "raw.png")
    path = plot_learning_curves({name: ([1, 2], [0.1, 0.2])}, tmp_path / "curve.png", title=name)
    assert path.stat().st_size > 0
    assert matplotlib_text("a $b$") == "a \\$b\\$"


def _draw_raw(text: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    try:
        axes.set_title(text)
        figure.savefig(path)
    finally:
        plt.close(figure)
