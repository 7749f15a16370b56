"""Evidence on demand ("label as you go", issue 11): how soon is MoLAM ready, and what does it cost in accuracy?

    # speed: the embedded panel answers only what the project needs, through the product path
    MOLLIA_TORCH_THREADS=1 nice -n 10 python benchmarks/on_demand.py speed
    python benchmarks/on_demand.py speed --models smollm2-135m --seeds 10 --sample 4 --iterations 1 --batch 4 --limit 200
    python benchmarks/on_demand.py speed --dataset rotten-tomatoes --sample 200 --iterations 10 --batch 50 --json

    # accuracy: full evidence up front against evidence on demand, the paper's TREC evidence replayed
    MOLLIA_TORCH_THREADS=1 nice -n 10 python benchmarks/on_demand.py accuracy --evidence ../shared/data/paper-evidence/trec
    python benchmarks/on_demand.py accuracy --evidence DIR --seed-sets 1 --iterations 2 --batch 10 --json

``speed`` (default dataset ``rotten-tomatoes`` from ``mollia_core.examples``, 8,530 texts; ``--limit N``:
a random subset of N texts; ``--models``: comma-separated embedded models, default the dashboard's
panel for a new project, ``mollia_core.label.default_models()``): one project in ``on-demand`` mode
(``project.panel.set_evidence_plan("on-demand", --sample)``), every text in the pool (no validation
split: no gold is needed; the ``--seeds`` seed labels are drawn from the gold column), run as the CLI
runs it: ``mollia_core.config.panel_answerer`` answers (a) the seed texts, then MoLAM is fitted with
its cross-validation estimate (``project.annotation.fit(..., cv=True)``): the time to a first fitted
MoLAM with an estimate; (b) the self-training sample (``answer(None)``: ``needed_indices()``), then
MoLAM is refitted; (c) ``--iterations`` AL iterations of ``--batch`` random queries with the fast
learner (``seed_cv_folds`` 0), the loop asking the panel for the queried texts (its answer step).
Printed: each phase's wall time, each iteration's wall time and ``answer_s`` (the first iteration's
wall time includes iteration 0, the AL model's training on the seeds), the total, texts answered per
model, the measured seconds per text per model (``project.panel.seconds_per_text()``) and the
``full`` mode's expected answering time, sum over models of measured rate x number of texts:
COMPUTED from those rates, not run. The measured rates include loading each model once (the
answerer loads a model lazily inside its first timed batch, the seed phase's, and keeps it loaded for
the later calls); the per-phase rates and the expected time from the sample phase's rates alone are
printed too. By default the LLMs answer through a fresh evidence cache in the temporary folder (so every answer is computed, as on a new machine); ``--cache default`` uses the
user's cache (``data_home()/evidence-cache.sqlite``), where answers already cached cost nothing.

``accuracy --evidence DIR`` (a paper-evidence folder with texts, e.g. ``../shared/data/paper-evidence/trec``):
the texts split as in ``benchmarks/al_trec.py`` (1,000 test, 500 validation, ``split_random_state`` 0,
the rest the pool); per seed set s (``--seed-sets``, 5), two projects over the same texts, splits and
``--n-seeds`` (50) seeds drawn from the pool (``take_seeds_from_column(n, s)``): ``full``, every LLM's
evidence imported up front, and ``on-demand``, only that of the seeds and the ``--sample`` (200)
self-training sample imported, the loop's answer step importing the paper's records of the texts it
asks for (a replay answerer playing the LLMs). Both: MoLAM with the product's default settings
(``AnnotatorSettings(random_state=s)``) fitted before the loop, ``--iterations`` (10) iterations of
``--batch`` (50) random queries (``random_state`` s, so both modes query the same texts; checked and
printed), the fast learner, ``seed_cv_folds`` 0. Reported per mode, mean +- std over seed sets:
MoLAM's accuracy against gold on the queried texts, the AL model's final test accuracy, the texts
each mode had answered per model; and the on-demand minus full difference of MoLAM's accuracy.

Issue 11 asked for this on BBC headlines with the embedded panel; no cached embedded-panel BBC
evidence exists on this machine, so ``accuracy`` replays the paper's real TREC evidence (5 LLMs)
instead. ``--json`` prints one JSON object on the last line of stdout (the rest goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
for path in (REPO_ROOT, REPO_ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from al_trec import SPLIT_RANDOM_STATE, TEST_SIZE, VALIDATION_SIZE  # noqa: E402

from mollia_core.loop import LoopConfig  # noqa: E402
from mollia_core.project import AnnotatorSettings, AnnotatorSpec, Project  # noqa: E402


def loop_config(args: argparse.Namespace, random_state: int) -> LoopConfig:
    return LoopConfig(batch_size=args.batch, planned_iterations=args.iterations, strategy="random",
                      learner_mode="fast", random_state=random_state, seed_cv_folds=0)


def molam_on_queried(project: Project, gold: np.ndarray) -> tuple[float | None, list[int]]:
    """MoLAM's accuracy against gold on the texts it labeled in the AL iterations, and those texts."""
    rows = [r for r in project.store.annotations() if r.source == "molam" and r.iteration >= 1]
    if not rows:
        return None, []
    return float(np.mean([r.label == gold[r.text_index] for r in rows])), sorted(r.text_index for r in rows)


