"""Label quality from 50 seed labels: MoLAM (with the text member) against everything it must beat.

    python benchmarks/label_quality.py                       # every dataset in DATASETS
    python benchmarks/label_quality.py --evidence ../shared/data/paper-evidence/trec --json
    python benchmarks/label_quality.py --datasets "trec (paper evidence)" "imdb (paper evidence)"

    # the embedded panel's evidence on the example datasets (background, resumable), then evaluate
    MOLLIA_TORCH_THREADS=1 nice -n 10 python benchmarks/label_quality.py collect --cache /tmp/lq/evidence.sqlite \
        --first-round 6 --round 25
    python benchmarks/label_quality.py --cache /tmp/lq/evidence.sqlite --json
    python benchmarks/label_quality.py export --cache /tmp/lq/evidence.sqlite --out /tmp/lq/paper-layout

Protocol, per dataset: for each of ``--seed-sets`` (5) seed sets, ``--n-seeds`` (50) texts drawn at
random (``numpy.random.default_rng(s)``) get their gold label; every method is fitted on them alone
(the other texts are passed unlabeled, y = -1) and scored on ALL the other texts. Nothing is chosen
on evaluation labels: the only data-driven choices (MoLAM's logistic C, the text classifier's C) are
made by cross-validation on the seeds. Reported: mean and standard deviation over the seed sets.

Methods: the majority class of the seeds, each LLM alone (its probabilities z and its votes c), the
panel's majority vote and mean probability, the text member alone (logistic regression on TF-IDF
word + char n-grams and MiniLM embeddings, trained on the seeds), the paper's MoLAM (XGBoost on
h(x), LLM evidence only), MoLAM on the LLM evidence only (MoLLIA's recipe), and MoLAM as the product
runs it (``molam``: MoLLIA's recipe with the text member), and the same with the logistic
meta-learner that was its default until 2026-12-03. Also the app's estimate of MoLAM's
accuracy (cross-validation on the seeds, as the MoLAM page shows it) against its true accuracy.

Embedded-panel datasets (``EXAMPLE_DATASETS``: BBC headlines, Rotten Tomatoes, drug reviews, IMDB,
from ``mollia_core.examples``): ``collect`` computes the evidence of the dashboard's default panel
(``mollia_core.label.default_models()``, default prompt and decoding, surface forms on) through the
evidence cache ``--cache``, in interleaved rounds over a fixed random order per dataset
(``panel_evidence.collect_rounds``), so whatever a stopped run leaves covers every dataset and any
prefix is a random sample; a rerun resumes. The evaluation reads, per dataset, the longest prefix
that every model has (at least 2 x ``--n-seeds`` texts, else the dataset is skipped). IMDB reviews
go to the LLMs whole, as the product sends them (it truncates no text for the LLMs; only the text
member's MiniLM encoder stops at its maximum length).

A dataset is a loader taking the cache path and returning a :class:`Dataset` (texts or None, gold
labels, LLM evidence), or None when it has no evidence yet: add one to ``DATASETS``. ``--evidence DIR`` reads any folder in the paper-evidence layout
(``meta_x.npy``, ``meta_y.npy``; texts from its ``<model>.jsonl`` files when they are there).
``--json`` prints one JSON object ``{method: {"mean": ..., "std": ...}}`` (tables go to stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from mollia_core import paths  # noqa: E402
from mollia_core.annotation import (  # noqa: E402
    AnnotationModel,
    MajorityClass,
    MajorityVote,
    MeanProbability,
    MoLAM,
    SingleLLM,
    estimate_accuracy,
    fit_annotator,
)
from mollia_core.evidence import PanelEvidence, load_paper_evidence, write_paper_evidence  # noqa: E402
from mollia_core.evidence.cache import EvidenceCache  # noqa: E402
from mollia_core.label import default_models  # noqa: E402
from mollia_core.text_member import TEXT_MEMBER, TextMember  # noqa: E402

from benchmarks.panel_evidence import (  # noqa: E402
    PROMPT_VARIANTS,
    cached_prefix,
    collect_rounds,
    ordered_example,
    product_source,
    prompt_template,
)


@dataclass(frozen=True)
class Dataset:
    name: str
    texts: list[str] | None  # None: LLM evidence only, no text member
    gold: np.ndarray
    evidence: PanelEvidence  # the LLMs' evidence, in the order of texts / gold


def load_evidence_dir(directory: str | Path) -> Dataset:
    """A folder in the paper-evidence layout (texts from its jsonl files when they are there)."""
    data = load_paper_evidence(directory)
    return Dataset(data.name, list(data.texts) if data.texts is not None else None, data.gold, data.evidence)


#: The embedded-panel datasets: name -> (example dataset, text column, texts the issue asks for).
EXAMPLE_DATASETS = {
    "bbc-news headlines": ("bbc-news", "title", 1000),
    "rotten-tomatoes": ("rotten-tomatoes", "text", 500),
    "drug-reviews": ("drug-reviews", "text", 500),
    "imdb": ("imdb", "text", 300),  # whole reviews: the product sends a text to the LLMs untruncated
}
DEFAULT_CACHE = Path("/tmp/lq/evidence.sqlite")


def load_embedded(name: str, cache_path: Path, variant: str = "plain") -> Dataset | None:
    """The texts of ``EXAMPLE_DATASETS[name]`` that have cached evidence from every model of the default
    panel with the prompt ``variant`` (the longest such prefix of the fixed random order), or None when
    there are none."""
    example, column, _ = EXAMPLE_DATASETS[name]
    data = ordered_example(example, column)
    template = prompt_template(variant, data)
    records = cached_prefix(EvidenceCache(cache_path), [product_source(m, template) for m in default_models()], data)
    if not records:
        return None
    n = len(records)
    suffix = "" if variant == "plain" else f", {variant}"
    return Dataset(f"{name} (embedded panel{suffix})", data.texts[:n], data.gold_index(n),
                   PanelEvidence.from_records(records))


def first_texts(dataset: Dataset, n: int) -> Dataset:
    """The dataset's first ``n`` texts (all of them when it has fewer)."""
    keep = np.arange(min(n, dataset.evidence.n_texts))
    return Dataset(dataset.name, dataset.texts[: len(keep)] if dataset.texts is not None else None,
                   dataset.gold[keep], dataset.evidence.subset(keep))


