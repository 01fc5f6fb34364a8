"""Buckets: TLS only, no public access, renditions readable through CloudFront alone."""

from __future__ import annotations

from typing import Any

DATA_PLANE = (
    "OriginalsBucket",
    "RenditionsBucket",
    "UploadsTopic",
    "UploadsTopicPolicy",
    "MediaDeadLetterQueue",
    "MediaQueue",
    "MediaQueuePolicy",
    "UploadsSubscription",
    "MediaEventsTopic",
    "MediaTable",
)


def _policy_of(template: Any, bucket: str) -> list[dict[str, Any]]:
    (policy,) = [
        resource["Properties"]["PolicyDocument"]["Statement"]
        for resource in template.of_type("AWS::S3::BucketPolicy").values()
        if resource["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    return policy


def test_the_dev_stack_finds_the_data_plane_it_provisions(template: Any) -> None:
    # worker/dev provisions these by logical id; renaming one breaks the dev stack.
    assert set(DATA_PLANE) <= set(template.resources)


def test_every_bucket_is_private_and_refuses_plain_http(template: Any) -> None:
    for name, bucket in template.of_type("AWS::S3::Bucket").items():
        block = bucket["Properties"]["PublicAccessBlockConfiguration"]
        assert all(
            block[key] is True
            for key in (
                "BlockPublicAcls",
                "IgnorePublicAcls",
                "BlockPublicPolicy",
                "RestrictPublicBuckets",
            )
        ), name
        deny = [s for s in _policy_of(template, name) if s["Effect"] == "Deny"]
        assert [s["Condition"] for s in deny] == [{"Bool": {"aws:SecureTransport": "false"}}], name
        assert deny[0]["Principal"] == "*"
        assert deny[0]["Action"] == "s3:*"
        assert bucket["Properties"]["BucketEncryption"]


def test_renditions_are_read_through_cloudfront_only(template: Any) -> None:
    (allow,) = [s for s in _policy_of(template, "RenditionsBucket") if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] == "s3:GetObject"
    source = allow["Condition"]["StringEquals"]["AWS:SourceArn"]
    assert template.resolve(source) == (
        "arn:aws:cloudfront::123456789012:distribution/<RenditionsDistribution>"
    )
    config = template.properties("RenditionsDistribution")["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["DomainName"] == {"Fn::GetAtt": ["RenditionsBucket", "RegionalDomainName"]}
    assert origin["OriginAccessControlId"] == {
        "Fn::GetAtt": ["RenditionsOriginAccessControl", "Id"]
    }
    access = template.properties("RenditionsOriginAccessControl")["OriginAccessControlConfig"]
    assert access["SigningBehavior"] == "always"
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "https-only"
    assert behavior["AllowedMethods"] == ["GET", "HEAD"]
    assert config["HttpVersion"] == "http2and3"
    assert config["Logging"]["Bucket"] == {"Fn::GetAtt": ["AccessLogsBucket", "DomainName"]}


def test_no_bucket_policy_grants_the_worker_anything(template: Any) -> None:
    """moto refuses writes under policies with conditions: the worker's writes rest on IAM."""
    for resource in template.of_type("AWS::S3::BucketPolicy").values():
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                assert "Service" in statement["Principal"], statement


def test_both_data_buckets_log_their_access(template: Any) -> None:
    for name in ("OriginalsBucket", "RenditionsBucket"):
        logging = template.properties(name)["LoggingConfiguration"]
        assert logging["DestinationBucketName"] == {"Ref": "AccessLogsBucket"}
        assert logging["LogFilePrefix"].startswith("s3/")
