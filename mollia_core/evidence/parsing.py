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
   ``-`` and runs of spaces count as one space);
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

__all__ = ["AnswerParser", "parse_answer", "vote_shares"]

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
        # Longest alternatives first, so overlapping labels resolve to the longest match.
        alternatives = sorted(normalised, key=len, reverse=True)
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
