"""`[http] admin_networks`: which addresses may read the APIs that list hosts, MACs, leases and machines.

These reads need a token of the reader role anyway (services/auth.py); admin_networks is a further limit on
where they may come from. Empty (the default): anywhere. Set, a GET of an admin read API from an address
outside it is 403, token or not (tests/unit/test_tokens.py checks the two name the same reads).
What stays open to everyone: /api/v1/status (public, read-only), and what a machine needs for itself: its
boot files and install script (checked by their own rules), /client/* (updateclient), and a host's own
update routes, which check the host's own token. /hosts (the /etc/hosts lines of every host) is an admin
read although it is not under /api/. Changes need the operator or admin role (services/routes.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, ip_address

# Read APIs a machine on the provisioning LAN needs for itself, open whatever admin_networks says.
_OPEN = re.compile(r"^/api/v1/(?:status|hosts/[^/]+/update-target)/?$")
# Lists outside /api/ that name hosts and their addresses (issue 24 hole 5: /hosts was open to the LAN).
_LISTS = re.compile(r"^/hosts/?$")


def is_admin_read(path: str) -> bool:
    """An admin read: /api/v1/... except the open ones, and the host lists outside /api/."""
    return (path.startswith("/api/") and not _OPEN.match(path)) or bool(_LISTS.match(path))


def allowed(remote: str | None, networks: Sequence[IPv4Network]) -> bool:
    """Whether `remote` may read admin APIs (always, with no networks configured)."""
    if not networks:
        return True
    try:
        address = ip_address(remote or "")
    except ValueError:
        return False
    if not isinstance(address, IPv4Address):
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is None:
            return False
        address = mapped
    return any(address in n for n in networks)
