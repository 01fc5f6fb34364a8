"""The example parameters file deploys: every required parameter, values the template accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "ecs" / "parameters.example.json"


def _example() -> dict[str, str]:
    entries = json.loads(EXAMPLE.read_text())
    return {entry["ParameterKey"]: entry["ParameterValue"] for entry in entries}


def test_the_example_names_every_required_parameter_and_no_others(template: Any) -> None:
    example = _example()
    required = {name for name, spec in template.parameters.items() if "Default" not in spec}
    assert required <= set(example), f"no value for {required - set(example)}"
    assert set(example) <= set(template.parameters)


def test_the_example_values_meet_the_parameters_constraints(template: Any) -> None:
    for name, value in _example().items():
        spec = template.parameters[name]
        values = value.split(",") if spec["Type"] == "CommaDelimitedList" else [value]
        for item in values:
            if "AllowedValues" in spec:
                assert item in [str(allowed) for allowed in spec["AllowedValues"]], name
            if "AllowedPattern" in spec:
                assert re.fullmatch(spec["AllowedPattern"], item), name
            if "MinValue" in spec:
                assert float(item) >= spec["MinValue"], name
            if "MinLength" in spec:
                assert len(item) >= spec["MinLength"], name


def test_the_example_task_size_passes_the_rules(template: Any) -> None:
    """Fn::Contains rules on TaskCpu decide which TaskMemory values may go with it."""
    example = _example()
    cpu = example.get("TaskCpu", template.parameters["TaskCpu"]["Default"])
    memory = example.get("TaskMemory", template.parameters["TaskMemory"]["Default"])
    matching = [
        rule
        for rule in template.data["Rules"].values()
        if rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "TaskCpu"}, cpu]}
    ]
    assert len(matching) == 1
    (assertion,) = matching[0]["Assertions"]
    allowed, ref = assertion["Assert"]["Fn::Contains"]
    assert ref == {"Ref": "TaskMemory"}
    assert memory in allowed


def test_every_cpu_size_has_its_rule_and_every_rule_a_memory_the_parameter_allows(
    template: Any,
) -> None:
    cpus = set(template.parameters["TaskCpu"]["AllowedValues"])
    memories = set(template.parameters["TaskMemory"]["AllowedValues"])
    covered = set()
    for rule in template.data["Rules"].values():
        covered.add(rule["RuleCondition"]["Fn::Equals"][1])
        allowed = rule["Assertions"][0]["Assert"]["Fn::Contains"][0]
        assert set(allowed) <= memories
    assert covered == cpus
