"""SIGHUP is all or nothing: every service checks the re-read config before any changes, so a config that
one service refuses (here: DHCP, whose mode cannot change live) changes no other service either (here:
DNS keeps its domain, the API its pools), and the error names the refusing service."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from appliance.config import Config, parse_config
from appliance.daemon.runtime import ReconfigureError, Runtime
from appliance.daemon.wiring import build_services, reconfigure_services
from services.dns import DnsServer
from state.store import Store

BASE = """
[appliance]
state_dir = "{state}"
address = "10.79.0.1"
domain = "{domain}"
[dhcp]
subnet = "10.79.0.0/24"
pool = "10.79.0.100-{last}"
mode = "{mode}"
[dns]
enabled = true
port = 5353
[http]
enabled = false
[tftp]
enabled = false
[rsyncd]
enabled = false
"""


def config(tmp_path: Path, *, domain: str = "lab.test", mode: str = "authoritative", last: str = "10.79.0.199"
           ) -> Config:
    text = BASE.format(state=tmp_path / "state", domain=domain, mode=mode, last=last)
    return parse_config(tomllib.loads(text))


async def test_a_refused_reload_changes_no_service(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = Store(tmp_path / "state")
    try:
        rt = Runtime(config=cfg, store=store, admin_token="t")
        services = build_services(rt)
        dns = next(s for s in services if isinstance(s, DnsServer))
        zone_before = dns.zone()
        # DHCP refuses a mode change; the new domain and pool must not reach DNS or the API either.
        refused = config(tmp_path, domain="other.test", mode="proxy", last="10.79.0.150")
        with pytest.raises(ReconfigureError) as e:
            await reconfigure_services(rt, refused)
        assert e.value.service == "dhcp" and "dhcp.mode" in str(e.value)
        assert rt.config is cfg
        assert dns.zone().domain == zone_before.domain
        assert [str(p.pool_last) for p in rt.live.pools] == ["10.79.0.199"]
        # An acceptable config goes everywhere.
        accepted = config(tmp_path, domain="other.test", last="10.79.0.150")
        await reconfigure_services(rt, accepted)
        assert rt.config is accepted
        assert dns.zone().domain != zone_before.domain
        assert [str(p.pool_last) for p in rt.live.pools] == ["10.79.0.150"]
    finally:
        await store.close()
