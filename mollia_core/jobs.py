"""Long project actions (an evidence run, Fit MoLAM, a run of AL iterations) as jobs that belong to the
project, not to the browser session that asked for them.

A job runs in a daemon thread of this process with its own :class:`~mollia_core.project.Project` (opened
in that thread). Its state is kept in the project's store (the ``job`` setting), so every tab and every
process that opens the project sees the same job: what it is, its progress, since when it runs, when it
should end, how it ended. One job per project at a time: a second request is refused with what runs.

Cancel is a request stored in the project (``job_cancel``); the job's watcher thread reads it every
heartbeat and sets the ``threading.Event`` the work checks between batches / steps, so a Cancel pressed
in any tab stops the job within one batch. The watcher also writes a heartbeat: a job whose process is
gone (a server restart, a kill) reads as ``interrupted``; what it committed stays, and :func:`resume`
starts the same job again, which carries on from the store (evidence runs ask only for the texts still
missing, the loop resumes at its step).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .services.errors import ProjectError
from .store import ProjectStore

JOB_SETTING = "job"
CANCEL_SETTING = "job_cancel"
DURATIONS_SETTING = "job_seconds"  # how long the last finished job of each kind took (expected end of the next)

RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = "running", "done", "failed", "cancelled", "interrupted"

HEARTBEAT_S = 1.0
#: A running job whose heartbeat is older than this, written by a process this machine cannot check, is
#: taken for dead (a process on this machine that is gone is known dead at once).
STALE_AFTER_S = 30.0
#: Progress is written to the store at most this often (the heartbeat writes it too).
PROGRESS_WRITE_S = 0.5

KIND_TITLES = {"evidence": "evidence run", "fit": "Fit MoLAM", "loop": "active-learning run",
               "llm_value": "leave-one-LLM-out check"}

#: This process, as a job's owner: a job owned by another process on this machine is alive while that
#: process is; the token tells this process from an earlier one that had the same pid.
_OWNER = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}


class JobError(ProjectError):
    """A job cannot be started, resumed or cancelled as asked; the message says why."""


@dataclass(frozen=True)
class JobState:
    """One job of a project as stored (times are seconds since the epoch)."""

    id: str
    kind: str
    status: str
    started_at: float
    heartbeat: float
    params: dict = field(default_factory=dict)
    done: int = 0
    total: int = 0
    message: str = ""
    expected_end: float | None = None
    ended_at: float | None = None
    error: str | None = None
    cancel_requested: bool = False
    owner: dict = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def title(self) -> str:
        return KIND_TITLES.get(self.kind, self.kind)

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total > 0 else 0.0

    def describe(self) -> str:
        """In plain words: what runs, since when, and when it should end."""
        text = f"{self.title} {self.status} since {clock(self.started_at)}"
        if self.running and self.expected_end is not None:
            text += f", expected to end at {clock(self.expected_end)}"
        return text


def progress_text(done: int, total: int, rate: float, eta_s: float | None) -> str:
    eta = "—" if eta_s is None else (f"{eta_s:.0f} s" if eta_s < 120 else f"{eta_s / 60:.1f} min")
    return f"{done} / {total} texts · {rate:.2f} texts/s · ETA {eta}"


def clock(seconds: float) -> str:
    """A time of day in UTC, the way the pages show job times."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%H:%M:%S UTC")


# ---------------------------------------------------------------------- stored state
def _read(store: ProjectStore) -> JobState | None:
    data = store.get_setting(JOB_SETTING)
    return JobState(**data) if data else None


def _write(store: ProjectStore, state: JobState) -> None:
    store.set_setting(JOB_SETTING, asdict(state))


def _owner_alive(state: JobState) -> bool:
    owner = state.owner
    if owner.get("token") == _OWNER["token"]:
        return any(j.state_id == state.id and j.thread.is_alive() for j in _registry.values())
    if owner.get("host") == _OWNER["host"] and not _pid_alive(owner.get("pid")):
        return False
    return time.time() - state.heartbeat < STALE_AFTER_S


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _resolved(state: JobState | None) -> JobState | None:
    """The stored state, with a running job whose process is gone shown as interrupted."""
    if state is not None and state.running and not _owner_alive(state):
        return replace(state, status=INTERRUPTED, expected_end=None)
    return state


def read_status(store: ProjectStore) -> JobState | None:
    """The project's current (or last) job, as any tab or process sees it."""
    return _resolved(_read(store))


# ---------------------------------------------------------------------- the worker side
class JobContext:
    """What a job's work gets: ``cancel`` (set when a Cancel was asked) and ``progress``."""

    def __init__(self, job: "_Job") -> None:
        self._job = job
        self.cancel = job.cancel

    def progress(self, done: int, total: int, message: str = "", eta_s: float | None = None) -> None:
        """Report ``done`` of ``total`` units of work; ``eta_s`` (seconds left) when the work knows it better
        than a straight line from the job's start."""
        self._job.report(done, total, message, eta_s)


