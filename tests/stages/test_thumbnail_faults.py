"""The thumbnail stage when our own machine fails it: a full or read-only disk, a file size limit,
no descriptors left, a full temporary directory. Each is a TransientError (retried), never bad
media, and leaves no rendition file behind; a rendition that comes out wrong is RenditionInvalid.

The faults are real: a tmpfs of 64 KiB, a read-only tmpfs, RLIMIT_FSIZE and RLIMIT_NOFILE in a
child process. Mounting needs root (or CAP_SYS_ADMIN); without it those tests are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvips
import structlog
from PIL import Image

from stages import (
    BadMediaError,
    Job,
    MediaKind,
    Rendition,
    RenditionInvalid,
    StageOptions,
    TransientError,
)
from stages.photo.render import RenditionSpec, Stills, encode_to_file, render_stills
from stages.photo.stage import ThumbnailOptions, ThumbnailStage
from stages.probe.stage import ProbeStage
from worker.dev import samples


def noisy_jpeg(path: Path, width: int = 2000, height: int = 1500) -> Path:
    """A photo whose preview does not compress to nothing: well over 64 KiB as a JPEG."""
    card = np.asarray(samples.picture(width, height)).astype(np.int16)
    grain = np.random.default_rng(3).normal(0, 24, card.shape).astype(np.int16)
    image = pyvips.Image.new_from_array(np.clip(card + grain, 0, 255).astype(np.uint8))
    image.copy(interpretation="srgb").jpegsave(str(path), Q=90)
    return path


def run_stage(path: Path, workdir: Path, options: ThumbnailOptions | None = None) -> Any:
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(path, path.parent))
    stage = ThumbnailStage(options or ThumbnailOptions())
    job = Job.standalone(
        path, workdir, kind=MediaKind.IMAGE, metadata=probed.metadata, options=stage.options
    )
    return stage.run_sync(job)


def left_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- a full or read-only disk ----------------------------------------------------------------


def test_a_full_disk_is_transient_and_leaves_no_partial_rendition(
    tmp_path: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    photo = noisy_jpeg(tmp_path / "photo.jpg")
    workdir = mount_tmpfs("size=64k") / "thumbnail"
    with pytest.raises(TransientError) as caught:
        run_stage(photo, workdir)
    assert str(caught.value) == "could not write the preview rendition: No space left on device"
    assert left_in(workdir) == []
    # The same photo with room to spare is fine: it was the disk, not the photo.
    assert {r.name for r in run_stage(photo, tmp_path / "roomy").renditions} == {"thumb", "preview"}


def test_renditions_written_before_the_disk_filled_are_removed(
    tmp_path: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    # Written largest first: the small JPEG fits, the PNG of noise after it does not.
    options = ThumbnailOptions(
        renditions=(
            RenditionSpec(name="large", size=400, format="jpeg", quality=30),
            RenditionSpec(name="small", size=300, format="png"),
        )
    )
    workdir = mount_tmpfs("size=64k") / "thumbnail"
    with pytest.raises(TransientError, match="could not write the small rendition: No space"):
        run_stage(noisy_jpeg(tmp_path / "photo.jpg"), workdir, options)
    assert left_in(workdir) == []


def test_an_animation_that_does_not_fit_takes_the_stills_with_it(
    tmp_path: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    # The stills come from the first frame, plain and small; the frames after it are grain.
    frames = [np.asarray(samples.picture(320, 240, shift=8 * i)) for i in range(8)]
    grain = np.random.default_rng(5).integers(0, 60, (8, 240, 320, 3), dtype=np.uint8)
    grain[0] = 0
    path = tmp_path / "grainy.gif"
    images = [Image.fromarray(f + g) for f, g in zip(frames, grain, strict=True)]
    images[0].save(path, "GIF", save_all=True, append_images=images[1:], duration=80)
    workdir = mount_tmpfs("size=64k") / "thumbnail"
    with pytest.raises(TransientError, match="could not write the animated thumb rendition"):
        run_stage(path, workdir)
    assert left_in(workdir) == []


def test_a_read_only_disk_is_transient(tmp_path: Path, mount_tmpfs: Callable[[str], Path]) -> None:
    workdir = mount_tmpfs("ro,size=1m")
    with pytest.raises(TransientError, match="could not write the preview rendition: Read-only"):
        run_stage(samples.write_jpeg(tmp_path / "photo.jpg", 800, 600), workdir)
    assert left_in(workdir) == []


# --- limits of the process, in a child of its own ---------------------------------------------

_CHILD = """
import json, os, pathlib, resource, signal, sys
import structlog
from stages import Job, MediaKind, StageOptions
from stages.probe.stage import ProbeStage
from stages.photo.stage import ThumbnailStage, ThumbnailOptions
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
path, workdir, limit = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
probed = ProbeStage(StageOptions()).run_sync(Job.standalone(path, workdir))
stage = ThumbnailStage(ThumbnailOptions())
job = Job.standalone(path, workdir, kind=MediaKind.IMAGE, metadata=probed.metadata,
                     options=stage.options)
if limit == "file-size":  # writes past 20 kB fail with EFBIG instead of killing the process
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
elif limit == "descriptors":  # every descriptor taken, as by a leak elsewhere in the process
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
try:
    result = stage.run_sync(job)
    outcome = {"outcome": "ok", "renditions": sorted(r.name for r in result.renditions)}
