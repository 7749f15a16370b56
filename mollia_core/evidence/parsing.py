"""Robust parsing of sampled LLM answers into labels, and the vote shares c (Eq. 2).

An LLM asked for one label answers in many ways: ``Positive``, ``"positive"``,
``**Answer:** positive``, ``positive. The review praises ...``, ``numeric (for the
year)``, ``the most appropriate category is "entity".``, or several labels at once
(``human, entity``). :func:`parse_answer` maps one answer to the index of the label
it names, or ``None`` when it names no label or several; Eq. 2 counts the latter
for no label, and their share is kept as evidence of its own.

The rules, applied to the first non-empty line (what follows a newline is taken as
explanation), after a leading ``Answer:`` / ``Category:`` / ``Label:`` / ``Output:``
prefix and surrounding quotes, backticks, asterisks and punctuation are removed:

1. the whole line, or its first sentence, *is* a label (case-insensitive; ``_``,
   ``-`` and runs of spaces count as one space; the label's other grammatical number,
   ``sports`` for ``sport``, counts as the label, as in z's surface forms);
2. otherwise, parenthesised remarks are dropped and the labels *mentioned* as whole
   words are collected, the longest label winning where labels overlap (``very
   positive`` names one label, not ``positive`` too). One label: that label. A
   negation outside any label (``not positive``) makes the answer ambiguous: ``None``.
   Several labels: if exactly one of them stands alone in quotes (``... the question
   "who is ..." is "entity"``) that one, else ``None``;
3. a first line that names no label and ends with a colon takes the next line;
4. when the first line names no label clearly, a later line that starts with a
   prefix (``Output: entity``, or ``Output:`` followed by the label on the next
   line) gives the answer: chain-of-thought answers end that way.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Sequence

import numpy as np

__all__ = ["AnswerParser", "label_surface_forms", "number_variants", "parse_answer", "vote_shares"]

_PREFIX = re.compile(
    r"^\s*(?:final\s+answer|answer|category|label|class(?:ification)?|output|sentiment|prediction|response)"
    r"\s*[:\-=]\s*",
    re.IGNORECASE,
)
# Characters that wrap an answer without being part of it.
_WRAPPERS = " \t\"'`*_#“”‘’«»[]{}<>"
_TRAILING = _WRAPPERS + ".,;:!?"
_PARENTHETICAL = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_QUOTED = re.compile(r"\"([^\"]+)\"|'([^']+)'|`([^`]+)`|“([^”]+)”|«([^»]+)»")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_NEGATION = re.compile(r"\b(?:not|no|never|neither|nor|cannot|none)\b|n't\b")

# Sentinels for the outcome of one line: it named no label at all, or too many.
_MEMO_SIZE = 100_000
_NO_LABEL = -1
_AMBIGUOUS = -2


def _normalise(text: str) -> str:
    """Case-fold, unify apostrophes, treat ``_``/``-`` as spaces, collapse whitespace."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    text = re.sub(r"[_\-]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def number_variants(label: str) -> tuple[str, ...]:
    """The label and its other grammatical number, inflecting its last word with a simple
    English rule ("sport" <-> "sports", "category" <-> "categories"); words whose final "s"
    is not a plural ending ("business", "politics", "news") keep one form."""
    head, _, last = label.rpartition(" ")
    head = head + " " if head else ""
    lower = last.casefold()
    if not last[-1:].isalpha() or len(last) < 3 or lower.endswith(("ss", "us", "is", "ics", "ews")):
        return (label,)
    upper = last.isupper()
    if lower.endswith("ies") and len(last) > 4:
        other = last[:-3] + ("Y" if upper else "y")
    elif lower.endswith(("ches", "shes", "xes", "sses")):
        other = last[:-2]
    elif lower.endswith("s"):
        other = last[:-1]
    elif lower.endswith("y") and lower[-2:-1] not in "aeiou":
        other = last[:-1] + ("IES" if upper else "ies")
    else:
        other = last + ("S" if upper else "s")
    return (label, head + other)


