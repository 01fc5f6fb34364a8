"""Failures on the output side are ours, never the upload's; damage in the input is tolerated.

A full disk (a tmpfs of a few pages) and a file size limit (``RLIMIT_FSIZE`` in a child
process) are real write failures: the stage raises ``TransientError`` and leaves no partial
video. An error inside the filter and encode chain is a bug and raises as one. A damaged
input still makes a video, with a warning, and that video passes its check.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
import pyvips

from stages import BadMediaError, Job, MediaKind, RenditionInvalid, StageOptions, TransientError
from stages.probe.stage import ProbeStage
from stages.video.checks import verify_video
from stages.video.output import writing
from stages.video.single_pass import VideoPass
from stages.video.stage import TranscodeOptions, TranscodeStage
from worker.dev import broken_samples, samples

# A 4 s clip of 640x480: its MP4, copied or encoded, is 130-140 kB.
CLIP = {"seconds": 4.0, "width": 640, "height": 480}


def probe_and_transcode(source: Path, workdir: Path, **options: Any) -> Any:
    probed = ProbeStage(StageOptions()).run_sync(Job.standalone(source, source.parent))
    chosen = TranscodeOptions(**options)
    job = Job.standalone(
        source, workdir, kind=MediaKind.VIDEO, metadata=probed.metadata, options=chosen
    )
    return TranscodeStage(chosen).run_sync(job)


@pytest.mark.parametrize(("codec", "action"), [("h264", "copy"), ("hevc", "encode")])
def test_a_full_disk_is_transient_and_leaves_no_video(
    tmp_path: Path, mount_tmpfs: Callable[[str], Path], codec: str, action: str
) -> None:
    source = samples.write_video(tmp_path / f"{action}.mp4", codec=codec, **CLIP)
    workdir = mount_tmpfs("size=64k")
    with pytest.raises(TransientError, match="No space left on device"):
        probe_and_transcode(source, workdir)
    assert not (workdir / "video.mp4").exists()


_CHILD = """
import json, resource, sys, traceback
from pathlib import Path
source, workdir, limit = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, sys.argv[4])
from test_transcode_output_errors import probe_and_transcode
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: EFBIG
try:
    result = probe_and_transcode(source, workdir)
    outcome = {"error": None, "size": result.renditions[0].path.stat().st_size}
except Exception as error:
    outcome = {"error": type(error).__name__, "message": str(error)}
outcome["left"] = sorted(path.name for path in workdir.iterdir())
print(json.dumps(outcome))
"""


def transcode_within(source: Path, workdir: Path, limit: int) -> dict[str, Any]:
    """The outcome of the stage in a child process that may write no file beyond ``limit``."""
    workdir.mkdir()
    argv = [sys.executable, "-c", _CHILD, str(source), str(workdir), str(limit)]
    done = subprocess.run(
        [*argv, str(Path(__file__).parent)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_a_file_size_limit_is_transient_in_the_body_and_in_the_trailer(tmp_path: Path) -> None:
    source = samples.write_video(tmp_path / "copy.mp4", **CLIP)
    whole = transcode_within(source, tmp_path / "whole", 1 << 30)
    assert whole["error"] is None
    # Cut in the media data, then in the trailer: faststart moves the media to put the index
    # first, and the file reaches its full size only with the last bytes of that move.
    for limit in (whole["size"] // 2, whole["size"] - 16):
        outcome = transcode_within(source, tmp_path / f"limit{limit}", limit)
        assert outcome["error"] == "TransientError", outcome
        assert "File too large" in outcome["message"]
        assert "video.mp4" not in outcome["left"]


def test_a_still_that_cannot_be_written_is_transient(tmp_path: Path) -> None:
    source = samples.write_video(tmp_path / "clip.mp4", seconds=1.0)
    workdir = tmp_path / "work"
    (workdir / "thumb.webp").mkdir(parents=True)  # in the way of the poster's thumbnail
    with pytest.raises(TransientError, match="could not write the thumb rendition: Is a directory"):
        probe_and_transcode(source, workdir)


def test_a_libvips_error_that_is_not_the_system_s_is_a_bug(tmp_path: Path) -> None:
    with pytest.raises(pyvips.Error, match="not a known file format"), writing("a still"):
        pyvips.Image.black(8, 8).write_to_file(str(tmp_path / "still.unknown"))


def test_an_error_of_the_encoder_is_a_bug_not_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, it was caught as "the file ends in unreadable data" and the video published."""
    source = samples.write_video(tmp_path / "clip.mp4", codec="hevc", **CLIP)
    real_filter, calls = VideoPass._filter, []

    def failing_encoder(self: VideoPass, frame: Any, *args: Any) -> None:
        calls.append(frame)
        if len(calls) == 31:  # once: the encoder would work again after it
            raise av.error.ExternalError(-542398533, "Generic error in an external library")
        real_filter(self, frame, *args)

    monkeypatch.setattr(VideoPass, "_filter", failing_encoder)
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.raises(av.error.ExternalError):
        probe_and_transcode(source, workdir)
    assert not (workdir / "video.mp4").exists()


