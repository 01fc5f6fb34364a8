"""ThumbHash placeholders: a ~25-byte blurred preview a grid paints before any image loads.

The encoder follows Evan Wallace's reference (github.com/evanw/thumbhash, ``rgbaToThumbHash``)
step by step, with NumPy for the cosine sums. The PyPI port (``thumbhash``) mangles images
with transparency, and a tested page of our own beats a broken dependency; the tests check
this encoder against that port on opaque images, where the port is right.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

MAX_SIDE = 100

Channel = npt.NDArray[np.float64]


def _round(value: float) -> int:
    """JavaScript's Math.round (halves go up), which the reference encoder relies on."""
    return math.floor(value + 0.5)


def rgba_to_thumbhash(rgba: npt.NDArray[np.uint8]) -> bytes:
    """The ThumbHash of an H x W x 4 RGBA image of at most 100 x 100 pixels."""
    height, width = rgba.shape[:2]
    if width > MAX_SIDE or height > MAX_SIDE or rgba.shape[2] != 4:
        raise ValueError(f"{width}x{height}x{rgba.shape[2]} is not RGBA within 100x100")
    pixels = rgba.reshape(-1, 4).astype(np.float64)
    alpha = pixels[:, 3] / 255
    colour = pixels[:, :3] / 255
    total_alpha = float(alpha.sum())
    average = (alpha[:, None] * colour).sum(axis=0) / total_alpha if total_alpha else np.zeros(3)
    has_alpha = total_alpha < width * height
    l_limit = 5 if has_alpha else 7  # fewer luminance terms leave room for alpha's
    lx = max(1, _round(l_limit * width / max(width, height)))
    ly = max(1, _round(l_limit * height / max(width, height)))

    # Composite over the average colour, then RGB to luminance and two chroma channels.
    rgb = average * (1 - alpha)[:, None] + alpha[:, None] * colour
    red, green, blue = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    shape = (height, width)
    lum = ((red + green + blue) / 3).reshape(shape)
    yellow_blue = ((red + green) / 2 - blue).reshape(shape)
    red_green = (red - green).reshape(shape)

    l_dc, l_ac, l_scale = _encode_channel(lum, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = _encode_channel(yellow_blue, 3, 3)
    q_dc, q_ac, q_scale = _encode_channel(red_green, 3, 3)
    landscape = width > height
    header24 = (
        _round(63 * l_dc)
        | (_round(31.5 + 31.5 * p_dc) << 6)
        | (_round(31.5 + 31.5 * q_dc) << 12)
        | (_round(31 * l_scale) << 18)
        | (int(has_alpha) << 23)
    )
    header16 = (
        (ly if landscape else lx)
        | (_round(63 * p_scale) << 3)
        | (_round(63 * q_scale) << 9)
        | (int(landscape) << 15)
    )
    digest = [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255, header16 >> 8]
    factors = [l_ac, p_ac, q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = _encode_channel(alpha.reshape(shape), 5, 5)
        digest.append(_round(15 * a_dc) | (_round(15 * a_scale) << 4))
        factors.append(a_ac)
    start = len(digest)
    nibbles = [_round(15 * factor) for channel in factors for factor in channel]
    digest.extend([0] * ((len(nibbles) + 1) // 2))
    for index, nibble in enumerate(nibbles):
        digest[start + (index >> 1)] |= nibble << ((index & 1) << 2)
    return bytes(digest)


def _encode_channel(channel: Channel, nx: int, ny: int) -> tuple[float, list[float], float]:
    """DC term, AC terms normalised to 0..1, and their scale: a triangle of DCT coefficients."""
    height, width = channel.shape
    x_basis = np.cos(np.outer(np.arange(nx), (np.arange(width) + 0.5) * (math.pi / width)))
    y_basis = np.cos(np.outer(np.arange(ny), (np.arange(height) + 0.5) * (math.pi / height)))
    # Every coefficient at once (ny x nx), then the reference's triangle, row by row.
    coefficients = (y_basis @ channel @ x_basis.T) / (width * height)
    values = [
        float(coefficients[cy, cx])
        for cy in range(ny)
        for cx in range(nx)
        if cx * ny < nx * (ny - cy)
    ]
    dc, ac = values[0], values[1:]
    scale = max((abs(value) for value in ac), default=0.0)
    if scale:
        ac = [0.5 + 0.5 / scale * value for value in ac]
    return dc, ac, scale
