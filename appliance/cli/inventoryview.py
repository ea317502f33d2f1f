"""A machine's hardware inventory for people (`hosts show`, `machines show`): a summary, its disks, its NICs."""

from __future__ import annotations

import time
from typing import Any

from appliance.cli.sizes import human_size


def inventory_lines(view: dict[str, Any] | None) -> list[str]:
    """The `hardware` lines of a host's or machine's detail (view: domain.inventory.InventoryView as JSON)."""
    if not view:
        return ["hardware   - (its installer posts an inventory when it installs, or when it is inspected)"]
    inv = view["inventory"]
    vendor = inv.get("system_vendor") or {}
    received = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(view["received"]))
    lines = [f"hardware   {view['summary']} (inventory of {received})"]
    if vendor.get("serial_number") or vendor.get("uuid"):
        lines.append(f"system     serial {vendor.get('serial_number') or '-'}, uuid {vendor.get('uuid') or '-'}")
    if inv.get("bmc_address"):
        lines.append(f"bmc        {inv['bmc_address']}")
    for d in inv.get("disks") or []:
        rotational = {True: "rotational", False: "non-rotational"}.get(d.get("rotational"), "")
        said = ", ".join(x for x in (f"serial {d['serial']}" if d.get("serial") else "",
                                     f"wwn {d['wwn']}" if d.get("wwn") else "", d.get("model") or "", rotational,
                                     d.get("by_path") or "") if x)
        lines.append(f"disk       {d['name']} {human_size(d.get('size'))}" + (f" ({said})" if said else ""))
    for n in inv.get("interfaces") or []:
        speed = f"{n['speed_mbps']} Mb/s" if n.get("speed_mbps") is not None else "speed ?"
        link = {True: "link up", False: "no link"}.get(n.get("has_carrier"), "link ?")
        lines.append(f"nic        {n['name']} {n['mac_address']} {n.get('driver') or '-'}, {speed}, {link}")
        peer = n.get("lldp_neighbor")
        if peer:  # the switch port it is plugged into (LLDP)
            lines.append(f"  switch   {peer.get('system_name') or '-'} port {peer.get('port_id') or '-'} "
                         f"(chassis {peer.get('chassis_id') or '-'})")
    return lines