DATASETS: dict[str, Callable[[Path], Dataset | None]] = {
    "trec (paper evidence)": lambda cache: load_evidence_dir(paths.paper_evidence_dir("trec")),
    "imdb (paper evidence)": lambda cache: load_evidence_dir(paths.paper_evidence_dir("imdb")),
    **{f"{name} (embedded panel)": (lambda cache, name=name: load_embedded(name, cache)) for name in EXAMPLE_DATASETS},
    **{f"{name} (embedded panel, {variant})": (lambda cache, name=name, variant=variant: load_embedded(name, cache, variant))
       for variant in PROMPT_VARIANTS[1:] for name in EXAMPLE_DATASETS},
}

PAPER_MOLAM = {"trec": 0.804, "imdb": 0.954}  # the paper's reported figures (chosen on evaluation labels)


def methods(dataset: Dataset) -> dict[str, tuple[Callable[[int], AnnotationModel], bool]]:
    """Method name -> (factory taking the seed-set index, whether it reads the text member)."""
    out: dict[str, tuple[Callable[[int], AnnotationModel], bool]] = {"majority class": (lambda s: MajorityClass(), False)}
    for name in dataset.evidence.models:
        out[name] = (lambda s, name=name: SingleLLM(name, use="probs"), False)
        out[f"{name} (votes)"] = (lambda s, name=name: SingleLLM(name, use="votes"), False)
    out["vote"] = (lambda s: MajorityVote(), False)
    out["mean"] = (lambda s: MeanProbability(), False)
    if dataset.texts is not None:
        out["text member"] = (lambda s: SingleLLM(TEXT_MEMBER), True)
    out["MoLAM (paper: XGBoost, LLM evidence only)"] = (lambda s: MoLAM(recipe="paper", random_state=s), False)
    out["MoLAM (LLM evidence only)"] = (lambda s: MoLAM(use_text_member=False, random_state=s), False)
    # the default meta-learner until 2026-12-03: a multinomial logistic regression, C by CV on the seeds
    out["MoLAM (logistic meta-learner)"] = (lambda s: MoLAM(meta_learner="logistic", random_state=s), True)
    # the default until 2026-12-03 evening: the text member learns from the seeds only (no co-training)
    out["MoLAM (text member from the seeds only)"] = (lambda s: MoLAM(text_member_rounds=0, random_state=s), True)
    out["molam"] = (lambda s: MoLAM(random_state=s), True)
    return out