@dataclass
class _Job:
    path: Path
    state: JobState
    target: Callable[..., Any]
    secrets: dict
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _written_at: float = 0.0
    _store: ProjectStore | None = None

    @property
    def state_id(self) -> str:
        return self.state.id

    def report(self, done: int, total: int, message: str, eta_s: float | None) -> None:
        now = time.time()
        if eta_s is None and 0 < done < total:
            eta_s = (now - self.state.started_at) / done * (total - done)
        expected = now + eta_s if eta_s is not None else self.state.expected_end
        with self._lock:
            self.state = replace(self.state, done=int(done), total=int(total), message=message, expected_end=expected)
            due = now - self._written_at >= PROGRESS_WRITE_S or done >= total
        if due:
            self._persist()

    def _persist(self, **changes: Any) -> None:
        with self._lock:
            self.state = replace(self.state, heartbeat=time.time(), **changes)
            self._written_at = time.time()
            state = self.state
        if self._store is not None:
            _write(self._store, state)

    def run(self) -> None:
        from .project import Project

        status, error = DONE, None
        try:
            project = Project(self.path)
        except Exception as exc:  # noqa: BLE001 (the job's end is stored, whatever it is)
            self._end(FAILED, str(exc))
            return
        self._store = project.store
        watcher = threading.Thread(target=self._watch, name=f"job-watch-{self.state.kind}", daemon=True)
        watcher.start()
        try:
            self.target(project, JobContext(self), **self.state.params, **self.secrets)
            if self.cancel.is_set():
                status = CANCELLED
        except Exception as exc:  # noqa: BLE001
            from .evidence import Cancelled

            if isinstance(exc, Cancelled) or self.cancel.is_set():
                status = CANCELLED
            else:
                status, error = FAILED, str(exc) or type(exc).__name__
        finally:
            self._end(status, error)
            project.store.close()

    def _end(self, status: str, error: str | None) -> None:
        ended = time.time()
        try:
            if self._store is not None:
                self._persist(status=status, error=error, ended_at=ended, expected_end=None)
                if status == DONE:
                    durations = dict(self._store.get_setting(DURATIONS_SETTING) or {})
                    durations[self.state.kind] = ended - self.state.started_at
                    self._store.set_setting(DURATIONS_SETTING, durations)
        finally:
            self.finished.set()

    def _watch(self) -> None:
        """The heartbeat, and the bridge from a stored Cancel (any tab, any process) to ``cancel``."""
        while not self.finished.wait(HEARTBEAT_S):
            try:
                if self._store.get_setting(CANCEL_SETTING) == self.state.id:
                    self.cancel.set()
                with self._lock:
                    cancel_seen = self.cancel.is_set()
                if not self.finished.is_set():
                    self._persist(cancel_requested=cancel_seen)
            except Exception:  # noqa: BLE001 (a busy or closed store: the next beat tries again)
                continue


# ---------------------------------------------------------------------- the registry
_registry: dict[str, _Job] = {}
_registry_lock = threading.Lock()


def _key(path: str | Path) -> str:
    return str(Path(path).resolve())


def start(project_path: str | Path, kind: str, target: Callable[..., Any] | None = None, *,
          secrets: dict | None = None, **params: Any) -> JobState:
    """Start ``kind`` on the project at ``project_path`` in a worker thread; returns its first state.

    ``target(project, context, **params, **secrets)`` does the work (default: the built-in job of
    ``kind``, see :data:`KINDS`); ``params`` are stored with the job (JSON), so :func:`resume` can start
    it again; ``secrets`` (an API key) are handed to this run only, never stored. Raises
    :class:`JobError` while another job of this project runs, saying what it is.
    """
    if target is None:
        if kind not in KINDS:
            raise JobError(f"unknown job kind {kind!r}: use one of {', '.join(KINDS)}")
        target = KINDS[kind]
    key = _key(project_path)
    store = _reader(key)
    with _registry_lock:
        with store.transaction():
            current = read_status(store)
            if current is not None and current.running:
                raise JobError(f"this project already has a job: {current.describe()}. "
                               "Wait for it to end, or cancel it first.")
            now = time.time()
            last_seconds = (store.get_setting(DURATIONS_SETTING) or {}).get(kind)
            state = JobState(id=uuid.uuid4().hex, kind=kind, status=RUNNING, started_at=now, heartbeat=now,
                             params=params, owner=dict(_OWNER),
                             expected_end=now + last_seconds if last_seconds is not None else None)
            _write(store, state)
        job = _Job(path=Path(key), state=state, target=target, secrets=dict(secrets or {}))
        job.thread = threading.Thread(target=job.run, name=f"job-{kind}", daemon=True)
        _registry[key] = job
        job.thread.start()
    return state


