"""Hugging Face models as LLM annotators: a hub id or a local folder, through transformers.

Loading: ``quantization="auto"`` loads 4-bit through bitsandbytes where CUDA is present
(the paper's way of fitting 7-9B models on one 24 GB GPU); on a CPU it computes in bf16
where the CPU has native bf16 arithmetic (AVX512-BF16 / AMX, Arm BF16) and in fp32 elsewhere
(``cpu_compute_quantization``: on an AVX2-only CPU bf16 is emulated and about 3.5x slower
than fp32, measured with SmolLM2 in ``benchmarks/README.md``); "4bit",
"bf16" and "fp32" force one; "none" keeps the checkpoint's stored dtype. A GGUF file
(``gguf_file``) loads through transformers' GGUF support. The model loads lazily on the
first ``evidence`` call, and ``close()`` frees it: one model in memory at a time.

Offline: a hub id is resolved in the local Hugging Face cache only when the hub is
offline (``HF_HUB_OFFLINE=1``, as MoLLIA runs); one that was never downloaded gets an
``EvidenceError`` that says so, not a stack trace.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from .prompt import PromptTemplate, check_labels
from .record import EvidenceRecord
from .scoring import DecodingSettings, EvidenceEngine, TextEvidence
from .source import Cancelled, EvidenceError, EvidenceSource, Progress, ProgressCallback, resolve_text_ids

QUANTIZATIONS = ("auto", "4bit", "bf16", "fp32", "none")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def _folder_fingerprint(folder: Path, gguf_file: str | None) -> str:
    """Identifies a local model cheaply: its config and the names and sizes of its weight files.
    (A GGUF file is identified by name and size too; callers that know its sha256 pass it.)"""
    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            digest.update(path.read_bytes())
    for path in sorted(folder.iterdir()):
        if path.suffix in _WEIGHT_SUFFIXES and (gguf_file is None or path.suffix != ".gguf" or path.name == gguf_file):
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return digest.hexdigest()


NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX512-BF16 / AMX; Arm "bf16"


def cpu_compute_quantization(cpuinfo: str | None = None) -> str:
    """"bf16" where the CPU computes bf16 natively, else "fp32" (bf16 is emulated there)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "fp32"
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return "bf16" if flags.intersection(NATIVE_BF16_CPU_FLAGS) else "fp32"


