"""Pairs the two halves of a Live Photo once both are READY (see mediamill_core.live).

Each half, when it is READY (at publish, and again on a duplicate delivery of its upload), takes
its place in the pair's link record with a conditional write that returns the record as written.
DynamoDB applies writes to one item one at a time, so of two halves finishing together exactly
one sees the other already there: that one makes the pair, in one transaction conditioned on
both items being READY for the objects read, and on the record naming both. A GSI would not do:
its reads are eventually consistent and cannot be conditioned, so two finishers could each miss
the other. The pair is made again, unchanged, whenever a finish finds it not quite in place
(a crash between the two writes, a re-uploaded clip with a new ``video`` rendition).
"""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from structlog.typing import FilteringBoundLogger

from mediamill_core.items import MediaStatus, encode, is_conditional_failure, iso, utc_now
from mediamill_core.live import (
    COMPANION_OF,
    LINK_FIELD,
    LIVE_VIDEO_ID,
    MOTION,
    UNLINK,
    UNLINK_NAMES,
    Half,
    half_of,
    link_key,
    other,
)
from stages.contract import TransientError
from worker.table_writes import TableWrites

_NAMES = {
    "#status": "status",
    "#source": "source",
    "#tag": "tag",
    "#r": "renditions",
    "#m": "metadata",
    "#motion": MOTION,
    "#video": "video",
    "#key": "key",
}


