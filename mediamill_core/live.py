"""Live Photos in the media table: the fields that pair a still with its clip, and the link record.

A Live Photo is two uploads, two items: the still (``kind`` image) and its MOV (``kind`` video),
tied by the content identifier both carry (``metadata.content_identifier``). Once paired, the
still holds ``live_video_id`` and a ``motion`` rendition that is the clip's ``video`` rendition
(the same S3 object), and the clip holds ``companion_of``: listings hide it by default.

One small record per (owner, identifier), keyed in the reserved ``#`` space, says which item
holds each half: both halves register in it with a conditional write, so the second to register
(and only it, however close the two finish) sees both and makes the pair.
"""

from __future__ import annotations

from typing import Literal

from mediamill_core.items import RESERVED_KEY_PREFIX

LIVE_VIDEO_ID = "live_video_id"  # on the still: the clip's media id
COMPANION_OF = "companion_of"  # on the clip: the still's media id
MOTION = "motion"  # the still's rendition name, as for an Android motion photo
Half = Literal["photo", "video"]
HALVES: tuple[Half, Half] = ("photo", "video")
LINK_FIELD: dict[Half, str] = {"photo": LIVE_VIDEO_ID, "video": COMPANION_OF}
# What undoes a half's side of a pair (``#link``: its LINK_FIELD, ``#motion``: MOTION), to be
# conditioned on ``#link`` naming the partner: the still loses the clip's rendition as well.
UNLINK: dict[Half, str] = {
    "photo": "REMOVE #link, renditions.#motion, metadata.#motion",
    "video": "REMOVE #link",
}
# The attribute names each UNLINK expression uses.
UNLINK_NAMES: dict[Half, dict[str, str]] = {
    "photo": {"#link": LINK_FIELD["photo"], "#motion": MOTION},
    "video": {"#link": LINK_FIELD["video"]},
}


def link_key(owner: str, identifier: str) -> str:
    """The link record's key; never a media id (those are 32 hex digits), and passed over by
    whatever scans the table, as the other reserved keys are."""
    return f"{RESERVED_KEY_PREFIX}live:{owner}:{identifier}"


def half_of(kind: str | None) -> Half | None:
    return "photo" if kind == "image" else "video" if kind == "video" else None


def other(half: Half) -> Half:
    return "video" if half == "photo" else "photo"
