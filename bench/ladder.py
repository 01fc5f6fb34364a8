"""Video: what the HLS ladder costs against the single MP4, on the same clip, in the same rounds.

Each round runs the transcode stage (the MP4 every video gets, with its stills) and the hls
stage (every rung from one decode) on the video suite's 1080p30 clip, each a child process of
its own (bench.rounds interleaves them). The row to read is the ladder's CPU seconds over the
MP4's, round by round: how many MP4s' worth of CPU a long video's ladder adds.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.report import Measurement, cpu_seconds, python_child, run_child
from bench.rounds import LoadWatch, compared, figure, run_rounds


def run_ladder(label: str, clip: Path, root: Path, *, rounds: int) -> list[Measurement]:
    """The MP4 and the ladder of ``clip``, interleaved; their CPU seconds and the ratio."""

    def child(*argv: str) -> float:
        done = run_child(python_child(*argv))
        return float(json.loads(done.stdout)["cpu_seconds"])

    methods = {
        "mp4": lambda: child("bench.video", "stage", str(clip), str(root / "ladder-mp4")),
        "ladder": lambda: child("bench.ladder", "hls", str(clip), str(root / "ladder-hls")),
    }
    with LoadWatch() as load:
        runs = run_rounds(methods, rounds=rounds)
    return ladder_rows(f"video {label}", runs["ladder"], runs["mp4"], load=load)


def ladder_rows(
    name: str, ladder: Sequence[float], mp4: Sequence[float], *, load: LoadWatch
) -> list[Measurement]:
    """The ladder's CPU against the MP4's (ratio below 1: the ladder costs more), and the
    ladder's cost in MP4s, the per-round quotient."""
    reference = f"{name} mp4 CPU seconds (ladder rounds)"
    return [
        compared(f"{name} hls ladder CPU seconds", list(ladder), "CPU s/clip", reference,
                 list(mp4), better="lower", load=load),
        figure(reference, list(mp4), "CPU s/clip", load=load),
        figure(f"{name} hls ladder cost in MP4s", [a / b for a, b in zip(ladder, mp4, strict=True)],
               "x MP4 CPU", load=load),
    ]  # fmt: skip


def hls_main(clip: Path, out: Path) -> None:
    """Child process: probe and run the hls stage on ``clip`` (any length); print its figures."""
    import structlog

    from stages import Job, MediaKind, StageOptions
    from stages.probe.stage import ProbeStage
    from stages.video.streaming import HlsOptions, HlsStage

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    out.mkdir(parents=True, exist_ok=True)
    started, cpu_before = time.perf_counter(), cpu_seconds()
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(clip, out)).metadata
    options = HlsOptions(min_duration=0)
    job = Job.standalone(clip, out, kind=MediaKind.VIDEO, metadata=probed, options=options)
    (ladder,) = HlsStage(options).run_sync(job).renditions
    figures: dict[str, Any] = {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu_seconds() - cpu_before,
        "variants": [variant["name"] for variant in ladder.extra["variants"]],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "hls":
        hls_main(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit("usage: python -m bench.ladder hls CLIP OUTDIR")
