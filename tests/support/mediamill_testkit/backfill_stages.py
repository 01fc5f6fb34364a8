"""A plugin's stages as a reprocess meets them: new after items were processed, then upgraded.

``previewdigest`` reads only the stored ``preview`` (and says what it was handed); ``mono`` makes
a rendition of its own from it; ``meddler`` changes the item under the job, as a re-upload or a
delete would while it runs; ``liar`` makes a file that is not what it claims; ``strict`` is a
required stage that refuses every upload; ``bulky`` says it writes three spool floors beyond
the job's share and records what the worker's spool held while it ran.
"""

from __future__ import annotations

import hashlib

import boto3
import pyvips
from botocore.config import Config

from stages import BadMediaError, Job, MediaKind, Rendition, Stage, StageOptions, StageResult

IMAGES = frozenset({MediaKind.IMAGE})


class PreviewDigestStage(Stage):
    """The preview's SHA-256, and what the job handed the stage."""

    name = "previewdigest"
    version = "1.0.0"
    kinds = IMAGES
    requires = ("probe", "thumbnail")
    reads_renditions = frozenset({"preview"})
    optional = True
    cpu_bound = True

    def run_sync(self, job: Job) -> StageResult:
        preview = job.renditions["preview"]
        return StageResult(
            metadata={
                "preview_sha256": hashlib.sha256(preview.path.read_bytes()).hexdigest(),
                "digest_version": self.version,
                "digest_saw": {
                    "renditions": sorted(job.renditions),
                    "kind": job.kind.value if job.kind else None,
                    "width": job.metadata.get("width"),
                    "original_bytes": job.original.stat().st_size,
                },
            }
        )


class PreviewDigestV2(PreviewDigestStage):
    version = "2.0.0"


class MonoStage(Stage):
    """A grey copy of the preview, as rendition ``mono``."""

    name = "mono"
    version = "1.0.0"
    kinds = IMAGES
    requires = ("probe", "thumbnail")
    reads_renditions = frozenset({"preview"})
    optional = True
    cpu_bound = True

    def run_sync(self, job: Job) -> StageResult:
        picture = pyvips.Image.new_from_file(str(job.renditions["preview"].path))
        grey = picture.colourspace("b-w")
        target = job.workdir / "mono.jpg"
        grey.jpegsave(str(target), Q=70 if self.version == "1.0.0" else 40)
        return StageResult(
            renditions=[Rendition("mono", target, "image/jpeg", grey.width, grey.height)],
            metadata={"mono_version": self.version},
        )


class MonoV2(MonoStage):
    version = "2.0.0"


class MeddlerOptions(StageOptions):
    endpoint_url: str = ""
    table: str = ""
    action: str = "reupload"  # or "delete"


class MeddlerStage(MonoStage):
    """Makes ``mono``, and meanwhile the item moves on: a newer object's claim, or a DELETE."""

    name = "meddler"
    Options = MeddlerOptions

    def run_sync(self, job: Job) -> StageResult:
        result = super().run_sync(job)
        options = self.options
        assert isinstance(options, MeddlerOptions)
        ddb = boto3.client(
            "dynamodb",
            endpoint_url=options.endpoint_url,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )
        key = {"media_id": {"S": job.media_id}}
        if options.action == "delete":  # what DELETE /media/{id} writes first
            ddb.update_item(
                TableName=options.table,
                Key=key,
                UpdateExpression="SET #s = :deleting",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":deleting": {"S": "DELETING"}},
            )
        else:  # what a newer object's claim writes
            ddb.update_item(
                TableName=options.table,
                Key=key,
                UpdateExpression="SET #s = :processing, #src.#tag = :tag, #rev = #rev + :one",
                ExpressionAttributeNames={
                    "#s": "status",
                    "#src": "source",
                    "#tag": "tag",
                    "#rev": "rev",
                },
                ExpressionAttributeValues={
                    ":processing": {"S": "PROCESSING"},
                    ":tag": {"S": "0123456789ab"},
                    ":one": {"N": "1"},
                },
            )
        return result


class LiarStage(Stage):
    """A rendition that is not what it claims: a JPEG that is not one."""

    name = "liar"
    version = "1.0.0"
    requires = ("probe",)
    reads_renditions = frozenset()
    optional = True

    async def run(self, job: Job) -> StageResult:
        target = job.workdir / "liar.jpg"
        target.write_bytes(b"\xff\xd8\xff not a JPEG at all")
        return StageResult(renditions=[Rendition("liar", target, "image/jpeg", 10, 10)])


class StrictStage(Stage):
    """A required stage that refuses every upload it is given."""

    name = "strict"
    version = "1.0.0"
    requires = ("probe",)
    reads_renditions = frozenset()

    async def run(self, job: Job) -> StageResult:
        raise BadMediaError("refused by the strict stage")


class BulkyStage(Stage):
    """Asks for three floors of scratch space; its metadata is what the spool held meanwhile."""

    name = "bulky"
    version = "1.0.0"
    requires = ("probe",)
    optional = True
    reads_renditions = frozenset()

    def scratch_bytes(self, job: Job) -> int:
        from worker.spool import NEED_FLOOR

        return 3 * NEED_FLOOR

    async def run(self, job: Job) -> StageResult:
        from worker import metrics

        return StageResult(metadata={"bulky_spool_held": metrics.SPOOL_RESERVED._value.get()})


ENTRY_POINTS = {
    "bulky": BulkyStage,
    "previewdigest": PreviewDigestStage,
    "mono": MonoStage,
    "meddler": MeddlerStage,
    "strict": StrictStage,
    "liar": LiarStage,
}
UPGRADES = {"previewdigest": PreviewDigestV2, "mono": MonoV2}
