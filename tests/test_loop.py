"""Algorithm 1: W_d from the previous model, overrides, switches, resume after a kill.

The unit tests at the top drive the loop's logic with small stand-ins for the learner, the
strategy and the annotator whose every output is set by the test, so each recorded value can be
checked by hand. The tests marked ``slow`` run the real parts (encoder, MoLAM, strategies) on the
paper's TREC evidence.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mollia_core.evidence import PanelEvidence
from mollia_core.loop import ActiveLearningLoop, GoldOracle, LoopConfig, LoopError
from mollia_core.losses import lambda_schedule
from mollia_core.store import ProjectStore

REPO = Path(__file__).resolve().parent.parent
LABELS = ("a", "b", "c")


# ---------------------------------------------------------------------- stand-ins (unit tests only)
class TableLearner:
    """Predicts, for each text, the label it was trained on, else ``default`` (set per iteration)."""

    fits: list[dict] = []

    def __init__(self, iteration: int, default_by_iteration: dict[int, int]):
        self.iteration = iteration
        self.default = default_by_iteration.get(iteration, 0)
        self.memory: dict[str, int] = {}

    def fit(self, texts, y, *, negative_mask, sample_weight, negative_weight):
        TableLearner.fits.append({
            "iteration": self.iteration, "texts": list(texts), "y": np.asarray(y).tolist(),
            "weight": np.asarray(sample_weight).tolist(), "negatives": np.asarray(negative_mask).tolist(),
            "lambda": negative_weight,
        })
        self.memory = dict(zip(texts, np.asarray(y).tolist()))
        return self

    def predict_proba(self, texts):
        labels = [self.memory.get(t, self.default) for t in texts]
        return np.eye(len(LABELS))[labels]


class FirstInPool:
    """Queries the first ``n`` pool texts (deterministic)."""

    def query(self, learner, texts, pool, labeled, n, random_state=None):
        return np.asarray(pool)[:n]


@dataclass
class FixedAnnotation:
    labels: np.ndarray
    probability: np.ndarray
    proba: np.ndarray
    negative_mask: np.ndarray


class TableAnnotator:
    """Labels text id ``t`` with ``labels[t]`` and negative labels ``negatives[t]``."""

    def __init__(self, labels: dict[str, int], negatives: dict[str, list[int]] | None = None):
        self.labels, self.negatives, self.fitted_on = labels, negatives or {}, None

    def fit(self, evidence, y):
        self.fitted_on = np.asarray(y).copy()
        return self

    def annotate(self, evidence):
        y = np.array([self.labels[t] for t in evidence.text_ids])
        mask = np.zeros((len(y), len(LABELS)), dtype=bool)
        for row, t in enumerate(evidence.text_ids):
            mask[row, self.negatives.get(t, [])] = True
        return FixedAnnotation(y, np.full(len(y), 0.9), np.eye(len(LABELS))[y], mask)


def tiny_store(path: Path, n: int = 8) -> ProjectStore:
    store = ProjectStore(path)
    store.set_labels(LABELS)
    store.add_texts([f"text {i}" for i in range(n)], gold=[i % 3 for i in range(n)])
    z = np.full((n, 1, 3), 1 / 3)
    store.put_evidence(PanelEvidence(LABELS, ("m",), z, z.copy()))
    store.set_seed_labels({0: 0, 1: 1})
    return store


def make_loop(store, annotator, defaults, **config):
    config = LoopConfig(**{"batch_size": 2, "planned_iterations": 3, **config})
    return ActiveLearningLoop(
        store, annotator, config, annotator_name="molam",
        learner_factory=lambda it: TableLearner(it, defaults), strategy=FirstInPool(),
    )


@pytest.fixture(autouse=True)
def _reset_fits():
    TableLearner.fits = []


# ---------------------------------------------------------------------- unit tests
def test_w_d_comes_from_the_previous_iterations_model(tmp_path):
    """Hand-checked: the model of iteration 0 predicts 'a' (0) on unlabeled texts, that of iteration 1
    predicts 'b' (1). Iteration 1 labels texts 2, 3 with y+ = a, c -> d_anno = [F, T], W_d = [1, alpha];
    iteration 2 labels texts 4, 5 with y+ = b, a -> d_anno = [F, T] against iteration 1's model."""
    store = tiny_store(tmp_path / "p.sqlite")
    annotator = TableAnnotator({"2": 0, "3": 2, "4": 1, "5": 0, "6": 0, "7": 0}, negatives={"3": [1], "5": [2]})
    loop = make_loop(store, annotator, {0: 0, 1: 1, 2: 2}, alpha=0.25)
    loop.run(2)
    rows = {r.text_index: r for r in store.annotations()}
    assert [(rows[i].d_anno, rows[i].weight) for i in (2, 3)] == [(False, 1.0), (True, 0.25)]
    assert [(rows[i].d_anno, rows[i].weight) for i in (4, 5)] == [(False, 1.0), (True, 0.25)]
    assert rows[3].negatives == (1,) and rows[3].source == "molam" and rows[3].iteration == 1
    # The annotator was fitted on the seed labels only.
    assert annotator.fitted_on.tolist() == [0, 1, -1, -1, -1, -1, -1, -1]
    # Training of iteration 2: seeds weight 1 without negatives, W_d and y- of the labeled texts,
    # lambda from the schedule.
    fit = TableLearner.fits[-1]
    assert fit["iteration"] == 2 and fit["texts"] == [f"text {i}" for i in range(6)]
    assert fit["y"] == [0, 1, 0, 2, 1, 0]
    assert fit["weight"] == [1.0, 1.0, 1.0, 0.25, 1.0, 0.25]
    assert fit["negatives"][3] == [False, True, False] and fit["negatives"][5] == [False, False, True]
    assert not any(fit["negatives"][0]) and not any(fit["negatives"][1])
    assert fit["lambda"] == pytest.approx(lambda_schedule(1, 3, 0.4, 1.0)) == pytest.approx(0.7)
    record = store.iteration(1)
    assert record.queried == (2, 3) and record.metrics["n_flagged"] == 1
    assert set(record.timings) == {"query_s", "label_s", "train_s", "predict_s"}