def seed_vector(n: int, n_seeds: int, gold: np.ndarray, seed_set: int) -> np.ndarray:
    y = np.full(n, -1)
    chosen = np.random.default_rng(seed_set).choice(n, size=n_seeds, replace=False)
    y[chosen] = gold[chosen]
    return y


def evaluate(dataset: Dataset, n_seeds: int, seed_sets: int, log=print) -> dict[str, dict[str, float]]:
    table = methods(dataset)
    scores: dict[str, list[float]] = {name: [] for name in table}
    estimates: list[float] = []
    member = TextMember(dataset.texts) if dataset.texts is not None else None
    for s in range(seed_sets):
        started = time.perf_counter()
        y = seed_vector(dataset.evidence.n_texts, n_seeds, dataset.gold, s)
        held_out = np.flatnonzero(y == -1)
        with_text = member.add_to(dataset.evidence, y) if member is not None else dataset.evidence
        for name, (factory, reads_text) in table.items():
            model = factory(s)
            evidence = fit_annotator(model, dataset.evidence, y, member if reads_text else None,
                                     panel=with_text if reads_text else None)
            predicted = model.predict(evidence.subset(held_out))
            scores[name].append(float((predicted == dataset.gold[held_out]).mean()))
        estimate = estimate_accuracy({"MoLAM": MoLAM(random_state=s)}, dataset.evidence, y, random_state=s,
                                     text_member=member)
        estimates.append(estimate.methods["MoLAM"].accuracy if "MoLAM" in estimate.methods else float("nan"))  # too few seeds
        text_member = f"text member {scores['text member'][-1]:.3f}, " if "text member" in scores else ""
        log(f"  seed set {s}: molam {scores['molam'][-1]:.3f} (estimated {estimates[-1]:.3f}), {text_member}"
            f"majority {scores['majority class'][-1]:.3f} ({time.perf_counter() - started:.0f} s)")
    out = {name: {"mean": float(np.mean(v)), "std": float(np.std(v))} for name, v in scores.items()}
    errors = np.subtract(estimates, scores["molam"])
    out["molam (cv estimate on the seeds)"] = {"mean": float(np.mean(estimates)), "std": float(np.std(estimates))}
    out["molam (cv estimate - true accuracy)"] = {"mean": float(np.mean(errors)), "std": float(np.std(errors)),
                                                  "mean_abs": float(np.mean(np.abs(errors)))}
    return out


