"""Jobs that belong to the project (mollia_core.jobs): real projects (the paper's TREC evidence), the
real MoLAM (XGBoost) and the real AL loop (offline encoder, fast learner) run in the job's worker."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from mollia_core import jobs
from mollia_core.loop import LoopConfig
from mollia_core.project import AnnotatorSettings, Project
from mollia_core.store import ProjectStore
from project_helpers import replayed_project

#: MoLAM on the LLMs' evidence alone: no text member, so no encoder (fast enough for the quick tests).
LLM_ONLY = asdict(AnnotatorSettings(method="molam-llm-only", random_state=1))
LOOP = LoopConfig(batch_size=10, seed_cv_folds=0).to_dict()
REPO = Path(__file__).resolve().parent.parent


def _wait_until(condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.1)


def _elsewhere(project: Project, age_s: float) -> jobs.JobState:
    """A running Fit MoLAM job stored by a process on another machine, its last heartbeat ``age_s`` ago."""
    beat = time.time() - age_s
    state = jobs.JobState(id="other", kind="fit", status=jobs.RUNNING, started_at=beat - 10, heartbeat=beat,
                          params={"settings": LLM_ONLY}, expected_end=beat + 600,
                          owner={"host": "another-machine", "pid": 1, "token": "x"})
    jobs._write(project.store, state)
    return state


@pytest.mark.slow  # real MoLAM fits (XGBoost) in the worker
def test_a_fit_job_runs_in_the_worker_one_job_per_project(projects, trec):
    project = replayed_project(trec, "jobs")
    started = jobs.start(project.path, "fit", settings=LLM_ONLY)
    assert started.running and started.kind == "fit" and started.expected_end is None  # no fit timed yet
    with pytest.raises(jobs.JobError, match=r"already has a job: Fit MoLAM running since \d\d:\d\d:\d\d UTC"):
        jobs.start(project.path, "loop", until=1, settings=LOOP)
    # Every tab reads the same job from the store, not from its session.
    assert jobs.read_status(ProjectStore.open(project.path)).id == started.id
    ended = jobs.wait(project.path, timeout=300)
    assert ended.status == jobs.DONE and (ended.done, ended.total) == (1, 1) and ended.error is None
    assert ended.ended_at >= ended.started_at
    report = project.annotation.fit_report()
    assert report is not None and "MoLAM" in report.cv_accuracy  # fitted with its cross-validation
    assert project.annotation.settings().method == "molam-llm-only"
    # The next fit's expected end comes from how long this one took.
    again = jobs.start(project.path, "fit", settings=LLM_ONLY)
    assert again.expected_end == pytest.approx(again.started_at + (ended.ended_at - ended.started_at), abs=0.5)
    assert jobs.wait(project.path, timeout=300).status == jobs.DONE


def test_a_failed_job_keeps_its_message_and_frees_the_project(projects, trec):
    project = replayed_project(trec, "jobs")
    for text_id in list(project.dataset.seeds()):
        project.dataset.remove_seed(text_id)
    jobs.start(project.path, "fit", settings=LLM_ONLY)
    ended = jobs.wait(project.path, timeout=300)
    assert ended.status == jobs.FAILED and "seed" in ended.error
    assert jobs.start(project.path, "fit", settings=LLM_ONLY).running  # a failed job does not block the next


def test_a_stored_cancel_reaches_the_worker(projects, trec):
    """Cancel from another tab or process is a stored request: the job's watcher hands it to the work."""
    project = replayed_project(trec, "jobs")
    seen = threading.Event()

    def waits_for_cancel(project, context):  # a fake job: only the bridge from the store is under test
        context.progress(0, 1, "waiting")
        if context.cancel.wait(20):
            seen.set()

    state = jobs.start(project.path, "custom", waits_for_cancel)
    other_tab = ProjectStore.open(project.path)
    other_tab.set_setting(jobs.CANCEL_SETTING, state.id)
    ended = jobs.wait(project.path, timeout=30)
    assert seen.is_set() and ended.status == jobs.CANCELLED
    assert ended.ended_at - ended.started_at < 3 * jobs.HEARTBEAT_S + 2
    with pytest.raises(jobs.JobError, match="cannot be resumed"):
        jobs.resume(project.path)


@pytest.mark.slow  # real MoLAM fits (XGBoost) in the worker
def test_a_live_job_elsewhere_blocks_a_stale_one_is_interrupted_and_resumes(projects, trec):
    project = replayed_project(trec, "jobs")
    live = _elsewhere(project, age_s=2)
    assert jobs.status(project.path).running
    with pytest.raises(jobs.JobError, match="expected to end at"):
        jobs.start(project.path, "fit", settings=LLM_ONLY)
    _elsewhere(project, age_s=jobs.STALE_AFTER_S + 5)
    interrupted = jobs.status(project.path)
    assert interrupted.status == jobs.INTERRUPTED and interrupted.id == live.id
    assert project.annotation.fit_report() is None
    resumed = jobs.resume(project.path)
    assert resumed.id != live.id and resumed.params == live.params
    assert jobs.wait(project.path, timeout=300).status == jobs.DONE
    assert project.annotation.fit_report() is not None


@pytest.mark.slow
def test_cancel_stops_a_loop_job_within_one_step(projects, trec):
    project = replayed_project(trec, "jobs")
    project.annotation.fit(AnnotatorSettings(**LLM_ONLY), cv=False)
    state = jobs.start(project.path, "loop", until=5, settings=LOOP)
    _wait_until(lambda: jobs.status(project.path).done >= 2)  # trained on the seeds, queried a batch
    assert jobs.cancel(project.path)
    at_cancel = jobs.status(project.path).done
    ended = jobs.wait(project.path, timeout=300)
    assert ended.id == state.id and ended.status == jobs.CANCELLED
    assert ended.done <= at_cancel + 1  # the step in progress ends; no other starts
    assert ended.total == 1 + 3 * 5 and ended.done < ended.total
    assert len(project.loop.iterations()) <= 2


@pytest.mark.slow
def test_a_killed_loop_job_is_interrupted_and_resume_finishes_it(projects, trec):
    project = replayed_project(trec, "jobs")
    project.annotation.fit(AnnotatorSettings(**LLM_ONLY), cv=False)
    worker = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from mollia_core import jobs
        jobs.start({str(project.path)!r}, "loop", until=8, settings={LOOP!r})
        time.sleep(3600)
        """)], cwd=REPO)
    try:
        # Killed early in a run of 8 iterations (33 steps, the whole pool), so that it cannot have ended on a
        # fast machine (an iteration of this small project takes about a second).
        _wait_until(lambda: (s := jobs.status(project.path)) is not None and s.done >= 2 and s.running)
    finally:
        worker.kill()  # SIGKILL: no chance to write anything
        worker.wait()
    before = project.loop.iterations()
    assert before and before[0].status == "trained"  # what was committed is kept
    interrupted = jobs.status(project.path)
    assert interrupted.status == jobs.INTERRUPTED and interrupted.kind == "loop"
    jobs.resume(project.path)
    ended = jobs.wait(project.path, timeout=600)
    assert ended.status == jobs.DONE, ended.error
    assert jobs.completed_iterations(project) == 8  # the run asked for, not 8 more
    assert [r.status for r in project.loop.iterations()] == ["trained"] * 9
    assert project.summary()["labeled"] == 40 + 8 * 10