def test_override_is_used_in_the_next_training_with_weight_1(tmp_path):
    store = tiny_store(tmp_path / "p.sqlite")
    loop = make_loop(store, TableAnnotator({str(i): 2 for i in range(8)}, negatives={"3": [0, 1]}), {0: 0, 1: 0})
    loop.run(1)
    assert store.annotation(3).weight == 0.5 and store.annotation(3).negatives == (0, 1)
    loop.override(3, 1)  # a human says "b"
    loop.override(7, 0)  # and labels a pool text nobody queried
    assert [o.applied_iteration for o in store.overrides()] == [None, None]
    loop.run(1)
    fit = TableLearner.fits[-1]
    by_text = dict(zip(fit["texts"], zip(fit["y"], fit["weight"], fit["negatives"])))
    assert by_text["text 3"] == (1, 1.0, [False, False, False])
    assert by_text["text 7"] == (0, 1.0, [False, False, False])
    assert [o.applied_iteration for o in store.overrides()] == [2, 2]
    assert store.iteration(2).metrics["reviews_used"] == 2
    assert 7 not in store.iteration(2).queried  # a human-labeled text is no longer in the pool
    row = store.annotation(3)
    assert (row.source, row.annotator_label, row.d_anno) == ("override", 2, True)


def test_pending_reviews_are_trained_on_once_the_pool_is_empty(tmp_path):
    store = tiny_store(tmp_path / "p.sqlite")
    loop = make_loop(store, TableAnnotator({str(i): 2 for i in range(8)}), {})
    loop.run(3)  # 3 batches of 2 use up the pool of 6
    assert len(loop.pool_indices()) == 0 and loop.next_step(target=10) == "done"
    loop.override(3, 1)
    store.accept(4)
    assert loop.next_step(target=10) == "retrain"
    steps = []
    loop.run(1, progress=steps.append)
    assert [s.step for s in steps] == ["retrain"] and steps[0].iteration == 4
    record = store.iteration(4)
    assert (record.status, record.queried, record.info["training_only"], record.metrics["reviews_used"]) == (
        "trained", (), True, 2)
    assert record.lam == pytest.approx(1.0)  # past the 3 planned iterations: lambda_end
    fit = TableLearner.fits[-1]
    by_text = dict(zip(fit["texts"], zip(fit["y"], fit["weight"])))
    assert fit["iteration"] == 4 and by_text["text 3"] == (1, 1.0) and by_text["text 4"] == (2, 1.0)
    assert [r.applied_iteration for r in store.responses()] == [4, 4]
    # Nothing pending: the run is done, and no iteration is added.
    assert loop.next_step(target=10) == "done" and loop.run(1) and store.last_iteration().iteration == 4