def goals(name: str, result: dict[str, dict[str, float]]) -> list[str]:
    """The issue's goals for one dataset, each as met or not."""
    rivals = {k: v["mean"] for k, v in result.items()
              if k not in NON_RIVALS and not k.lower().startswith("molam")}
    best = max(rivals, key=rivals.get)
    molam = result["molam"]["mean"]
    lines = [f"MoLAM {molam:.3f} vs best of LLMs / text member / majority ({best} {rivals[best]:.3f}): "
             f"{'met' if molam >= rivals[best] + 0.01 else 'NOT met'} (goal: at least 1 point above)"]
    for key, figure in PAPER_MOLAM.items():
        if name == f"{key} (paper evidence)":  # the paper's figure is for its own panel
            lines.append(f"MoLAM {molam:.3f} vs the paper's {figure:.3f}: {'met' if molam >= figure else 'NOT met'}")
    error = result["molam (cv estimate - true accuracy)"]
    lines.append(f"CV estimate off by {error['mean_abs'] * 100:.1f} points on average (signed mean {error['mean'] * 100:+.1f}): "
                 f"{'met' if error['mean_abs'] <= 0.03 else 'NOT met'} (goal: within 3; judged on the absolute error)")
    return lines


NON_RIVALS = {"vote", "mean"}  # panel baselines: reported, but the goal compares single members and the majority


