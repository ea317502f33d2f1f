"""Response views of the multicast install routes (services/api_multicast.py), declared once for the answer
(JSON, or KEY=value lines for the installer's busybox) and its OpenAPI schema."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.views import doc


@dataclass(frozen=True, slots=True)
class MulticastSeat:
    """POST /install/{mac}/multicast: a seat in the session sending the host's image version."""

    session: str
    portbase: int
    rdv_address: str = field(metadata=doc("the udpcast rendezvous address"))
    key: str = field(metadata=doc("the session's key: it decrypts the stream"))
    sender: str = field(metadata=doc("the imageserver's address the stream comes from"))
    start_window: float = field(metadata=doc("seconds the sender waits for more seats"))
    image: str
    version: int


@dataclass(frozen=True, slots=True)
class MulticastSession:
    """GET /install/{mac}/multicast: the host's session."""

    session: str
    state: str = field(metadata=doc(enum=["waiting", "sending", "done", "failed"]))
    sha256: str | None = field(metadata=doc("the SHA-256 of the stream sent, once done"))
    error: str | None
