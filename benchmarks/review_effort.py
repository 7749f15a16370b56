"""How few reviews close the gap to gold labels (issue 12)?

    MOLLIA_TORCH_THREADS=1 nice python benchmarks/review_effort.py --evidence ../shared/data/paper-evidence/trec
    python benchmarks/review_effort.py --evidence DIR --seeds 3 --json

Protocol (that of ``benchmarks/al_trec.py``; the project is built and run through the product's
Project / services, as the dashboard and the CLI do): the folder's texts split once
(``split_random_state`` 0) into 1,000 test, 500 validation (metrics only) and the pool; per seed set s,
50 seed labels drawn at random from the pool (gold labels as the human's), 10 iterations of 50 random
queries, the fast learner, MoLAM (the product's default, with the text member) labeling the queries.
After each iteration's labeling and before its training, a simulated reviewer (the gold labels)
reviews the first k texts of the review queue (``project.queue.ranked(k)``): it accepts a label that
equals gold and overrides it to gold otherwise (``project.review.accept`` / ``override``); with
``refit_on_reviews`` MoLAM is refitted on seeds + reviewed labels before it labels the next batch.

Configurations: k in ``--ks`` (0, 5, 10, 20, 50) in queue order; at ``--compare-k`` (10) also the
same budget in random order and in d_anno order (flagged texts first, random among them), and the
queue with refitting off; and the upper reference, all-gold AL (annotator ``gold``: 50 human labels
per iteration). Reported per configuration, mean and std over seed sets: human labels spent (seeds
+ reviews), labeled-set accuracy against gold after the last iteration, final AL test accuracy, the
share of reviewed texts whose label was wrong, MoLAM's accuracy on the queried texts, and the
product's no-gold estimate of the labeled set's accuracy (``project.annotation.labeled_set_estimate()``,
what the Review and Export pages show) against the truth: signed and absolute error, and how often
its 95 % interval held the truth.
Nothing is chosen or tuned on gold labels; they only play the reviewer and score the result.
``--json`` prints one JSON object on the last line of stdout (tables go to stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
for path in (REPO_ROOT, REPO_ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from al_trec import SPLIT_RANDOM_STATE, TEST_SIZE, VALIDATION_SIZE  # noqa: E402

from mollia_core.annotation import apply_temperature  # noqa: E402
from mollia_core.config import parse_config, prepare_project  # noqa: E402
from mollia_core.loop import LoopConfig  # noqa: E402
from mollia_core.project import AnnotatorSettings, Project  # noqa: E402
from mollia_core.store import RESPONSE_KINDS  # noqa: E402

ORDERS = ("queue", "random", "d_anno")


def run_values(evidence: Path, annotator: str, seed: int, args: argparse.Namespace) -> dict:
    return {
        "dataset": {"paper_evidence": str(evidence.resolve()), "test_size": args.test_size,
                    "validation_size": args.validation_size, "split_random_state": SPLIT_RANDOM_STATE},
        "seeds": {"n": args.n_seeds, "random_state": seed},
        "annotator": annotator,
        "loop": {"strategy": "random", "batch_size": args.batch, "planned_iterations": args.iterations,
                 "random_state": seed, "learner_mode": "fast", **dict(args.loop_setting)},
    }


def to_review(project: Project, k: int, order: str, rng: np.random.Generator) -> list[int]:
    """The text indices the reviewer takes this iteration: the first k in ``order``."""
    if k == 0:
        return []
    if order == "queue":
        return [project.index_of(text_id) for text_id in project.queue.ranked(k)["id"]]
    rows = [r for r in project.store.annotations() if not r.is_human]
    shuffled = [rows[i] for i in rng.permutation(len(rows))]
    if order == "d_anno":  # flagged first (a stable sort keeps the random order among equals)
        shuffled.sort(key=lambda r: not r.d_anno)
    return [r.text_index for r in shuffled[:k]]


def review(project: Project, indices: list[int], gold: np.ndarray) -> int:
    """The simulated reviewer: accept a label equal to gold, else override it to gold; returns how
    many labels were wrong."""
    wrong = 0
    for i in indices:
        text_id = project.text_ids[i]
        if project.store.annotation(i).label == gold[i]:
            project.review.accept(text_id)
        else:
            project.review.override(text_id, project.labels[gold[i]])
            wrong += 1
    return wrong


def prepared(evidence: Path, workdir: Path, annotator: str, seed: int, args: argparse.Namespace) -> Path:
    """The project of one seed set and annotator, built once (texts, evidence, seeds, MoLAM's fit on
    the seeds with its cross-validation and its out-of-fold labels on them, which only the seeds decide)
    and copied for each run."""
    path = workdir / f"prepared-{annotator}-{seed}.mollia.sqlite"
    if not path.exists():
        values = run_values(evidence, annotator, seed, args)
        project = prepare_project(parse_config(values), path)
        if annotator != "gold":
            # the MoLAM page's Fit MoLAM: with its cross-validation, whose calibration the estimate reads
            project.fit_annotator(AnnotatorSettings(method=annotator, random_state=seed), cv=True)
            project.annotation.seed_examples()
        project.store.close()
    return path


def run_one(evidence: Path, workdir: Path, name: str, annotator: str, k: int, order: str, refit: bool,
            seed: int, args: argparse.Namespace) -> dict:
    values = run_values(evidence, annotator, seed, args)
    path = workdir / f"{name.replace(' ', '_').replace('=', '')}-{seed}-{os.getpid()}.mollia.sqlite"  # one file per process
    shutil.copyfile(prepared(evidence, workdir, annotator, seed, args), path)
    project = Project(path)
    try:
        if annotator != "gold" and project.annotator_settings().refit_on_reviews != refit:
            project.fit_annotator(AnnotatorSettings(method=annotator, random_state=seed, refit_on_reviews=refit),
                                  cv=False)
        settings = LoopConfig.from_dict(values["loop"])
        gold = project.gold()
        rng = np.random.default_rng(1000 + seed)
        reviewed = wrong = 0
        curve = []
        loop = project.loop.active_loop(settings)
        loop.step()  # iteration 0: the seeds
        for _ in range(args.iterations):
            loop = project.loop.active_loop(settings)  # MoLAM refitted here when the human labels changed
            loop.step()  # query
            loop.step()  # label
            chosen = to_review(project, k, order, rng)
            wrong += review(project, chosen, gold)
            reviewed += len(chosen)
            record = loop.step().record  # train, reviews included
            rows = project.store.annotations()
            estimate = project.annotation.labeled_set_estimate()  # what the Review and Export pages show
            queue = project.queue.ranked()  # every model label of L no human reviewed, with its wrong_chance
            curve.append({"human_labels": args.n_seeds + reviewed,
                          "labeled_accuracy": float(np.mean([r.label == gold[r.text_index] for r in rows])),
                          "estimated_accuracy": estimate.overall.accuracy if estimate is not None else None,
                          "estimate_low": estimate.overall.low if estimate is not None else None,
                          "estimate_high": estimate.overall.high if estimate is not None else None,
                          # the queue's chance of a wrong label, learned on the human labels, as an estimate
                          "queue_estimated_accuracy": 1.0 - float(queue["wrong_chance"].sum()) / len(rows),
                          "conserved_estimated_accuracy": _conserved(project, rows),
                          "test_accuracy": record.metrics["test_accuracy"]})
        batches = [it.metrics.get("annotator_batch_accuracy") for it in project.iterations()[1:]]
        human = args.n_seeds + reviewed + (args.iterations * args.batch if annotator == "gold" else 0)
        return {
            "human_labels": human,
            "labeled_accuracy": curve[-1]["labeled_accuracy"],
            **_estimate_error(curve[-1]),
            "final_accuracy": curve[-1]["test_accuracy"],
            "reviewed_wrong_share": wrong / reviewed if reviewed else None,
            "annotator_accuracy": float(np.mean([b for b in batches if b is not None])),
            "curve": curve,
        }
    finally:
        project.store.close()


def _conserved(project: Project, rows: list) -> float:
    """A comparison estimate, not the product's: the wrong labels MoLAM gave in all (reviewed or not,
    by the seeds' temperature), less those the reviews found, over the labeled set."""
    temperature = project.annotation.fit_report().labeled_accuracy_estimate().temperature
    model_rows = [r for r in rows if r.annotator_label is not None and r.proba is not None]
    given = np.array([r.annotator_label for r in model_rows], dtype=int)
    calibrated = apply_temperature(np.array([r.proba for r in model_rows]), temperature)
    right = float(calibrated[np.arange(len(given)), given].mean())
    found = sum(r.source in RESPONSE_KINDS and r.label != r.annotator_label for r in model_rows)
    return 1.0 - max(0.0, (1.0 - right) * len(given) - found) / len(rows)


