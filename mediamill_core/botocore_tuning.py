"""Three per-call costs of botocore's taken off every client we make: ``tune(client)`` and
``tune_session(session)``.

- Endpoints resolved once per bucket, not once per object key (:mod:`endpoint_parameters`).
- The User-Agent header built once per set of features, not twice per call. botocore assembles
  it from about twenty sanitised components on every request, in ``_convert_to_request_dict``
  and again in its ``request-created`` handler (to add the features the call used, the ``m/``
  component): some 45 us each, about 1 ms of CPU per photo over its ten calls. Everything else
  in the string is fixed when the client is made (its config, the session, the platform), so
  the string is a function of the features alone (the call's and the client's) and is kept per
  set of them.

- Timestamps in responses parsed without dateutil's general parser (``parse_timestamp``, set on
  the session through botocore's own hook, as the AWS CLI sets its own). botocore hands every
  timestamp (S3's Last-Modified header, each object of a listing) to ``dateutil.parser``, 60
  to 85 us each; the two shapes AWS sends (RFC 7231 dates in headers, ISO 8601 in UTC in bodies)
  are read here in a few, and anything else goes to botocore's parser, so nothing parses
  differently.

The first two reach into botocore's private attributes; where an upgrade renamed them, one
warning is logged and the client is left as it was: a slower call, never a broken one.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any, TypeVar

import boto3
import botocore.session
from botocore.parsers import DEFAULT_TIMESTAMP_PARSER
from dateutil.tz import tzlocal, tzutc

from mediamill_core.endpoint_parameters import resolve_endpoints_per_bucket

log = logging.getLogger(__name__)

# Sets of features seen per client before the kept strings are dropped (a handful in practice:
# one or two per operation).
_MOST_STRINGS = 64

_Session = TypeVar("_Session")
# dateutil's one tzutc instance (a singleton), as its parser and botocore return it.
_UTC: tzinfo = tzutc()

# RFC 7231's IMF-fixdate, as S3 (and every REST API) sends its date headers. A year from 1000:
# dateutil reads shorter or odder years its own way, so those go to it.
_HTTP_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"([1-9]\d{3}) (\d\d):(\d\d):(\d\d) GMT"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# ISO 8601 in UTC, as XML and JSON bodies carry it (S3 listings: "2026-12-02T06:49:45.000Z").
# Other offsets are rare and go to dateutil, which gives them a tzoffset of its own.
_ISO_UTC = re.compile(r"[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:[Zz]|[+-]00:00)")


def tune(client: Any) -> None:
    """Take both costs off a botocore client (sync or aiobotocore)."""
    resolve_endpoints_per_bucket(client)
    cache_user_agent(client)


def tune_session(session: _Session) -> _Session:
    """Have every client this botocore (or aiobotocore) session makes parse timestamps fast.

    Public botocore API, read by each client as it is made: call it before making them.
    """
    factory: Any = session.get_component("response_parser_factory")  # type: ignore[attr-defined]
    factory.set_parser_defaults(timestamp_parser=parse_timestamp)
    return session


@functools.cache
def boto3_session() -> boto3.session.Session:
    """The process's one boto3 session, as ``boto3.client`` keeps its own, with timestamps tuned."""
    return boto3.session.Session(botocore_session=tune_session(botocore.session.get_session()))


def parse_timestamp(value: Any) -> datetime:
    """What botocore's default parser returns for ``value``, down to the tzinfo's type."""
    if isinstance(value, str):
        try:
            if (found := _HTTP_DATE.fullmatch(value)) is not None:
                day, month, year, hour, minute, second = found.groups()
                # botocore maps "GMT" to tzutc() whatever the local zone is.
                return datetime(
                    int(year),
                    _MONTHS[month],
                    int(day),
                    int(hour),
                    int(minute),
                    int(second),
                    tzinfo=_UTC,
                )
            if _ISO_UTC.fullmatch(value) is not None and (zone := _utc_zone()) is not None:
                # fromisoformat keeps six digits of a longer fraction, as dateutil does.
                naive = datetime.fromisoformat(value[: -1 if value[-1] in "Zz" else -6])
                return naive.replace(tzinfo=zone)
        except ValueError:
            pass  # out of range (a 31st of June, a leap second): botocore's own error
    # Numbers are read by botocore without dateutil's parser already.
    parsed: datetime = DEFAULT_TIMESTAMP_PARSER(value)
    return parsed


def _utc_zone() -> tzinfo | None:
    """The zone dateutil gives a time in UTC ("Z", "+00:00"), None where it is not plain.

    dateutil hands back the local zone (tzlocal()) when the local zone is named UTC, as on
    Fargate and Lambda, else tzutc(); read per call, as dateutil does, in case TZ changes.
    """
    names = time.tzname
    if "UTC" not in names:
        return _UTC
    if names[0] == "UTC" and time.timezone == 0 and not time.daylight:
        local: tzinfo = tzlocal()  # a new one each time, as dateutil makes them
        return local
    return None  # a local zone called UTC for part of the year: dateutil's rules decide


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