def test_switches_turn_off_negative_learning_and_the_discrepancy_weight(tmp_path):
    store = tiny_store(tmp_path / "p.sqlite")
    loop = make_loop(
        store, TableAnnotator({str(i): 2 for i in range(8)}, negatives={"2": [0]}), {0: 0},
        negative_learning=False, discrepancy=False,
    )
    loop.run(1)
    fit = TableLearner.fits[-1]
    assert fit["lambda"] == 0.0 and fit["weight"] == [1.0] * 4 and not np.any(fit["negatives"])
    assert store.annotation(2).d_anno is True  # still flagged for review, just not down-weighted


def test_metrics_on_test_split_and_agreement_on_pool(tmp_path):
    store = tiny_store(tmp_path / "p.sqlite", n=9)
    store.set_splits({6: "test", 7: "test", 8: "validation"})
    loop = make_loop(store, TableAnnotator({str(i): 0 for i in range(9)}), {0: 0}, planned_iterations=1)
    loop.run()
    metrics = store.iteration(0).metrics
    # Model 0 predicts 'a' everywhere unlabeled; gold of 6, 7 is a, b -> accuracy 0.5; of 8 ('c') 0.
    assert metrics["test_accuracy"] == 0.5 and metrics["validation_accuracy"] == 0.0
    assert metrics["test_macro_f1"] == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert metrics["annotator_agreement"] == 1.0  # pool 2..5: annotator says 'a', model says 'a'
    assert 6 not in store.iteration(1).queried and 8 not in store.iteration(1).queried


def seeded_store(path: Path, seed_labels: dict[int, int], n: int = 14) -> ProjectStore:
    store = tiny_store(path, n=n)
    store.set_seed_labels(seed_labels, replace=True)
    return store


def test_without_gold_the_curve_is_scored_on_seed_labels_the_model_did_not_see(tmp_path):
    # Ten seeds, four of label 'a'. The stand-in learner gets right exactly the texts it trained on and
    # answers 'a' elsewhere: scored on held-out seeds it must get 4 / 10; a fold that leaked its own
    # seeds into training would score 10 / 10.
    seeds = {i: (0 if i < 4 else 1 + i % 2) for i in range(10)}
    store = seeded_store(tmp_path / "p.sqlite", seeds)
    make_loop(store, TableAnnotator({str(i): 2 for i in range(14)}), {0: 0, 1: 0}, planned_iterations=1).run()
    for iteration in (0, 1):
        metrics = store.iteration(iteration).metrics
        assert metrics["seed_cv_accuracy"] == pytest.approx(0.4) and metrics["seed_cv_n"] == 10
        assert metrics["seed_cv_low"] < 0.4 < metrics["seed_cv_high"]
        assert "validation_accuracy" not in metrics and "test_accuracy" not in metrics
        assert "seed_cv_s" in store.iteration(iteration).timings
    # Iteration 1: the main fit on L (10 seeds + 2 of MoLAM's), then five folds, each without its seeds
    # and with every other text of L; the held-out seeds cover every seed once.
    main, *folds = [f for f in TableLearner.fits if f["iteration"] == 1]
    assert len(main["texts"]) == 12 and len(folds) == 5
    held_out = [set(main["texts"]) - set(f["texts"]) for f in folds]
    assert sorted(t for part in held_out for t in part) == sorted(f"text {i}" for i in range(10))
    assert all(len(part) == 2 and "text 10" not in part and "text 11" not in part for part in held_out)


def test_seed_estimate_is_left_out_where_gold_exists_or_when_turned_off(tmp_path):
    seeds = {i: i % 3 for i in range(10)}
    with_gold = seeded_store(tmp_path / "gold.sqlite", seeds)
    with_gold.set_splits({12: "validation", 13: "validation"})
    make_loop(with_gold, TableAnnotator({str(i): 0 for i in range(14)}), {0: 0}, planned_iterations=0).run()
    off = seeded_store(tmp_path / "off.sqlite", seeds)
    make_loop(off, TableAnnotator({str(i): 0 for i in range(14)}), {0: 0}, planned_iterations=0, seed_cv_folds=0).run()
    for store in (with_gold, off):
        assert "seed_cv_accuracy" not in store.iteration(0).metrics
    assert "validation_accuracy" in with_gold.iteration(0).metrics
    assert len(TableLearner.fits) == 2  # one training each, no fold trainings
    with pytest.raises(LoopError, match="seed_cv_folds"):
        LoopConfig(seed_cv_folds=1)


