"""Two per-call costs of botocore's taken off every client we make: ``tune(client)``.

- Endpoints resolved once per bucket, not once per object key (:mod:`endpoint_parameters`).
- The User-Agent header built once per set of features, not twice per call. botocore assembles
  it from about twenty sanitised components on every request, in ``_convert_to_request_dict``
  and again in its ``request-created`` handler (to add the features the call used, the ``m/``
  component): some 45 us each, about 1 ms of CPU per photo over its ten calls. Everything else
  in the string is fixed when the client is made (its config, the session, the platform), so
  the string is a function of the features alone (the call's and the client's) and is kept per
  set of them.

Both reach into botocore's private attributes; where an upgrade renamed them, one warning is
logged and the client is left as it was: a slower call, never a broken one.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from mediamill_core.endpoint_parameters import resolve_endpoints_per_bucket

log = logging.getLogger(__name__)

# Sets of features seen per client before the kept strings are dropped (a handful in practice:
# one or two per operation).
_MOST_STRINGS = 64


def tune(client: Any) -> None:
    """Take both costs off a botocore client (sync or aiobotocore)."""
    resolve_endpoints_per_bucket(client)
    cache_user_agent(client)


def cache_user_agent(client: Any) -> bool:
    """Build the client's User-Agent once per set of request features; False if left as it was."""
    try:
        from botocore.context import get_context

        creator = client._user_agent_creator
        build: Callable[[], str] = creator.to_string
        creator._client_features  # noqa: B018 - read on every call below: it must be there
    except (ImportError, AttributeError) as error:
        _warn_once(f"botocore's internals changed ({error})")
        return False
    built: dict[frozenset[str], str] = {}

    def to_string() -> str:
        # What botocore's string depends on beyond the fixed parts: the features of the call
        # and the client's own (which botocore sets when it loads credentials, on a first call).
        context = get_context()
        features = frozenset(creator._client_features or ()).union(
            context.features if context is not None else ()
        )
        found = built.get(features)
        if found is None:
            if len(built) >= _MOST_STRINGS:
                built.clear()
            found = built[features] = build()
        return found

    # An attribute of this client's own copy of the creator: the request handler botocore
    # registered (its bound ``rebuild_and_replace_user_agent_handler``) looks it up there too.
    creator.to_string = to_string
    return True


@functools.cache
def _warn_once(reason: str) -> None:
    log.warning("the User-Agent header is built on every call as botocore does: %s", reason)
