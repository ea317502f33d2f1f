"""Discovery: what happens to a machine that is no host yet. Pure decisions, shared by DHCP and the boot path.

Policies ([discovery] policy):
  hold    an unknown PXE machine is given a boot and waits (polls) until an operator assigns it
  auto    an unknown machine becomes a host on first sighting, named and imaged by the first rule
          that matches it (`[[discovery.rules]]`); its next poll gets the install
  ignore  an unknown machine gets an address but never a boot: DHCP leaves the boot options out

A rule matches on MAC prefix, client architecture (DHCP option 93), the CPU that architecture means
(`cpu = "arm64"`: codes 11, 19, ...; protocols/arch.py) and vendor class prefix (option 60), and on the
machine's hardware inventory where one is stored (state/inventories.py: posted by its installer): DMI system
vendor and product (prefixes, case ignored), memory, disk count and NIC speed (at least). Every field it gives
must match, a field it leaves out matches anything; a rule with hardware fields never matches a machine
without an inventory.
A rule may also give its hosts BMC defaults (scheme, user, a file holding the password): a host it makes of a
machine whose inventory names a BMC address gets that BMC at once (as MAAS sets a machine's BMC up when it
enlists it); the password is read from its file only then and is never shown or logged.
Host names come from the rule's pattern, e.g. "node{n:03}" -> node001, node002, ...: the lowest n
whose name is not taken.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec

from protocols.arch import ARCHES, canonical_arch, matches_client
from protocols.names import is_label

# [discovery] policy (see the module doc).
DiscoveryPolicy = Literal["hold", "auto", "ignore"]
POLICIES: tuple[str, ...] = get_args(DiscoveryPolicy)
MAX_N = 100_000  # a pattern's n runs up to here; a rule that fills it is a configuration problem


class DiscoveryError(ValueError):
    """A rule or pattern that cannot work; the message says why."""


class HostPattern(str):
    """A host name pattern with {n}, e.g. "node{n:03}" (check_pattern)."""

    __slots__ = ()

    @classmethod
    def from_config(cls, v: Any) -> HostPattern:
        return cls(check_pattern(_text(v)))


class MacPrefix(str):
    """A MAC prefix of whole octets, kept canonical: lower-case, colon-separated ("52:54:00")."""

    __slots__ = ()

    @classmethod
    def from_config(cls, v: Any) -> MacPrefix:
        return cls(normalize_mac_prefix(_text(v)))


class RuleImage(str):
    """The image a rule gives its hosts: a name, not a path."""

    __slots__ = ()

    @classmethod
    def from_config(cls, v: Any) -> RuleImage:
        s = _text(v)
        if not s or "/" in s or s.startswith("."):
            raise DiscoveryError(f"{v!r} is not an image name")
        return cls(s)


class RuleCpu(str):
    """The CPU architecture a rule's machines have (protocols/arch.py names; "aarch64", "amd64" accepted)."""

    __slots__ = ()

    @classmethod
    def from_config(cls, v: Any) -> RuleCpu:
        arch = canonical_arch(_text(v))
        if arch is None:
            raise DiscoveryError(f"{v!r} is not a CPU architecture (one of {', '.join(ARCHES)})")
        return cls(arch)


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {v!r}")
    return v


@dataclass(frozen=True, slots=True)
class Hardware:
    """What rules may match of a machine's inventory (domain.inventory.Inventory.hardware)."""

    vendor: str | None = None  # DMI system manufacturer
    product: str | None = None  # DMI product name
    memory_mb: int | None = None
    disks: int = 0
    nic_speed_mbps: int | None = None  # the fastest NIC's
    bmc_address: str | None = None  # the BMC's address the machine reports (not matched: a rule's BMC defaults use it)


HardwareOf = Callable[[], "Hardware | None"]  # looked up only when a rule needs it (a query)


def _prefix(want: str | None, have: str | None) -> bool:
    return want is None or (have or "").lower().startswith(want.lower())


class DiscoveryRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One [[discovery.rules]] table (the config parser checks the typed fields)."""

    hostname: HostPattern  # pattern with {n}, e.g. "node{n:03}"
    image: RuleImage
    version: Annotated[int, msgspec.Meta(ge=1, le=1 << 30)] | None = None
    mac_prefix: MacPrefix | None = None  # canonical lower-case, colon-separated prefix ("52:54:00")
    arch: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    vendor_class: str | None = None  # prefix of option 60 ("PXEClient", "HTTPClient")
    # The CPU of the machine: every client architecture of it ("arm64": codes 11, 19, ...), so one rule
    # gives the arm64 image to arm64 machines whether their firmware boots over PXE or HTTP.
    cpu: RuleCpu | None = None
    # the machine's hardware inventory (needed: a machine without one does not match)
    vendor: str | None = None  # prefix of its DMI system manufacturer ("Dell", "Supermicro"), case ignored
    product: str | None = None  # prefix of its DMI product name ("PowerEdge R650")
    min_memory_mb: Annotated[int, msgspec.Meta(ge=0)] | None = None
    min_disks: Annotated[int, msgspec.Meta(ge=0, le=4096)] | None = None
    min_nic_speed: Annotated[int, msgspec.Meta(ge=0)] | None = None  # Mb/s of its fastest NIC
    # BMC defaults: a host made by this rule of a machine whose inventory reports a BMC address gets the BMC
    # bmc_scheme://ADDRESS with this user and the password in bmc_password_file (0600; read when used). All
    # three or none (appliance/config.py checks).
    bmc_scheme: Literal["ipmi", "redfish", "https"] | None = None
    bmc_username: str | None = None
    bmc_password_file: Path | None = None

    @property
    def gives_bmc(self) -> bool:
        return self.bmc_scheme is not None and self.bmc_username is not None and self.bmc_password_file is not None

    @property
    def needs_hardware(self) -> bool:
        return any(v is not None for v in (self.vendor, self.product, self.min_memory_mb, self.min_disks,
                                           self.min_nic_speed))

    def matches(self, mac: str, arch: int | None, vendor_class: str | None,
                hardware: HardwareOf | None = None) -> bool:
        if self.mac_prefix is not None and not mac.startswith(self.mac_prefix):
            return False
        if self.arch is not None and arch != self.arch:
            return False
        if self.cpu is not None and not matches_client(self.cpu, arch):
            return False
        if self.vendor_class is not None and not (vendor_class or "").startswith(self.vendor_class):
            return False
        if not self.needs_hardware:
            return True
        hw = hardware() if hardware is not None else None
        if hw is None:
            return False
        return (_prefix(self.vendor, hw.vendor) and _prefix(self.product, hw.product)
                and (self.min_memory_mb is None or (hw.memory_mb or 0) >= self.min_memory_mb)
                and (self.min_disks is None or hw.disks >= self.min_disks)
                and (self.min_nic_speed is None or (hw.nic_speed_mbps or 0) >= self.min_nic_speed))


@dataclass(frozen=True, slots=True)
class DiscoveryDecision:
    kind: str  # "known" | "hold" | "create" | "ignore"
    reason: str
    name: str | None = None  # for "create"
    rule: DiscoveryRule | None = None


def check_pattern(pattern: str) -> str:
    """A host name pattern must contain {n} and give a valid DNS label for n = 1 and n = MAX_N."""
    if "{n" not in pattern:
        raise DiscoveryError(f"{pattern!r} has no {{n}} (e.g. 'node{{n:03}}')")
    for n in (1, MAX_N):
        try:
            name = pattern.format(n=n)
        except (KeyError, IndexError, ValueError) as e:
            raise DiscoveryError(f"{pattern!r} is not a pattern with {{n}}: {e}") from None
        if not is_label(name):
            raise DiscoveryError(f"{pattern!r} gives {name!r}, not a host name (one DNS label)")
    return pattern


def normalize_mac_prefix(text: str) -> str:
    """'52:54:00', '52-54-00', '525400' -> '52:54:00' (whole octets only)."""
    digits = re.sub(r"[:\-.]", "", text.strip().lower())
    if not digits or len(digits) % 2 or len(digits) > 12 or not re.fullmatch(r"[0-9a-f]+", digits):
        raise DiscoveryError(f"{text!r} is not a MAC prefix of whole octets (e.g. 52:54:00)")
    return ":".join(digits[i:i + 2] for i in range(0, len(digits), 2))


def first_match(rules: Sequence[DiscoveryRule], mac: str, arch: int | None,
                vendor_class: str | None, hardware: HardwareOf | None = None) -> DiscoveryRule | None:
    """The first rule matching; `hardware` is asked at most once, and only if a rule needs it."""
    asked: list[Hardware | None] = []

    def once() -> Hardware | None:
        if not asked:
            asked.append(hardware() if hardware is not None else None)
        return asked[0]

    return next((r for r in rules if r.matches(mac, arch, vendor_class, once)), None)


def next_name(pattern: str, taken: Callable[[str], bool] | Collection[str]) -> str:
    """The pattern's name for the lowest n >= 1 that is not taken."""
    is_taken = taken if callable(taken) else taken.__contains__
    for n in range(1, MAX_N + 1):
        name = pattern.format(n=n)
        if not is_taken(name):
            return name
    raise DiscoveryError(f"every name of {pattern!r} up to n={MAX_N} is taken")