def markdown(results: dict[str, dict[str, dict[str, float]]], n_texts: dict[str, int]) -> str:
    names = [n for n in dict.fromkeys(k for r in results.values() for k in r) if not n.startswith("molam (cv")]
    header = [f"{name} ({n_texts[name]:,} texts)" for name in results]
    lines = ["| method | " + " | ".join(header) + " |", "|---|" + "---|" * len(results)]
    for name in names:
        cells = [f"{r[name]['mean']:.3f} ± {r[name]['std']:.3f}" if name in r else "" for r in results.values()]
        lines.append(f"| {'**MoLAM (default)**' if name == 'molam' else name} | " + " | ".join(cells) + " |")
    cells = [f"{r['molam (cv estimate on the seeds)']['mean']:.3f} (off by {r['molam (cv estimate - true accuracy)']['mean_abs'] * 100:.1f} "
             f"points; signed {r['molam (cv estimate - true accuracy)']['mean'] * 100:+.1f})" for r in results.values()]
    lines.append("| MoLAM's estimate on the seeds (cross-validated, as the app shows it) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def collect(args: argparse.Namespace) -> None:
    """Evidence of the default embedded panel on the embedded-panel datasets, interleaved rounds; with a
    prompt variant other than the default (``--prompt``), on each dataset in turn (its prompt is its own)."""
    names = [n for n in EXAMPLE_DATASETS if not args.datasets or n in args.datasets]
    data = [ordered_example(*EXAMPLE_DATASETS[n][:2], n=min(EXAMPLE_DATASETS[n][2], args.max_texts or 10**9))
            for n in names]
    sizes = {d.name: args.round for d in data} | dict(_name_and_count(item) for item in args.round_for)
    log = lambda message: print(time.strftime("%H:%M:%S"), message, flush=True)  # noqa: E731
    log(f"collecting {', '.join(names)} with {', '.join(default_models())}, prompt {args.prompt}, into {args.cache}")
    if args.prompt == "plain":
        collect_rounds(data, default_models(), product_source, EvidenceCache(args.cache), sizes,
                       first_round=args.first_round, max_rounds=args.rounds, say=log)
    else:
        for name, d in zip(names, data):
            template = prompt_template(args.prompt, ordered_example(*EXAMPLE_DATASETS[name][:2]))  # the whole order
            collect_rounds([d], default_models(), lambda m: product_source(m, template), EvidenceCache(args.cache),
                           sizes, first_round=args.first_round, max_rounds=args.rounds, say=log)
    log("collection finished")


def export(args: argparse.Namespace) -> None:
    """The cached prefix of each embedded-panel dataset, written in the paper-evidence layout (with texts
    and label / model names) to ``--out/<example>``: the form ``--evidence DIR`` reads in every benchmark."""
    for name in [n for n in EXAMPLE_DATASETS if not args.datasets or n in args.datasets]:
        dataset = load_embedded(name, args.cache)
        if dataset is None:
            print(f"{name}: nothing cached in {args.cache}", file=sys.stderr)
            continue
        folder = write_paper_evidence(args.out / EXAMPLE_DATASETS[name][0], dataset.evidence, dataset.gold, dataset.texts)
        print(f"{name}: {dataset.evidence.n_texts} texts written to {folder}", flush=True)


def _name_and_count(item: str) -> tuple[str, int]:
    name, _, count = item.partition("=")
    if not count.isdigit():
        raise SystemExit(f"--round-for {item!r}: write EXAMPLE=N, e.g. imdb=20")
    return name, int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="evaluate", choices=["evaluate", "collect", "export"],
                        help="evaluate (default), collect the embedded panel's evidence into --cache, or export "
                             "what is cached to --out in the paper-evidence layout (for review_effort.py)")
    parser.add_argument("--evidence", help="a folder in the paper-evidence layout (default: every dataset in DATASETS)")
    parser.add_argument("--datasets", nargs="+", help=f"names from DATASETS (evaluate) or {list(EXAMPLE_DATASETS)} (collect)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="evidence cache of the embedded panel")
    parser.add_argument("--round", type=int, default=50, help="collect: texts per dataset per round")
    parser.add_argument("--round-for", nargs="*", default=[], metavar="EXAMPLE=N",
                        help="collect: another round size for one example dataset, e.g. imdb=20")
    parser.add_argument("--first-round", type=int, help="collect: texts per dataset in round 0 (default --round)")
    parser.add_argument("--rounds", type=int, help="collect: stop after this many rounds (default: all texts)")
    parser.add_argument("--prompt", choices=PROMPT_VARIANTS, default="plain",
                        help="collect: the prompt variant (evaluate: name the variant's datasets, e.g. "
                             "\"rotten-tomatoes (embedded panel, descriptions)\")")
    parser.add_argument("--max-texts", type=int, help="collect / evaluate: only each dataset's first N texts (to "
                        "compare prompt variants on the same subset)")
    parser.add_argument("--n-seeds", type=int, default=50)
    parser.add_argument("--seed-sets", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object {method: {mean, std}} on stdout")
    parser.add_argument("--out", type=Path, default=Path("/tmp/lq/paper-layout"),
                        help="export: one folder per example dataset is written under this one")
    args = parser.parse_args()
    if args.command == "collect":
        collect(args)
        return
    if args.command == "export":
        export(args)
        return
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    if args.evidence:
        loaders = {Path(args.evidence).name: lambda cache: load_evidence_dir(args.evidence)}
    else:
        unknown = sorted(set(args.datasets or ()) - set(DATASETS))
        if unknown:
            raise SystemExit(f"unknown datasets {unknown}: choose among {list(DATASETS)}")
        loaders = {n: f for n, f in DATASETS.items() if not args.datasets or n in args.datasets}
    results, n_texts = {}, {}
    for name, loader in loaders.items():
        started = time.perf_counter()
        dataset = loader(args.cache)
        if dataset is not None and args.max_texts:
            dataset = first_texts(dataset, args.max_texts)
        if dataset is None or dataset.evidence.n_texts < 2 * args.n_seeds:
            log(f"{name}: {0 if dataset is None else dataset.evidence.n_texts} texts with evidence from every model, "
                f"fewer than {2 * args.n_seeds}: skipped (run `collect` first)")
            continue
        log(f"{name}: {dataset.evidence.n_texts} texts, {len(dataset.evidence.labels)} labels, "
            f"{len(dataset.evidence.models)} LLMs, texts {'yes' if dataset.texts is not None else 'no'}")
        results[name] = evaluate(dataset, args.n_seeds, args.seed_sets, log)
        n_texts[name] = dataset.evidence.n_texts
        for line in goals(name, results[name]):
            log("  " + line)
        log(f"  ({time.perf_counter() - started:.0f} s)")
    if not results:
        raise SystemExit("no dataset had enough evidence to evaluate")
    log(markdown(results, n_texts))
    if args.json:
        print(json.dumps(next(iter(results.values())) if len(results) == 1 else results))


if __name__ == "__main__":
    main()
