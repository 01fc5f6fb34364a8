"""HDR and wide-gamut video to 8-bit SDR BT.709, as a 3D LUT for FFmpeg's ``lut3d`` filter.

The ``av`` wheel's libavfilter has no ``zscale`` (zimg), so the usual linearise-tonemap chain is
not available, and swscale's own colour management (``scale`` with ``in_transfer``) costs about
ten times the whole scale. A LUT computed here once per job applies the same mathematics at the
cost of one table lookup per pixel: BT.2100 HLG (with its system gamma) or PQ to display light,
BT.2020 to BT.709 primaries, a highlight roll-off that keeps hue, and BT.1886 encoding.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import numpy as np
from av.video.reformatter import ColorPrimaries, ColorTrc
from numpy.typing import NDArray

# BT.2408: HDR reference (diffuse) white, which SDR white is mapped to; and the display peak
# assumed for HLG's system gamma and for PQ masters (most are graded on 1000-nit monitors).
REFERENCE_WHITE_NITS = 203.0
PEAK_NITS = 1000.0
_HLG = (0.17883277, 0.28466892, 0.55991073)
_HLG_GAMMA = 1.2
_PQ_M1, _PQ_M2 = 2610 / 16384, 2523 / 4096 * 128
_PQ_C1, _PQ_C2, _PQ_C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
_BT2020_LUMA = np.array([0.2627, 0.6780, 0.0593])
# Linear-light BT.2020 RGB to BT.709 RGB (ITU-R BT.2087).
_BT2020_TO_BT709 = np.array(
    [
        [1.6605, -0.5876, -0.0728],
        [-0.1246, 1.1329, -0.0083],
        [-0.0182, -0.1006, 1.1187],
    ]
)
_SDR_GAMMA = 2.4  # BT.1886, what an SDR display applies to the BT.709 signal
_KNEE = 0.75  # below this (relative to SDR white) light passes unchanged
LUT_SIZE = 33


class WideSignal(StrEnum):
    """A video signal that a plain 8-bit BT.709 conversion would show washed out or dull."""

    HLG = "hlg"
    PQ = "pq"
    BT2020 = "bt2020"  # SDR transfer, BT.2020 primaries


def wide_signal(color_trc: int, color_primaries: int) -> WideSignal | None:
    """What tone mapping a stream needs, from its transfer and primaries (FFmpeg's enums)."""
    if color_trc == ColorTrc.ARIB_STD_B67:
        return WideSignal.HLG
    if color_trc == ColorTrc.SMPTE2084:
        return WideSignal.PQ
    if color_primaries == ColorPrimaries.BT2020:
        return WideSignal.BT2020
    return None


def to_sdr(signal: NDArray[np.float64], kind: WideSignal) -> NDArray[np.float64]:
    """Non-linear BT.2020 RGB in [0, 1] (..., 3) to non-linear BT.709 SDR RGB in [0, 1]."""
    light = _display_light(np.clip(signal, 0.0, 1.0), kind)  # 1.0 is SDR white
    light = np.clip(light @ _BT2020_TO_BT709.T, 0.0, None)
    peak = PEAK_NITS / REFERENCE_WHITE_NITS if kind is not WideSignal.BT2020 else 1.0
    brightest = light.max(axis=-1, keepdims=True)
    # Scaling all three channels by one factor of the brightest keeps hue and saturation.
    factor = np.divide(
        _roll_off(brightest, peak), brightest, out=np.zeros_like(brightest), where=brightest > 0
    )
    return np.asarray(np.clip(light * factor, 0.0, 1.0) ** (1 / _SDR_GAMMA))


def write_cube(path: Path, kind: WideSignal, size: int = LUT_SIZE) -> Path:
    """The LUT as an Adobe/Resolve ``.cube`` file (red varies fastest), as ``lut3d`` reads it."""
    axis = np.linspace(0.0, 1.0, size)
    blue, green, red = np.meshgrid(axis, axis, axis, indexing="ij")
    grid = np.stack([red.ravel(), green.ravel(), blue.ravel()], axis=1)
    with path.open("w") as file:
        file.write(f"LUT_3D_SIZE {size}\n")
        np.savetxt(file, to_sdr(grid, kind), fmt="%.5f")
    return path


def _display_light(signal: NDArray[np.float64], kind: WideSignal) -> NDArray[np.float64]:
    if kind is WideSignal.HLG:
        a, b, c = _HLG
        scene = np.where(signal <= 0.5, signal**2 / 3, (np.exp((signal - c) / a) + b) / 12)
        luma = np.maximum(scene @ _BT2020_LUMA, 0.0)[..., None]
        nits = PEAK_NITS * luma ** (_HLG_GAMMA - 1) * scene  # BT.2100 HLG OOTF
        return np.asarray(nits / REFERENCE_WHITE_NITS)
    if kind is WideSignal.PQ:
        power = signal ** (1 / _PQ_M2)
        ratio = np.maximum(power - _PQ_C1, 0.0) / (_PQ_C2 - _PQ_C3 * power)
        return np.asarray(10000.0 * ratio ** (1 / _PQ_M1) / REFERENCE_WHITE_NITS)
    return np.asarray(signal**_SDR_GAMMA)


def _roll_off(light: NDArray[np.float64], peak: float) -> NDArray[np.float64]:
    """Identity up to the knee, then a curve reaching 1.0 exactly at ``peak`` (slope stays 1)."""
    if peak <= 1.0:
        return np.minimum(light, 1.0)
    over = np.maximum(light - _KNEE, 0.0) / (1 - _KNEE)
    top = (peak - _KNEE) / (1 - _KNEE)
    curve = _KNEE + (1 - _KNEE) * over * (1 + over / top**2) / (1 + over)
    return np.where(light <= _KNEE, light, np.minimum(curve, 1.0))
