"""The image's /etc/crypttab against the disks the install recreates.

A master's crypttab names its encrypted devices by UUID=, PARTUUID=, LABEL= or device path. The
autoinstall script repartitions the disks it installs on, so an entry whose source is a partition of
one of those disks names something that no longer exists there:
- a volume keyed from /dev/urandom or /dev/random (swap, tmp) is made afresh at every boot: the entry
  is *retied* to the new partition by its new PARTUUID (a random-key volume has no LUKS header, so
  no UUID of its own);
- any other volume was a LUKS device the install did not recreate (its header and data are gone):
  the entry is *dropped* (commented out with the reason), so the boot does not wait for it.
Entries naming devices on disks the install does not touch stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.images.layout import Layout, Placement, resolve

RANDOM_KEYS = frozenset({"/dev/urandom", "/dev/random"})


@dataclass(frozen=True, slots=True)
class CrypttabLine:
    raw: str
    action: str = "keep"  # keep | retie | drop
    name: str = ""
    placement: Placement | None = None
    rest: str = ""  # the fields after the source (key file, options), tab-separated


def plan_crypttab(text: str, layout: Layout, recreated_disks: set[int]) -> list[CrypttabLine]:
    out: list[CrypttabLine] = []
    for raw in text.splitlines():
        fields = raw.split()
        if len(fields) < 2 or fields[0].startswith("#"):
            out.append(CrypttabLine(raw))
            continue
        name, source = fields[0], fields[1]
        place = resolve(source, layout)
        if place is None or place.disk not in recreated_disks:
            out.append(CrypttabLine(raw))
            continue
        key = fields[2] if len(fields) > 2 else "none"
        # A random key makes the volume afresh at every boot (swap, tmp, scratch): nothing was lost.
        action = "retie" if key in RANDOM_KEYS else "drop"
        out.append(CrypttabLine(raw, action, name, place, "\t".join(fields[2:])))
    return out
