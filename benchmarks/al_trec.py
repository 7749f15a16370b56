"""Active learning on TREC with the paper's replayed LLM evidence (issue 2).

Protocol (fixed, documented in benchmarks/README.md):

- Texts: the 5,452 TREC training questions of ``../shared/data/paper-evidence/trec`` with the five
  7-9B LLMs' stored evidence. Split once with ``split_random_state = 0``: 1,000 test texts, 500
  validation texts (metrics only; nothing is chosen on them), the other 3,952 form the pool.
- Per seed s (0, 1, 2, ...): 50 seed texts drawn at random from the pool with gold labels
  (``seeds.random_state = s``), loop random state s; then 10 iterations of 50 queries; the AL
  model is the fast learner (TF-IDF word + char n-grams and frozen all-MiniLM-L6-v2 embeddings, a
  linear head trained with the Eq. 9 loss); MoLAM reads the text member (``mollia_core.text_member``).
- Annotators of the queried texts: MoLAM (fitted on the 50 seeds), gold labels, the best single
  LLM -- the (model, probabilities-or-votes) most accurate on the 50 seed labels, never on
  evaluation labels -- and majority vote.
- Reported: final test accuracy (after iteration 10) and mean test accuracy over the 11 trainings
  (iterations 0-10), mean +- std over seeds; and the wall time of one fast-mode iteration
  (query + label + train + predict on all texts) with ``--timing``.

    python benchmarks/al_trec.py --seeds 3 --strategies random coreset
    flock /tmp/mollia-timing.lock python benchmarks/al_trec.py --timing
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from mollia_core.config import build_loop, parse_config, prepare_project  # noqa: E402
from mollia_core.plots import plot_learning_curves  # noqa: E402

ANNOTATORS = ("molam", "gold", "best_llm", "vote")
TEST_SIZE, VALIDATION_SIZE, SPLIT_RANDOM_STATE = 1000, 500, 0
PROTOCOL = (
    "TREC paper evidence, split_random_state 0: 1000 test / 500 validation / 3952 pool; per seed s: 50 random "
    "seed labels from the pool (random_state s), 10 iterations x 50, fast learner; final = test accuracy after "
    "iteration 10, mean = mean test accuracy over iterations 0-10; mean +- std over seeds"
)


def run_config(strategy: str, annotator: str, seed: int, iterations: int, batch: int, n_seeds: int) -> dict:
    return {
        "dataset": {
            "paper_evidence": "trec", "test_size": TEST_SIZE, "validation_size": VALIDATION_SIZE,
            "split_random_state": SPLIT_RANDOM_STATE,
        },
        "seeds": {"n": n_seeds, "random_state": seed},
        "annotator": annotator,
        "loop": {"strategy": strategy, "batch_size": batch, "planned_iterations": iterations, "random_state": seed,
                 "learner_mode": "fast"},
    }


def run_one(values: dict, workdir: Path) -> dict:
    config = parse_config(values)
    project = prepare_project(config, workdir / f"{values['loop']['strategy']}-{values['annotator']}-{values['seeds']['random_state']}.sqlite")
    try:
        loop = build_loop(project, config.loop)
        loop.run()
        return loop.results()
    finally:
        project.store.close()


def accuracy_curve(results: dict) -> list[float]:
    return [it["metrics"]["test_accuracy"] for it in results["iterations"] if it["status"] == "trained"]


def benchmark(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies:
            for annotator in args.annotators:
                curves, sources, label_accuracy = [], [], []
                for seed in range(args.seeds):
                    started = time.perf_counter()
                    results = run_one(run_config(strategy, annotator, seed, args.iterations, args.batch, args.n_seeds), Path(tmp))
                    curve = accuracy_curve(results)
                    curves.append(curve)
                    sources.append(results["annotator"])
                    label_accuracy.append(np.mean([it["metrics"].get("annotator_batch_accuracy", np.nan)
                                                   for it in results["iterations"][1:]]))
                    print(f"{strategy:>14} {annotator:>9} seed {seed}: final {curve[-1]:.3f} mean {np.mean(curve):.3f} "
                          f"label acc {label_accuracy[-1]:.3f} ({results['annotator']}, {time.perf_counter() - started:.0f} s)",
                          flush=True)
                curves_arr = np.array(curves)
                table[(strategy, annotator)] = {
                    "final_mean": float(curves_arr[:, -1].mean()), "final_std": float(curves_arr[:, -1].std()),
                    "mean_mean": float(curves_arr.mean(1).mean()), "mean_std": float(curves_arr.mean(1).std()),
                    "label_accuracy_mean": float(np.mean(label_accuracy)),
                    "curves": curves_arr.tolist(), "annotator_sources": sources,
                }
    # Results accumulate in al_trec.json (a rerun of a strategy / annotator pair replaces it), so the
    # table can be built over several invocations.
    path = out / "al_trec.json"
    merged = json.loads(path.read_text())["results"] if path.exists() else {}
    merged.update({f"{s}/{a}": v for (s, a), v in table.items()})
    path.write_text(json.dumps({"protocol": PROTOCOL, "results": merged}, indent=2))
    x = [args.n_seeds + args.batch * i for i in range(args.iterations + 1)]
    for strategy in sorted({key.split("/")[0] for key in merged}):
        curves = {key.split("/")[1]: (x, row["curves"]) for key, row in sorted(merged.items())
                  if key.startswith(strategy + "/") and len(row["curves"][0]) == len(x)}
        plot_learning_curves(curves, out / f"al_trec_{strategy}.png",
                             title=f"TREC, {strategy} queries, fast learner (mean +- std over seeds)")
    print_table(merged)
    print(f"\nwrote {path} and {out}/al_trec_<strategy>.png")
    return merged


def print_table(results: dict) -> None:
    print(f"\n{'strategy':>14} {'annotator':>9} | {'final test acc':>16} | {'mean test acc':>16} | label acc | seeds")
    for key, row in sorted(results.items()):
        strategy, annotator = key.split("/")
        print(f"{strategy:>14} {annotator:>9} | {row['final_mean']:.3f} +- {row['final_std']:.3f}   | "
              f"{row['mean_mean']:.3f} +- {row['mean_std']:.3f}   | {row['label_accuracy_mean']:.3f}     | "
              f"{len(row['curves'])}")


def markdown_table(results: dict) -> str:
    """The README table: one row per strategy, final / mean test accuracy per annotator."""
    annotators = [a for a in ANNOTATORS if any(k.endswith("/" + a) for k in results)]
    strategies = sorted({k.split("/")[0] for k in results}, key=lambda s: ({"random": 0, "coreset": 1}.get(s, 2), s))
    names = {"molam": "MoLAM", "gold": "gold", "best_llm": "best single LLM", "vote": "majority vote"}
    lines = [
        "| strategy | " + " | ".join(f"{names[a]} final / mean" for a in annotators) + " |",
        "|---|" + "---|" * len(annotators),
    ]
    for strategy in strategies:
        cells = []
        for annotator in annotators:
            row = results.get(f"{strategy}/{annotator}")
            cells.append("" if row is None else
                         f"{row['final_mean']:.3f} ± {row['final_std']:.3f} / {row['mean_mean']:.3f} ± {row['mean_std']:.3f}")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    label = ["| label accuracy of the queried texts (mean over strategies) | " + " | ".join(
        f"{np.mean([r['label_accuracy_mean'] for k, r in results.items() if k.endswith('/' + a)]):.3f}" for a in annotators
    ) + " |"]
    return "\n".join(lines + label)


def timing(args: argparse.Namespace) -> None:
    """Wall time of one fast-mode iteration (query + label + train + predict on all 5,452 texts)."""
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies:
            values = run_config(strategy, "molam", 0, 2, args.batch, args.n_seeds)
            config = parse_config(values)
            project = prepare_project(config, Path(tmp) / f"timing-{strategy}.sqlite")
            store, loop = project.store, build_loop(project, config.loop)
            started = time.perf_counter()
            loop.run(1)  # MoLAM fit, first embeddings (cached afterwards), iteration 0 and 1
            warmup = time.perf_counter() - started
            started = time.perf_counter()
            loop.run(1)
            wall = time.perf_counter() - started
            timings = store.iteration(2).timings
            store.close()
            steps = ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
            print(f"{strategy:>14}: one iteration {wall:.2f} s ({steps}); warm-up (MoLAM fit, seeds, iteration 1) {warmup:.1f} s",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seed sets (default 3)")
    parser.add_argument("--strategies", nargs="+", default=["random", "coreset"])
    parser.add_argument("--annotators", nargs="+", default=list(ANNOTATORS))
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--n-seeds", type=int, default=50, help="seed labels per run (default 50)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "runs" / "al_trec"))
    parser.add_argument("--timing", action="store_true", help="only time one fast-mode iteration per strategy")
    parser.add_argument("--markdown", action="store_true", help="print the README table from <out>/al_trec.json")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MOLLIA_TORCH_THREADS") or 2))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.markdown:
        print(markdown_table(json.loads((Path(args.out) / "al_trec.json").read_text())["results"]))
    elif args.timing:
        timing(args)
    else:
        benchmark(args)


if __name__ == "__main__":
    main()
