"""Routes matched on method and path by the function itself, so a ``$default`` route works."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from api_lambda.errors import MethodNotAllowed, NotFound
from api_lambda.request import ApiRequest
from api_lambda.responses import LambdaResponse

RouteHandler = Callable[[ApiRequest, str, Mapping[str, str]], LambdaResponse]
_PARAMETER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str  # "/media/{media_id}": a parameter matches one non-empty path segment
    handler: RouteHandler
    public: bool = False  # served without a verified caller (the handler gets caller "")

    @property
    def pattern(self) -> re.Pattern[str]:
        parts = _PARAMETER.split(self.template)
        regex = "".join(
            f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part)
            for index, part in enumerate(parts)
        )
        return re.compile(regex)


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = [(route, route.pattern) for route in routes]

    @property
    def routes(self) -> list[Route]:
        return [route for route, _ in self._routes]

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route and path parameters, or NotFound / MethodNotAllowed (with ``Allow``)."""
        allowed: list[str] = []
        for route, pattern in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == method:
                return route, match.groupdict()
            allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(
                f"method not allowed; use {', '.join(sorted(allowed))}",
                headers={"allow": ", ".join(sorted(allowed))},
            )
        raise NotFound("no such route")