def decide_unknown(policy: str, rules: Sequence[DiscoveryRule], *, mac: str, arch: int | None,
                   vendor_class: str | None, is_host: bool,
                   taken: Callable[[str], bool] | Collection[str],
                   hardware: HardwareOf | None = None) -> DiscoveryDecision:
    """What discovery does with a sighting of `mac` (is_host: a host has this MAC already)."""
    if is_host:
        return DiscoveryDecision("known", f"{mac} is a host")
    if policy == "ignore":
        return DiscoveryDecision("ignore", "policy ignore: unknown machines get an address, never a boot")
    if policy == "auto":
        rule = first_match(rules, mac, arch, vendor_class, hardware)
        if rule is not None:
            return DiscoveryDecision("create", f"rule {rule.hostname} matches", next_name(rule.hostname, taken), rule)
        return DiscoveryDecision("hold", "policy auto, but no rule matches: waiting for an assignment")
    return DiscoveryDecision("hold", "policy hold: waiting for an assignment")


def unknown_boot(policy: str, boot_unknown: str = "wait") -> str:
    """What the boot path gives a machine that is no host: "wait" (poll) or "local".

    ignore never boots an unknown machine; otherwise [boot] unknown says (hold and auto wait, so an
    assignment or an auto-created host is picked up by the next poll).
    """
    return "local" if policy == "ignore" else boot_unknown


def dhcp_offers_boot(policy: str, is_host: bool) -> bool:
    """Does a DHCP reply to this machine carry boot options (next-server, boot file, iPXE script)?"""
    return is_host or policy != "ignore"


@dataclass(slots=True)
class AutoCreateLimit:
    """How many hosts policy auto may still create: at most `max_hosts` hosts in the store in all, and
    `per_window` per `window` seconds (a fixed window). Spoofed MACs must not mint hosts without end; a
    machine refused here waits as under hold. `refusal` says why not, and whether to log it (once a window)."""

    max_hosts: int
    per_window: int
    window: float
    _window_start: float | None = None
    _created: int = 0
    _logged: set[str] = field(default_factory=set)  # reasons already logged in this window
    refused: int = 0

    def _roll(self, now: float) -> None:
        if self._window_start is None or now - self._window_start >= self.window:
            self._window_start = now
            self._created = 0
            self._logged.clear()

    def refusal(self, now: float, hosts: Callable[[], int]) -> tuple[str, bool] | None:
        """None: one more host may be created now. Else (reason, log_it). `hosts` counts the store's hosts
        (asked only when the window allows, so a flood past the window cap costs no query)."""
        self._roll(now)
        if self._created >= self.per_window:
            reason = f"auto_max_per_window={self.per_window} hosts per {self.window:g} s reached"
        elif hosts() >= self.max_hosts:
            reason = f"auto_max_hosts={self.max_hosts} reached"
        else:
            return None
        self.refused += 1
        first = reason not in self._logged
        self._logged.add(reason)
        return reason, first

    def created(self, now: float) -> None:
        self._roll(now)
        self._created += 1