def label_surface_forms(labels: Sequence[str], quotes: bool = True) -> tuple[tuple[str, ...], ...]:
    """How an LLM may write each label as its answer: per label, distinct strings, the label as
    given first, then its lower-case and capitalised spellings, each also in its other
    grammatical number (``number_variants``), and, with ``quotes``, each after an opening
    double quote. A form that two labels share (labels "sport" and "sports") is left out of
    both, and the labels themselves are never a form of another label, so no string is
    counted for two labels. Shared by every source that sums P(form) into z (scoring.py; a
    server source calls it the same way on its completion prompts) and by the answer parser.
    """
    candidates = []
    for label in labels:
        cases = dict.fromkeys((label, label.lower(), label[:1].upper() + label[1:]))
        spellings = dict.fromkeys(v for case in cases for v in number_variants(case))
        if quotes:
            spellings.update(dict.fromkeys('"' + v for v in list(spellings)))
        candidates.append(list(spellings))
    owners: dict[str, set[int]] = {}
    for k, forms in enumerate(candidates):
        for form in forms:
            owners.setdefault(form, set()).add(k)
    canonical = set(labels)
    return tuple(
        (label,) + tuple(f for f in forms if f != label and len(owners[f]) == 1 and f not in canonical)
        for label, forms in zip(labels, candidates)
    )


def surface_form_answers(
    labels: Sequence[str], lead: str, surface_forms: bool = True
) -> tuple[list[list[str]], list[list[str]]]:
    """The answers a source scores for each label beyond the label as written, in the order it
    adds them: per label its capitalised spelling (what the expected votes also count), then, with
    ``surface_forms``, its other surface forms (``label_surface_forms``) after ``lead`` (what
    separates prompt and answer) and each unquoted form with the leading space toggled. Shared by
    the embedded engine (scoring.py) and the server source (server.py), so both sum the same forms."""
    capitalised = [[lead + label[:1].upper() + label[1:]] for label in labels]
    forms: list[list[str]] = [[] for _ in labels]
    if surface_forms:
        toggled = "" if lead else " "
        forms = [
            [lead + form for form in variants[1:]] + [toggled + form for form in variants if not form.startswith('"')]
            for variants in label_surface_forms(labels)
        ]
    return capitalised, forms


def overlaps_any(sequence: Sequence, others: Sequence[Sequence]) -> bool:
    """Whether the token sequence ``sequence`` is a prefix or an extension of one of ``others``. The
    event "the answer starts with these tokens" of a prefix contains that of its extension, so z
    sums a surface form only if it overlaps none of the sequences summed already (scoring.py)."""
    sequence = list(sequence)
    return any(list(other[: len(sequence)]) == sequence or sequence[: len(other)] == list(other) for other in others)


def _strip_wrappers(text: str) -> str:
    previous = None
    while previous != text:
        previous = text
        text = text.strip(_WRAPPERS).rstrip(_TRAILING)
    return text


