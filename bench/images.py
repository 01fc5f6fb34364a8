"""Photo benchmark: the thumbnail stage against the usual Pillow thumbnailer and plain pyvips.

Inputs are real photographs that scikit-image ships, scaled to 12 megapixels and written as
phone-like JPEGs (q90, camera EXIF, half of them rotated by EXIF). Each method makes the same
renditions (WebP 320, JPEG 1440 q80) from every photo, with as many threads as cores, in a
child process of its own, so its peak memory is its own too.

    python -m bench images            # all of it, as part of `make bench`
    python -m bench.images METHOD DIR REPEAT THREADS   # one method, what the parent runs
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.report import Measurement, cpu_count, cpu_seconds, python_child, run_child

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina")
MEGAPIXELS = 12
BOMB_MEGAPIXELS = 100
THUMB, PREVIEW, QUALITY = 320, 1440, 80
METHODS = ("stage", "pillow", "pyvips-per-size")
PHOTO_CPU = "photo 12 MP stage CPU seconds"
PILLOW_CPU = "photo 12 MP pillow CPU seconds"


def make_photos(directory: Path, *, megapixels: float, names: tuple[str, ...]) -> list[Path]:
    """Real photographs scaled to ``megapixels``, as camera JPEGs (every other one rotated)."""
    import pyvips
    import skimage.data

    from worker.dev.samples import camera_exif

    made = []
    for index, name in enumerate(names):
        path = directory / f"{name}-{megapixels:g}mp.jpg"
        if not path.exists():
            array = getattr(skimage.data, name)()
            image = pyvips.Image.new_from_array(array).copy(interpretation="srgb")
            if image.bands == 1:
                image = image.colourspace("srgb")
            scale = math.sqrt(megapixels * 1e6 / (image.width * image.height))
            image = image.resize(scale, kernel="lanczos3")
            exif = camera_exif()
            exif[0x0112] = 6 if index % 2 else 1
            image.set_type(pyvips.GValue.blob_type, "exif-data", exif.tobytes())
            image.jpegsave(str(path), Q=90, keep="exif")
        made.append(path)
    return made


# --- the three ways (run in the child) -------------------------------------------------------


def stage_method(out: Path) -> Callable[[Path], None]:
    import structlog

    from stages import Job, MediaKind
    from stages.photo.stage import ThumbnailOptions, ThumbnailStage
    from stages.probe.stage import ProbeStage

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    probe = ProbeStage(ProbeStage.Options())
    stage = ThumbnailStage(ThumbnailOptions())

    def run(path: Path) -> None:
        workdir = Path(tempfile.mkdtemp(dir=out))
        probed = probe.run_sync(Job.standalone(path, workdir))
        job = Job.standalone(
            path, workdir, kind=MediaKind.IMAGE, metadata=probed.metadata, options=stage.options
        )
        stage.run_sync(job)

    return run


def pillow_method(out: Path) -> Callable[[Path], None]:
    """The usual Lambda thumbnailer: draft-mode decode, exif_transpose, LANCZOS per size."""
    from PIL import Image, ImageOps

    def run(path: Path) -> None:
        workdir = Path(tempfile.mkdtemp(dir=out))
        with Image.open(path) as image:
            image.draft("RGB", (PREVIEW, PREVIEW))
            upright = ImageOps.exif_transpose(image)
            for size, name, fmt in ((PREVIEW, "preview.jpg", "JPEG"), (THUMB, "t.webp", "WEBP")):
                copy = upright.copy()
                copy.thumbnail((size, size), Image.Resampling.LANCZOS)
                copy.save(workdir / name, fmt, quality=QUALITY)

    return run


def pyvips_method(out: Path) -> Callable[[Path], None]:
    """pyvips as most code uses it: one thumbnail() call, so one decode, per size."""
    import pyvips

    def run(path: Path) -> None:
        workdir = Path(tempfile.mkdtemp(dir=out))
        preview = pyvips.Image.thumbnail(str(path), PREVIEW, height=PREVIEW, size="down")
        preview.jpegsave(str(workdir / "preview.jpg"), Q=QUALITY, keep="none")
        thumb = pyvips.Image.thumbnail(str(path), THUMB, height=THUMB, size="down")
        thumb.webpsave(str(workdir / "thumb.webp"), Q=QUALITY, keep="none")

    return run


_METHODS: dict[str, Callable[[Path], Callable[[Path], None]]] = {
    "stage": stage_method,
    "pillow": pillow_method,
    "pyvips-per-size": pyvips_method,
}


def child(method: str, directory: Path, repeat: int, threads: int) -> None:
    """Make every photo's renditions ``repeat`` times on ``threads`` threads; print the rate."""
    import pyvips

    from stages.photo.stage import share_cores

    pyvips.cache_set_max(0)  # no method may reuse an earlier decode of the same file
    # The worker sizes libvips' pool to its CPU threads; plain pyvips gets the same, so the
    # comparison is of the two ways to use libvips, not of thread settings.
    share_cores(threads)
    photos = sorted(directory.glob("*.jpg"))
    with tempfile.TemporaryDirectory() as scratch:
        run = _METHODS[method](Path(scratch))
        run(photos[0])  # warm-up: imports, codec tables
        work = photos * repeat
        started, cpu_before = time.perf_counter(), cpu_seconds()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, work))
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    print(json.dumps({"photos": len(work), "seconds": seconds, "cpu_seconds": cpu}))


