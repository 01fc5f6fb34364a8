"""The built-in ``tagging`` stage: labels and moderation labels from Amazon Rekognition.

A photo is tagged from its ``preview`` rendition; a video from its poster and a few keyframes,
merged so that each label appears once, with its highest confidence and the seconds it was
seen at. A picture that Rekognition can take as it is (the preview, a poster) is read by
Rekognition from the renditions bucket (``S3Object``), stored there ahead of publish by the
job's ``stores_ahead`` (the built-in publish): the task neither encodes nor sends its bytes.
Should Rekognition be unable to read it (its S3 access, region or encryption), the bytes are
sent from then on. ``moderation`` always says what became of moderation: ``done`` (with the
labels, and ``needs_review`` when one reaches ``review_threshold``), ``off``, ``failed`` or,
when the stage ran out of retries, ``deferred``. The stage is optional: whatever goes wrong
only adds a warning (or defers it), and the upload still becomes READY.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field
from structlog.typing import FilteringBoundLogger

from stages.contract import (
    Job,
    MediaKind,
    RenditionInvalid,
    Stage,
    StageContext,
    StageOptions,
    StageResult,
    TransientError,
)
from stages.tagging.frames import Frame, UnusablePicture, keyframes, picture_frame

# Rekognition's own throttling errors (standard retry mode retries them first).
_THROTTLED = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
}
_BAD_PICTURE = {"InvalidImageFormatException", "ImageTooLargeException"}
# Rekognition could not read the S3 object: our permissions, the bucket's region or its keys.
_UNREADABLE_OBJECT = "InvalidS3ObjectException"
_NO_ACCESS = {
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "OptInRequired",
    "SubscriptionRequiredException",
}
_RETRY_JITTER = (1.0, 1.5)  # throttled jobs should not all come back at the same second


class TaggingOptions(StageOptions):
    """What to ask Rekognition for, and when an upload needs a person to look at it."""

    min_confidence: float = Field(default=70.0, ge=0, le=100)
    max_labels: int = Field(default=20, ge=1, le=1000)
    moderation: bool = True
    moderation_min_confidence: float = Field(default=50.0, ge=0, le=100)
    review_threshold: float = Field(default=80.0, ge=0, le=100)
    video_keyframes: int = Field(default=4, ge=1, le=16)
    throttle_retry_seconds: float = Field(default=30.0, gt=0)
    # Rekognition reads the stored preview (S3Object) rather than the task sending its bytes.
    from_s3: bool = True


class _Refused(Exception):
    """A call that ends in a warning; ``for_good`` when no later call can do better."""

    def __init__(self, message: str, *, for_good: bool) -> None:
        super().__init__(message)
        self.for_good = for_good


class TaggingStage(Stage):
    """Sends the preview (or a video's keyframes) to DetectLabels and DetectModerationLabels."""

    name = "tagging"
    version = "1.0.0"
    # thumbnail makes a photo's preview, transcode a video's poster; the one not for the kind
    # counts as done.
    requires = ("probe", "thumbnail", "transcode")
    # A photo's preview or a video's poster; a video's keyframes come from the original.
    reads_renditions = frozenset({"preview"})
    optional = True
    timeout = 120.0
    Options = TaggingOptions

    _rekognition: Any
    _cpu: anyio.CapacityLimiter
    _from_s3: bool
    _log: FilteringBoundLogger

    async def start(self, context: StageContext) -> None:
        self._rekognition = context.resources["aws"].rekognition
        self._log = context.log
        # Until Rekognition answers that it cannot read our objects (then: bytes, for good).
        self._from_s3 = True
        # Re-encoding and keyframe decoding are small next to the renditions; one thread at a
        # time keeps them from crowding the CPU-bound stages.
        self._cpu = anyio.CapacityLimiter(1)

    def unfinished_metadata(self, outcome: str, reason: str) -> Mapping[str, Any]:
        options = self.options
        assert isinstance(options, TaggingOptions)
        return {"moderation": _moderation_status(options, outcome, reason)}

    async def run(self, job: Job) -> StageResult:
        options = self.options
        assert isinstance(options, TaggingOptions)
        frames, warnings = await anyio.to_thread.run_sync(
            partial(_frames, job, options), limiter=self._cpu
        )
        if not frames:
            warnings = warnings or ["no picture to send: not tagged"]
            moderation = _moderation_status(options, "failed", "; ".join(warnings))
            return StageResult(metadata={"moderation": moderation}, warnings=warnings)
        if options.from_s3 and frames[0].as_is:
            frames[0] = await self._pointed(job, frames[0])
        calls: dict[str, dict[str, Any]] = {
            "detect_labels": {
                "MaxLabels": options.max_labels,
                "MinConfidence": options.min_confidence,
            }
        }
        if options.moderation:
            calls["detect_moderation_labels"] = {"MinConfidence": options.moderation_min_confidence}
        found: dict[str, dict[str, dict[str, Any]]] = {}
        refusals: dict[str, str] = {}
        for frame in frames:
            for operation, params in list(calls.items()):
                try:
                    response = await self._detect(operation, frame, params, options)
                except _Refused as refused:
                    job.log.warning("tagging_refused", operation=operation, reason=str(refused))
                    warnings.append(str(refused))
                    refusals[operation] = str(refused)
                    if refused.for_good:
                        del calls[operation]
                        continue
                    break  # the other call would refuse this picture too
                merged = found.setdefault(operation, {})  # answered, even if with nothing
                for entry in _PARSERS[operation](response):
                    _merge(merged, entry, frame.seconds)
        return StageResult(metadata=_metadata(found, options, refusals), warnings=warnings)

    async def _pointed(self, job: Job, frame: Frame) -> Frame:
        """The preview's frame, to be read from S3 where it is (or is now) stored; as it was
        when it cannot be: S3 failing here is publish's to retry, not a reason to skip tags."""
        preview = job.renditions.get("preview")
        if preview is None or not self._from_s3:
            return frame
        stored = preview.stored
        if stored is None and job.stores_ahead is not None:
            try:
                stored = await job.stores_ahead.store_ahead(job, preview)
            except (TransientError, RenditionInvalid) as exc:
                job.log.warning("tagging_preview_not_stored", error=str(exc))
        return frame if stored is None else replace(frame, stored=stored)

    async def _detect(
        self, operation: str, frame: Frame, params: dict[str, Any], options: TaggingOptions
    ) -> dict[str, Any]:
        stored = frame.stored if self._from_s3 else None
        image = (
            {"S3Object": {"Bucket": stored.bucket, "Name": stored.key}}
            if stored is not None
            else {"Bytes": frame.data}
        )
        try:
            response: dict[str, Any] = await getattr(self._rekognition, operation)(
                Image=image, **params
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code == _UNREADABLE_OBJECT and stored is not None:
                # It will not read the next one either: bytes from now on, said once.
                if self._from_s3:
                    self._from_s3 = False
                    self._log.warning(
                        "tagging_reads_no_s3",
                        bucket=stored.bucket,
                        error=str(error.get("Message", "")),
                        detail="sending picture bytes instead; grant Rekognition's caller "
                        "s3:GetObject on the renditions bucket (same region), or set the tagging "
                        "option from_s3 to false",
                    )
                return await self._detect(operation, replace(frame, stored=None), params, options)
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            detail = f"{_API_NAMES[operation]}: {code or status}: {error.get('Message', '')}"
            if code in _THROTTLED or status >= 500:
                raise TransientError(detail, retry_after=_retry_after(exc, options)) from exc
            if code in _BAD_PICTURE or code == "InvalidParameterException":
                raise _Refused(f"{detail} ({_where(frame)})", for_good=False) from exc
            if code in _NO_ACCESS or status == 403:
                raise _Refused(detail, for_good=True) from exc
            raise
        except BotoCoreError as exc:
            raise TransientError(f"{_API_NAMES[operation]}: {exc}") from exc
        return response


def _frames(job: Job, options: TaggingOptions) -> tuple[list[Frame], list[str]]:
    """The pictures to send (in a worker thread: decoding and encoding are CPU work)."""
    preview = job.renditions.get("preview")
    frames: list[Frame] = []
    warnings: list[str] = []
    if preview is not None:  # a photo's preview, or a video's poster
        try:
            frames.append(picture_frame(preview.path))
        except UnusablePicture as unusable:
            warnings.append(f"preview not sent: {unusable}")
    if job.kind is MediaKind.VIDEO:
        job.check_cancelled()
        found, more = keyframes(
            job.original,
            str(job.metadata.get("format")),
            count=options.video_keyframes,
            rotation=int(job.metadata.get("rotation") or 0),
            check_cancelled=job.check_cancelled,
        )
        frames += found
        warnings += more
    elif preview is None:
        warnings.append("no preview rendition: the photo was not tagged")
    return frames, warnings


def _labels(response: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": label["Name"],
            "confidence": round(float(label.get("Confidence", 0.0)), 2),
            "parents": [p["Name"] for p in label.get("Parents", []) if p.get("Name")],
            "categories": [c["Name"] for c in label.get("Categories", []) if c.get("Name")],
        }
        for label in response.get("Labels", [])
        if label.get("Name")
    ]


def _moderation(response: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": label["Name"],
            "confidence": round(float(label.get("Confidence", 0.0)), 2),
            "parent": label.get("ParentName") or None,  # "" at the top of the taxonomy
        }
        for label in response.get("ModerationLabels", [])
        if label.get("Name")
    ]


