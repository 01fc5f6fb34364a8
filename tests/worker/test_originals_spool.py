"""Spooling an original: the body's pieces gathered into few large writes, every byte kept."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import boto3
import pytest

from stages.contract import MediaSource
from worker.dev.emulator import MotoProcess
from worker.originals import Originals, gathered


async def _pieces(*sizes: int) -> AsyncIterator[bytes]:
    for n, size in enumerate(sizes):
        yield bytes([n]) * size


@pytest.mark.anyio
async def test_pieces_are_gathered_into_blocks_of_at_least_the_size() -> None:
    blocks = [block async for block in gathered(_pieces(3, 3, 3, 5, 1, 2), 6)]
    assert [len(block) for block in blocks] == [6, 8, 3]
    assert b"".join(blocks) == b"".join([block async for block in _pieces(3, 3, 3, 5, 1, 2)])
    assert [block async for block in gathered(_pieces(), 6)] == []


@pytest.mark.anyio
async def test_a_large_original_is_spooled_whole_in_few_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto in a process of its own, as AWS is: the body arrives in the socket's pieces.
    with MotoProcess() as aws_endpoint:
        await _spool_a_large_original(aws_endpoint, tmp_path, monkeypatch)


async def _spool_a_large_original(
    aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    bucket, key = f"spool-{uuid.uuid4().hex[:12]}", "originals/big.jpg"
    body = os.urandom(5 * 1024 * 1024 + 17)
    plain = boto3.client(
        "s3",
        endpoint_url=aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    plain.create_bucket(Bucket=bucket)
    etag = plain.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
    writes: list[int] = []
    real_open = anyio.open_file

    async def counting_open(*args: Any, **kwargs: Any) -> Any:
        handle = await real_open(*args, **kwargs)
        write = handle.write

        async def counted(data: bytes) -> int:
            writes.append(len(data))
            return int(await write(data))

        handle.write = counted
        return handle

    monkeypatch.setattr(anyio, "open_file", counting_open)
    session = aioboto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    async with session.client("s3", endpoint_url=aws_endpoint) as s3:
        source = MediaSource("m1", "owner", bucket, key, etag, len(body))
        await Originals(s3).spool(source, tmp_path / "original")
    assert (tmp_path / "original").read_bytes() == body
    # 1 MiB blocks: six writes for 5 MiB and a bit, where the socket's pieces would be twenty.
    assert 1 <= len(writes) <= 6
    assert all(size >= 1024 * 1024 for size in writes[:-1])
