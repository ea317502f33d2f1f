"""`hosts set NODES --root-device HINTS`, `profiles add|set NAME --root-device HINTS` and `images root-device
NAME [HINTS]`: which disk installs go to, through the API (PUT/DELETE /api/v1/{hosts,images}/{name}/root-device;
a profile's with its other settings) or, with the daemon down, on the
state database by the same use case (domain.hardware.set_root_device_op)."""

from __future__ import annotations

from typing import Any

from appliance.cli.apiclient import ApiClient
from appliance.cli.commands._common import ask_daemon, offline_writer
from appliance.config import Config
from domain import hardware
from domain.views import view_json
from state.lease_rows import offline_transaction
from state.root_hints import Kind
from state.store import open_offline

HELP = ("which disk its installs go to: serial=S, wwn=W, by_path=P, model=M, size>=N, size<=N, "
        "rotational=true|false, smallest, largest (joined by commas; '' clears); an image made from several "
        "disks (RAID, LVM) takes one set per disk in its layout's order, joined by ; (serial=A;serial=B)")


def apply(cfg: Config, kind: Kind, name: str, text: str | None) -> dict[str, Any]:
    """Set the hints (None or '': clear them); their view."""
    path = f"/api/v1/{kind}s/{name}/root-device"

    def online(api: ApiClient) -> Any:
        return api.request("PUT", path, {"hints": text}) if text else api.delete(path)

    answered, view = ask_daemon(cfg, online, writes=True)
    if answered:
        return view  # type: ignore[no-any-return]
    with offline_writer(cfg):
        conn = open_offline(cfg.state_dir)
        try:
            with offline_transaction(conn):
                shown, op = hardware.set_root_device_op(conn, kind, name, text or None)
                op(conn)
            return view_json(shown)  # a refusal (Invalid, NotFound) escapes: exitcodes.py maps it
        finally:
            conn.close()


def show(cfg: Config, kind: Kind, name: str) -> dict[str, Any]:
    answered, view = ask_daemon(cfg, lambda api: api.get(f"/api/v1/{kind}s/{name}/root-device"))
    if answered:
        return view  # type: ignore[no-any-return]
    conn = open_offline(cfg.state_dir)
    try:
        return view_json(hardware.root_device_setting(conn, kind, name))
    finally:
        conn.close()


def describe(view: dict[str, Any]) -> str:
    return f"root device {view['hints']}" if view.get("hints") else "no root-device hints (the first disk found)"
