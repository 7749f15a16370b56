"""Evidence of the embedded panel on the example datasets, shared by the benchmarks that collect it.

Texts come from ``mollia_core.examples.load_example`` in one fixed random order per dataset
(``ordered_example``), so any prefix is a simple random sample and a collection can be extended.
``collect_rounds`` computes evidence through ``CachedSource`` in interleaved rounds (every model
on the next ``round_size`` texts of every dataset, then the next round), so a run stopped at any
time leaves every dataset with evidence from every model on about the same number of texts, and a
rerun resumes. ``cached_prefix`` reads back the longest prefix that every model has.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from mollia_core.evidence import EvidenceRecord, EvidenceSource
from mollia_core.evidence.cache import CachedSource, EvidenceCache
from mollia_core.evidence.embedded import EmbeddedSource
from mollia_core.evidence.prompt import PromptTemplate, choose_demonstrations
from mollia_core.evidence.replay import text_sha256
from mollia_core.examples import load_example


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ExampleTexts:
    """An example dataset's texts in a fixed random order, with their gold label names."""

    name: str
    texts: list[str]
    ids: list[str]
    gold: list[str]
    labels: tuple[str, ...]  # the label set, sorted

    def gold_index(self, n: int | None = None) -> np.ndarray:
        index = {label: k for k, label in enumerate(self.labels)}
        return np.array([index[g] for g in self.gold[:n]])


def ordered_example(name: str, text_column: str = "text", n: int | None = None, random_state: int = 0) -> ExampleTexts:
    """The first ``n`` texts (all: None) of ``load_example(name)`` in a fixed random order."""
    frame = load_example(name)
    labels = tuple(sorted(frame["label"].astype(str).unique()))
    order = np.random.default_rng(random_state).permutation(len(frame))
    frame = frame.iloc[order[:n] if n else order]
    return ExampleTexts(name, frame[text_column].astype(str).tolist(), frame["id"].astype(str).tolist(),
                        frame["label"].astype(str).tolist(), labels)


#: Label descriptions per example dataset, written from the label names alone (never tuned on gold
#: labels), as a user would type them on the Annotators page.
DESCRIPTIONS = {
    "rotten-tomatoes": {"positive": "the reviewer liked the film", "negative": "the reviewer disliked the film"},
    "imdb": {"positive": "the reviewer liked the film", "negative": "the reviewer disliked the film"},
    "drug-reviews": {
        "positive": "the patient is satisfied with the drug",
        "neutral": "the patient is undecided: the drug helped somewhat or had mixed effects",
        "negative": "the patient is dissatisfied: the drug did not help or had bad side effects",
    },
    "bbc-news": {
        "business": "companies, markets and the economy",
        "entertainment": "films, music, television and celebrities",
        "politics": "government, parties and elections",
        "sports": "sports, athletes and matches",
        "tech": "technology, computers, the internet and gadgets",
    },
}

#: Prompt variants: the dashboard's default prompt, with label descriptions, and with descriptions and
#: one demonstration per label (the product's ``choose_demonstrations`` over human-labeled texts).
PROMPT_VARIANTS = ("plain", "descriptions", "demonstrations")
#: Demonstrations come from this many texts at the END of a dataset's fixed order, given their gold
#: label as a user's seeds would be: far from the evaluated prefix, so no evaluated text is ever
#: shown to a model as its own example.
DEMONSTRATION_POOL = 100


def prompt_template(variant: str, data: "ExampleTexts") -> PromptTemplate:
    """The prompt of one variant (``PROMPT_VARIANTS``) for an example dataset."""
    if variant not in PROMPT_VARIANTS:
        raise ValueError(f"unknown prompt variant {variant!r}: choose among {PROMPT_VARIANTS}")
    if variant == "plain":
        return PromptTemplate()
    demonstrations = ()
    if variant == "demonstrations":
        pool = list(zip(data.texts[-DEMONSTRATION_POOL:], data.gold[-DEMONSTRATION_POOL:]))
        demonstrations, _ = choose_demonstrations(pool, data.labels, per_class=1)
    return PromptTemplate(descriptions=DESCRIPTIONS.get(data.name, {}), demonstrations=demonstrations)