def _estimate_error(point: dict) -> dict:
    """The no-gold estimate of the labeled set's accuracy at a point of the curve against the truth."""
    if point["estimated_accuracy"] is None:
        return {"estimated_accuracy": None, "estimate_error": None, "estimate_abs_error": None, "estimate_covered": None}
    error = point["estimated_accuracy"] - point["labeled_accuracy"]
    queue_error = point["queue_estimated_accuracy"] - point["labeled_accuracy"]
    conserved_error = point["conserved_estimated_accuracy"] - point["labeled_accuracy"]
    return {"estimated_accuracy": point["estimated_accuracy"], "estimate_error": error, "estimate_abs_error": abs(error),
            "estimate_covered": float(point["estimate_low"] <= point["labeled_accuracy"] <= point["estimate_high"]),
            "queue_estimate_error": queue_error, "queue_estimate_abs_error": abs(queue_error),
            "conserved_error": conserved_error, "conserved_abs_error": abs(conserved_error)}


def configurations(args: argparse.Namespace) -> list[tuple[str, str, int, str, bool]]:
    """(name, annotator, k, order, refit) of every run of one seed set."""
    refit, other = args.refit == "on", "off" if args.refit == "on" else "on"
    runs = [("all_gold", "gold", 0, "queue", False)]
    runs += [(f"k={k}", "molam", k, "queue", refit) for k in args.ks]
    for k in args.compare_k:
        runs += [(f"k={k} random order", "molam", k, "random", refit),
                 (f"k={k} d_anno order", "molam", k, "d_anno", refit),
                 (f"k={k} refit {other}", "molam", k, "queue", not refit)]
    return runs


