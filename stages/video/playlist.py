"""The master playlist of an HLS ladder, its attributes measured from what was written.

``BANDWIDTH`` is the peak bit rate of any one segment and ``AVERAGE-BANDWIDTH`` the whole
variant's (RFC 8216, 4.3.4.2), both from the segment files' sizes and their ``EXTINF``
durations; ``CODECS`` names the H.264 profile and level the encoder really chose (RFC 6381's
``avc1.PPCCLL``, read from the stream's SPS) and AAC-LC as ``mp4a.40.2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from mediamill_core.hls import MASTER_PLAYLIST, VARIANT_PLAYLIST, playlist_uris
from stages.contract import RenditionInvalid

_AAC_LC = "mp4a.40.2"
_SPS = 7  # the H.264 NAL unit type of a sequence parameter set
_EXTINF = "#EXTINF:"


@dataclass(frozen=True, slots=True)
class Variant:
    """One rung as the master playlist lists it."""

    name: str
    width: int  # displayed, upright
    height: int
    frame_rate: Fraction
    codecs: str
    bandwidth: int
    average_bandwidth: int
    segments: int

    @property
    def playlist(self) -> str:
        return f"{self.name}/{VARIANT_PLAYLIST}"

    def summary(self) -> dict[str, Any]:
        """What the item's ``hls`` rendition entry says of this variant."""
        return {
            "name": self.name,
            "playlist": self.playlist,
            "width": self.width,
            "height": self.height,
            "bandwidth": self.bandwidth,
            "average_bandwidth": self.average_bandwidth,
            "codecs": self.codecs,
            "frame_rate": round(float(self.frame_rate), 3),
        }


def avc1_codec(extradata: bytes | None) -> str:
    """``avc1.PPCCLL`` from the encoder's extradata, whether avcC or Annex B."""
    sps = _sps(extradata or b"")
    if sps is None:
        raise RenditionInvalid("the H.264 stream carries no sequence parameter set")
    return f"avc1.{sps[0]:02x}{sps[1]:02x}{sps[2]:02x}"


def audio_codec() -> str:
    return _AAC_LC


def measure_variant(playlist: Path) -> tuple[int, int, int]:
    """Peak and average bit rate of the variant at ``playlist``, and its segment count."""
    text = playlist.read_text()
    durations = [
        float(line[len(_EXTINF) :].split(",", 1)[0])
        for line in text.splitlines()
        if line.startswith(_EXTINF)
    ]
    uris = playlist_uris(text)
    segments = [uri for uri in uris if uri.endswith(".m4s")]
    if not segments or len(segments) != len(durations):
        raise RenditionInvalid(f"{playlist.parent.name}: the playlist lists no whole segments")
    init = sum((playlist.parent / uri).stat().st_size for uri in uris if uri not in segments)
    sizes = [(playlist.parent / uri).stat().st_size for uri in segments]
    # The last segment is as long as what is left: its rate would be noise when it is short.
    rates = [
        8 * size / duration
        for size, duration in zip(sizes, durations, strict=True)
        if duration >= 0.5 * max(durations)
    ]
    total = sum(durations)
    average = 8 * (sum(sizes) + init) / total if total > 0 else 0.0
    return round(max(rates)), round(average), len(segments)


def write_master(folder: Path, variants: list[Variant]) -> Path:
    """``master.m3u8`` in ``folder``, the largest variant first."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant in sorted(variants, key=lambda v: v.bandwidth, reverse=True):
        attributes = ",".join(
            [
                f"BANDWIDTH={variant.bandwidth}",
                f"AVERAGE-BANDWIDTH={variant.average_bandwidth}",
                f"RESOLUTION={variant.width}x{variant.height}",
                f'CODECS="{variant.codecs}"',
                f"FRAME-RATE={float(variant.frame_rate):.3f}",
            ]
        )
        lines += [f"#EXT-X-STREAM-INF:{attributes}", variant.playlist]
    path = folder / MASTER_PLAYLIST
    path.write_text("\n".join(lines) + "\n")
    return path


def _sps(extradata: bytes) -> bytes | None:
    """Profile, constraint flags and level: the three bytes after an SPS's NAL header."""
    if extradata[:1] == b"\x01" and len(extradata) >= 4:  # avcC: a copy of them at 1..3
        return extradata[1:4]
    start = 0
    while True:
        found = extradata.find(b"\x00\x00\x01", start)
        if found < 0 or found + 4 >= len(extradata):
            return None
        header = found + 3
        if extradata[header] & 0x1F == _SPS and header + 3 < len(extradata):
            return extradata[header + 1 : header + 4]
        start = header