def test_resume_between_every_step_gives_the_uninterrupted_run(tmp_path):
    defaults = {0: 0, 1: 1, 2: 2, 3: 0}
    labels = {str(i): (i * 7) % 3 for i in range(8)}
    straight = tiny_store(tmp_path / "a.sqlite")
    make_loop(straight, TableAnnotator(labels), defaults).run()
    interrupted = tiny_store(tmp_path / "b.sqlite")
    interrupted.set_setting("loop", LoopConfig(batch_size=2, planned_iterations=3).to_dict())  # resume reads it
    steps = 0
    while True:  # a new process (new loop object, new connection) after every step
        store = ProjectStore.open(tmp_path / "b.sqlite")
        result = ActiveLearningLoop.resume(
            store, TableAnnotator(labels), learner_factory=lambda it: TableLearner(it, defaults), strategy=FirstInPool()
        ).step()
        store.close()
        steps += 1
        if result.step == "done":
            break
    assert steps == 1 + 3 * 3 + 1
    strip = lambda rows: [(r.text_index, r.label, r.source, r.iteration, r.d_anno, r.weight, r.negatives) for r in rows]
    assert strip(interrupted.annotations()) == strip(straight.annotations())
    assert [r.queried for r in interrupted.iterations()] == [r.queried for r in straight.iterations()]
    interrupted.close()
    straight.close()


def _resumed(path: Path, annotator, defaults, **kwargs) -> tuple[ProjectStore, ActiveLearningLoop]:
    """The loop as a new process (a restarted server) finds it: a new connection, the stored settings."""
    store = ProjectStore.open(path)
    loop = ActiveLearningLoop.resume(
        store, annotator, learner_factory=lambda it: TableLearner(it, defaults), strategy=FirstInPool(), **kwargs
    )
    return store, loop


def test_lambda_follows_the_plan_across_a_restart_and_stays_at_lambda_end_past_it(tmp_path):
    """10 planned iterations run as 3, then (a new process, as after a server restart) 7, train with the
    lambdas of 10 in one go; "run 5 more" past the plan trains with lambda_end, and the plan is never changed."""
    labels = {str(i): i % 3 for i in range(40)}
    straight = tiny_store(tmp_path / "straight.sqlite", n=40)
    make_loop(straight, TableAnnotator(labels), {}, planned_iterations=10).run(10)
    straight_fits = [(f["iteration"], f["lambda"]) for f in TableLearner.fits]

    TableLearner.fits = []
    first = tiny_store(tmp_path / "restarted.sqlite", n=40)
    make_loop(first, TableAnnotator(labels), {}, planned_iterations=10).run(3)
    first.close()
    store, loop = _resumed(tmp_path / "restarted.sqlite", TableAnnotator(labels), {})
    loop.run(7)
    lambdas = {r.iteration: r.lam for r in store.iterations()}
    assert lambdas == {r.iteration: r.lam for r in straight.iterations()}
    assert [lambdas[t] for t in range(11)] == pytest.approx([0.0] + [0.4 + 0.6 * t / 9 for t in range(10)])
    # The trainings used them: the resumed process re-trained iteration 3's model (for its query) with its lambda.
    assert sorted(set((f["iteration"], f["lambda"]) for f in TableLearner.fits)) == sorted(set(straight_fits))

    TableLearner.fits = []
    loop.run(5)
    past_plan = [r for r in store.iterations() if r.iteration > 10]
    assert [r.iteration for r in past_plan] == [11, 12, 13, 14, 15]
    assert [r.lam for r in past_plan] == [1.0] * 5  # not 0.4 + 0.6 * 10 / 14 = 0.83 of a plan stretched to 15
    assert {f["lambda"] for f in TableLearner.fits if f["iteration"] > 10} == {1.0}
    assert loop.config.planned_iterations == 10 and store.get_setting("loop")["planned_iterations"] == 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        loop.config.planned_iterations = 15
    store.close()
    straight.close()


