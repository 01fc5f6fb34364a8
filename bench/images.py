"""Photo benchmark: the thumbnail stage against Pillow, plain pyvips and npm's sharp.

Inputs are real photographs that scikit-image ships, scaled to 12 megapixels and written as
phone-like JPEGs (q90, camera EXIF, half of them rotated by EXIF). Each method makes the same
renditions (WebP 320, JPEG 1440 q80, upright) from every photo, with as many photos at once as
cores, in a child process of its own (so its peak memory is its own too), in interleaved rounds
(bench.rounds): the figures are medians with their range. Then each method's renditions are
kept once and judged (bench.quality: SSIM against a full-resolution Lanczos reference, bytes).

    python -m bench images            # all of it, as part of `make bench`
    python -m bench.images METHOD DIR REPEAT THREADS [--keep OUT]   # one run, what the parent runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.report import ChildRun, Measurement, cpu_count, cpu_seconds, python_child, run_child
from bench.rounds import Better, LoadWatch, compared, figure, run_rounds

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina")
MEGAPIXELS = 12
BOMB_MEGAPIXELS = 100
THUMB, PREVIEW, QUALITY = 320, 1440, 80
# The order of every round; Pillow, the usual thumbnailer, is what the others are compared with.
METHODS = ("stage", "pillow", "pyvips-per-size", "sharp")
PYTHON_METHODS = METHODS[:3]
PHOTO_CPU = "photo 12 MP stage CPU seconds"
SHARP = Path(__file__).parent / "sharp"
ROUNDS, QUICK_ROUNDS = 5, 3


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


# --- the ways (run in the child) -------------------------------------------------------------

# What a method does with one photo: its 1440 preview and its 320 thumbnail, as files.
Renditions = tuple[Path, Path]


def stage_method(out: Path) -> Callable[[Path], Renditions]:
    import structlog

    from stages import Job, MediaKind
    from stages.photo.stage import ThumbnailOptions, ThumbnailStage
    from stages.probe.stage import ProbeStage

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    probe = ProbeStage(ProbeStage.Options())
    stage = ThumbnailStage(ThumbnailOptions())

    def run(path: Path) -> Renditions:
        workdir = Path(tempfile.mkdtemp(dir=out))
        probed = probe.run_sync(Job.standalone(path, workdir))
        job = Job.standalone(
            path, workdir, kind=MediaKind.IMAGE, metadata=probed.metadata, options=stage.options
        )
        made = {r.name: r.path for r in stage.run_sync(job).renditions}
        return made["preview"], made["thumb"]

    return run


def pillow_method(out: Path) -> Callable[[Path], Renditions]:
    """The usual Lambda thumbnailer: draft-mode decode, exif_transpose, LANCZOS per size."""
    from PIL import Image, ImageOps

    def run(path: Path) -> Renditions:
        workdir = Path(tempfile.mkdtemp(dir=out))
        with Image.open(path) as image:
            image.draft("RGB", (PREVIEW, PREVIEW))
            upright = ImageOps.exif_transpose(image)
            for size, name, fmt in ((PREVIEW, "preview.jpg", "JPEG"), (THUMB, "t.webp", "WEBP")):
                copy = upright.copy()
                copy.thumbnail((size, size), Image.Resampling.LANCZOS)
                copy.save(workdir / name, fmt, quality=QUALITY)
        return workdir / "preview.jpg", workdir / "t.webp"

    return run


def pyvips_method(out: Path) -> Callable[[Path], Renditions]:
    """pyvips as most code uses it: one thumbnail() call, so one decode, per size."""
    import pyvips

    def run(path: Path) -> Renditions:
        workdir = Path(tempfile.mkdtemp(dir=out))
        preview = pyvips.Image.thumbnail(str(path), PREVIEW, height=PREVIEW, size="down")
        preview.jpegsave(str(workdir / "preview.jpg"), Q=QUALITY, keep="none")
        thumb = pyvips.Image.thumbnail(str(path), THUMB, height=THUMB, size="down")
        thumb.webpsave(str(workdir / "thumb.webp"), Q=QUALITY, keep="none")
        return workdir / "preview.jpg", workdir / "thumb.webp"

    return run


_METHODS: dict[str, Callable[[Path], Callable[[Path], Renditions]]] = {
    "stage": stage_method,
    "pillow": pillow_method,
    "pyvips-per-size": pyvips_method,
}


def child(method: str, directory: Path, repeat: int, threads: int, keep: Path | None) -> None:
    """Make every photo's renditions ``repeat`` times on ``threads`` threads; print the rate.

    With ``keep``, each photo's renditions are also copied there for bench.quality to judge.
    """
    import pyvips

    from stages.photo.stage import share_cores

    pyvips.cache_set_max(0)  # no method may reuse an earlier decode of the same file
    # The worker sizes libvips' pool to its CPU threads; plain pyvips gets the same, so the
    # comparison is of the two ways to use libvips, not of thread settings.
    share_cores(threads)
    photos = sorted(directory.glob("*.jpg"))
    if not photos:
        sys.exit(f"bench.images: no JPEG in {directory}")
    with tempfile.TemporaryDirectory() as scratch:
        make = _METHODS[method](Path(scratch))

        def run(path: Path) -> None:
            preview, thumb = make(path)
            if keep is not None:
                shutil.copyfile(preview, keep / f"{path.stem}.preview.jpg")
                shutil.copyfile(thumb, keep / f"{path.stem}.thumb.webp")

        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
        run(photos[0])  # warm-up: imports, codec tables
        work = photos * repeat
        started, cpu_before = time.perf_counter(), cpu_seconds()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, work))
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    print(json.dumps({"photos": len(work), "seconds": seconds, "cpu_seconds": cpu}))


# --- the parent ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PhotoRun:
    """One child's run: photos made, timed seconds and CPU seconds, its peak RSS."""

    photos: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float

    @classmethod
    def of(cls, done: ChildRun) -> PhotoRun:
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        return cls(figures["photos"], figures["seconds"], figures["cpu_seconds"], done.peak_rss_mb)

    @property
    def rate(self) -> float:
        return self.photos / self.seconds

    @property
    def cpu_per_photo(self) -> float:
        return self.cpu_seconds / self.photos


