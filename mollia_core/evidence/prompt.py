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
"""

from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from .source import EvidenceError

DEFAULT_TEMPLATE = (
    "Classify the following text into exactly one of these categories: {labels}.\n"
    "Answer with the category name only, without any explanation.\n\n"
    "Text: {text}"
)
PLACEHOLDERS = frozenset({"labels", "text"})
#: Marks where the text goes when the shared prefix is rendered (never appears in real input).
TEXT_SENTINEL = "\u27e6MOLLIA-TEXT\u27e7"


class PromptTemplateError(EvidenceError, ValueError):
    """The prompt template or label set cannot be used; the message says how to fix it."""


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
    """

    template: str = DEFAULT_TEMPLATE
    label_separator: str = ", "
    completion_suffix: str = "\nCategory:"
    system: str | None = None

    def __post_init__(self) -> None:
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
                f"unknown placeholder(s) {shown} in the prompt template: only {{labels}} and {{text}} "
                "are filled in (write literal braces as '{{' and '}}')"
            )
        if "text" not in fields:
            raise PromptTemplateError("the prompt template has no {text} placeholder: add '{text}' where the text goes")
        if fields.count("text") > 1:
            raise PromptTemplateError("the prompt template has {text} more than once: keep a single {text}")

    def instruction(self, text: str, labels: Sequence[str]) -> str:
        """The filled-in instruction (the user message of a chat model)."""
        labels = check_labels(labels)
        return self.template.format(labels=self.label_separator.join(labels), text=text)

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
        instruction = self.instruction(text, labels)
        if tokenizer is None or not self.uses_chat(tokenizer, chat):
            return instruction + self.completion_suffix
        messages = [{"role": "user", "content": instruction}]
        if self.system is not None:
            messages.insert(0, {"role": "system", "content": self.system})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

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
        }
