"""The FFmpeg filter graph that turns decoded frames into what the encoder takes.

In order: the frame-rate cap (drop early, before any pixel work), the scale to the target size,
tone mapping for HDR and BT.2020 sources (a LUT, see :mod:`stages.video.tonemap`, then BT.709),
conversion to 8-bit 4:2:0 limited range, and the rotation, done last on the smallest, 8-bit
picture. All of it runs inside libavfilter on its threads: no frame goes through numpy.
"""

from __future__ import annotations

from pathlib import Path

import av
import av.filter
from av.video.stream import VideoStream

# FFmpeg's transpose directions for a clockwise display rotation.
_TURNS: dict[int, list[tuple[str, str]]] = {
    90: [("transpose", "clock")],
    180: [("hflip", ""), ("vflip", "")],
    270: [("transpose", "cclock")],
}
# swscale's scaler for size changes; bicubic is FFmpeg's default, so the bench compares alike.
_SCALER = "bicubic"
# Limited range always; the BT.709 matrix only after tone mapping: converting the matrix of
# an SDR source costs swscale 3.5 times the scale itself, so SDR keeps (and tags) its own.
_OUT_RANGE = "out_range=tv"
_OUT_BT709 = f"out_color_matrix=bt709:{_OUT_RANGE}"


def build_graph(
    stream: VideoStream,
    *,
    width: int,
    height: int,
    rotation: int,
    fps_cap: float | None,
    lut: Path | None,
    threads: int,
) -> av.filter.Graph:
    """A configured graph from ``stream``'s decoded frames to upright yuv420p BT.709 frames."""
    graph = av.filter.Graph()
    graph.threads = threads  # slice threads for the filters that have them (lut3d)
    scaler = f"flags={_SCALER}:threads={threads}"  # swscale's own threads; 0 is one per core
    chain = [graph.add_buffer(template=stream)]
    if fps_cap is not None:
        chain.append(graph.add("fps", f"fps={fps_cap:g}"))
    if lut is not None:
        # The LUT works on full-range RGB of the BT.2020 signal: 16 bits keep 10-bit steps.
        chain.append(graph.add("scale", f"{width}:{height}:{scaler}:in_color_matrix=bt2020"))
        chain.append(graph.add("format", "gbrp16le"))
        chain.append(graph.add("lut3d", file=str(lut), interp="tetrahedral"))
        chain.append(graph.add("scale", f"{scaler}:{_OUT_BT709}"))
    else:
        chain.append(graph.add("scale", f"{width}:{height}:{scaler}:{_OUT_RANGE}"))
    chain.append(graph.add("format", "yuv420p"))
    for name, args in _TURNS.get(rotation, []):
        chain.append(graph.add(name, args or None))
    chain.append(graph.add("buffersink"))
    graph.link_nodes(*chain).configure()
    return graph
