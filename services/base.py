"""What every embedded server looks like to the daemon that supervises it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


class Service(Protocol):
    """One asyncio server inside the imageserver process.

    start() returns once the service listens (or raises ServiceError with a clear reason);
    stop() releases sockets and flushes whatever the service owes to state.
    """

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


class ServiceError(RuntimeError):
    """A service could not start (port in use, missing file, bad interface): the message says which."""


@dataclass(slots=True)
class ServiceStatus:
    """The common part of every service's entry in /api/v1/status (its OpenAPI schema, Service, is generated
    from these fields; each server adds fields of its own: dhcp mode, subnets, leases; rsyncd pid, modules...)."""

    OPENAPI: ClassVar[dict[str, Any]] = {
        "title": "Service", "additionalProperties": True,
        "description": "state, listen, error and counters, and fields of the service's own (dhcp: mode, subnets, "
                       "leases; rsyncd: pid, modules, restarts; ...)"}

    state: str = field(default="stopped", metadata={"openapi": {
        "enum": ["starting", "running", "restarting", "failed", "stopped"]}})
    listen: list[str] = field(default_factory=list)
    error: str | None = None
    counters: Counter[str] = field(default_factory=Counter, metadata={"openapi": {
        "type": "object", "additionalProperties": {"type": "number"}}})

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "listen": list(self.listen),
            "error": self.error,
            "counters": dict(sorted(self.counters.items())),
        }
