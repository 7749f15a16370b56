"""``python -m mollia_core label``: one-shot labeling of a table, and the metadata every export carries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mollia_core.export import (
    HUMAN_LABEL_NOTE,
    export_metadata,
    import_labeled,
    metadata_path,
    molam_accuracy_estimate,
    read_export_metadata,
    write_export,
)
from mollia_core.project import Project
from project_helpers import trec_frame

REPO = Path(__file__).resolve().parent.parent
SMALLEST = "smollm2-135m"  # the name the Annotators page shows for SmolLM2-135M


def run_label(*args: str, home: Path, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "MOLLIA_PROJECTS_DIR"}
    env.update({"MOLLIA_HOME": str(home), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    return subprocess.run([sys.executable, "-m", "mollia_core", "label", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


# ---------------------------------------------------------------------- export metadata
@pytest.fixture
def fitted_project(trec, tmp_path):
    """120 TREC questions with the paper's evidence of three LLMs, 40 seeds, MoLAM fitted, one override."""
    from project_helpers import write_trec_files

    _, evidence_file = write_trec_files(trec, tmp_path, n=120, models=3)
    project = Project.create("meta", tmp_path)
    project.set_dataset(trec_frame(trec, 120), "question", id_column="qid", label_column="category")
    project.take_seeds_from_column(40)
    project.import_evidence_file(evidence_file)
    report = project.fit_annotator()
    not_seed = next(tid for tid in project.text_ids if tid not in project.seeds())
    project.override(not_seed, project.labels[0])
    yield project, report
    project.store.close()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_carries_the_accuracy_of_each_source_and_still_round_trips(fitted_project, tmp_path, fmt):
    project, report = fitted_project
    frame = project.export_frame("all")
    estimate = molam_accuracy_estimate(report.cv_accuracy, report.n_seeds)
    path = tmp_path / f"out.{fmt}"
    written = write_export(frame, path, export_metadata(frame, estimate, project=project.name))
    assert written == (path if fmt == "parquet" else metadata_path(path))
    assert (fmt == "parquet") != metadata_path(path).exists()
    meta = read_export_metadata(path)
    sources = meta["sources"]
    assert meta["texts"] == 120 and meta["project"] == "meta"
    assert {s: sources[s]["texts"] for s in sources} == {"seed": 40, "override": 1, "molam": 79}
    for human in ("seed", "override"):
        assert sources[human]["human_labels"] and sources[human]["estimated_accuracy"] is None
        assert sources[human]["note"] == HUMAN_LABEL_NOTE
    molam = sources["molam"]["estimated_accuracy"]
    assert not sources["molam"]["human_labels"]
    assert molam["mean"] == pytest.approx(report.cv_accuracy["MoLAM"][0]) and molam["n_seeds"] == 40
    low, high = molam["interval_95"]
    assert 0.0 <= low < molam["mean"] < high <= 1.0
    pd.testing.assert_frame_equal(import_labeled(path), frame)


def test_export_without_a_cross_validated_fit_says_so(fitted_project, tmp_path):
    project, _ = fitted_project
    frame = project.export_frame("labeled")
    meta = export_metadata(frame, molam_accuracy_estimate({}, 40))
    assert meta["sources"]["molam"]["estimated_accuracy"] is None
    assert "no accuracy estimate" in meta["sources"]["molam"]["note"]


# ---------------------------------------------------------------------- the CLI: bad input
def small_table(tmp_path: Path) -> Path:
    """40 short texts of two topics, the label column filled for 14 of them (7 per topic)."""
    sport = ["The striker scored twice in the final.", "The keeper saved a late penalty.",
             "The team won the cup after extra time.", "She ran the marathon in record time.",
             "The coach praised his defenders.", "The tennis champion lost in the first round.",
             "Fans cheered as the home side equalised.", "The cyclist won the mountain stage.",
             "The boxer retained his world title.", "The league title race goes to the last day.",
             "The sprinter false-started in the final.", "The goalkeeper signed a new contract.",
             "The rugby side scored four tries.", "The golfer holed a putt to win the open.",
             "The midfielder was sent off for a foul.", "The swimmer broke the national record.",
             "The club sacked its manager after a loss.", "The batsman hit a century at the test.",
             "The racing driver took pole position.", "The derby ended in a goalless draw."]
    politics = ["Parliament passed the budget bill.", "The minister resigned on Tuesday.",
                "The president vetoed the new law.", "Voters go to the polls next week.",
                "The senate debated the tax reform.", "The opposition called for an early election.",
                "The prime minister met union leaders.", "A new coalition government was sworn in.",
                "The mayor announced a housing policy.", "Lawmakers approved the defence budget.",
                "The party chose a new leader.", "The election result was contested in court.",
                "The governor signed the climate bill.", "MPs voted against the trade deal.",
                "The cabinet discussed immigration rules.", "The referendum date was set for May.",
                "The foreign minister visited the capital.", "The parliament speaker was re-elected.",
                "A senator proposed a new healthcare plan.", "Ministers agreed on a pension reform."]
    texts = [t for pair in zip(sport, politics) for t in pair]
    topics = [t for _ in sport for t in ("sport", "politics")]
    labels = [topic if i < 14 else "" for i, topic in enumerate(topics)]
    path = tmp_path / "news.csv"
    pd.DataFrame({"headline": texts, "topic": labels, "desk": [f"desk {i % 3}" for i in range(40)]}).to_csv(
        path, index=False)
    return path