_PARSERS = {"detect_labels": _labels, "detect_moderation_labels": _moderation}
_API_NAMES = {
    "detect_labels": "DetectLabels",
    "detect_moderation_labels": "DetectModerationLabels",
}


def _merge(found: dict[str, dict[str, Any]], entry: dict[str, Any], seconds: float | None) -> None:
    """One entry per name: the highest confidence, every parent or category, each time seen."""
    known = found.get(entry["name"])
    if known is None:
        known = found[entry["name"]] = {**entry, "times": []}
    else:
        known["confidence"] = max(known["confidence"], entry["confidence"])
        for field, value in entry.items():
            if isinstance(value, list):
                known[field] += [item for item in value if item not in known[field]]
    if seconds is not None and seconds not in known["times"]:
        known["times"].append(seconds)


def _ranked(found: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Most confident first; ``times`` sorted, and left out for a photo."""
    ranked = []
    for entry in sorted(found.values(), key=lambda e: (-e["confidence"], e["name"])):
        times = sorted(entry.pop("times"))
        ranked.append({**entry, "times": times} if times else entry)
    return ranked


def _metadata(
    found: dict[str, dict[str, dict[str, Any]]],
    options: TaggingOptions,
    refusals: dict[str, str],
) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if "detect_labels" in found:
        metadata["tags"] = _ranked(found["detect_labels"])[: options.max_labels]
    if "detect_moderation_labels" in found:
        labels = _ranked(found["detect_moderation_labels"])
        needs_review = any(entry["confidence"] >= options.review_threshold for entry in labels)
        metadata["moderation"] = {"status": "done", "labels": labels, "needs_review": needs_review}
        # Also on its own, as media.processed has always carried it.
        metadata["needs_review"] = needs_review
    else:
        # Refused for good, or every picture refused (the labels call refuses it first).
        reason = refusals.get("detect_moderation_labels") or refusals.get("detect_labels", "")
        metadata["moderation"] = _moderation_status(options, "failed", reason)
    return metadata


def _moderation_status(options: TaggingOptions, outcome: str, reason: str) -> dict[str, Any]:
    """Moderation that did not run: ``off`` when turned off, else ``outcome`` with the reason."""
    if not options.moderation:
        return {"status": "off"}
    return {"status": outcome, "reason": reason}


def _retry_after(exc: ClientError, options: TaggingOptions) -> float:
    """The service's Retry-After when it sends one, else the configured wait, spread out."""
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    try:
        return max(1.0, float(headers["retry-after"]))
    except (KeyError, TypeError, ValueError):
        return options.throttle_retry_seconds * random.uniform(*_RETRY_JITTER)


def _where(frame: Frame) -> str:
    return "the preview" if frame.seconds is None else f"the frame at {frame.seconds} s"
