"""The editable annotation prompt: validation, chat vs completion rendering, the shared prefix."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mollia_core.evidence.prompt import (
    DEFAULT_TEMPLATE,
    DEMONSTRATION_CHARS,
    PromptTemplate,
    PromptTemplateError,
    check_labels,
    choose_demonstrations,
)
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


# ----- label descriptions and demonstrations -------------------------------------------------

DESCRIBED = PromptTemplate(descriptions={"sport": "matches, athletes and clubs", "tech": "gadgets and software"})
SEEDS = [
    ("Shares rose after the merger", "business"),
    ("The striker scored twice", "sport"),
    ("A new phone was unveiled", "tech"),
    ("Profits fell at the bank", "business"),
    ("The club sacked its coach", "sport"),
]


def test_descriptions_go_into_the_prompt_before_the_text():
    prompt = DESCRIBED.render("Apple launches a tablet", LABELS)
    assert "- sport: matches, athletes and clubs\n- tech: gadgets and software" in prompt
    assert "business:" not in prompt  # a label without a description is not listed in the block
    assert prompt.index("gadgets and software") < prompt.index("Text: Apple launches a tablet")


def test_descriptions_and_demonstrations_are_in_the_shared_prefix(chat_tokenizer):
    demonstrations, spares = choose_demonstrations(SEEDS, LABELS, per_class=1)
    template = replace(DESCRIBED, demonstrations=demonstrations, spare_demonstrations=spares)
    for tokenizer in (None, chat_tokenizer):
        prefix = template.shared_prefix(LABELS, tokenizer)
        assert "matches, athletes and clubs" in prefix
        assert all(text in prefix for text, _ in demonstrations)
        assert template.render("Apple launches a tablet", LABELS, tokenizer).startswith(prefix)
    # A base model reads them as a block in its completion prompt ...
    completion = template.shared_prefix(LABELS)
    for text, label in demonstrations:
        assert f"Text: {text}\nCategory: {label}" in completion


def test_a_chat_model_gets_demonstrations_as_earlier_turns(chat_tokenizer):
    demonstrations, spares = choose_demonstrations(SEEDS, LABELS, per_class=1)
    template = replace(DESCRIBED, demonstrations=demonstrations, spare_demonstrations=spares)
    (first, first_label), *rest = demonstrations
    # The first example with the whole instruction, the others and the text as the template's "Text:" line.
    expected = [{"role": "user", "content": DESCRIBED.instruction(first, LABELS)},
                {"role": "assistant", "content": first_label}]
    for text, label in rest:
        expected += [{"role": "user", "content": f"Text: {text}"}, {"role": "assistant", "content": label}]
    expected.append({"role": "user", "content": "Text: Apple launches a tablet"})
    assert template.render("Apple launches a tablet", LABELS, chat_tokenizer) == chat_tokenizer.apply_chat_template(
        expected, tokenize=False, add_generation_prompt=True)
    assert "Examples:" not in template.render("Apple launches a tablet", LABELS, chat_tokenizer)
    # A template that places {examples} itself keeps the block where it put it, in the one message.
    placed = replace(template, template=DEFAULT_TEMPLATE + "\n\n{examples}")
    rendered = placed.render("Apple launches a tablet", LABELS, chat_tokenizer)
    assert rendered.count("<|im_start|>user") == 1 and f"Text: {demonstrations[0][0]}\nCategory: {demonstrations[0][1]}" in rendered


def test_placeholders_place_the_blocks_where_the_user_wants_them():
    template = PromptTemplate(template="{descriptions}\n---\nLabels: {labels}\n{text}\n{examples}",
                              descriptions={"sport": "games"}, demonstrations=(("A goal", "sport"),))
    prompt = template.instruction("Some text", LABELS)
    assert prompt.startswith("What the categories mean:\n- sport: games\n---")
    assert prompt.endswith("Some text\nExamples:\nText: A goal\nCategory: sport")


def test_demonstrations_are_chosen_per_class_stably():
    demonstrations, spares = choose_demonstrations(SEEDS, LABELS, per_class=1)
    assert [label for _, label in demonstrations] == list(LABELS)
    assert {label for _, label in spares} == {"business", "sport"}  # tech has no second seed
    assert not set(demonstrations) & set(spares)
    again, _ = choose_demonstrations(list(reversed(SEEDS)) + [("Profits fell at the bank", "business")], LABELS, 1)
    assert again == demonstrations  # order and duplicates of the seeds do not change the choice
    with pytest.raises(PromptTemplateError, match=">= 0"):
        choose_demonstrations(SEEDS, LABELS, per_class=-1)


def test_no_text_is_scored_with_itself_as_a_demonstration(chat_tokenizer):
    demonstrations, spares = choose_demonstrations(SEEDS, LABELS, per_class=1)
    template = PromptTemplate(demonstrations=demonstrations, spare_demonstrations=spares)
    for text, label in SEEDS + [("Apple launches a tablet", "tech")]:
        shown = template.demonstrations_for(text)
        block = template.instruction(text, LABELS).rsplit("Text: ", 1)[0]  # everything before the text itself
        assert text not in block and all(d_text != text for d_text, _ in shown)
        assert template.render(text, LABELS, chat_tokenizer).count(text) == 1  # not among the earlier turns
        if (text, label) in demonstrations:
            spare = [s for s in spares if s[1] == label]
            # Swapped for a spare of its class when there is one, else dropped; the others stay.
            assert [d for d in shown if d[1] == label] == spare
            assert [d for d in shown if d[1] != label] == [d for d in demonstrations if d[1] != label]
        else:
            assert shown == demonstrations
    # Whitespace differences do not hide a demonstration from itself.
    assert all(d[0] != SEEDS[1][0] for d in template.demonstrations_for("  The striker\nscored twice "))


def test_demonstration_texts_are_shortened():
    long_text = "word " * 400
    prompt = PromptTemplate(demonstrations=((long_text, "sport"),)).instruction("x", LABELS)
    shown = prompt.split("Examples:\nText: ", 1)[1].split("\nCategory:", 1)[0]
    assert len(shown) <= DEMONSTRATION_CHARS and shown.endswith("…")


def test_as_key_changes_with_descriptions_and_demonstrations():
    base = PromptTemplate()
    assert DESCRIBED.as_key() != base.as_key()
    assert PromptTemplate(descriptions={"sport": "games"}).as_key() != PromptTemplate(descriptions={"sport": "play"}).as_key()
    assert PromptTemplate(demonstrations=(("A goal", "sport"),)).as_key() != base.as_key()
    # Blank descriptions are no descriptions; the mapping's order does not matter.
    assert PromptTemplate(descriptions={"sport": "  "}).as_key() == base.as_key()
    assert PromptTemplate(descriptions={"a": "x", "b": "y"}) == PromptTemplate(descriptions={"b": "y", "a": "x"})


def test_project_prompt_carries_descriptions_and_seed_demonstrations(tmp_path, monkeypatch):
    import pandas as pd

    from mollia_core.project import Project, ProjectError

    monkeypatch.setenv("MOLLIA_HOME", str(tmp_path / "home"))
    project = Project.create("prompted", root=tmp_path / "projects")
    frame = pd.DataFrame({"text": [t for t, _ in SEEDS] + ["Apple launches a tablet"],
                          "label": [label for _, label in SEEDS] + [""]})
    project.set_dataset(frame, "text", label_column="label", labels=LABELS, hold_out_validation=False)
    project.take_seeds_from_column(None)
    assert project.prompt() == PromptTemplate()
    project.set_label_descriptions({"sport": "matches and clubs", "tech": " "})
    project.set_demonstrations_per_class(1)
    prompt = project.prompt()
    assert prompt.descriptions == (("sport", "matches and clubs"),)
    assert prompt.demonstrations == choose_demonstrations(SEEDS, LABELS, 1)[0]
    assert "matches and clubs" in prompt.shared_prefix(LABELS)
    with pytest.raises(ProjectError, match="not in the label set"):
        project.set_label_descriptions({"weather": "rain"})
    with pytest.raises(ProjectError, match="0 to"):
        project.set_demonstrations_per_class(9)