# ---------------------------------------------------------------------- speed
def evidence_timing(project: Project) -> dict:
    """The panel's stored answering time so far, {model: {"seconds", "texts"}} (what seconds_per_text reads)."""
    return {m: dict(t) for m, t in project.store.get_setting("evidence_seconds", {}).items()}


def timing_delta(before: dict, after: dict) -> dict:
    """Per model, the answering seconds and texts between two :func:`evidence_timing` readings."""
    out = {}
    for model, t in after.items():
        b = before.get(model, {"seconds": 0.0, "texts": 0})
        if t["texts"] > b["texts"]:
            out[model] = {"seconds": t["seconds"] - b["seconds"], "texts": t["texts"] - b["texts"]}
    return out


def run_speed(args: argparse.Namespace, log) -> dict:
    from mollia_core.config import panel_answerer
    from mollia_core.examples import load_example
    from mollia_core.label import annotator_spec, default_models

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(default_models())
    result: dict = {"dataset": args.dataset, "models": models, "seeds": args.seeds, "sample": args.sample,
                    "iterations": args.iterations, "batch": args.batch}
    with tempfile.TemporaryDirectory(prefix="on-demand-speed-") as tmp:
        if args.cache == "fresh":  # a new, empty evidence cache: every answer is computed
            import mollia_core.evidence.cache as cache_module

            fresh = Path(tmp) / "evidence-cache.sqlite"
            cache_module.default_cache_path = lambda: fresh
        started = time.perf_counter()
        frame = load_example(args.dataset, n=args.limit or None, random_state=args.random_state)
        project = Project.create("on-demand-speed", root=tmp)
        try:
            project.dataset.set_dataset(frame, "text", id_column="id", label_column="label", hold_out_validation=False)
            project.panel.set_specs([annotator_spec(m) for m in models])
            project.panel.set_evidence_plan("on-demand", args.sample)
            project.dataset.take_seeds_from_column(args.seeds, args.random_state)
            answer = panel_answerer(project, say=lambda line: log(f"  {line}"))
            timing_before = evidence_timing(project)
            n_texts = project.store.n_texts
            result["n_texts"] = n_texts
            settings = AnnotatorSettings(random_state=args.random_state)
            seeds = np.flatnonzero(project.dataset.seed_vector() >= 0)

            t = time.perf_counter()
            answer(seeds)
            seed_answer_s = time.perf_counter() - t
            t = time.perf_counter()
            report = project.annotation.fit(settings, cv=True)
            fit_s = time.perf_counter() - t
            first_molam_s = time.perf_counter() - started
            estimate = None
            if report.estimates:
                primary = report.estimates["methods"].get(report.estimates["primary"], {})
                estimate = {k: primary.get(k) for k in ("accuracy", "low", "high", "n")}
            log(f"first fitted MoLAM with its CV estimate: {first_molam_s:.1f} s from start "
                f"(seed texts answered in {seed_answer_s:.1f} s, fit with cv {fit_s:.1f} s); CV estimate "
                + (f"{estimate['accuracy']:.3f} (95 % {estimate['low']:.3f}-{estimate['high']:.3f}, "
                   f"{estimate['n']} seeds)" if estimate else "none"))
            phases = {"seeds": timing_delta(timing_before, evidence_timing(project))}
            timing_before = evidence_timing(project)

            t = time.perf_counter()
            answer(None)  # needed_indices(): the self-training sample (the seeds are answered)
            sample_answer_s = time.perf_counter() - t
            t = time.perf_counter()
            project.annotation.fit(settings, cv=False)
            refit_s = time.perf_counter() - t
            phases["sample"] = timing_delta(timing_before, evidence_timing(project))
            timing_before = evidence_timing(project)
            log(f"self-training sample: answered in {sample_answer_s:.1f} s, MoLAM refitted in {refit_s:.1f} s "
                f"({time.perf_counter() - started:.1f} s from start)")

            config = loop_config(args, args.random_state)
            walls = []
            loop_started = time.perf_counter()
            for i in range(args.iterations):
                t = time.perf_counter()
                project.loop.run_iterations(1, config, answer=answer)
                walls.append(time.perf_counter() - t)
                record = project.loop.iterations()[-1]
                log(f"iteration {record.iteration}: {walls[-1]:.1f} s wall, answer_s "
                    f"{record.timings.get('answer_s', 0.0):.1f}, {record.metrics.get('n_answered', 0)} texts answered"
                    + (" (includes iteration 0: the AL model's training on the seeds)" if i == 0 else ""))
            loop_s = time.perf_counter() - loop_started
            phases["iterations"] = timing_delta(timing_before, evidence_timing(project))
            records = project.loop.iterations()
            rates = project.panel.seconds_per_text()
            counts = project.panel.evidence_counts()
            expected_full = {m: rates[m] * n_texts for m in models if m in rates}
            sample_rates = {m: t["seconds"] / t["texts"] for m, t in phases.get("sample", {}).items()}
            expected_from_sample = {m: sample_rates[m] * n_texts for m in models if m in sample_rates}
            result.update({
                "seed_answer_s": seed_answer_s, "fit_cv_s": fit_s, "first_molam_s": first_molam_s,
                "cv_estimate": estimate,
                "estimates": report.estimates,
                "sample_answer_s": sample_answer_s, "refit_s": refit_s,
                "iterations_detail": [{"iteration": r.iteration, "wall_s": walls[r.iteration - 1] if 1 <= r.iteration <= len(walls) else None,
                                       "answer_s": r.timings.get("answer_s"), "n_answered": r.metrics.get("n_answered"),
                                       "timings": r.timings} for r in records],
                "iterations_total_s": loop_s, "total_s": time.perf_counter() - started,
                "evidence_counts": counts, "covered": int(len(project.panel.covered_indices())),
                "seconds_per_text": rates, "seconds_per_text_by_phase": phases,
                "full_mode_expected_s": {"per_model": expected_full, "total": sum(expected_full.values()),
                                         "computed_not_run": True, "n_texts": n_texts,
                                         "from_sample_rate": {"per_model": expected_from_sample,
                                                              "total": sum(expected_from_sample.values())}},
            })
        finally:
            project.store.close()
    log(f"all {args.iterations} iterations: {result['iterations_total_s']:.1f} s; total {result['total_s']:.1f} s")
    log("texts answered per model: " + ", ".join(f"{m} {c}" for m, c in result["evidence_counts"].items())
        + f" (every LLM: {result['covered']} of {result['n_texts']})")
    log("measured seconds per text (project.panel.seconds_per_text(), every answer call, model loading included): "
        + ", ".join(f"{m} {s:.3f}" for m, s in result["seconds_per_text"].items()))
    for phase, per_model in result["seconds_per_text_by_phase"].items():
        log(f"  {phase}: " + ", ".join(f"{m} {t['texts']} texts in {t['seconds']:.1f} s "
                                       f"({t['seconds'] / t['texts']:.3f} s/text)" for m, t in per_model.items()))
    full = result["full_mode_expected_s"]
    log(f"full mode, expected (COMPUTED from the measured rates x {full['n_texts']} texts, not run): "
        f"{full['total']:.0f} s = {full['total'] / 3600:.2f} h ("
        + ", ".join(f"{m} {s:.0f} s" for m, s in full["per_model"].items()) + ")")
    alt = full["from_sample_rate"]
    if alt["per_model"]:
        log(f"  the same from the self-training sample's rates alone (one model load per model, as a full run has): "
            f"{alt['total']:.0f} s = {alt['total'] / 3600:.2f} h ("
            + ", ".join(f"{m} {s:.0f} s" for m, s in alt["per_model"].items()) + ")")
    return result