def method_run(
    method: str, directory: Path, repeat: int, threads: int, keep: Path | None = None
) -> ChildRun:
    """One method over ``directory`` in a child process of its own: the Python ones or sharp."""
    extra = ["--keep", str(keep)] if keep is not None else []
    if method == "sharp":
        argv = ["node", str(SHARP / "thumbnail.mjs"), str(directory), str(repeat), str(threads)]
        # sharp runs each photo on a libuv pool thread: as many as photos in flight.
        env = {**os.environ, "UV_THREADPOOL_SIZE": str(threads)}
        return run_child([*argv, *extra], env=env)
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    args = (method, str(directory), str(repeat), str(threads), *extra)
    return run_child(python_child("bench.images", *args))


def sharp_installed() -> None:
    """sharp comes from npm (bench/sharp/package-lock.json); `make bench` runs ``npm ci``."""
    if shutil.which("node") is None:
        raise RuntimeError(
            "the photo bench needs Node.js (node 20 or later) for its sharp reference"
        )
    if not (SHARP / "node_modules" / "sharp" / "package.json").is_file():
        raise RuntimeError(
            f"sharp is not installed: run `make bench`, or `npm ci --prefix {SHARP}` yourself"
        )


def run(*, quick: bool) -> list[Measurement]:
    sharp_installed()
    threads = cpu_count()
    base = Path(tempfile.gettempdir()) / "mediamill-bench-images"
    # A --quick run has a folder of its own: a child takes every photo in the folder it is given.
    photos_dir = base / ("12mp-quick" if quick else "12mp")
    bomb_dir = base / "100mp"
    for directory in (photos_dir, bomb_dir):
        directory.mkdir(parents=True, exist_ok=True)
    make_photos(photos_dir, megapixels=MEGAPIXELS, names=PHOTOS[:3] if quick else PHOTOS)
    make_photos(bomb_dir, megapixels=BOMB_MEGAPIXELS, names=("astronaut",))
    repeat = 1 if quick else 3

    def timed(method: str) -> Callable[[], PhotoRun]:
        return lambda: PhotoRun.of(method_run(method, photos_dir, repeat, threads))

    def peak(method: str) -> Callable[[], float]:
        return lambda: method_run(method, bomb_dir, 1, 1).peak_rss_mb

    with LoadWatch() as load:
        runs = run_rounds(
            {method: timed(method) for method in METHODS},
            rounds=QUICK_ROUNDS if quick else ROUNDS,
        )
    rows = speed_rows(runs, threads=threads, load=load)
    with LoadWatch() as load:
        big = run_rounds({m: peak(m) for m in ("stage", "pillow", "sharp")}, rounds=1)
    bomb = "photo 100 MP JPEG"
    rows.append(figure(f"{bomb} pillow peak RSS", big["pillow"], "MB", load=load))
    rows += [
        compared(f"{bomb} {m} peak RSS", big[m], "MB", f"{bomb} pillow peak RSS", big["pillow"],
                 better="lower", load=load)
        for m in ("stage", "sharp")
    ]  # fmt: skip
    with LoadWatch() as load:
        rows.extend(quality_rows(judged(photos_dir, threads), load=load))
    return rows