def status(project_path: str | Path) -> JobState | None:
    """The project's current or last job (None if it never had one), as stored, with a job whose
    process is gone shown as interrupted."""
    key = _key(project_path)
    job = _registry.get(key)
    if job is not None and not job.finished.is_set():
        return job.state
    return read_status(_reader(key))


_readers: dict[tuple, ProjectStore] = {}


def _reader(key: str) -> ProjectStore:
    """A connection kept for reading a project's job (every open tab reads it every second), one per file:
    a project file replaced by another (same path, another inode) gets a new one."""
    try:
        stat = os.stat(key)
    except FileNotFoundError:
        raise JobError(f"no project file at {key}") from None
    identity = (key, stat.st_dev, stat.st_ino)
    with _registry_lock:
        if identity not in _readers:
            _readers[identity] = ProjectStore.open(key)
        return _readers[identity]


def cancel(project_path: str | Path) -> bool:
    """Ask the project's running job to stop (at its next batch or step). False if none runs."""
    key = _key(project_path)
    current = status(key)
    if current is None or not current.running:
        return False
    job = _registry.get(key)
    if job is not None and job.state.id == current.id:
        job.cancel.set()
    _reader(key).set_setting(CANCEL_SETTING, current.id)
    return True


def resume(project_path: str | Path, *, secrets: dict | None = None) -> JobState:
    """Start the project's interrupted (or cancelled, or failed) job again, with the same parameters."""
    last = status(project_path)
    if last is None:
        raise JobError("this project has no job to resume")
    if last.running:
        raise JobError(f"this project's job is still running: {last.describe()}")
    if last.kind not in KINDS:
        raise JobError(f"a {last.title} cannot be resumed: start it again from its page")
    return start(project_path, last.kind, secrets=secrets, **last.params)


def wait(project_path: str | Path, timeout: float | None = None) -> JobState | None:
    """Wait until the job this process runs for the project ends (or ``timeout``); its state."""
    job = _registry.get(_key(project_path))
    if job is not None:
        job.finished.wait(timeout)
    return status(project_path)


# ---------------------------------------------------------------------- the built-in jobs
#: Loaded models, shared by the evidence jobs of this process (loading one takes seconds to minutes).
_SOURCES: OrderedDict[tuple, Any] = OrderedDict()
_SOURCES_KEPT = 4  # the default embedded panel (about 5 GB in bf16): the loop asks every iteration
#: One evidence run at a time uses the loaded models (a model is not safe to share between threads).
_MODELS_IN_USE = threading.Lock()


def _source(spec, prompt, api_key: str | None):
    from .project import make_source

    if spec.kind == "server":  # never kept in memory: it would hold the key
        return make_source(spec, prompt, api_key)
    key = (spec, repr(prompt))
    if key not in _SOURCES:
        _SOURCES[key] = make_source(spec, prompt)
        while len(_SOURCES) > _SOURCES_KEPT:
            _SOURCES.popitem(last=False)
    _SOURCES.move_to_end(key)
    return _SOURCES[key]


class _PanelAnswers:
    """The panel's LLMs answering texts inside a job: one model answering at a time (kept loaded for the
    next job of this process), progress over every text still to answer, ``Cancel`` within one batch."""

    def __init__(self, project, context: JobContext, api_key: str | None = None, models: list[str] | None = None,
                 what: str = "texts") -> None:
        self.project, self.context, self.api_key, self.models, self.what = project, context, api_key, models, what

    def __call__(self, indices, cancel: threading.Event | None = None) -> dict[str, int]:
        panel, context = self.project.panel, self.context
        wanted = panel.needed_indices() if indices is None else list(indices)
        specs = [s for s in panel.specs() if s.kind != "replay" and (self.models is None or s.display_name in self.models)]
        todo = {s.display_name: len(panel.missing_evidence(s.display_name, wanted)) for s in specs}
        total = sum(todo.values())
        finished = {"before": 0}

        def report(model: str, p) -> None:
            before = finished["before"]
            if p.done >= p.total:
                finished["before"] = before + p.total
            left = total - before - p.done  # the later models taken to answer at this one's rate
            context.progress(before + p.done, total, f"{self.what} · {model}: "
                             + progress_text(p.done, p.total, p.rate, p.eta_s),
                             eta_s=left / p.rate if p.rate > 0 else None)

        def load(spec):
            context.progress(finished["before"], total, f"{self.what} · {spec.display_name}: loading the model")
            return _source(spec, panel.prompt(), self.api_key)

        if not total:
            return {}
        with _MODELS_IN_USE:
            return panel.answer(wanted, load, progress=report, cancel=cancel or context.cancel, models=self.models)


