"""A port another server already holds: `imageserver serve` exits 1 and names the port and the holder.

The holders are real servers an appliance might also run: busybox udhcpd on the DHCP port (it sets
SO_REUSEADDR, so our bind succeeds and the port would be silently shared: that is a clash too),
dnsmasq as a TFTP server and as a DNS server, busybox httpd on the HTTP port. Each runs in the
daemon's own namespace, as it would on the same machine.
"""

from __future__ import annotations

import pytest

from lab.clients import Udhcpc
from lab.daemon import Daemon, serve_argv
from lab.netns import Lab, Namespace, Pair, Proc
from lab.servers import start_httpd, start_udhcpd, wait_for_listener
from tests.system._daemon import env

pytestmark = pytest.mark.system

HTTP_PORT = 8080


def config(pair: Pair, state: str, service: str) -> str:
    """Only `service` enabled (plus nothing that could clash by itself)."""
    on = {name: str(name == service).lower() for name in ("dhcp", "tftp", "dns")}
    return f"""
[appliance]
state_dir = "{state}"
interface = "{pair.server_if}"
address = "{pair.server_ip}"

[dhcp]
enabled = {on["dhcp"]}
subnet = "{pair.subnet}"
pool = "{pair.host(100)}-{pair.host(150)}"
conflict_probe = false

[tftp]
enabled = {on["tftp"]}

[dns]
enabled = {on["dns"]}

[http]
enabled = {str(service == "http").lower()}
port = {HTTP_PORT}

[rsyncd]
enabled = false
"""


def dnsmasq(ns: Namespace, *args: str) -> Proc:
    lab = ns.lab
    proc = ns.popen(["dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--user=root",
                     f"--pid-file={lab.tmp_path('dnsmasq.pid')}", "--log-facility=-", *args])
    return proc


def start_holder(pair: Pair, service: str) -> tuple[Proc, str, str]:
    """The holder, the port text the error must name, and the holder's comm."""
    ns, lab = pair.server, pair.server.lab
    if service == "dhcp":
        return start_udhcpd(ns, pair.server_if, pair.server_ip, pair.subnet).proc, "udp/67", "busybox"
    if service == "tftp":
        root = lab.tmp_path("tftproot")
        root.mkdir()
        proc = dnsmasq(ns, "--port=0", "--enable-tftp", f"--tftp-root={root}")
        wait_for_listener(ns, "udp", 69, proc)
        return proc, "udp/69", "dnsmasq"
    if service == "dns":
        proc = dnsmasq(ns, "--port=53")
        wait_for_listener(ns, "udp", 53, proc)
        return proc, "udp/53", "dnsmasq"
    root = lab.tmp_path("www")
    root.mkdir()
    return start_httpd(ns, pair.server_ip, root, port=HTTP_PORT).proc, f"tcp/{HTTP_PORT}", "busybox"


@pytest.mark.parametrize("service", ["dhcp", "tftp", "http", "dns"])
def test_a_held_port_stops_the_start_with_the_port_and_its_holder(lab: Lab, service: str) -> None:
    pair = lab.server_client_pair()
    holder, port_text, comm = start_holder(pair, service)
    cfg = lab.tmp_path("imageserver.toml")
    cfg.write_text(config(pair, str(lab.tmp_path("state")), service))
    # A daemon that keeps running with its port held times out here (LabError): that is the failure.
    result = pair.server.run(serve_argv(cfg), env=env(), check=False, timeout=30)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    error = next(line for line in out.splitlines() if "event=start-failed" in line)
    assert port_text in error and f"pid {holder.pid} ({comm})" in error, error
    assert holder.alive(), "the holder must be left alone"
    assert "event=ready" not in out


def test_a_dhcp_server_on_another_interface_does_not_share_our_port(lab: Lab) -> None:
    """udhcpd bound to a second interface of the same box (as libvirt's dnsmasq on its bridge) hears
    none of our segment's broadcasts: the daemon starts and serves."""
    pair = lab.server_client_pair()
    other_ns = lab.namespace("vm")
    other_if, peer_if = lab.ifname("vo"), lab.ifname("vp")
    lab.veth(pair.server, other_if, other_ns, peer_if)
    other_net = lab.random_subnet()
    pair.server.add_address(other_if, f"{other_net.network_address + 1}/24")
    start_udhcpd(pair.server, other_if, other_net.network_address + 1, other_net)
    cfg = lab.tmp_path("imageserver.toml")
    state = lab.tmp_path("state")
    cfg.write_text(config(pair, str(state), "dhcp"))
    proc = Daemon(pair.server, cfg, state).start().proc
    assert proc is not None
    lease = Udhcpc(pair.client, pair.client_if).obtain()
    assert lease.server_id == pair.server_ip and lease.ip in pair.subnet
