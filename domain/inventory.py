"""A machine's hardware inventory, shaped like Ironic's (what its installer found in /sys and /proc:
appliance/boot/installer/lib/inventory.sh): CPU, memory, disks, NICs, DMI system, firmware boot mode, BMC.

The installer posts it as JSON (POST /install/{mac}/inventory); these dataclasses are that body's shape,
checked by msgspec (domain/bodies.parse_body: a wrong key is named) with bounds on every list and string, so
a machine cannot store more than a few hundred kilobytes. Keys the installer does not send are null; keys it
sends that are not declared here are ignored (a newer installer, an older server).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated

import msgspec

from domain.discovery import Hardware
from domain.views import doc
from protocols.lldp import LldpNeighbor, neighbor

Text = Annotated[str, msgspec.Meta(max_length=256)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1 << 62)]


@dataclass(frozen=True, slots=True)
class Cpu:
    model_name: Text | None = None
    count: Count | None = field(default=None, metadata=doc("logical CPUs"))
    architecture: Text | None = field(default=None, metadata=doc("uname -m: x86_64, aarch64"))
    flags: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=1024)] = field(
        default_factory=list)


@dataclass(frozen=True, slots=True)
class Memory:
    total: Count | None = field(default=None, metadata=doc("bytes the kernel manages (MemTotal)"))
    physical_mb: Count | None = field(default=None, metadata=doc("MiB of memory installed (online memory blocks)"))


@dataclass(frozen=True, slots=True)
class Disk:
    name: Text = field(metadata=doc("its device: /dev/vda, /dev/nvme0n1"))
    size: Count = field(metadata=doc("bytes"))
    model: Text | None = None
    serial: Text | None = None
    wwn: Text | None = None
    rotational: bool | None = None
    by_path: Text | None = field(default=None, metadata=doc("its /dev/disk/by-path name (udev's path_id)"))


@dataclass(frozen=True, slots=True)
class Interface:
    name: Text
    mac_address: Text
    driver: Text | None = None
    speed_mbps: Count | None = field(default=None, metadata=doc("null: not known (no link, a virtual NIC)"))
    has_carrier: bool | None = None
    lldp: Annotated[list[Annotated[list[int | Annotated[str, msgspec.Meta(max_length=1024)]],
                                   msgspec.Meta(min_length=2, max_length=2)]],
                    msgspec.Meta(max_length=64)] | None = field(default=None, metadata=doc(
        "the TLVs of the LLDP frame it received, as [type, hex of the value] (Ironic's); null: none seen"))
    lldp_neighbor: LldpNeighbor | None = field(default=None, metadata=doc(
        "the switch port it is plugged into, read from lldp by the imageserver (protocols/lldp.py)"))


@dataclass(frozen=True, slots=True)
class SystemVendor:
    manufacturer: Text | None = None
    product_name: Text | None = None
    serial_number: Text | None = None
    uuid: Text | None = None


@dataclass(frozen=True, slots=True)
class Boot:
    current_boot_mode: Text | None = field(default=None, metadata=doc("uefi or bios"))
    pxe_interface: Text | None = field(default=None, metadata=doc("the MAC the installer booted with"))


@dataclass(frozen=True, slots=True)
class Inventory:
    """POST /install/{mac}/inventory: what the installer found on the machine."""

    cpu: Cpu = field(default_factory=Cpu)
    memory: Memory = field(default_factory=Memory)
    disks: Annotated[list[Disk], msgspec.Meta(max_length=256)] = field(default_factory=list, metadata=doc(
        "the whole disks an install may use, in the kernel's order"))
    interfaces: Annotated[list[Interface], msgspec.Meta(max_length=256)] = field(default_factory=list)
    system_vendor: SystemVendor = field(default_factory=SystemVendor)
    boot: Boot = field(default_factory=Boot)
    bmc_address: Text | None = field(default=None, metadata=doc("the BMC's IPv4 address, if the machine reports "
                                                                "one (ipmitool lan print)"))

    def json(self) -> str:
        return msgspec.json.encode(self).decode()

    def with_neighbors(self) -> Inventory:
        """Each NIC's LLDP neighbour read from its TLVs (the installer posts them raw; what it may have said
        itself of the neighbour is not taken)."""
        return replace(self, interfaces=[replace(n, lldp_neighbor=neighbor(n.lldp) if n.lldp else None)
                                         for n in self.interfaces])

    @classmethod
    def from_json(cls, text: str | bytes) -> Inventory:
        return msgspec.json.decode(text, type=cls)

    def summary(self) -> str:
        """One line: `QEMU Standard PC, 2 x x86_64 QEMU Virtual CPU, 512 MiB, 2 disks, 1 NIC, bios`."""
        v, parts = self.system_vendor, []
        system = " ".join(x for x in (v.manufacturer, v.product_name) if x)
        if system:
            parts.append(system)
        cpu = " ".join(x for x in (f"{self.cpu.count} x" if self.cpu.count else None, self.cpu.architecture,
                                   self.cpu.model_name) if x)
        if cpu:
            parts.append(cpu)
        if self.memory.physical_mb or self.memory.total:
            parts.append(f"{self.memory.physical_mb or (self.memory.total or 0) >> 20} MiB")
        parts.append(f"{len(self.disks)} disk{'s' if len(self.disks) != 1 else ''}")
        parts.append(f"{len(self.interfaces)} NIC{'s' if len(self.interfaces) != 1 else ''}")
        if self.boot.current_boot_mode:
            parts.append(self.boot.current_boot_mode)
        return ", ".join(parts)

    def hardware(self) -> Hardware:
        """What discovery rules may match of it (domain.discovery)."""
        speeds = [n.speed_mbps for n in self.interfaces if n.speed_mbps is not None]
        return Hardware(self.system_vendor.manufacturer, self.system_vendor.product_name, self.memory_mb(),
                        len(self.disks), max(speeds) if speeds else None, self.bmc_address)

    def memory_mb(self) -> int | None:
        """MiB of memory: installed, else what the kernel manages."""
        if self.memory.physical_mb:
            return self.memory.physical_mb
        return self.memory.total >> 20 if self.memory.total else None


@dataclass(frozen=True, slots=True)
class HardwareSummary:
    """A machine's inventory in a few numbers (the machines list and the dashboard; the whole inventory is in
    one machine's view)."""

    cpu: str | None = field(metadata=doc("count x architecture and model: 2 x x86_64 QEMU Virtual CPU"))
    memory_mb: int | None = field(metadata=doc("MiB installed, else what the kernel manages"))
    disks: int = field(metadata=doc("whole disks an install may use"))
    disk_bytes: int = field(metadata=doc("their bytes together"))
    nics: int = field(metadata=doc("physical NICs"))
    system: str | None = field(metadata=doc("DMI vendor and product"))
    received: float = field(metadata=doc("when its installer posted the inventory"))
    text: str = field(metadata=doc("all of it on one line (Inventory.summary)"))

    @classmethod
    def of(cls, inventory: Inventory, received: float) -> HardwareSummary:
        cpu = " ".join(x for x in (f"{inventory.cpu.count} x" if inventory.cpu.count else None,
                                   inventory.cpu.architecture, inventory.cpu.model_name) if x) or None
        v = inventory.system_vendor
        system = " ".join(x for x in (v.manufacturer, v.product_name) if x) or None
        return cls(cpu, inventory.memory_mb(), len(inventory.disks), sum(d.size for d in inventory.disks),
                   len(inventory.interfaces), system, received, inventory.summary())


@dataclass(frozen=True, slots=True)
class InventoryView:
    """A machine's stored inventory: when it came and what it says."""

    mac: str
    received: float
    summary: str
    inventory: Inventory