class AnswerParser:
    """Maps raw answers to label indices for one fixed label list (see module docstring).

    Build it once per label set: matching patterns are compiled here.
    """

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        if not self.labels:
            raise ValueError("the label set is empty: give at least one label")
        normalised = [_normalise(label) for label in self.labels]
        if any(not n for n in normalised):
            raise ValueError(f"labels must not be empty or blank, got {list(self.labels)!r}")
        clashes = sorted({n for n in normalised if normalised.count(n) > 1})
        if clashes:
            raise ValueError(
                f"labels {list(self.labels)!r} differ only in case, spaces, '_' or '-' ({clashes}): "
                "an answer could not tell them apart; rename them"
            )
        self._index = {n: i for i, n in enumerate(normalised)}
        # The other grammatical number names the label too ("sports" for "sport"), the same
        # forms that z sums (label_surface_forms); a form two labels could claim names neither.
        owners: dict[str, set[int]] = {}
        for i, forms in enumerate(label_surface_forms(self.labels, quotes=False)):
            for form in forms:
                owners.setdefault(_normalise(form), set()).add(i)
        for form, claimed in owners.items():
            if len(claimed) == 1 and form not in self._index:
                self._index[form] = claimed.pop()
        # Longest alternatives first, so overlapping labels resolve to the longest match.
        alternatives = sorted(self._index, key=len, reverse=True)
        body = "|".join(r"\s+".join(map(re.escape, n.split(" "))) for n in alternatives)
        self._mention = re.compile(rf"(?<!\w)(?:{body})(?!\w)")
        self._memo: dict[str, int | None] = {}

    def __call__(self, answer: str) -> int | None:
        """Index of the label that ``answer`` names, or None (no label, or several)."""
        if not isinstance(answer, str):
            return None
        # Sampled answers repeat a lot (the same label, T times): remember recent ones.
        if answer in self._memo:
            return self._memo[answer]
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        result = self._memo[answer] = self._parse(answer)
        return result

    def _parse(self, answer: str) -> int | None:
        lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
        if not lines:
            return None
        first = self._answer_line(lines, 0)
        result = self._parse_line(first)
        if result == _NO_LABEL and first.rstrip(_WRAPPERS).endswith(":") and len(lines) > 1:
            # "The most appropriate category is:" with the label on the next line.
            result = self._parse_line(lines[1])
        if result < 0:
            # A chain of thought that ends with "Output: <label>" (rule 3).
            for i in range(len(lines) - 1, 0, -1):
                if _PREFIX.match(lines[i].lstrip(_WRAPPERS)):
                    result = self._parse_line(self._answer_line(lines, i))
                    break
        return result if result >= 0 else None

    @staticmethod
    def _answer_line(lines: list[str], i: int) -> str:
        """Line i without its prefix; a bare prefix ("Answer:") takes the next line."""
        line = lines[i].lstrip(_WRAPPERS)
        stripped = _PREFIX.sub("", line, count=1)
        if stripped != line and not _strip_wrappers(stripped) and i + 1 < len(lines):
            return lines[i + 1]
        return stripped

    def _exact(self, text: str) -> int:
        return self._index.get(_normalise(_strip_wrappers(text)), _NO_LABEL)

    def _parse_line(self, line: str) -> int:
        for candidate in (line, _SENTENCE_END.split(line.strip(), maxsplit=1)[0]):
            index = self._exact(candidate)
            if index >= 0:
                return index
        core = _normalise(_PARENTHETICAL.sub(" ", line))
        mentioned = {self._index[_normalise(m.group(0))] for m in self._mention.finditer(core)}
        if not mentioned:
            return _NO_LABEL
        outside_labels = self._mention.sub(" ", _QUOTED.sub(" ", core))
        if _NEGATION.search(outside_labels):
            return _AMBIGUOUS
        if len(mentioned) == 1:
            return mentioned.pop()
        quoted = {self._exact(next(g for g in m.groups() if g)) for m in _QUOTED.finditer(core)}
        quoted.discard(_NO_LABEL)
        return quoted.pop() if len(quoted) == 1 else _AMBIGUOUS


@lru_cache(maxsize=64)
def _parser(labels: tuple[str, ...]) -> AnswerParser:
    return AnswerParser(labels)


def parse_answer(answer: str, labels: Sequence[str]) -> int | None:
    """Index in ``labels`` of the label one sampled answer names, or None if it names
    no label or several (those count for no label in Eq. 2)."""
    return _parser(tuple(labels))(answer)


def vote_shares(answers: Sequence[str], labels: Sequence[str]) -> tuple[np.ndarray, float]:
    """Consistency c (Eq. 2): the share of the T sampled ``answers`` naming each label.

    Returns ``(c, no_label_share)`` with c of shape (K,); answers naming no label or
    several count for none, so ``c.sum() + no_label_share == 1``. With no answers at
    all, c is zero and ``no_label_share`` is 1 (no answer named a label).
    """
    parser = _parser(tuple(labels))
    counts = np.zeros(len(parser.labels), dtype=float)
    for answer in answers:
        index = parser(answer)
        if index is not None:
            counts[index] += 1
    total = len(answers)
    if total == 0:
        return counts, 1.0
    shares = counts / total
    return shares, float(1.0 - counts.sum() / total)
