"""Parsing of sampled answers and vote shares (Eq. 2), on hand cases and the paper's real answers."""

from __future__ import annotations

import numpy as np
import pytest

from mollia_core.evidence.parsing import AnswerParser, label_surface_forms, parse_answer, vote_shares

TREC = ("abbreviation", "entity", "description", "human", "location", "numeric")
SENTIMENT = ("negative", "positive", "very negative", "very positive", "neutral")


@pytest.mark.parametrize(
    "answer, expected",
    [
        # plain, case, wrappers
        ("entity", "entity"),
        ("Entity", "entity"),
        ("  NUMERIC \n", "numeric"),
        ('"abbreviation"', "abbreviation"),  # real llama/mistral answer
        ("'human'", "human"),
        ("`location`", "location"),
        ("**description**", "description"),
        ("“entity”", "entity"),
        ("entity.", "entity"),
        ("entity!", "entity"),
        # prefixes
        ("Answer: human", "human"),
        ("Category: LOCATION", "location"),
        ("Label - numeric", "numeric"),
        ("**Answer:** Numeric.", "numeric"),
        ("Output:\nentity", "entity"),
        # trailing explanation after a newline or a period
        ("human\n\n(this question is asking for the birthdate of a person)", "human"),
        ("human. The question asks about a person", "human"),
        (
            "numeric\n\njustification: the question is asking for the first and last letters of the greek "
            "alphabet, which are numerical positions in the alphabet.",
            "numeric",
        ),
        ("numeric\nlocation", "numeric"),  # real yi answer: the second line is taken as explanation
        # parenthesised remarks are not label mentions
        ("numeric (for the year)", "numeric"),
        ('"entity" (retriever is an entity here, and the question is asking about its role, which is a '
         'description)', "entity"),
        ("location (assuming \"big bang\" refers to a location or event in the universe)", "location"),
        ("human, human (two entities in one question)", "human"),  # one label, repeated
        # a sentence naming one label, the label quoted beside a quoted question
        (
            "the most appropriate category for the question \"what's the most commonly-spoken language in "
            "belgium?\" is \"description\".",
            "description",
        ),
        ("based on the provided question, the most appropriate category is:\n\n\"numeric\"", "numeric"),
        # a chain of thought ending with an explicit output line (real yi answer, shortened)
        (
            'the task is to categorize the given question into one of the following categories: "abbreviation", '
            '"entity", "description", "human", "location", or "numeric".\n\nstep 1: analyze the question\n'
            "the focus is on identifying a specific event.\n\noutput:\nentity",
            "entity",
        ),
        ("step 1: read it\nstep 2: think\nOutput: numeric", "numeric"),
    ],
)
def test_answers_naming_one_label(answer, expected):
    assert parse_answer(answer, TREC) == TREC.index(expected)


@pytest.mark.parametrize(
    "answer",
    [
        "human, entity",  # several labels: real mistral answer
        "human, entity, description",
        "location, human (implied)",
        "numeric & location",
        "entity, numeric (for the year)",
        "human (buffalo is referring to people, not the animal) or entity (buffalo wings is a type of food)",
        "date",  # not a label
        "historicalevent",
        '"speed (numeric)"',  # the only label is inside a remark
        "I can't assist with that request.",
        "",
        "   \n ",
        "entitys",  # whole words only
        "humanity",
    ],
)
def test_answers_naming_no_label_or_several(answer):
    assert parse_answer(answer, TREC) is None


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Very Positive", "very positive"),  # longest label wins over its prefix "positive"
        ("very positive!", "very positive"),
        ("very_positive", "very positive"),
        ("very-positive", "very positive"),
        ("positive", "positive"),
        ("The sentiment is very negative.", "very negative"),
        ("Positive. Not negative at all", "positive"),  # first sentence is the answer
        ("Sentiment: neutral", "neutral"),
        ("not positive", None),  # a negation makes it ambiguous
        ("the review is not \"positive\"", None),
        ("positive, negative", None),
        ("very positive or positive", None),
    ],
)
def test_multi_word_labels_sharing_words(answer, expected):
    result = parse_answer(answer, SENTIMENT)
    assert result == (None if expected is None else SENTIMENT.index(expected))


def test_label_that_is_a_negation_word_still_parses():
    labels = ("yes", "no")
    assert parse_answer("No.", labels) == 1
    assert parse_answer("Answer: yes", labels) == 0
    assert parse_answer("yes, no", labels) is None


def test_labels_with_punctuation_and_case():
    labels = ("Sci-Fi", "U.S. politics", "Other")
    assert parse_answer("sci fi", labels) == 0
    assert parse_answer("u.s. politics", labels) == 1
    assert parse_answer('"Other"', labels) == 2


def test_bad_label_sets_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="label set is empty"):
        AnswerParser([])
    with pytest.raises(ValueError, match="differ only in case"):
        AnswerParser(["Positive", "positive"])
    with pytest.raises(ValueError, match="blank"):
        AnswerParser(["ok", "  "])


def test_non_string_answer_names_no_label():
    assert parse_answer(None, TREC) is None  # type: ignore[arg-type]


def test_vote_shares_eq2():
    answers = ["entity", '"entity"', "human, entity", "date", "Human", "entity (thing)", "", "numeric", "x", "y"]
    c, none = vote_shares(answers, TREC)
    assert c.shape == (6,)
    np.testing.assert_allclose(c, [0, 0.3, 0, 0.1, 0, 0.1])
    assert none == pytest.approx(0.5)
    assert c.sum() + none == pytest.approx(1.0)


def test_vote_shares_without_answers():
    c, none = vote_shares([], TREC)
    assert not c.any() and none == 1.0


def test_real_paper_answers_keep_every_exact_match_and_recover_more(trec):
    """The paper's c (exact string match) must be a lower bound of ours, text by text,
    and the robust parser must recover answers the exact match lost (quoted labels...)."""
    recovered = 0
    for j, model in enumerate(trec.evidence.models):
        ours = np.array([vote_shares(trec.evidence.answers[i][j], TREC)[0] for i in range(len(trec.evidence))])
        paper = trec.evidence.vote_shares[:, j]
        assert np.all(ours >= paper - 1e-9), model
        recovered += int(np.sum(ours.sum(1) > paper.sum(1) + 1e-9))
    assert recovered > 100


def test_surface_forms_are_distinct_and_never_shared_between_labels():
    labels = ("sport", "sports", "business", "category", "world news")
    forms = label_surface_forms(labels)
    assert forms[0] == ("sport",) and forms[1] == ("sports",)  # each other's plural: neither gets it
    assert forms[2] == ("business", "Business", '"business', '"Business')
    assert {"categories", "Category", "Categories", '"category'} <= set(forms[3])
    flat = [form for label_forms in forms for form in label_forms]
    assert len(flat) == len(set(flat))
    assert [f[0] for f in forms] == list(labels)
    assert "new" not in label_surface_forms(("news", "sport"))[0]  # "news" is no plural


def test_parser_accepts_the_surface_forms_that_z_sums():
    labels = ("sport", "business", "tech")
    for form in label_surface_forms(labels, quotes=True)[0]:
        assert parse_answer(form, labels) == 0
    assert parse_answer("Sports", labels) == 0
    assert parse_answer("This is about sports.", labels) == 0
    assert parse_answer("sports", ("sport", "sports")) == 1  # a label itself wins over another's plural
