"""The API: routes payload 2.0 events to ``POST /uploads`` and ``GET /media/{id}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from api_lambda.clients import dynamodb_client, s3_client
from api_lambda.errors import ApiError, NotFound, Unauthorized
from api_lambda.media import media_view
from api_lambda.request import ApiRequest
from api_lambda.responses import LambdaResponse, error_response, json_response
from api_lambda.routing import Route, Router
from api_lambda.uploads import UploadLimits, parse_upload
from worker.items import MediaStatus, decode, encode, iso, utc_now
from worker.keys import is_media_id, new_media_id, original_key
from worker.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# One body for "not yours", "no such id" and "not an id": a caller learns nothing about others.
_NO_SUCH_MEDIA = "no such media"


class MediaApi:
    """The HTTP API as one callable with the Lambda handler's signature."""

    def __init__(self, settings: Settings, *, s3: S3Client, dynamodb: DynamoDBClient) -> None:
        self._settings = settings
        self._s3 = s3
        self._dynamodb = dynamodb
        self._limits = UploadLimits(settings.allowed_content_types, settings.max_upload_bytes)
        self._router = Router(
            [
                Route("POST", "/uploads", self._create_upload),
                Route("GET", "/media/{media_id}", self._get_media),
            ]
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaApi:
        return cls(settings, s3=s3_client(settings), dynamodb=dynamodb_client(settings))

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> LambdaResponse:
        request = ApiRequest.from_event(event)
        try:
            if request.caller is None:
                raise Unauthorized(
                    "a verified caller is required", headers={"www-authenticate": "Bearer"}
                )
            handler, parameters = self._router.resolve(request.method, request.path)
            return handler(request, request.caller, parameters)
        except ApiError as error:
            return error_response(error)
        except Exception:
            log.exception(
                "unhandled error in %s %s (request %s)",
                request.method,
                request.path,
                request.request_id,
            )
            return error_response(ApiError("internal error"))

    def _create_upload(
        self, request: ApiRequest, caller: str, parameters: Mapping[str, str]
    ) -> LambdaResponse:
        upload = parse_upload(request.json_object(), self._limits)
        media_id = new_media_id()
        key = original_key(media_id)
        bucket = self._settings.originals_bucket
        now = utc_now()
        expires_at = iso(now + timedelta(seconds=self._settings.upload_expiry_seconds))
        # The server chooses the key; the policy pins it, the declared type and the exact size.
        post = self._s3.generate_presigned_post(
            Bucket=bucket,
            Key=key,
            Fields={"Content-Type": upload.content_type},
            Conditions=[
                {"Content-Type": upload.content_type},
                ["content-length-range", upload.size, upload.size],
            ],
            ExpiresIn=self._settings.upload_expiry_seconds,
        )
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
            "upload_expires_at": expires_at,
        }
        if upload.album is not None:
            item["album"] = upload.album
        self._dynamodb.put_item(
            TableName=self._settings.table,
            Item=encode(item),
            ConditionExpression="attribute_not_exists(media_id)",
        )
        body = {
            "media_id": media_id,
            "upload": {"url": post["url"], "fields": post["fields"]},
            "expires_at": expires_at,
        }
        return json_response(201, body)

    def _get_media(
        self, request: ApiRequest, caller: str, parameters: Mapping[str, str]
    ) -> LambdaResponse:
        media_id = parameters["media_id"]
        if not is_media_id(media_id):
            raise NotFound(_NO_SUCH_MEDIA)
        answer = self._dynamodb.get_item(
            TableName=self._settings.table,
            Key={"media_id": {"S": media_id}},
            ConsistentRead=True,
        )
        stored = answer.get("Item")
        if stored is None:
            raise NotFound(_NO_SUCH_MEDIA)
        item = decode(stored)
        if item.get("owner") != caller:
            raise NotFound(_NO_SUCH_MEDIA)
        return json_response(200, media_view(item, self._rendition_url))

    def _rendition_url(self, key: str) -> str:
        return self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._settings.renditions_bucket, "Key": key},
            ExpiresIn=self._settings.url_expiry_seconds,
        )
