"""The stage contract that built-in stages and third-party plugins import."""

from stages.contract import (
    ALL_KINDS,
    BadMediaError,
    Job,
    JobCancelled,
    MediaKind,
    MediaSource,
    Rendition,
    RenditionInvalid,
    RetryBudget,
    Stage,
    StageContext,
    StageError,
    StageOptions,
    StageRecord,
    StageResult,
    TransientError,
)

__all__ = [
    "ALL_KINDS",
    "BadMediaError",
    "Job",
    "JobCancelled",
    "MediaKind",
    "MediaSource",
    "Rendition",
    "RenditionInvalid",
    "RetryBudget",
    "Stage",
    "StageContext",
    "StageError",
    "StageOptions",
    "StageRecord",
    "StageResult",
    "TransientError",
]