except Exception as error:
    outcome = {"outcome": type(error).__name__, "message": str(error)}
if limit == "descriptors":
    for fd in held:
        os.close(fd)
outcome["left"] = sorted(p.name for p in workdir.iterdir())
print(json.dumps(outcome))
"""


def run_child(path: Path, workdir: Path, limit: str = "none", **env: str) -> dict[str, Any]:
    workdir.mkdir(exist_ok=True)
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(workdir), limit],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **env},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    outcome: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return outcome


def test_a_file_size_limit_is_transient_and_leaves_no_partial_rendition(tmp_path: Path) -> None:
    outcome = run_child(noisy_jpeg(tmp_path / "photo.jpg"), tmp_path / "work", "file-size")
    assert outcome == {
        "outcome": "TransientError",
        "message": "could not write the preview rendition: File too large",
        "left": [],
    }


@pytest.mark.parametrize("kind", ["jpeg", "heic"])
def test_no_descriptors_left_is_transient_not_bad_media(kind: str, tmp_path: Path) -> None:
    if kind == "jpeg":
        photo = samples.write_jpeg(tmp_path / "photo.jpg", 800, 600)
    else:
        photo = samples.write_heic(tmp_path / "photo.heic", 800, 600)
    outcome = run_child(photo, tmp_path / "work", "descriptors")
    assert outcome["outcome"] == "TransientError", outcome
    assert outcome["message"].endswith("failed: Too many open files")
    assert outcome["left"] == []


def test_a_full_temporary_directory_under_a_decode_is_transient(
    tmp_path: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    # libvips decodes a large WebP through a temporary file; VIPS_DISC_THRESHOLD makes this one
    # large enough, and the temporary directory is a full disk.
    photo = samples.write_webp(tmp_path / "photo.webp", 800, 600)
    full = mount_tmpfs("size=64k")
    outcome = run_child(photo, tmp_path / "work", TMPDIR=str(full), VIPS_DISC_THRESHOLD="1k")
    assert outcome == {
        "outcome": "TransientError",
        "message": "decoding the WEBP failed: No space left on device",
        "left": [],
    }
    roomy = tmp_path / "tmp"
    roomy.mkdir()
    outcome = run_child(photo, tmp_path / "again", TMPDIR=str(roomy), VIPS_DISC_THRESHOLD="1k")
    assert outcome["outcome"] == "ok", outcome


def test_an_encoder_that_fails_is_transient_and_leaves_no_file(tmp_path: Path) -> None:
    # Wider than JPEG can be: libjpeg refuses it, whatever the photo was.
    strip = pyvips.Image.black(70_000, 2, bands=3).cast("uchar").copy_memory()
    path = tmp_path / "wide.jpg"
    with pytest.raises(TransientError, match="could not encode the wide rendition"):
        encode_to_file(strip, path, lambda image: image.jpegsave_buffer(), "the wide rendition")
    assert not path.exists()


def test_a_damaged_photo_is_still_bad_media(tmp_path: Path) -> None:
    path = tmp_path / "cut.webp"
    path.write_bytes(samples.write_webp(tmp_path / "whole.webp", 800, 600).read_bytes()[:3000])
    with pytest.raises(BadMediaError):
        run_stage(path, tmp_path / "work")


# --- renditions checked before they are returned ----------------------------------------------


def damaging(damage: Callable[[Rendition], Rendition]) -> Callable[..., Stills]:
    """render_stills, with ``damage`` done to the preview it wrote (a real file, then wrong)."""

    def render(*args: Any, **kwargs: Any) -> Stills:
        stills = render_stills(*args, **kwargs)
        renditions = [damage(r) if r.name == "preview" else r for r in stills.renditions]
        return Stills(renditions=renditions, placeholder=stills.placeholder)

    return render


def cut_in_half(rendition: Rendition) -> Rendition:
    data = rendition.path.read_bytes()
    rendition.path.write_bytes(data[: len(data) // 2])
    return rendition


def one_pixel_wider(rendition: Rendition) -> Rendition:
    assert rendition.width is not None
    return Rendition(
        name=rendition.name,
        path=rendition.path,
        content_type=rendition.content_type,
        width=rendition.width + 1,
        height=rendition.height,
    )


def rewritten_as_webp(rendition: Rendition) -> Rendition:
    image = pyvips.Image.new_from_file(str(rendition.path)).copy_memory()
    rendition.path.write_bytes(image.webpsave_buffer())
    return rendition


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (cut_in_half, "preview.jpg is not a whole JPEG"),
        (one_pixel_wider, "preview.jpg is 1440 x 1080 pixels, not the 1441 x 1080 it claims"),
        (rewritten_as_webp, "preview.jpg is WebP, not the JPEG it claims"),
    ],
    ids=["truncated", "wrong-size", "wrong-format"],
)
def test_a_rendition_that_came_out_wrong_is_never_returned(
    damage: Callable[[Rendition], Rendition],
    reason: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    monkeypatch.setattr("stages.photo.stage.render_stills", damaging(damage))
    workdir = tmp_path / "work"
    with pytest.raises(RenditionInvalid) as caught:
        run_stage(samples.write_jpeg(tmp_path / "photo.jpg", 2000, 1500), workdir)
    assert str(caught.value).startswith(reason)
    assert left_in(workdir) == []
