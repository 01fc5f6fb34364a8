"""Endpoint resolution cached per bucket, not per object key.

botocore resolves each call's endpoint by evaluating the service's endpoint ruleset, behind an LRU
cache keyed on every parameter the ruleset declares. S3's ruleset declares ``Key``, ``Prefix``
and ``CopySource`` but no rule reads them, so every call on a new key misses the cache and walks
the whole ruleset again: about a quarter of a ``put_object``'s client CPU, and of every presigned
URL (boto/botocore#3528). botocore's fix (boto/botocore#3692, in releases after 1.40.61) came
after the botocore that aiobotocore 2.25.1 pins; once both sides run a botocore that has it, this
module can be deleted.

The fix here is generic: a client leaves out of resolution exactly the parameters its own loaded
ruleset declares and never references, so it stays right if a later ruleset starts to read one.
It reaches into botocore's private attributes; if an upgrade renamed them, one warning is logged
and the client is left as it was: a slower call, never a broken one.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

ENDPOINT_RULESET = "endpoint-rule-set-1"
# A template string's placeholder, as botocore's endpoint provider reads them: ``{Name}`` or
# ``{Name#attribute}``.
_PLACEHOLDER = re.compile(r"\{([A-Za-z]+)(?:#[A-Za-z]+)?\}")


def referenced_parameters(rules: object) -> frozenset[str]:
    """Every name the rules read: a ``{"ref": NAME}`` argument or a ``{NAME}`` in a template."""
    names: set[str] = set()
    pending = [rules]
    while pending:
        node = pending.pop()
        if isinstance(node, Mapping):
            ref = node.get("ref")
            if isinstance(ref, str):
                names.add(ref)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, str):
            # A template may name a parameter no ``ref`` reads: kept, to err towards caching less.
            names.update(_PLACEHOLDER.findall(node))
    return frozenset(names)


def unreferenced_parameters(ruleset: Mapping[str, Any]) -> frozenset[str]:
    """The ruleset's parameters that no rule reads and that resolution may therefore go without.

    A required parameter without a default stays: the ruleset refuses to resolve without it.
    """
    read = referenced_parameters(ruleset["rules"])
    return frozenset(
        name
        for name, spec in ruleset["parameters"].items()
        if name not in read and not (spec.get("required") and spec.get("default") is None)
    )


def resolve_endpoints_per_bucket(client: Any) -> frozenset[str]:
    """Have a botocore client (sync or aiobotocore) resolve endpoints without the parameters its
    ruleset never reads; returns the names left out."""
    resolver = getattr(client, "_ruleset_resolver", None)
    if resolver is None:
        return frozenset()  # no ruleset: the legacy resolver, which has no such cache
    service = client.meta.service_model
    try:
        ruleset = client._loader.load_service_model(
            service.service_name, ENDPOINT_RULESET, api_version=service.api_version
        )
        definitions = resolver._param_definitions
    except AttributeError as error:
        _warn_once(f"botocore's internals changed ({error})")
        return frozenset()
    # A botocore with the upstream fix may hold fewer names than the ruleset: still a match.
    if not isinstance(definitions, dict) or not set(definitions) <= set(ruleset["parameters"]):
        _warn_once("botocore's resolver no longer holds the ruleset's parameters by name")
        return frozenset()
    dropped = unreferenced_parameters(ruleset)
    if dropped:
        # The resolver gathers the provider's parameters (its cache key) from this mapping alone;
        # the ruleset's own copy, which checks inputs and applies defaults, is left whole.
        resolver._param_definitions = {
            name: spec for name, spec in definitions.items() if name not in dropped
        }
    return dropped


@functools.cache
def _warn_once(reason: str) -> None:
    log.warning(
        "endpoint parameters left as botocore sets them: %s; every S3 call on a new key "
        "re-evaluates the endpoint ruleset (boto/botocore#3528)",
        reason,
    )
