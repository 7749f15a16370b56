"""How long MoLAM's fit takes with and without co-training its text member (the MoLAM page's *Fit*).

On the paper's TREC evidence (texts from its jsonl files), the first N texts, 50 random seed labels
per seed set: wall time of (a) the fit alone (``annotation.fit_annotator``: the text member, MoLAM's
self-training and, by default, two co-training rounds) and (b) the fit's honest estimate
(``annotation.estimate_accuracy``, 5 folds of the seeds, MoLAM refitted with its text member in every
fold), for ``text_member_rounds`` = 0 (the text member learns from the seeds only) and the default.
Prints mean +- std over the seed sets. The MiniLM embeddings and n-gram counts are computed once
before timing (the app caches them on disk and per process).

    MOLLIA_TORCH_THREADS=1 python benchmarks/molam_fit_speed.py --sizes 1000 5452 --seed-sets 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from label_quality import first_texts, load_evidence_dir, seed_vector  # noqa: E402

from mollia_core import paths  # noqa: E402
from mollia_core.annotation import MoLAM, estimate_accuracy, fit_annotator  # noqa: E402
from mollia_core.text_member import TextMember  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5452])
    parser.add_argument("--seed-sets", type=int, default=3)
    parser.add_argument("--n-seeds", type=int, default=50)
    args = parser.parse_args()
    trec = load_evidence_dir(paths.paper_evidence_dir("trec"))
    print("| texts | text_member_rounds | fit | fit's CV estimate (5 folds) |")
    print("|---|---|---|---|")
    for size in args.sizes:
        data = first_texts(trec, size)
        member = TextMember(data.texts)  # embeddings and n-gram counts: once, outside the timing
        for rounds in (0, MoLAM().text_member_rounds):
            fits, estimates = [], []
            for s in range(args.seed_sets):
                y = seed_vector(data.evidence.n_texts, args.n_seeds, data.gold, s)
                started = time.perf_counter()
                fit_annotator(MoLAM(random_state=s, text_member_rounds=rounds), data.evidence, y, member)
                fits.append(time.perf_counter() - started)
                started = time.perf_counter()
                estimate_accuracy({"MoLAM": MoLAM(random_state=s, text_member_rounds=rounds)}, data.evidence, y,
                                  random_state=s, text_member=member)
                estimates.append(time.perf_counter() - started)
            print(f"| {data.evidence.n_texts:,} | {rounds} | {np.mean(fits):.1f} ± {np.std(fits):.1f} s "
                  f"| {np.mean(estimates):.1f} ± {np.std(estimates):.1f} s |", flush=True)


if __name__ == "__main__":
    main()
