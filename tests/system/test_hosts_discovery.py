"""Hosts, addclients, discovery and leases that become reservations, with the real daemon in a namespace
and real clients: dhclient/udhcpc for addresses, dig for names, curl for boot scripts, and the
`imageserver` CLI (live through the admin API) for everything an operator does.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from lab.clients import Dhclient, DhcpClientError, Udhcpc
from lab.netns import Lab, Namespace
from tests.system._daemon import API_PORT, HTTPS_PORT, Imageserver, env

pytestmark = pytest.mark.system

DOMAIN = "cluster.local"  # [appliance] domain default


def bridged_lab(lab: Lab, clients: int) -> tuple[Namespace, str, Namespace, list[str], IPv4Network, IPv4Address]:
    """A server namespace with a bridge (the provisioning interface) and `clients` veth links from it
    into one client namespace, so several machines (MACs) can ask at once."""
    server, client = lab.namespace("srv"), lab.namespace("cli")
    bridge = lab.ifname("br")
    lab.bridge(server, bridge)
    ifaces = []
    for _ in range(clients):
        s_if, c_if = lab.ifname("vs"), lab.ifname("vc")
        lab.veth(server, s_if, client, c_if)
        server.ip("link", "set", s_if, "master", bridge)
        ifaces.append(c_if)
    subnet = lab.random_subnet()
    address = subnet.network_address + 1
    server.add_address(bridge, f"{address}/{subnet.prefixlen}")
    return server, bridge, client, ifaces, subnet, address


def set_mac(ns: Namespace, iface: str, mac: str) -> None:
    ns.ip("link", "set", iface, "down")
    ns.ip("link", "set", iface, "address", mac)
    ns.ip("link", "set", iface, "up")


def dig(ns: Namespace, server: IPv4Address, *query: str) -> list[str]:
    out = ns.run(["dig", f"@{server}", "+short", "+time=2", "+tries=2", *query]).stdout
    return out.split()


def add_image(server: Imageserver, name: str, version: int = 1) -> None:
    """A captured image version, as getimage records it (the boot decision needs one to install)."""
    conn = sqlite3.connect(server.state_dir / "imageserver.db", timeout=10)
    try:
        conn.execute("INSERT INTO images(name, version, path, created) VALUES (?, ?, ?, ?)",
                     (name, version, str(server.state_dir / "images" / name / f"v{version}"), time.time()))
        conn.commit()
    finally:
        conn.close()
    # Recorded without a disk layout: installable only by a script of the operator's own (hosts refuse
    # an image that cannot be installed otherwise).
    (server.state_dir / "scripts").mkdir(exist_ok=True)
    (server.state_dir / "scripts" / f"{name}.master").write_text("#!/bin/sh\necho test image\n")


def boot_script(ns: Namespace, server: IPv4Address, mac: str) -> str:
    return ns.run(["curl", "-sf", f"http://{server}:{API_PORT}/boot/{mac}.ipxe"]).stdout


def test_addclients_hosts_get_their_addresses_and_names_live(lab: Lab, tmp_path: Path) -> None:
    server_ns, bridge, client, ifaces, subnet, address = bridged_lab(lab, 3)
    server = Imageserver(server_ns, bridge, address, subnet,
                         extra='\n[dns]\nenabled = true\nttl = 5\n').start()
    macs = [f"52:54:00:7a:00:0{i}" for i in (1, 2, 3)]
    for iface, mac in zip(ifaces, macs, strict=True):
        set_mac(client, iface, mac)
    macs_file = lab.tmp_path("macs.txt")
    # The third line names its host: the others take www1, www2 in order.
    macs_file.write_text(f"{macs[0]}\n{macs[2]} www3\n{macs[1]}\n")
    first = subnet.network_address + 11

    dry = server.cli("addclients", "--base", "www", "--range", "1-3", "--image", "web", "--first-ip", str(first),
                     "--macs", str(macs_file), "--dry-run")
    assert "would create 3" in dry and server.cli_json("hosts", "list") == []
    plan = server.cli_json("addclients", "--base", "www", "--range", "1-3", "--image", "web",
                           "--first-ip", str(first), "--macs", str(macs_file))
    assert [(h["name"], h["mac"], h["ip"], h["action"]) for h in plan["hosts"]] == [
        ("www1", macs[0], str(first), "create"), ("www2", macs[1], str(first + 1), "create"),
        ("www3", macs[2], str(first + 2), "create")]
    again = server.cli_json("addclients", "--base", "www", "--range", "1-3", "--image", "web",
                            "--first-ip", str(first), "--macs", str(macs_file))
    assert again["counts"] == {"create": 0, "update": 0, "keep": 3}  # idempotent

    # Three real clients, each gets its host's reserved address (outside the pool) at once.
    for i, iface in enumerate(ifaces):
        lease = Dhclient(client, iface).obtain()
        assert lease.ip == first + i, (iface, lease)
    reservations = {r["mac"]: (r["ip"], r["hostname"]) for r in server.cli_json("reservations")}
    assert reservations == {macs[i]: (str(first + i), f"www{i + 1}") for i in range(3)}

    # DNS answers the names and the reverse names, from the client's side.
    assert dig(client, address, f"www2.{DOMAIN}") == [str(first + 1)]
    assert dig(client, address, "-x", str(first + 1)) == [f"www2.{DOMAIN}."]

    # A fourth host added while the daemon runs resolves at once: no restart, no reload.
    server.cli("addclients", "--base", "www", "--range", "1-4", "--image", "web", "--first-ip", str(first))
    assert dig(client, address, f"www4.{DOMAIN}") == [str(first + 3)]
    # /hosts for a machine of the LAN: with a token (a reader's; the admin token is one).
    hosts_file = client.run(["curl", "-sfk", "-H", f"Authorization: Bearer {server.daemon.admin_token()}",
                             f"https://{address}:{HTTPS_PORT}/hosts"]).stdout  # a token from the LAN: over TLS
    assert f"{first + 3}\twww4.{DOMAIN} www4" in hosts_file
    # Clashes are refused with both sides named, and nothing changes.
    clash = server.run_cli("addclients", "--base", "db", "--range", "1-2", "--first-ip", str(first + 3))
    assert clash.returncode == 4  # refused: it conflicts with what exists (appliance/cli/exitcodes.py)
    assert f"db1: {first + 3} is host www4's address" in clash.stderr
    assert len(server.cli_json("hosts", "list")) == 4

    # Editing live: a MAC for www4 reserves its address at once; removing it frees name and address.
    server.cli("hosts", "set", "www4", "--mac", "52:54:00:7a:00:04")
    assert {r["hostname"]: r["ip"] for r in server.cli_json("reservations")}["www4"] == str(first + 3)
    assert f"dhcp-host=52:54:00:7a:00:04,{first + 3},www4" in server.cli("reservations", "export", "--format",
                                                                           "dnsmasq")
    assert f"{first + 3}\twww4.{DOMAIN} www4" in server.cli("hosts", "export")
    server.cli("hosts", "rm", "www4")
    assert "www4" not in {r["hostname"] for r in server.cli_json("reservations")}
    assert dig(client, address, f"www4.{DOMAIN}") == []


def test_discovery_hold_then_assign_next(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet,
                         extra='\n[discovery]\npolicy = "hold"\n').start()
    add_image(server, "web")
    mac = "52:54:00:7b:00:01"
    set_mac(pair.client, pair.client_if, mac)
    dhclient = Dhclient(pair.client, pair.client_if)
    # A PXE ROM's identity: vendor class and client architecture (option 93, BIOS = 0).
    dhclient.config.write_text(dhclient.config.read_text() + (
        'send vendor-class-identifier "PXEClient:Arch:00000:UNDI:002001";\n'
        "option pxe-arch code 93 = unsigned integer 16;\nsend pxe-arch 0;\n"))
    dhclient.obtain()

    seen = {m["mac"]: m for m in server.cli_json("machines", "list")}
    assert seen[mac]["arch"] == 0 and seen[mac]["vendor_class"] == "PXEClient:Arch:00000:UNDI:002001"
    assert seen[mac]["host"] is None
    assert boot_script(pair.client, pair.server_ip, mac).splitlines()[1].startswith(f"# imageserver: wait for {mac}")

    # An addclients range without MACs; the waiting machine takes the next free name.
    server.cli("addclients", "--base", "node", "--range", "7-8", "--image", "web")
    out = server.cli("machines", "assign", mac, "--next")
    assert f"machine {mac} is host node7 (assigned" in out
    script = boot_script(pair.client, pair.server_ip, mac)
    assert script.splitlines()[1].startswith(f"# imageserver: install for {mac}")
    assert "installing image web v1 on node7" in script
    refused = server.run_cli("machines", "assign", mac, "--host", "node8")
    assert refused.returncode == 4 and f"machine {mac} is host node7 already" in refused.stderr

    # A per-host copy of the autoinstall script, edited with $EDITOR through the live API, then reset.
    editor = lab.tmp_path("editor.sh")
    editor.write_text('#!/bin/sh\necho "echo node7 only" >> "$1"\n')
    editor.chmod(0o755)
    server.ns.run([sys.executable, "-m", "appliance.cli", "hosts", "script", "node7", "--edit", "--config",
                   str(server.config)], env={**env(), "EDITOR": str(editor)}, check=True)
    own = server.api("/api/v1/hosts/node7/script")
    assert own["override"] is True and own["script"].endswith("echo node7 only\n")
    server.cli("hosts", "script", "node7", "--reset")
    assert server.api("/api/v1/hosts/node7/script")["override"] is False


def test_discovery_auto_names_a_machine_by_its_rule(lab: Lab) -> None:
    pair = lab.server_client_pair()
    extra = ('\n[discovery]\npolicy = "auto"\n'
             '[[discovery.rules]]\nmac_prefix = "52:54:00:aa"\nhostname = "rack{n:02}"\nimage = "web"\n'
             '[[discovery.rules]]\nmac_prefix = "52:54:00"\nhostname = "node{n:03}"\nimage = "web"\n')
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet, extra=extra).start()
    add_image(server, "web")
    server.cli("hosts", "add", "node001", "--mac", "02:00:00:00:00:01", "--image", "web")  # node001 is taken
    mac = "52:54:00:7c:00:01"
    set_mac(pair.client, pair.client_if, mac)
    Udhcpc(pair.client, pair.client_if).obtain()
    host = {m["mac"]: m for m in server.cli_json("machines", "list")}[mac]
    assert (host["host"], host["host_state"]) == ("node002", "assigned")
    assert boot_script(pair.client, pair.server_ip, mac).splitlines()[1].startswith(f"# imageserver: install for {mac}")


def test_on_install_the_lease_becomes_a_reservation_that_survives_a_restart(lab: Lab) -> None:
    pair = lab.server_client_pair()
    # A pool of two addresses: once one is a reservation, only one is left for everybody else.
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet, pool=(100, 101)).start()
    mac = "52:54:00:7d:00:01"
    set_mac(pair.client, pair.client_if, mac)
    server.cli("hosts", "add", "node1", "--mac", mac, "--image", "web")
    dhclient = Dhclient(pair.client, pair.client_if)
    lease = dhclient.obtain()
    assert server.cli_json("reservations") == []

    # The install completes (the host is marked installed): its lease becomes its reservation.
    server.cli("hosts", "set", "node1", "--state", "installed")
    [res] = server.cli_json("reservations")
    assert (res["mac"], res["ip"], res["hostname"], res["source"]) == (mac, str(lease.ip), "node1", "on-install")
    assert server.api("/api/v1/hosts/node1")["ip"] == str(lease.ip)

    server.proc.stop()  # type: ignore[union-attr]
    server.start()
    renewed = dhclient.renew()
    assert renewed.ip == lease.ip
    # The pool no longer offers it: of two newcomers, one gets the other address, the second nothing.
    dhclient.stop()
    set_mac(pair.client, pair.client_if, "52:54:00:7d:00:02")
    other = Udhcpc(pair.client, pair.client_if, tries=2, pause=1).obtain()
    assert other.ip != lease.ip
    pair.client.run(["ip", "addr", "flush", "dev", pair.client_if])
    set_mac(pair.client, pair.client_if, "52:54:00:7d:00:03")
    with pytest.raises(DhcpClientError):
        Udhcpc(pair.client, pair.client_if, tries=2, pause=1).obtain()


def test_discovery_ignore_gives_unknown_pxe_machines_an_address_but_never_a_boot(lab: Lab) -> None:
    import json

    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet,
                         extra='\n[discovery]\npolicy = "ignore"\n').start()
    known, unknown = "52:54:00:7e:00:01", "52:54:00:7e:00:02"
    server.cli("hosts", "add", "node1", "--mac", known, "--image", "web")
    bios = {"93": "0000", "60": b"PXEClient:Arch:00000:UNDI:002001".hex()}
    specs = [{"mac": mac, "options": bios, "request": True} for mac in (known, unknown)]
    argv = [sys.executable, "-m", "tests.system._rawdhcp", pair.client_if, "discover", json.dumps(specs)]
    out = pair.client.run(argv, env=env(), timeout=60).stdout
    known_reply, unknown_reply = json.loads(out)
    assert known_reply["ack"]["file"] == "undionly.kpxe" and "67" in known_reply["ack"]["options"]
    first, last = server.pool_range()
    assert first <= IPv4Address(unknown_reply["ack"]["yiaddr"]) <= last  # an address ...
    for reply in (unknown_reply["offer"], unknown_reply["ack"]):  # ... but no boot at all
        assert reply["file"] == "" and not {"66", "67", "175"} & set(reply["options"])
        assert reply["siaddr"] == "0.0.0.0"
    script = boot_script(pair.server, pair.server_ip, unknown)
    assert script.splitlines()[1].startswith(f"# imageserver: local for {unknown}")
