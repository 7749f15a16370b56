"""The editable annotation prompt: validation, chat vs completion rendering, the shared prefix."""

from __future__ import annotations

import pytest

from mollia_core.evidence.prompt import DEFAULT_TEMPLATE, PromptTemplate, PromptTemplateError, check_labels
from mollia_core.evidence.source import EvidenceError

LABELS = ("business", "sport", "tech")


@pytest.fixture(scope="module")
def chat_tokenizer():
    """SmolLM2's real tokenizer and chat template (tokenizer only: no weights are loaded)."""
    from transformers import AutoTokenizer

    from mollia_core.evidence.embedded import prepare_embedded_model

    return AutoTokenizer.from_pretrained(prepare_embedded_model("smollm2-135m"))


@pytest.mark.parametrize(
    "template, message",
    [
        ("Sort {text} into {categories}", r"unknown placeholder\(s\) \{categories\}"),
        ("Classify into {labels}.", r"no \{text\} placeholder"),
        ("{text} and again {text} {labels}", r"\{text\} more than once"),
        ("Classify {text", "malformed"),
        ("Classify {0} {text}", r"unknown placeholder\(s\) \{0\}"),
    ],
)
def test_bad_templates_get_clear_errors(template, message):
    with pytest.raises(PromptTemplateError, match=message):
        PromptTemplate(template)


def test_template_errors_are_evidence_errors():
    with pytest.raises(EvidenceError):
        PromptTemplate("no placeholders at all")


@pytest.mark.parametrize(
    "labels, message",
    [((), "label set is empty"), (("only",), "only one label"), (("a", " "), "empty"), (("a", "b", "a"), "duplicate")],
)
def test_bad_label_sets_get_clear_errors(labels, message):
    with pytest.raises(PromptTemplateError, match=message):
        check_labels(labels)
    with pytest.raises(PromptTemplateError, match=message):
        PromptTemplate().render("a text", labels)


def test_literal_braces_and_label_list():
    template = PromptTemplate("Labels {{json}}: {labels}\nText: {text}", label_separator=" | ")
    assert template.instruction("hi {there}", LABELS) == "Labels {json}: business | sport | tech\nText: hi {there}"


def test_completion_prompt_for_base_models():
    prompt = PromptTemplate().render("Stocks fell sharply.", LABELS)
    assert prompt.startswith("Classify the following text into exactly one of these categories: business, sport, tech.")
    assert prompt.endswith("Text: Stocks fell sharply.\nCategory:")
    assert PromptTemplate().answer_lead() == " "  # the label follows "Category:" after a space


def test_chat_prompt_uses_the_models_chat_template(chat_tokenizer):
    template = PromptTemplate()
    prompt = template.render("Stocks fell sharply.", LABELS, chat_tokenizer)
    assert "<|im_start|>user\n" in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert template.instruction("Stocks fell sharply.", LABELS) in prompt
    assert template.answer_lead(chat_tokenizer) == ""
    # chat=False forces the completion prompt even for a chat model.
    assert template.render("x", LABELS, chat_tokenizer, chat=False).endswith("\nCategory:")
    with_system = PromptTemplate(system="You label news.").render("x", LABELS, chat_tokenizer)
    assert "You label news." in with_system


def test_text_goes_last_so_the_prefix_is_shared(chat_tokenizer):
    template = PromptTemplate()
    for tokenizer in (None, chat_tokenizer):
        prefix = template.shared_prefix(LABELS, tokenizer)
        for text in ("Stocks fell.", "The match ended 2-1."):
            rendered = template.render(text, LABELS, tokenizer)
            assert rendered.startswith(prefix) and text in rendered[len(prefix) :]
        assert "business, sport, tech" in prefix
    assert "{text}" in DEFAULT_TEMPLATE and DEFAULT_TEMPLATE.rstrip().endswith("{text}")


def test_as_key_changes_with_the_template():
    assert PromptTemplate().as_key() != PromptTemplate("Topic of: {text}\nOptions: {labels}").as_key()
