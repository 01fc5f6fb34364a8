"""Make test stages discoverable, in-process or by a subprocess worker, as an installed plugin
would be: a ``.dist-info`` with entry points in a directory on the path."""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Mapping
from pathlib import Path

from mediamill_testkit.stages import ALL
from stages import Stage

SUPPORT = Path(__file__).resolve().parent.parent


def install_test_stages(site: Path) -> Path:
    """Write a ``.dist-info`` with entry points for the test stages into ``site``.

    Returns the directory to put on PYTHONPATH (with tests/support, where the stages live).
    """
    return install_plugin(site, "mediamill-teststages", "1.0", {cls.name: cls for cls in ALL})


def install_plugin(
    site: Path, distribution: str, version: str, stages: Mapping[str, type[Stage]]
) -> Path:
    """Install (or upgrade, replacing any other version) a distribution registering ``stages``
    in the ``mediamill.stages`` group; the classes must be importable from tests/support."""
    site.mkdir(parents=True, exist_ok=True)
    stem = distribution.replace("-", "_")
    for old in site.glob(f"{stem}-*.dist-info"):
        shutil.rmtree(old)
    dist = site / f"{stem}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
    )
    lines = ["[mediamill.stages]"]
    lines += [f"{name} = {cls.__module__}:{cls.__name__}" for name, cls in stages.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    importlib.invalidate_caches()
    return site


def pythonpath(site: Path) -> str:
    # The tree under test last: a worker process imports it rather than whichever checkout
    # the venv's editable install points at (a git worktree's tests run the worktree's code).
    return f"{site}:{SUPPORT}:{SUPPORT.parent.parent}"
