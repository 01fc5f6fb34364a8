"""A loopback proxy in front of moto's server that answers a seeded share of calls with faults.

Each fault is in the wire format of the service called, as AWS sends it and botocore parses
it; a share of them come after moto has applied the request, so the request is done and only
its answer is lost. Counters per service and kind say what was injected.
"""

from mediamill_testkit.faultproxy.server import (
    DEFAULT_SERVICES,
    Delay,
    Fault,
    FaultDecider,
    FaultPlan,
    FaultProxy,
)
from mediamill_testkit.faultproxy.wire import Call, FaultKind, Protocol, identify

__all__ = [
    "DEFAULT_SERVICES",
    "Call",
    "Delay",
    "Fault",
    "FaultDecider",
    "FaultKind",
    "FaultPlan",
    "FaultProxy",
    "Protocol",
    "identify",
]