# ---------------------------------------------------------------------- accuracy
class ReplayAnswerer:
    """Plays the LLMs for the loop's answer step: imports the paper's records of the asked texts."""

    def __init__(self, project: Project, specs: list[AnnotatorSpec], records: list[list]) -> None:
        self.project, self.specs, self.records = project, specs, records

    def __call__(self, indices=None, cancel=None) -> dict[str, int]:
        panel = self.project.panel
        wanted = panel.needed_indices() if indices is None else [int(i) for i in indices]
        added = {}
        for spec, records in zip(self.specs, self.records):
            missing = panel.missing_evidence(spec.display_name, wanted)
            if missing:
                panel.import_evidence_records(spec, [records[i] for i in missing])
            added[spec.display_name] = len(missing)
        return added


def run_accuracy_mode(args, data, frame, splits, records, mode: str, seed: int, root: Path) -> dict:
    project = Project.create(f"{mode}-{seed}", root=root)
    try:
        project.dataset.set_dataset(frame, "text", id_column="id", label_column="label", labels=list(data.labels),
                                    source_name=Path(args.evidence).name, splits=list(splits))
        specs = [AnnotatorSpec(kind="replay", model=m, path=Path(args.evidence).name) for m in data.evidence.models]
        project.panel.set_specs(specs)
        project.panel.set_evidence_plan(mode, args.sample)
        project.dataset.take_seeds_from_column(args.n_seeds, seed)
        answer = ReplayAnswerer(project, specs, records)
        answer(None)  # full: every text; on-demand: the seeds and the self-training sample
        project.annotation.fit(AnnotatorSettings(random_state=seed), cv=False)
        started = time.perf_counter()
        project.loop.run_iterations(args.iterations, loop_config(args, seed),
                                    answer=answer if mode == "on-demand" else None)
        gold = project.dataset.gold()
        accuracy, queried = molam_on_queried(project, gold)
        last = project.loop.iterations()[-1]
        return {"molam_accuracy": accuracy, "queried": queried, "test_accuracy": last.metrics.get("test_accuracy"),
                "evidence_counts": project.panel.evidence_counts(), "covered": int(len(project.panel.covered_indices())),
                "loop_s": time.perf_counter() - started}
    finally:
        project.store.close()


