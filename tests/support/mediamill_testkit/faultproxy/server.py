"""The proxy itself: an aiohttp server on loopback, forwarding to moto, faulting a seeded share.

It runs its own event loop in a thread, so a synchronous test or driver can start it, point
worker processes at :attr:`FaultProxy.endpoint`, and read :meth:`FaultProxy.stats` at any time.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter, deque
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from mediamill_testkit.faultproxy.wire import Call, FaultKind, Reply, error_for, identify, render

# Hop-by-hop headers (RFC 9110 7.6.1) and those aiohttp recomputes for the body it sends.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
    }
)
DEFAULT_SERVICES = frozenset({"s3", "sqs", "dynamodb", "sns"})
DEFAULT_KINDS: Mapping[FaultKind, float] = {
    FaultKind.THROTTLE: 0.35,
    FaultKind.SERVER_ERROR: 0.25,
    FaultKind.LOST_ANSWER: 0.25,
    FaultKind.DROPPED: 0.15,
}


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Which share of each service's calls fail, and how (weights by kind), from one seed."""

    rate: float = 0.0
    seed: int = 0
    services: frozenset[str] = DEFAULT_SERVICES
    kinds: Mapping[FaultKind, float] = field(default_factory=lambda: dict(DEFAULT_KINDS))

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {self.rate}")
        if not self.kinds or min(self.kinds.values()) < 0 or sum(self.kinds.values()) <= 0:
            raise ValueError("fault kinds need non-negative weights, not all zero")


@dataclass(frozen=True, slots=True)
class Fault:
    """A decision for one call: the fault and, for DynamoDB throttling, which of its two."""

    kind: FaultKind
    alternate: bool = False


@dataclass(frozen=True, slots=True)
class _Target:
    """Which calls a scripted fault or delay is for: a service, an operation, bytes of the body."""

    service: str
    operation: str | None
    match: bytes | None

    def matches(self, call: Call, body: bytes) -> bool:
        return (
            self.service == call.service
            and self.operation in (None, call.operation)
            and (self.match is None or self.match in body)
        )


@dataclass(frozen=True, slots=True)
class _Scripted:
    target: _Target
    kind: FaultKind


@dataclass(frozen=True, slots=True)
class Delay:
    """A slow call: held ``seconds`` before it goes on, or (``answer``) applied at once and its
    answer held, so that what it did is done while the caller still waits."""

    seconds: float
    answer: bool = False


@dataclass(frozen=True, slots=True)
class _Slowed:
    target: _Target
    delay: Delay


