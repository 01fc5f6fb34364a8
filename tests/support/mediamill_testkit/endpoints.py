"""How many times botocore evaluated an endpoint ruleset, across every client of the process."""

from __future__ import annotations

from botocore.endpoint_provider import EndpointProvider


def ruleset_evaluations() -> int:
    # A miss of botocore's endpoint cache is one evaluation of a whole ruleset.
    return int(EndpointProvider.resolve_endpoint.cache_info().misses)
