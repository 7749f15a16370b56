"""Evidence on demand (issue 11): the LLMs answer the seed texts, a self-training sample and each
iteration's queried texts, as the loop's answer step; MoLAM, the loop, the Review page's data and the
export work with the texts answered so far.

The fast tests answer with the paper's real LLM evidence of the asked texts (``PaperAnswers``: what a
panel of those five LLMs would store), so they test the step machine and the partial-evidence logic;
the slow one runs the real smallest embedded LLM in a real job, killed with SIGKILL while it answers.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mollia_core import jobs
from mollia_core.config import ConfigError, parse_config
from mollia_core.evidence import Cancelled
from mollia_core.loop import LoopConfig
from mollia_core.project import AnnotatorSettings, AnnotatorSpec, Project, ProjectError
from project_helpers import trec_frame, trec_records

REPO = Path(__file__).resolve().parent.parent
LLM_ONLY = AnnotatorSettings(method="molam-llm-only", random_state=1)
LOOP = LoopConfig(batch_size=10, seed_cv_folds=0, random_state=2)


class PaperAnswers:
    """An answerer (``loop.Answerer``) that stores the paper's evidence of each asked text, logging what
    it was asked; ``stop_after`` answers only that many texts of a call, then cancels."""

    def __init__(self, project: Project, records: dict, stop_after: int | None = None) -> None:
        self.project, self.records, self.stop_after = project, records, stop_after
        self.asked: list[list[int]] = []

    def __call__(self, indices, cancel: threading.Event | None = None) -> dict:
        indices = [int(i) for i in indices]
        self.asked.append(indices)
        answered = indices if self.stop_after is None else indices[: self.stop_after]
        ids = {self.project.dataset.text_ids[i] for i in answered}
        for spec in self.project.panel.specs():
            records = [r for r in self.records[spec.model] if r.text_id in ids]
            self.project.panel.import_evidence_records(spec, records)
        if self.stop_after is not None and cancel is not None:
            cancel.set()
            raise Cancelled("cancelled while answering")
        return {spec.display_name: len(answered) for spec in self.project.panel.specs()}


def on_demand_project(trec, name: str, n: int = 150, seeds: int = 30, sample: int = 20) -> tuple[Project, PaperAnswers]:
    """A project over the first ``n`` TREC questions with a panel of 3 of the paper's LLMs in on-demand
    mode, the seed texts and the self-training sample answered (nothing else)."""
    project = Project.create(name)
    project.dataset.set_dataset(trec_frame(trec, n), "question", id_column="qid", label_column="category")
    project.dataset.take_seeds_from_column(seeds)
    records = trec_records(trec, n, models=3)
    project.panel.set_specs([AnnotatorSpec(kind="replay", model=model, path="trec.jsonl") for model in records])
    project.panel.set_evidence_plan("on-demand", sample)
    answers = PaperAnswers(project, records)
    answers(project.panel.needed_indices())
    return project, answers


def test_on_demand_needs_the_seed_texts_then_the_sample_then_the_queried_texts(projects, trec):
    project, _ = on_demand_project(trec, "needed")
    seeds = np.flatnonzero(project.dataset.seed_vector() >= 0)
    needed = project.panel.needed_indices()
    assert list(needed[: len(seeds)]) == sorted(seeds)
    sample = project.panel.sample_indices()
    assert len(sample) == 20 and not set(sample) & set(seeds)
    assert set(sample) <= set(np.flatnonzero(project.dataset.splits() == "pool"))
    assert list(project.panel.covered_indices()) == sorted(needed)  # nothing else was answered
    project.panel.set_evidence_plan("on-demand", None)  # the whole pool as the sample
    assert set(project.panel.sample_indices()) == set(np.flatnonzero(project.dataset.splits() == "pool")) - set(seeds)
    project.panel.set_evidence_plan("full")
    assert list(project.panel.needed_indices()) == list(range(150))
    with pytest.raises(ProjectError, match="evidence mode"):
        project.panel.set_evidence_plan("lazy")


def test_molam_fits_on_the_answered_texts_and_labels_no_other(projects, trec):
    project, _ = on_demand_project(trec, "partial")
    covered = project.panel.covered_indices()
    assert 0 < len(covered) < 150 and project.evidence() is None  # the full-pool view stays "incomplete"
    report = project.annotation.fit(LLM_ONLY)
    assert report.estimates is not None and report.n_seeds == 30  # the CV estimate on the seeds is there
    result = project.annotation.result()
    assert (result.labels[covered] >= 0).all()
    assert (result.labels[np.setdiff1d(np.arange(150), covered)] == -1).all()
    assert project.annotation.is_current()
    exported = project.review.export_frame("all")
    assert len(exported) == len(covered)  # texts nobody answered are left out, not given a made-up label
    unanswered = project.dataset.text_ids[int(np.setdiff1d(np.arange(150), covered)[0])]
    shown = project.review.text_evidence(unanswered)
    assert shown.models == () and shown.molam_label is None


def test_the_loop_answers_each_query_before_labeling_it_and_asks_for_nothing_else(projects, trec):
    project, answers = on_demand_project(trec, "loop")
    project.annotation.fit(LLM_ONLY, cv=False)
    before = set(project.panel.covered_indices().tolist())
    answers.asked.clear()
    project.loop.run_iterations(2, LOOP, answer=answers)
    records = project.loop.iterations()
    assert [r.status for r in records] == ["trained"] * 3
    queried = [set(r.queried) for r in records[1:]]
    # Each answer step asked for exactly its queried texts that had no evidence yet.
    expected = [sorted(queried[0] - before), sorted(queried[1] - before - queried[0])]
    assert [sorted(a) for a in answers.asked] == [e for e in expected if e]
    assert [r.metrics["n_answered"] for r in records[1:]] == [len(e) for e in expected]
    assert set(project.panel.covered_indices().tolist()) == before | queried[0] | queried[1]
    labeled = {row.text_index: row for row in project.store.annotations()}
    fit = project.annotation.result()
    for text in queried[0] | queried[1]:
        assert labeled[text].source == "molam" and fit.labels[text] == labeled[text].label


def test_without_llms_to_ask_the_loop_says_what_is_missing(projects, trec):
    project, _ = on_demand_project(trec, "no-answerer")
    project.annotation.fit(LLM_ONLY, cv=False)
    with pytest.raises(ProjectError, match="queried texts have no evidence"):
        project.loop.run_iterations(1, LOOP)
    assert project.loop.iterations()[-1].status == "queried"  # the query is kept; answering resumes it


def test_a_cancel_while_answering_keeps_the_answers_and_resume_asks_only_for_the_rest(projects, trec):
    project, answers = on_demand_project(trec, "cancel")
    project.annotation.fit(LLM_ONLY, cv=False)
    covered_before = set(project.panel.covered_indices().tolist())
    partial = PaperAnswers(project, answers.records, stop_after=3)
    with pytest.raises(Cancelled):
        project.loop.run_iterations(1, LOOP, cancel=threading.Event(), answer=partial)
    record = project.loop.iterations()[-1]
    assert record.iteration == 1 and record.status == "queried"
    asked_first = partial.asked[0]
    kept = set(project.panel.covered_indices().tolist())
    assert kept == covered_before | set(asked_first[:3])  # what was answered before the cancel is there
    answers.asked.clear()
    project.loop.run_iterations(1, LOOP, answer=answers)
    assert answers.asked == [asked_first[3:]]  # resume asks only for the rest
    records = project.loop.iterations()
    assert records[1].queried == record.queried and records[1].status == "trained"


def test_the_config_takes_on_demand_by_default_and_full_when_asked(tmp_path):
    base = {"dataset": {"csv": "texts.csv"}}
    assert parse_config(base, tmp_path).evidence == "on-demand"
    assert parse_config({**base, "evidence": "full"}, tmp_path).evidence == "full"
    assert parse_config({**base, "self_training_sample": "all"}, tmp_path).self_training_sample is None
    with pytest.raises(ConfigError, match="on-demand"):
        parse_config({**base, "evidence": "lazy"}, tmp_path)
    with pytest.raises(ConfigError, match="self_training_sample"):
        parse_config({**base, "self_training_sample": -5}, tmp_path)


def _wait_until(condition, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_real_llm_labels_as_you_go_and_a_kill_while_it_answers_loses_nothing(projects, trec):
    """The smallest embedded LLM in real jobs: the evidence job answers the seed texts and the sample and
    fits MoLAM; a loop job in another process is killed (SIGKILL) in its answer step; resumed, it finishes
    with every queried text answered and no other text asked."""
    project = Project.create("real")
    project.dataset.set_dataset(trec_frame(trec, 40), "question", id_column="qid", label_column="category")
    project.dataset.take_seeds_from_column(8)
    project.panel.set_specs([AnnotatorSpec(kind="embedded", model="smollm2-135m")])
    project.panel.set_evidence_plan("on-demand", 4)
    jobs.start(project.path, "evidence")
    ended = jobs.wait(project.path, timeout=900)
    assert ended.status == jobs.DONE, ended.error
    assert project.panel.evidence_counts() == {"smollm2-135m": 12}  # 8 seed texts + a sample of 4
    assert project.annotation.fit_report() is not None and project.annotation.is_current()
    loop = LoopConfig(batch_size=4, planned_iterations=1, seed_cv_folds=0).to_dict()
    worker = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from mollia_core import jobs
        jobs.start({str(project.path)!r}, "loop", until=1, settings={loop!r})
        time.sleep(3600)
        """)], cwd=REPO)
    try:
        _wait_until(lambda: (s := jobs.status(project.path)) is not None and s.running
                    and s.message.startswith("queried texts"))
    finally:
        worker.kill()
        worker.wait()
    queried = project.loop.iterations()[-1]
    assert queried.iteration == 1 and queried.status == "queried"
    assert jobs.status(project.path).status == jobs.INTERRUPTED
    jobs.resume(project.path)
    ended = jobs.wait(project.path, timeout=900)
    assert ended.status == jobs.DONE, ended.error
    records = project.loop.iterations()
    assert records[1].queried == queried.queried and records[1].status == "trained"  # the same batch, finished
    needed = set(project.panel.needed_indices().tolist())
    assert project.panel.evidence_counts()["smollm2-135m"] == len(needed) <= 16  # no other text was asked
    assert set(records[1].queried) <= set(project.panel.covered_indices().tolist())
    assert {row.text_index for row in project.store.annotations() if row.source == "molam"} == set(queried.queried)


def test_the_pages_count_only_the_texts_molam_has_labeled(projects, trec):
    from app_helpers import app, assert_no_exception, errors

    project, _ = on_demand_project(trec, "pages")
    project.annotation.fit(LLM_ONLY)
    answered = len(project.panel.covered_indices())
    project.store.close()
    molam = app("pages", "pages/3_molam.py")
    assert_no_exception(molam)
    assert not errors(molam)
    assert next(m.value for m in molam.metric if m.label == "Texts annotated") == f"{answered} of 150"
    export = app("pages", "pages/6_export.py")
    export.radio(key="export_scope").set_value("all").run()
    assert_no_exception(export)
    assert any(f"{150 - answered} texts are left out" in c.value for c in export.caption)
