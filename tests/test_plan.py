"""The plan's arithmetic and the ETA of a running panel (measured after warm-up), the headless
config's ``[panel]`` and ``evidence`` keys, and the Data page's cached table (a change is seen)."""

from __future__ import annotations

import pandas as pd
import pytest

from mollia_core.config import ConfigError, build_project, parse_config
from mollia_core.plan import PanelEta, PanelProgress, RateMeter, panel_progress
from mollia_core.project import AnnotatorSpec, Project


# ---------------------------------------------------------------------- ETA
def test_the_rate_is_measured_after_the_first_batch_not_from_the_start():
    """The measured failure: a model that loads for 60 s, then answers 1 text per second. An ETA from
    the elapsed time says 24 minutes after the first batch; the rate after warm-up says the truth."""
    meter = RateMeter()
    meter.update(0, 0.0)  # before any work
    assert meter.seconds_per_text is None
    meter.update(8, 68.0)  # first batch: 60 s of loading + 8 texts
    assert meter.seconds_per_text is None  # one batch says nothing of the rate after warm-up
    meter.update(16, 76.0)
    assert meter.seconds_per_text == pytest.approx(1.0)
    meter.update(24, 88.0)  # slower now: the rate follows the whole time since warm-up
    assert meter.seconds_per_text == pytest.approx(20 / 16)


def test_texts_from_the_cache_do_not_count_as_the_rate():
    meter = RateMeter(prior_seconds_per_text=2.0)
    meter.update(50, 0.01)  # 50 texts answered by the cache, at once
    assert meter.seconds_per_text == 2.0  # the prior stands in until measured
    meter.update(58, 30.0)  # first real batch (loading)
    meter.update(66, 34.0)
    assert meter.seconds_per_text == pytest.approx(0.5)


def test_one_eta_for_the_whole_panel():
    eta = PanelEta({"small": 100, "big": 40, "done already": 0}, prior_seconds_per_text={"big": 3.0})
    assert eta.remaining_s() is None  # "small" has texts left and no rate yet
    eta.update("small", 0, 0.0)
    eta.update("small", 10, 50.0)  # loading
    eta.update("small", 20, 55.0)  # 0.5 s per text after warm-up
    assert eta.model_remaining_s("small") == pytest.approx(80 * 0.5)
    assert eta.model_remaining_s("big") == pytest.approx(40 * 3.0)  # not started: the prior
    assert eta.remaining_s() == pytest.approx(40 + 120)
    eta.update("small", 100, 95.0)
    assert eta.model_remaining_s("small") == 0.0 and eta.remaining_s() == pytest.approx(120)


def test_panel_progress_reports_the_measured_rate():
    eta = PanelEta({"m": 100})
    for done, at in ((0, 0.0), (10, 100.0), (30, 110.0)):
        progress = panel_progress(eta, "m", done, 100, at)
    assert isinstance(progress, PanelProgress)
    assert progress.rate == pytest.approx(2.0) and progress.eta_s == pytest.approx(35.0)
    assert progress.panel_eta_s == pytest.approx(35.0)
    assert progress.elapsed_s == 110.0 and progress.done == 30  # the plain Progress fields keep their meaning


# ---------------------------------------------------------------------- [panel] and evidence
def test_panel_entries_become_the_dashboards_specs():
    config = parse_config({
        "dataset": {"csv": "x.csv"},
        "panel": {"models": ["smollm2-135m", "hf:org/model",
                             {"kind": "server", "base_url": "http://h:8000/v1", "model": "q", "api_key_env": "K"}]},
    })
    assert config.panel == [AnnotatorSpec(kind="embedded", model="smollm2-135m"), AnnotatorSpec(kind="hf", model="org/model"),
                            AnnotatorSpec(kind="server", model="q", base_url="http://h:8000/v1")]
    assert config.api_key_env == {"q @ http://h:8000/v1": "K"} and config.evidence == "on-demand"
    assert config.to_dict()["panel"][0] == {"kind": "embedded", "model": "smollm2-135m", "base_url": "",
                                           "quantization": "auto", "path": ""}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"evidence": "some"}, 'evidence must be "on-demand" .* or "full" .*, got \'some\''),
        ({"self_training_sample": "half"}, 'self_training_sample must be a number of texts .* or "all"'),
        ({"panel": {"models": ["no-such-llm"]}}, "unknown model 'no-such-llm'.*smollm2-135m"),
        ({"panel": {"models": []}}, "at least one LLM"),
        ({"panel": {"model": ["smollm2-135m"]}}, "one key: models"),
        ({"panel": {"models": [{"kind": "server", "model": "q"}]}}, "needs its base_url"),
        ({"panel": {"models": ["smollm2-135m", "smollm2-135m"]}}, "twice"),
        ({"panel": {"models": ["smollm2-135m"]}, "dataset": {"paper_evidence": "trec"}}, "not both"),
    ],
)
def test_bad_panel_and_evidence_values(changes, message):
    values = {"dataset": {"csv": "x.csv"}, **changes}
    with pytest.raises(ConfigError, match=message):
        parse_config(values)


