"""`mediamill demo`: upload files through the API like a real client and report what came out."""

from __future__ import annotations

import contextlib
import json
import mimetypes
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from worker.dev.demo_renditions import download_renditions, pair_fields, settle_live_photos
from worker.dev.embedded import embedded_stack
from worker.dev.emulator import EmulatorMode
from worker.dev.ladder_download import download_ladder
from worker.dev.throughput import measure

TERMINAL = ("READY", "FAILED")
DEMO_USER = "demo-user"
# mimetypes misses several formats phones produce.
_EXTRA_TYPES = {
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".avif": "image/avif",
    ".webp": "image/webp",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".m4a": "audio/mp4",
}


@dataclass(slots=True)
class DemoResult:
    file: Path
    media_id: str | None = None
    upload: str | None = None  # "post" (one presigned POST) or "multipart"
    status: str = "PENDING"
    error: str | None = None
    item: dict[str, Any] = field(default_factory=dict)
    renditions: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    folder: str = ""  # under the output folder: the file's name, made unique among the inputs

    def as_json(self) -> dict[str, Any]:
        return {
            "file": str(self.file),
            "media_id": self.media_id,
            "upload": self.upload,
            "status": self.status,
            "error": self.error,
            "kind": self.item.get("kind"),
            "metadata": self.item.get("metadata") or {},
            # The owner's whole view: where it was taken, what went wrong, what each stage said.
            "location": self.item.get("location"),
            "warnings": self.item.get("warnings") or [],
            "renditions": self.renditions,
            **pair_fields(self.item),  # a Live Photo's halves name each other
            "stages": [
                {
                    key: stage.get(key)
                    for key in ("name", "version", "outcome", "seconds", "detail")
                    if key != "detail" or key in stage
                }
                for stage in self.item.get("stages") or []
            ],
        }


def content_type_for(path: Path) -> str:
    suffix = path.suffix.lower()
    return (
        _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )


class DemoClient:
    """Talks to the API over HTTP exactly as an app would: JSON, presigned POST, polling."""

    def __init__(self, http: aiohttp.ClientSession, api_url: str, token: str) -> None:
        self._http = http
        self._api = api_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"}

    async def upload(self, path: Path, sent: Callable[[int], None]) -> tuple[str, str]:
        """(media id, "post" or "multipart"); ``sent`` hears of every byte S3 accepted."""
        size = (await anyio.Path(path).stat()).st_size
        content_type = content_type_for(path)
        request = {"filename": path.name, "content_type": content_type, "size": size}
        body = await self._api_call("POST", "/uploads", request, expect=201)
        media_id = str(body["media_id"])
        if "multipart" in body:
            await self._upload_parts(path, media_id, body["multipart"], sent)
            return media_id, "multipart"
        form = aiohttp.FormData()
        for name, value in body["upload"]["fields"].items():
            form.add_field(name, value)
        data = await anyio.Path(path).read_bytes()
        form.add_field("file", data, filename=path.name, content_type=content_type)
        async with self._http.post(body["upload"]["url"], data=form) as response:
            if response.status not in (200, 201, 204):
                raise DemoError(
                    f"S3 refused the upload ({response.status}): {await response.text()}"
                )
        sent(size)
        return media_id, "post"

    async def _upload_parts(
        self, path: Path, media_id: str, multipart: dict[str, Any], sent: Callable[[int], None]
    ) -> None:
        """PUT each part (one part in memory at a time), then complete; abort on failure."""
        done = []
        try:
            async with await anyio.open_file(path, "rb") as source:
                for part in multipart["parts"]:
                    data = await source.read(multipart["part_size"])
                    async with self._http.put(part["url"], data=data) as response:
                        if response.status != 200:
                            raise DemoError(
                                f"S3 refused part {part['part_number']} ({response.status})"
                            )
                        etag = response.headers["ETag"]
                    done.append({"part_number": part["part_number"], "etag": etag})
                    sent(len(data))
            await self._api_call("POST", f"/uploads/{media_id}/complete", {"parts": done})
        except BaseException:
            # Parts already stored cost money until aborted (the bucket's rule takes a day).
            with anyio.CancelScope(shield=True), contextlib.suppress(aiohttp.ClientError):
                abort = f"{self._api}/uploads/{media_id}"
                async with self._http.delete(abort, headers=self._auth):
                    pass
            raise

    async def _api_call(
        self, method: str, path: str, payload: dict[str, Any], expect: int = 200
    ) -> dict[str, Any]:
        async with self._http.request(
            method, f"{self._api}{path}", json=payload, headers=self._auth
        ) as response:
            body: dict[str, Any] = await response.json(content_type=None)
            if response.status != expect:
                message = (body.get("error") or {}).get("message", response.reason)
                raise DemoError(f"API refused the upload ({response.status}): {message}")
            return body

    async def media(self, media_id: str) -> dict[str, Any]:
        async with self._http.get(f"{self._api}/media/{media_id}", headers=self._auth) as response:
            response.raise_for_status()
            item: dict[str, Any] = await response.json()
            return item

    async def download(self, url: str, target: Path) -> int:
        async with self._http.get(url) as response:
            response.raise_for_status()
            data = await response.read()
        await anyio.Path(target).write_bytes(data)
        return len(data)

    async def download_ladder(self, master_url: str, folder: Path) -> int:
        """An HLS ladder, whole, under ``folder`` (its ``master.m3u8`` plays from there)."""
        return await download_ladder(
            self._http,
            master_url,
            folder,
            lambda url: self._auth if url.startswith(f"{self._api}/") else {},
        )


