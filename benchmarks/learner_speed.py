"""Wall time of the fast-mode AL model: one fit on 550 texts + predict_proba on the other ~4,900
TREC texts, and the time each query strategy takes to pick 50 texts from that pool.

Texts: the TREC questions of the paper's evidence (``../shared/data/paper-evidence/trec``), labels:
their gold labels (only to have something to fit; no accuracy is reported). Embeddings are computed
once first (and cached on disk), as in the AL loop, so the timed part is what every AL iteration pays.

    flock /tmp/mollia-timing.lock python benchmarks/learner_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, not installed

import numpy as np  # noqa: E402

from mollia_core import paths  # noqa: E402
from mollia_core.encoder import embed_texts  # noqa: E402
from mollia_core.evidence import load_paper_evidence  # noqa: E402
from mollia_core.learner import FastLearner  # noqa: E402
from mollia_core.query import STRATEGIES, make_strategy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=550)
    parser.add_argument("--n-predict", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=0, help="hidden units of the head (0: linear)")
    parser.add_argument("--batch", type=int, default=50, help="texts each strategy queries")
    args = parser.parse_args()

    data = load_paper_evidence(paths.paper_evidence_dir("trec"))
    texts, gold = list(data.texts), data.gold
    start = time.perf_counter()
    embed_texts(texts)
    print(f"embeddings of {len(texts)} texts (cached after the first run): {time.perf_counter() - start:.1f} s")

    fit_s, predict_s, query_s = [], [], {name: [] for name in STRATEGIES}
    for seed in range(args.repeats):
        rows = np.random.default_rng(seed).permutation(len(texts))
        train, predict = rows[: args.n_train], rows[args.n_train : args.n_train + args.n_predict]
        learner = FastLearner(len(data.labels), random_state=seed, hidden=args.hidden)
        start = time.perf_counter()
        learner.fit([texts[i] for i in train], gold[train])
        fit_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        learner.predict_proba([texts[i] for i in predict])
        predict_s.append(time.perf_counter() - start)
        for name in STRATEGIES:
            start = time.perf_counter()
            make_strategy(name).query(learner, texts, predict, train, args.batch, random_state=seed)
            query_s[name].append(time.perf_counter() - start)
    total = np.add(fit_s, predict_s)
    print(
        f"FastLearner(hidden={args.hidden}) fit on {args.n_train} + predict on {len(predict)} texts, "
        f"{args.repeats} repeats: fit {np.mean(fit_s):.2f} ± {np.std(fit_s):.2f} s, "
        f"predict {np.mean(predict_s):.2f} ± {np.std(predict_s):.2f} s, "
        f"total {np.mean(total):.2f} ± {np.std(total):.2f} s (max {np.max(total):.2f} s)"
    )
    for name, seconds in query_s.items():
        print(f"query {args.batch} of {len(predict)} with {name}: {np.mean(seconds):.2f} ± {np.std(seconds):.2f} s")


if __name__ == "__main__":
    main()
