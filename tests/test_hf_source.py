"""HuggingFaceSource: offline errors, cache keys, and evidence records from the real SmolLM2."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from mollia_core.evidence.hf import HuggingFaceSource
from mollia_core.evidence.prompt import PromptTemplate, PromptTemplateError
from mollia_core.evidence.source import Cancelled, EvidenceError

LABELS = ("abbreviation", "entity", "description", "human", "location", "numeric")
TEXTS = ("Who wrote The Night of the Iguana ?", "How far is it from Denver to Aspen ?", "What does NASA stand for ?")


@pytest.fixture(scope="module")
def smollm2_folder():
    from mollia_core.evidence.embedded import prepare_embedded_model

    return str(prepare_embedded_model("smollm2-135m"))


@pytest.fixture(scope="module")
def smollm2_source(smollm2_folder):
    # batch_size 2: the three texts go through the model as a batch of 2 and a batch of 1.
    source = HuggingFaceSource(smollm2_folder, quantization="bf16", n_threads=1, name="smollm2", batch_size=2)
    yield source
    source.close()


def test_missing_hub_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    source = HuggingFaceSource("mollia-test/not-a-downloaded-model", quantization="bf16")
    with pytest.raises(EvidenceError, match="not available offline: download it once with network"):
        source.evidence(["a text"], ["a", "b"])
    with pytest.raises(EvidenceError, match="not available offline"):
        source.cache_key


def test_missing_folder_and_bad_options_are_clear_errors(tmp_path):
    with pytest.raises(EvidenceError, match="does not exist"):
        HuggingFaceSource(str(tmp_path / "nowhere" / "model")).cache_key
    with pytest.raises(EvidenceError, match="no config.json"):
        HuggingFaceSource(str(tmp_path)).cache_key
    with pytest.raises(EvidenceError, match="has no file"):
        HuggingFaceSource(str(tmp_path), gguf_file="model.gguf").cache_key
    with pytest.raises(EvidenceError, match="quantization"):
        HuggingFaceSource(str(tmp_path), quantization="8bit")
    with pytest.raises(EvidenceError, match="vote_mode"):
        HuggingFaceSource(str(tmp_path), vote_mode="maybe")


def test_four_bit_without_bitsandbytes_says_what_to_install(smollm2_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if it were not installed
    source = HuggingFaceSource(smollm2_folder, quantization="4bit")
    with pytest.raises(EvidenceError, match="pip install bitsandbytes"):
        source.load()


def test_cache_key_covers_model_template_decoding_and_vote_mode(smollm2_folder):
    base = HuggingFaceSource(smollm2_folder, quantization="bf16")
    variants = [
        HuggingFaceSource(smollm2_folder, quantization="fp32"),
        HuggingFaceSource(smollm2_folder, quantization="bf16", template=PromptTemplate("Topic? {labels}\n{text}")),
        HuggingFaceSource(smollm2_folder, quantization="bf16", temperature=1.0),
        HuggingFaceSource(smollm2_folder, quantization="bf16", n_samples=5),
        HuggingFaceSource(smollm2_folder, quantization="bf16", vote_mode="expected"),
        HuggingFaceSource(smollm2_folder, quantization="bf16", random_state=1),
        HuggingFaceSource(smollm2_folder, quantization="bf16", fingerprint="sha256:other-weights"),
    ]
    keys = {base.cache_key} | {v.cache_key for v in variants}
    assert len(keys) == len(variants) + 1
    assert HuggingFaceSource(smollm2_folder, quantization="bf16").cache_key == base.cache_key


@pytest.mark.slow
def test_evidence_records_progress_and_close(smollm2_source):
    seen = []
    records = smollm2_source.evidence(TEXTS, LABELS, text_ids=["a", "b", "c"], progress=seen.append)
    assert [r.text_id for r in records] == ["a", "b", "c"]
    assert [p.done for p in seen] == [2, 3] and all(p.total == 3 for p in seen)  # reported per batch
    for record in records:
        assert record.model == "smollm2" and record.labels == LABELS
        assert record.label_probs.sum() == pytest.approx(1.0) and np.all(record.label_probs >= 0)
        assert record.vote_shares.sum() <= 1 + 1e-9
        assert record.no_label_share == pytest.approx(1 - record.vote_shares.sum())
        assert len(record.answers) == 10
        assert 0 < record.meta["mass_on_labels"] <= 1
    smollm2_source.close()
    assert smollm2_source._engine is None
    again = smollm2_source.evidence(TEXTS[:1], LABELS)  # loads again after close
    assert again[0].answers == records[0].answers  # same random_state, same answers


@pytest.mark.slow
def test_cancel_between_batches_keeps_the_finished_ones(smollm2_source):
    cancel = threading.Event()

    def stop_after_first_batch(progress):
        if progress.done == 2:
            cancel.set()

    with pytest.raises(Cancelled) as raised:
        smollm2_source.evidence(TEXTS, LABELS, progress=stop_after_first_batch, cancel=cancel)
    assert [r.text_id for r in raised.value.partial] == ["0", "1"]


@pytest.mark.slow
def test_empty_label_set_is_a_clear_error(smollm2_source):
    with pytest.raises(PromptTemplateError, match="label set is empty"):
        smollm2_source.evidence(TEXTS, [])


@pytest.mark.slow
def test_four_bit_loading_through_bitsandbytes_on_cpu(smollm2_folder):
    pytest.importorskip("bitsandbytes")
    source = HuggingFaceSource(
        smollm2_folder, quantization="4bit", device="cpu", n_threads=1, n_samples=2, max_new_tokens=2
    )
    try:
        [record] = source.evidence(TEXTS[:1], LABELS)
        assert type(source.load().model.model.layers[0].mlp.down_proj).__name__ == "Linear4bit"
    finally:
        source.close()
    assert record.label_probs.sum() == pytest.approx(1.0) and len(record.answers) == 2