# --- the parent ------------------------------------------------------------------------------


def run(*, quick: bool) -> list[Measurement]:
    threads = cpu_count()
    base = Path(tempfile.gettempdir()) / "mediamill-bench-images"
    photos_dir = base / "12mp"
    bomb_dir = base / "100mp"
    for directory in (photos_dir, bomb_dir):
        directory.mkdir(parents=True, exist_ok=True)
    make_photos(photos_dir, megapixels=MEGAPIXELS, names=PHOTOS[:3] if quick else PHOTOS)
    make_photos(bomb_dir, megapixels=BOMB_MEGAPIXELS, names=("astronaut",))
    repeat = 1 if quick else 3

    rates: dict[str, float] = {}
    peaks: dict[str, float] = {}
    cpu_per_photo: dict[str, float] = {}
    for method in METHODS:
        result = run_child(
            python_child("bench.images", method, str(photos_dir), str(repeat), str(threads))
        )
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        rates[method] = figures["photos"] / figures["seconds"]
        cpu_per_photo[method] = figures["cpu_seconds"] / figures["photos"]
        peaks[method] = result.peak_rss_mb
    big: dict[str, float] = {}
    for method in ("stage", "pillow"):
        big[method] = run_child(
            python_child("bench.images", method, str(bomb_dir), "1", "1")
        ).peak_rss_mb

    unit = f"photos/s ({threads} threads)"
    pillow = "photos 12 MP pillow"
    return [
        Measurement(pillow, rates["pillow"], unit),
        Measurement(
            "photos 12 MP pyvips-per-size",
            rates["pyvips-per-size"],
            unit,
            pillow,
            rates["pyvips-per-size"] / rates["pillow"],
        ),
        Measurement(
            "photos 12 MP stage", rates["stage"], unit, pillow, rates["stage"] / rates["pillow"]
        ),
        Measurement(
            "photos 12 MP stage vs pyvips-per-size",
            rates["stage"],
            unit,
            "photos 12 MP pyvips-per-size",
            rates["stage"] / rates["pyvips-per-size"],
        ),
        Measurement("photos 12 MP stage peak RSS", peaks["stage"], "MB"),
        # What a photo costs a task's vCPUs, whatever the cores: the scaling simulation's input.
        Measurement(PHOTO_CPU, cpu_per_photo["stage"], "CPU s/photo"),
        # What a Lambda thumbnailer would be billed for (bench.cost): Pillow's CPU per photo.
        Measurement(PILLOW_CPU, cpu_per_photo["pillow"], "CPU s/photo"),
        Measurement("photo 100 MP JPEG pillow peak RSS", big["pillow"], "MB"),
        Measurement(
            "photo 100 MP JPEG stage peak RSS",
            big["stage"],
            "MB",
            "photo 100 MP JPEG pillow peak RSS",
            big["pillow"] / big["stage"],
        ),
    ]


if __name__ == "__main__":
    child(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
