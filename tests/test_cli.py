"""``python -m mollia_core``: a real run from a config file, and clear errors for bad configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mollia_core.cli import main
from mollia_core.config import ConfigError, load_config, parse_config
from mollia_core.store import ProjectStore

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, home: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOLLIA_HOME": str(home), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mollia_core", *args], capture_output=True, text=True, env=env, timeout=timeout,
        cwd=REPO,
    )


TINY = {
    "dataset": {"paper_evidence": "trec", "limit": 300, "test_size": 60, "validation_size": 20},
    "seeds": {"n": 30, "random_state": 1},
    "annotator": "molam",
    "loop": {"strategy": "coreset", "batch_size": 10, "planned_iterations": 2},
    "output_dir": "out",
}


@pytest.mark.slow
@pytest.mark.needs_shared
def test_run_writes_results_and_plot(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    done = run_cli("run", "--config", str(config), home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert [it["iteration"] for it in results["iterations"]] == [0, 1, 2]
    assert all(it["status"] == "trained" for it in results["iterations"])
    first = results["iterations"][1]
    assert len(first["queried_ids"]) == 10 and len(first["y_plus"]) == 10 and len(first["W_d"]) == 10
    assert set(first["timings"]) == {"query_s", "label_s", "train_s", "predict_s"}
    assert 0.0 <= results["iterations"][-1]["metrics"]["test_accuracy"] <= 1.0
    assert results["annotator"] == "molam" and results["n_seeds"] == 30
    png = (out / "learning_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with ProjectStore.open(out / "project.mollia.sqlite") as store:
        assert store.n_labeled == 30 + 2 * 10
    # A second invocation finds the run complete: nothing is redone, the results are the same.
    again = run_cli("run", "--config", str(config), home=tmp_path / "home")
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    assert json.loads((out / "results.json").read_text())["iterations"] == results["iterations"]


def test_toml_example_config_parses():
    config = load_config(REPO / "configs" / "trec_replay.toml")
    assert config.dataset.paper_evidence == "trec" and config.dataset.test_size == 1000
    assert config.loop.batch_size == 50 and config.loop.planned_iterations == 10 and config.annotator == "molam"
    assert config.output_path.resolve() == (REPO / "runs" / "trec_replay").resolve()


@pytest.mark.parametrize(
    "values, message",
    [
        ({}, "needs a \\[dataset\\] table"),
        ({"dataset": {"paper_evidence": "trec", "csv": "x.csv"}}, "exactly one of"),
        ({"dataset": {"paper_evidence": "trec"}, "loop": {"batchsize": 5}}, "unknown key\\(s\\) \\['batchsize'\\] in \\[loop\\]"),
        ({"dataset": {"paper_evidence": "trec"}, "loop": {"alpha": 2}}, "alpha"),
        ({"dataset": {"paper_evidence": "trec"}, "annotatr": "x"}, "unknown top-level"),
    ],
)
def test_bad_config_values(values, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(values)


def test_cli_reports_user_errors_without_a_traceback(tmp_path, capsys, mollia_home):
    bad = tmp_path / "bad.toml"
    bad.write_text("[dataset\npaper_evidence = 'trec'\n")
    missing_csv = tmp_path / "c.json"
    missing_csv.write_text(json.dumps({"dataset": {"csv": "nope.csv"}}))
    for config, message in ((bad, "is not valid TOML"), (missing_csv, "nope.csv not found"),
                            (tmp_path / "absent.json", "absent.json not found")):
        assert main(["run", "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err


def test_csv_dataset_with_seed_column(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_text(
        "id,text,gold,seed\n1,good film,pos,pos\n2,awful,neg,neg\n3,great,pos,\n4,boring,neg,\n5,fine,pos,\n"
    )
    from mollia_core.config import prepare_project

    config = parse_config(
        {"dataset": {"csv": "data.csv", "label_column": "gold", "id_column": "id"},
         "seeds": {"column": "seed"}, "annotator": "vote"},
        base_dir=tmp_path,
    )
    project = prepare_project(config, tmp_path / "p.mollia.sqlite")
    with project.store as store:
        assert store.labels == ("neg", "pos")
        assert store.text_ids() == ["1", "2", "3", "4", "5"]
        assert store.seed_labels() == {0: 1, 1: 0}
        assert store.gold().tolist() == [1, 0, 1, 0, 1]
        assert store.original_columns()[0] == {"id": "1", "text": "good film", "gold": "pos", "seed": "pos"}
        assert project.dataset_config["source_name"] == "data.csv"  # the Data page's record of the table
    bad = parse_config({"dataset": {"csv": "data.csv", "label_column": "missing"}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="missing"):
        prepare_project(bad, tmp_path / "q.mollia.sqlite")


def test_models_prepare_reports_an_unknown_model(capsys, mollia_home):
    assert main(["models", "prepare", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "unknown embedded model 'no-such-model'" in err and "smollm2-135m" in err


REVIEWS = [("I loved this film, wonderful acting", "pos"), ("Terrible plot and boring scenes", "neg"),
           ("A delightful, funny movie", "pos"), ("Worst movie I have seen this year", "neg"),
           ("Great soundtrack and a moving story", "pos"), ("Dull, slow and far too long", "neg"),
           ("Brilliant direction", ""), ("I fell asleep halfway", ""), ("Charming and warm", ""),
           ("A waste of two hours", "")]


@pytest.mark.slow
def test_a_live_panel_run_without_gold_and_its_plan(tmp_path):
    """The smallest embedded LLM answers every text of a CSV whose seeds are its filled label column
    (no gold: test_size = validation_size = 0); the loop runs; results.json says what the LLM did."""
    pd.DataFrame({"id": [f"r{i}" for i in range(len(REVIEWS))], "review": [text for text, _ in REVIEWS],
                  "label": [label for _, label in REVIEWS]}).to_csv(tmp_path / "reviews.csv", index=False)
    (tmp_path / "run.toml").write_text(
        'annotator = "molam"\nevidence = "full"\nself_training_sample = 2\noutput_dir = "out"\n'
        '[dataset]\ncsv = "reviews.csv"\ntext_column = "review"\nlabel_column = "label"\nid_column = "id"\n'
        'test_size = 0\nvalidation_size = 0\n[seeds]\ncolumn = "label"\n'
        '[panel]\nmodels = ["smollm2-135m"]\n[loop]\nbatch_size = 2\nplanned_iterations = 1\n'
    )
    home = Path(os.environ["MOLLIA_HOME"])
    plan = run_cli("plan", "--config", str(tmp_path / "run.toml"), "--timed-texts", "2", home=home, timeout=900)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "this config runs 'whole pool' (evidence = 'full')" in plan.stdout
    summary = json.loads(plan.stdout.strip().splitlines()[-1])
    assert summary["seconds_per_text"]["smollm2-135m"] > 0
    choices = summary["choices"]
    # 6 seed texts + a sample of 2; the 2 other pool texts at most for 1 iteration of 2 queries
    assert choices["self-training sample"]["texts_per_model"] == {"smollm2-135m": 8}
    assert choices["label as you go"]["texts_per_model"] == {"smollm2-135m": 10}
    assert choices["whole pool"]["texts_per_model"] == {"smollm2-135m": 10}
    assert choices["whole pool"]["expected_s"] > choices["self-training sample"]["expected_s"] > 0
    assert not (tmp_path / "out").exists()  # the plan keeps nothing

    done = run_cli("run", "--config", str(tmp_path / "run.toml"), home=home, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "smollm2-135m: 10 / 10 texts" in done.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["texts_answered"] == {"smollm2-135m": 10}
    assert results["llm_seconds"]["smollm2-135m"] > 0
    assert [it["status"] for it in results["iterations"]] == ["trained", "trained"] and results["n_seeds"] == 6
    assert not any(key.startswith(("test_", "validation_")) for key in results["iterations"][-1]["metrics"])
    with ProjectStore.open(tmp_path / "out" / "project.mollia.sqlite") as store:
        assert store.evidence_coverage() == {"smollm2-135m": 10}
    # The evidence is in the evidence cache now: the plan counts nothing left to answer.
    again = run_cli("plan", "--config", str(tmp_path / "run.toml"), "--timed-texts", "1", home=home, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["choices"]["whole pool"] == {
        "expected_s": 0.0, "texts_per_model": {"smollm2-135m": 0}}


def test_plan_needs_a_live_panel(tmp_path, capsys, mollia_home):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"dataset": {"paper_evidence": "trec"}}))
    assert main(["plan", "--config", str(config)]) == 2
    assert "has no [panel]" in capsys.readouterr().err
