"""Label quality from 50 seed labels: MoLAM (with the text member) against everything it must beat.

    python benchmarks/label_quality.py                       # every dataset in DATASETS
    python benchmarks/label_quality.py --evidence ../shared/data/paper-evidence/trec --json

Protocol, per dataset: for each of ``--seed-sets`` (5) seed sets, ``--n-seeds`` (50) texts drawn at
random (``numpy.random.default_rng(s)``) get their gold label; every method is fitted on them alone
(the other texts are passed unlabeled, y = -1) and scored on ALL the other texts. Nothing is chosen
on evaluation labels: the only data-driven choices (MoLAM's logistic C, the text classifier's C) are
made by cross-validation on the seeds. Reported: mean and standard deviation over the seed sets.

Methods: the majority class of the seeds, each LLM alone (its probabilities z and its votes c), the
panel's majority vote and mean probability, the text member alone (logistic regression on TF-IDF
word + char n-grams and MiniLM embeddings, trained on the seeds), the paper's MoLAM (XGBoost on
h(x), LLM evidence only), MoLAM on the LLM evidence only (MoLLIA's recipe), and MoLAM as the product
runs it (``molam``: MoLLIA's recipe with the text member). Also the app's estimate of MoLAM's
accuracy (cross-validation on the seeds, as the MoLAM page shows it) against its true accuracy.

A dataset is a loader returning a :class:`Dataset` (texts or None, gold labels, LLM evidence):
add one to ``DATASETS``. ``--evidence DIR`` reads any folder in the paper-evidence layout
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
)
from mollia_core.evidence import PanelEvidence, load_paper_evidence  # noqa: E402
from mollia_core.text_member import TEXT_MEMBER, TextMember  # noqa: E402


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


DATASETS: dict[str, Callable[[], Dataset]] = {
    "trec (paper evidence)": lambda: load_evidence_dir(paths.paper_evidence_dir("trec")),
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
            evidence = with_text if reads_text else dataset.evidence
            predicted = factory(s).fit(evidence, y).predict(evidence.subset(held_out))
            scores[name].append(float((predicted == dataset.gold[held_out]).mean()))
        estimate = estimate_accuracy({"MoLAM": MoLAM(random_state=s)}, dataset.evidence, y, random_state=s,
                                     text_member=member)
        estimates.append(estimate.methods["MoLAM"].accuracy)
        log(f"  seed set {s}: molam {scores['molam'][-1]:.3f} (estimated {estimates[-1]:.3f}), "
            f"text member {scores.get('text member', [float('nan')])[-1]:.3f}, "
            f"majority {scores['majority class'][-1]:.3f} ({time.perf_counter() - started:.0f} s)")
    out = {name: {"mean": float(np.mean(v)), "std": float(np.std(v))} for name, v in scores.items()}
    errors = np.subtract(estimates, scores["molam"])
    out["molam (cv estimate on the seeds)"] = {"mean": float(np.mean(estimates)), "std": float(np.std(estimates))}
    out["molam (cv estimate - true accuracy)"] = {"mean": float(np.mean(errors)), "std": float(np.std(errors)),
                                                  "mean_abs": float(np.mean(np.abs(errors)))}
    return out


def goals(name: str, result: dict[str, dict[str, float]]) -> list[str]:
    """The issue's goals for one dataset, each as met or not."""
    rivals = {k: v["mean"] for k, v in result.items() if k not in NON_RIVALS and not k.lower().startswith("molam")}
    best = max(rivals, key=rivals.get)
    molam = result["molam"]["mean"]
    lines = [f"MoLAM {molam:.3f} vs best of LLMs / text member / majority ({best} {rivals[best]:.3f}): "
             f"{'met' if molam >= rivals[best] + 0.01 else 'NOT met'} (goal: at least 1 point above)"]
    for key, figure in PAPER_MOLAM.items():
        if name.startswith(key):
            lines.append(f"MoLAM {molam:.3f} vs the paper's {figure:.3f}: {'met' if molam >= figure else 'NOT met'}")
    error = result["molam (cv estimate - true accuracy)"]["mean_abs"]
    lines.append(f"CV estimate off by {error * 100:.1f} points on average: {'met' if error <= 0.03 else 'NOT met'} (goal: within 3)")
    return lines


NON_RIVALS = {"vote", "mean"}  # panel baselines: reported, but the goal compares single members and the majority


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    names = [n for n in next(iter(results.values())) if not n.startswith("molam (cv")]
    lines = ["| method | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for name in names:
        cells = [f"{r[name]['mean']:.3f} ± {r[name]['std']:.3f}" if name in r else "" for r in results.values()]
        lines.append(f"| {'**MoLAM (default)**' if name == 'molam' else name} | " + " | ".join(cells) + " |")
    cells = [f"{r['molam (cv estimate on the seeds)']['mean']:.3f} (off by {r['molam (cv estimate - true accuracy)']['mean_abs'] * 100:.1f} points)"
             for r in results.values()]
    lines.append("| MoLAM's estimate on the seeds (cross-validated, as the app shows it) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evidence", help="a folder in the paper-evidence layout (default: every dataset in DATASETS)")
    parser.add_argument("--n-seeds", type=int, default=50)
    parser.add_argument("--seed-sets", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object {method: {mean, std}} on stdout")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    loaders = {Path(args.evidence).name: lambda: load_evidence_dir(args.evidence)} if args.evidence else DATASETS
    results = {}
    for name, loader in loaders.items():
        started = time.perf_counter()
        dataset = loader()
        log(f"{name}: {dataset.evidence.n_texts} texts, {len(dataset.evidence.labels)} labels, "
            f"{len(dataset.evidence.models)} LLMs, texts {'yes' if dataset.texts is not None else 'no'}")
        results[name] = evaluate(dataset, args.n_seeds, args.seed_sets, log)
        for line in goals(name, results[name]):
            log("  " + line)
        log(f"  ({time.perf_counter() - started:.0f} s)")
    log(markdown(results))
    if args.json:
        print(json.dumps(next(iter(results.values())) if len(results) == 1 else results))


if __name__ == "__main__":
    main()
