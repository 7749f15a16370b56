"""The headless CLI and the dashboard share one project: a project made by ``python -m mollia_core run
--config`` opens on every page, and a project made as the pages make it runs headless with
``run --project``. Real components throughout: the paper's TREC evidence, the real MoLAM (XGBoost),
the real encoder of the AL model (slow tests), the real app through AppTest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app_helpers import app, assert_no_exception, errors
from mollia_core.cli import main
from mollia_core.config import ConfigError, build_loop, parse_config, prepare_project
from mollia_core.loop import LoopConfig
from mollia_core.paths import paper_evidence_dir
from mollia_core.project import AnnotatorSettings, AnnotatorSpec, Project
from project_helpers import trec_frame, trec_records

REPO = Path(__file__).resolve().parent.parent
PAGES = ("pages/1_data.py", "pages/2_annotators.py", "pages/3_molam.py", "pages/4_active_learning.py",
         "pages/5_review.py", "pages/6_export.py")
PAPER_MODELS = ["replay:gemma", "replay:llama", "replay:mistral", "replay:qwen", "replay:yi"]


def run_cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """The real command line, in its own process (MOLLIA_HOME and MOLLIA_PROJECTS_DIR as the test set them)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "MOLLIA_TORCH_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mollia_core", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def trec_config(output: Path, **changes) -> dict:
    """A small headless run on the paper's TREC evidence: 200 questions, 30 seeds, batches of 10."""
    values = {
        "dataset": {"paper_evidence": "trec", "limit": 200, "test_size": 40, "validation_size": 20},
        "seeds": {"n": 30, "random_state": 1},
        "annotator": "molam",
        "loop": {"batch_size": 10, "n_iterations": 2},  # the old name of planned_iterations still reads
        "output_dir": str(output),
    }
    values.update(changes)
    return values


def every_page_renders(name: str) -> dict[str, object]:
    """Open project ``name`` on every page; no page may raise or show an error. Returns the runs."""
    shown = {}
    for page in PAGES:
        at = app(name, page)
        assert_no_exception(at)
        assert not errors(at), (page, errors(at))
        shown[page] = at
    return shown


