"""Plugins written against `from stages import ...` keep working, and the built-ins load by name."""

from __future__ import annotations

import tomllib
from importlib import import_module
from pathlib import Path

import stages
from stages import contract

ROOT = Path(__file__).resolve().parents[2]


def test_the_contract_is_importable_from_stages_as_plugins_import_it() -> None:
    from stages import (  # noqa: F401  (the line a plugin writes)
        ALL_KINDS,
        BadMediaError,
        Job,
        MediaKind,
        Rendition,
        Stage,
        StageContext,
        StageOptions,
        StageResult,
        TransientError,
    )

    assert stages.__all__
    for name in stages.__all__:
        assert getattr(stages, name) is getattr(contract, name)


def test_every_built_in_entry_point_names_a_stage_in_its_own_room() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for name, target in project["entry-points"]["mediamill.stages"].items():
        module, attribute = target.split(":")
        stage = getattr(import_module(module), attribute)
        assert issubclass(stage, contract.Stage)
        assert stage.name == name