class HuggingFaceSource(EvidenceSource):
    """An LLM loaded with transformers that gives exact z and sampled (or expected) c.

    model:        a hub id ("Qwen/Qwen2.5-7B-Instruct") or a local folder.
    gguf_file:    name of a GGUF file inside ``model`` (folder or hub repo), if it is one.
    template:     the prompt (default: the paper's wording); chat models get their chat template.
    n_samples, temperature, top_p, max_new_tokens, vote_mode, surface_forms: see ``DecodingSettings``.
    quantization: "auto" (4-bit on CUDA, bf16 otherwise), "4bit", "bf16", "fp32" or "none".
    device:       "auto" (CUDA if present, else CPU), or a torch device string.
    revision:     hub revision (branch, tag or commit); default the cached "main".
    chat:         force the chat template on (True) or off (False); None: use it if the tokenizer has one.
    fingerprint:  what identifies the weights in the cache key (e.g. a verified sha256); default:
                  the hub commit, or the folder's config and weight file sizes.
    n_threads:    torch CPU threads (default: ``scoring.default_threads()``).
    batch_size:   texts per model pass (default 8; not part of the cache key: it changes nothing
                  but float rounding).
    """

    def __init__(
        self,
        model: str,
        gguf_file: str | None = None,
        template: PromptTemplate | None = None,
        n_samples: int = 10,
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_new_tokens: int = 8,
        vote_mode: str = "sampled",
        surface_forms: bool = True,
        quantization: str = "auto",
        device: str = "auto",
        random_state: int = 0,
        name: str | None = None,
        revision: str | None = None,
        chat: bool | None = None,
        fingerprint: str | None = None,
        n_threads: int | None = None,
        batch_size: int = 8,
    ) -> None:
        if quantization not in QUANTIZATIONS:
            raise EvidenceError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
        self.model_id = str(model)
        self.gguf_file = gguf_file
        self.template = template or PromptTemplate()
        self.settings = DecodingSettings(n_samples, temperature, top_p, max_new_tokens, vote_mode, surface_forms)
        self.quantization = quantization
        self.device = device
        self.random_state = random_state
        self.revision = revision
        self.chat = chat
        self.n_threads = n_threads
        self.batch_size = batch_size
        self.name = name or Path(self.model_id.rstrip("/")).name
        self._fingerprint = fingerprint
        self._location: tuple[str, str] | None = None  # (path or id to load, revision/fingerprint)
        self._engine: EvidenceEngine | None = None

    # ----- where the weights are ------------------------------------------------------------

    def _locate(self) -> tuple[str, str]:
        """(what to pass to from_pretrained, what identifies the weights); checks availability."""
        if self._location is not None:
            return self._location
        folder = Path(self.model_id).expanduser()
        if folder.is_dir():
            if self.gguf_file is not None and not (folder / self.gguf_file).is_file():
                raise EvidenceError(f"{folder} has no file {self.gguf_file!r}: check gguf_file")
            if self.gguf_file is None and not (folder / "config.json").is_file():
                raise EvidenceError(
                    f"{folder} is not a transformers model folder (no config.json); "
                    "give the folder that holds config.json and the weights, or gguf_file for a GGUF file"
                )
            self._location = (str(folder), self._fingerprint or _folder_fingerprint(folder, self.gguf_file))
            return self._location
        looks_like_path = self.model_id.startswith((".", "/", "~")) or self.model_id.count("/") > 1
        if looks_like_path:
            raise EvidenceError(f"model folder {self.model_id} does not exist: give an existing folder or a hub id")
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            snapshot = Path(snapshot_download(self.model_id, revision=self.revision, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
            if _hub_offline():
                raise EvidenceError(
                    f"model {self.model_id} is not available offline: download it once with network "
                    f"(e.g. `huggingface-cli download {self.model_id}`), or give a local folder"
                ) from None
            # Online: transformers downloads it on load; the requested revision names it.
            self._location = (self.model_id, self._fingerprint or f"{self.model_id}@{self.revision or 'main'}")
            return self._location
        # The snapshot folder's name is the commit hash: evidence is tied to exactly these weights.
        self._location = (str(snapshot), self._fingerprint or f"{self.model_id}@{snapshot.name}")
        return self._location

    def resolved_quantization(self) -> str:
        """What "auto" means here: 4-bit where CUDA is present (not for GGUF files), else the
        CPU's fastest exact-enough float (``cpu_compute_quantization``)."""
        if self.quantization != "auto":
            return self.quantization
        import torch

        if torch.cuda.is_available() and self.gguf_file is None:
            return "4bit"
        return cpu_compute_quantization()

    @property
    def cache_key(self) -> str:
        _, weights = self._locate()
        return json.dumps(
            {
                "source": "huggingface",
                "model": self.model_id,
                "gguf_file": self.gguf_file,
                "weights": weights,
                "quantization": self.resolved_quantization(),
                "template": self.template.as_key(),
                "chat": self.chat,
                "decoding": self.settings.as_key(),
                "random_state": self.random_state,
            },
            sort_keys=True,
        )

    # ----- loading --------------------------------------------------------------------------

    def _load_kwargs(self, device: str) -> dict[str, Any]:
        import torch

        quantization = self.resolved_quantization()
        kwargs: dict[str, Any] = {"revision": self.revision} if self.revision else {}
        if self.gguf_file is not None:
            kwargs["gguf_file"] = self.gguf_file
        if quantization == "4bit":
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                raise EvidenceError(
                    "4-bit loading needs bitsandbytes: `pip install bitsandbytes==0.50.2`, "
                    "or choose quantization='bf16'"
                ) from None
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
            )
            kwargs["device_map"] = {"": device}
        else:
            kwargs["dtype"] = {"bf16": torch.bfloat16, "fp32": torch.float32, "none": "auto"}[quantization]
        return kwargs

    def load(self) -> EvidenceEngine:
        """Load the model (once) and return its evidence engine."""
        if self._engine is not None:
            return self._engine
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        target, _ = self._locate()
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        kwargs = self._load_kwargs(device)
        tokenizer_kwargs = {k: kwargs[k] for k in ("gguf_file", "revision") if k in kwargs}
        try:
            tokenizer = AutoTokenizer.from_pretrained(target, **tokenizer_kwargs)
            model = AutoModelForCausalLM.from_pretrained(target, **kwargs)
        except (OSError, ValueError) as error:
            raise EvidenceError(f"could not load model {self.model_id}: {error}") from None
        if "device_map" not in kwargs:
            model = model.to(device)
        self._engine = EvidenceEngine(
            model, tokenizer, self.template, self.settings, self.chat, self.n_threads, self.batch_size
        )
        return self._engine

    def close(self) -> None:
        """Free the model."""
        if self._engine is not None:
            self._engine = None
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:  # pragma: no cover - torch is a core dependency
                pass

    # ----- evidence -------------------------------------------------------------------------

    def evidence(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        text_ids: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[EvidenceRecord]:
        """One record per text: z (Eq. 1), c (Eq. 2, sampled or expected), the raw answers, and
        in ``meta`` the mass on labels and both kinds of vote shares. On cancel, ``Cancelled``
        carries the finished texts' records in ``partial``."""
        labels = check_labels(labels)
        ids = resolve_text_ids(texts, text_ids)
        engine = self.load()
        start = time.monotonic()

        def report(done: int) -> None:
            if progress is not None:
                progress(Progress(done=done, total=len(texts), elapsed_s=time.monotonic() - start))

        try:
            results = engine.score_texts(texts, labels, self.random_state, on_text_done=report, cancel=cancel)
        except Cancelled as stop:
            stop.partial = self._records(ids, labels, stop.partial)
            raise
        return self._records(ids, labels, results)

    def _records(self, ids: Sequence[str], labels: tuple[str, ...], results: Sequence[TextEvidence]) -> list[EvidenceRecord]:
        return [
            EvidenceRecord(
                text_id=text_id,
                model=self.name,
                labels=labels,
                label_probs=result.label_probs,
                vote_shares=result.vote_shares,
                no_label_share=result.no_label_share,
                answers=result.answers,
                meta={
                    "mass_on_labels": result.mass_on_labels,
                    "sequence_probs": result.sequence_probs.tolist(),
                    "sampled_vote_shares": result.sampled_vote_shares.tolist(),
                    "expected_vote_shares": result.expected_vote_shares.tolist(),
                    "vote_mode": result.vote_mode,
                    "canonical_label_probs": result.canonical_label_probs.tolist(),
                },
            )
            for text_id, result in zip(ids, results)
        ]
