"""User data made inert for the places that would otherwise interpret it.

Texts, labels, ids, column names, model and file names come from the user's files. Shown raw,
they would act as markup: Streamlit renders Markdown (with its ``:color[...]`` directives) in
titles, captions, alerts, toasts, metrics, button and checkbox labels and progress texts, so a label
``![p](http://host/x.png)`` would make the browser fetch a URL; Plotly renders a subset of HTML
(``<a href>``, ``<b>``, ``<span style>``) in tick labels, legends and hovers; matplotlib reads
``$...$`` as mathtext. Each function here returns a string that displays exactly as ``value`` reads.
"""

from __future__ import annotations

import html
import re
import string

# CommonMark lets any ASCII punctuation be backslash-escaped, and an escaped character is always
# literal text: escaping all of it also covers Streamlit's extensions (":red[x]", "$x$" LaTeX).
_MARKDOWN_ESCAPES = {ord(ch): "\\" + ch for ch in string.punctuation}
# GFM's literal autolinks (http://..., www...., a@b.c), emoji short codes (:smile:) and Streamlit's
# icons (:material/home:) are found in the text after the Markdown is parsed, so escaping cannot stop
# them: an invisible WORD JOINER at these places breaks each pattern and leaves the text as it reads.
WORD_JOINER = "\u2060"
_FOUND_AFTER_PARSING = re.compile(r"(?i)(?<=http)(?=:)|(?<=https)(?=:)|(?<=www)(?=\.)|(?=@)|(?<=:)(?=[\w+-])")


def markdown_text(value: object) -> str:
    """``value`` as literal text inside Streamlit Markdown (and the Markdown of labels and messages)."""
    return _FOUND_AFTER_PARSING.sub(WORD_JOINER, str(value)).translate(_MARKDOWN_ESCAPES)


def chart_text(value: object) -> str:
    """``value`` as literal text in a Plotly figure (tick labels, legend and trace names, hovers, titles)."""
    return html.escape(str(value), quote=False)


def matplotlib_text(value: object) -> str:
    """``value`` as literal text in a matplotlib figure (a ``$`` would start mathtext)."""
    return str(value).replace("$", r"\$")
