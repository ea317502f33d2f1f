"""The value types of config keys that are more than a number or a word: each checks (and normalises) the
TOML value in its `from_config`, raising ValueError with the problem; the config parser names the key.

The config parser (appliance/config.py) calls `from_config` for every field typed with one of these; a
type with EMPTY_IS_NONE reads an empty string as "not set" (its field is `T | None`).
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from protocols import fingerprint
from protocols.names import is_dns_name


def text(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {v!r}")
    return v


def address(v: Any) -> IPv4Address:
    try:
        return IPv4Address(text(v))
    except ValueError:
        raise ValueError(f"{v!r} is not an IPv4 address") from None


class AnyNetwork(IPv4Network):
    """An IPv4 network or one address (a /32); host bits are dropped ("10.0.0.7/24" is 10.0.0.0/24)."""

    @classmethod
    def from_config(cls, v: Any) -> AnyNetwork:
        try:
            return cls(text(v), strict=False)
        except ValueError:
            raise ValueError(f"{v!r} is not an IPv4 address or network") from None


class AddressRange:
    """A DHCP pool, written 'first-last' (e.g. '10.0.0.100-10.0.0.199'). A plain class, not a dataclass:
    msgspec reads dataclasses as tables, and this is one string."""

    __slots__ = ("first", "last")

    def __init__(self, first: IPv4Address, last: IPv4Address) -> None:
        self.first, self.last = first, last

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AddressRange) and (self.first, self.last) == (other.first, other.last)

    def __hash__(self) -> int:
        return hash((self.first, self.last))

    def __repr__(self) -> str:
        return f"AddressRange({str(self)!r})"

    @classmethod
    def from_config(cls, v: Any) -> AddressRange:
        s = text(v)
        first, sep, last = s.partition("-")
        if not sep:
            raise ValueError(f"{s!r}: expected 'first-last', e.g. '10.0.0.100-10.0.0.199'")
        a, b = address(first.strip()), address(last.strip())
        if a > b:
            raise ValueError(f"{s!r}: the first address is after the last")
        return cls(a, b)

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


class DnsName(str):
    """A DNS name, kept lower-case without leading or trailing dots (protocols.names: the one rule)."""

    __slots__ = ()

    @classmethod
    def from_config(cls, v: Any) -> DnsName:
        s = text(v).strip(".").lower()
        if not is_dns_name(s):
            raise ValueError(f"{v!r} is not a valid DNS name")
        return cls(s)


class InterfaceName(str):
    """A network interface name (at most 15 bytes, no '/' or blank); the empty string means none."""

    __slots__ = ()
    EMPTY_IS_NONE = True

    @classmethod
    def from_config(cls, v: Any) -> InterfaceName:
        s = text(v)
        if len(s) > 15 or "/" in s or " " in s:
            raise ValueError(f"{s!r} is not a network interface name")
        return cls(s)


class BootFileName(str):
    """A boot file name the DHCP reply names; the empty string means none (the default applies)."""

    __slots__ = ()
    EMPTY_IS_NONE = True

    @classmethod
    def from_config(cls, v: Any) -> BootFileName:
        return cls(text(v))


_BITRATE = re.compile(r"^[1-9][0-9]{0,5}[kmg]?$")


class Bitrate(str):
    """A udpcast bit rate such as 600m, 80000k or 1g (kept lower-case)."""

    __slots__ = ()

    @classmethod
    def from_config(cls, v: Any) -> Bitrate:
        s = text(v).lower()
        if not _BITRATE.match(s):
            raise ValueError(f"{v!r} is not a bit rate such as 600m, 80000k or 1g")
        return cls(s)


_BASE_URL = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+(?::\d+)?")


class BaseUrl(str):
    """An http:// or https:// base URL without a path (a trailing '/' is dropped); empty: none."""

    __slots__ = ()

    @classmethod
    def from_config(cls, v: Any) -> BaseUrl:
        s = text(v).rstrip("/")
        if s and not _BASE_URL.fullmatch(s):
            raise ValueError(f"{s!r} is not an http:// or https:// base URL (e.g. \"http://10.0.0.1\")")
        return cls(s)


class Fingerprint(str):
    """A certificate's SHA-256 fingerprint (protocols/fingerprint.py: any usual spelling, kept as OpenSSL
    prints it); empty: none."""

    __slots__ = ()
    EMPTY_IS_NONE = True

    @classmethod
    def from_config(cls, v: Any) -> Fingerprint:
        return cls(fingerprint.parse(text(v)))