def product_source(name: str, template: PromptTemplate | None = None) -> EmbeddedSource:
    """An embedded model as the dashboard runs it for a new project (``project.make_source``; by
    default with the default prompt: no descriptions, no demonstrations; default decoding, surface
    forms on); torch threads from ``MOLLIA_TORCH_THREADS``. Only the cache around it is the caller's."""
    return EmbeddedSource(name, template=template)


def collect_rounds(
    datasets: Sequence[ExampleTexts],
    models: Sequence[str],
    make_source: Callable[[str], EvidenceSource],
    cache: EvidenceCache,
    round_size: int | Mapping[str, int],
    *,
    first_round: int | None = None,
    max_rounds: int | None = None,
    close_between_rounds: bool = True,
    say: Callable[[str], None] = log,
) -> None:
    """Evidence of every model on every dataset, round by round: round r covers each dataset's next
    ``round_size`` texts (per dataset name when a mapping; ``first_round`` texts in round 0), every
    model in turn. Cached texts cost nothing, so a rerun resumes where the last one stopped. Within
    a round the texts go to the model in order of length: batches then pad little (long reviews)."""
    sizes = {d.name: round_size[d.name] if isinstance(round_size, Mapping) else round_size for d in datasets}
    sources = {name: CachedSource(make_source(name), cache, chunk_size=8) for name in models}
    try:
        for r in itertools.count() if max_rounds is None else range(max_rounds):
            chunks = {}
            for d in datasets:
                start = 0 if r == 0 else (first_round or sizes[d.name]) + (r - 1) * sizes[d.name]
                stop = (first_round or sizes[d.name]) if r == 0 else start + sizes[d.name]
                if start < len(d.texts):
                    chunks[d.name] = (d, start, min(stop, len(d.texts)))
            if not chunks:
                return
            for name, source in sources.items():
                for d, start, stop in chunks.values():
                    texts, ids = d.texts[start:stop], d.ids[start:stop]
                    todo = len(texts) - source.cached_count(texts, d.labels)
                    if not todo:
                        continue
                    by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))
                    began, cpu_began = time.perf_counter(), time.process_time()
                    source.evidence([texts[i] for i in by_length], d.labels, text_ids=[ids[i] for i in by_length])
                    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu_began
                    # CPU seconds too: on a shared machine the wall time says more about the neighbours
                    say(f"round {r} {d.name} {name}: texts {start}-{stop}, {todo} computed in {seconds:.1f} s "
                        f"({seconds / todo:.2f} s/text wall, {cpu / todo:.2f} s/text CPU)")
                if close_between_rounds and len(sources) > 1:
                    source.close()  # one model in memory at a time (reloading costs seconds)
    finally:
        for source in sources.values():
            source.close()


def cached_records(cache: EvidenceCache, source_keys: Sequence[str], texts: Sequence[str],
                   labels: Sequence[str]) -> list[dict[str, EvidenceRecord]]:
    """Per source key, its cached records of ``texts`` (by text sha256)."""
    shas = [text_sha256(t) for t in texts]
    return [cache.get_many(key, shas, labels) for key in source_keys]


def common_prefix_length(found: Sequence[Mapping[str, EvidenceRecord]], texts: Sequence[str]) -> int:
    """How many texts from the start have a record in every one of ``found``."""
    n = 0
    for text in texts:
        sha = text_sha256(text)
        if not all(sha in records for records in found):
            break
        n += 1
    return n


def cached_prefix(cache: EvidenceCache, sources: Sequence[EvidenceSource], data: ExampleTexts
                  ) -> list[list[EvidenceRecord]]:
    """``records[i][j]``: source j's cached evidence on text i, for the longest prefix of ``data``
    that every source has (``PanelEvidence.from_records`` stacks it)."""
    found = cached_records(cache, [s.cache_key for s in sources], data.texts, data.labels)
    n = common_prefix_length(found, data.texts)
    return [[records[text_sha256(t)] for records in found] for t in data.texts[:n]]
