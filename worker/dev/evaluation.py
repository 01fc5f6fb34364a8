"""A template evaluated for one stack: conditions, intrinsic functions, and the order of creation.

Evaluation is lazy: only what a provisioned resource needs is resolved, so a cloud-only part of
the template (an image URI with no default, say) never has to resolve on a laptop.
"""

from __future__ import annotations

import base64
import graphlib
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.dev.template import (
    DependencyCycle,
    ParameterError,
    ParameterValue,
    Resource,
    Template,
    TemplateError,
    UnknownReference,
    UnsupportedFunction,
    as_text,
    parameter_values,
)


class _NoValue:
    """``Ref: AWS::NoValue``: the property or list item it stands in for is removed."""


NO_VALUE = _NoValue()


@dataclass(frozen=True, slots=True)
class Pseudo:
    """What CloudFormation's pseudo parameters are for one stack in one account and region."""

    stack_name: str
    account_id: str
    region: str

    @property
    def partition(self) -> str:
        if self.region.startswith("cn-"):
            return "aws-cn"
        return "aws-us-gov" if self.region.startswith("us-gov-") else "aws"

    @property
    def url_suffix(self) -> str:
        return "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"

    def values(self) -> dict[str, Any]:
        stack_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.account_id}/{self.stack_name}")
        return {
            "AWS::StackName": self.stack_name,
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": self.url_suffix,
            "AWS::StackId": f"arn:{self.partition}:cloudformation:{self.region}:"
            f"{self.account_id}:stack/{self.stack_name}/{stack_id}",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }


@dataclass(frozen=True, slots=True)
class Made:
    """What a resource answers to ``Ref`` and ``Fn::GetAtt``, once made or stood in for."""

    ref: str
    attributes: Mapping[str, Any]


StandIn = Callable[["Evaluation", Resource], Made | None]
_SUB = re.compile(r"\$\{([^}]*)\}")