class FaultDecider:
    """Seeded decisions, one random stream per service, so the n-th call of a service always
    meets the same fate for a seed however the services' calls interleave."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._streams: dict[str, random.Random] = {}
        self._scripted: deque[_Scripted] = deque()
        self._slowed: deque[_Slowed] = deque()
        self._lock = threading.Lock()

    def slow(
        self,
        service: str,
        seconds: float,
        operation: str | None = None,
        count: int = 1,
        match: bytes | None = None,
        answer: bool = False,
    ) -> None:
        with self._lock:
            target = _Target(service, operation, match)
            self._slowed.extend(_Slowed(target, Delay(seconds, answer)) for _ in range(count))

    def delay(self, call: Call, body: bytes = b"") -> Delay | None:
        """How this call is slowed, if it is; apart from faults, and drawing nothing from the
        random streams."""
        with self._lock:
            for index, slowed in enumerate(self._slowed):
                if slowed.target.matches(call, body):
                    del self._slowed[index]
                    return slowed.delay
        return None

    def script(
        self,
        service: str,
        kind: FaultKind,
        operation: str | None = None,
        count: int = 1,
        match: bytes | None = None,
    ) -> None:
        with self._lock:
            target = _Target(service, operation, match)
            self._scripted.extend(_Scripted(target, kind) for _ in range(count))

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self.plan = FaultPlan(rate, self.plan.seed, self.plan.services, self.plan.kinds)

    def decide(self, call: Call, body: bytes = b"") -> Fault | None:
        with self._lock:
            for index, scripted in enumerate(self._scripted):
                if scripted.target.matches(call, body):
                    del self._scripted[index]
                    return Fault(scripted.kind)
            plan = self.plan
            if call.service not in plan.services:
                return None
            stream = self._streams.setdefault(
                call.service, random.Random(f"{plan.seed}:{call.service}")
            )
            # Draw every time, faulted or not, so the stream stays aligned with the call count.
            roll, pick, alternate = stream.random(), stream.random(), stream.random() < 0.5
            if roll >= plan.rate:
                return None
            kinds = list(plan.kinds)
            weights = [plan.kinds[kind] for kind in kinds]
            total = sum(weights)
            threshold = pick * total
            for kind, weight in zip(kinds, weights, strict=True):
                threshold -= weight
                if threshold < 0:
                    return Fault(kind, alternate)
            return Fault(kinds[-1], alternate)


class FaultProxy:
    """``start()`` returns the proxy's endpoint; every call goes on to ``upstream``."""

    def __init__(self, upstream: str, plan: FaultPlan | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.endpoint = ""
        self._decider = FaultDecider(plan or FaultPlan())
        self._calls: Counter[str] = Counter()
        self._faults: Counter[tuple[str, str, FaultKind]] = Counter()
        self._counts_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- control, from any thread --------------------------------------------------------

    def start(self) -> str:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="faultproxy", daemon=True)
        self._thread.start()
        self.endpoint = self._submit(self._serve()).result(timeout=30)
        return self.endpoint

    def stop(self) -> None:
        if self._loop is None:
            return
        self._submit(self._close()).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def set_rate(self, rate: float) -> None:
        """Change the share of faulted calls from now on (the seed's streams carry on)."""
        self._decider.set_rate(rate)

    def script(
        self,
        service: str,
        kind: FaultKind,
        *,
        operation: str | None = None,
        count: int = 1,
        match: bytes | None = None,
    ) -> None:
        """Fault the next ``count`` calls of ``service`` (of ``operation``, whose body contains
        ``match``) with ``kind``, ahead of the random share."""
        self._decider.script(service, kind, operation, count, match)

    def slow(
        self,
        service: str,
        seconds: float,
        *,
        operation: str | None = None,
        count: int = 1,
        match: bytes | None = None,
        answer: bool = False,
    ) -> None:
        """Hold the next ``count`` matching calls for ``seconds`` before they go on, or with
        ``answer`` hold their answers once applied (slow calls, as AWS sometimes makes): a test
        knows a call is under way meanwhile."""
        self._decider.slow(service, seconds, operation, count, match, answer)

    def stats(self) -> dict[str, Any]:
        """Calls per service and faults per service and kind (and per operation)."""
        with self._counts_lock:
            calls = dict(self._calls)
            faults = dict(self._faults)
        by_kind: dict[str, dict[str, int]] = {}
        by_operation: dict[str, dict[str, int]] = {}
        for (service, operation, kind), count in sorted(faults.items()):
            kinds = by_kind.setdefault(service, {})
            kinds[kind.value] = kinds.get(kind.value, 0) + count
            ops = by_operation.setdefault(service, {})
            ops[f"{operation}:{kind.value}"] = count
        return {
            "calls": dict(sorted(calls.items())),
            "faults": by_kind,
            "faults_by_operation": by_operation,
            "total_faults": sum(faults.values()),
        }

    def faults(self, service: str, kind: FaultKind) -> int:
        with self._counts_lock:
            return sum(n for (s, _, k), n in self._faults.items() if s == service and k is kind)

    def _submit(self, coroutine: Any) -> Future[Any]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    # --- the server, on the proxy's own loop ---------------------------------------------

    async def _serve(self) -> str:
        # Long polls hold a call for up to 20 s; no total limit, a generous read limit.
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
            connector=aiohttp.TCPConnector(limit=200),
        )
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
        except ConnectionResetError:
            # The client went away mid-request (a worker SIGKILLed): nobody is left to answer.
            return web.Response(status=499)
        call = identify(request.method, request.headers, request.query, body)
        delay = self._decider.delay(call, body)
        if delay is not None and not delay.answer:
            await asyncio.sleep(delay.seconds)
        fault = self._decider.decide(call, body)
        with self._counts_lock:
            self._calls[call.service] += 1
            if fault is not None:
                self._faults[(call.service, call.operation, fault.kind)] += 1
        if fault is not None and not fault.kind.applied:
            return _response(render(call, error_for(call, fault.kind, alternate=fault.alternate)))
        answer = await self._forward(request, body)
        if delay is not None and delay.answer:
            await asyncio.sleep(delay.seconds)
        if fault is None:
            return answer
        # Applied upstream; the answer is lost on the way back.
        if fault.kind is FaultKind.DROPPED:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=204)
        return _response(render(call, error_for(call, FaultKind.SERVER_ERROR)))

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._session is not None
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in _NOT_FORWARDED
        )
        async with self._session.request(
            request.method,
            self.upstream + request.rel_url.raw_path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        ) as upstream:
            data = await upstream.read()
            reply_headers = CIMultiDict(
                (name, value)
                for name, value in upstream.headers.items()
                if name.lower() not in _NOT_FORWARDED
            )
            return web.Response(status=upstream.status, body=data, headers=reply_headers)


def _response(reply: Reply) -> web.Response:
    return web.Response(status=reply.status, body=reply.body, headers=dict(reply.headers))
