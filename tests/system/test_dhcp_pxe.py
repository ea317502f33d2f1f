"""Network-boot clients of every kind get the right boot answer from the imageserver's DHCP server, and
a flood of malformed packets does not stop it serving a real client afterwards.

PXE ROMs and iPXE cannot run in a namespace without a VM, so their DISCOVERs are crafted with our codec
(tests/system/_rawdhcp.py) with the options real firmware sends; the QEMU end-to-end tests boot real ones.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from contextlib import closing
from typing import Any

import pytest

from lab.clients import Dhclient
from lab.netns import Lab, Pair
from tests.system._daemon import API_PORT, Imageserver, env

pytestmark = pytest.mark.system

BIOS = {"93": "0000", "60": b"PXEClient:Arch:00000:UNDI:002001".hex(), "97": "00" + "11" * 16}
UEFI = {"93": "0007", "60": b"PXEClient:Arch:00007:UNDI:003016".hex()}
IPXE = {"93": "0000", "60": b"PXEClient:Arch:00000:UNDI:002001".hex(), "77": b"iPXE".hex()}
HTTPBOOT = {"93": "0010", "60": b"HTTPClient:Arch:00016:UNDI:003001".hex()}


def raw(pair: Pair, mode: str, arg: str) -> Any:
    out = pair.client.run([sys.executable, "-m", "tests.system._rawdhcp", pair.client_if, mode, arg], env=env(),
                          timeout=60)
    return json.loads(out.stdout)


def text(reply: dict[str, Any], code: int) -> str | None:
    value = reply["options"].get(str(code))
    return bytes.fromhex(value).decode() if value is not None else None


def test_each_firmware_gets_its_boot_file_and_ipxe_gets_its_script(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet).start()
    srv = str(pair.server_ip)
    specs = [
        {"mac": "52:54:00:00:01:01", "options": BIOS, "request": True},
        {"mac": "52:54:00:00:01:02", "options": UEFI},
        {"mac": "52:54:00:00:01:01", "options": IPXE, "request": True},  # the BIOS machine, now in iPXE
        {"mac": "52:54:00:00:01:03", "options": HTTPBOOT},
    ]
    bios, uefi, ipxe, http = raw(pair, "discover", json.dumps(specs))

    for result in (bios, uefi, ipxe, http):
        assert result["offer"] is not None and result["offer"]["type"] == 2
        assert result["offer"]["siaddr"] == srv
    assert text(bios["offer"], 67) == "undionly.kpxe" == bios["offer"]["file"]
    assert text(bios["offer"], 66) == srv
    assert text(bios["ack"], 67) == "undionly.kpxe" and bios["ack"]["type"] == 5
    assert text(uefi["offer"], 67) == "ipxe.efi"
    # iPXE: the script URL, and option 175 with sub-option 176 = 1 (do not wait for ProxyDHCP).
    assert text(ipxe["offer"], 67) == f"http://{srv}:{API_PORT}/boot/${{mac}}.ipxe"
    assert ipxe["offer"]["options"]["175"] == "b00101"
    assert ipxe["ack"]["yiaddr"] == bios["ack"]["yiaddr"]  # same NIC, same address, ROM or iPXE
    assert text(http["offer"], 67) == f"http://{srv}:{API_PORT}/boot/files/ipxe.efi"
    assert text(http["offer"], 60) == "HTTPClient"

    machines = {m["mac"]: m for m in server.api("/api/v1/machines")["machines"]}
    assert machines["52:54:00:00:01:01"]["arch"] == 0
    assert machines["52:54:00:00:01:01"]["user_class"] == "iPXE"
    assert machines["52:54:00:00:01:01"]["uuid"] == "11111111-1111-1111-1111-111111111111"
    assert machines["52:54:00:00:01:02"]["arch"] == 7
    assert machines["52:54:00:00:01:03"]["vendor_class"].startswith("HTTPClient")


def test_a_burst_of_malformed_packets_then_dhclient_still_gets_an_address(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet).start()
    sent = raw(pair, "garbage", "3000")["sent"]
    assert sent == 3000

    lease = Dhclient(pair.client, pair.client_if).obtain()
    first, last = server.pool_range()
    assert first <= lease.ip <= last
    assert pair.client.ipv4_addresses(pair.client_if) == [lease.address]
    counters = server.dhcp_counters()
    assert counters["malformed"] >= 1000  # random bytes, truncations, lying lengths, bad deciding options
    assert counters.get("errors", 0) == 0  # none of it reached an unexpected exception
    assert server.proc is not None and server.proc.alive()


def test_proxy_mode_answers_pxe_clients_only_with_boot_information_and_on_port_4011(lab: Lab) -> None:
    pair = lab.server_client_pair()
    Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet, mode="proxy").start()
    srv = str(pair.server_ip)
    client_ip = pair.host(60)  # what the LAN's own DHCP server would have given the machine
    pair.client.add_address(pair.client_if, f"{client_ip}/24")
    specs = [
        {"mac": "52:54:00:00:02:01", "options": BIOS},
        {"mac": "52:54:00:00:02:02", "options": {"55": "010306"}, "timeout": 1.0},  # an ordinary client
        {"mac": "52:54:00:00:02:01", "options": UEFI, "type": 3, "to": [srv, 4011], "ciaddr": str(client_ip)},
    ]
    offer, ordinary, boot = raw(pair, "discover", json.dumps(specs))

    assert offer["offer"]["type"] == 2 and offer["offer"]["yiaddr"] == "0.0.0.0"  # never an address
    assert text(offer["offer"], 60) == "PXEClient" and "43" in offer["offer"]["options"]
    assert text(offer["offer"], 67) == "undionly.kpxe" and offer["offer"]["siaddr"] == srv
    assert ordinary["offer"] is None
    assert boot["offer"]["type"] == 5 and text(boot["offer"], 67) == "ipxe.efi"  # the ACK from port 4011


def test_proxy_mode_gives_uefi_http_boot_the_url_and_each_host_its_own_decision(lab: Lab) -> None:
    """ProxyDHCP beside the LAN's own DHCP server, for firmware that boots over HTTP (HTTPClient:Arch:00016):
    our OFFER carries no address, the URL of ipxe.efi and option 60 "HTTPClient" echoed (edk2's proxy offer),
    no PXE option 43. The same per-host decision as PXE follows: discovery policy "ignore" leaves an unknown
    machine unanswered; the boot script ipxe.efi then asks for says install, local or (unknown) local."""
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet, mode="proxy",
                         extra='\n[discovery]\npolicy = "ignore"').start()
    srv = str(pair.server_ip)
    to_install, installed, unknown = "52:54:00:00:03:01", "52:54:00:00:03:02", "52:54:00:00:03:03"
    with closing(sqlite3.connect(server.state_dir / "imageserver.db", timeout=10, isolation_level=None)) as db:
        db.execute("INSERT INTO images(name, version, path, created) VALUES ('base', 1, '/images/base/v1', 0)")
        db.execute("INSERT INTO hosts(name, mac, image, state, created, updated) VALUES "
                   f"('node1', '{to_install}', 'base', 'assigned', 0, 0), "
                   f"('node2', '{installed}', 'base', 'installed', 0, 0)")
    client_ip = pair.host(61)  # what the LAN's own DHCP server gave the machine
    pair.client.add_address(pair.client_if, f"{client_ip}/24")
    specs = [
        {"mac": to_install, "options": HTTPBOOT},
        {"mac": installed, "options": HTTPBOOT},
        {"mac": unknown, "options": HTTPBOOT, "timeout": 1.0},
        # An HTTP boot client never asks a boot server on port 4011; if something does, it gets nothing.
        {"mac": to_install, "options": HTTPBOOT, "type": 3, "to": [srv, 4011], "ciaddr": str(client_ip),
         "timeout": 1.0},
    ]
    first, second, stranger, on_4011 = raw(pair, "discover", json.dumps(specs))

    url = f"http://{srv}:{API_PORT}/boot/files/ipxe.efi"
    for result in (first, second):
        offer = result["offer"]
        assert offer is not None and offer["type"] == 2 and offer["yiaddr"] == "0.0.0.0", offer  # never an address
        assert text(offer, 60) == "HTTPClient" and text(offer, 67) == url == offer["file"], offer
        assert offer["siaddr"] == srv and not {"43", "66", "1", "3", "51"} & set(offer["options"]), offer
    assert stranger["offer"] is None, "policy ignore: an unknown machine is given no boot"
    assert on_4011["offer"] is None
    assert server.dhcp_counters()["http_boot_replies"] == 2

    # What ipxe.efi asks next is the host's own boot script: the same decision a PXE boot gets.
    assert "installer/vmlinuz" in server.daemon.api_text(f"/boot/{to_install}.ipxe")
    for mac in (installed, unknown):
        script = server.daemon.api_text(f"/boot/{mac}.ipxe")
        assert "installer/vmlinuz" not in script and "sanboot" in script, script
    kinds = {mac: server.api(f"/api/v1/machines/{mac}")["boot"]["kind"] for mac in (to_install, installed)}
    assert kinds == {to_install: "install", installed: "local"}
