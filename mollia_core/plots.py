"""Learning-curve figures (matplotlib, headless) for runs and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .display import matplotlib_text


def plot_learning_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[Sequence[float]] | Sequence[float]]],
    path: str | Path,
    *,
    ylabel: str = "test accuracy",
    xlabel: str = "labeled texts",
    title: str | None = None,
    intervals: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> Path:
    """Write a PNG with one line per curve: ``name -> (x, values)``.

    ``values`` is one series, or one series per seed (rows): then the mean is drawn with a
    band of +- one standard deviation. ``intervals[name] = (low, high)`` draws that band instead.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, (x, values) in curves.items():
        values = np.atleast_2d(np.asarray(values, dtype=float))
        mean = values.mean(axis=0)
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=matplotlib_text(name))
        if intervals and name in intervals:
            ax.fill_between(x, *intervals[name], color=line.get_color(), alpha=0.15)
        elif values.shape[0] > 1:
            std = values.std(axis=0)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(matplotlib_text(title))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def curve_from_results(results: Mapping, metric: str) -> tuple[list[int], list[float]]:
    """(labeled texts, metric) per trained iteration of a :meth:`ActiveLearningLoop.results` dict."""
    x, y = [], []
    for iteration in results["iterations"]:
        metrics = iteration.get("metrics", {})
        if iteration.get("status") == "trained" and metric in metrics:
            x.append(metrics["n_labeled"])
            y.append(metrics[metric])
    return x, y


def plot_run(results: Mapping, path: str | Path) -> Path:
    """The learning curve of one run: test (else validation) accuracy on gold labels, else the accuracy
    estimated on held-out seed labels with its 95 % interval, else agreement with the annotator (named so)."""
    for metric, label in (
        ("test_accuracy", "test accuracy"),
        ("validation_accuracy", "validation accuracy"),
        ("seed_cv_accuracy", "estimated accuracy (held-out seed labels, 95 % interval)"),
        ("annotator_agreement", "agreement with the annotator's labels (not an accuracy)"),
    ):
        x, y = curve_from_results(results, metric)
        if x:
            break
    name = results.get("annotator", "run")
    intervals = None
    if metric == "seed_cv_accuracy":
        intervals = {name: (curve_from_results(results, "seed_cv_low")[1], curve_from_results(results, "seed_cv_high")[1])}
    config = results.get("config", {})
    title = f"{results.get('annotator', '')} labels, {config.get('strategy', '')} queries"
    return plot_learning_curves({name: (x, y)}, path, ylabel=label, title=title, intervals=intervals)