class LivePhotos(TableWrites):
    """Registers READY items in their link record and pairs the two halves."""

    @classmethod
    def beside(cls, writes: TableWrites) -> LivePhotos:
        """On the same client and table as another writer of the media table."""
        return cls(writes._ddb, writes._table)

    async def settle(self, item: dict[str, Any], log: FilteringBoundLogger) -> bool:
        """Register a READY item; True when this call made (or remade) the pair."""
        identifier = (item.get("metadata") or {}).get("content_identifier")
        half = half_of(item.get("kind"))
        owner = item.get("owner")
        if half is None or not owner or item.get("status") != "READY":
            return False
        await self._drop_stale_pair(item, half, identifier, log)
        if not identifier:
            return False
        key = link_key(str(owner), str(identifier))
        media_id = item["media_id"]
        try:
            record = await self._update(
                key,
                sets={half: media_id, "link_owner": owner, "identifier": identifier},
                condition="attribute_not_exists(#half) OR #half = :me",
                names={"#half": half},
                values={":me": media_id},
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            # Another item of this owner holds that half already (the same still uploaded
            # twice): the first one keeps the pair.
            log.info("live_photo_half_taken", identifier=identifier, half=half)
            return False
        partner = record.get(other(half))
        if not partner:
            return False  # the first half in: the second pairs them
        photo_id, video_id = (media_id, partner) if half == "photo" else (partner, media_id)
        return await self._pair(key, photo_id, video_id, log)

    async def _drop_stale_pair(
        self, item: dict[str, Any], half: Half, identifier: str | None, log: FilteringBoundLogger
    ) -> None:
        """A half re-uploaded with another identifier (or none) leaves the pair it was in.

        Its own side keeps only the link field (a re-upload cleared the rest); the partner's is
        undone whole, and the old link record forgets this half, conditioned as the API's
        deletion is (api_lambda.live_pairs).
        """
        partner_id = item.get(LINK_FIELD[half])
        if not partner_id:
            return
        partner = await self.get(str(partner_id))
        old = ((partner or {}).get("metadata") or {}).get("content_identifier")
        if partner is not None and old == identifier:
            return  # the same pair: registering below puts it back in place if need be
        media_id = item["media_id"]
        await self._unlink(media_id, half, str(partner_id), whole=False)
        if partner is not None:
            await self._unlink(str(partner_id), other(half), media_id, whole=True)
        if old:
            try:
                await self._update(
                    link_key(str(item["owner"]), str(old)),
                    sets={"updated_at": iso(utc_now())},
                    removes=(half,),
                    condition="#half = :me",
                    names={"#half": half},
                    values={":me": media_id},
                )
            except ClientError as exc:
                if not is_conditional_failure(exc):
                    raise
        log.info("live_photo_unpaired", media_id=media_id, partner=partner_id)

    async def _unlink(self, media_id: str, half: Half, linked: str, *, whole: bool) -> None:
        """Remove the link (``whole``: and what pairing gave the half) while it is ``linked``."""
        expression = UNLINK[half] if whole else "REMOVE #link"
        names = UNLINK_NAMES[half] if whole else {"#link": LINK_FIELD[half]}
        try:
            await self._ddb.update_item(
                TableName=self._table,
                Key=encode({"media_id": media_id}),
                UpdateExpression=expression,
                ConditionExpression="#link = :linked",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=encode({":linked": linked}),
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise

    async def _pair(
        self, key: str, photo_id: str, video_id: str, log: FilteringBoundLogger
    ) -> bool:
        photo, video = await self.get(photo_id), await self.get(video_id)
        if photo is None or video is None or not (_ready(photo) and _ready(video)):
            return False  # one is being re-processed or deleted: its own end settles it
        clip = (video.get("renditions") or {}).get("video")
        if not isinstance(clip, dict) or not clip.get("key"):
            log.warning("live_photo_clip_missing", video_id=video_id)
            return False
        motion = _motion_facts(video, clip)
        linked = (
            photo.get(LIVE_VIDEO_ID) == video_id
            and (photo.get("renditions") or {}).get(MOTION) == clip
            and (photo.get("metadata") or {}).get(MOTION) == motion
            and video.get(COMPANION_OF) == photo_id
        )
        if linked:
            return False  # a duplicate delivery: nothing to do
        now = iso(utc_now())
        try:
            await self._ddb.transact_write_items(
                TransactItems=[
                    self._half_update(
                        photo,
                        "SET #link = :other, #r.#motion = :clip, #m.#motion = :facts, "
                        "updated_at = :now",
                        LIVE_VIDEO_ID,
                        video_id,
                        {":clip": clip, ":facts": motion, ":now": now},
                    ),
                    self._half_update(
                        video,
                        "SET #link = :other, updated_at = :now",
                        COMPANION_OF,
                        photo_id,
                        {":now": now, ":clip_key": clip["key"]},
                        extra=" AND #r.#video.#key = :clip_key",
                    ),
                    {
                        "ConditionCheck": {
                            "TableName": self._table,
                            "Key": encode({"media_id": key}),
                            "ConditionExpression": "photo = :p AND video = :v",
                            "ExpressionAttributeValues": encode({":p": photo_id, ":v": video_id}),
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            # One of them moved on since it was read (re-uploaded, deleted, linked elsewhere):
            # whatever it does next settles the pair again.
            log.info("live_photo_pair_moved_on", photo_id=photo_id, video_id=video_id)
            return False
        log.info("live_photo_paired", photo_id=photo_id, video_id=video_id)
        return True

    def _half_update(
        self,
        item: dict[str, Any],
        expression: str,
        link: str,
        partner: str,
        values: dict[str, Any],
        *,
        extra: str = "",
    ) -> dict[str, Any]:
        """One half's update: only while READY for the object read, linked to none or to it."""
        condition = (
            "#status = :ready AND #source.#tag = :tag"
            " AND (attribute_not_exists(#link) OR #link = :other)" + extra
        )
        # DynamoDB refuses names an expression does not use: only those used are passed.
        used = set(re.findall(r"#\w+", expression + condition))
        names = {name: value for name, value in _NAMES.items() if name in used} | {"#link": link}
        return {
            "Update": {
                "TableName": self._table,
                "Key": encode({"media_id": item["media_id"]}),
                "UpdateExpression": expression,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": encode(
                    {
                        **values,
                        ":ready": MediaStatus.READY.value,
                        ":tag": (item.get("source") or {}).get("tag"),
                        ":other": partner,
                    }
                ),
            }
        }


def _ready(item: dict[str, Any]) -> bool:
    return item.get("status") == MediaStatus.READY.value


def _motion_facts(video: dict[str, Any], clip: dict[str, Any]) -> dict[str, Any]:
    """``metadata.motion`` of the still, shaped as for an Android motion photo."""
    facts = video.get("metadata") or {}
    return {
        "form": "live_photo",
        "video_id": video["media_id"],
        "duration": clip.get("duration", facts.get("duration")),
        "width": clip.get("width"),
        "height": clip.get("height"),
        "video_codec": facts.get("video_codec"),
        "audio_codec": facts.get("audio_codec"),
        "fps": facts.get("fps"),
        "encoding": facts.get("encoding"),
    }


async def pair_live_photo(
    live: LivePhotos, item: dict[str, Any], log: FilteringBoundLogger
) -> None:
    """Pair a READY half of a Live Photo with the other, if it is in. A failure here is ours:
    the job is retried, and its next delivery (a duplicate of a READY item) pairs them."""
    try:
        await live.settle(item, log)
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"could not pair the Live Photo: {exc}") from exc
