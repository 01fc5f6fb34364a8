"""Make test stages discoverable by a subprocess worker, as an installed plugin would be."""

from __future__ import annotations

from pathlib import Path

from mediamill_testkit.stages import ALL

SUPPORT = Path(__file__).resolve().parent.parent


def install_test_stages(site: Path) -> Path:
    """Write a ``.dist-info`` with entry points for the test stages into ``site``.

    Returns the directory to put on PYTHONPATH (with tests/support, where the stages live).
    """
    dist = site / "mediamill_teststages-1.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mediamill-teststages\nVersion: 1.0\n"
    )
    lines = ["[mediamill.stages]"]
    lines += [f"{cls.name} = mediamill_testkit.stages:{cls.__name__}" for cls in ALL]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def pythonpath(site: Path) -> str:
    # The tree under test last: a worker process imports it rather than whichever checkout
    # the venv's editable install points at (a git worktree's tests run the worktree's code).
    return f"{site}:{SUPPORT}:{SUPPORT.parent.parent}"
