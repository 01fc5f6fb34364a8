"""Large uploads: an S3 multipart upload with presigned part URLs, checked before completing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from api_lambda.errors import BadRequest, Conflict
from api_lambda.validation import parse

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MIB = 1024**2
MIN_PART_BYTES = 5 * _MIB  # S3: every part but the last is at least 5 MiB
MAX_PART_BYTES = 5 * 1024**3
MAX_PARTS = 10_000
# One presigned URL per part goes back in one answer: aiming at ~1,000 parts keeps it far
# below Lambda's 6 MB response limit, and 5 GiB parts still cover a 5 TiB object.
_TARGET_PARTS = 1_000
# S3's complaints about a part list that the checks below did not catch first.
_PART_LIST_ERRORS = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall"})


@dataclass(frozen=True, slots=True)
class PartPlan:
    size: int
    part_size: int
    part_count: int

    @property
    def last_part_size(self) -> int:
        """What is left of the declared size after the full parts."""
        return self.size - (self.part_count - 1) * self.part_size

    def part_bytes(self, number: int) -> int:
        """The exact size of part ``number`` (1-based): so the parts add up to the declared size."""
        return self.part_size if number < self.part_count else self.last_part_size


def plan_parts(size: int) -> PartPlan:
    """Whole-MiB parts, at least 5 MiB and at most 5 GiB, at most 10,000 of them."""
    wanted = -(-size // _TARGET_PARTS)
    part_size = min(MAX_PART_BYTES, max(MIN_PART_BYTES, -(-wanted // _MIB) * _MIB))
    part_count = max(1, -(-size // part_size))
    if part_count > MAX_PARTS:
        raise ValueError(f"{size} bytes do not fit in {MAX_PARTS} parts of {MAX_PART_BYTES}")
    return PartPlan(size, part_size, part_count)


class CompletedPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    part_number: Annotated[int, Field(ge=1, le=MAX_PARTS)]
    etag: Annotated[str, Field(min_length=1, max_length=128)]


class CompleteRequest(BaseModel):
    """The parts the client uploaded, with the ETag S3 answered for each PUT."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    parts: Annotated[list[CompletedPart], Field(min_length=1, max_length=MAX_PARTS)]


def parse_complete(data: Mapping[str, Any]) -> CompleteRequest:
    return parse(CompleteRequest, data)


class MultipartUploads:
    """S3 multipart uploads into the originals bucket, at keys the server chose."""

    def __init__(self, s3: S3Client, bucket: str, expiry_seconds: int) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._expiry = expiry_seconds

    def start(self, key: str, content_type: str) -> str:
        """A new upload; its id stays with the item, never trusted from a client."""
        answer = self._s3.create_multipart_upload(
            Bucket=self._bucket, Key=key, ContentType=content_type
        )
        return answer["UploadId"]

    def part_urls(self, key: str, upload_id: str, plan: PartPlan) -> list[dict[str, Any]]:
        """A presigned PUT per part, each bound to this key, upload and part number."""
        return [
            {
                "part_number": number,
                "url": self._s3.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": self._bucket,
                        "Key": key,
                        "UploadId": upload_id,
                        "PartNumber": number,
                    },
                    ExpiresIn=self._expiry,
                ),
            }
            for number in range(1, plan.part_count + 1)
        ]

    def complete(
        self, key: str, upload_id: str, plan: PartPlan, parts: Sequence[CompletedPart]
    ) -> None:
        """Check the part list against the plan and what S3 holds, then complete.

        Every part is checked for its exact size, so the object S3 makes has the declared size;
        any mismatch is ``invalid_parts`` before completing, and the upload stays open.
        """
        numbers = [part.part_number for part in parts]
        if numbers != list(range(1, plan.part_count + 1)):
            raise _bad_parts(
                f"list parts 1 to {plan.part_count} in ascending order, each once "
                f"(got {len(numbers)} part(s))"
            )
        uploaded = self._uploaded(key, upload_id)
        for part in parts:
            found = uploaded.get(part.part_number)
            if found is None:
                raise _bad_parts(f"part {part.part_number} was not uploaded")
            etag, size = found
            if etag.strip('"') != part.etag.strip('"'):
                raise _bad_parts(f"part {part.part_number}: etag does not match the uploaded part")
            expected = plan.part_bytes(part.part_number)
            if size != expected:
                raise _bad_parts(_wrong_size(plan, part.part_number, size, expected))
        try:
            self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": part.part_number, "ETag": uploaded[part.part_number][0]}
                        for part in parts
                    ]
                },
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _PART_LIST_ERRORS:
                raise _bad_parts(str(exc.response["Error"].get("Message", code))) from None
            raise

    def abort(self, key: str, upload_id: str) -> None:
        try:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            # Already aborted (by us before, or by the lifecycle rule): nothing left to stop.
            if not _no_such_upload(exc):
                raise

    def _uploaded(self, key: str, upload_id: str) -> dict[int, tuple[str, int]]:
        parts: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            try:
                page = self._s3.list_parts(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumberMarker=marker,
                    MaxParts=1000,
                )
            except ClientError as exc:
                if _no_such_upload(exc):
                    raise Conflict(
                        "the multipart upload no longer exists; start a new upload"
                    ) from None
                raise
            for part in page.get("Parts", []):
                parts[part["PartNumber"]] = (part["ETag"], part["Size"])
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])


def _no_such_upload(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404")


def _wrong_size(plan: PartPlan, number: int, size: int, expected: int) -> str:
    if number < plan.part_count:
        return f"part {number} holds {size} bytes; every part but the last holds {expected}"
    return (
        f"part {number} holds {size} bytes; the last part holds exactly {expected}, the "
        f"declared {plan.size} bytes less {plan.part_count - 1} part(s) of {plan.part_size}"
    )


def _bad_parts(reason: str) -> BadRequest:
    return BadRequest(f"parts: {reason}", code="invalid_parts")
