"""The CloudFormation template, decoded as cfn-lint reads it, with a small intrinsic resolver."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "deploy" / "ecs" / "template.yaml"
# What the pseudo parameters resolve to in these tests.
PSEUDO = {
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "mediamill",
    "AWS::URLSuffix": "amazonaws.com",
}
_SUB = re.compile(r"\$\{([^}!]+)\}")


class Template:
    """The decoded template; ``resolve`` evaluates the intrinsics the tests need to compare."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.resources: dict[str, dict[str, Any]] = data["Resources"]
        self.parameters: dict[str, dict[str, Any]] = data.get("Parameters", {})

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.resources[logical_id].get("Properties", {})

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            name: resource
            for name, resource in self.resources.items()
            if resource["Type"] == resource_type
        }

    def container(self, name: str) -> dict[str, Any]:
        for entry in self.properties("WorkerTaskDefinition")["ContainerDefinitions"]:
            if "Fn::If" in entry:  # an optional sidecar: its "true" branch
                entry = entry["Fn::If"][1]
            if entry["Name"] == name:
                return entry
        raise KeyError(name)

    def environment(self, container: str) -> dict[str, Any]:
        """A container's environment, name to (unresolved) value."""
        return {item["Name"]: item["Value"] for item in self.container(container)["Environment"]}

    def resolve(self, value: Any, **parameters: str) -> Any:
        """Parameters take their default (or the value given); resources become ``<Id>``."""
        if isinstance(value, list):
            return [self.resolve(item, **parameters) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(item, **parameters) for key, item in value.items()}
        ((function, argument),) = value.items()
        if function == "Ref":
            return self._ref(str(argument), parameters)
        if function == "Fn::GetAtt":
            target = argument if isinstance(argument, list) else str(argument).split(".", 1)
            return f"<{target[0]}.{target[1]}>"
        if function == "Fn::Join":
            separator, items = argument
            return separator.join(str(item) for item in self.resolve(items, **parameters))
        if function == "Fn::Sub":
            text = argument if isinstance(argument, str) else argument[0]

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if "." in name:
                    return f"<{name}>"
                resolved = self._ref(name, parameters)
                return ",".join(resolved) if isinstance(resolved, list) else str(resolved)

            return _SUB.sub(substitute, text)
        return {function: self.resolve(argument, **parameters)}

    def _ref(self, name: str, parameters: dict[str, str]) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            declared = self.parameters[name]
            raw = parameters.get(name, declared.get("Default"))
            if raw is None:
                return f"<{name}>"
            if declared["Type"] == "CommaDelimitedList" or declared["Type"].startswith("List<"):
                return [part.strip() for part in str(raw).split(",")]
            return str(raw)
        if name in self.resources:
            return f"<{name}>"
        raise KeyError(f"Ref to {name}, which the template does not declare")


@pytest.fixture(scope="session")
def template() -> Template:
    data, problems = decode(str(TEMPLATE_PATH))
    assert not problems, [str(problem) for problem in problems]
    assert data is not None
    return Template(data)