def test_seeds_from_the_label_column_need_no_gold_with_a_live_panel(tmp_path):
    """Built as ``run`` builds it, before any LLM answers: every text in the pool, the labeled rows
    the seeds, the panel of the config."""
    (tmp_path / "r.csv").write_text("id,review,label\n1,great,pos\n2,awful,neg\n3,fine,\n4,dull,\n")
    config = parse_config({"dataset": {"csv": "r.csv", "text_column": "review", "label_column": "label",
                                       "id_column": "id", "test_size": 0, "validation_size": 0},
                           "seeds": {"column": "label"}, "panel": {"models": ["smollm2-135m"]}},
                          base_dir=tmp_path)
    project = build_project(config, tmp_path / "out" / "project.mollia.sqlite")
    assert set(project.splits()) == {"pool"} and project.seeds() == {"1": "pos", "2": "neg"}
    assert project.panel.specs() == config.panel and project.evidence_counts() == {"smollm2-135m": 0}
    project.store.close()
    with pytest.raises(ConfigError, match="only 2 texts have gold"):
        build_project(parse_config({**config.to_dict(), "dataset": {**config.to_dict()["dataset"], "test_size": 3},
                                    "panel": {"models": ["smollm2-135m"]}}, base_dir=tmp_path),
                      tmp_path / "other" / "project.mollia.sqlite")


# ---------------------------------------------------------------------- the cached table
def test_the_cached_table_sees_a_new_table_and_new_seeds(mollia_home):
    project = Project.create("cache", mollia_home)
    project.set_dataset(pd.DataFrame({"id": ["a", "b", "c"], "text": ["one", "two", "three"]}), "text",
                        id_column="id", labels=["x", "y"])
    assert project.dataset.text_of("b") == "two" and project.index_of("c") == 2
    project.label_seed("b", "y")
    assert project.seeds() == {"b": "y"} and project.summary()["seeds"] == 1
    project.texts.append("changed by a caller")  # a caller's copy: the project's table is unchanged
    assert len(project.texts) == 3
    project.remove_seed("b")
    project.clear_dataset()
    # Another table with as many rows: the cached texts and ids must not survive it.
    project.set_dataset(pd.DataFrame({"id": ["p", "q", "r"], "text": ["uno", "dos", "tres"]}), "text",
                        id_column="id", labels=["x", "y"])
    assert project.text_ids == ["p", "q", "r"] and project.dataset.text_of("q") == "dos"
    assert project.summary()["pool"] == 3 and project.seed_candidates(3, 0) != []
    # A second process importing another table is seen too (the store is the truth).
    other = Project(project.path)
    other.dataset.clear_dataset()
    other.set_dataset(pd.DataFrame({"id": ["s", "t", "u"], "text": ["eins", "zwei", "drei"]}), "text",
                      id_column="id", labels=["x", "y"])
    other.label_seed("t", "x")
    other.store.close()
    assert project.dataset.text_of("t") == "zwei" and project.seeds() == {"t": "x"}
    with pytest.raises(Exception, match="no text with id 'p'"):
        project.index_of("p")
    assert project.dataset.original_frame(rows=2).to_dict("records") == [{"id": "s", "text": "eins"},
                                                                        {"id": "t", "text": "zwei"}]
    project.store.close()


@pytest.mark.slow
def test_the_annotators_page_shows_the_plan_before_run(projects):
    from app_helpers import app, assert_no_exception, errors

    project = Project.create("plan page")
    texts = ["great film", "awful film", "lovely story", "dull plot", "fine acting", "boring end", "nice", "bad"]
    project.set_dataset(pd.DataFrame({"text": texts, "label": ["pos", "neg", "pos", "neg", "", "", "", ""]}), "text",
                        label_column="label")
    project.take_seeds_from_column(None)
    project.set_panel([AnnotatorSpec(kind="embedded", model="smollm2-135m")])
    project.panel.set_evidence_plan("on-demand", 2)
    project.store.close()
    at = app("plan page", "pages/2_annotators.py")
    assert_no_exception(at)
    at.button(key="plan_time").click().run(timeout=600)
    assert_no_exception(at)
    assert not errors(at)
    rates = next(d.value for d in at.dataframe if "seconds per text" in d.value.columns)
    assert list(rates["LLM"]) == ["smollm2-135m"] and rates["seconds per text"].iloc[0] > 0
    plan = next(d.value for d in at.dataframe if "evidence for" in d.value.columns)
    assert list(plan["evidence for"]) == ["label as you go", "self-training sample", "whole pool"]
    # 4 seed texts + a sample of 2, then the 2 other texts as the loop queries them; the whole pool: 8
    assert list(plan["texts smollm2-135m answers"]) == [8, 6, 8]