def run_evidence_job(project, context: JobContext, models: list[str] | None = None,
                     api_key: str | None = None, fit: bool | None = None) -> None:
    """Ask the panel's LLMs (``models``, default every one that can run) for the texts they have to answer
    (``PanelService.needed_indices``: every text in full mode). In on-demand mode the human-labeled texts
    come first and MoLAM is fitted, with its cross-validation, as soon as they are answered, then again once
    the self-training sample is (``fit``: default on in on-demand mode)."""
    answer = _PanelAnswers(project, context, api_key, models)
    panel = project.panel
    fit = panel.evidence_mode == "on-demand" if fit is None else fit
    context.progress(0, 1, "loading the models")
    if fit:
        human = np.flatnonzero(project.annotation.fit_labels() >= 0)
        answer.what = "labeled texts"
        answer(human)
        _fit_when_possible(project, context)
        answer.what = "self-training sample"
    answer(None)
    if fit and not context.cancel.is_set():
        _fit_when_possible(project, context)


def _fit_when_possible(project, context: JobContext) -> None:
    """Fit MoLAM with its cross-validation if the labeled texts have every LLM's evidence."""
    if context.cancel.is_set():
        return
    try:
        project.annotation.scope()
    except ProjectError:
        return  # no seed labels, or some without evidence: nothing to fit yet
    context.progress(0, 1, "fitting MoLAM and cross-validating it on the seeds")
    try:
        project.annotation.fit()
    except ProjectError as exc:  # the evidence is kept; the MoLAM page says the same when fitting there
        context.progress(1, 1, f"evidence kept; MoLAM not fitted: {exc}")


def fit_job(project, context: JobContext, settings: dict | None = None) -> None:
    """Fit MoLAM with its cross-validation (one step: it cannot stop halfway)."""
    from .project import AnnotatorSettings

    context.progress(0, 1, "fitting MoLAM and cross-validating every method on the seeds")
    project.annotation.fit(AnnotatorSettings(**settings) if settings else None)
    context.progress(1, 1, "fitted")


def llm_value_job(project, context: JobContext) -> None:
    """Leave each LLM out of MoLAM on the seeds (one step: it cannot stop halfway)."""
    context.progress(0, 1, "cross-validating MoLAM on the seeds with each LLM left out")
    project.annotation.measure_llm_value()
    context.progress(1, 1, "measured")


_STEP_WORDS = {"train": "trained the model", "query": "queried a batch", "answer": "the LLMs answered it",
               "label": "labeled it with MoLAM",
               "retrain": "the pool is empty: retrained on the pending reviews"}


def loop_job(project, context: JobContext, until: int, settings: dict | None = None,
             api_key: str | None = None) -> None:
    """Run AL iterations until ``until`` are done (so a resumed run does only the rest); the panel's LLMs
    answer each iteration's queried texts they have not answered (evidence on demand)."""
    from .loop import LoopConfig

    config = LoopConfig.from_dict(settings) if settings else None
    done = completed_iterations(project)
    n = until - done
    if n < 1:
        return
    per_iteration = 4 if len(project.panel.covered_indices()) < project.store.n_texts else 3  # + the answer step
    steps = {"done": 0, "total": per_iteration * n + (0 if project.loop.iterations() else 1)}
    context.progress(0, steps["total"], "starting (the first run also fits MoLAM and trains on the seeds)")

    def report(result) -> None:
        steps["done"] += 1
        record = result.record
        flagged = f" · {record.metrics.get('n_flagged', 0)} flagged" if record and result.step == "label" else ""
        context.progress(min(steps["done"], steps["total"]), steps["total"],
                         f"iteration {result.iteration}: {_STEP_WORDS.get(result.step, result.step)}{flagged}")

    answer = _PanelAnswers(project, context, api_key, what="labeled texts")
    answer(np.flatnonzero(project.annotation.fit_labels() >= 0))  # MoLAM is fitted on them: nothing if answered
    answer.what = "queried texts"
    project.loop.run_iterations(n, config, progress=report, cancel=context.cancel, answer=answer)


def completed_iterations(project) -> int:
    """AL iterations trained after the seed training (iteration 0)."""
    trained = [r.iteration for r in project.loop.iterations() if r.status == "trained"]
    return max(trained, default=0)


KINDS: dict[str, Callable[..., Any]] = {"evidence": run_evidence_job, "fit": fit_job, "loop": loop_job,
                                        "llm_value": llm_value_job}
