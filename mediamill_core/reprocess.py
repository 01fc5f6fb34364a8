"""The reprocess request: one SQS message asking the worker to run one stage on one READY item.

``mediamill reprocess`` sends it and the worker reads it, so both import it from here. It is
versioned like the media events: a worker refuses a version it does not know, with a reason,
and the message goes the way of any malformed message (the DLQ, after its tries).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

REQUEST_TYPE: Final = "mediamill.reprocess"
REQUEST_VERSION: Final = 1
# What a stage name and a media id may be (worker.registry and mediamill_core.keys say the same).
_STAGE_NAME = r"^[a-z][a-z0-9_-]{0,47}$"
_MEDIA_ID = r"^[0-9a-f]{32}$"
_REQUEST_ID = r"^[A-Za-z0-9_-]{1,64}$"
_REASON_CHARS = 300

Mode = Literal["missing", "outdated", "all"]


class InvalidRequest(ValueError):
    """The body says it is a reprocess request but is not one this code can act on."""


class ReprocessRequest(BaseModel):
    """Run ``stage`` (and what it requires but the item lacks) on ``media_id`` again.

    ``mode`` says when the request is already satisfied: ``missing`` and ``outdated`` once the
    stage is recorded done at the installed version, ``all`` once it was done at or after
    ``requested_at`` (or by this very request).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    type: Literal["mediamill.reprocess"] = REQUEST_TYPE
    version: Literal[1] = REQUEST_VERSION
    media_id: str = Field(pattern=_MEDIA_ID)
    stage: str = Field(pattern=_STAGE_NAME)
    mode: Mode
    # Strict mode takes no strings for datetimes; the wire form is ISO 8601, parsed in lax mode.
    requested_at: AwareDatetime = Field(strict=False)
    request_id: str = Field(pattern=_REQUEST_ID)

    def body(self) -> str:
        """The SQS message body."""
        return self.model_dump_json()


def parse_request(body: str) -> ReprocessRequest | None:
    """The request in a message body; None when the body does not say it is one at all.

    Raises InvalidRequest, with a reason a person can act on, for a body that names itself a
    reprocess request but is of another version or does not validate.
    """
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("type") != REQUEST_TYPE:
        return None
    version = document.get("version")
    if version != REQUEST_VERSION:
        raise InvalidRequest(
            f"reprocess request version {_shown(version)} is not one this worker reads "
            f"(it reads version {REQUEST_VERSION})"
        )
    try:
        return ReprocessRequest.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidRequest(_cut("reprocess request refused: " + "; ".join(problems))) from None


def new_request(
    media_id: str, stage: str, mode: Mode, requested_at: datetime, request_id: str
) -> ReprocessRequest:
    return ReprocessRequest(
        media_id=media_id,
        stage=stage,
        mode=mode,
        requested_at=requested_at,
        request_id=request_id,
    )


def _shown(value: Any) -> str:
    return "(none)" if value is None else _cut(json.dumps(value))


def _cut(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"
