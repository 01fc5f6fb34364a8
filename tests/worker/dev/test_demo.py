"""`mediamill demo` and `mediamill dev` as a user runs them: real processes, real HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mediamill_testkit.dev_process import dev_process, interrupt
from mediamill_testkit.processes import alive, listens_on
from worker.dev.samples import write_png

# The built-in stages and the checksum plugin `make test` installs.
KNOWN_STAGES = frozenset(
    {"probe", "thumbnail", "transcode", "motion", "tagging", "checksum", "publish"}
)


def mediamill(
    *args: str, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def results(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_demo_on_generated_samples_ends_every_item_ready(tmp_path: Path) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    run = mediamill("demo", "--json", "--out", str(out))
    elapsed = time.monotonic() - started

    assert run.returncode == 0, run.stderr[-3000:]
    assert "Rekognition is emulated here (moto)" in run.stderr  # said plainly, not implied
    # Throughput, from the items' own timestamps; on stderr, so stdout stays one row per file.
    [line] = [x for x in run.stderr.splitlines() if x.startswith("throughput:")]
    figures = re.fullmatch(
        r"throughput: 8 photos, 5 videos \(13 READY\) in ([0-9.]+) s from the first upload to "
        r"the last READY: ([0-9.]+) photos/s, ([0-9.]+) videos/s, ([0-9.]+) media/s",
        line,
    )
    assert figures, line
    seconds, photos, videos, media = map(float, figures.groups())
    assert 0 < seconds < elapsed
    # Both figures are printed to 2 decimals: a rate is off by its own rounding plus what
    # rounding the seconds (by up to 0.005 s) moves it, which grows as the run gets shorter.
    for count, rate in ((8, photos), (5, videos), (13, media)):
        assert rate == pytest.approx(
            count / seconds, abs=0.005 + count * 0.005 / (seconds * (seconds - 0.005))
        )
    rows = results(run.stdout)
    assert [Path(r["file"]).name for r in rows] == [
        "photo.jpg",
        "logo.png",
        "animation.gif",
        "camera.jpg",
        "phone.heic",
        "PXL_MP.jpg",
        "camera.dng",
        "IMG_0001.HEIC",
        "clip.mp4",
        "phone.mov",
        "hdr.mp4",
        "web.webm",
        "IMG_0001.MOV",
    ]
    assert all(r["status"] == "READY" and r["error"] is None for r in rows), rows
    assert [r["kind"] for r in rows] == ["image"] * 8 + ["video"] * 5
    # The Live Photo: the still plays its MOV's MP4 as `motion`, the clip names its still.
    still, clip = rows[7], rows[12]
    assert (still["live_video_id"], clip["companion_of"]) == (clip["media_id"], still["media_id"])
    motion = {r["name"]: r for r in still["renditions"]}["motion"]
    assert motion["content_type"] == "video/mp4"
    assert Path(motion["path"]).stat().st_size == motion["bytes"] > 0
    assert still["metadata"]["motion"]["form"] == "live_photo"
    raw = rows[6]["metadata"]  # the camera RAW, upright from its orientation flag
    assert (raw["format"], raw["width"], raw["height"]) == ("dng", 2000, 3000)
    for row in rows[8:]:  # every video plays as an MP4, with a poster and its stills
        assert {"video", "thumb", "preview", "preview_anim"} <= {
            r["name"] for r in row["renditions"]
        }
    phone = rows[9]["metadata"]
    assert (phone["width"], phone["height"], phone["rotation"]) == (240, 320, 90)
    assert rows[10]["metadata"]["hdr"] == "hlg"
    # The motion photo: its stills, and its clip as an MP4 with the clip's duration.
    motion = {r["name"]: r for r in rows[5]["renditions"]}
    assert set(motion) >= {"thumb", "preview", "motion"}
    assert (motion["motion"]["content_type"], motion["motion"]["width"]) == ("video/mp4", 640)
    assert rows[5]["metadata"]["motion"]["duration"] == pytest.approx(1.5, abs=0.05)
    assert all("motion" not in row["metadata"] for row in rows[:5] + rows[6:7])
    for row in rows:
        assert len(row["media_id"]) == 32
        assert row["metadata"]["width"] > 0
        names = [stage["name"] for stage in row["stages"]]
        assert "probe" in names
        assert names[-1] == "publish"
        # The checksum plugin, installed with pip by `make test`, ran with no change to mediamill.
        assert "checksum" in names
        assert len(row["metadata"]["sha256"]) == 64
        # thumbnail is not for videos, transcode not for photos: those two are skipped. Only the
        # stages this test knows count: other plugins installed in the venv may skip too.
        ours = [s for s in row["stages"] if s["name"] in KNOWN_STAGES]
        assert all(stage["outcome"] in ("ok", "skipped") for stage in ours)
        skipped = {stage["name"] for stage in ours if stage["outcome"] == "skipped"}
        assert skipped == ({"transcode"} if row["kind"] == "image" else {"thumbnail", "motion"})
        for rendition in row["renditions"]:
            assert Path(rendition["path"]).stat().st_size == rendition["bytes"]


def test_demo_reports_failed_and_refused_files_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    good = write_png(tmp_path / "in" / "ok.png", 40, 30)
    fake = tmp_path / "in" / "fake.jpg"
    fake.write_bytes(b"%PDF-1.7\n" + b"0" * 200)

    run = mediamill("demo", "--json", "--out", str(tmp_path / "out"), str(good.parent))

    assert run.returncode == 0, run.stderr[-3000:]
    by_name = {Path(r["file"]).name: r for r in results(run.stdout)}
    assert by_name["ok.png"]["status"] == "READY"
    # The owner's whole view, and a folder named after the file, extension kept.
    assert {"location", "warnings"} <= set(by_name["ok.png"])
    assert all("outcome" in stage for stage in by_name["ok.png"]["stages"])
    assert {Path(r["path"]).parent.name for r in by_name["ok.png"]["renditions"]} == {"ok.png"}
    assert by_name["fake.jpg"]["status"] == "FAILED"
    assert by_name["fake.jpg"]["error"].startswith("unsupported media type")

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    refused = mediamill("demo", "--json", "--out", str(tmp_path / "out2"), str(text))
    assert refused.returncode == 1
    [row] = results(refused.stdout)
    assert row["status"] == "REJECTED"
    assert "text/plain" in row["error"]


def test_demo_uploads_files_above_the_threshold_in_parts(tmp_path: Path) -> None:
    small = write_png(tmp_path / "small.png", 4, 3)
    big = write_png(tmp_path / "big.png", 300, 200)
    threshold = small.stat().st_size
    assert big.stat().st_size > threshold

    run = mediamill(
        "demo",
        "--json",
        "--out",
        str(tmp_path / "out"),
        str(small),
        str(big),
        # The upload path is what is under test: the fewest stages that end an item READY.
        env={
            "MEDIAMILL_MULTIPART_THRESHOLD_BYTES": str(threshold),
            "MEDIAMILL_STAGES": "probe,publish",
        },
    )

    assert run.returncode == 0, run.stderr[-3000:]
    by_name = {Path(r["file"]).name: r for r in results(run.stdout)}
    assert by_name["small.png"]["upload"] == "post"
    assert by_name["big.png"]["upload"] == "multipart"
    # S3's CompleteMultipartUpload event reached the worker like any other upload.
    assert by_name["big.png"]["status"] == "READY", by_name["big.png"]
    assert by_name["big.png"]["metadata"]["width"] == 300


def test_dev_prints_its_endpoints_first_and_stops_cleanly_on_sigint() -> None:
    with dev_process() as (process, first):
        assert set(first) >= {"api", "aws", "metrics", "resources"}
        # moto serves from a process of its own, the one listening on the printed endpoint.
        emulator = first["emulator"]
        assert emulator["mode"] == "process"
        assert emulator["pid"] != process.pid
        assert listens_on(emulator["pid"], int(first["aws"].rsplit(":", 1)[1]))
        assert Path(emulator["log"]).is_file()
        assert first["resources"]["queue_url"]
        with urllib.request.urlopen(first["metrics"], timeout=10) as response:
            assert b"mediamill_jobs_in_flight" in response.read()
        request = urllib.request.Request(f"{first['api']}/media/{'0' * 32}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401  # no token: nobody gets in
        # The example it prints works as printed.
        assert first["example_curl"].endswith(f"{first['api']}/media")
        assert first["example_token"] in first["example_curl"]
        listing = urllib.request.Request(
            f"{first['api']}/media", headers={"Authorization": f"Bearer {first['example_token']}"}
        )
        with urllib.request.urlopen(listing, timeout=10) as response:
            assert json.loads(response.read())["items"] == []
        assert interrupt(process) == 0
        assert not alive(emulator["pid"])  # stopped with the stack, not left behind


def test_dev_can_still_run_moto_on_threads_of_its_own_process() -> None:
    with dev_process("--no-worker", "--emulator", "inprocess") as (process, first):
        assert first["emulator"] == {"mode": "inprocess", "pid": process.pid, "log": None}
        assert listens_on(process.pid, int(first["aws"].rsplit(":", 1)[1]))
        assert interrupt(process) == 0


def test_demo_rerun_replaces_its_folders_and_the_table_survives_a_pipe(tmp_path: Path) -> None:
    photo = write_png(tmp_path / "a-rather-long-file-name-for-a-table.png", 40, 30)
    out = tmp_path / "out"
    for _ in range(2):
        run = mediamill("demo", "--out", str(out), str(photo))
        assert run.returncode == 0, run.stderr[-3000:]
    assert [p.name for p in out.iterdir()] == [photo.name]
    # Piped: one row per file, the name whole, not folded into an 80-column squeeze.
    assert any(photo.name in line and "READY" in line for line in run.stdout.splitlines())


@pytest.mark.parametrize("emulator", ["process", "inprocess"])
def test_dev_interrupted_the_moment_it_says_ready_stops_cleanly(emulator: str) -> None:
    # Whoever reads the ready line may stop it at once: it listens for the signal before then.
    with dev_process("--no-worker", "--emulator", emulator) as (process, first):
        assert first["emulator"]["mode"] == emulator
        assert interrupt(process) == 0