def test_run_without_a_count_goes_to_the_plan_and_step_stops_there(tmp_path):
    store = tiny_store(tmp_path / "p.sqlite", n=12)
    loop = make_loop(store, TableAnnotator({str(i): 0 for i in range(12)}), {}, planned_iterations=2)
    loop.run()
    assert [r.iteration for r in store.iterations()] == [0, 1, 2]
    assert loop.step().step == "done" and loop.run() == store.iterations()
    loop.run(1)  # one more past the plan, when asked
    assert store.last_iteration().iteration == 3 and store.last_iteration().lam == 1.0


def test_old_name_n_iterations_is_read_from_project_files_and_configs(tmp_path):
    from mollia_core.config import ConfigError, parse_config

    assert LoopConfig.from_dict({"n_iterations": 4, "batch_size": 7}) == LoopConfig(planned_iterations=4, batch_size=7)
    with pytest.raises(LoopError, match=r"unknown loop setting\(s\) \['n_iterations'\]"):
        LoopConfig.from_dict({"n_iterations": 4, "planned_iterations": 5})
    config = parse_config({"dataset": {"paper_evidence": "trec"}, "loop": {"n_iterations": 4}})
    assert config.loop.planned_iterations == 4
    with pytest.raises(ConfigError, match="n_iterations"):
        parse_config({"dataset": {"paper_evidence": "trec"}, "loop": {"n_iterations": 4, "planned_iterations": 5}})
    # A project file written before the rename: the stored loop setting still says n_iterations.
    store = tiny_store(tmp_path / "old.sqlite")
    settings = LoopConfig(batch_size=2, planned_iterations=1).to_dict()
    settings["n_iterations"] = settings.pop("planned_iterations")
    store.set_setting("loop", settings)
    store.close()
    store, loop = _resumed(tmp_path / "old.sqlite", TableAnnotator({str(i): 0 for i in range(8)}), {})
    assert loop.config.planned_iterations == 1
    loop.run()
    assert [r.iteration for r in store.iterations()] == [0, 1]
    store.close()


class PrefittedAnnotator(TableAnnotator):
    """Stands for an annotator fitted before the loop (the project's one MoLAM fit): fit does nothing
    but count; annotate hands out the fit's outputs for the texts asked about."""

    def __init__(self, labels: dict[str, int], negatives: dict[str, list[int]] | None = None):
        super().__init__(labels, negatives)
        self.fit_calls = 0

    def fit(self, evidence, y):
        self.fit_calls += 1
        return self