def speed_rows(
    runs: dict[str, list[PhotoRun]], *, threads: int, load: LoadWatch
) -> list[Measurement]:
    """Rates, CPU per photo and peak RSS of every method, each against a peer in the same rounds."""
    unit = f"photos/s ({threads} threads)"
    rate = {m: [r.rate for r in done] for m, done in runs.items()}
    cpu = {m: [r.cpu_per_photo for r in done] for m, done in runs.items()}
    rss = {m: [r.peak_rss_mb for r in done] for m, done in runs.items()}
    pillow = "photos 12 MP pillow"
    rows = [figure(pillow, rate["pillow"], unit, load=load)]
    rows += [
        compared(f"photos 12 MP {m}", rate[m], unit, pillow, rate["pillow"], better="higher",
                 load=load)
        for m in ("pyvips-per-size", "sharp", "stage")
    ]  # fmt: skip
    rows += [
        compared(f"photos 12 MP stage vs {peer}", rate["stage"], unit, f"photos 12 MP {peer}",
                 rate[peer], better="higher", load=load)
        for peer in ("pyvips-per-size", "sharp")
    ]  # fmt: skip
    # What a photo costs a task's vCPUs, whatever the cores: the scaling simulation's input.
    pillow_cpu = "photo 12 MP pillow CPU seconds"
    rows.append(figure(pillow_cpu, cpu["pillow"], "CPU s/photo", load=load))
    rows += [
        compared(name, cpu[m], "CPU s/photo", pillow_cpu, cpu["pillow"], better="lower", load=load)
        for m, name in (("sharp", "photo 12 MP sharp CPU seconds"), ("stage", PHOTO_CPU))
    ]
    pillow_rss = "photos 12 MP pillow peak RSS"
    rows.append(figure(pillow_rss, rss["pillow"], "MB", load=load))
    rows += [
        compared(f"photos 12 MP {m} peak RSS", rss[m], "MB", pillow_rss, rss["pillow"],
                 better="lower", load=load)
        for m in ("sharp", "stage")
    ]  # fmt: skip
    return rows


def judged(photos_dir: Path, threads: int) -> dict[str, dict[str, float]]:
    """Every method's renditions of every photo, kept once and judged by bench.quality."""
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        kept = Path(tmp)
        for method in METHODS:
            method_run(method, photos_dir, 1, threads, keep=kept / method)
        done = run_child(python_child("bench.quality", str(photos_dir), str(kept), *METHODS))
    figures: dict[str, dict[str, float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def quality_rows(figures: dict[str, dict[str, float]], *, load: LoadWatch) -> list[Measurement]:
    """SSIM of the 1440 preview and bytes of both renditions, each method against Pillow's.

    One output per photo and method, the same every run: the value is the mean over the photos,
    the range is over the photos, and there are no rounds.
    """
    rows = []
    kinds: tuple[tuple[str, str, str, Better], ...] = (
        ("photo 1440 preview SSIM", "ssim", "SSIM (mean)", "higher"),
        ("photo 1440 preview bytes", "preview_bytes", "bytes (mean)", "lower"),
        ("photo 320 WebP bytes", "thumb_bytes", "bytes (mean)", "lower"),
    )
    for what, key, unit, better in kinds:
        theirs = figures["pillow"][key]
        for method in ("pillow", "stage", "sharp", "pyvips-per-size"):
            ours = figures[method][key]
            reference, ratio = None, None
            if method != "pillow":
                reference = f"{what} pillow"
                ratio = ours / theirs if better == "higher" else theirs / ours
            rows.append(
                Measurement(f"{what} {method}", ours, unit, reference, ratio,
                            low=figures[method][f"{key}_low"], high=figures[method][f"{key}_high"],
                            loadavg=load.pair)
            )  # fmt: skip
    return rows


def _child_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.images")
    parser.add_argument("method", choices=sorted(_METHODS))
    parser.add_argument("directory", type=Path)
    parser.add_argument("repeat", type=int)
    parser.add_argument("threads", type=int)
    parser.add_argument("--keep", type=Path, help="copy each photo's renditions here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _child_args(sys.argv[1:])
    child(args.method, args.directory, args.repeat, args.threads, args.keep)