class DemoError(Exception):
    """An upload the demo could not hand over to the API."""


async def _process_one(
    client: DemoClient, result: DemoResult, out: Path, deadline: float, progress: Progress
) -> None:
    size = result.file.stat().st_size
    task = progress.add_task(f"{result.file.name}: uploading", total=size)
    started = time.monotonic()
    try:
        result.media_id, result.upload = await client.upload(
            result.file, lambda count: progress.advance(task, count)
        )
        progress.update(task, description=f"{result.file.name}: processing")
        while time.monotonic() < deadline:
            item = await client.media(result.media_id)
            result.status = item["status"]
            if result.status in TERMINAL:
                result.item = item
                result.error = item.get("error")
                break
            await anyio.sleep(0.25)
        else:
            result.error = "timed out waiting for processing"
        if result.status == "READY":
            # A re-run replaces the file's folder rather than adding another one beside it.
            folder = out / (result.folder or result.file.name)
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
            folder.mkdir(parents=True, exist_ok=True)
            await download_renditions(client, result, folder)
    except (DemoError, aiohttp.ClientError) as exc:
        result.status = "REJECTED"
        result.error = str(exc)
    result.seconds = time.monotonic() - started
    progress.update(task, description=f"{result.file.name}: {result.status}", completed=size)


def _folders(files: list[Path]) -> list[str]:
    """One output folder per input, named after the file (extension kept), unique among them."""
    taken: set[str] = set()
    names = []
    for path in files:
        name, n = path.name, 1
        while name in taken:
            n += 1
            name = f"{path.name}-{n}"
        taken.add(name)
        names.append(name)
    return names


