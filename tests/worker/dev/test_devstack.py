"""The provisioned stack: what a browser and an abandoned multipart upload need from S3."""

from __future__ import annotations

from typing import Any

from worker.dev.devstack import Stack


def test_originals_bucket_lets_a_browser_upload_and_read_part_etags(stack: Stack, s3: Any) -> None:
    [rule] = s3.get_bucket_cors(Bucket=stack.names.originals_bucket)["CORSRules"]
    assert set(rule["AllowedMethods"]) == {"POST", "PUT"}
    assert rule["ExposeHeaders"] == ["ETag"]
    assert rule["AllowedOrigins"] == ["*"]


def test_abandoned_multipart_uploads_are_aborted_after_a_day(stack: Stack, s3: Any) -> None:
    rules = s3.get_bucket_lifecycle_configuration(Bucket=stack.names.originals_bucket)["Rules"]
    [rule] = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    assert rule["Status"] == "Enabled"
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def test_abandoned_uploads_expire_on_the_tables_ttl(stack: Stack, dynamodb: Any) -> None:
    ttl = dynamodb.describe_time_to_live(TableName=stack.names.table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "upload_expires_at"}
