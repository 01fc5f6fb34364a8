"""Video: the transcode stage against the ffmpeg command line, same clip, same codec settings.

Inputs are made here with PyAV from real photographs (scikit-image's) panned and zoomed, so the
encoder sees structured motion: a 1080p30 H.264 + AAC clip and a 1080p HEVC 10-bit clip. Each is
converted to the default rendition (H.264 CRF 23, 720 px short side) by the stage and by
``ffmpeg``, each run a child process of its own (so each peak RSS is its own), in interleaved
rounds (bench.rounds): stage, stage without the animated preview, ffmpeg, and again. The stage
also makes the poster stills and the animated preview, which the ffmpeg command does not: the
run without the preview is labelled so. Figures are medians with their range. Last, the
stage's peak RSS on a 10-minute 1080p30 file shows that memory does not grow with the length
(frames stream through).
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench.ladder import run_ladder
from bench.report import ChildRun, Measurement, cpu_seconds, python_child, run_child
from bench.rounds import LoadWatch, compared, figure, run_rounds

_FPS = 30
_SIZE = (1920, 1080)
_SOURCES: dict[str, tuple[str, str, dict[str, str]]] = {
    "h264": ("libx264", "yuv420p", {"preset": "veryfast", "crf": "18"}),
    "hevc10": ("libx265", "yuv420p10le", {"preset": "ultrafast", "x265-params": "log-level=error"}),
    # Only for the memory figure: quick to write (see _frames), quick to decode.
    "h264-long": ("libx264", "yuv420p", {"preset": "ultrafast", "crf": "30"}),
}
_LONG_MINUTES = 10
# The scaling simulation's "short video": this clip, its length in a full run, its CPU figures.
SHORT_VIDEO = "h264 1080p30"
SHORT_VIDEO_SECONDS = 30
ROUNDS, QUICK_ROUNDS = 5, 3


def cpu_name(label: str) -> str:
    return f"video {label} stage CPU seconds"


def length_name(label: str) -> str:
    return f"video {label} clip seconds"


def cores_name(label: str) -> str:
    return f"video {label} stage cores busy"


VIDEO_CPU, VIDEO_CORES = cpu_name(SHORT_VIDEO), cores_name(SHORT_VIDEO)
VIDEO_LENGTH = length_name(SHORT_VIDEO)
_NO_PREVIEW_ANIM = "--no-preview-anim"


def run(*, quick: bool) -> list[Measurement]:
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("the video bench needs the ffmpeg command line as its reference")
    measurements: list[Measurement] = []
    rounds = QUICK_ROUNDS if quick else ROUNDS
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        root = Path(tmp)
        clips = {
            SHORT_VIDEO: (root / "h264.mp4", "h264", 6 if quick else SHORT_VIDEO_SECONDS),
            "hevc 10-bit": (root / "hevc10.mp4", "hevc10", 3 if quick else 10),
        }
        for label, (clip, kind, seconds) in clips.items():
            _write_in_child(clip, kind, seconds)
            measurements.extend(compare(label, clip, root, rounds=rounds))
            # A --quick clip is shorter: the cost per hour of video (bench.cost) needs the length.
            measurements.append(Measurement(length_name(label), float(seconds), "s of video"))
        # What a long video's HLS ladder adds to its MP4 (bench.ladder).
        measurements.extend(run_ladder(SHORT_VIDEO, clips[SHORT_VIDEO][0], root, rounds=rounds))
        minutes = 1 if quick else _LONG_MINUTES
        _write_in_child(root / "long.mp4", "h264-long", minutes * 60)
        reference = next(m for m in measurements if m.name == "video h264 1080p30 stage peak RSS")
        measurements.extend(memory(f"{minutes} min 1080p30", root / "long.mp4", root, reference))
    return measurements


def _write_in_child(clip: Path, kind: str, seconds: int) -> None:
    # A child's peak RSS starts from its parent's size at fork, so this process must stay
    # small for the figures to be the children's own.
    run_child(python_child("bench.video", "clip", kind, str(seconds), str(clip)))


def compare(label: str, clip: Path, root: Path, *, rounds: int) -> list[Measurement]:
    """The stage, the stage without its animated preview and ffmpeg, in interleaved rounds."""
    out = root / f"{clip.stem}-stage"
    plans: list[dict[str, Any]] = []

    def stage(*flags: str) -> Callable[[], VideoRun]:
        def run() -> VideoRun:
            done = run_child(python_child("bench.video", "stage", str(clip), str(out), *flags))
            plan = json.loads(done.stdout)
            plans.append(plan)
            made = tuple(plan["renditions"])
            return VideoRun(done, float(plan["seconds"]), float(plan["cpu_seconds"]), made)

        return run

    def ffmpeg() -> VideoRun:
        # The stage ran first in this round: the same size, preset, CRF and audio as its plan.
        done = run_child(ffmpeg_argv(clip, root / f"{clip.stem}-ffmpeg.mp4", plans[0]))
        return VideoRun(done, done.seconds, done.cpu_seconds)

    with LoadWatch() as load:
        runs = run_rounds(
            {"stage": stage(), "bare": stage(_NO_PREVIEW_ANIM), "ffmpeg": ffmpeg}, rounds=rounds
        )
    return video_rows(f"video {label}", runs, cpu_name(label), cores_name(label), load=load)


@dataclass(frozen=True, slots=True)
class VideoRun:
    """One child: its process figures, and the seconds and CPU of the conversion itself."""

    process: ChildRun
    seconds: float
    cpu_seconds: float
    renditions: tuple[str, ...] = ()


def video_rows(
    name: str, runs: dict[str, list[VideoRun]], cpu: str, cores: str, *, load: LoadWatch
) -> list[Measurement]:
    """The stage's figures against the ffmpeg command line's, round by round."""
    made = {
        what: {"preview_anim" in r.renditions for r in runs[what]} for what in ("stage", "bare")
    }
    if made != {"stage": {True}, "bare": {False}}:
        # A row labelled "no preview_anim" must not time one, nor the stage's row miss it.
        raise RuntimeError(f"{name}: the animated preview made, by run: {made}")
    ffmpeg = f"{name} ffmpeg seconds"
    # The worker is a long-running process: a job pays the stage's run (probe included), not an
    # interpreter start and imports. The child's whole wall time is reported next to it.
    seconds = {what: [r.seconds for r in done] for what, done in runs.items()}
    process = [r.process.seconds for r in runs["stage"]]
    rss = {what: [r.process.peak_rss_mb for r in done] for what, done in runs.items()}
    stage_cpu = [r.cpu_seconds for r in runs["stage"]]

    def against(
        what: str, values: list[float], reference: str, theirs: list[float], unit: str
    ) -> Measurement:
        return compared(f"{name} {what}", values, unit, reference, theirs, better="lower",
                        load=load)  # fmt: skip

    return [
        against("stage seconds", seconds["stage"], ffmpeg, seconds["ffmpeg"], "s"),
        against("stage seconds, no preview_anim (poster kept)", seconds["bare"], ffmpeg,
                seconds["ffmpeg"], "s"),
        against("stage process seconds (with Python start and imports)", process, ffmpeg,
                seconds["ffmpeg"], "s"),
        figure(ffmpeg, seconds["ffmpeg"], "s", load=load),
        # What the clip costs a task's vCPUs (the scaling simulation's input), against the
        # ffmpeg process's own CPU; and how many cores the stage kept busy: CPU over wall.
        compared(cpu, stage_cpu, "CPU s/clip", f"{name} ffmpeg CPU seconds",
                 [r.cpu_seconds for r in runs["ffmpeg"]], better="lower", load=load),
        figure(f"{name} ffmpeg CPU seconds", [r.cpu_seconds for r in runs["ffmpeg"]],
               "CPU s/clip", load=load),
        figure(cores, [c / s for c, s in zip(stage_cpu, seconds["stage"], strict=True)], "cores",
               load=load),
        against("stage peak RSS", rss["stage"], f"{name} ffmpeg peak RSS", rss["ffmpeg"], "MB"),
        figure(f"{name} ffmpeg peak RSS", rss["ffmpeg"], "MB", load=load),
    ]  # fmt: skip


def memory(label: str, clip: Path, root: Path, reference: Measurement) -> list[Measurement]:
    """The stage's peak RSS on a long file, against ``reference`` (a short clip's): ~1.0x."""
    with LoadWatch() as load:
        stage = run_child(python_child("bench.video", "stage", str(clip), str(root / "long-stage")))
    name = f"video {label} stage"
    return [
        Measurement(
            name=f"{name} peak RSS",
            value=stage.peak_rss_mb,
            unit="MB",
            reference=reference.name,
            ratio=reference.value / stage.peak_rss_mb,
            rounds=1,
            loadavg=load.pair,
        ),
        Measurement(
            name=f"{name} seconds",
            value=float(json.loads(stage.stdout)["seconds"]),
            unit="s",
            rounds=1,
            loadavg=load.pair,
        ),
    ]


def ffmpeg_argv(clip: Path, out: Path, plan: dict[str, Any]) -> list[str]:
    """The same conversion as the stage's plan: libx264 preset/CRF, the size, AAC (or copy)."""
    width, height = plan["width"], plan["height"]
    audio = ["-c:a", "copy"] if plan["audio"] == "copy" else ["-c:a", "aac", "-b:a", "128k"]
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip),
        "-c:v", "libx264", "-preset", plan["preset"], "-crf", str(plan["crf"]),
        "-vf", f"scale={width}:{height},format=yuv420p",
        *audio, "-movflags", "+faststart", str(out),
    ]  # fmt: skip


