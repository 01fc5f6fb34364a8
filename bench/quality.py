"""Quality of the photo renditions: SSIM of each 1440 preview against a full-resolution Lanczos
reference, and the bytes of both renditions, for every method the photo suite times.

The reference is the photo decoded at full size (no shrink-on-load, no draft mode), turned
upright by its EXIF orientation and resized with Lanczos-3 to the preview's own dimensions, so
no method is judged against its own shortcuts. SSIM is scikit-image's, over the three channels.

    python -m bench.quality PHOTOS_DIR KEPT_DIR METHOD...   # prints {method: figures} as JSON

KEPT_DIR/METHOD holds ``<photo stem>.preview.jpg`` and ``<photo stem>.thumb.webp`` for each photo
(what ``python -m bench.images ... --keep`` and bench/sharp/thumbnail.mjs ``--keep`` write).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

PREVIEW_SUFFIX, THUMB_SUFFIX = ".preview.jpg", ".thumb.webp"


def reference(photo: Path, width: int, height: int) -> Any:
    """``photo`` upright, from every pixel, Lanczos-3 to ``width`` x ``height``: a numpy array."""
    import pyvips

    full = pyvips.Image.new_from_file(str(photo), access="sequential").autorot()
    full = _rgb(full)
    return full.resize(width / full.width, vscale=height / full.height, kernel="lanczos3").numpy()


def _rgb(image: Any) -> Any:
    if image.interpretation != "srgb":
        image = image.colourspace("srgb")
    return image[:3] if image.bands > 3 else image


def preview_ssim(photo: Path, preview: Path) -> float:
    import pyvips
    from skimage.metrics import structural_similarity

    ours = _rgb(pyvips.Image.new_from_file(str(preview)))
    if ours.bands != 3:
        raise ValueError(f"{preview}: {ours.bands} bands, expected RGB")
    ideal = reference(photo, ours.width, ours.height)
    return float(structural_similarity(ideal, ours.numpy(), channel_axis=2, data_range=255))


def judge(photos: list[Path], kept: Path) -> dict[str, float]:
    """Mean SSIM of the previews and mean bytes of each rendition over ``photos``, each with
    its range over the photos (``_low``, ``_high``)."""
    scores: list[float] = []
    previews: list[int] = []
    thumbs: list[int] = []
    for photo in photos:
        preview = kept / f"{photo.stem}{PREVIEW_SUFFIX}"
        thumb = kept / f"{photo.stem}{THUMB_SUFFIX}"
        missing = [str(p) for p in (preview, thumb) if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"the method made no {', '.join(missing)}")
        scores.append(preview_ssim(photo, preview))
        previews.append(preview.stat().st_size)
        thumbs.append(thumb.stat().st_size)
    figures: dict[str, float] = {}
    for key, values in (("ssim", scores), ("preview_bytes", previews), ("thumb_bytes", thumbs)):
        figures |= {key: statistics.fmean(values), f"{key}_low": min(values)}
        figures[f"{key}_high"] = max(values)
    return figures


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        sys.exit("usage: python -m bench.quality PHOTOS_DIR KEPT_DIR METHOD...")
    photos = sorted(Path(argv[0]).glob("*.jpg"))
    kept = Path(argv[1])
    print(json.dumps({method: judge(photos, kept / method) for method in argv[2:]}))


if __name__ == "__main__":
    main(sys.argv[1:])
