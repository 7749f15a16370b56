"""A labeling project: what the dashboard's pages and the headless CLI call (and nothing of Streamlit).

A project is one SQLite file in the projects folder (``projects_dir()``), kept by
``mollia_core.store.ProjectStore``: the user's table (texts, gold labels, original
columns), the column choices and label set, the seed labels, the annotator panel,
the LLM evidence, MoLAM's annotation of every text, the active-learning
iterations and the human overrides. Every method that changes something commits
before it returns, so closing the browser or killing the server loses nothing
that was committed, and reopening the project resumes exactly.

``Project`` is the composition root: it opens the store and builds the services over it
(``mollia_core.services``): ``project.dataset``, ``project.panel``, ``project.annotation``,
``project.loop``, ``project.review`` and ``project.queue``.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from .services import (
    AnnotationService,
    AnnotatorSettings,
    AnnotatorSpec,
    DatasetService,
    FitReport,
    LoopService,
    PanelService,
    ProjectError,
    ReviewQueueService,
    ReviewService,
    TextEvidence,
    make_source,
)
from .services.dataset import DEFAULT_SEED_COUNT, MAX_VALIDATION, MIN_GOLD_FOR_VALIDATION, VALIDATION_FRACTION
from .services.panel import MAX_DEMONSTRATIONS_PER_CLASS
from .store import PROJECT_SUFFIX, ProjectStore, StoreError, projects_dir
from .store import list_projects as list_project_files

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")

__all__ = [
    "DEFAULT_SEED_COUNT", "MAX_DEMONSTRATIONS_PER_CLASS", "MAX_VALIDATION", "MIN_GOLD_FOR_VALIDATION",
    "VALIDATION_FRACTION", "AnnotatorSettings", "AnnotatorSpec", "FitReport", "Project", "ProjectError",
    "TextEvidence", "list_projects", "make_source", "project_path", "projects_dir",
]


def list_projects(root: str | Path | None = None) -> list[str]:
    """Names of the projects in ``root`` (default ``projects_dir()``), most recently changed first."""
    return [path.name.removesuffix(PROJECT_SUFFIX) for path in list_project_files(root)]


def project_path(name: str, root: str | Path | None = None) -> Path:
    """Where the project ``name`` lives; the name must be usable as a file name."""
    name = name.strip()
    if not _NAME_PATTERN.match(name):
        raise ProjectError(
            f"{name!r} is not a usable project name: use 1-64 letters, digits, spaces, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    folder = Path(root) if root is not None else projects_dir()
    return folder / f"{name}{PROJECT_SUFFIX}"


class Project:
    """One labeling project over its ``ProjectStore``, composed of the services that use it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name.removesuffix(PROJECT_SUFFIX)
        try:
            self.store = ProjectStore(self.path)
        except StoreError as exc:
            raise ProjectError(str(exc)) from None
        lock = threading.RLock()
        self.dataset = DatasetService(self.store, lock)
        self.panel = PanelService(self.store, self.dataset)
        self.annotation = AnnotationService(self.store, self.dataset, self.panel)
        self.loop = LoopService(self.store, self.dataset, self.annotation, lock)
        self.review = ReviewService(self.store, self.dataset, self.panel, self.annotation)
        self.queue = ReviewQueueService(self.store, self.dataset, self.panel, self.annotation)

    @classmethod
    def create(cls, name: str, root: str | Path | None = None) -> "Project":
        """Create a new, empty project; fails if one of that name exists."""
        path = project_path(name, root)
        if path.exists():
            raise ProjectError(f"a project named {name.strip()!r} already exists: open it, or choose another name")
        project = cls(path)
        project.store.set_setting("name", name.strip())
        return project

    @classmethod
    def open(cls, name: str, root: str | Path | None = None) -> "Project":
        """Open an existing project."""
        path = project_path(name, root)
        if not path.exists():
            raise ProjectError(f"no project named {name!r} in {path.parent}: create it first")
        return cls(path)

    # ------------------------------------------------------------------ kept for the pages
    # The pages, the CLI and the tests call these; each is the service method of the same name
    # (``project.panel()`` is ``project.panel.specs()``: the service is callable for them).
    def get_setting(self, key: str, default: Any = None) -> Any: return self.store.get_setting(key, default)
    def set_setting(self, key: str, value: Any) -> None: self.store.set_setting(key, value)

    def set_dataset(self, *args, **kwargs): return self.dataset.set_dataset(*args, **kwargs)
    def can_replace_dataset(self) -> bool: return self.dataset.can_replace_dataset()
    def clear_dataset(self) -> None: self.dataset.clear_dataset()
    def has_dataset(self) -> bool: return self.dataset.has_dataset()
    @property
    def dataset_config(self) -> dict: return self.dataset.config
    @property
    def labels(self) -> tuple[str, ...]: return self.dataset.labels
    @property
    def text_ids(self) -> list[str]: return self.dataset.text_ids
    @property
    def texts(self) -> list[str]: return self.dataset.texts
    def index_of(self, text_id: str) -> int: return self.dataset.index_of(text_id)
    def gold(self): return self.dataset.gold()
    def splits(self): return self.dataset.splits()
    def original_frame(self): return self.dataset.original_frame()
    def summary(self) -> dict[str, Any]: return self.dataset.summary()
    def seeds(self) -> dict[str, str]: return self.dataset.seeds()
    def seed_vector(self): return self.dataset.seed_vector()
    def take_seeds_from_column(self, *args, **kwargs) -> int: return self.dataset.take_seeds_from_column(*args, **kwargs)
    def label_seed(self, text_id: str, label: str) -> None: self.dataset.label_seed(text_id, label)
    def remove_seed(self, text_id: str) -> None: self.dataset.remove_seed(text_id)
    def seed_candidates(self, *args, **kwargs) -> list[str]: return self.dataset.seed_candidates(*args, **kwargs)

    def set_panel(self, specs) -> None: self.panel.set_specs(specs)
    def panel_models(self) -> list[str]: return self.panel.models()
    @property
    def prompt_template(self) -> str | None: return self.panel.prompt_template
    def set_prompt_template(self, template: str | None) -> None: self.panel.set_prompt_template(template)
    @property
    def label_descriptions(self) -> dict[str, str]: return self.panel.label_descriptions
    def set_label_descriptions(self, descriptions) -> None: self.panel.set_label_descriptions(descriptions)
    @property
    def demonstrations_per_class(self) -> int: return self.panel.demonstrations_per_class
    def set_demonstrations_per_class(self, per_class: int) -> None: self.panel.set_demonstrations_per_class(per_class)
    def prompt(self): return self.panel.prompt()
    def evidence_counts(self) -> dict[str, int]: return self.panel.evidence_counts()
    def missing_evidence(self, model: str) -> list[int]: return self.panel.missing_evidence(model)
    def run_evidence(self, *args, **kwargs) -> dict[str, int]: return self.panel.run_evidence(*args, **kwargs)
    def import_evidence_records(self, spec, records) -> int: return self.panel.import_evidence_records(spec, records)
    def import_evidence_file(self, *args, **kwargs) -> dict[str, int]: return self.panel.import_evidence_file(*args, **kwargs)
    def evidence(self): return self.panel.evidence()
    def require_evidence(self): return self.panel.require_evidence()

    def annotator_settings(self) -> AnnotatorSettings: return self.annotation.settings()
    def llm_seed_accuracy(self) -> dict[str, float]: return self.annotation.llm_seed_accuracy()
    def fit_annotator(self, *args, **kwargs) -> FitReport: return self.annotation.fit(*args, **kwargs)
    def fit_report(self) -> FitReport | None: return self.annotation.fit_report()
    def is_annotated(self) -> bool: return self.annotation.is_annotated()

    def loop_settings(self): return self.loop.loop_settings()
    def run_iterations(self, *args, **kwargs) -> list: return self.loop.run_iterations(*args, **kwargs)
    def pool_size(self) -> int: return self.loop.pool_size()
    def learning_curve(self): return self.loop.learning_curve()
    def iterations(self) -> list: return self.loop.iterations()

    def annotation_frame(self): return self.review.annotation_frame()
    def labeled_texts(self, *args, **kwargs): return self.review.labeled_texts(*args, **kwargs)
    def text_evidence(self, text_id: str) -> TextEvidence: return self.review.text_evidence(text_id)
    def override(self, text_id: str, label: str) -> None: self.review.override(text_id, label)
    def export_frame(self, scope: str = "labeled"): return self.review.export_frame(scope)
