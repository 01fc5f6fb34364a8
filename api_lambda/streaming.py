"""Where a player finds an item's HLS ladder, and the playlists the API serves for it.

With ``MEDIAMILL_RENDITIONS_BASE_URL`` set (a CloudFront distribution in front of the
renditions bucket) the master playlist's URL is simply under it, and the stored playlists play
as written: their entries are relative paths. Without it every rendition is a presigned GET,
and a presigned playlist cannot work: a relative entry resolves to an unsigned URL. So the API
serves the playlists itself, ``GET /media/{id}/hls/master.m3u8`` (as stored: its variant entries
resolve to the next route) and ``GET /media/{id}/hls/{variant}/index.m3u8`` (its init and media
segments rewritten to presigned GETs), both for the owner's token like every other route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from api_lambda.errors import ApiError, NotFound
from api_lambda.request import ApiRequest
from api_lambda.responses import LambdaResponse
from mediamill_core.hls import (
    HLS_CONTENT_TYPE,
    MASTER_PLAYLIST,
    VARIANT_PLAYLIST,
    rewrite_playlist,
    safe_relative,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

NO_LADDER = "this media has no HLS ladder"


class LadderPlaylists:
    """The ``hls`` rendition's URL for a media view, and its playlists in presigned mode."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        *,
        base_url: str | None,
        presign: Callable[[str], str],
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._base_url = base_url
        self._presign = presign

    def master_url(self, request: ApiRequest, media_id: str, key: str) -> str:
        if self._base_url is not None:
            return f"{self._base_url}/{key}"
        return f"{api_root(request)}/media/{media_id}/hls/{MASTER_PLAYLIST}"

    def playlist(self, item: Mapping[str, Any], relative: str) -> LambdaResponse:
        """The ladder's playlist at ``relative`` (``master.m3u8`` or ``<variant>/index.m3u8``),
        its segments presigned; NotFound for anything the master does not list."""
        entry = (item.get("renditions") or {}).get("hls")
        if not entry or not entry.get("prefix"):
            raise NotFound(NO_LADDER)
        listed = {str(variant.get("playlist")) for variant in entry.get("variants") or []}
        if relative != MASTER_PLAYLIST and relative not in listed:
            raise NotFound("no such playlist in this media's HLS ladder")
        prefix = str(entry["prefix"])
        text = self._read(f"{prefix}{relative}")
        if relative != MASTER_PLAYLIST:
            folder = relative.rsplit("/", 1)[0]
            text = rewrite_playlist(
                text, lambda uri: self._presign(f"{prefix}{safe_relative(folder, uri)}")
            )
        return {
            "statusCode": 200,
            # Presigned URLs inside expire: no cache may keep the rewritten playlist.
            "headers": {"content-type": HLS_CONTENT_TYPE, "cache-control": "no-store"},
            "body": text,
            "isBase64Encoded": False,
        }

    def _read(self, key: str) -> str:
        try:
            answer = self._s3.get_object(Bucket=self._bucket, Key=key)
        except self._s3.exceptions.NoSuchKey:
            # The item lists it: ours to have kept, so a 500 rather than a 404.
            raise ApiError("a stored playlist of this media's HLS ladder is missing") from None
        return answer["Body"].read().decode()


def variant_playlist(variant: str, name: str) -> str:
    """The relative path a variant playlist route names; NotFound unless it is one."""
    if name != VARIANT_PLAYLIST:
        raise NotFound("no such playlist in this media's HLS ladder")
    return f"{variant}/{name}"


def api_root(request: ApiRequest) -> str:
    """The URL this request reached the API at, up to its routes (scheme, host, stage)."""
    scheme = request.headers.get("x-forwarded-proto", "https").split(",")[0].strip()
    host = request.headers.get("host", "")
    return f"{scheme}://{host}{request.stage_prefix}"