class Evaluation:
    """One stack's reading of a template: parameter values, conditions, the resources made so far.

    ``stand_in`` answers for a resource that is not made locally (a cloud-only one) with a
    placeholder, or returns None for one that must be made before it is referenced.
    """

    def __init__(
        self,
        template: Template,
        pseudo: Pseudo,
        parameters: Mapping[str, ParameterValue] | None = None,
        *,
        stand_in: StandIn,
    ) -> None:
        self.template = template
        self.pseudo = pseudo
        self.made: dict[str, Made] = {}
        self._pseudo = pseudo.values()
        self._parameters = parameter_values(template, parameters or {})
        self._stand_in = stand_in
        self._conditions: dict[str, bool] = {}
        self._evaluating: list[str] = []

    # -- conditions ------------------------------------------------------------------------------
    def included(self, resource: Resource) -> bool:
        """Whether the resource's Condition (if any) holds for this stack."""
        if resource.condition is None:
            return True
        return self.condition(resource.condition, f"{resource.logical_id}.Condition")

    def condition(self, name: str, where: str) -> bool:
        if name in self._conditions:
            return self._conditions[name]
        if name not in self.template.conditions:
            raise UnknownReference(f"{where}: no condition named {name} under Conditions")
        if name in self._evaluating:
            circle = " -> ".join([*self._evaluating[self._evaluating.index(name) :], name])
            raise DependencyCycle(f"{where}: conditions refer to each other in a circle: {circle}")
        self._evaluating.append(name)
        try:
            held = self._truth(self.template.conditions[name], f"Conditions.{name}")
        finally:
            self._evaluating.pop()
        self._conditions[name] = held
        return held

    def _truth(self, expression: Any, where: str) -> bool:
        if isinstance(expression, dict) and len(expression) == 1:
            [(function, argument)] = expression.items()
            if function == "Condition":
                return self.condition(argument, where)
            if function == "Fn::Equals" and _pair(argument):
                left, right = (self.resolve(side, where) for side in argument)
                return bool(_text_or_list(left, where) == _text_or_list(right, where))
            if function == "Fn::Not" and isinstance(argument, list) and len(argument) == 1:
                return not self._truth(argument[0], where)
            if function in ("Fn::And", "Fn::Or") and isinstance(argument, list):
                held = [self._truth(part, f"{where}.{function}") for part in argument]
                return all(held) if function == "Fn::And" else any(held)
        raise TemplateError(
            f"{where}: a condition is Fn::Equals [a, b], Fn::And, Fn::Or, Fn::Not [x] or "
            f"Condition, not {expression!r}"
        )

    # -- intrinsic functions ---------------------------------------------------------------------
    def resolve(self, value: Any, where: str) -> Any:
        """``value`` with every intrinsic function evaluated (``NO_VALUE`` items dropped)."""
        if isinstance(value, dict):
            if len(value) == 1:
                [(key, argument)] = value.items()
                if key == "Ref" or key.startswith("Fn::"):
                    return self._function(key, argument, where)
            resolved = {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            items = (self.resolve(v, f"{where}[{i}]") for i, v in enumerate(value))
            return [item for item in items if item is not NO_VALUE]
        return value

    def _function(self, name: str, argument: Any, at: str) -> Any:
        where = f"{at}.{name}"
        if name == "Ref":
            return self.ref(self.resolve(argument, where), where)
        if name == "Fn::GetAtt":
            target = self.resolve(argument, where)
            if isinstance(target, str):
                target = target.split(".", 1)  # the long form may be written "LogicalId.Attribute"
            if not (_pair(target) and all(isinstance(part, str) for part in target)):
                raise TemplateError(f"{where}: takes [LogicalId, Attribute], not {argument!r}")
            return self.get_att(target[0], target[1], where)
        if name == "Fn::Sub":
            return self._sub(argument, where)
        if name == "Fn::If":
            if not (isinstance(argument, list) and len(argument) == 3):
                raise TemplateError(f"{where}: takes [Condition, if true, if false]")
            taken = argument[1] if self.condition(argument[0], where) else argument[2]
            return self.resolve(taken, where)
        simple: dict[str, Callable[[Any, str], Any]] = {
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::GetAZs": self._get_azs,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Base64": self._base64,
        }
        if name not in simple:
            raise UnsupportedFunction(
                f"{at}: {name} cannot be evaluated outside CloudFormation; the dev stack "
                f"evaluates Ref, {', '.join(['Fn::GetAtt', 'Fn::Sub', 'Fn::If', *simple])}"
            )
        return simple[name](self.resolve(argument, where), where)

    def ref(self, name: str, where: str) -> Any:
        if not isinstance(name, str):
            raise TemplateError(f"{where}: Ref takes a name, not {name!r}")
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self.template.parameters:
            if name not in self._parameters:
                raise ParameterError(
                    f"{where}: parameter {name} has no Default and the dev stack was given no value"
                )
            value = self._parameters[name]
            return list(value) if isinstance(value, list) else value
        return self._made(name, where).ref

    def get_att(self, logical_id: str, attribute: str, where: str) -> Any:
        made = self._made(logical_id, where)
        if attribute not in made.attributes:
            kind = self.template.resources[logical_id].type
            raise UnknownReference(
                f"{where}: {logical_id} ({kind}) has no attribute {attribute} here; it has "
                f"{', '.join(sorted(made.attributes)) or 'none'}"
            )
        return made.attributes[attribute]

    def _made(self, logical_id: str, where: str) -> Made:
        resource = self.template.resources.get(logical_id)
        if resource is None:
            raise UnknownReference(
                f"{where}: {logical_id} is not a resource, parameter or pseudo parameter"
            )
        if not self.included(resource):
            raise UnknownReference(
                f"{where}: {logical_id} is left out by its condition {resource.condition}"
            )
        if logical_id not in self.made:
            stand_in = self._stand_in(self, resource)
            if stand_in is None:
                raise TemplateError(f"{where}: {logical_id} is needed before it has been made")
            self.made[logical_id] = stand_in
        return self.made[logical_id]

    def _sub(self, argument: Any, where: str) -> str:
        text, variables = _sub_parts(argument, where)
        values = {name: self.resolve(value, f"{where}.{name}") for name, value in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} is written as ${Literal}
            if name in values:
                value = values[name]
            elif "." in name:
                logical_id, attribute = name.split(".", 1)
                value = self.get_att(logical_id, attribute, where)
            else:
                value = self.ref(name, where)
            return as_text(value, f"{where}: ${{{name}}}")

        return _SUB.sub(substitute, text)

    def _join(self, argument: Any, where: str) -> str:
        if not (_pair(argument) and isinstance(argument[1], list)):
            raise TemplateError(f"{where}: takes [delimiter, [values]]")
        parts = [as_text(part, f"{where}[{i}]") for i, part in enumerate(argument[1])]
        return as_text(argument[0], where).join(parts)

    def _select(self, argument: Any, where: str) -> Any:
        if not (_pair(argument) and isinstance(argument[1], list)):
            raise TemplateError(f"{where}: takes [index, [values]]")
        try:
            return argument[1][int(argument[0])]
        except (ValueError, IndexError):
            raise TemplateError(f"{where}: no item {argument[0]!r} in {argument[1]!r}") from None

    def _split(self, argument: Any, where: str) -> list[str]:
        if not _pair(argument):
            raise TemplateError(f"{where}: takes [delimiter, text]")
        return as_text(argument[1], where).split(as_text(argument[0], where))

    def _get_azs(self, argument: Any, where: str) -> list[str]:
        region = as_text(argument, where) or self.pseudo.region
        return [f"{region}{zone}" for zone in "abc"]

    def _base64(self, argument: Any, where: str) -> str:
        return base64.b64encode(as_text(argument, where).encode()).decode()

    def _find_in_map(self, argument: Any, where: str) -> Any:
        if not (isinstance(argument, list) and len(argument) == 3):
            raise TemplateError(f"{where}: takes [MapName, TopLevelKey, SecondLevelKey]")
        found: Any = self.template.mappings
        for key in argument:
            if not isinstance(found, dict) or as_text(key, where) not in found:
                raise UnknownReference(f"{where}: Mappings has no {'.'.join(map(str, argument))}")
            found = found[as_text(key, where)]
        return found

    # -- order -----------------------------------------------------------------------------------
    def dependencies(self, resource: Resource) -> set[str]:
        """The resources this one needs made first: its DependsOn and every Ref, GetAtt and Sub
        reference to a resource (only the branch of an Fn::If its condition takes)."""
        where = f"{resource.logical_id}.DependsOn"
        for name in resource.depends_on:
            self._made_or_pending(name, where)
        found = set(resource.depends_on)
        self._collect(resource.properties, found, f"{resource.logical_id}.Properties")
        return found

    def _collect(self, value: Any, found: set[str], where: str) -> None:
        if isinstance(value, list):
            for i, item in enumerate(value):
                self._collect(item, found, f"{where}[{i}]")
            return
        if not isinstance(value, dict):
            return
        [(key, argument)] = value.items() if len(value) == 1 else [("", None)]
        if key == "Ref" and isinstance(argument, str):
            self._note(argument, found, f"{where}.Ref")
        elif key == "Fn::GetAtt" and isinstance(argument, list | str) and argument:
            target = argument.split(".", 1)[0] if isinstance(argument, str) else argument[0]
            self._note(target, found, f"{where}.Fn::GetAtt", resource_only=True)
        elif key == "Fn::Sub":
            text, variables = _sub_parts(argument, f"{where}.Fn::Sub")
            for name in _SUB.findall(text):
                if not name.startswith("!") and name not in variables:
                    self._note(name.split(".", 1)[0], found, f"{where}.Fn::Sub", "." in name)
            self._collect(variables, found, f"{where}.Fn::Sub")
        elif key == "Fn::If" and isinstance(argument, list) and len(argument) == 3:
            held = self.condition(argument[0], f"{where}.Fn::If")
            self._collect(argument[1] if held else argument[2], found, f"{where}.Fn::If")
        else:
            for k, v in value.items():
                self._collect(v, found, f"{where}.{k}")

    def _note(self, name: str, found: set[str], where: str, resource_only: bool = False) -> None:
        if not resource_only and (name in self._pseudo or name in self.template.parameters):
            return
        self._made_or_pending(name, where)
        found.add(name)

    def _made_or_pending(self, name: str, where: str) -> None:
        resource = self.template.resources.get(name)
        if resource is None:
            raise UnknownReference(f"{where}: {name} is not a resource the template declares")
        if not self.included(resource):
            raise UnknownReference(f"{where}: {name} is left out by its condition")

    def order(self, logical_ids: Iterable[str]) -> list[str]:
        """``logical_ids`` in an order that makes each resource after those it needs."""
        wanted = list(logical_ids)
        graph = {
            logical_id: sorted(self.dependencies(self.template.resources[logical_id]) & set(wanted))
            for logical_id in wanted
        }
        try:
            return list(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as exc:
            circle = " -> ".join(reversed(exc.args[1]))
            raise DependencyCycle(
                f"{self.template.source}: resources depend on each other in a circle, "
                f"each needing the next: {circle}"
            ) from None


def _sub_parts(argument: Any, where: str) -> tuple[str, Mapping[str, Any]]:
    if isinstance(argument, str):
        return argument, {}
    if _pair(argument) and isinstance(argument[0], str) and isinstance(argument[1], dict):
        return argument[0], argument[1]
    raise TemplateError(f"{where}: takes a text or [text, {{Name: value}}], not {argument!r}")


def _pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2


def _text_or_list(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [_text_or_list(v, where) for v in value]
    return as_text(value, where)
