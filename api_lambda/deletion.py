"""``DELETE /media/{id}``: the original, every rendition, the event, then the item.

The item goes last and is marked DELETING first: a failure half way leaves it for a retry of
the same DELETE, and no job still running for it can finish it meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from api_lambda.live_pairs import LivePairs
from api_lambda.multipart import MultipartUploads
from api_lambda.table import MediaTable
from mediamill_core.keys import original_key
from mediamill_core.payloads import deleted_event, event_attributes

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient

_DELETE_BATCH = 1000  # DeleteObjects' limit


class MediaDeletion:
    def __init__(
        self,
        *,
        table: MediaTable,
        s3: S3Client,
        sns: SNSClient,
        multipart: MultipartUploads,
        originals_bucket: str,
        renditions_bucket: str,
        media_topic_arn: str | None,
        live_pairs: LivePairs | None = None,
    ) -> None:
        self._table = table
        self._s3 = s3
        self._sns = sns
        self._multipart = multipart
        self._originals = originals_bucket
        self._renditions = renditions_bucket
        self._topic = media_topic_arn
        self._live_pairs = live_pairs

    def delete(self, media_id: str, caller: str, *, announce: bool = True) -> None:
        """Remove the caller's media everywhere; NotFound when it is not (or no longer) theirs."""
        item = self._table.begin_delete(media_id, caller)
        if self._live_pairs is not None:
            self._live_pairs.unlink(item)
        key = original_key(media_id)
        upload_id = (item.get("multipart") or {}).get("upload_id")
        if upload_id:
            self._multipart.abort(key, upload_id)
        self._delete_objects(self._originals, [key])
        # Only its own: a Live Photo's ``motion`` rendition is its clip's object, not the still's.
        listed = [
            rendition["key"]
            for rendition in (item.get("renditions") or {}).values()
            if str(rendition.get("key", "")).startswith(f"{media_id}/")
        ]
        # Also whatever sits under the id's prefix: renditions of a job that lost the race.
        self._delete_objects(self._renditions, [*listed, *self._keys_under(f"{media_id}/")])
        if announce and self._topic:
            event = deleted_event(item)
            self._sns.publish(
                TopicArn=self._topic,
                Message=json.dumps(event),
                MessageAttributes=event_attributes(event),
            )
        self._table.delete(media_id)

    def _keys_under(self, prefix: str) -> Iterable[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._renditions, Prefix=prefix
        )
        for page in pages:
            for entry in page.get("Contents", []):
                yield entry["Key"]

    def _delete_objects(self, bucket: str, keys: list[str]) -> None:
        unique = sorted(set(keys))
        for start in range(0, len(unique), _DELETE_BATCH):
            batch = unique[start : start + _DELETE_BATCH]
            answer: Any = self._s3.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            if answer.get("Errors"):
                failed = [error.get("Key", "?") for error in answer["Errors"]]
                raise RuntimeError(f"objects not deleted from {bucket}: {failed}")
