"""Does z over a label's surface forms (and do label descriptions) help MoLAM off BBC?

For each dataset (a random sample of ``--n`` texts of an example dataset) and each embedded
model, evidence is collected twice: with the plain prompt and with label descriptions (the
ones below, written from the label names alone, never tuned on gold labels). Each record
holds z with surface forms (``label_probs``) and z over the labels as written only
(``meta["canonical_label_probs"]``), so "with / without surface forms" costs no extra model
pass. c is the expected vote share (``vote_mode="expected"``, no sampling: keeps this
benchmark cheap on a shared CPU).

Then, per variant, over ``--seed-sets`` random draws of ``--seeds`` seed labels: MoLAM (the
default recipe) fitted on the seeds, accuracy on every other sampled text; and each LLM's
zero-shot accuracy (argmax z) and the seeds' majority class on the same texts. Nothing is
chosen on the evaluation labels. Evidence goes through an evidence cache (``--cache``), so a
rerun only evaluates.

    MOLLIA_TORCH_THREADS=1 python benchmarks/surface_forms.py --datasets rotten-tomatoes,drug-reviews \\
        --models smollm2-135m,qwen2.5-coder-0.5b --n 150 --cache /tmp/mollia-sf/evidence.sqlite --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mollia_core.annotation import MoLAM  # noqa: E402
from mollia_core.evidence.cache import CachedSource, EvidenceCache  # noqa: E402
from mollia_core.evidence.embedded import EmbeddedSource  # noqa: E402
from mollia_core.evidence.prompt import PromptTemplate  # noqa: E402
from mollia_core.evidence.record import PanelEvidence  # noqa: E402
from mollia_core.examples import load_example  # noqa: E402

from panel_evidence import DESCRIPTIONS  # noqa: E402  (shared with label_quality.py)


def collect(dataset: str, models: list[str], n: int, cache: EvidenceCache, variant: str) -> dict:
    frame = load_example(dataset, n=n, random_state=0)
    texts, gold = frame["text"].astype(str).tolist(), frame["label"].astype(str).to_numpy()
    labels = tuple(sorted(set(gold)))
    template = PromptTemplate(descriptions=DESCRIPTIONS.get(dataset, {}) if variant == "descriptions" else ())
    z_forms, z_plain, votes, seconds = [], [], [], {}
    for name in models:
        source = CachedSource(
            EmbeddedSource(name, template=template, n_samples=0, vote_mode="expected", n_threads=1, batch_size=4),
            cache, chunk_size=8,
        )
        start = time.monotonic()
        records = source.evidence(texts, labels)
        seconds[name] = time.monotonic() - start
        source.close()
        z_forms.append([r.label_probs for r in records])
        z_plain.append([r.meta["canonical_label_probs"] for r in records])
        votes.append([r.vote_shares for r in records])
    axes = lambda arrays: np.transpose(np.asarray(arrays, dtype=float), (1, 0, 2))  # (n, N, K)
    return {"labels": labels, "gold": np.array([labels.index(g) for g in gold]), "z_forms": axes(z_forms),
            "z_plain": axes(z_plain), "votes": axes(votes), "seconds": seconds}


def evaluate(data: dict, models: list[str], z_key: str, seeds: int, seed_sets: int) -> dict:
    gold, labels = data["gold"], data["labels"]
    evidence = PanelEvidence(labels, tuple(models), data[z_key], data["votes"])
    scores: dict[str, list[float]] = {"molam": [], "majority": [], **{m: [] for m in models}}
    for draw in range(seed_sets):
        rng = np.random.default_rng(draw)
        seed_index = rng.choice(len(gold), size=seeds, replace=False)
        y = np.full(len(gold), -1)
        y[seed_index] = gold[seed_index]
        rest = y == -1
        predicted = MoLAM(random_state=draw).fit(evidence, y).predict(evidence)
        scores["molam"].append(float((predicted[rest] == gold[rest]).mean()))
        majority = np.bincount(gold[seed_index], minlength=len(labels)).argmax()
        scores["majority"].append(float((gold[rest] == majority).mean()))
        for j, name in enumerate(models):
            scores[name].append(float((data[z_key][rest, j].argmax(1) == gold[rest]).mean()))
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in scores.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="rotten-tomatoes,drug-reviews")
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b")
    parser.add_argument("--variants", default="plain,descriptions")
    parser.add_argument("--n", type=int, default=150, help="texts sampled per dataset")
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--seed-sets", type=int, default=5)
    parser.add_argument("--cache", default="/tmp/mollia-surface-forms/evidence.sqlite")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    cache = EvidenceCache(args.cache)
    results: dict = {}
    for dataset in args.datasets.split(","):
        for variant in args.variants.split(","):
            data = collect(dataset, models, args.n, cache, variant)
            for z_key, forms in (("z_plain", "label as written"), ("z_forms", "surface forms")):
                row = evaluate(data, models, z_key, args.seeds, args.seed_sets)
                results[f"{dataset} / {variant} / {forms}"] = row
                shown = "  ".join(f"{k} {v['mean']:.3f}±{v['std']:.3f}" for k, v in row.items())
                print(f"{dataset:16s} {variant:12s} {forms:16s} {shown}", flush=True)
            print(f"  evidence seconds: {data['seconds']}", flush=True)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