# ---------------------------------------------------------------------- CLI -> dashboard
@pytest.mark.slow
@pytest.mark.needs_shared  # trec_config reads the paper's evidence
def test_a_cli_run_opens_on_every_dashboard_page_with_its_iterations(tmp_path, projects):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(trec_config(projects)))
    done = run_cli("run", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"MOLLIA_PROJECTS_DIR={projects}" in done.stdout  # how to open it is said
    results = json.loads((projects / "results.json").read_text())
    assert [it["iteration"] for it in results["iterations"]] == [0, 1, 2]

    project = Project.open("project")
    assert project.dataset_config["text_column"] == "text" and project.panel_models() == PAPER_MODELS
    assert project.summary()["validation"] == 20 and (project.splits() == "test").sum() == 40
    assert list(project.learning_curve()["iteration"]) == [0, 1, 2]
    assert project.loop_settings().batch_size == 10 and project.is_annotated()
    project.store.close()

    shown = every_page_renders("project")
    loop_page = shown["pages/4_active_learning.py"]
    assert any("iterations done: **2**" in m.value for m in loop_page.markdown)
    assert next(n for n in loop_page.number_input if n.label.startswith("Batch")).value == 10
    assert any("**200** texts" in m.value for m in shown["pages/1_data.py"].markdown)
    # The Review page opens on its queue: the 2 x 10 MoLAM-labeled texts, the default budget of 10 at a time.
    review = shown["pages/5_review.py"]
    assert review.get("progress")[0].proto.text.startswith("Text 1 of 10 ")
    export = shown["pages/6_export.py"]
    assert any("**50** texts" in m.value for m in export.markdown)


@pytest.mark.needs_shared  # trec_config reads the paper's evidence
def test_a_cli_project_opens_on_the_data_and_annotators_pages_before_any_run(tmp_path, projects):
    """Built, not yet run (the loop needs the encoder): the table, the splits, the panel of replayed
    paper LLMs with full evidence, and the seeds are where the pages look for them."""
    config = parse_config(trec_config(projects, annotator="vote"))
    project = prepare_project(config, projects / "project.mollia.sqlite")
    assert project.summary() == {**project.summary(), "texts": 200, "validation": 20, "pool": 140, "seeds": 30,
                                 "evidence_models": 5, "iterations": 0}
    assert project.evidence_counts() == dict.fromkeys(PAPER_MODELS, 200)
    assert project.loop.annotator_name() == "vote" and not project.is_annotated()
    project.store.close()
    data = app("project", "pages/1_data.py")
    assert_no_exception(data)
    assert not errors(data)
    annotators = app("project", "pages/2_annotators.py")
    assert_no_exception(annotators)
    assert not errors(annotators)
    accuracy = next(d.value for d in annotators.dataframe if "accuracy on seeds" in d.value.columns)
    assert list(accuracy["LLM"]) == PAPER_MODELS and accuracy["accuracy on seeds"].between(0, 1).all()


@pytest.mark.needs_shared  # trec_config reads the paper's evidence
def test_the_same_splits_and_seeds_as_before_the_project_api(tmp_path):
    """The benchmarks' figures rest on these draws: test and validation among the gold texts with
    split_random_state, the seeds among the pool with the seeds' random_state (as before the CLI used Project)."""
    config = parse_config(trec_config(tmp_path, annotator="gold"))
    project = prepare_project(config, tmp_path / "p.mollia.sqlite")
    n = 5452  # TREC
    rows = np.sort(np.random.default_rng(0).choice(n, 200, replace=False))
    assert project.text_ids == [str(i) for i in rows]
    order = np.random.default_rng(0).permutation(200)
    splits = project.splits()
    assert set(np.flatnonzero(splits == "test")) == set(order[:40])
    assert set(np.flatnonzero(splits == "validation")) == set(order[40:60])
    pool = np.flatnonzero(splits == "pool")
    seeds = np.sort(np.random.default_rng(1).choice(pool, 30, replace=False))
    assert sorted(project.index_of(t) for t in project.seeds()) == seeds.tolist()
    project.store.close()


@pytest.mark.needs_shared  # trec_config reads the paper's evidence
def test_reference_annotators_resolve_against_the_panel(tmp_path):
    config = parse_config(trec_config(tmp_path, annotator="llm:yi:votes"))
    project = prepare_project(config, tmp_path / "p.mollia.sqlite")
    annotator = build_loop(project, config.loop).annotator
    assert (annotator.model, annotator.use) == ("replay:yi", "votes")
    project.store.close()
    best = parse_config(trec_config(tmp_path / "best", annotator="best_llm"))
    project = prepare_project(best, tmp_path / "best" / "p.mollia.sqlite")
    name = project.loop.annotator_name()
    model, use = name.split(":")[1:]
    evidence, y = project.evidence(), project.seed_vector()
    seeded = np.flatnonzero(y >= 0)
    member = evidence.models.index(f"replay:{model}")
    values = evidence.vote_shares if use == "votes" else evidence.label_probs
    chosen = np.mean(values[seeded, member].argmax(1) == y[seeded])
    every = [np.mean(v[seeded, j].argmax(1) == y[seeded]) for j in range(5) for v in (evidence.label_probs,
                                                                                     evidence.vote_shares)]
    assert chosen == max(every)  # chosen on the seed labels only
    project.store.close()
    with pytest.raises(ConfigError, match="llm:<model>"):
        prepare_project(parse_config(trec_config(tmp_path / "x", annotator="llm:nobody")), tmp_path / "x" / "p.mollia.sqlite")
    with pytest.raises(ConfigError, match="unknown annotator"):
        prepare_project(parse_config(trec_config(tmp_path / "y", annotator="nope")), tmp_path / "y" / "p.mollia.sqlite")


# ---------------------------------------------------------------------- dashboard -> CLI
def dashboard_project(trec, name: str = "from dashboard", n: int = 200) -> Project:
    """A project made the way the pages make it: the Data page's table and seeds, the Annotators page's
    replayed evidence, the MoLAM page's fit."""
    project = Project.create(name)
    project.set_dataset(trec_frame(trec, n), "question", id_column="qid", label_column="category",
                        source_name="trec.csv")
    specs = []
    for model, records in trec_records(trec, n, models=3).items():
        specs.append(AnnotatorSpec(kind="replay", model=model, path="trec.jsonl"))
        project.set_panel(specs)
        project.import_evidence_records(specs[-1], records)
    project.take_seeds_from_column(30)
    project.fit_annotator(AnnotatorSettings(), cv=False)
    return project


@pytest.mark.slow
def test_b_a_dashboard_project_runs_headless_with_its_stored_settings(trec, projects):
    project = dashboard_project(trec)
    # The Active learning page runs one iteration with its settings (batches of 7)...
    project.run_iterations(1, LoopConfig(batch_size=7, planned_iterations=3))
    path = project.path
    project.store.close()
    # ... and the command line continues it: by path, then by name in the projects folder.
    done = run_cli("run", "--project", str(path), "--iterations", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stdout
    output = projects / "from dashboard-run"
    first = json.loads((output / "results.json").read_text())
    assert [it["iteration"] for it in first["iterations"]] == [0, 1, 2]
    assert len(first["iterations"][2]["queried_ids"]) == 7 and first["annotator"] == "molam"
    assert first["run"]["config_file"] is None and first["run"]["project_file"] == str(path)
    done = run_cli("run", "--project", "from dashboard")  # to the planned 3
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    assert [it["iteration"] for it in results["iterations"]] == [0, 1, 2, 3]
    assert results["iterations"][:3] == first["iterations"]
    assert (output / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    reopened = Project.open("from dashboard")
    assert reopened.summary()["labeled"] == 30 + 3 * 7
    # MoLAM's one fit labeled the headless iterations too (the Review page's MoLAM label and source).
    result = reopened.store.annotation_result()
    for text_id, label in zip(results["iterations"][3]["queried_ids"], results["iterations"][3]["y_plus"]):
        assert reopened.labels[result.labels[reopened.index_of(text_id)]] == label
    reopened.store.close()
    loop_page = every_page_renders("from dashboard")["pages/4_active_learning.py"]
    assert any("iterations done: **3**" in m.value for m in loop_page.markdown)


def test_run_project_refuses_what_cannot_run(tmp_path, projects, capsys):
    assert main(["run", "--project", str(tmp_path / "absent.mollia.sqlite")]) == 2
    assert "no project" in capsys.readouterr().err
    Project.create("empty").store.close()
    assert main(["run", "--project", "empty"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "has no data yet" in err
    assert main(["run", "--project", "empty", "--fresh"]) == 2
    assert "--fresh" in capsys.readouterr().err
    project = Project.create("no panel")
    project.set_dataset(pd.DataFrame({"text": ["a b", "c d", "e f"], "label": ["x", "y", ""]}), "text",
                        label_column="label")
    project.take_seeds_from_column(None)
    project.store.close()
    assert main(["run", "--project", "no panel", "--iterations", "1"]) == 2
    assert "Annotators page" in capsys.readouterr().err
    assert main(["run", "--project", "no panel", "--iterations", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err


# ---------------------------------------------------------------------- no gold labels at all
def write_unlabeled_csv(trec, folder: Path, n: int = 150, labeled: int = 40) -> Path:
    """TREC questions whose label column is filled for the first ``labeled`` rows only (the seeds), with
    the paper's evidence for exactly these rows beside it (meta_x.npy in a folder named trec)."""
    frame = trec_frame(trec, n)
    frame.loc[labeled:, "category"] = ""
    csv = folder / "questions.csv"
    frame.to_csv(csv, index=False)
    evidence = folder / "evidence" / "trec"
    evidence.mkdir(parents=True)
    for name in ("meta_x.npy", "meta_y.npy"):  # written into tmp_path, never into the repository
        np.save(evidence / name, np.load(paper_evidence_dir("trec") / name)[:n])
    return csv


def no_gold_config(trec, folder: Path, annotator: str) -> dict:
    write_unlabeled_csv(trec, folder)
    return {
        "dataset": {"csv": "questions.csv", "text_column": "question", "id_column": "qid",
                    "label_column": "category", "labels": list(trec.labels), "evidence": "evidence/trec",
                    "test_size": 0, "validation_size": 0},
        "seeds": {"column": "category"},
        "annotator": annotator,
        "loop": {"batch_size": 10, "planned_iterations": 1},
        "output_dir": "out",
    }


def test_seeds_from_the_label_column_without_gold(trec, tmp_path):
    config = parse_config(no_gold_config(trec, tmp_path, "vote"), base_dir=tmp_path)
    project = prepare_project(config, tmp_path / "out" / "project.mollia.sqlite")
    assert set(project.splits()) == {"pool"} and len(project.seeds()) == 40
    assert project.seeds() == {f"{trec.evidence.text_ids[i]}": trec.labels[trec.gold[i]] for i in range(40)}
    assert project.original_frame()["note"].iloc[0] == "nöte 0"  # the user's other columns are kept
    project.store.close()


@pytest.mark.slow
def test_a_headless_run_without_gold_estimates_from_the_seeds(trec, tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(no_gold_config(trec, tmp_path, "molam")))
    done = run_cli("run", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [it["status"] for it in results["iterations"]] == ["trained", "trained"] and results["n_seeds"] == 40
    last = results["iterations"][-1]["metrics"]
    assert not any(key.startswith(("test_", "validation_")) for key in last)  # nothing to measure on
    assert 0 <= last["seed_cv_low"] <= last["seed_cv_accuracy"] <= last["seed_cv_high"] <= 1
