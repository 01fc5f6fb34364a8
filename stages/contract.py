"""The stage contract: what a pipeline stage declares, receives and returns.

Third-party plugins import from ``stages`` (this module's names are re-exported there); nothing
here imports the worker, pyvips or av, so a plugin can be written and tested without them.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger


class MediaKind(enum.StrEnum):
    """What an upload turned out to be, decided from its bytes by the probe stage."""

    IMAGE = "image"
    VIDEO = "video"


ALL_KINDS: frozenset[MediaKind] = frozenset(MediaKind)


class StageError(Exception):
    """Base of the errors a stage raises on purpose."""


class BadMediaError(StageError):
    """The upload itself is unusable: permanent, the item ends FAILED with this message."""


class TransientError(StageError):
    """Trouble that may pass (throttling, a 5xx): the job is retried later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RenditionInvalid(StageError):
    """A file we made is not what it claims (truncated, wrong size): never published; our fault,
    so the job is retried rather than the media blamed."""


class JobCancelled(StageError):
    """The job was cancelled (timeout or shutdown): a thread-run stage stops at its next check."""


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How an optional stage retries its own TransientErrors in-process before it is deferred:
    at most ``attempts`` tries, none starting later than ``seconds`` after the first began."""

    attempts: int = 3
    seconds: float = 120.0


class RetryOptions(BaseModel):
    """The operator's override of a stage's RetryBudget (``retry`` in its options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int | None = Field(default=None, ge=1, le=100)
    seconds: float | None = Field(default=None, ge=0, le=6 * 3600)


class StageOptions(BaseModel):
    """Base of a stage's declared options; unknown options are refused when the stage loads.

    ``retry`` is accepted by every optional stage, so an operator can widen or narrow its
    RetryBudget without the stage declaring anything.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    retry: RetryOptions | None = None


@dataclass(frozen=True, slots=True)
class MediaSource:
    """Identity of the upload being processed."""

    media_id: str
    owner: str
    bucket: str
    key: str
    etag: str
    size: int
    version_id: str | None = None
    sequencer: str | None = None
    # Names this very object among the uploads of the key; its renditions are stored under it.
    tag: str = ""


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where a rendition is stored in S3, so that a stage can point a service at it (Rekognition
    reads an ``S3Object``) instead of sending the file's bytes."""

    bucket: str
    key: str


@dataclass(frozen=True, slots=True)
class Rendition:
    """A file a stage produced; publish uploads it under a key derived from media id and name."""

    name: str
    path: Path
    content_type: str
    width: int | None = None
    height: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Set by a stage that checked the file itself (stages.photo.verify); publish checks the others.
    checked: bool = False
    # Set when the file is in S3 already: one a reprocess downloaded from the item's renditions.
    stored: S3Location | None = None


@dataclass(slots=True)
class StageResult:
    """What a stage returns: renditions to publish, metadata to merge, warnings to record.

    A stage that decides what the upload is (the built-in ``probe``) sets ``kind``; stages that
    accept only some kinds must require it.
    """

    kind: MediaKind | None = None
    renditions: list[Rendition] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StageRecord:
    """Provenance of one stage on one job, stored with the item."""

    name: str
    version: str
    outcome: str  # "ok", "warning", "skipped", "failed", "deferred"
    seconds: float
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 4),
        }
        if self.detail:
            data["detail"] = self.detail
        return data


@dataclass(slots=True)
class Job:
    """Everything one stage invocation receives.

    ``renditions`` and ``metadata`` hold what the stages it depends on (transitively) produced;
    ``options`` are the stage's own validated options. Thread-run stages should call
    :meth:`check_cancelled` between units of work so a timeout or shutdown stops them promptly.
    """

    source: MediaSource
    original: Path
    workdir: Path
    kind: MediaKind | None
    attempt: int
    max_attempts: int
    renditions: Mapping[str, Rendition]
    metadata: Mapping[str, Any]
    options: StageOptions
    log: FilteringBoundLogger
    cancelled: threading.Event = field(default_factory=threading.Event)
    records: tuple[StageRecord, ...] = ()
    warnings: tuple[str, ...] = ()
    # Stores a rendition of this job ahead of its publish, under the key publish gives it. None
    # when nothing publishes this job's renditions so (a reprocess stores its own way).
    stores_ahead: StoresAhead | None = None

    @classmethod
    def standalone(
        cls,
        original: Path,
        workdir: Path,
        *,
        kind: MediaKind | None = None,
        metadata: Mapping[str, Any] | None = None,
        renditions: Mapping[str, Rendition] | None = None,
        options: StageOptions | None = None,
    ) -> Job:
        """A job for one local file outside the worker: a plugin's tests, a benchmark, a script."""
        import structlog

        size = original.stat().st_size
        return cls(
            source=MediaSource("local", "local", "local", str(original), "local", size),
            original=original,
            workdir=workdir,
            kind=kind,
            attempt=1,
            max_attempts=1,
            renditions=renditions or {},
            metadata=metadata or {},
            options=options or StageOptions(),
            log=structlog.get_logger(),
        )

    @property
    def media_id(self) -> str:
        return self.source.media_id

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled("job cancelled")


