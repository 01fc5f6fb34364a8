"""The production worker runs without the dev tooling: no moto stack, local API, demo or rich."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from worker.cli import main

ROOT = Path(__file__).resolve().parents[2]


# Runs in a fresh interpreter: this test process has imported everything already. (rich is left
# out: structlog imports it for tracebacks whenever it is installed; the import contracts in
# `make lint` check that our own production modules never import it.)
_SCRIPT = """
import json, sys
import worker.cli, worker.consumer, worker.registry, worker.publish, worker.health
print(json.dumps(sorted(
    name for name in sys.modules if name.split(".")[0] in ("moto", "api_lambda")
    or name == "worker.dev" or name.startswith("worker.dev.")
)))
"""


def test_the_production_worker_imports_no_dev_tooling() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_moto_and_rich_come_only_with_the_dev_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {r.split("[")[0].split(">")[0].split("=")[0].split("<")[0] for r in requirements}

    extras = project["optional-dependencies"]
    production = names(project["dependencies"]) | names(extras["worker"])
    assert not production & {"moto", "rich"}
    assert {"moto", "rich"} <= names(extras["dev-stack"])
    assert "mediamill[dev-stack]" in extras["dev"]


def test_stages_prints_a_plain_table_without_rich(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("rich", "rich.console", "rich.table"):
        monkeypatch.setitem(sys.modules, name, None)  # what `import rich` finds when absent

    assert main(["stages"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "mediamill stages (entry-point group mediamill.stages)"
    assert lines[1].split() == [
        "name",
        "version",
        "distribution",
        "kinds",
        "requires",
        "flags",
        "timeout",
    ]
    assert any(line.startswith("publish ") for line in lines[2:])
