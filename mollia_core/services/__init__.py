"""The services a :class:`~mollia_core.project.Project` is composed of, one concern each, each over
the project's ``ProjectStore`` (and the services it needs, passed explicitly):

- :class:`DatasetService` (``project.dataset``): the table, splits and seed labels;
- :class:`PanelService` (``project.panel``): the LLM panel, its prompt and its evidence;
- :class:`AnnotationService` (``project.annotation``): MoLAM's one fit per state of the seed labels;
- :class:`LoopService` (``project.loop``): the AL loop, labeling with that fit;
- :class:`ReviewService` (``project.review``): review and export view models;
- :class:`ReviewQueueService` (``project.queue``): the texts to review, most likely wrong first.
"""

from .annotation import AnnotationService, AnnotatorSettings, FitReport, StoredFitAnnotator
from .dataset import DatasetService
from .errors import ProjectError
from .loop import LoopService
from .panel import AnnotatorSpec, PanelService, make_source
from .queue import QueueRanking, ReviewQueueService
from .review import ReviewService, TextEvidence

__all__ = [
    "AnnotationService",
    "AnnotatorSettings",
    "AnnotatorSpec",
    "DatasetService",
    "FitReport",
    "LoopService",
    "PanelService",
    "ProjectError",
    "QueueRanking",
    "ReviewQueueService",
    "ReviewService",
    "StoredFitAnnotator",
    "TextEvidence",
    "make_source",
]