def summary(per_seed: dict[str, list[dict]]) -> dict:
    out = {}
    for name, runs in per_seed.items():
        row: dict = {"seed_sets": len(runs)}
        for key in ("human_labels", "labeled_accuracy", "final_accuracy", "reviewed_wrong_share", "annotator_accuracy",
                    "estimated_accuracy", "estimate_error", "estimate_abs_error", "estimate_covered",
                    "queue_estimate_error", "queue_estimate_abs_error", "conserved_error", "conserved_abs_error"):
            values = [r[key] for r in runs if r.get(key) is not None]
            if values:
                row[key], row[f"{key}_std"] = float(np.mean(values)), float(np.std(values))
        out[name] = row
    return out


def table(result: dict) -> str:
    lines = ["| configuration | human labels | labeled-set accuracy | final AL test accuracy | wrong among reviewed | "
             "MoLAM on queried | labeled set estimated (no gold) | estimate error signed / abs | interval held truth "
             "| seed sets |", "|---|---|---|---|---|---|---|---|---|---|"]

    def cell(row: dict, key: str) -> str:
        return f"{row[key]:.3f} ± {row[key + '_std']:.3f}" if key in row else ""

    for name, row in result.items():
        lines.append(f"| {name} | {row['human_labels']:.0f} | {cell(row, 'labeled_accuracy')} | "
                     f"{cell(row, 'final_accuracy')} | {cell(row, 'reviewed_wrong_share')} | "
                     f"{cell(row, 'annotator_accuracy')} | {cell(row, 'estimated_accuracy')} | "
                     + (f"{row['estimate_error'] * 100:+.1f} / {row['estimate_abs_error'] * 100:.1f} | "
                        f"{row['estimate_covered'] * row['seed_sets']:.0f} of {row['seed_sets']} | "
                        if "estimate_error" in row else "| | ") + f"{row['seed_sets']} |")
    return "\n".join(lines)


