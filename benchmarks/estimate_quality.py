"""How good is MoLAM's no-gold estimate of its own accuracy (issues 9 and 12)?

    python benchmarks/estimate_quality.py --evidence ../shared/data/paper-evidence/trec
    python benchmarks/estimate_quality.py --evidence ../shared/data/paper-evidence/imdb --json
    python benchmarks/estimate_quality.py --dataset "bbc-news headlines (embedded panel)" --cache /tmp/lq/evidence.sqlite

Protocol (that of ``benchmarks/label_quality.py``, whose loaders this reuses): for each of
``--seed-sets`` (5) seed sets, ``--n-seeds`` (50) random texts get their gold label as the human
labels; MoLAM (the product's default, with the text member where the dataset has texts) is fitted
on them, and its true accuracy is its accuracy on all the other texts. Each estimator sees the
human labels only:

- ``cv``: the pooled out-of-fold accuracy on the seeds, as the MoLAM page shows it today
  (``annotation.estimate_accuracy``, 5 folds, each fold model choosing its own C; Wilson interval);
- ``calibrated``: ``annotation.estimate_labeled_accuracy``: MoLAM's probabilities on the texts it
  labels, recalibrated by a temperature fitted on the seeds' out-of-fold probabilities (the fold
  models keep the C chosen on all the seeds); the mean calibrated top probability, with a bootstrap
  interval over the seeds (each resample fitting its own temperature);
- ``calibrated, widened`` (the app's estimate): the same point estimate, its interval widened by the
  calibration residual's own sampling spread over the seeds (how closely n human labels can check
  the calibration) and each group's binomial spread (``TemperatureCalibration.expected_accuracy``).

Reported per estimator: mean signed error and mean absolute error against the true accuracy over
the seed sets, how often the 95 % interval held the truth, its mean width; and for ``calibrated``
the same per label (texts MoLAM gives each label, error weighted by their number).
``--seed-sets`` / ``--first-seed-set`` pick which seed sets run (0, 1, ... as in label_quality.py).
``--json`` prints one JSON object on the last line of stdout (tables go to stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
for path in (REPO_ROOT, REPO_ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from label_quality import DATASETS, DEFAULT_CACHE, Dataset, load_evidence_dir, seed_vector  # noqa: E402

from mollia_core.annotation import MoLAM, estimate_accuracy, estimate_labeled_accuracy, fit_annotator  # noqa: E402
from mollia_core.text_member import TextMember  # noqa: E402


ESTIMATORS = ("cv", "calibrated", "calibrated, widened")


def one_seed_set(dataset: Dataset, member: TextMember | None, n_seeds: int, seed_set: int, n_splits: int = 5) -> dict:
    y = seed_vector(dataset.evidence.n_texts, n_seeds, dataset.gold, seed_set)
    others = y == -1
    fitted = MoLAM(random_state=seed_set)
    panel = fit_annotator(fitted, dataset.evidence, y, member)
    proba = fitted.predict_proba(panel)[others]
    given = proba.argmax(axis=1)
    right = given == dataset.gold[others]
    cv = estimate_accuracy({"MoLAM": MoLAM(random_state=seed_set)}, dataset.evidence, y, random_state=seed_set,
                           text_member=member).methods["MoLAM"]
    widened = estimate_labeled_accuracy(MoLAM(random_state=seed_set), dataset.evidence, y, text_member=member,
                                        random_state=seed_set, fitted=fitted, fitted_panel=panel,
                                        n_splits=n_splits)
    # The same calibration (same fold probabilities, same resamples), its interval as before the widening.
    groups = {None: np.ones(len(given), dtype=bool)} | {k: given == k for k in range(len(dataset.evidence.labels))}
    narrow = replace(widened.calibration, widened=False).expected_accuracy(proba, given, groups)
    run: dict = {"true": float(right.mean()), "cv": {"estimate": cv.accuracy, "low": cv.low, "high": cv.high},
                 "temperature": widened.temperature}
    for name, estimate in (("calibrated", narrow), ("calibrated, widened", widened.calibration.expected_accuracy(
            proba, given, groups))):
        run[name] = {"estimate": estimate[None].accuracy, "low": estimate[None].low, "high": estimate[None].high}
        run[name + " per label"] = {
            dataset.evidence.labels[k]: {"true": float(right[given == k].mean()), "estimate": estimate[k].accuracy,
                                         "low": estimate[k].low, "high": estimate[k].high, "n": estimate[k].n}
            for k in range(len(dataset.evidence.labels)) if estimate[k].n
        }
    return run


def summary(runs: list[dict]) -> dict:
    true = np.array([r["true"] for r in runs])
    out: dict = {"true_accuracy": float(true.mean()), "seed_sets": len(runs)}
    for name in ESTIMATORS:
        estimate = np.array([r[name]["estimate"] for r in runs])
        low, high = np.array([r[name]["low"] for r in runs]), np.array([r[name]["high"] for r in runs])
        out[name] = {
            "mean": float(estimate.mean()),
            "mean_signed_error": float((estimate - true).mean()),
            "mean_abs_error": float(np.abs(estimate - true).mean()),
            "covered": int(((low <= true) & (true <= high)).sum()),
            "mean_width": float((high - low).mean()),
        }
        if name == "cv":
            continue
        cells = [(c["estimate"] - c["true"], c["n"], c["low"] <= c["true"] <= c["high"], c["high"] - c["low"])
                 for r in runs for c in r[name + " per label"].values()]
        errors, weights, covered, widths = (np.array(v, dtype=float) for v in zip(*cells))
        out[name + " per label"] = {
            "mean_signed_error": float(np.average(errors, weights=weights)),
            "mean_abs_error": float(np.average(np.abs(errors), weights=weights)),
            "covered": f"{int(covered.sum())} of {len(covered)}",
            "mean_width": float(widths.mean()),
        }
    return out


def table(name: str, result: dict) -> str:
    lines = [f"{name}: true accuracy {result['true_accuracy']:.3f} (mean over {result['seed_sets']} seed sets)",
             "| estimator | mean estimate | mean signed error | mean abs error | 95 % interval held the truth | mean width |",
             "|---|---|---|---|---|---|"]
    for estimator in ESTIMATORS:
        r = result[estimator]
        lines.append(f"| {estimator} | {r['mean']:.3f} | {r['mean_signed_error'] * 100:+.1f} | "
                     f"{r['mean_abs_error'] * 100:.1f} | {r['covered']} of {result['seed_sets']} | {r['mean_width']:.3f} |")
        if estimator != "cv":
            r = result[estimator + " per label"]
            lines.append(f"| {estimator}, per label (weighted by texts) | | {r['mean_signed_error'] * 100:+.1f} | "
                         f"{r['mean_abs_error'] * 100:.1f} | {r['covered']} | {r['mean_width']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--evidence", help="a folder in the paper-evidence layout")
    source.add_argument("--dataset", choices=list(DATASETS), help="a dataset of label_quality.py (embedded-panel "
                        "datasets read the evidence its `collect` left in --cache)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="label_quality.py's evidence cache")
    parser.add_argument("--n-seeds", type=int, default=50)
    parser.add_argument("--seed-sets", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5, help="folds of the seeds for the calibrated estimators")
    parser.add_argument("--first-seed-set", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line of stdout")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    if args.evidence and not (Path(args.evidence) / "meta_x.npy").is_file():
        parser.error(f"{args.evidence} is not a paper-evidence folder (no meta_x.npy in it)")
    dataset = load_evidence_dir(args.evidence) if args.evidence else DATASETS[args.dataset](args.cache)
    if dataset is None or dataset.evidence.n_texts < 2 * args.n_seeds:
        parser.error(f"{args.dataset}: fewer than {2 * args.n_seeds} texts with evidence from every model in "
                     f"{args.cache} (run `label_quality.py collect` first)")
    member = TextMember(dataset.texts) if dataset.texts is not None else None
    runs = []
    for s in range(args.first_seed_set, args.first_seed_set + args.seed_sets):
        started = time.perf_counter()
        runs.append(one_seed_set(dataset, member, args.n_seeds, s, args.folds))
        r = runs[-1]
        log(f"  seed set {s}: true {r['true']:.3f}, cv {r['cv']['estimate']:.3f}, calibrated "
            f"{r['calibrated']['estimate']:.3f} [{r['calibrated']['low']:.3f}, {r['calibrated']['high']:.3f}], "
            f"widened [{r['calibrated, widened']['low']:.3f}, {r['calibrated, widened']['high']:.3f}] "
            f"(T = {r['temperature']:.2f}; {time.perf_counter() - started:.0f} s)")
    result = summary(runs)
    log(table(Path(args.evidence).name if args.evidence else args.dataset, result))
    if args.json:
        print(json.dumps({**result, "runs": runs}))


if __name__ == "__main__":
    main()
