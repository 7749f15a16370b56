"""The evidence engine on a transformers causal LM: exact label probabilities (Eq. 1) and
vote shares of sampled answers (Eq. 2), with the prompt's KV cache shared by every step.

Per label set, the part of the prompt before the text (instructions and label list) is
prefilled once and its KV cache kept. Texts go through the model ``batch_size`` at a time
(on a CPU each pass reads every weight once, whatever the batch; the rows of different
lengths are padded and masked). Per batch:

1. copy that cache and prefill only the rest of each prompt (the text and the chat
   template's tail, left-padded) -> the next-token logits where each answer starts;
2. z (Eq. 1): each text's label token sequences go through the model on a copy of the prompt
   cache (expanded to one row per sequence, right-padded, at most ``LABEL_ROWS_PER_PASS`` rows a
   pass), so P(label | prompt) is the exact product of its tokens' probabilities and labels
   sharing a first token are told apart. With ``surface_forms`` (the default) a label's z sums
   P(form) over its surface forms (``parsing.label_surface_forms``: case, singular/plural, an
   opening quote, and each unquoted form also with the leading space toggled): a model that
   writes "Sports" for the label "sport" still gives "sport" its mass. Only forms whose token
   sequence is neither a prefix nor an extension of another summed sequence are summed (the
   event "the answer starts with these tokens" of a prefix contains that of its extension), so
   the summed events are disjoint and nothing is counted twice. Forms cost little: a row is
   read off any fed row that shares all its tokens but the last (the last token's probability
   is in the full distribution there), so a single-token form needs no pass at all;
   ``sequence_probs`` keeps the raw summed probabilities (their sum is the "mass on labels"),
   ``label_probs`` renormalises them over the label set; ``canonical_label_probs`` is z over
   the labels as written only (the pre-surface-form z);
3. c (Eq. 2): T answers per text are sampled in ONE batch on the prompt cache expanded to T rows
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

from .parsing import overlaps_any, surface_form_answers, vote_shares
from .prompt import PromptTemplate, check_labels
from .source import Cancelled, EvidenceError

VOTE_MODES = ("sampled", "expected")
#: Label rows (texts x sequences) per forward pass of the label pass: bounds the copied KV
#: cache and the full-vocabulary logits held at once.
LABEL_ROWS_PER_PASS = 128
#: End-of-turn tokens of common chat families, treated as the end of an answer when present.
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<eos>", "<|eot_id|>", "</s>", "<|end|>")


@dataclass(frozen=True)
class DecodingSettings:
    """How answers are sampled (Eq. 2) and which vote shares become c.

    n_samples: T sampled answers per text (0 only with ``vote_mode="expected"``).
    vote_mode: "sampled" (shares of the T parsed answers, as in the paper) or "expected"
               (exact probability of each label's answer, no sampling noise; see module doc).
    surface_forms: z sums each label's surface forms (see module doc); False: the label as
               written only.
    """

    n_samples: int = 10
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 8
    vote_mode: str = "sampled"
    surface_forms: bool = True

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
            "surface_forms": self.surface_forms,
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
    canonical_label_probs: np.ndarray | None = None  # z over the labels as written only

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


def sampling_distribution(
    logits: torch.Tensor, temperature: float, top_p: float, candidates: int = 256
) -> torch.Tensor:
    """The distribution the sampler draws from: softmax(logits / T) restricted to the
    smallest set of most likely tokens holding at least ``top_p`` of the mass, renormalised.

    The nucleus is found among the ``candidates`` most likely tokens (a partial sort; a full
    sort of a 150k-262k vocabulary per row costs more than the model's forward pass on a CPU);
    when some row's nucleus does not fit there, the full sort is used, so the result is exact."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return probs
    flat = probs.reshape(-1, probs.shape[-1])
    top_values, top_index = flat.topk(min(candidates, flat.shape[-1]), dim=-1)
    if not bool((top_values.sum(dim=-1) >= top_p).all()):  # a flat row: its nucleus needs more tokens
        top_values, top_index = flat.sort(dim=-1, descending=True)
    mass_before = top_values.cumsum(dim=-1) - top_values
    kept_values = top_values.masked_fill(mass_before >= top_p, 0.0)
    kept = torch.zeros_like(flat).scatter_(-1, top_index, kept_values)
    return (kept / kept.sum(dim=-1, keepdim=True)).reshape(probs.shape)


def _normalised(log_probs: np.ndarray) -> np.ndarray:
    """Probabilities from log-probabilities, renormalised in log space (raw probabilities of
    long labels can underflow)."""
    z = np.exp(log_probs - log_probs.max())
    return z / z.sum()


def summed_label_log_probs(
    log_rows: np.ndarray, row_label: Sequence[int], summed: Sequence[bool], n_labels: int
) -> np.ndarray:
    """log z_k before renormalisation (Eq. 1 over surface forms): per label, log of the sum of
    P(row) over its summed rows; ``log_rows`` is (texts, rows). The caller guarantees that the
    summed rows are disjoint events (no summed row is a prefix of another)."""
    out = np.full((log_rows.shape[0], n_labels), -np.inf)
    for r, k in enumerate(row_label):
        if summed[r]:
            out[:, k] = np.logaddexp(out[:, k], log_rows[:, r])
    return out


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


def _sliding_window(config: Any) -> int | None:
    """The attention window of a model with sliding-window layers (Gemma 3), else None."""
    layer_types = getattr(config, "layer_types", None) or ()
    return getattr(config, "sliding_window", None) if "sliding_attention" in layer_types else None


@dataclass
class _PromptBatch:
    """A batch of prefilled prompts: next-token logits, the cache, and (when the rows were
    padded) the attention mask over the cache and each row's next position id."""

    last_logits: torch.Tensor  # (texts, vocabulary)
    cache: Any
    attention_mask: torch.Tensor | None
    next_position: torch.Tensor  # (texts,)

    @property
    def size(self) -> int:
        return self.last_logits.shape[0]


@dataclass
class _PreparedLabels:
    """Token sequences and the shared-prefix cache of one label set."""

    labels: tuple[str, ...]
    sequences: list[list[int]]  # canonical label tokens, as they follow the prompt
    rows: list[list[int]]  # distinct sequences: canonical ones first, then surface forms
    row_label: list[int]  # label index of each row
    summed: list[bool]  # whether the row's probability is part of its label's z
    voted: list[bool]  # whether the row counts for the expected vote share
    fed: list[int]  # rows that go through the model (the others are read off them)
    carrier: list[int]  # per row: the fed row its probabilities are read from (-1: none needed)
    prefix_ids: list[int] = field(default_factory=list)
    prefix_cache: Any = None


class EvidenceEngine:
    """Exact z and sampled / expected c for texts, from one causal LM and its tokenizer.

    chat: whether the model gets its chat template (None: if the tokenizer has one).
    n_threads: torch CPU threads, set explicitly (default: ``default_threads()``).
    batch_size: texts per model pass in ``score_texts`` (one read of the weights serves them all;
                results do not depend on it beyond float rounding).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: PromptTemplate | None = None,
        settings: DecodingSettings | None = None,
        chat: bool | None = None,
        n_threads: int | None = None,
        batch_size: int = 8,
    ) -> None:
        if batch_size < 1:
            raise EvidenceError(f"batch_size must be >= 1, not {batch_size}")
        self.model = model.eval()
        self.batch_size = batch_size
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
        prepared = self._label_rows(labels, sequences, probe, probe_ids, lead)
        prefix = self.template.shared_prefix(labels, self.tokenizer, self.chat)
        prefix_ids = self._encode(prefix) if prefix else []
        if len(prefix_ids) > 1:
            cache = self._new_cache()
            with torch.inference_mode():
                self.model(input_ids=self._tensor([prefix_ids]), cache=cache, use_cache=True, logits_to_keep=1)
            prepared.prefix_ids, prepared.prefix_cache = prefix_ids, cache
        self._prepared = prepared
        return prepared

    def _label_rows(
        self, labels: tuple[str, ...], sequences: list[list[int]], probe: str, probe_ids: list[int], lead: str
    ) -> _PreparedLabels:
        """The label pass's rows: the canonical sequences and the capitalised spellings (expected
        votes), then, with ``surface_forms``, each label's other surface forms (z only)."""
        capitalised, forms = surface_form_answers(labels, lead, self.settings.surface_forms)
        k_range = range(len(labels))
        rows, row_label = [list(s) for s in sequences], list(k_range)
        summed, voted = [True] * len(labels), [True] * len(labels)
        seen = {tuple(s) for s in rows}
        for counted, answers in ((True, capitalised), (False, forms)):
            for k in k_range:
                for answer in answers[k]:
                    tokens = self._continuation(probe, probe_ids, answer)
                    if not tokens or tuple(tokens) in seen:
                        continue
                    # Summed into z only if disjoint from every summed sequence (module doc, step 2).
                    disjoint = self.settings.surface_forms and not overlaps_any(
                        tokens, [r for r, was in zip(rows, summed) if was]
                    )
                    if counted or disjoint:
                        seen.add(tuple(tokens))
                        rows.append(tokens)
                        row_label.append(k)
                        summed.append(disjoint)
                        voted.append(counted)
        # What each row needs from the model: the logits after each of its tokens but the last
        # (its probability; the last token's comes from the distribution at that position), and
        # after the last too for a voted row (the probability of stopping there). One fed row
        # serves every row whose need it starts with: rows sharing all but their last token
        # cost one row, single-token rows none beyond the prompt's own logits.
        needs = [r if v else r[:-1] for r, v in zip(rows, voted)]
        fed: list[int] = []
        for i in sorted(range(len(rows)), key=lambda i: -len(needs[i])):
            if needs[i] and not any(rows[f][: len(needs[i])] == needs[i] for f in fed):
                fed.append(i)
        carrier = [next((f for f in fed if rows[f][: len(need)] == need), -1) for need in needs]
        return _PreparedLabels(labels, sequences, rows, row_label, summed, voted, sorted(fed), carrier)

    # ----- model passes ---------------------------------------------------------------------

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _tensor(self, rows: list[list[int]]) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def _prompt_pass(self, prompts: list[list[int]], prepared: _PreparedLabels) -> _PromptBatch:
        """Prefill the prompts of a batch of texts, reusing the shared prefix's cache. The rest of
        each prompt is left-padded to a common width (the pads masked out, positions counted
        over real tokens only), so every row's next token comes at the same column."""
        reused = min(min(common_prefix_length(prepared.prefix_ids, ids), len(ids) - 1) for ids in prompts)
        cache = None
        if prepared.prefix_cache is not None and reused > 0:
            cache = copy.deepcopy(prepared.prefix_cache)
            try:
                cache.crop(reused - len(prepared.prefix_ids))
            except RuntimeError:  # a sliding-window layer cannot roll back: prefill all of it
                cache = None
        if cache is None:
            cache, reused = self._new_cache(), 0
        elif len(prompts) > 1:
            cache.batch_repeat_interleave(len(prompts))
        rests = [ids[reused:] for ids in prompts]
        width = max(len(rest) for rest in rests)
        pads = [width - len(rest) for rest in rests]
        inputs = self._tensor([[rest[0]] * pad + rest for rest, pad in zip(rests, pads)])
        lengths = torch.tensor([len(rest) for rest in rests], device=self.device)
        attention_mask = position_ids = None
        if any(pads):
            pad_mask = torch.arange(width, device=self.device)[None, :] >= torch.tensor(pads, device=self.device)[:, None]
            attention_mask = torch.cat(
                [torch.ones(len(prompts), reused, dtype=torch.long, device=self.device), pad_mask.long()], dim=1
            )
            position_ids = reused + (pad_mask.cumsum(dim=1) - 1).clamp(min=0)
        out = self.model(
            input_ids=inputs, attention_mask=attention_mask, position_ids=position_ids,
            cache=cache, use_cache=True, logits_to_keep=1,
        )
        return _PromptBatch(out.logits[:, -1].float(), cache, attention_mask, reused + lengths)

    def _continue(self, batch: _PromptBatch, repeats: int, cache: Any, inputs: torch.Tensor, step: int):
        """One forward pass of ``inputs`` (rows: each prompt ``repeats`` times, in order) on
        ``cache``, ``step`` tokens after the prompts; -> logits of every input position."""
        attention_mask = position_ids = None
        if batch.attention_mask is not None:
            done = step + inputs.shape[1]
            attention_mask = torch.cat(
                [batch.attention_mask.repeat_interleave(repeats, dim=0),
                 torch.ones(inputs.shape[0], done, dtype=torch.long, device=self.device)], dim=1,
            )
            position_ids = (batch.next_position.repeat_interleave(repeats) + step)[:, None] + torch.arange(
                inputs.shape[1], device=self.device
            )
        return self.model(
            input_ids=inputs, attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=True
        ).logits

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

    def _label_pass(self, batch: _PromptBatch, prepared: _PreparedLabels) -> tuple[np.ndarray, np.ndarray]:
        """Eq. 1 for every text of the batch (the fed label rows on each text's prompt cache, at most
        ``LABEL_ROWS_PER_PASS`` rows a pass): -> (log P(row tokens | prompt) of every row
        (texts, rows), expected vote share (texts, labels))."""
        rows, n_texts = prepared.rows, batch.size
        _, stop_mask = self._stops()
        log_rows = np.zeros((n_texts, len(rows)))
        expected = np.zeros((n_texts, len(prepared.labels)))
        first = torch.log_softmax(batch.last_logits.float(), dim=-1)
        for r in (r for r, c in enumerate(prepared.carrier) if c < 0):  # single-token rows, z only
            log_rows[:, r] = first[:, rows[r][0]].cpu().numpy()
        per_pass = max(1, LABEL_ROWS_PER_PASS // n_texts)
        for begin in range(0, len(prepared.fed), per_pass):
            chunk = prepared.fed[begin : begin + per_pass]
            width = max(len(rows[f]) for f in chunk)
            padded = [rows[f] + [rows[f][-1]] * (width - len(rows[f])) for f in chunk]  # never reaches real tokens
            label_cache = copy.deepcopy(batch.cache)
            label_cache.batch_repeat_interleave(len(chunk))
            logits = self._continue(batch, len(chunk), label_cache, self._tensor(padded * n_texts), step=0)
            carried = [(r, chunk.index(c)) for r, c in enumerate(prepared.carrier) if c in chunk]
            for t in range(n_texts):  # one text at a time: full-vocabulary tensors stay small
                # text_logits[:, j] predicts token j of the row; [:, len] predicts what follows it.
                text_logits = torch.cat(
                    [batch.last_logits[t].expand(len(chunk), 1, -1),
                     logits[t * len(chunk) : (t + 1) * len(chunk)].float()], dim=1,
                )
                log_probs = torch.log_softmax(text_logits, dim=-1)
                sample_probs = sampling_distribution(text_logits, self.settings.temperature, self.settings.top_p)
                for r, j in carried:
                    positions, token_ids = torch.arange(len(rows[r])), torch.tensor(rows[r])
                    log_rows[t, r] = float(log_probs[j, positions, token_ids].sum())
                    if prepared.voted[r]:
                        p_answer = sample_probs[j, positions, token_ids].prod() * sample_probs[j, len(rows[r])][stop_mask].sum()
                        expected[t, prepared.row_label[r]] += float(p_answer)
        return log_rows, np.clip(expected, 0.0, 1.0)

    def _sample(self, batch: _PromptBatch, seeds: Sequence[int]) -> list[tuple[str, ...]]:
        """T answers per text, all in one batch on the prompts' cache (consumes it). Each text
        draws from its own generator, so its answers do not depend on the batch it is in."""
        settings, n = self.settings, self.settings.n_samples
        generators = [torch.Generator(device=self.device).manual_seed(seed) for seed in seeds]
        stop_ids, _ = self._stops()
        first = sampling_distribution(batch.last_logits, settings.temperature, settings.top_p)
        next_tokens = [
            token
            for t, generator in enumerate(generators)
            for token in torch.multinomial(first[t], n, replacement=True, generator=generator).tolist()
        ]
        rows = len(next_tokens)
        tokens: list[list[int]] = [[] for _ in range(rows)]
        answers: list[str | None] = [None] * rows
        batch.cache.batch_repeat_interleave(n)
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
            logits = self._continue(batch, n, batch.cache, self._tensor([[t] for t in next_tokens]), step)
            probs = sampling_distribution(logits[:, -1], settings.temperature, settings.top_p)
            next_tokens = [
                token
                for t, generator in enumerate(generators)
                for token in torch.multinomial(probs[t * n : (t + 1) * n], 1, generator=generator)[:, 0].tolist()
            ]
        finished = [
            (a if a is not None else self.tokenizer.decode(t, skip_special_tokens=True)).strip()
            for a, t in zip(answers, tokens)
        ]
        return [tuple(finished[t * n : (t + 1) * n]) for t in range(len(seeds))]

    # ----- public -----------------------------------------------------------------------------

    def score_text(self, text: str, labels: Sequence[str], random_state: int = 0) -> TextEvidence:
        """Evidence for one text (z, sampled and expected c, raw answers)."""
        prepared = self._prepare(labels)
        return self._score_batch([text], [self.prompt_ids(text, prepared.labels)], prepared, random_state)[0]

    def _batches(self, prompts: list[list[int]], prepared: _PreparedLabels) -> list[list[int]]:
        """Index groups of at most ``batch_size`` consecutive texts, in order. A text whose prompt
        leaves the shared prefix early (a demonstration text, whose prompt swaps that
        demonstration out: see ``PromptTemplate.demonstrations_for``) goes alone, so the batches
        beside it still reuse the whole prefix cache (a batch reuses what all its prompts share).
        On a model with sliding-window layers a group is split into single texts when padding
        could push a row past the window (the mask counts columns, pads included)."""
        window = _sliding_window(self.model.config)
        margin = self.settings.max_new_tokens + 8
        # The last prefix token may merge with the text's first one; anything shorter is another prefix.
        shared = len(prepared.prefix_ids) - 1
        runs: list[list[int]] = [[]]
        for i, ids in enumerate(prompts):
            if common_prefix_length(prepared.prefix_ids, ids) < shared:
                runs.extend([[i], []])
            else:
                runs[-1].append(i)
        groups: list[list[int]] = []
        for run in filter(None, runs):
            for start in range(0, len(run), self.batch_size):
                group = run[start : start + self.batch_size]
                if window is not None and max(len(prompts[i]) for i in group) + margin >= window:
                    groups.extend([i] for i in group)
                else:
                    groups.append(group)
        return groups

    def _score_batch(
        self, texts: Sequence[str], prompts: list[list[int]], prepared: _PreparedLabels, random_state: int
    ) -> list[TextEvidence]:
        """Evidence for one batch of texts, given their prompts' token ids."""
        with torch.inference_mode():
            batch = self._prompt_pass(prompts, prepared)
            log_rows, expected = self._label_pass(batch, prepared)
            answers: list[tuple[str, ...]] = [()] * len(texts)
            if self.settings.n_samples > 0:
                answers = self._sample(batch, [text_seed(random_state, text) for text in texts])
        n_labels = len(prepared.labels)
        log_summed = summed_label_log_probs(log_rows, prepared.row_label, prepared.summed, n_labels)
        results = []
        for t in range(len(texts)):
            sampled = vote_shares(answers[t], prepared.labels)[0] if answers[t] else np.zeros(n_labels)
            results.append(TextEvidence(
                label_probs=_normalised(log_summed[t]),
                sequence_probs=np.exp(log_summed[t]),
                sampled_vote_shares=np.asarray(sampled, dtype=float),
                expected_vote_shares=expected[t],
                answers=answers[t],
                vote_mode=self.settings.vote_mode,
                canonical_label_probs=_normalised(log_rows[t, :n_labels]),
            ))
        return results

    def score_texts(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        random_state: int = 0,
        on_text_done: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> list[TextEvidence]:
        """Evidence for each text in order, ``batch_size`` texts per model pass; checks ``cancel``
        between batches and raises ``Cancelled`` with the finished texts' evidence in its
        ``partial`` attribute."""
        prepared = self._prepare(labels)
        prompts = [self.prompt_ids(text, prepared.labels) for text in texts]
        results: list[TextEvidence] = []
        for group in self._batches(prompts, prepared):
            if cancel is not None and cancel.is_set():
                stop = Cancelled(f"cancelled after {len(results)} of {len(texts)} texts")
                stop.partial = results  # the texts done before the cancel, for callers that cache them
                raise stop
            results.extend(
                self._score_batch([texts[i] for i in group], [prompts[i] for i in group], prepared, random_state)
            )
            if on_text_done is not None:
                on_text_done(len(results))
        return results