def label_args(data: Path, out_path: Path, **options: str) -> list[str]:
    values = {"text_column": "headline", "label_column": "topic", "out": str(out_path), **options}
    return [str(data)] + [x for key, value in values.items() for x in (f"--{key.replace('_', '-')}", value)]


@pytest.mark.parametrize(
    ("options", "table", "message"),
    [
        ({"text_column": "title"}, None, "column 'title' not found"),
        ({"models": "gpt-99"}, None, "unknown model 'gpt-99'"),
        ({"out": "labeled.xlsx"}, None, "must end in .csv, .jsonl or .parquet"),
        ({"labels": "sport,politics"}, {"topic": ""}, "has 0 label(s) of 0 class(es)"),
        ({"labels": "sport,politics"}, {"topic": "sport"}, "of 1 class(es)"),
        ({}, {"topic": ""}, "label"),  # no label set at all
        ({"id_column": "desk"}, None, "desk"),  # ids repeat
    ],
)
def test_bad_input_gets_a_message_and_exit_code_2(tmp_path, options, table, message):
    data = small_table(tmp_path)
    if table:
        pd.read_csv(data, keep_default_na=False).assign(**table).to_csv(data, index=False)
    out = tmp_path / "out.csv"
    done = run_label(*label_args(data, out, **options), home=tmp_path / "home", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and message in done.stderr
    assert done.stderr.startswith("error: ") and not out.exists()


# ---------------------------------------------------------------------- the CLI: a real run
@pytest.fixture
def home_with_smollm2(tmp_path, monkeypatch):
    """An isolated MOLLIA_HOME for caches and projects, seeing this machine's prepared SmolLM2 (read
    only) when there is a complete one, so the test measures the labeling, not the one-time conversion;
    without one the run prepares its own copy in the isolated home."""
    from mollia_core.evidence.embedded import is_prepared

    home = tmp_path / "home"
    prepared = Path.home() / ".cache" / "mollia" / "models" / SMALLEST
    if prepared.is_dir():
        (home / "models").mkdir(parents=True)
        (home / "models" / SMALLEST).symlink_to(prepared)
        monkeypatch.setenv("MOLLIA_HOME", str(home))
        if not is_prepared(SMALLEST):  # half-written or older: never let a run replace it through the link
            (home / "models" / SMALLEST).unlink()
    return home


@pytest.mark.slow
def test_label_a_small_table_with_smollm2_then_rerun_from_the_cache(tmp_path, home_with_smollm2):
    data = small_table(tmp_path)
    out = tmp_path / "labeled.csv"
    args = label_args(data, out, models=SMALLEST)
    first = run_label(*args, home=home_with_smollm2)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert {"estimated_accuracy", "seed_cv", "llm_texts", "wall_s", "out", "seeds", "labeled_by_molam"} <= set(summary)
    assert summary["seeds"] == 14 and summary["labeled_by_molam"] == 26 and summary["models"] == [SMALLEST]
    assert summary["llm_texts"][SMALLEST]["answered"] == 40 and summary["llm_texts"][SMALLEST]["from_cache"] == 0
    assert {"MoLAM", "majority vote", "mean probability", SMALLEST} <= set(summary["seed_cv"])
    estimate = summary["estimated_accuracy"]
    assert estimate["mean"] == pytest.approx(summary["seed_cv"]["MoLAM"]["mean"])
    assert estimate["interval_95"][0] <= estimate["mean"] <= estimate["interval_95"][1]
    assert f"{SMALLEST}: 40 texts to answer, 0 from the evidence cache" in first.stderr  # progress: stderr
    # The export: every text, the export columns, the user's own columns under their own names.
    labeled = import_labeled(out)
    original = pd.read_csv(data, keep_default_na=False)
    assert list(labeled.columns) == ["id", "text", "label", "source", "molam_probability", "negative_labels",
                                     "flag", "iteration", "topic", "desk"]
    assert len(labeled) == 40 and labeled["text"].tolist() == original["headline"].tolist()
    seeded = original["topic"] != ""
    assert (labeled["source"][seeded] == "seed").all() and (labeled["source"][~seeded] == "molam").all()
    assert labeled["label"][seeded].tolist() == original["topic"][seeded].tolist()
    assert set(labeled["label"]) <= {"sport", "politics"}
    assert labeled["topic"].fillna("").tolist() == original["topic"].tolist()
    meta = read_export_metadata(out)
    assert meta["sources"]["molam"]["texts"] == 26 and meta["sources"]["seed"]["texts"] == 14
    # A rerun answers every text from the evidence cache, and is faster.
    second = run_label(*args, home=home_with_smollm2)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout.strip().splitlines()[-1])
    assert again["llm_texts"][SMALLEST] == {**summary["llm_texts"][SMALLEST], "answered": 0, "from_cache": 40}
    assert again["wall_s"] < summary["wall_s"]
    pd.testing.assert_frame_equal(import_labeled(out), labeled)
    # Nothing was written outside the test's folders.
    assert not (REPO / "labeled.csv").exists()