def mean_std(values: list) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def run_accuracy(args: argparse.Namespace, log) -> dict:
    from mollia_core.config import assign_splits
    from mollia_core.evidence.paper import load_paper_evidence
    from mollia_core.evidence.replay import records_from_panel

    import pandas as pd

    data = load_paper_evidence(args.evidence)
    if data.texts is None:
        raise SystemExit(f"{args.evidence} holds no texts (no <model>.jsonl files): the AL model needs them")
    gold = np.asarray(data.gold, dtype=int)
    ids = [str(i) for i in range(len(data.texts))]
    frame = pd.DataFrame({"id": ids, "text": list(data.texts),
                          "label": [data.labels[g] if g >= 0 else "" for g in gold]})
    splits = assign_splits(len(frame), TEST_SIZE, VALIDATION_SIZE, SPLIT_RANDOM_STATE, gold >= 0)
    records = records_from_panel(replace(data.evidence, text_ids=tuple(ids)))
    modes = ("full", "on-demand")
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    same_queries = []
    with tempfile.TemporaryDirectory(prefix="on-demand-accuracy-") as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seed_sets):
            for mode in modes:
                run = run_accuracy_mode(args, data, frame, splits, records, mode, seed, Path(tmp))
                runs[mode].append({**run, "seed": seed})
                log(f"seed {seed} {mode:>9}: MoLAM on queried {run['molam_accuracy']:.3f} "
                    f"({len(run['queried'])} texts), final test {run['test_accuracy']}, answered "
                    + ", ".join(f"{m} {c}" for m, c in run["evidence_counts"].items())
                    + f" ({run['loop_s']:.0f} s)")
            same_queries.append(runs["full"][-1]["queried"] == runs["on-demand"][-1]["queried"])
    differences = [o["molam_accuracy"] - f["molam_accuracy"] for f, o in zip(runs["full"], runs["on-demand"])]
    result = {"evidence": str(Path(args.evidence).resolve()), "seed_sets": args.seed_sets,
              "n_texts": len(frame), "pool": int((splits == "pool").sum()), "sample": args.sample,
              "iterations": args.iterations, "batch": args.batch, "same_queried_texts": all(same_queries)}
    for mode in modes:
        result[mode] = {
            "molam_accuracy": mean_std([r["molam_accuracy"] for r in runs[mode]]),
            "test_accuracy": mean_std([r["test_accuracy"] for r in runs[mode]]),
            "evidence_counts": {m: mean_std([r["evidence_counts"].get(m) for r in runs[mode]])["mean"]
                                for m in runs[mode][0]["evidence_counts"]},
            "per_seed": [{k: v for k, v in r.items() if k != "queried"} for r in runs[mode]],
        }
    result["difference_on_demand_minus_full"] = mean_std(differences)
    log("| mode | MoLAM on queried texts | AL final test accuracy | texts answered per model (mean) |")
    log("|---|---|---|---|")
    for mode in modes:
        r = result[mode]
        counts = ", ".join(f"{m} {c:.0f}" for m, c in r["evidence_counts"].items() if c is not None)
        log(f"| {mode} | {fmt(r['molam_accuracy'])} | {fmt(r['test_accuracy'])} | {counts} |")
    log(f"difference (on-demand - full) of MoLAM on queried texts: {fmt(result['difference_on_demand_minus_full'])}"
        f" over {args.seed_sets} seed sets; both modes queried the same texts: {result['same_queried_texts']}")
    return result


