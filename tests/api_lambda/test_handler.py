"""The Lambda entry point: a cheap import and an app built from the environment on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from mediamill_core.settings import Settings

# Media libraries, async AWS clients and the dev stack: none belongs in the Lambda package.
HEAVY = (
    "pyvips",
    "av",
    "numpy",
    "aioboto3",
    "aiobotocore",
    "aiohttp",
    "moto",
    "PIL",
    "worker",
    "stages",
)

# Runs in a fresh interpreter: this test process has imported everything already.
_SCRIPT = """
import json, sys
heavy = {heavy!r}
import api_lambda.handler as entry
after_import = [name for name in heavy if name in sys.modules]
event = {{
    "version": "2.0",
    "rawPath": "/uploads",
    "requestContext": {{
        "http": {{"method": "POST"}},
        "authorizer": {{"jwt": {{"claims": {{"sub": "carol"}}, "scopes": None}}}},
    }},
    "body": json.dumps({{"filename": "a.png", "content_type": "image/png", "size": 10}}),
    "isBase64Encoded": False,
}}
answers = [entry.handler(event, None) for _ in range(2)]
print(json.dumps({{
    "after_import": after_import,
    "after_calls": [name for name in heavy if name in sys.modules],
    "statuses": [answer["statusCode"] for answer in answers],
    "media_ids": [json.loads(answer["body"])["media_id"] for answer in answers],
    "one_app": entry._media_api.cache_info().currsize == 1,
}}))
"""


def test_handler_imports_nothing_heavy_and_serves_from_the_environment(
    stack_env: dict[str, str], settings: Settings, dynamodb: Any
) -> None:
    env = {**os.environ, **stack_env}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(heavy=HEAVY)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    assert report["after_import"] == []
    assert report["after_calls"] == []
    assert report["statuses"] == [201, 201]
    assert report["one_app"] is True
    for media_id in report["media_ids"]:
        item = dynamodb.get_item(TableName=settings.table, Key={"media_id": {"S": media_id}})
        assert item["Item"]["owner"] == {"S": "carol"}
