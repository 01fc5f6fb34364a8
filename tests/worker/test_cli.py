"""The CLI's own surface: --version, and help text without reStructuredText markup."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from worker.cli import main, parser


def test_version_prints_the_distributions_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"mediamill {version('mediamill')}"


def test_help_has_no_restructuredtext_markup() -> None:
    root = parser()
    texts = [root.format_help()]
    for action in root._subparsers._group_actions if root._subparsers else []:
        texts.extend(sub.format_help() for sub in getattr(action, "choices", {}).values())
    assert len(texts) == 7  # the root and its six commands
    for text in texts:
        for markup in ("``", ":mod:", ":class:"):
            assert markup not in text
