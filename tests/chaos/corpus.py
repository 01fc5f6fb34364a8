"""The uploads of a chaos run: real encoded photos and videos, broken files, and one killer.

Every sample says how its upload must end. The files are few and small (made once per run,
reused by many uploads), so the run's time goes into the worker, not into encoding.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, PngImagePlugin

from mediamill_testkit.stages import CRASH_MARKER
from worker.dev import broken_samples, samples


@dataclass(frozen=True, slots=True)
class Sample:
    """One file to upload, the content type it is declared as, and the status it must reach."""

    name: str
    path: Path
    content_type: str
    expect: str  # "READY" or "FAILED"
    killer: bool = False
    # What the client declares in POST /uploads when the bytes sent differ (a file that shrank
    # between choosing it and sending it: S3's POST policy would refuse it, moto does not).
    declared_size: int | None = None

    @property
    def size(self) -> int:
        return self.declared_size or self.path.stat().st_size


def good_samples(directory: Path) -> list[Sample]:
    """Photos and videos of the kinds phones and cameras make, each of which must end READY."""
    return [
        Sample(
            "photo.jpg",
            samples.write_jpeg(
                directory / "photo.jpg", 640, 480, orientation=6, gps=(48.8584, 2.2945)
            ),
            "image/jpeg",
            "READY",
        ),
        Sample(
            "logo.png",
            samples.write_png(directory / "logo.png", 320, 200, alpha=True),
            "image/png",
            "READY",
        ),
        Sample(
            "web.webp", samples.write_webp(directory / "web.webp", 400, 300), "image/webp", "READY"
        ),
        Sample(
            "anim.gif",
            samples.write_gif(directory / "anim.gif", 120, 90, frames=3),
            "image/gif",
            "READY",
        ),
        Sample(
            "phone.heic",
            samples.write_heic(directory / "phone.heic", 320, 240),
            "image/heic",
            "READY",
        ),
        # Cut two thirds of the way through: the visible part is published, with a warning.
        Sample(
            "damaged.jpg",
            broken_samples.write_damaged_jpeg(directory / "damaged.jpg", 480, 320),
            "image/jpeg",
            "READY",
        ),
        Sample(
            "clip.mp4",
            samples.write_video(directory / "clip.mp4", width=160, height=120, seconds=1.0),
            "video/mp4",
            "READY",
        ),
        Sample(
            "web.webm",
            samples.write_video(
                directory / "web.webm",
                container="webm",
                codec="vp9",
                width=160,
                height=120,
                seconds=1.0,
                audio=False,
            ),
            "video/webm",
            "READY",
        ),
    ]


def bad_samples(directory: Path) -> list[Sample]:
    """Uploads no stage can use, each of which must end FAILED with a reason."""
    empty = broken_samples.write_broken_video(directory / "empty.jpg", "empty")
    return [
        Sample("empty.jpg", empty, "image/jpeg", "FAILED", declared_size=1),
        Sample(
            "cut.jpg",
            broken_samples.write_broken_jpeg(directory / "cut.jpg"),
            "image/jpeg",
            "FAILED",
        ),
        Sample(
            "fake.jpg",
            broken_samples.write_fake_jpeg(directory / "fake.jpg"),
            "image/jpeg",
            "FAILED",
        ),
        Sample(
            "noise.mp4",
            broken_samples.write_broken_video(directory / "noise.mp4", "noise"),
            "video/mp4",
            "FAILED",
        ),
        Sample(
            "bomb.png", broken_samples.write_png_bomb(directory / "bomb.png"), "image/png", "FAILED"
        ),
    ]


def killer_sample(directory: Path) -> Sample:
    """A valid PNG carrying the marker the crash stage dies on: every try kills its worker."""
    path = directory / "killer.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", CRASH_MARKER.decode())  # tEXt is stored as is: the bytes show
    samples.picture(96, 64).save(path, "PNG", pnginfo=info)
    with Image.open(path) as check:
        assert check.size == (96, 64)
    assert CRASH_MARKER in path.read_bytes()
    return Sample("killer.png", path, "image/png", "FAILED", killer=True)


def make_corpus(directory: Path, uploads: int, rng: random.Random) -> list[Sample]:
    """``uploads`` samples in a seeded order: about four in five good, the rest bad, one killer.

    Each kind appears at least once; the killer comes early, so its tries fit in the run.
    """
    directory.mkdir(parents=True, exist_ok=True)
    good, bad = good_samples(directory), bad_samples(directory)
    if uploads < len(good) + len(bad) + 1:
        raise ValueError(f"a chaos run needs at least {len(good) + len(bad) + 1} uploads")
    bad_count = max(len(bad), (uploads - 1) // 5)
    chosen = list(good) + list(bad)
    chosen += [bad[i % len(bad)] for i in range(bad_count - len(bad))]
    chosen += [good[i % len(good)] for i in range(uploads - 1 - len(chosen))]
    rng.shuffle(chosen)
    chosen.insert(min(2, len(chosen)), killer_sample(directory))
    return chosen
