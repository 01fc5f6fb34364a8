"""deploy/ecs/template.yaml as the dev stack reads it: YAML with CloudFormation's tags, parameters.

`worker.dev.evaluation` evaluates what is read (conditions, intrinsic functions, order);
`worker.dev.resources` makes the resource types moto serves and stands in for the rest.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The production template; the dev stack reads it from the source tree it runs from.
TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "deploy" / "ecs" / "template.yaml"

ParameterValue = str | int | float | bool | list[str] | tuple[str, ...]


class TemplateError(Exception):
    """The template cannot be read or provisioned as written; the message says where."""


class UnknownReference(TemplateError):
    """A Ref, GetAtt, Sub, DependsOn or condition names something the template does not declare."""


class DependencyCycle(TemplateError):
    """Resources, or conditions, that depend on each other in a circle."""


class UnsupportedFunction(TemplateError):
    """An intrinsic function that cannot be evaluated without CloudFormation itself."""


class ParameterError(TemplateError):
    """A parameter has no value where one is needed, or a value its constraints refuse."""


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML with CloudFormation's short-form tags (``!Ref``, ``!Sub`` ...) as their long forms."""


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _short_form)
# CloudFormation reads an unquoted 2012-10-17 as text, not as a date.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True, slots=True)
class Resource:
    logical_id: str
    type: str
    properties: Mapping[str, Any]
    condition: str | None
    depends_on: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    parameters: Mapping[str, Mapping[str, Any]]
    conditions: Mapping[str, Any]
    mappings: Mapping[str, Any]
    resources: Mapping[str, Resource]

    @classmethod
    def parse(cls, text: str, source: str = "<template>") -> Template:
        try:
            body = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader with CFN's tags)
        except yaml.YAMLError as exc:
            raise TemplateError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("Resources"), dict):
            raise TemplateError(f"{source}: a template needs a Resources section")
        if "Transform" in body:
            raise TemplateError(
                f"{source}: Transform {body['Transform']!r} runs inside CloudFormation only; "
                "the dev stack reads templates without macros"
            )
        resources: dict[str, Resource] = {}
        for logical_id, raw in body["Resources"].items():
            if not isinstance(raw, dict) or not isinstance(raw.get("Type"), str):
                raise TemplateError(f"{source}: resource {logical_id} has no Type")
            depends = raw.get("DependsOn", ())
            resources[logical_id] = Resource(
                logical_id=logical_id,
                type=raw["Type"],
                properties=raw.get("Properties") or {},
                condition=raw.get("Condition"),
                depends_on=(depends,) if isinstance(depends, str) else tuple(depends),
            )
        return cls(
            source=source,
            parameters=body.get("Parameters") or {},
            conditions=body.get("Conditions") or {},
            mappings=body.get("Mappings") or {},
            resources=resources,
        )


def load_template(path: Path = TEMPLATE_PATH) -> Template:
    """The template at ``path``, parsed once per process: every test's stack reads the same one."""
    return _parsed(path.resolve())


@functools.cache
def _parsed(path: Path) -> Template:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise TemplateError(
            f"{path} is missing: the dev stack provisions from deploy/ecs/template.yaml and runs "
            "from a source checkout of mediamill"
        ) from None
    return Template.parse(text, source=str(path))


def parameter_values(
    template: Template, overrides: Mapping[str, ParameterValue]
) -> dict[str, str | list[str]]:
    """Each parameter's value: the caller's, else its Default; checked as CloudFormation checks
    them. One without either is left out, an error only where something needs it."""
    unknown = sorted(set(overrides) - set(template.parameters))
    if unknown:
        raise ParameterError(f"{template.source}: no parameter named {', '.join(unknown)}")
    values: dict[str, str | list[str]] = {}
    for name, spec in template.parameters.items():
        if name in overrides:
            values[name] = _checked(name, spec, overrides[name], template.source)
        elif "Default" in spec and not str(spec.get("Type", "")).startswith("AWS::SSM::"):
            # SSM parameter types are looked up in Parameter Store by CloudFormation: left
            # without a value, so only a provisioned resource that needs one fails.
            values[name] = _checked(name, spec, spec["Default"], template.source)
    return values


def _checked(name: str, spec: Mapping[str, Any], raw: Any, source: str) -> str | list[str]:
    """A parameter's value as CloudFormation passes it on (text, or a list of text), checked
    against the constraints the template declares."""
    kind = str(spec.get("Type", "String"))
    where = f"{source}: parameter {name}"
    listed = kind == "CommaDelimitedList" or kind.startswith("List<")
    if listed:
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        value: str | list[str] = [as_text(item, where).strip() for item in items]
    else:
        value = as_text(raw, where)
    for item in value if isinstance(value, list) else [value]:
        _check_one(item, kind, spec, where)
    return value


def _check_one(item: str, kind: str, spec: Mapping[str, Any], where: str) -> None:
    if kind in ("Number", "List<Number>"):
        try:
            number = float(item)
        except ValueError:
            raise ParameterError(f"{where}: {item!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise ParameterError(f"{where}: {item} is below its MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise ParameterError(f"{where}: {item} is above its MaxValue {spec['MaxValue']}")
    allowed = [as_text(v, where) for v in spec.get("AllowedValues", [])]
    if allowed and item not in allowed:
        raise ParameterError(f"{where}: {item!r} is not one of {', '.join(allowed)}")
    if "AllowedPattern" in spec and not re.fullmatch(str(spec["AllowedPattern"]), item):
        raise ParameterError(f"{where}: {item!r} does not match {spec['AllowedPattern']}")
    if "MinLength" in spec and len(item) < int(spec["MinLength"]):
        raise ParameterError(f"{where}: {item!r} is shorter than its MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(item) > int(spec["MaxLength"]):
        raise ParameterError(f"{where}: {item!r} is longer than its MaxLength {spec['MaxLength']}")


def as_text(value: Any, where: str) -> str:
    """A scalar as CloudFormation writes it into text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{where}: needs text, not {value!r}")
