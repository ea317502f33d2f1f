"""Hardware inventories and root-device hints.

  GET    /api/v1/machines/{mac}/inventory    the machine's inventory, as its installer last posted it
  GET    /api/v1/hosts/{name}/root-device    the host's own root-device hints
  PUT    /api/v1/hosts/{name}/root-device    {"hints": "serial=...,size>=..."}: set them (operator)
  DELETE /api/v1/hosts/{name}/root-device    clear them (the image's apply again)
  GET|PUT|DELETE /api/v1/profiles/{name}/root-device the same for every host of a profile (a host's own win)
  GET|PUT|DELETE /api/v1/images/{name}/root-device   the same for every host of an image (a host's or its
                                                     profile's win)
JSON <-> domain.hardware; the rule that applies hints is domain/rootdevice.py.
"""

from __future__ import annotations

from domain import hardware
from domain.hardware import RootDeviceBody, RootDeviceSetting
from domain.inventory import InventoryView
from services.auth import Auth
from services.routes import Call, Route, error, ok
from state.root_hints import Kind


async def machine_inventory(call: Call[None]) -> InventoryView:
    return hardware.machine_inventory(call.ctx.sources().reader, call.request.match_info["mac"])


def _kind(call: Call[object]) -> Kind:
    path = call.request.path
    return "image" if path.startswith("/api/v1/images/") else "profile" if path.startswith("/api/v1/profiles/") \
        else "host"


async def show_root_device(call: Call[None]) -> RootDeviceSetting:
    return hardware.root_device_setting(call.ctx.sources().reader, _kind(call), call.request.match_info["name"])


async def set_root_device(call: Call[RootDeviceBody]) -> RootDeviceSetting:
    ctx = call.ctx
    view, op = hardware.set_root_device_op(ctx.sources().reader, _kind(call), call.request.match_info["name"],
                                           (await call.body()).hints)
    await ctx.store.journal.run(op)
    return view


async def clear_root_device(call: Call[None]) -> RootDeviceSetting:
    ctx = call.ctx
    view, op = hardware.set_root_device_op(ctx.sources().reader, _kind(call), call.request.match_info["name"], None)
    await ctx.store.journal.run(op)
    return view


_WIN = {"image": " (a host's or its profile's hints win)", "profile": " (a host's own hints win)"}


def _hint_routes(what: str) -> list[Route]:
    path = f"/api/v1/{what}s/{{name}}/root-device"
    missing = f"no such {what}"
    return [
        Route("GET", path, show_root_device, f"The {what}'s root-device hints (which disk its installs go to)",
              {200: ok("the hints", RootDeviceSetting), 404: error(missing)}, auth=Auth.READER),
        Route("PUT", path, set_root_device,
              f"Set the {what}'s root-device hints: serial, wwn, by_path, model, size>=/<=, rotational, "
              "smallest/largest; one set per disk, by ;, for a RAID or LVM layout"
              + _WIN.get(what, ""),
              {200: ok("the hints as stored", RootDeviceSetting), 400: error("a term that is not a hint"),
               404: error(missing)}, auth=Auth.OPERATOR, body=RootDeviceBody),
        Route("DELETE", path, clear_root_device, f"Clear the {what}'s root-device hints",
              {200: ok("no hints", RootDeviceSetting), 404: error(missing)}, auth=Auth.OPERATOR),
    ]


ROUTES = [
    Route("GET", "/api/v1/machines/{mac}/inventory", machine_inventory,
          "The machine's hardware inventory (CPU, memory, disks, NICs, DMI system, boot mode, BMC), as its installer "
          "last posted it",
          {200: ok("the inventory", InventoryView), 400: error("not a MAC address"),
           404: error("no inventory of this machine")}, auth=Auth.READER),
    *_hint_routes("host"),
    *_hint_routes("profile"),
    *_hint_routes("image"),
]
