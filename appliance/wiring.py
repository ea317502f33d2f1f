"""Which services the daemon runs, built from the config. The list order is the start order.

Each service gets exactly the parts of the runtime it needs; services never see the Config object
whole, so a service can be constructed and tested without the appliance.
"""

from __future__ import annotations

from appliance.runtime import Runtime
from services.base import Service


def build_services(rt: Runtime) -> list[Service]:
    services: list[Service] = []
    return services


async def reconfigure_services(rt: Runtime, services: list[Service]) -> None:
    """Hand the re-read config (already in rt.config) to the services that take changes live.

    Listening addresses and ports are fixed at start; what a service can change live is its own call.
    """
