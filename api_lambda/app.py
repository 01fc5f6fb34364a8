"""The API: routes payload 2.0 events to uploads, media and the OpenAPI document."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from api_lambda.clients import dynamodb_client, s3_client, sns_client
from api_lambda.cors import CorsPolicy
from api_lambda.deletion import MediaDeletion
from api_lambda.edits import parse_edit
from api_lambda.errors import ApiError, Conflict, NotFound, Unauthorized
from api_lambda.listing import list_media, parse_list_query
from api_lambda.live_pairs import LivePairs
from api_lambda.media import media_view
from api_lambda.multipart import MultipartUploads, PartPlan, parse_complete, plan_parts
from api_lambda.openapi import openapi_document
from api_lambda.pending import OpenUploads, PendingLimits, check_room, open_after, upload_expires_at
from api_lambda.request import ApiRequest
from api_lambda.responses import LambdaResponse, empty_response, error_response, json_response
from api_lambda.routing import Route, Router
from api_lambda.streaming import LadderPlaylists, variant_playlist
from api_lambda.table import MediaTable
from api_lambda.uploads import UploadLimits, parse_upload
from mediamill_core.hls import MASTER_PLAYLIST
from mediamill_core.items import MediaStatus, iso, utc_now
from mediamill_core.keys import new_media_id, original_key
from mediamill_core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient

log = logging.getLogger(__name__)
Parameters = Mapping[str, str]


class MediaApi:
    """The HTTP API as one callable with the Lambda handler's signature."""

    def __init__(
        self, settings: Settings, *, s3: S3Client, dynamodb: DynamoDBClient, sns: SNSClient
    ) -> None:
        self._settings = settings
        self._s3 = s3
        self._table = MediaTable(dynamodb, settings.table)
        # An upload bigger than the bytes one owner may have pending could never be accepted:
        # a 400 now, not a 429 that no retry would cure.
        self._limits = UploadLimits(
            settings.allowed_content_types,
            min(settings.max_upload_bytes, settings.max_pending_bytes),
        )
        self._pending = PendingLimits(
            max_uploads=settings.max_open_uploads,
            max_bytes=settings.max_pending_bytes,
            longest_urls=timedelta(
                seconds=max(settings.upload_expiry_seconds, settings.multipart_expiry_seconds)
            ),
        )
        self._cors = CorsPolicy(settings.cors_origins)
        self._multipart = MultipartUploads(
            s3, settings.originals_bucket, settings.multipart_expiry_seconds
        )
        self._deletion = MediaDeletion(
            table=self._table,
            s3=s3,
            sns=sns,
            multipart=self._multipart,
            originals_bucket=settings.originals_bucket,
            renditions_bucket=settings.renditions_bucket,
            media_topic_arn=settings.media_topic_arn,
            live_pairs=LivePairs(dynamodb, settings.table),
        )
        self._ladders = LadderPlaylists(
            s3,
            settings.renditions_bucket,
            base_url=settings.renditions_base_url,
            presign=self._rendition_url,
        )
        self.router = Router(
            [
                Route("POST", "/uploads", self._create_upload),
                Route("POST", "/uploads/{media_id}/complete", self._complete_upload),
                Route("DELETE", "/uploads/{media_id}", self._abort_upload),
                Route("GET", "/media", self._list_media),
                Route("GET", "/media/{media_id}", self._get_media),
                Route("PATCH", "/media/{media_id}", self._edit_media),
                Route("DELETE", "/media/{media_id}", self._delete_media),
                Route("GET", "/media/{media_id}/hls/{playlist}", self._master_playlist),
                Route("GET", "/media/{media_id}/hls/{variant}/{playlist}", self._variant_playlist),
                Route("GET", "/openapi.json", self._openapi, public=True),
            ]
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaApi:
        return cls(
            settings,
            s3=s3_client(settings),
            dynamodb=dynamodb_client(settings),
            sns=sns_client(settings),
        )

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> LambdaResponse:
        """Always a payload 2.0 answer with a JSON error body, whatever the event holds."""
        request: ApiRequest | None = None
        try:
            request = ApiRequest.from_event(event)
            if request.method == "OPTIONS":
                # A CORS preflight carries no credentials: answered before any authentication.
                return self._cors.preflight(request.headers)
            route, parameters = self._resolve(request)
            response = route.handler(request, request.caller or "", parameters)
        except ApiError as error:
            if error.code == "invalid_event":
                # Not from API Gateway as configured: a direct invoke or a wrong integration.
                log.warning("refused an event: %s", error.message)
            response = error_response(error)
        except Exception:
            if request is None:
                log.exception("unhandled error reading an event")
            else:
                log.exception(
                    "unhandled error in %s %s (request %s)",
                    request.method,
                    request.path,
                    request.request_id,
                )
            response = error_response(ApiError("internal error"))
        if request is not None:
            response["headers"].update(self._cors.headers(request.headers))
        return response

    def _resolve(self, request: ApiRequest) -> tuple[Route, dict[str, str]]:
        if request.caller_refused is None:
            unauthorized = Unauthorized(
                "a verified caller is required", headers={"www-authenticate": "Bearer"}
            )
        else:
            # The authorizer verified the token, so this is the identity provider's doing.
            log.warning(
                "refused the sub claim of request %s: it %s",
                request.request_id,
                request.caller_refused,
            )
            unauthorized = Unauthorized(
                f"the token's sub claim {request.caller_refused}; it cannot name a user",
                headers={"www-authenticate": 'Bearer error="invalid_token"'},
            )
        try:
            route, parameters = self.router.resolve(request.method, request.path)
        except ApiError:
            # Without a caller, say nothing about which routes exist beyond the public ones.
            if request.caller is None:
                raise unauthorized from None
            raise
        if request.caller is None and not route.public:
            raise unauthorized
        return route, parameters

    # --- uploads --------------------------------------------------------------------------

    def _create_upload(
        self, request: ApiRequest, caller: str, parameters: Parameters
    ) -> LambdaResponse:
        upload = parse_upload(request.json_object(), self._limits)
        now = utc_now()
        # Soft limits: concurrent requests, or an index a moment behind, may pass them by a few.
        open_uploads = self._table.open_uploads(
            caller, created_since=now - self._pending.longest_urls, open_after=open_after(now)
        )
        check_room(self._pending, OpenUploads.of(open_uploads), upload.size, now)
        media_id = new_media_id()
        key = original_key(media_id)
        bucket = self._settings.originals_bucket
        item: dict[str, Any] = {
            "media_id": media_id,
            "owner": caller,
            "status": MediaStatus.PENDING_UPLOAD.value,
            "created_at": iso(now),
            "updated_at": iso(now),
            "filename": upload.filename,
            "content_type": upload.content_type,
            "size": upload.size,
            "source": {"bucket": bucket, "key": key},
        }
        if upload.album is not None:
            item["album"] = upload.album
        body: dict[str, Any] = {"media_id": media_id}
        if upload.size > self._settings.multipart_threshold_bytes:
            plan = plan_parts(upload.size)
            upload_id = self._multipart.start(key, upload.content_type)
            expiry = self._settings.multipart_expiry_seconds
            item["multipart"] = {
                "upload_id": upload_id,
                "part_size": plan.part_size,
                "part_count": plan.part_count,
            }
            body["multipart"] = {
                "part_size": plan.part_size,
                "part_count": plan.part_count,
                "parts": self._multipart.part_urls(key, upload_id, plan),
            }
        else:
            expiry = self._settings.upload_expiry_seconds
            # The server chooses the key; the policy pins it, the declared type and exact size.
            post = self._s3.generate_presigned_post(
                Bucket=bucket,
                Key=key,
                Fields={"Content-Type": upload.content_type},
                Conditions=[
                    {"Content-Type": upload.content_type},
                    ["content-length-range", upload.size, upload.size],
                ],
                ExpiresIn=expiry,
            )
            body["upload"] = {"url": post["url"], "fields": post["fields"]}
        urls_expire = now + timedelta(seconds=expiry)
        body["expires_at"] = iso(urls_expire)
        item["upload_expires_at"] = upload_expires_at(urls_expire)
        self._table.create(item)
        return json_response(201, body)

    def _complete_upload(
        self, request: ApiRequest, caller: str, parameters: Parameters
    ) -> LambdaResponse:
        media_id = parameters["media_id"]
        item = self._table.owned(media_id, caller)
        upload_id, plan = _multipart_of(item)
        parts = parse_complete(request.json_object()).parts
        self._multipart.complete(original_key(media_id), upload_id, plan, parts)
        done = self._table.end_multipart(media_id, upload_id, delete=False)
        return json_response(200, media_view(done, self._urls(request)))

    def _abort_upload(
        self, request: ApiRequest, caller: str, parameters: Parameters
    ) -> LambdaResponse:
        media_id = parameters["media_id"]
        upload_id, _ = _multipart_of(self._table.owned(media_id, caller))
        self._multipart.abort(original_key(media_id), upload_id)
        self._table.end_multipart(media_id, upload_id, delete=True)
        return empty_response(204)

    # --- media ----------------------------------------------------------------------------

    def _list_media(
        self, request: ApiRequest, caller: str, parameters: Parameters
    ) -> LambdaResponse:
        page = list_media(self._table, caller, parse_list_query(request.query))
        urls = self._urls(request)  # one per request, not per item
        items = [media_view(item, urls) for item in page.items]
        return json_response(200, {"items": items, "next_cursor": page.cursor})

    def _get_media(
        self, request: ApiRequest, caller: str, parameters: Parameters
    ) -> LambdaResponse:
        item = self._table.owned(parameters["media_id"], caller)
        return json_response(200, media_view(item, self._urls(request)))

    def _edit_media(
        self, request: ApiRequest, caller: str, parameters: Parameters
    ) -> LambdaResponse:
        edit = parse_edit(request.json_object())
        item = self._table.edit(parameters["media_id"], caller, edit.changes())
        return json_response(200, media_view(item, self._urls(request)))

    def _delete_media(
        self, request: ApiRequest, caller: str, parameters: Parameters
    ) -> LambdaResponse:
        self._deletion.delete(parameters["media_id"], caller)
        return empty_response(204)

    def _master_playlist(
        self, request: ApiRequest, caller: str, parameters: Parameters
    ) -> LambdaResponse:
        item = self._table.owned(parameters["media_id"], caller)
        if parameters["playlist"] != MASTER_PLAYLIST:
            raise NotFound("no such playlist in this media's HLS ladder")
        return self._ladders.playlist(item, MASTER_PLAYLIST)

    def _variant_playlist(
        self, request: ApiRequest, caller: str, parameters: Parameters
    ) -> LambdaResponse:
        item = self._table.owned(parameters["media_id"], caller)
        relative = variant_playlist(parameters["variant"], parameters["playlist"])
        return self._ladders.playlist(item, relative)

    def _openapi(self, request: ApiRequest, caller: str, parameters: Parameters) -> LambdaResponse:
        return json_response(200, openapi_document())

    def _urls(self, request: ApiRequest) -> Callable[[str], str]:
        """A rendition's URL from its key, for a view answering ``request``."""

        def url(key: str) -> str:
            if key.endswith(f"/{MASTER_PLAYLIST}"):  # an HLS ladder's (mediamill_core.hls)
                return self._ladders.master_url(request, key.split("/", 1)[0], key)
            return self._rendition_url(key)

        return url

    def _rendition_url(self, key: str) -> str:
        return self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._settings.renditions_bucket, "Key": key},
            ExpiresIn=self._settings.url_expiry_seconds,
        )


def _multipart_of(item: Mapping[str, Any]) -> tuple[str, PartPlan]:
    """The item's multipart upload in progress, or Conflict."""
    multipart = item.get("multipart")
    if not multipart:
        raise Conflict("no multipart upload is in progress for this media")
    plan = PartPlan(int(item["size"]), int(multipart["part_size"]), int(multipart["part_count"]))
    return str(multipart["upload_id"]), plan
