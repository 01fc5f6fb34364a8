"""The rendition check before publish, on renditions our own encoders make and then damage:
cut short at several points, relabelled, mis-sized. Each must be caught, and only those."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import pyvips

from stages import Rendition, RenditionInvalid
from stages.photo.render import ImageFormat, RenditionSpec, picture_from_rgb, save, save_animation
from stages.photo.verify import verify_image, verify_rendition
from worker.dev import samples


def card(width: int = 640, height: int = 480) -> pyvips.Image:
    return picture_from_rgb(np.asarray(samples.picture(width, height))).copy_memory()


def still(directory: Path, image_format: ImageFormat, size: int = 640) -> Rendition:
    spec = RenditionSpec(name="r", size=size, format=image_format)
    suffix = {"jpeg": ".jpg", "webp": ".webp", "avif": ".avif", "png": ".png"}[image_format]
    return save(card(size, size * 3 // 4), directory / f"r{suffix}", spec)


def animation(directory: Path, frames: int = 6) -> Rendition:
    strip = picture_from_rgb(
        np.concatenate([np.asarray(samples.picture(160, 120, shift=4 * i)) for i in range(frames)])
    )
    strip.set_type(pyvips.GValue.gint_type, "page-height", 120)
    spec = RenditionSpec(name="a", size=160, format="webp")
    return save_animation(strip, directory / "a.webp", spec, delays_ms=[100] * frames)


MAKERS: dict[str, Callable[[Path], Rendition]] = {
    "jpeg": lambda d: still(d, "jpeg"),
    "webp": lambda d: still(d, "webp"),
    "avif": lambda d: still(d, "avif", size=320),
    "png": lambda d: still(d, "png", size=320),
    "webp-animated": animation,
}


def check(rendition: Rendition) -> None:
    verify_image(
        rendition.path,
        content_type=rendition.content_type,
        width=rendition.width,
        height=rendition.height,
    )


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_renditions_as_made_pass(kind: str, tmp_path: Path) -> None:
    rendition = MAKERS[kind](tmp_path)
    check(rendition)
    verify_rendition(rendition)


@pytest.mark.parametrize("keep", [0.5, 0.9, -2, -1], ids=["half", "nine-tenths", "-2", "-1"])
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_a_rendition_cut_short_is_caught(kind: str, keep: float, tmp_path: Path) -> None:
    rendition = MAKERS[kind](tmp_path)
    data = rendition.path.read_bytes()
    end = int(len(data) * keep) if keep > 0 else len(data) + int(keep)
    rendition.path.write_bytes(data[:end])
    with pytest.raises(RenditionInvalid) as caught:
        check(rendition)
    message = str(caught.value)
    assert rendition.path.name in message
    assert str(tmp_path) not in message


def test_an_avif_cut_where_its_picture_data_begins_is_caught(tmp_path: Path) -> None:
    # Its header reads (ftyp and meta are whole) and its boxes add up: only mdat is missing.
    rendition = still(tmp_path, "avif", size=320)
    data = rendition.path.read_bytes()
    rendition.path.write_bytes(data[: data.index(b"mdat") - 4])
    with pytest.raises(RenditionInvalid, match=r"r\.avif is not a whole AVIF: it ends before its"):
        check(rendition)


@pytest.mark.parametrize(
    ("kind", "claim", "found"),
    [
        ("webp", "image/jpeg", "is WebP, not the JPEG it claims"),
        ("jpeg", "image/png", "is JPEG, not the PNG it claims"),
        ("png", "image/webp", "is PNG, not the WebP it claims"),
        ("avif", "image/jpeg", "is AVIF, not the JPEG it claims"),
    ],
)
def test_a_rendition_of_another_format_than_claimed_is_caught(
    kind: str, claim: str, found: str, tmp_path: Path
) -> None:
    rendition = MAKERS[kind](tmp_path)
    with pytest.raises(RenditionInvalid, match=found):
        verify_image(
            rendition.path, content_type=claim, width=rendition.width, height=rendition.height
        )


def test_bytes_that_are_no_image_at_all_are_caught(tmp_path: Path) -> None:
    path = tmp_path / "preview.jpg"
    path.write_bytes(b"<!doctype html><html><body>502 Bad Gateway</body></html>")
    with pytest.raises(RenditionInvalid, match=r"is not the JPEG it claims: .*an HTML page"):
        verify_image(path, content_type="image/jpeg", width=None, height=None)


@pytest.mark.parametrize(
    ("dw", "dh"), [(1, 0), (0, 1), (-1, 0)], ids=["wider", "taller", "narrower"]
)
@pytest.mark.parametrize("kind", ["jpeg", "webp", "avif", "png"])
def test_a_size_other_than_claimed_is_caught(kind: str, dw: int, dh: int, tmp_path: Path) -> None:
    rendition = MAKERS[kind](tmp_path)
    assert rendition.width is not None
    assert rendition.height is not None
    with pytest.raises(RenditionInvalid, match="pixels, not the"):
        verify_image(
            rendition.path,
            content_type=rendition.content_type,
            width=rendition.width + dw,
            height=rendition.height + dh,
        )


def test_an_animation_claims_the_height_of_one_frame(tmp_path: Path) -> None:
    rendition = animation(tmp_path, frames=6)
    assert (rendition.width, rendition.height) == (160, 120)
    check(rendition)
    with pytest.raises(RenditionInvalid, match="is 160 x 120 pixels, not the 160 x 720"):
        verify_image(rendition.path, content_type="image/webp", width=160, height=720)


def test_a_size_not_claimed_is_not_checked(tmp_path: Path) -> None:
    rendition = still(tmp_path, "jpeg")
    verify_image(rendition.path, content_type="image/jpeg", width=None, height=None)
    verify_image(rendition.path, content_type="image/jpeg", width=rendition.width, height=None)
    with pytest.raises(RenditionInvalid, match=r"not the 641 x \?"):
        verify_image(rendition.path, content_type="image/jpeg", width=641, height=None)


@pytest.mark.parametrize(
    "content_type", ["image/jpeg", "image/gif", "image/svg+xml", "application/json"]
)
def test_a_missing_or_empty_file_is_caught_whatever_its_type(
    content_type: str, tmp_path: Path
) -> None:
    missing = Rendition(name="x", path=tmp_path / "x", content_type=content_type)
    with pytest.raises(RenditionInvalid, match="x cannot be read"):
        verify_rendition(missing)
    missing.path.write_bytes(b"")
    with pytest.raises(RenditionInvalid, match="x is empty"):
        verify_rendition(missing)


def test_types_renditions_are_not_made_in_need_only_be_there(tmp_path: Path) -> None:
    animated_gif = samples.write_gif(tmp_path / "g.gif", 160, 120, frames=4)
    verify_rendition(Rendition(name="g", path=animated_gif, content_type="image/gif"))
    svg = tmp_path / "logo.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    verify_rendition(Rendition(name="logo", path=svg, content_type="image/svg+xml"))
    data = tmp_path / "facts.json"
    data.write_text("{}")
    verify_rendition(Rendition(name="facts", path=data, content_type="application/json"))
