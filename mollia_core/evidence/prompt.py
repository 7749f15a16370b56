"""The prompt an LLM annotator sees: an editable template with ``{labels}`` and ``{text}``.

The default wording follows the paper's zero-shot classification prompt (list the
categories, give the text, ask for the category name only). The text goes last so
that everything before it is the same for every text of a dataset: an engine
prefills that shared prefix once and reuses its KV cache (see ``scoring.py``).

Chat models get their own chat template (``tokenizer.apply_chat_template`` with
``add_generation_prompt=True``), so the label is scored where the assistant's
answer starts. Base models (Gemma-3-270M here) get a completion prompt ending in
``"\\nCategory:"``, and the label is scored as it would follow that colon, with a
leading space.

Label descriptions (``ham: an ordinary, legitimate email``) go before the line that holds
``{text}`` (or where ``{descriptions}`` stands in the template). In-context demonstrations (a
few labeled seed texts) are, for a chat model, earlier turns of the conversation: the first
example asked with the whole instruction, each later one and then the text itself with the
template's line that holds the text (``Text: ...``), each example's label as the assistant's
answer. For a base model, or where the template places ``{examples}`` itself, they are an
``Examples:`` block of ``Text: ...`` / ``Category: <label>`` before the text's line. Either way
they are part of the shared prefix: an engine that keeps the prefix's KV cache pays for them once
per model, not once per text. (Why turns: with the block inside the user's message,
Qwen2.5-Coder-1.5B answered the last example's label for most of 48 BBC headlines, 0.35 accuracy
against 0.77 without examples; as turns, 0.81. See benchmarks/README.md, "Prompt variants".)

A demonstration is never scored with itself in its prompt: for a text that is one of the
demonstrations, ``demonstrations_for`` swaps that demonstration for a spare example of the
same class (or drops it when there is none). That text's prompt then has its own prefix
from the swapped demonstration on, and is prefilled from there.
"""

from __future__ import annotations

import hashlib
import string
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .source import EvidenceError

DEFAULT_TEMPLATE = (
    "Classify the following text into exactly one of these categories: {labels}.\n"
    "Answer with the category name only, without any explanation.\n\n"
    "Text: {text}"
)
PLACEHOLDERS = frozenset({"labels", "text", "descriptions", "examples"})
#: A demonstration's text is cut to this many characters (its prefix is paid once, but every
#: text attends to it).
DEMONSTRATION_CHARS = 300
#: Marks where the text goes when the shared prefix is rendered (never appears in real input).
TEXT_SENTINEL = "\u27e6MOLLIA-TEXT\u27e7"