class Stage:
    """Base class of every stage, built-in or third-party.

    Subclasses set the class attributes and override :meth:`run` (I/O-bound, on the event loop)
    or, when ``cpu_bound`` is true, :meth:`run_sync` (called in a worker thread under a limiter
    sized to the cores). A stage with ``final`` set runs after every non-final stage of the job;
    that is where publishing belongs.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    kinds: ClassVar[frozenset[MediaKind]] = ALL_KINDS
    requires: ClassVar[tuple[str, ...]] = ()
    # The renditions of its requirements it reads (None: every one). Its jobs get only these,
    # and a reprocess downloads only these of the item's stored renditions.
    reads_renditions: ClassVar[frozenset[str] | None] = None
    optional: ClassVar[bool] = False
    timeout: ClassVar[float] = 300.0
    cpu_bound: ClassVar[bool] = False
    final: ClassVar[bool] = False
    retry_budget: ClassVar[RetryBudget] = RetryBudget()
    Options: ClassVar[type[StageOptions]] = StageOptions

    def __init__(self, options: StageOptions) -> None:
        self.options = options

    @property
    def budget(self) -> RetryBudget:
        """The class's ``retry_budget`` with the operator's ``retry`` option over it."""
        override = self.options.retry
        if override is None:
            return self.retry_budget
        return RetryBudget(
            attempts=override.attempts or self.retry_budget.attempts,
            seconds=self.retry_budget.seconds if override.seconds is None else override.seconds,
        )

    @property
    def longest_seconds(self) -> float:
        """The longest this stage may take in one job: its timeout, plus an optional stage's
        retry budget (a last try may start just before the budget runs out)."""
        return self.timeout + (self.budget.seconds if self.optional else 0.0)

    def unfinished_metadata(self, outcome: str, reason: str) -> Mapping[str, Any]:
        """Metadata to merge when this (optional) stage ends without a result: ``outcome`` is
        "deferred" (its retry budget ran out) or "failed"; default: nothing."""
        return {}

    def scratch_bytes(self, job: Job) -> int:
        """The most this stage may write under ``job.workdir`` for ``job``, when the worker's
        reservation from the upload's size (the original and about as much again) may not hold
        it; 0 (the default): that reservation does. Called just before the stage runs, with what
        its requirements found (a video's duration and size); cheap and without I/O. The worker
        holds the extra space until the job ends, waiting for it as for the first share; while
        it is not free, the stage is retried later as for any TransientError."""
        return 0

    async def start(self, context: StageContext) -> None:
        """Called once when the worker starts, with its shared resources; default: nothing."""

    async def stop(self) -> None:
        """Called once when the worker stops; default: nothing."""

    async def run(self, job: Job) -> StageResult:
        raise NotImplementedError(f"stage {self.name!r} overrides neither run nor run_sync")

    def run_sync(self, job: Job) -> StageResult:
        raise NotImplementedError(f"stage {self.name!r} is cpu_bound but has no run_sync")


class StoresAhead(Protocol):
    """Stores a rendition in S3 before publish runs, under the key and with the headers publish
    gives it; publish then does not upload it again (the built-in publish is one)."""

    async def store_ahead(self, job: Job, rendition: Rendition) -> S3Location:
        """Raises TransientError when S3 fails, RenditionInvalid when the file fails its check."""
        ...


@dataclass(frozen=True, slots=True)
class StageContext:
    """Shared resources handed to every stage at start-up (clients are opened once)."""

    settings: Any
    resources: Mapping[str, Any]
    log: FilteringBoundLogger
