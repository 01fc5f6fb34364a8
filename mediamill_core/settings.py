"""Settings, read once from ``MEDIAMILL_*`` environment variables and validated at start."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from mediamill_core.keys import RAW_TYPES

ENV_PREFIX = "MEDIAMILL_"

# What POST /uploads accepts. The probe stage still decides from the bytes; this only keeps
# obvious non-media (SVG, HTML, archives) from ever reaching the bucket.
DEFAULT_CONTENT_TYPES: tuple[str, ...] = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/heic",
    "image/heif",
    "image/heic-sequence",
    "image/heif-sequence",
    "image/avif",
    "image/tiff",
    *RAW_TYPES.values(),
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/x-matroska",
    "video/x-msvideo",
    "video/avi",
    "video/3gpp",
)

# A single S3 POST is capped at 5 GB; a multipart object at 5 TiB (S3 user guide).
S3_SINGLE_UPLOAD_MAX = 5 * 1000**3
S3_MULTIPART_MAX = 5 * 1024**4
SQS_MAX_VISIBILITY = 12 * 3600
ECS_MAX_STOP_TIMEOUT = 120
# A browser origin: scheme, host and optional port, nothing after.
_ORIGIN = re.compile(r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$")
# A base URL: scheme and host, perhaps a path; no query or fragment (keys are appended).
_BASE_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


class SettingsError(ValueError):
    """The environment does not describe a usable configuration; the message names the variable."""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    """Every setting of the worker and the API, one frozen object built at the edge."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", case_sensitive=False
    )

    # AWS
    endpoint_url: str | None = None
    # Rekognition's own endpoint when it differs (defaults to endpoint_url, then real AWS).
    rekognition_endpoint_url: str | None = None
    region: str = "us-east-1"
    originals_bucket: str = "mediamill-originals"
    renditions_bucket: str = "mediamill-renditions"
    table: str = "mediamill-media"
    queue_url: str | None = None
    # The backfill lane, with its own DLQ, where `mediamill reprocess` sends its requests: the
    # worker takes from it only when the media queue has nothing visible, but for the reserved
    # slots below. Unset: the media queue is the only one.
    backfill_queue_url: str | None = None
    media_topic_arn: str | None = None
    aws_max_attempts: int = Field(default=5, ge=1, le=20)

    # Consumer
    concurrency: int = Field(default=8, ge=1, le=256)
    cpu_threads: int = Field(default_factory=_cpu_count, ge=1, le=256)
    # Job slots backfill may hold even while fresh uploads wait, so it is never starved for
    # good; 0: fresh uploads always first. Below the concurrency, so a fresh one always has one.
    backfill_reserved_slots: int = Field(default=0, ge=0, le=255)
    visibility_timeout: int = Field(default=120, ge=2, le=SQS_MAX_VISIBILITY)
    receive_wait_seconds: int = Field(default=20, ge=0, le=20)
    # How long a finished job's delete may wait for others to share its DeleteMessageBatch;
    # never past half the visibility timeout after the message's last extension, whatever this.
    delete_linger_seconds: float = Field(default=0.5, gt=0, le=10)
    drain_seconds: float = Field(default=100.0, gt=0, lt=ECS_MAX_STOP_TIMEOUT)
    retry_base_seconds: float = Field(default=10.0, gt=0)
    retry_max_seconds: float = Field(default=900.0, gt=0, le=SQS_MAX_VISIBILITY)
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    spool_dir: Path | None = None
    burst: bool = False
    # Scratch space jobs may reserve: Fargate's default ephemeral storage is 20 GiB, of which
    # the image and the system take a share. Capped at start by what is free under spool_dir.
    spool_budget_bytes: int = Field(default=16 * 1024**3, ge=64 * 1024**2)
    # How long a job waits for scratch space to free before its message is left for later.
    spool_wait_seconds: float = Field(default=60.0, ge=0)
    # The sweep: events still owed this long after their fact are sent, and items whose last
    # delivery died with its worker end FAILED. An event's sender holds it for half the grace.
    sweep_interval_seconds: float = Field(default=60.0, gt=0)
    event_grace_seconds: float = Field(default=120.0, ge=1)
    # ECS task scale-in protection while jobs are in flight (only where ECS sets ECS_AGENT_URI):
    # how long one protection lasts, renewed half way while busy (unset: the stages' longest
    # chain of timeouts, in whole minutes), and how long the worker idles before it lets go.
    task_protection_minutes: int | None = Field(default=None, ge=1, le=2880)
    task_protection_idle_seconds: float = Field(default=60.0, ge=0)

    # Stages
    stages: Annotated[tuple[str, ...] | None, NoDecode] = None
    stage_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Decompression bombs: pictures with more pixels are refused from their header, undecoded.
    max_pixels: int = Field(default=200_000_000, ge=1)
    # How long a cancelled or timed-out stage's thread is waited for before it counts as stuck.
    stage_grace_seconds: float = Field(default=10.0, gt=0, le=60)

    # Operability
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    health_stall_seconds: float = Field(default=90.0, gt=0)
    # Receives failing this long (credentials, IAM, a deleted queue) make /healthz fail.
    health_receive_seconds: float = Field(default=120.0, gt=0)
    log_level: str = "INFO"
    log_format: str = "json"

    # API
    # Videos outgrow one POST: above the threshold an upload is multipart, up to the maximum.
    max_upload_bytes: int = Field(default=20 * 1000**3, ge=1, le=S3_MULTIPART_MAX)
    multipart_threshold_bytes: int = Field(default=100 * 1000**2, ge=1, le=S3_SINGLE_UPLOAD_MAX)
    upload_expiry_seconds: int = Field(default=900, ge=60, le=7 * 24 * 3600)
    # Every part URL is handed out at the start, so the last one must outlive a long upload.
    multipart_expiry_seconds: int = Field(default=6 * 3600, ge=60, le=7 * 24 * 3600)
    url_expiry_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # Where players fetch HLS ladders (a CloudFront distribution over the renditions bucket,
    # https://d111111abcdef8.cloudfront.net); unset: the API serves presigned playlists.
    renditions_base_url: str | None = None
    allowed_content_types: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CONTENT_TYPES
    # Browser origins allowed to call the API; none by default, so no site can use it unasked.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Per owner, uploads whose URLs are still valid and their declared bytes (429 beyond).
    max_open_uploads: int = Field(default=100, ge=1)
    max_pending_bytes: int = Field(default=100 * 1000**3, ge=1)

    @field_validator("stages", mode="before")
    @classmethod
    def _split_stages(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = tuple(part.strip() for part in value.split(",") if part.strip())
            return names or None
        return value

    @field_validator("allowed_content_types", "cors_origins", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip().lower() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com or *")
        return value

    @field_validator("renditions_base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _BASE_URL.fullmatch(value):
            raise ValueError(f"{value!r} is not a URL like https://d111111abcdef8.cloudfront.net")
        return value.rstrip("/")

    @field_validator("log_format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        if value not in ("json", "console"):
            raise ValueError("must be 'json' or 'console'")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @model_validator(mode="after")
    def _check_retry(self) -> Settings:
        if self.retry_base_seconds > self.retry_max_seconds:
            raise ValueError(
                f"{ENV_PREFIX}RETRY_BASE_SECONDS must not exceed {ENV_PREFIX}RETRY_MAX_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _check_reserved_slots(self) -> Settings:
        if self.backfill_reserved_slots >= self.concurrency:
            raise ValueError(
                f"{ENV_PREFIX}BACKFILL_RESERVED_SLOTS ({self.backfill_reserved_slots}) must be "
                f"below {ENV_PREFIX}CONCURRENCY ({self.concurrency}): fresh uploads need a slot"
            )
        return self

    @model_validator(mode="after")
    def _check_grace(self) -> Settings:
        # Cancelled jobs' threads get the grace after the drain limit, all before ECS's SIGKILL.
        if self.drain_seconds + self.stage_grace_seconds >= ECS_MAX_STOP_TIMEOUT:
            raise ValueError(
                f"{ENV_PREFIX}DRAIN_SECONDS + {ENV_PREFIX}STAGE_GRACE_SECONDS must stay under "
                f"{ECS_MAX_STOP_TIMEOUT} s, the longest stopTimeout Fargate allows"
            )
        return self

    def require(self, *fields: str) -> None:
        """Raise SettingsError naming each variable a component needs but was not given."""
        missing = [f"{ENV_PREFIX}{name.upper()}" for name in fields if not getattr(self, name)]
        if missing:
            raise SettingsError(f"missing setting(s): {', '.join(missing)}")


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment (plus explicit overrides); errors name the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            name = f"{ENV_PREFIX}{where.upper()}" if where else "settings"
            value = os.environ.get(name)
            shown = f" (got {value!r})" if value is not None else ""
            problems.append(f"{name}: {error['msg']}{shown}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
    except SourceError as exc:
        # A complex setting (MEDIAMILL_STAGE_OPTIONS) that is not JSON fails before validation.
        field = next((f for f in Settings.model_fields if f'"{f}"' in str(exc)), None)
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        raise SettingsError(f"invalid settings: {name}: {exc.__cause__ or exc}") from None