def stage_main(clip: Path, out: Path, *, preview_anim: bool = True) -> None:
    """Child process: probe and transcode ``clip`` as the worker would; print the plan."""
    import structlog

    from stages import Job, MediaKind, StageOptions
    from stages.probe.stage import ProbeStage
    from stages.video.stage import TranscodeOptions, TranscodeStage

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

    def job(metadata: dict[str, Any], options: StageOptions) -> Job:
        out.mkdir(parents=True, exist_ok=True)
        return Job.standalone(clip, out, kind=MediaKind.VIDEO, metadata=metadata, options=options)

    started, cpu_before = time.perf_counter(), cpu_seconds()
    probed = ProbeStage(StageOptions()).run_sync(job({}, StageOptions())).metadata
    options = TranscodeOptions() if preview_anim else TranscodeOptions(preview_anim=None)
    result = TranscodeStage(options).run_sync(job(probed, options))
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    video = next(r for r in result.renditions if r.name == "video")
    print(
        json.dumps(
            {
                "width": video.width,
                "height": video.height,
                "audio": result.metadata["encoding"]["audio"],
                "preset": options.preset,
                "crf": options.crf,
                "seconds": seconds,
                "cpu_seconds": cpu,
                "renditions": sorted(r.name for r in result.renditions),
            }
        )
    )