def test_an_already_fitted_annotator_is_used_as_it_is(tmp_path):
    labels = {str(i): (i + 1) % 3 for i in range(10)}
    store = tiny_store(tmp_path / "p.sqlite", n=10)
    annotator = PrefittedAnnotator(labels, negatives={"2": [0]})
    loop = ActiveLearningLoop(
        store, annotator, LoopConfig(batch_size=2, planned_iterations=3), fit_annotator=False,
        learner_factory=lambda it: TableLearner(it, {}), strategy=FirstInPool(),
    )
    loop.run(2)
    store.close()
    store, resumed = _resumed(tmp_path / "p.sqlite", annotator, {}, fit_annotator=False)
    resumed.run(1)
    assert annotator.fit_calls == 0
    rows = [r for r in store.annotations() if r.source == "molam"]
    assert [(r.text_index, r.label, r.iteration) for r in rows] == [(i, labels[str(i)], 1 + (i - 2) // 2) for i in range(2, 8)]
    assert store.annotation(2).negatives == (0,)
    # Every model predicts 'a' off its training texts: W_d against the annotator's labels, and the
    # agreement on the pool (texts 8, 9, labeled 'a' and 'b' by the annotator).
    disagree = [labels[str(r.text_index)] != 0 for r in rows]
    assert [(r.d_anno, r.weight) for r in rows] == [(flag, 0.5 if flag else 1.0) for flag in disagree]
    assert store.iteration(3).metrics["annotator_agreement"] == 0.5
    store.close()

    # Left to the loop to fit, an annotator whose fit does nothing is still fitted once per loop.
    default = PrefittedAnnotator(labels)
    make_loop(tiny_store(tmp_path / "q.sqlite", n=10), default, {}).run(2)
    assert default.fit_calls == 1


def test_the_gold_oracle_labels_like_a_human(tmp_path):
    store = tiny_store(tmp_path / "p.sqlite")
    oracle = GoldOracle({str(i): i % 3 for i in range(8)}, len(LABELS))
    make_loop(store, oracle, {0: 2}, planned_iterations=1).run()
    rows = [r for r in store.annotations() if r.iteration == 1]
    assert [(r.text_index, r.label, r.weight, r.negatives) for r in rows] == [(2, 2, 1.0, ()), (3, 0, 1.0, ())]
    assert [r.d_anno for r in rows] == [False, True]  # iteration 0's model says 'c' off its seeds


def test_gold_oracle_and_errors(tmp_path):
    oracle = GoldOracle({"x": 2, "y": 0}, 3)
    z = np.zeros((2, 0, 3))
    annotation = oracle.annotate(PanelEvidence(LABELS, (), z, z.copy(), text_ids=("y", "x")))
    assert annotation.labels.tolist() == [0, 2] and not annotation.negative_mask.any()
    with pytest.raises(LoopError, match="no gold label"):
        oracle.annotate(PanelEvidence(LABELS, (), z, z.copy(), text_ids=("y", "q")))
    with pytest.raises(LoopError, match="batch_size"):
        LoopConfig(batch_size=0)
    with pytest.raises(LoopError, match="unknown loop setting"):
        LoopConfig.from_dict({"batchsize": 3})
    store = ProjectStore(tmp_path / "empty.sqlite")
    with pytest.raises(LoopError, match="no label set"):
        ActiveLearningLoop(store, oracle, learner_factory=lambda it: None, strategy=FirstInPool())
    store.set_labels(LABELS)
    store.add_texts(["x", "y"], text_ids=["x", "y"])
    loop = ActiveLearningLoop(store, oracle, learner_factory=lambda it: TableLearner(it, {}), strategy=FirstInPool())
    with pytest.raises(LoopError, match="no seed labels"):
        loop.step()


# ---------------------------------------------------------------------- real parts, real kill
# The first run is the real CLI with one change: the learner's third fit (iteration 2's training,
# when the iteration is half done: queried and labeled, not trained) announces itself and blocks,
# so the test kills the process at a known point instead of racing a fast loop with a poller.
_GATED_RUN = """
import sys, time, pathlib
from mollia_core import cli, learner
gate, calls, original_fit = pathlib.Path(sys.argv[1]), [], learner.FastLearner.fit
def gated_fit(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        gate.write_text("blocked in the training of iteration 2")
        while True:
            time.sleep(1)
    return original_fit(self, *args, **kwargs)
learner.FastLearner.fit = gated_fit
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.needs_shared
def test_kill_9_mid_iteration_then_resume_loses_nothing(tmp_path):
    """A real run (MoLAM on the paper's TREC evidence, the real encoder and strategy) in a subprocess is
    killed with SIGKILL while an iteration is half done, after a human override was committed from
    another connection; the resumed run keeps every committed label and the override, and ends
    with exactly seeds + iterations x batch labels."""
    n_seeds, batch, iterations = 30, 10, 5
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "dataset": {"paper_evidence": "trec", "limit": 400, "test_size": 60},
        "seeds": {"n": n_seeds, "random_state": 3},
        "annotator": "molam",
        "loop": {"strategy": "random", "batch_size": batch, "planned_iterations": iterations, "random_state": 3},
        "output_dir": "out",
    }))
    env = {**os.environ, "MOLLIA_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    cli_args = ["run", "--config", str(config)]
    command = [sys.executable, "-m", "mollia_core", *cli_args]
    project = tmp_path / "out" / "project.mollia.sqlite"
    gate = tmp_path / "gate"
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _GATED_RUN, str(gate), *cli_args],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 300
        while not gate.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gate.exists(), (tmp_path / "first.log").read_text()[-3000:]
        store = ProjectStore(project)
        last = store.last_iteration()
        killed_in = (last.iteration, last.status)
        assert killed_in == (2, "labeled")
        target = next(r for r in store.annotations() if r.iteration == 1)
        override = (target.text_index, (target.label + 1) % len(store.labels))
        store.add_override(*override)  # committed by another process while the run is alive
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    committed = {r.text_index: (r.label, r.source, r.iteration) for r in store.annotations()}
    overrides = store.overrides()
    queried_before = {r.iteration: r.queried for r in store.iterations()}
    assert store.annotation(override[0]).label == override[1]

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {project} at iteration {killed_in[0]} ({killed_in[1]})" in resumed.stdout

    after = {r.text_index: (r.label, r.source, r.iteration) for r in store.annotations()}
    assert {i: after[i] for i in committed} == committed  # nothing committed was lost or changed
    assert len(after) == n_seeds + iterations * batch
    assert [(o.id, o.text_index, o.new_label, o.created_at) for o in store.overrides()] == [
        (o.id, o.text_index, o.new_label, o.created_at) for o in overrides
    ]
    assert store.overrides()[0].applied_iteration == 2  # used from the next training on
    records = store.iterations()
    assert [(r.iteration, r.status) for r in records] == [(i, "trained") for i in range(iterations + 1)]
    for iteration, queried in queried_before.items():
        assert records[iteration].queried == queried  # the half-done iteration kept its query
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(results["iterations"]) == iterations + 1 and results["overrides"][0]["applied_iteration"] == 2
    store.close()


def _trec_project(trec, name: str, frame, n_seeds: int | None):
    """A dashboard project on TREC questions (``frame``) with three LLMs' replayed paper evidence,
    seeds taken from the label column, and MoLAM fitted."""
    from mollia_core.project import AnnotatorSettings, AnnotatorSpec, Project
    from project_helpers import trec_records

    project = Project.create(name)
    project.set_dataset(frame, "question", id_column="qid", label_column="category", labels=trec.labels)
    evidence = trec_records(trec, len(frame), models=3)
    specs = [AnnotatorSpec(kind="replay", model=m, path="trec.jsonl") for m in evidence]
    project.set_panel(specs)
    for spec, records in zip(specs, evidence.values()):
        project.import_evidence_records(spec, records)
    project.take_seeds_from_column(n_seeds)
    project.fit_annotator(AnnotatorSettings(), cv=False)
    return project


@pytest.mark.slow
def test_a_dashboard_project_keeps_its_lambda_schedule_across_a_server_restart(trec, tmp_path, monkeypatch):
    """Real parts (the paper's TREC evidence replayed, MoLAM, the fast learner): a project planned for
    10 iterations, run 3, then 7 by a new Project object on the same file (a restarted server), records
    the lambdas of a project run 10 in one go; 5 more past the plan record lambda_end."""
    from mollia_core.project import Project
    from project_helpers import trec_frame

    monkeypatch.setenv("MOLLIA_PROJECTS_DIR", str(tmp_path))
    settings = LoopConfig(batch_size=5, planned_iterations=10, random_state=2)
    straight = _trec_project(trec, "straight", trec_frame(trec, 160), 30)
    straight.run_iterations(10, settings)
    _trec_project(trec, "restarted", trec_frame(trec, 160), 30).run_iterations(3, settings)
    restarted = Project.open("restarted")
    restarted.run_iterations(7, settings)
    lambdas = [r.lam for r in restarted.iterations()]
    assert lambdas == [r.lam for r in straight.iterations()]
    assert lambdas == pytest.approx([0.0] + [settings.lam(t) for t in range(1, 11)])
    restarted.run_iterations(5, settings)
    assert [r.lam for r in restarted.iterations()][11:] == [1.0] * 5


@pytest.mark.slow
def test_without_gold_the_page_plots_the_seed_estimate_named_as_an_estimate(trec, tmp_path, monkeypatch, mollia_home):
    """Real parts: TREC questions with 60 human labels (too few for a gold validation split), the paper's
    evidence, MoLAM, the fast learner on the offline encoder; then the Active learning page."""
    from app_helpers import app, assert_no_exception
    from project_helpers import trec_frame

    monkeypatch.setenv("MOLLIA_PROJECTS_DIR", str(tmp_path))
    frame = trec_frame(trec, 160)
    frame.loc[60:, "category"] = ""
    project = _trec_project(trec, "nogold", frame, None)
    assert project.summary()["validation"] == 0
    project.run_iterations(1, LoopConfig(batch_size=20))
    curve = project.learning_curve()
    assert curve["validation_accuracy"].isna().all()
    assert (curve["seed_cv_low"] <= curve["seed_cv_accuracy"]).all()
    assert (curve["seed_cv_accuracy"] <= curve["seed_cv_high"]).all()
    assert curve["seed_cv_accuracy"].between(0, 1).all()
    at = app("nogold", "pages/4_active_learning.py")
    assert_no_exception(at)
    chart = at.get("plotly_chart")[0].proto.spec
    assert "estimated accuracy (held-out seed labels, 95 % interval)" in chart
    assert "agreement with MoLAM's labels (pool) — not an accuracy" in chart or "not an accuracy" in chart
    assert any("the accuracy is an estimate" in c.value for c in at.caption)
