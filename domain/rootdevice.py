"""Root-device hints: which of a machine's disks an install goes to (Ironic's root_device hints), and the one
rule that applies them to the disks of a machine's inventory.

Hints are written `serial=S0M3,size>=100G,rotational=false,smallest` (terms joined by commas):

  serial=S  wwn=W  by_path=P  model=M   the disk's own value (wwn and model ignore case; by_path with or
                                        without /dev/disk/by-path/)
  size>=N  size<=N  size=N              bytes, with K M G T (powers of 1024) or KB MB GB TB (of 1000);
                                        a plain number is GiB, as Ironic's; size=N is N whole units
                                        (size=447G: from 447 GiB up to, not including, 448 GiB)
  rotational=true|false                 a spinning disk or not
  smallest | largest                    of the disks that match the other terms, the smallest or largest

A disk must match every term. No disk matching is a failure that names the candidates; several matching
without smallest/largest is one too: the installer never guesses. No hints: the installer keeps its own
order (the first disk it finds). The installer posts its inventory and the imageserver answers with the disk
chosen here (domain.hardware.take_inventory), so this rule lives in Python only, not again in shell.

An image made from several disks (a RAID1 or an LVM volume group across disks) names each of its disks by
its own set of hints, the sets separated by semicolons in the layout's disk order: `serial=A;serial=B` puts
the master's disk 0 (the root device) on the disk whose serial is A and its disk 1, and so every md member
and PV the layout has there, on B, whatever order the kernel found them in (`DiskHints`, `choose_disks`).
Each set chooses among the disks the earlier sets left (`smallest;smallest`: the two smallest). Disks of the
layout past the last set keep the installer's own order.

Whose hints apply is the host's own, else its profile's, else its image's: the `hosts_effective` view of the
state (state/schema.py) decides it, like every inherited value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal, cast

import msgspec

from domain.errors import Invalid
from domain.inventory import Disk
from state.db import Connection
from state.hosts import Host, effective_root_hints
from state.root_hints import Kind

Pick = Literal["smallest", "largest"]
_UNITS = {"": 1 << 30, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30,
          "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_TERM = re.compile(r"^\s*(?P<key>[a-z_]+)\s*(?P<op>>=|<=|=)\s*(?P<value>.*?)\s*$", re.S)
_SIZE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[a-zA-Z]*)$")
BY_PATH_PREFIX = "/dev/disk/by-path/"
MAX_TEXT = 1024


@dataclass(frozen=True, slots=True)
class RootDeviceHints:
    """The hints of a host or an image (JSON as stored; `text()` as the operator writes them)."""

    serial: str | None = None
    wwn: str | None = None
    by_path: str | None = None
    model: str | None = None
    size_min: int | None = None  # bytes
    size_max: int | None = None  # bytes
    rotational: bool | None = None
    pick: Pick | None = None

    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def text(self) -> str:
        terms = [f"{k}={getattr(self, k)}" for k in ("serial", "wwn", "by_path", "model") if getattr(self, k)]
        unit = (self.size_max + 1 - self.size_min) if self.size_min is not None and self.size_max is not None else 0
        if unit in _UNITS.values() and self.size_min is not None and self.size_min % unit == 0:
            terms.append(f"size={_size_text(self.size_min, unit)}")
        else:
            if self.size_min is not None:
                terms.append(f"size>={_size_text(self.size_min)}")
            if self.size_max is not None:
                terms.append(f"size<={_size_text(self.size_max)}")
        if self.rotational is not None:
            terms.append(f"rotational={'true' if self.rotational else 'false'}")
        if self.pick:
            terms.append(self.pick)
        return ",".join(terms)

    def json(self) -> str:
        return msgspec.json.encode({f.name: getattr(self, f.name) for f in fields(self)
                                    if getattr(self, f.name) is not None}).decode()

    @classmethod
    def from_json(cls, text: str) -> RootDeviceHints:
        return msgspec.json.decode(text, type=cls)


def parse_hints(text: str) -> RootDeviceHints:
    """The hints `text` says (see the module doc); Invalid names the term that is wrong."""
    if len(text) > MAX_TEXT:
        raise Invalid(f"root-device hints are longer than {MAX_TEXT} characters")
    hints = RootDeviceHints()
    for term in (t for t in text.split(",") if t.strip()):
        word = term.strip().lower()
        if word in ("smallest", "largest"):
            if hints.pick is not None and hints.pick != word:
                raise Invalid("root-device hints: smallest and largest together")
            hints = replace(hints, pick=word)  # type: ignore[arg-type]  # one of Pick, checked above
            continue
        found = _TERM.match(term)
        if found is None:
            raise Invalid(f"root-device hint {term.strip()!r}: not KEY=VALUE, size>=N, size<=N, smallest or largest")
        key, op, value = found["key"], found["op"], found["value"]
        if not value:
            raise Invalid(f"root-device hint {term.strip()!r}: no value")
        if key == "size":
            n, unit = parse_size(value)
            if op == "=":  # N whole units, as Ironic's size=N is the disk's whole GiB
                if n % unit:
                    raise Invalid(f"root-device hint {term.strip()!r}: size= takes a whole number of units")
                hints = replace(hints, size_min=n, size_max=n + unit - 1)
            elif op == ">=":
                hints = replace(hints, size_min=n)
            else:
                hints = replace(hints, size_max=n)
        elif op != "=":
            raise Invalid(f"root-device hint {term.strip()!r}: only size takes >= or <=")
        elif key == "serial":
            hints = replace(hints, serial=value)
        elif key == "wwn":
            hints = replace(hints, wwn=value)
        elif key == "by_path":
            hints = replace(hints, by_path=value)
        elif key == "model":
            hints = replace(hints, model=value)
        elif key == "rotational":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise Invalid(f"root-device hint {term.strip()!r}: rotational is true or false")
            hints = replace(hints, rotational=value.lower() in ("true", "1", "yes"))
        else:
            raise Invalid(f"root-device hint {term.strip()!r}: unknown key {key!r} (serial, wwn, by_path, model, "
                          "size, rotational, smallest, largest)")
    if hints.size_min is not None and hints.size_max is not None and hints.size_min > hints.size_max:
        raise Invalid("root-device hints: size>= is larger than size<=")
    return hints


def parse_size(text: str) -> tuple[int, int]:
    """(bytes, the unit's bytes) of `text`: 1.5T, 480G, 500GB, 7 (GiB)."""
    found = _SIZE.match(text.strip())
    unit = found["unit"].lower() if found else None
    if found is None or unit not in _UNITS:
        raise Invalid(f"root-device hint size {text!r}: a number with K, M, G, T (or KB, MB, GB, TB); plain is GiB")
    return int(float(found["n"]) * _UNITS[unit]), _UNITS[unit]


_SHOWN_UNITS = (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("TB", 10**12), ("GB", 10**9),
                ("MB", 10**6), ("KB", 10**3))


def _size_text(n: int, unit: int | None = None) -> str:
    """Bytes as the hints write them: in `unit`, else in the unit that divides them into the smallest number."""
    fits = [(n // scale, name) for name, scale in _SHOWN_UNITS
            if (unit is None or scale == unit) and n >= scale and n % scale == 0]
    return f"{min(fits)[0]}{min(fits)[1]}" if fits else f"{n}B"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _same(a: str | None, b: str | None, *, fold: bool = False) -> bool:
    if a is None or b is None:
        return False
    a, b = a.strip(), b.strip()
    return a.lower() == b.lower() if fold else a == b


def _by_path(p: str | None) -> str | None:
    return p.removeprefix(BY_PATH_PREFIX) if p else p


def matches(hints: RootDeviceHints, disk: Disk) -> bool:
    """Does `disk` match every term of `hints` (smallest/largest aside)?"""
    if hints.serial is not None and not _same(hints.serial, disk.serial):
        return False
    if hints.wwn is not None and not _same(hints.wwn, disk.wwn, fold=True):
        return False
    if hints.by_path is not None and not _same(_by_path(hints.by_path), _by_path(disk.by_path)):
        return False
    if hints.model is not None and not _same(hints.model, disk.model, fold=True):
        return False
    if hints.size_min is not None and disk.size < hints.size_min:
        return False
    if hints.size_max is not None and disk.size > hints.size_max:
        return False
    return hints.rotational is None or disk.rotational is hints.rotational


def describe(disk: Disk) -> str:
    """One disk as a failure names it: path, size and what hints can match."""
    said = [_human(disk.size)]
    for key in ("serial", "wwn", "model", "by_path"):
        value = getattr(disk, key)
        if value:
            said.append(f"{key} {value}")
    if disk.rotational is not None:
        said.append("rotational" if disk.rotational else "non-rotational")
    return f"{disk.name} ({', '.join(said)})"


@dataclass(frozen=True, slots=True)
class Choice:
    """The disk an install goes to: `disk` (a device path), or None with `failure` saying why none
    (hints given), or neither (no hints: the installer's own order)."""

    disk: str | None
    failure: str | None = None


def choose(hints: RootDeviceHints | None, disks: Sequence[Disk]) -> Choice:
    """The one rule: the disk the hints name among `disks` (the candidates the installer found)."""
    if hints is None or hints.empty():
        return Choice(None)
    found = [d for d in disks if matches(hints, d)]
    candidates = "; ".join(describe(d) for d in disks) or "none"
    if not found:
        return Choice(None, f"no disk matches the root-device hints {hints.text()}; candidates: {candidates}")
    if hints.pick == "smallest":
        return Choice(min(found, key=lambda d: d.size).name)
    if hints.pick == "largest":
        return Choice(max(found, key=lambda d: d.size).name)
    if len(found) > 1:
        return Choice(None, f"{len(found)} disks match the root-device hints {hints.text()} "
                            f"({', '.join(d.name for d in found)}): add a term, or smallest or largest; "
                            f"candidates: {candidates}")
    return Choice(found[0].name)


# --------------------------------------------------------------------------- several disks: RAID and LVM members


MAX_DISKS = 32


@dataclass(frozen=True, slots=True)
class DiskHints:
    """The hints of a host, profile or image: one set per disk of the image's layout, in its order (the first
    is the root device's; the others name the disks a RAID or LVM layout spans)."""

    disks: tuple[RootDeviceHints, ...]

    def text(self) -> str:
        return ";".join(h.text() for h in self.disks)

    def json(self) -> str:
        """One set as the object it always was; several as a list of them."""
        if len(self.disks) == 1:
            return self.disks[0].json()
        return "[" + ",".join(h.json() for h in self.disks) + "]"

    @classmethod
    def from_json(cls, text: str) -> DiskHints:
        if text.lstrip().startswith("["):
            return cls(tuple(msgspec.json.decode(text, type=list[RootDeviceHints])))
        return cls((RootDeviceHints.from_json(text),))


def parse_disk_hints(text: str) -> DiskHints:
    """`serial=A,smallest` (the root device) or `serial=A;serial=B` (disk 0, disk 1 of the layout); Invalid
    names the term, and the disk when there are several."""
    if len(text) > MAX_TEXT:
        raise Invalid(f"root-device hints are longer than {MAX_TEXT} characters")
    parts = text.split(";")
    if len(parts) > MAX_DISKS:
        raise Invalid(f"root-device hints for {len(parts)} disks: at most {MAX_DISKS}")
    sets = []
    for i, part in enumerate(parts):
        try:
            hints = parse_hints(part)
        except Invalid as e:
            raise Invalid(f"disk {i}: {e}" if len(parts) > 1 else str(e)) from None
        if hints.empty():
            raise Invalid(f"no root-device hints for disk {i} in {text!r}" if len(parts) > 1
                          else f"no root-device hints in {text!r}")
        sets.append(hints)
    return DiskHints(tuple(sets))


@dataclass(frozen=True, slots=True)
class DisksChoice:
    """The disks an install goes to, in the layout's order (`disks[0]` the root device), or none with
    `failure` saying why (hints given), or neither (no hints: the installer's own order)."""

    disks: tuple[str, ...] = ()
    failure: str | None = None


def choose_disks(hints: DiskHints | None, disks: Sequence[Disk]) -> DisksChoice:
    """The rule for several disks: each set of hints chooses (by `choose`) among the disks the earlier sets
    left; any set choosing none fails the whole install, naming that disk of the layout and the candidates."""
    if hints is None or not hints.disks:
        return DisksChoice()
    chosen: list[str] = []
    several = len(hints.disks) > 1
    for i, one in enumerate(hints.disks):
        left = [d for d in disks if d.name not in chosen]
        choice = choose(one, left)
        if choice.disk is None:
            why = choice.failure or f"no root-device hints for disk {i}"
            if several:
                taken = f" (disks {', '.join(chosen)} went to the disks before it)" if chosen else ""
                why = f"disk {i} of the image's layout{taken}: {why}"
            return DisksChoice((), why)
        chosen.append(choice.disk)
    return DisksChoice(tuple(chosen))


def hints_for(reader: Connection, host: Host) -> tuple[DiskHints | None, Kind | None]:
    """The root-device hints a host's install applies and whose they are: the host's own, else its profile's,
    else its image's (read through the hosts_effective view, where that rule lives)."""
    found = effective_root_hints(reader, [host.name]).get(host.name)
    if found is None:
        return None, None
    stored, kind = found
    return DiskHints.from_json(stored), cast(Kind, kind)
