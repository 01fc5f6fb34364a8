"""Stage discovery through the ``mediamill.stages`` entry-point group, and the DAG checks.

Built-in stages are found the same way as a third party's: both are entry points. The worker
refuses to start on an unknown dependency, a cycle, a duplicate name or an undeclared option.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError

from mediamill_core.settings import SQS_MAX_VISIBILITY, Settings, SettingsError
from stages.contract import ALL_KINDS, Stage, StageContext

ENTRY_POINT_GROUP = "mediamill.stages"
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,47}$")


class RegistryError(Exception):
    """The installed or enabled stages do not form a valid pipeline."""


@dataclass(frozen=True, slots=True)
class LoadedStage:
    """A stage instance and where it came from."""

    stage: Stage
    distribution: str | None = None
    distribution_version: str | None = None
    entry_point: str | None = None

    @property
    def name(self) -> str:
        return self.stage.name


def _check_class(obj: object, origin: str) -> type[Stage]:
    if not (isinstance(obj, type) and issubclass(obj, Stage)):
        raise RegistryError(f"{origin} is not a Stage subclass (got {obj!r})")
    for attr in ("name", "version"):
        if not isinstance(getattr(obj, attr, None), str):
            raise RegistryError(f"{origin}: stage class must set '{attr}' to a string")
    if not _STAGE_NAME.match(obj.name):
        raise RegistryError(
            f"{origin}: stage name {obj.name!r} must be lower-case letters, digits, '_' or '-'"
        )
    if obj.timeout <= 0:
        raise RegistryError(f"{origin}: stage {obj.name!r} timeout must be positive")
    overridden = "run_sync" if obj.cpu_bound else "run"
    if getattr(obj, overridden) is getattr(Stage, overridden):
        raise RegistryError(
            f"{origin}: stage {obj.name!r} is {'cpu_bound' if obj.cpu_bound else 'async'} "
            f"and must override {overridden}()"
        )
    if not obj.kinds or not obj.kinds <= ALL_KINDS:
        raise RegistryError(f"{origin}: stage {obj.name!r} declares no valid media kinds")
    reads = obj.reads_renditions
    if reads is not None and not (
        isinstance(reads, frozenset) and all(isinstance(name, str) for name in reads)
    ):
        raise RegistryError(
            f"{origin}: stage {obj.name!r} reads_renditions must be None or a frozenset of "
            f"rendition names (got {reads!r})"
        )
    return obj


def instantiate(cls: type[Stage], options: Mapping[str, Any] | None, origin: str) -> Stage:
    """Build a stage with its validated options; unknown options are refused here."""
    try:
        parsed = cls.Options(**(options or {}))
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}"
            for err in exc.errors()
        )
        raise RegistryError(
            f"invalid options for stage {cls.name!r} in MEDIAMILL_STAGE_OPTIONS: {detail}"
        ) from None
    if parsed.retry is not None and not cls.optional:
        raise RegistryError(
            f"invalid options for stage {cls.name!r} in MEDIAMILL_STAGE_OPTIONS: retry: only an "
            "optional stage retries in-process; a required one is retried with its message"
        )
    return cls(parsed)


def discover(
    enabled: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    found: Iterable[EntryPoint] | None = None,
) -> list[LoadedStage]:
    """Load the stages registered in the entry-point group (only ``enabled`` ones, if given)."""
    options = options or {}
    points = list(found if found is not None else entry_points(group=ENTRY_POINT_GROUP))
    by_name: dict[str, EntryPoint] = {}
    for point in points:
        if point.name in by_name:
            first, second = by_name[point.name], point
            raise RegistryError(
                f"duplicate stage name {point.name!r}: registered by "
                f"{_dist_label(first)} ({first.value}) and {_dist_label(second)} ({second.value})"
            )
        by_name[point.name] = point

    if enabled is not None:
        unknown = [name for name in enabled if name not in by_name]
        if unknown:
            raise RegistryError(
                f"MEDIAMILL_STAGES names stage(s) not installed: {', '.join(unknown)} "
                f"(installed: {', '.join(sorted(by_name)) or 'none'})"
            )
        selected = [by_name[name] for name in dict.fromkeys(enabled)]
    else:
        selected = sorted(by_name.values(), key=lambda p: p.name)

    stray = sorted(set(options) - {point.name for point in selected})
    if stray:
        raise RegistryError(
            f"MEDIAMILL_STAGE_OPTIONS has options for stage(s) not loaded: {', '.join(stray)}"
        )

    loaded = []
    for point in selected:
        origin = f"entry point {point.name!r} ({point.value}) from {_dist_label(point)}"
        try:
            obj = point.load()
        except Exception as exc:
            raise RegistryError(f"cannot load {origin}: {type(exc).__name__}: {exc}") from exc
        cls = _check_class(obj, origin)
        if cls.name != point.name:
            raise RegistryError(f"{origin}: entry point name differs from stage name {cls.name!r}")
        loaded.append(
            LoadedStage(
                stage=instantiate(cls, options.get(point.name), origin),
                distribution=point.dist.name if point.dist else None,
                distribution_version=point.dist.version if point.dist else None,
                entry_point=point.value,
            )
        )
    return loaded


def _dist_label(point: EntryPoint) -> str:
    return f"{point.dist.name} {point.dist.version}" if point.dist else "an unknown distribution"


class StageRegistry:
    """A validated DAG of stages, in a deterministic topological order."""

    def __init__(self, loaded: Sequence[LoadedStage]) -> None:
        self.loaded: dict[str, LoadedStage] = {}
        for item in loaded:
            if item.name in self.loaded:
                raise RegistryError(f"duplicate stage name {item.name!r}")
            self.loaded[item.name] = item
        self._check_dependencies()
        self.order: tuple[Stage, ...] = tuple(
            self.loaded[name].stage for name in self._topological_order()
        )
        self.requirements: dict[str, frozenset[str]] = self._requirements()
        self.ancestors: dict[str, frozenset[str]] = self._ancestors()
        if not any(stage.final for stage in self.order):
            raise RegistryError(
                "no final stage is enabled (the built-in one is 'publish'): "
                "results would never be published"
            )

    @classmethod
    def from_settings(
        cls, enabled: Sequence[str] | None, options: Mapping[str, Any]
    ) -> StageRegistry:
        return cls(discover(enabled, options))

    def __getitem__(self, name: str) -> Stage:
        return self.loaded[name].stage

    def _check_dependencies(self) -> None:
        for name, item in self.loaded.items():
            for dep in item.stage.requires:
                if dep not in self.loaded:
                    raise RegistryError(
                        f"stage {name!r} requires {dep!r}, which is not installed or not enabled"
                    )
                if self.loaded[dep].stage.final and not item.stage.final:
                    raise RegistryError(
                        f"stage {name!r} requires final stage {dep!r}; only final stages may"
                    )

    def _topological_order(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = [*path[path.index(name) :], name]
                raise RegistryError(f"stage dependency cycle: {' -> '.join(cycle)}")
            state[name] = 1
            for dep in sorted(self.loaded[name].stage.requires):
                visit(dep, [*path, name])
            state[name] = 2
            order.append(name)

        # Non-final stages first, so final stages (publish) follow every one of them.
        for final in (False, True):
            for name in sorted(self.loaded):
                if self.loaded[name].stage.final is final:
                    visit(name, [])
        return order

    def _requirements(self) -> dict[str, frozenset[str]]:
        """Each stage's ``requires``, transitively: what it cannot run without."""
        result: dict[str, frozenset[str]] = {}
        for stage in self.order:
            found: set[str] = set()
            for dep in stage.requires:
                found |= {dep, *result[dep]}
            result[stage.name] = frozenset(found)
        return result

    def _ancestors(self) -> dict[str, frozenset[str]]:
        """What must finish before each stage: its requirements, and for a final stage, all."""
        result: dict[str, frozenset[str]] = {}
        earlier: list[str] = []
        for stage in self.order:
            found = set(self.requirements[stage.name])
            if stage.final:
                found |= set(earlier)
            result[stage.name] = frozenset(found)
            earlier.append(stage.name)
        return result

    def critical_path_seconds(self) -> float:
        """The longest chain of stage timeouts (and optional stages' retry budgets): how long
        one job's stages may run at most."""
        longest: dict[str, float] = {}
        for stage in self.order:
            before = max((longest[dep] for dep in self.ancestors[stage.name]), default=0.0)
            longest[stage.name] = before + stage.longest_seconds
        return max(longest.values(), default=0.0)

    def describe(self) -> list[dict[str, Any]]:
        rows = []
        for stage in self.order:
            item = self.loaded[stage.name]
            rows.append(
                {
                    "name": stage.name,
                    "version": stage.version,
                    "distribution": item.distribution,
                    "distribution_version": item.distribution_version,
                    "kinds": sorted(kind.value for kind in stage.kinds),
                    "requires": list(stage.requires),
                    "optional": stage.optional,
                    "final": stage.final,
                    "cpu_bound": stage.cpu_bound,
                    "timeout": stage.timeout,
                }
            )
        return rows

    async def start(self, context: StageContext) -> None:
        for stage in self.order:
            await stage.start(context)

    async def stop(self) -> None:
        for stage in reversed(self.order):
            await stage.stop()


def check_timing(settings: Settings, registry: StageRegistry) -> None:
    """Refuse settings under which a job could outlive what SQS lets a message be held."""
    longest = registry.critical_path_seconds()
    # ChangeMessageVisibility cannot extend past 12 h from the receive; keep one timeout spare.
    budget = SQS_MAX_VISIBILITY - settings.visibility_timeout
    if longest > budget:
        raise SettingsError(
            f"stage timeouts add up to {longest:g} s along the longest chain, but SQS holds a "
            f"message for at most {SQS_MAX_VISIBILITY} s and MEDIAMILL_VISIBILITY_TIMEOUT is "
            f"{settings.visibility_timeout} s: lower the stage timeouts or the visibility timeout"
        )
