"""The ``checksum`` stage: the SHA-256 digest and byte size of the original upload."""

from __future__ import annotations

import hashlib
from typing import ClassVar

from pydantic import Field

from stages import ALL_KINDS, Job, Stage, StageOptions, StageResult

__all__ = ["ChecksumOptions", "ChecksumStage"]


class ChecksumOptions(StageOptions):
    """How the original is read."""

    chunk_bytes: int = Field(default=1024 * 1024, ge=4096)


class ChecksumStage(Stage):
    """Streams the original through SHA-256; a failure only adds a warning to the upload."""

    name = "checksum"
    version = "1.0.0"
    kinds = ALL_KINDS
    requires = ()
    reads_renditions: ClassVar[frozenset[str] | None] = frozenset()  # the original only
    optional = True
    cpu_bound = True
    timeout = 300.0
    Options: ClassVar[type[StageOptions]] = ChecksumOptions

    def run_sync(self, job: Job) -> StageResult:
        options = job.options if isinstance(job.options, ChecksumOptions) else ChecksumOptions()
        digest = hashlib.sha256()
        size = 0
        with job.original.open("rb") as original:
            # Chunked so a multi-gigabyte video never sits in memory, with a cancellation
            # check between chunks so a timeout or shutdown stops the thread promptly.
            while chunk := original.read(options.chunk_bytes):
                job.check_cancelled()
                digest.update(chunk)
                size += len(chunk)
        return StageResult(metadata={"sha256": digest.hexdigest(), "bytes": size})
