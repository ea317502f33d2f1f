"""What does this machine boot now? One pure function, used by every server that answers a boot.

The HTTP server renders the answer as an iPXE script, the TFTP server as a pxelinux config; both
come from `decide_boot`, so a machine gets the same answer whichever loader asks.

Decision table (host = the hosts row with this MAC; policy = [boot] unknown, poll_seconds):

  host                        image / version                 -> decision
  none                        -                                 policy: "wait" (poll) | "local"; with
                                                                  [discovery] inspect, a waiting machine
                                                                  without an inventory: inspect (the
                                                                  installer collects it, installs nothing)
  any state, no image         -                                 policy, as for an unknown machine
  new | assigned | installing image has the version asked for   install (installing = a retry after
                                                                  an interrupted install)
  new | assigned | installing image missing / version missing   wait: nothing to install yet
  new | assigned | installing the version is of another CPU     wait: refused, with the reason (the host
                              architecture than the machine's     was assigned before its firmware said
                              firmware reported (option 93)       what it is; an installer of the wrong
                                                                  architecture is never served)
  installed                   -                                 local: never an install loop
  failed                      -                                 local: never loop; the operator
                                                                  reinstalls explicitly
  (anything else in state)    -                                 local, with the odd state named

A host's version None means the image's newest version at boot time. The host is the one with what it
inherits from its profile (state.hosts.effective_host_by_mac): a profile's image is installed like its own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from protocols.arch import mismatch as arch_mismatch
from state.hosts import Host, effective_host_by_mac
from state.images import image_arches, image_versions
from state.inventories import has_inventory
from state.sightings import machine_arch

# What a machine with no host (or no image) boots ([boot] unknown): poll until assigned, or its local disk.
UnknownBoot = Literal["wait", "local"]
UNKNOWN_POLICIES: tuple[str, ...] = get_args(UnknownBoot)
INSTALL_STATES = ("new", "assigned", "installing")


@dataclass(frozen=True, slots=True)
class BootPolicy:
    unknown: str = "wait"  # what a machine with no host (or no image) boots: "wait" | "local"
    poll_seconds: int = 5
    # [discovery] inspect: a machine that waits for an assignment and has no inventory yet boots the
    # installer in inspect mode once (inventory, then power off).
    inspect: bool = False

    def __post_init__(self) -> None:
        if self.unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown-machine policy {self.unknown!r} is not one of {UNKNOWN_POLICIES}")
        if self.poll_seconds < 1:
            raise ValueError("poll_seconds must be at least 1")


@dataclass(frozen=True, slots=True)
class BootDecision:
    kind: str  # "install" | "inspect" | "local" | "wait"
    mac: str
    reason: str  # one line for people: logs, the boot console, the API
    poll_seconds: int
    hostname: str | None = None
    image: str | None = None
    version: int | None = None
    install_token: str | None = None
    # What the boot file carries instead of the token (state/credentials.py), and an inspect's credential
    # (state/credentials.inspect_nonce); set by the boot responder.
    fetch_nonce: str | None = None
    kernel_args: str | None = None  # the host's (or its profile's) additions to the installer's command line

    def as_dict(self) -> dict[str, Any]:
        # The install token is the installer's credential: it goes into the boot script, not the API.
        return {"kind": self.kind, "mac": self.mac, "reason": self.reason, "hostname": self.hostname,
                "image": self.image, "version": self.version, "poll_seconds": self.poll_seconds}


def _unassigned(mac: str, policy: BootPolicy, reason: str, hostname: str | None = None) -> BootDecision:
    if policy.unknown == "local":
        return BootDecision("local", mac, f"{reason}, policy boots it from its disk", policy.poll_seconds,
                            hostname=hostname)
    return BootDecision("wait", mac, f"{reason}, waiting for an assignment", policy.poll_seconds, hostname=hostname)


def decide_boot(mac: str, host: Host | None, versions: Sequence[int], policy: BootPolicy, *,
                inventoried: bool = True, client_arch: int | None = None,
                arches: Mapping[int, str | None] | None = None) -> BootDecision:
    """The boot decision for `mac`, given its host (or None) and the captured versions of the host's image;
    `inventoried`: whether the machine has a stored inventory (asked only for an inspect); `client_arch`: the
    machine's DHCP option 93 (None: not known), `arches`: the image's architecture by version
    (protocols/arch.py names; a version missing or None: not known, nothing refused on a guess)."""
    poll = policy.poll_seconds
    if host is None:
        if policy.inspect and policy.unknown == "wait" and not inventoried:
            return BootDecision("inspect", mac, f"machine {mac} is not a known host and has no inventory: "
                                "inspect it (installs nothing, then powers off)", poll)
        return _unassigned(mac, policy, f"machine {mac} is not a known host")
    name = host.name
    if host.state == "installed":
        return BootDecision("local", mac, f"host {name} is installed", poll, hostname=name, image=host.image,
                            version=host.running_version)
    if host.state == "failed":
        return BootDecision("local", mac, f"host {name} failed its install (reinstall it explicitly)", poll,
                            hostname=name, image=host.image)
    if host.state not in INSTALL_STATES:
        return BootDecision("local", mac, f"host {name} is in unexpected state {host.state!r}", poll, hostname=name)
    if not host.image:
        return _unassigned(mac, policy, f"host {name} has no image", hostname=name)
    if not versions:
        return BootDecision("wait", mac, f"image {host.image} of host {name} has no captured version yet", poll,
                            hostname=name, image=host.image)
    version = host.version if host.version is not None else max(versions)
    if version not in versions:
        return BootDecision("wait", mac, f"image {host.image} has no version {version} (host {name})", poll,
                            hostname=name, image=host.image)
    problem = arch_mismatch((arches or {}).get(version), client_arch)
    if problem is not None:
        return BootDecision("wait", mac, f"refused to install {host.image} v{version} on host {name}: {problem}",
                            poll, hostname=name, image=host.image, version=version)
    return BootDecision("install", mac, f"host {name} is {host.state}: install {host.image} v{version}", poll,
                        hostname=name, image=host.image, version=version, install_token=host.install_token,
                        kernel_args=host.kernel_args)


def boot_decision_for_mac(conn: sqlite3.Connection, mac: str, policy: BootPolicy) -> BootDecision:
    """Read the host (with what it inherits from its profile) and its image's versions, then decide (the
    reads are the only impure part)."""
    host = effective_host_by_mac(conn, mac)
    if host is None or not host.image:
        inventoried = not (host is None and policy.inspect) or has_inventory(conn, mac)
        return decide_boot(mac, host, (), policy, inventoried=inventoried)
    return decide_boot(mac, host, image_versions(conn, host.image), policy, client_arch=machine_arch(conn, mac),
                       arches=image_arches(conn, host.image))
