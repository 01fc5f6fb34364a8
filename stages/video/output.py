"""The output side of a transcode: the MP4 being written, and what its failures mean.

Writing can fail because of our own disk (no space, an I/O error, a file size limit): that is
never the upload's fault, so it is a ``TransientError`` (retried later) and the partial file is
deleted. Tolerance for damaged input belongs to the demuxer and decoders alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import pyvips
from av.container import OutputContainer

from stages.contract import TransientError

_VIPS_SYSTEM_ERROR = "system error: "  # how libvips quotes strerror(errno)


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """Turn the errors of writing ``what`` into a ``TransientError``.

    Any OSError or FFmpeg error; of libvips' errors (the stills), those that carry the
    system's refusal: any other libvips error on a picture we made is a bug, and raises as one.
    """
    try:
        yield
    except (OSError, av.error.FFmpegError) as error:
        raise TransientError(f"writing {what} failed: {error_reason(error)}") from error
    except pyvips.Error as error:
        refusal = _system_error(error)
        if refusal is None:
            raise
        raise TransientError(f"writing {what} failed: {refusal}") from error


@contextlib.contextmanager
def mp4_output(path: Path) -> Iterator[OutputContainer]:
    """An MP4 with ``faststart``; when the body or the trailer fails, no file stays.

    Closing the Python file first makes PyAV skip the trailer, which with ``faststart`` would
    copy everything written so far once more: a cancelled job must stop within seconds.
    """
    with writing("the video"):
        file: BinaryIO = path.open("wb")
    try:
        with writing("the video"):
            output = av.open(file, mode="w", format="mp4", options={"movflags": "+faststart"})
    except BaseException:
        _discard(file, None, path)
        raise
    try:
        yield output
        with writing("the end of the video"):
            output.close()
            file.close()
    except BaseException:
        _discard(file, output, path)
        raise


def _discard(file: BinaryIO, output: OutputContainer | None, path: Path) -> None:
    # A full disk fails the buffered file's last flush too; it is closed all the same.
    with contextlib.suppress(OSError):
        file.close()
    if output is not None:
        with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
            output.close()
    path.unlink(missing_ok=True)


def error_reason(error: BaseException) -> str:
    """FFmpeg's words for an error ("Invalid data found when processing input"), else its text."""
    if isinstance(error, av.error.FFmpegError):
        return str(error.strerror or error)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def _system_error(error: pyvips.Error) -> str | None:
    """The OS's words in a libvips error ("system error: No space left on device"), if any."""
    for line in str(error.detail or error.message).splitlines():
        _, found, refusal = line.partition(_VIPS_SYSTEM_ERROR)
        if found and refusal.strip():
            return refusal.strip()
    return None