class PromptTemplateError(EvidenceError, ValueError):
    """The prompt template or label set cannot be used; the message says how to fix it."""


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def choose_demonstrations(
    labeled: Sequence[tuple[str, str]], labels: Sequence[str], per_class: int
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """(demonstrations, spares) from human-labeled ``(text, label)`` pairs: per class the
    ``per_class`` texts with the smallest sha256, then one spare per class. The order by hash
    keeps the choice stable: a new seed changes it only if it hashes lower. Demonstrations
    are interleaved by class (one of each label, then the next round)."""
    if per_class < 0:
        raise PromptTemplateError(f"demonstrations per class must be >= 0, not {per_class}")
    by_label: dict[str, list[str]] = {label: [] for label in labels}
    for text, label in labeled:
        if label in by_label and text.strip() and not any(_same_text(text, t) for t in by_label[label]):
            by_label[label].append(text)
    ranked = {
        label: sorted(texts, key=lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest())
        for label, texts in by_label.items()
    }
    demonstrations = tuple(
        (ranked[label][i], label) for i in range(per_class) for label in labels if i < len(ranked[label])
    )
    spares = tuple((ranked[label][per_class], label) for label in labels if per_class and len(ranked[label]) > per_class)
    return demonstrations, spares


def check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """The label set as a tuple, or a clear error if it is empty, has blanks or duplicates."""
    labels = tuple(labels)
    if not labels:
        raise PromptTemplateError(
            "the label set is empty: give at least two labels (e.g. ['positive', 'negative'])"
        )
    if len(labels) == 1:
        raise PromptTemplateError(f"only one label ({labels[0]!r}): a classification needs at least two labels")
    blank = [i for i, label in enumerate(labels) if not isinstance(label, str) or not label.strip()]
    if blank:
        raise PromptTemplateError(f"labels at positions {blank} are empty or not text: every label needs a name")
    duplicates = sorted(label for label, count in Counter(labels).items() if count > 1)
    if duplicates:
        raise PromptTemplateError(f"duplicate labels {duplicates}: each label must appear once")
    return labels


@dataclass(frozen=True)
class PromptTemplate:
    """An editable annotation prompt.

    template:          instruction text with ``{labels}`` and ``{text}`` (``{{``/``}}`` for literal
                       braces); ``{text}`` is required and should come last.
    label_separator:   how the label list is joined into ``{labels}``.
    completion_suffix: appended for base models without a chat template; the answer follows it.
    system:            optional system message for chat models (their default otherwise).
    descriptions:      what each label means, ``{label: description}`` (kept as sorted pairs);
                       labels without one are listed without.
    demonstrations:    ``(text, label)`` examples shown before the text (``choose_demonstrations``).
    spare_demonstrations: replacements, per label, for a demonstration in its own prompt.
    """

    template: str = DEFAULT_TEMPLATE
    label_separator: str = ", "
    completion_suffix: str = "\nCategory:"
    system: str | None = None
    descriptions: Mapping[str, str] | tuple[tuple[str, str], ...] = ()
    demonstrations: tuple[tuple[str, str], ...] = ()
    spare_demonstrations: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # Plain sorted tuples: the template stays hashable and its cache key canonical.
        pairs = self.descriptions.items() if isinstance(self.descriptions, Mapping) else self.descriptions
        descriptions = tuple(sorted((str(k), " ".join(str(v).split())) for k, v in pairs if str(v).strip()))
        object.__setattr__(self, "descriptions", descriptions)
        for name in ("demonstrations", "spare_demonstrations"):
            examples = tuple((str(text), str(label)) for text, label in getattr(self, name))
            if any(not text.strip() for text, _ in examples):
                raise PromptTemplateError(f"an empty text among the {name.replace('_', ' ')}: every example needs a text")
            object.__setattr__(self, name, examples)
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None]
        except ValueError as error:
            raise PromptTemplateError(
                f"the prompt template is malformed ({error}); write literal braces as '{{{{' and '}}}}'"
            ) from None
        unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
        if unknown:
            shown = ", ".join("{" + f + "}" for f in unknown)
            raise PromptTemplateError(
                f"unknown placeholder(s) {shown} in the prompt template: only {{labels}}, {{text}}, "
                "{descriptions} and {examples} are filled in (write literal braces as '{{' and '}}')"
            )
        if "text" not in fields:
            raise PromptTemplateError("the prompt template has no {text} placeholder: add '{text}' where the text goes")
        if fields.count("text") > 1:
            raise PromptTemplateError("the prompt template has {text} more than once: keep a single {text}")

    def demonstrations_for(self, text: str) -> tuple[tuple[str, str], ...]:
        """The demonstrations shown with ``text``: each one that is ``text`` itself (up to
        whitespace) replaced by an unused spare of its label, or dropped if none is left."""
        shown = self.demonstrations
        if not any(_same_text(d_text, text) for d_text, _ in shown):
            return tuple(shown)
        spares = [s for s in self.spare_demonstrations if not _same_text(s[0], text)]
        chosen = []
        for d_text, label in shown:
            if not _same_text(d_text, text):
                chosen.append((d_text, label))
                continue
            spare = next((s for s in spares if s[1] == label and s not in shown), None)
            if spare is not None:
                spares.remove(spare)
                chosen.append(spare)
        return tuple(chosen)

    def _descriptions_block(self, labels: Sequence[str]) -> str:
        described = dict(self.descriptions)
        lines = [f"- {label}: {described[label]}" for label in labels if label in described]
        return "What the categories mean:\n" + "\n".join(lines) if lines else ""

    @staticmethod
    def _shortened(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= DEMONSTRATION_CHARS else text[: DEMONSTRATION_CHARS - 1].rstrip() + "…"

    @classmethod
    def _examples_block(cls, examples: Sequence[tuple[str, str]]) -> str:
        shown = "\n\n".join(f"Text: {cls._shortened(text)}\nCategory: {label}" for text, label in examples)
        return "Examples:\n" + shown if shown else ""

    def instruction(self, text: str, labels: Sequence[str], *, with_examples: bool = True) -> str:
        """The filled-in instruction (the user message of a chat model); ``with_examples=False``
        leaves the demonstrations out (they are then earlier turns: ``render``)."""
        labels = check_labels(labels)
        descriptions = self._descriptions_block(labels)
        examples = self._examples_block(self.demonstrations_for(text)) if with_examples else ""
        fields = self._fields()
        filled = self.template.format(
            labels=self.label_separator.join(labels), text=TEXT_SENTINEL, descriptions=descriptions, examples=examples
        )
        head, _, tail = filled.partition(TEXT_SENTINEL)
        # Blocks the template does not place go before the line that holds the text.
        unplaced = [b for b, name in ((descriptions, "descriptions"), (examples, "examples")) if b and name not in fields]
        if unplaced:
            line_start = head.rfind("\n") + 1
            head = head[:line_start] + "".join(b + "\n\n" for b in unplaced) + head[line_start:]
        return head + text + tail

    def _fields(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None]

    @staticmethod
    def uses_chat(tokenizer: Any, chat: bool | None = None) -> bool:
        """Whether ``tokenizer`` gets a chat prompt: ``chat`` if given, else whether it has a chat template."""
        if chat is not None:
            return chat
        return bool(getattr(tokenizer, "chat_template", None))

    def render(self, text: str, labels: Sequence[str], tokenizer: Any = None, chat: bool | None = None) -> str:
        """The full prompt string for ``text``; the answer is generated right after it.

        Without a tokenizer (or for a base model) this is the completion prompt.
        """
        if tokenizer is None or not self.uses_chat(tokenizer, chat):
            return self.instruction(text, labels) + self.completion_suffix
        messages = [] if self.system is None else [{"role": "system", "content": self.system}]
        examples = self.demonstrations_for(text) if "examples" not in self._fields() else ()
        if not examples:
            messages.append({"role": "user", "content": self.instruction(text, labels)})
        else:
            # The first example is asked with the whole instruction; later ones, and the text itself,
            # with the template's line that holds the text ("Text: ..."), as in a conversation.
            asked = [self.instruction(self._shortened(examples[0][0]), labels, with_examples=False)]
            asked += [self._text_line(self._shortened(example), labels) for example, _ in examples[1:]]
            for question, (_, label) in zip(asked, examples):
                messages += [{"role": "user", "content": question}, {"role": "assistant", "content": label}]
            messages.append({"role": "user", "content": self._text_line(text, labels)})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _text_line(self, text: str, labels: Sequence[str]) -> str:
        """The filled-in template from the start of the line that holds ``{text}`` to its end."""
        filled = self.template.format(labels=self.label_separator.join(labels), text=TEXT_SENTINEL, descriptions="",
                                      examples="")
        start = filled.rfind("\n", 0, filled.index(TEXT_SENTINEL)) + 1
        return filled[start:].replace(TEXT_SENTINEL, text)

    def shared_prefix(self, labels: Sequence[str], tokenizer: Any = None, chat: bool | None = None) -> str:
        """The part of every rendered prompt before the text: the same for all texts of a label set."""
        rendered = self.render(TEXT_SENTINEL, labels, tokenizer, chat)
        return rendered[: rendered.index(TEXT_SENTINEL)] if TEXT_SENTINEL in rendered else ""

    def answer_lead(self, tokenizer: Any = None, chat: bool | None = None) -> str:
        """What separates the prompt from the answer: nothing after a chat template's assistant
        header, a space after a completion prompt's ``Category:``."""
        if tokenizer is not None and self.uses_chat(tokenizer, chat):
            return ""
        return "" if self.completion_suffix.endswith((" ", "\n")) else " "

    def as_key(self) -> dict:
        """Everything that changes the prompt, for evidence cache keys."""
        return {
            "template": self.template,
            "label_separator": self.label_separator,
            "completion_suffix": self.completion_suffix,
            "system": self.system,
            "descriptions": [list(pair) for pair in self.descriptions],
            "demonstrations": [list(pair) for pair in self.demonstrations],
            "spare_demonstrations": [list(pair) for pair in self.spare_demonstrations],
            # Chat models got the demonstrations as an in-message block until 2026-12-03.
            **({"demonstrations_as": "chat turns"} if self.demonstrations else {}),
        }