def _loop_setting(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=VALUE")
    return name, json.loads(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evidence", required=True, help="a folder in the paper-evidence layout (with texts)")
    parser.add_argument("--seeds", type=int, default=5, help="seed sets (default 5)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--ks", type=int, nargs="+", default=[0, 5, 10, 20, 50])
    parser.add_argument("--compare-k", type=int, nargs="*", default=[10],
                        help="budgets also run in random and d_anno order and with refitting off")
    parser.add_argument("--refit", choices=("on", "off"), default="on",
                        help="MoLAM's refit_on_reviews in the k runs (the --compare-k runs add the other)")
    parser.add_argument("--only", nargs="*", help="run only these configurations (names as in the table)")
    parser.add_argument("--loop-setting", nargs="*", default=[], type=_loop_setting, metavar="NAME=VALUE",
                        help="LoopConfig settings of every run, e.g. alpha=0.3 (values read as JSON)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--n-seeds", type=int, default=50)
    parser.add_argument("--test-size", type=int, default=TEST_SIZE, help=f"test texts (default {TEST_SIZE}, al_trec's)")
    parser.add_argument("--validation-size", type=int, default=VALIDATION_SIZE,
                        help=f"validation texts, metrics only (default {VALIDATION_SIZE})")
    parser.add_argument("--workdir", help="keep the projects here (default: a temporary folder); a second process "
                        "given the same folder reuses the prepared projects")
    parser.add_argument("--save", help="write the per-run results here as they come (JSON)")
    parser.add_argument("--summarize", nargs="+", metavar="SAVED",
                        help="only print the table (and --json) over the runs saved by --save in these files")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line of stdout")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MOLLIA_TORCH_THREADS") or 1))
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    if args.summarize:
        merged: dict[str, list[dict]] = {}
        for saved in args.summarize:
            for name, runs in json.loads(Path(saved).read_text()).items():
                merged.setdefault(name, []).extend(runs)
        report({name: runs for name, runs in merged.items() if runs}, args.json, log)
        return
    evidence = Path(args.evidence)
    if not (evidence / "meta_x.npy").is_file():
        parser.error(f"{evidence} is not a paper-evidence folder (no meta_x.npy in it)")
    import torch

    torch.set_num_threads(args.threads)
    runs = [r for r in configurations(args) if not args.only or r[0] in args.only]
    per_seed: dict[str, list[dict]] = {name: [] for name, *_ in runs}
    with tempfile.TemporaryDirectory() as tmp:
        if args.workdir:
            tmp = args.workdir
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name, annotator, k, order, refit in runs:
                started = time.perf_counter()
                result = run_one(evidence, Path(tmp), name, annotator, k, order, refit, seed, args)
                per_seed[name].append({**result, "seed": seed, "seconds": time.perf_counter() - started})
                log(f"seed {seed} {name:>20}: human labels {result['human_labels']}, labeled set "
                    f"{result['labeled_accuracy']:.3f}, final test {result['final_accuracy']:.3f} "
                    f"({time.perf_counter() - started:.0f} s)")
                if args.save:
                    Path(args.save).write_text(json.dumps(per_seed, indent=1))
    report(per_seed, args.json, log)


def report(per_seed: dict[str, list[dict]], as_json: bool, log) -> None:
    result = summary(per_seed)
    log(table(result))
    if as_json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