def fmt(stat: dict) -> str:
    return "n/a" if stat["mean"] is None else f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("speed", help="time to a fitted MoLAM and per iteration, evidence on demand")
    speed.add_argument("--dataset", default="rotten-tomatoes", help="an example dataset (mollia_core.examples)")
    speed.add_argument("--limit", type=int, default=0, help="a random subset of this many texts (0: all)")
    speed.add_argument("--models", help="comma-separated embedded models (default: the dashboard's default panel)")
    speed.add_argument("--seeds", type=int, default=50)
    speed.add_argument("--sample", type=int, default=200, help="the self-training sample")
    speed.add_argument("--iterations", type=int, default=10)
    speed.add_argument("--batch", type=int, default=50)
    speed.add_argument("--random-state", type=int, default=0)
    speed.add_argument("--cache", choices=("fresh", "default"), default="fresh",
                       help="the LLMs' evidence cache: a new empty one (default) or the user's")
    accuracy = sub.add_parser("accuracy", help="MoLAM's accuracy with full evidence against evidence on demand")
    accuracy.add_argument("--evidence", required=True, help="a paper-evidence folder with texts")
    accuracy.add_argument("--seed-sets", type=int, default=5)
    accuracy.add_argument("--first-seed", type=int, default=0)
    accuracy.add_argument("--n-seeds", type=int, default=50)
    accuracy.add_argument("--iterations", type=int, default=10)
    accuracy.add_argument("--batch", type=int, default=50)
    accuracy.add_argument("--sample", type=int, default=200, help="the self-training sample of the on-demand mode")
    for p in (speed, accuracy):
        p.add_argument("--json", action="store_true", help="print one JSON object on the last line of stdout")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    import torch

    torch.set_num_threads(int(os.environ.get("MOLLIA_TORCH_THREADS") or 1))
    result = run_speed(args, log) if args.command == "speed" else run_accuracy(args, log)
    if args.json:
        print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