def write_clip(path: Path, kind: str, *, seconds: int) -> Path:
    """A panned, slowly zooming photograph at 1080p30, H.264 + AAC or HEVC 10-bit + AAC."""
    encoder, pix_fmt, options = _SOURCES[kind]
    with av.open(str(path), "w", format="mp4") as output:
        video: Any = output.add_stream(encoder, rate=_FPS)
        video.width, video.height, video.pix_fmt = *_SIZE, pix_fmt
        video.options = options
        video.codec_context.thread_type = "AUTO"
        sound: Any = output.add_stream("aac", rate=48000)
        frames = _frames(seconds * _FPS, pix_fmt, loop=kind == "h264-long")
        for index, frame in enumerate(frames):
            frame.pts, frame.time_base = index, Fraction(1, _FPS)
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        _write_noise_audio(output, sound, seconds)
    return path


def _frames(count: int, pix_fmt: str, *, loop: bool) -> Iterator[av.VideoFrame]:
    """``count`` frames of the panning; with ``loop``, its first two seconds back and forth.

    Converting a picture costs more than encoding it fast: a long clip reuses a few.
    """
    pictures = _panning(2 * _FPS if loop else count)
    frames = (
        av.VideoFrame.from_ndarray(p, format="rgb24").reformat(format=pix_fmt) for p in pictures
    )
    if not loop:
        yield from frames
        return
    once = list(frames)
    yield from itertools.islice(itertools.cycle(once + once[::-1]), count)


def _panning(count: int) -> Iterator[np.ndarray]:
    from skimage import data, transform

    width, height = _SIZE
    # Two photographs side by side, upscaled so a 1080p window can travel across them.
    photos = [
        transform.resize(data.astronaut(), (1400, 1400)),
        transform.resize(data.coffee(), (1400, 2100)),
    ]
    canvas = (np.concatenate(photos, axis=1) * 255).astype(np.uint8)
    span_x, span_y = canvas.shape[1] - width, canvas.shape[0] - height
    for index in range(count):
        phase = index / max(count - 1, 1)
        x = round(span_x * phase)
        y = round(span_y * (0.5 + 0.5 * np.sin(phase * 6 * np.pi)))
        yield np.ascontiguousarray(canvas[y : y + height, x : x + width])


def _write_noise_audio(output: Any, stream: Any, seconds: int) -> None:
    rng = np.random.default_rng(1)
    chunk = 1024
    for start in range(0, seconds * 48000, chunk):
        samples = (rng.standard_normal((1, chunk)) * 2000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
        output.mux(stream.encode(frame))
    output.mux(stream.encode(None))


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "stage":
        stage_main(
            Path(sys.argv[2]), Path(sys.argv[3]), preview_anim=_NO_PREVIEW_ANIM not in sys.argv
        )
    elif len(sys.argv) == 5 and sys.argv[1] == "clip":
        write_clip(Path(sys.argv[4]), sys.argv[2], seconds=int(sys.argv[3]))
    else:
        sys.exit(
            f"usage: python -m bench.video stage CLIP OUTDIR [{_NO_PREVIEW_ANIM}]"
            " | clip KIND SECONDS PATH"
        )
