"""The CLI's own surface: --version, help text without reStructuredText markup, clear errors."""

from __future__ import annotations

import argparse
import socket
from importlib.metadata import version

import pytest

from worker.cli import main, parser


def test_version_prints_the_distributions_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"mediamill {version('mediamill')}"


def _helps(command: argparse.ArgumentParser, path: str = "mediamill") -> dict[str, str]:
    """Every command's and subcommand's help, by its path."""
    texts = {path: command.format_help()}
    for action in command._subparsers._group_actions if command._subparsers else []:
        for name, sub in getattr(action, "choices", {}).items():
            texts |= _helps(sub, f"{path} {name}")
    return texts


def test_help_has_no_restructuredtext_markup() -> None:
    texts = _helps(parser())
    assert {
        "mediamill worker",
        "mediamill stages",
        "mediamill health",
        "mediamill dlq list",
        "mediamill dlq show",
        "mediamill dlq redrive",
        "mediamill dlq purge",
        "mediamill inspect",
        "mediamill reprocess",
        "mediamill dev",
        "mediamill demo",
    } <= set(texts)
    for text in texts.values():
        for markup in ("``", ":mod:", ":class:"):
            assert markup not in text


def test_a_taken_metrics_port_is_a_clear_error_not_a_trace(
    stack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A second worker on one machine finds 9100 taken: it says which setting moves it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for name, value in stack_env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("MEDIAMILL_METRICS_HOST", "127.0.0.1")
        monkeypatch.setenv("MEDIAMILL_METRICS_PORT", str(port))
        status = main(["worker", "--burst"])
    error = capsys.readouterr().err
    assert status == 2
    assert f"127.0.0.1:{port}" in error
    assert "MEDIAMILL_METRICS_PORT" in error
    assert "Traceback" not in error
