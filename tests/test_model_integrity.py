"""What loads is what was verified: a corrupted GGUF copy or converted file is reported and rebuilt.

Real files throughout: SmolLM2's GGUF from its package, converted for real in a temporary
MOLLIA_HOME; corruption is one flipped byte, as a failing disk or a stray write would leave it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from mollia_core import cli
from mollia_core.evidence import embedded
from mollia_core.evidence.embedded import (
    EMBEDDED_MODELS,
    converted_dir,
    embedded_gguf_path,
    is_prepared,
    prepare_embedded_model,
    sha256_file,
)

SMALLEST = "smollm2-135m"
MODEL = EMBEDDED_MODELS[SMALLEST]


def flip_byte(path: Path, *, keep_mtime: bool = False) -> None:
    """Invert one byte in the middle of ``path`` in place (optionally restoring its times)."""
    stat = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(stat.st_size // 2)
        byte = handle.read(1)
        handle.seek(stat.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def recorded_files(name: str = SMALLEST) -> dict:
    return json.loads((converted_dir(name) / "mollia-model.json").read_text())["files"]


@pytest.fixture(scope="module")
def converted_once(tmp_path_factory):
    """One real prepare of SmolLM2 in its own MOLLIA_HOME; tests copy it rather than convert again."""
    home = tmp_path_factory.mktemp("prepared-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOLLIA_HOME", str(home))
        prepare_embedded_model(SMALLEST)
    return home


@pytest.fixture
def prepared_home(converted_once, tmp_path, monkeypatch):
    """A fresh copy of the prepared MOLLIA_HOME (file times preserved, as the records expect)."""
    home = tmp_path / "home"
    shutil.copytree(converted_once, home, copy_function=shutil.copy2)
    monkeypatch.setenv("MOLLIA_HOME", str(home))
    return home


@pytest.fixture
def quick_reconversion(converted_once, monkeypatch):
    """Rebuilds copy the pristine conversion (the real one is tested above): for tests of what triggers them."""
    pristine = converted_once / "models" / SMALLEST
    calls = []

    def copy_pristine(model, gguf, out):
        calls.append(model.name)
        for path in pristine.iterdir():
            if path.name != "mollia-model.json":
                shutil.copy2(path, out / path.name)

    monkeypatch.setattr(embedded, "_convert", copy_pristine)
    return calls


@pytest.mark.slow
def test_conversion_records_the_digest_of_every_converted_file(prepared_home):
    files = recorded_files()
    folder = converted_dir(SMALLEST)
    on_disk = {path.name for path in folder.iterdir()} - {"mollia-model.json"}
    assert set(files) == on_disk and "model.safetensors" in files
    for name, record in files.items():
        assert record["sha256"] == sha256_file(folder / name)
        assert record["size"] == (folder / name).stat().st_size
    stamp = json.loads((prepared_home / "models" / "gguf" / f"{MODEL.gguf_file}.json").read_text())
    assert stamp["sha256"] == MODEL.sha256 and stamp["size"] == MODEL.size


@pytest.mark.slow
def test_flipped_byte_in_converted_weights_is_reported_and_rebuilt_by_models_prepare(prepared_home, capsys):
    weights = converted_dir(SMALLEST) / "model.safetensors"
    good = recorded_files()["model.safetensors"]["sha256"]
    flip_byte(weights)
    bad = sha256_file(weights)
    assert not is_prepared(SMALLEST)  # never loadable as it is

    assert cli.main(["models", "prepare", SMALLEST]) == 0
    out = capsys.readouterr().out
    assert (f"{SMALLEST}: the converted copy in {converted_dir(SMALLEST)} does not match what was verified "
            f"(model.safetensors has sha256 {bad}, expected {good}); converting it again") in out
    assert f"{SMALLEST}: ready in {converted_dir(SMALLEST)}" in out
    assert sha256_file(weights) == good  # the conversion is deterministic: the same weights again
    assert is_prepared(SMALLEST)


@pytest.mark.slow
def test_change_that_kept_the_file_time_is_caught_by_verify(prepared_home, quick_reconversion, capsys):
    config = converted_dir(SMALLEST) / "config.json"
    good = recorded_files()["config.json"]["sha256"]
    flip_byte(config, keep_mtime=True)
    # The free check (size, time) cannot see this; the full check can.
    assert is_prepared(SMALLEST)
    assert cli.main(["models", "prepare", "--verify", SMALLEST]) == 0
    out = capsys.readouterr().out
    assert "does not match what was verified (config.json has sha256" in out and "converting it again" in out
    assert sha256_file(config) == good and quick_reconversion == [SMALLEST]
    assert cli.main(["models", "prepare", "--verify", SMALLEST]) == 0
    assert f"{SMALLEST}: verified (sha256 of the GGUF copy and of every converted file)" in capsys.readouterr().out


@pytest.mark.slow
def test_loading_rebuilds_a_corrupt_copy_before_anything_reads_it(prepared_home, quick_reconversion, caplog,
                                                                  monkeypatch):
    tokenizer = converted_dir(SMALLEST) / "tokenizer.json"
    good = recorded_files()["tokenizer.json"]["sha256"]
    flip_byte(tokenizer)
    loaded_hashes = []

    class RecordingSource:  # stands in for HuggingFaceSource: records what it would have loaded
        def __init__(self, folder, **kwargs):
            loaded_hashes.append(sha256_file(Path(folder) / "tokenizer.json"))

    import mollia_core.evidence.hf as hf

    monkeypatch.setattr(hf, "HuggingFaceSource", RecordingSource)
    caplog.set_level(logging.WARNING, logger="mollia_core.evidence.embedded")
    embedded.EmbeddedSource(SMALLEST)._load()
    assert loaded_hashes == [good] and quick_reconversion == [SMALLEST]
    assert "tokenizer.json has sha256" in caplog.text and "converting it again" in caplog.text


@pytest.mark.slow
def test_touched_but_unchanged_file_is_rehashed_once_and_not_rebuilt(prepared_home, monkeypatch):
    weights = converted_dir(SMALLEST) / "model.safetensors"
    os.utime(weights)  # new time, same bytes
    monkeypatch.setattr(embedded, "_convert", lambda *a: pytest.fail("rebuilt an intact copy"))
    assert prepare_embedded_model(SMALLEST) == converted_dir(SMALLEST)
    assert recorded_files()["model.safetensors"]["mtime_ns"] == weights.stat().st_mtime_ns
    monkeypatch.setattr(embedded, "sha256_file", lambda *a: pytest.fail("re-hashed after the record was updated"))
    assert is_prepared(SMALLEST)


def test_flipped_byte_in_the_gguf_copy_is_reported_and_assembled_again(mollia_home, caplog):
    path = embedded_gguf_path(SMALLEST)
    flip_byte(path)
    bad = sha256_file(path)
    said = []
    assert embedded_gguf_path(SMALLEST, progress=said.append) == path
    assert said == [f"{SMALLEST}: the cached copy {path} is corrupt ({path.name} has sha256 {bad}, "
                    f"expected {MODEL.sha256}); assembling it again"]
    assert sha256_file(path) == MODEL.sha256
    flip_byte(path)  # without a progress callback (the app) the warning goes to the log
    caplog.set_level(logging.WARNING, logger="mollia_core.evidence.embedded")
    assert embedded_gguf_path(SMALLEST) == path
    assert f"{SMALLEST}: the cached copy {path} is corrupt" in caplog.text
    assert sha256_file(path) == MODEL.sha256


def test_gguf_copy_changed_without_a_new_file_time_is_caught_by_verify(mollia_home):
    path = embedded_gguf_path(SMALLEST)
    flip_byte(path, keep_mtime=True)
    said = []
    embedded_gguf_path(SMALLEST, verify=True, progress=said.append)
    assert len(said) == 1 and "is corrupt" in said[0]
    assert sha256_file(path) == MODEL.sha256
