"""The evidence engine on a transformers causal LM: exact label probabilities (Eq. 1) and
vote shares of sampled answers (Eq. 2), with the prompt's KV cache shared by every step.

Per label set, the part of the prompt before the text (instructions and label list) is
prefilled once and its KV cache kept. Per text:

1. copy that cache and prefill only the rest of the prompt (the text and the chat
   template's tail) -> the next-token logits where the answer starts;
2. z (Eq. 1): the K label token sequences go through the model in ONE batch on a copy of
   the prompt cache (expanded to K rows, right-padded), so P(label | prompt) is the exact
   product of its tokens' probabilities and labels sharing a first token are told apart.
   ``sequence_probs`` keeps the raw probabilities (their sum is the "mass on labels"),
   ``label_probs`` renormalises them over the label set;
3. c (Eq. 2): T answers are sampled in ONE batch on the prompt cache expanded to T rows
   (temperature, top-p, a few tokens, stopping at an end token or the end of the first
   line) and parsed with ``parsing.parse_answer``;
4. expected vote shares, from the same label pass at no extra model cost: the probability
   that the sampler (same temperature and top-p) writes exactly the label - as written or
   with its first letter upper-cased - and then stops (an end token or a newline). Answers
   that name the label another way ("Category: entity", "'entity'", "entity.") also count
   in sampled votes but not here, so the expected share is a lower bound of the share the
   parser would give in the limit of many samples; it carries no sampling noise.
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .parsing import vote_shares
from .prompt import PromptTemplate, check_labels
from .source import Cancelled, EvidenceError

VOTE_MODES = ("sampled", "expected")
#: End-of-turn tokens of common chat families, treated as the end of an answer when present.
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<eos>", "<|eot_id|>", "</s>", "<|end|>")


@dataclass(frozen=True)
class DecodingSettings:
    """How answers are sampled (Eq. 2) and which vote shares become c.

    n_samples: T sampled answers per text (0 only with ``vote_mode="expected"``).
    vote_mode: "sampled" (shares of the T parsed answers, as in the paper) or "expected"
               (exact probability of each label's answer, no sampling noise; see module doc).
    """

    n_samples: int = 10
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 8
    vote_mode: str = "sampled"

    def __post_init__(self) -> None:
        if self.vote_mode not in VOTE_MODES:
            raise EvidenceError(f"vote_mode must be one of {VOTE_MODES}, not {self.vote_mode!r}")
        if self.n_samples < 0 or (self.n_samples == 0 and self.vote_mode == "sampled"):
            raise EvidenceError(
                f"n_samples={self.n_samples}: sampled votes need at least one answer per text "
                "(the paper uses 10); use vote_mode='expected' to skip sampling"
            )
        if not self.temperature > 0:
            raise EvidenceError(f"temperature must be > 0 (the paper uses 0.7), not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise EvidenceError(f"top_p must be in (0, 1] (the paper uses 0.9), not {self.top_p}")
        if self.max_new_tokens < 1:
            raise EvidenceError(f"max_new_tokens must be >= 1, not {self.max_new_tokens}")

    def as_key(self) -> dict:
        return {
            "n_samples": self.n_samples,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "vote_mode": self.vote_mode,
        }


@dataclass(frozen=True)
class TextEvidence:
    """What the engine found for one text over a label set."""

    label_probs: np.ndarray  # z (Eq. 1), renormalised over the label set: sums to 1
    sequence_probs: np.ndarray  # raw P(label tokens | prompt); their sum is the mass on labels
    sampled_vote_shares: np.ndarray  # c (Eq. 2) from the parsed sampled answers
    expected_vote_shares: np.ndarray  # exact share of the canonical answer per label (lower bound)
    answers: tuple[str, ...]
    vote_mode: str = "sampled"

    @property
    def mass_on_labels(self) -> float:
        """How much of the model's answer probability falls on the label sequences at all."""
        return float(self.sequence_probs.sum())

    @property
    def vote_shares(self) -> np.ndarray:
        """c as chosen by ``vote_mode``."""
        return self.expected_vote_shares if self.vote_mode == "expected" else self.sampled_vote_shares

    @property
    def no_label_share(self) -> float:
        return float(np.clip(1.0 - self.vote_shares.sum(), 0.0, 1.0))


def sampling_distribution(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The distribution the sampler draws from: softmax(logits / T) restricted to the
    smallest set of most likely tokens holding at least ``top_p`` of the mass, renormalised."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


def default_threads() -> int:
    """``MOLLIA_TORCH_THREADS`` if set, else the cores this process may use. On a machine
    shared with other busy processes, 1 thread can be many times faster than 2 (idle OpenMP
    workers spin while their partner is descheduled): set the variable there."""
    value = os.environ.get("MOLLIA_TORCH_THREADS")
    return int(value) if value else len(os.sched_getaffinity(0))


def text_seed(random_state: int, text: str) -> int:
    """A per-text seed, so a text's answers do not depend on its position or on batching."""
    digest = hashlib.sha256(f"{random_state}\x00{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class _PreparedLabels:
    """Token sequences and the shared-prefix cache of one label set."""

    labels: tuple[str, ...]
    sequences: list[list[int]]  # canonical label tokens, as they follow the prompt
    rows: list[list[int]]  # scoring batch: canonical sequences, then spelling variants
    row_label: list[int]  # label index of each row
    prefix_ids: list[int] = field(default_factory=list)
    prefix_cache: Any = None


class EvidenceEngine:
    """Exact z and sampled / expected c for texts, from one causal LM and its tokenizer.

    chat: whether the model gets its chat template (None: if the tokenizer has one).
    n_threads: torch CPU threads, set explicitly (default: ``default_threads()``).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: PromptTemplate | None = None,
        settings: DecodingSettings | None = None,
        chat: bool | None = None,
        n_threads: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template or PromptTemplate()
        self.settings = settings or DecodingSettings()
        self.chat = PromptTemplate.uses_chat(tokenizer, chat)
        self.n_threads = n_threads or default_threads()
        torch.set_num_threads(self.n_threads)
        self.device = next(model.parameters()).device
        self._prepared: _PreparedLabels | None = None
        self._stop_mask: torch.Tensor | None = None
        self._stop_ids: set[int] | None = None

    # ----- tokenisation -------------------------------------------------------------------

    def _encode(self, prompt: str) -> list[int]:
        # A rendered chat template already holds its special tokens; a completion prompt
        # gets the tokenizer's own (BOS).
        return list(self.tokenizer(prompt, add_special_tokens=not self.chat)["input_ids"])

    def prompt_ids(self, text: str, labels: Sequence[str]) -> list[int]:
        """Token ids of the full prompt for ``text``."""
        return self._encode(self.template.render(text, labels, self.tokenizer, self.chat))

    def _continuation(self, prompt: str, prompt_ids: list[int], answer: str) -> list[int]:
        """Tokens of ``answer`` as they follow ``prompt`` (tokenised together, so merges at
        the boundary and a tokenizer's leading-space handling come out as in generation)."""
        joint = self._encode(prompt + answer)
        if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
            return joint[len(prompt_ids) :]
        return list(self.tokenizer(answer, add_special_tokens=False)["input_ids"])

    def label_sequences(self, labels: Sequence[str]) -> list[list[int]]:
        """Each label's token ids as they would follow the prompt."""
        return self._prepare(labels).sequences

    def _prepare(self, labels: Sequence[str]) -> _PreparedLabels:
        labels = check_labels(labels)
        if self._prepared is not None and self._prepared.labels == labels:
            return self._prepared
        probe = self.template.render("x", labels, self.tokenizer, self.chat)
        probe_ids = self._encode(probe)
        lead = self.template.answer_lead(self.tokenizer, self.chat)
        sequences = [self._continuation(probe, probe_ids, lead + label) for label in labels]
        for label, tokens in zip(labels, sequences):
            if not tokens:
                raise EvidenceError(f"label {label!r} tokenises to nothing: give it a visible name")
        rows, row_label = [list(s) for s in sequences], list(range(len(labels)))
        for k, label in enumerate(labels):
            variant = label[:1].upper() + label[1:]
            if variant != label and variant not in labels:
                rows.append(self._continuation(probe, probe_ids, lead + variant))
                row_label.append(k)
        prepared = _PreparedLabels(labels, sequences, rows, row_label)
        prefix = self.template.shared_prefix(labels, self.tokenizer, self.chat)
        prefix_ids = self._encode(prefix) if prefix else []
        if len(prefix_ids) > 1:
            cache = self._new_cache()
            with torch.inference_mode():
                self.model(input_ids=self._tensor([prefix_ids]), cache=cache, use_cache=True, logits_to_keep=1)
            prepared.prefix_ids, prepared.prefix_cache = prefix_ids, cache
        self._prepared = prepared
        return prepared

    # ----- model passes ---------------------------------------------------------------------

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _tensor(self, rows: list[list[int]]) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def _prompt_pass(self, ids: list[int], prepared: _PreparedLabels) -> tuple[torch.Tensor, Any]:
        """Prefill the prompt, reusing the shared prefix's cache; -> (next-token logits, cache)."""
        reused = min(common_prefix_length(prepared.prefix_ids, ids), len(ids) - 1)
        cache = None
        if prepared.prefix_cache is not None and reused > 0:
            cache = copy.deepcopy(prepared.prefix_cache)
            try:
                cache.crop(reused - len(prepared.prefix_ids))
            except RuntimeError:  # a sliding-window layer cannot roll back: prefill all of it
                cache = None
        if cache is None:
            cache, reused = self._new_cache(), 0
        out = self.model(input_ids=self._tensor([ids[reused:]]), cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1].float(), cache

    def _stops(self) -> tuple[set[int], torch.Tensor]:
        """Token ids that end an answer, and a vocabulary mask of them plus newline tokens."""
        if self._stop_mask is None:
            tok = self.tokenizer
            ids: set[int] = set(tok.all_special_ids)
            for source in (tok.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
                if source is not None:
                    ids.update([source] if isinstance(source, int) else source)
            vocab = tok.get_vocab()
            ids.update(vocab[t] for t in _END_TOKENS if t in vocab)
            ids.discard(tok.bos_token_id)
            size = self.model.get_output_embeddings().weight.shape[0]
            pieces = tok.batch_decode([[i] for i in range(min(size, len(tok)))])
            mask = torch.zeros(size, dtype=torch.bool)
            for i, piece in enumerate(pieces):
                if "\n" in piece and not piece.split("\n", 1)[0].strip():
                    mask[i] = True
            mask[[i for i in ids if i < size]] = True
            self._stop_ids, self._stop_mask = ids, mask.to(self.device)
        return self._stop_ids, self._stop_mask

    def _label_pass(
        self, last_logits: torch.Tensor, cache: Any, prepared: _PreparedLabels
    ) -> tuple[np.ndarray, np.ndarray]:
        """Eq. 1 in one batch: -> (log P(label tokens | prompt) per label, expected vote share per label)."""
        rows = prepared.rows
        lengths = [len(r) for r in rows]
        width = max(lengths)
        padded = [r + [r[-1]] * (width - len(r)) for r in rows]  # right padding never reaches real tokens
        batch_cache = copy.deepcopy(cache)
        batch_cache.batch_repeat_interleave(len(rows))
        out = self.model(input_ids=self._tensor(padded), cache=batch_cache, use_cache=True)
        # logits[:, t] predicts token t of the row; logits[:, len] predicts what follows the label.
        logits = torch.cat([last_logits.expand(len(rows), 1, -1), out.logits.float()], dim=1)
        log_probs = torch.log_softmax(logits, dim=-1)
        sample_probs = sampling_distribution(logits, self.settings.temperature, self.settings.top_p)
        _, stop_mask = self._stops()
        n_labels = len(prepared.labels)
        log_sequence = np.zeros(n_labels)
        expected = np.zeros(n_labels)
        for r, (tokens, k) in enumerate(zip(rows, prepared.row_label)):
            positions = torch.arange(len(tokens))
            token_ids = torch.tensor(tokens)
            p_answer = sample_probs[r, positions, token_ids].prod() * sample_probs[r, len(tokens)][stop_mask].sum()
            expected[k] += float(p_answer)
            if r < n_labels:  # canonical spelling: Eq. 1
                log_sequence[k] = float(log_probs[r, positions, token_ids].sum())
        return log_sequence, np.clip(expected, 0.0, 1.0)

    def _sample(self, last_logits: torch.Tensor, cache: Any, seed: int) -> tuple[str, ...]:
        """T answers in one batch on the prompt cache (consumes ``cache``)."""
        settings, n = self.settings, self.settings.n_samples
        generator = torch.Generator(device=self.device).manual_seed(seed)
        stop_ids, _ = self._stops()
        probs = sampling_distribution(last_logits, settings.temperature, settings.top_p)
        next_tokens = torch.multinomial(probs, n, replacement=True, generator=generator).tolist()
        tokens: list[list[int]] = [[] for _ in range(n)]
        answers: list[str | None] = [None] * n
        cache.batch_repeat_interleave(n)
        for step in range(settings.max_new_tokens):
            for i, token in enumerate(next_tokens):
                if answers[i] is not None:
                    continue
                if token in stop_ids:
                    answers[i] = self.tokenizer.decode(tokens[i], skip_special_tokens=True)
                    continue
                tokens[i].append(token)
                text = self.tokenizer.decode(tokens[i], skip_special_tokens=True).lstrip()
                first_line, newline, _ = text.partition("\n")
                if newline and not first_line.rstrip().endswith(":"):  # "Category:\n<label>" goes on
                    answers[i] = first_line
            if all(a is not None for a in answers) or step == settings.max_new_tokens - 1:
                break
            out = self.model(input_ids=self._tensor([[t] for t in next_tokens]), cache=cache, use_cache=True)
            probs = sampling_distribution(out.logits[:, -1], settings.temperature, settings.top_p)
            next_tokens = torch.multinomial(probs, 1, generator=generator)[:, 0].tolist()
        return tuple(
            (a if a is not None else self.tokenizer.decode(t, skip_special_tokens=True)).strip()
            for a, t in zip(answers, tokens)
        )

    # ----- public -----------------------------------------------------------------------------

    def score_text(self, text: str, labels: Sequence[str], random_state: int = 0) -> TextEvidence:
        """Evidence for one text (z, sampled and expected c, raw answers)."""
        prepared = self._prepare(labels)
        with torch.inference_mode():
            last_logits, cache = self._prompt_pass(self.prompt_ids(text, prepared.labels), prepared)
            log_sequence, expected = self._label_pass(last_logits, cache, prepared)
            answers: tuple[str, ...] = ()
            if self.settings.n_samples > 0:
                answers = self._sample(last_logits, cache, text_seed(random_state, text))
        # Renormalise in log space: raw probabilities of long labels can underflow.
        z = np.exp(log_sequence - log_sequence.max())
        z /= z.sum()
        sampled = vote_shares(answers, prepared.labels)[0] if answers else np.zeros(len(prepared.labels))
        return TextEvidence(
            label_probs=z,
            sequence_probs=np.exp(log_sequence),
            sampled_vote_shares=np.asarray(sampled, dtype=float),
            expected_vote_shares=expected,
            answers=answers,
            vote_mode=self.settings.vote_mode,
        )

    def score_texts(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        random_state: int = 0,
        on_text_done: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[TextEvidence]:
        """Evidence for each text in order; checks ``cancel`` between texts and raises ``Cancelled``
        with the finished texts' evidence in its ``partial`` attribute."""
        results = []
        for i, text in enumerate(texts):
            if cancel is not None and cancel.is_set():
                stop = Cancelled(f"cancelled after {i} of {len(texts)} texts")
                stop.partial = results  # the texts done before the cancel, for callers that cache them
                raise stop
            results.append(self.score_text(text, labels, random_state))
            if on_text_done is not None:
                on_text_done(i + 1)
        return results