class LossyOutput:
    """An output container that silently loses every packet after the first ``keep``."""

    def __init__(self, output: Any, keep: int) -> None:
        self._output, self._left = output, keep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._output, name)

    def mux(self, packets: Any) -> None:
        for packet in [packets] if isinstance(packets, av.Packet) else packets:
            self._left -= 1
            if self._left >= 0:
                self._output.mux(packet)


def lose_packets(monkeypatch: pytest.MonkeyPatch, keep: int, passes: int) -> None:
    """The first ``passes`` outputs lose packets, as a writer that drops data would."""
    import stages.video.single_pass

    real, made = stages.video.single_pass.mp4_output, []

    def lossy(path: Path) -> Any:
        made.append(path)
        context = real(path)
        if len(made) > passes:
            return context
        return _wrap(context, keep)

    monkeypatch.setattr(stages.video.single_pass, "mp4_output", lossy)


class _wrap:
    def __init__(self, context: Any, keep: int) -> None:
        self._context, self._keep = context, keep

    def __enter__(self) -> LossyOutput:
        return LossyOutput(self._context.__enter__(), self._keep)

    def __exit__(self, *exc: Any) -> Any:
        return self._context.__exit__(*exc)


def test_an_encoded_video_that_lost_frames_is_never_returned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = samples.write_video(tmp_path / "clip.mp4", codec="hevc", audio=False, **CLIP)
    lose_packets(monkeypatch, keep=29, passes=1)
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.raises(RenditionInvalid, match="has 29 video frames, expected 96"):
        probe_and_transcode(source, workdir)
    assert not (workdir / "video.mp4").exists()


def test_a_copy_that_fails_its_check_is_encoded_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = samples.write_video(tmp_path / "clip.mp4", audio=False, **CLIP)
    lose_packets(monkeypatch, keep=29, passes=1)
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = probe_and_transcode(source, workdir)
    (reason,) = result.metadata["encoding"]["reasons"]
    assert reason.startswith("video cannot be copied: the copy failed its check")
    video = result.renditions[0]
    assert verify_video(video.path, frames=96, duration=4.0).codec == "h264"


# --- damage in the input: tolerated --------------------------------------------------------


def test_damaged_packets_are_tolerated_and_the_video_passes_its_check(tmp_path: Path) -> None:
    source = broken_samples.write_broken_video(tmp_path / "damaged.mp4", "damaged")
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = probe_and_transcode(source, workdir)
    (warning,) = result.warnings
    assert "corrupt" in warning
    video = result.renditions[0]
    checked = verify_video(video.path, duration=3.0, width=320, height=240)
    assert checked.frames >= 48  # of 72: up to the next keyframe after the damage is lost


def faststart_copy(source: Path, path: Path) -> Path:
    """``source`` remuxed with its index first, as phones and editors write MP4."""
    with (
        av.open(str(source)) as media,
        av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as output,
    ):
        stream = output.add_stream_from_template(media.streams.video[0])
        for packet in media.demux(video=0):
            if packet.size:
                packet.stream = stream
                output.mux(packet)
    return path


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_a_file_cut_short_keeps_what_came_before(tmp_path: Path, codec: str) -> None:
    whole = samples.write_video(tmp_path / "whole.mp4", codec=codec, audio=False, **CLIP)
    data = faststart_copy(whole, tmp_path / "indexed.mp4").read_bytes()
    source = tmp_path / "cut.mp4"
    source.write_bytes(data[: len(data) * 6 // 10])
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = probe_and_transcode(source, workdir)
    checked = verify_video(result.renditions[0].path)
    assert 24 <= checked.frames < 96  # what was there before the cut, and not more
    # The MP4 demuxer just stops where the data does: the header says how much is missing.
    seconds = checked.frames / 24
    assert result.warnings == [
        f"the video ends after {seconds:.1f} s of the 4.0 s its header states"
    ]


def test_noise_is_still_bad_media(tmp_path: Path) -> None:
    with pytest.raises(BadMediaError):
        probe_and_transcode(
            broken_samples.write_broken_video(tmp_path / "n.mp4", "noise"), tmp_path
        )