def expand(paths: list[Path]) -> list[Path]:
    """Files as given, and the files (not hidden, sorted) inside any folder given."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")
            )
        else:
            found.append(path)
    return found


async def run_demo(
    paths: list[Path],
    out: Path,
    *,
    as_json: bool,
    wait_seconds: float,
    include_broken: bool = False,
    emulator: EmulatorMode = "process",
) -> int:
    """Returns the exit status: 0 when every upload ended READY or FAILED."""
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="mediamill-samples-") as samples:
        files = expand(paths)
        if not paths:
            files = make_demo_samples(Path(samples), include_broken=include_broken)
        missing = [f for f in files if not f.is_file()]
        if missing or not files:
            console.print(f"[red]no such file: {', '.join(map(str, missing)) or 'no files'}")
            return 2
        results = [
            DemoResult(file=f, folder=name) for f, name in zip(files, _folders(files), strict=True)
        ]
        console.print(f"starting the embedded AWS stack and a worker for {len(files)} file(s)…")
        async with embedded_stack(emulator=emulator) as running:
            from worker.dev.local_api import dev_token

            if running.rekognition_emulated:
                console.print(
                    "[yellow]Rekognition is emulated here (moto): the tagging stage's labels are "
                    "canned, not read from your files."
                )

            async with aiohttp.ClientSession() as http:
                client = DemoClient(http, running.api_url, dev_token(DEMO_USER))
                deadline = time.monotonic() + wait_seconds
                with Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    TimeElapsedColumn(),
                    console=console,
                    disable=as_json,
                ) as progress:
                    limiter = anyio.CapacityLimiter(4)

                    async def one(result: DemoResult) -> None:
                        async with limiter:
                            await _process_one(client, result, out, deadline, progress)

                    async with anyio.create_task_group() as group:
                        for result in results:
                            group.start_soon(one, result)
                    await settle_live_photos(client, results, out, deadline)
    if as_json:
        for result in results:
            sys.stdout.write(json.dumps(result.as_json()) + "\n")
    else:
        _print_table(results, out)
    throughput = measure(r.item for r in results)
    if throughput is not None:
        # Under the table; with --json on stderr, so stdout stays one object per file.
        print(throughput.describe(), file=sys.stderr if as_json else sys.stdout)
    return 0 if all(r.status in TERMINAL for r in results) else 1


def _print_table(results: list[DemoResult], out: Path) -> None:
    table = Table(title="mediamill demo", title_justify="left")
    for column in ("file", "status", "kind", "size", "renditions", "seconds"):
        table.add_column(column)
    table.add_column("detail", overflow="fold")
    for r in results:
        meta = r.item.get("metadata") or {}
        size = f"{meta['width']}x{meta['height']}" if meta.get("width") else ""
        detail = r.error or "; ".join(r.item.get("warnings") or []) or ""
        colour = {"READY": "green", "FAILED": "yellow"}.get(r.status, "red")
        table.add_row(
            r.file.name,
            f"[{colour}]{r.status}",
            str(r.item.get("kind") or ""),
            size,
            ", ".join(x["name"] for x in r.renditions),
            f"{r.seconds:.2f}",
            detail,
        )
    # Piped, rich would squeeze the table into 80 columns: give it room instead.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    console.print(f"renditions written under {out}/")


def make_demo_samples(directory: Path, *, include_broken: bool = False) -> list[Path]:
    """Write one file of each kind the demo shows (and, if asked, one that must end FAILED)."""
    # Imported here: making samples loads PyAV and Pillow, which the rest of the demo never needs.
    from worker.dev.broken_samples import (
        write_broken_jpeg,
        write_broken_video,
        write_damaged_jpeg,
        write_fake_jpeg,
    )
    from worker.dev.live_samples import write_live_photo
    from worker.dev.motion_samples import write_motion_photo
    from worker.dev.raw_samples import write_dng
    from worker.dev.samples import write_gif, write_heic, write_jpeg, write_png, write_video

    directory.mkdir(parents=True, exist_ok=True)
    live_still, live_clip = write_live_photo(directory, "1E4C8A3F-7B2D-4E91-A0C5-3D6F9B8E2A17")
    made = [
        write_jpeg(directory / "photo.jpg", orientation=6, gps=(48.8584, 2.2945)),
        write_png(directory / "logo.png", alpha=True),
        write_gif(directory / "animation.gif", frames=6),
        write_jpeg(directory / "camera.jpg", 1600, 1200, orientation=8, camera=True),
        write_heic(directory / "phone.heic", 640, 480, gps=(37.3349, -122.009)),
        # An Android motion photo: a JPEG with a clip appended ("MP" names it, as Pixels do).
        write_motion_photo(directory / "PXL_MP.jpg", 640, 480, seconds=1.5),
        write_dng(directory / "camera.dng", 3000, 2000, preview=1600, orientation=6),
        # An iPhone Live Photo: a HEIC and a MOV sharing Apple's content identifier.
        live_still,
        write_video(directory / "clip.mp4", seconds=2.0),
        write_video(directory / "phone.mov", container="mov", seconds=1.5, rotation=90),
        write_video(directory / "hdr.mp4", codec="hevc", ten_bit=True, hlg=True, seconds=1.0),
        write_video(directory / "web.webm", container="webm", codec="vp9", seconds=1.5),
        live_clip,
    ]
    if include_broken:
        made.append(write_broken_jpeg(directory / "broken.jpg"))
        made.append(write_broken_video(directory / "broken.mp4", "no-moov"))
        made.append(write_damaged_jpeg(directory / "damaged.jpg"))
        made.append(write_fake_jpeg(directory / "fake.jpg"))
    return made
