"""A switched LAN of one server and N client machines, each its own namespace, for transport tests and
benchmarks: a bridge in a "switch" namespace, one veth per machine, every link optionally shaped with
`tc` (HTB, both directions: the machine's egress on its own end, its ingress on the switch port), so a
server link and a client link can have the same rate, as on a real switch.

Every machine knows every other's MAC from the start (permanent neighbour entries): the kernel's ARP
table is one for all namespaces, and its dynamic entries are capped for the whole host
(net.ipv4.neigh.default.gc_thresh3, 1024 here). A swarm of 50 machines that all talk to each other needs
~2,500; past the cap new neighbours fail ("neighbor table overflow!"), which split bench/fanout.py's
BitTorrent swarm in two cliques that never connected. Real machines each have their own table of ~50.
Permanent entries are exempt from that cap (and leave the host's dynamic entries to everyone else).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

from lab.netns import Lab, Namespace


@dataclass(slots=True)
class Machine:
    ns: Namespace
    iface: str
    ip: ipaddress.IPv4Address


@dataclass(slots=True)
class Star:
    switch: Namespace
    bridge: str
    subnet: ipaddress.IPv4Network
    server: Machine
    clients: list[Machine] = field(default_factory=list)


def shape(ns: Namespace, iface: str, mbit: float) -> None:
    """Egress of `iface` at `mbit` (HTB: unlike tbf it passes GSO super-packets larger than its burst)."""
    rate = f"{mbit}mbit"
    ns.run(["tc", "qdisc", "add", "dev", iface, "root", "handle", "1:", "htb", "default", "10"])
    ns.run(["tc", "class", "add", "dev", iface, "parent", "1:", "classid", "1:10", "htb", "rate", rate,
            "ceil", rate, "burst", "64k", "cburst", "64k"])


def mac_of(m: Machine) -> str:
    return str(json.loads(m.ns.ip("-j", "link", "show", m.iface).stdout)[0]["address"])


def know_each_other(machines: list[Machine]) -> None:
    """Permanent neighbour entries in every machine for every other (see the module's docstring)."""
    macs = [mac_of(m) for m in machines]
    for m in machines:
        lines = [f"neigh replace {o.ip} lladdr {mac} dev {m.iface} nud permanent"
                 for o, mac in zip(machines, macs, strict=True) if o is not m]
        if lines:
            m.ns.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n")


def star(lab: Lab, clients: int, mbit: float | None = None, first_host: int = 10) -> Star:
    """Server .1 and clients .first_host... on one /24 (up to 200 clients), links at `mbit` if given."""
    if not 0 <= clients <= 200:
        raise ValueError("a star has 0 to 200 clients")
    switch = lab.namespace("sw")
    bridge = lab.ifname("br")
    lab.bridge(switch, bridge)
    subnet = lab.random_subnet()

    def attach(role: str, number: int) -> Machine:
        ns = lab.namespace(role)
        port, end = lab.ifname("sp"), lab.ifname("me")
        lab.veth(switch, port, ns, end)
        switch.ip("link", "set", port, "master", bridge)
        ip = subnet.network_address + number
        ns.add_address(end, f"{ip}/{subnet.prefixlen}")
        if mbit is not None:
            shape(ns, end, mbit)  # what the machine sends
            shape(switch, port, mbit)  # what the switch sends it
        return Machine(ns, end, ip)

    s = Star(switch, bridge, subnet, attach("srv", 1))
    for i in range(clients):
        s.clients.append(attach(f"m{i}", first_host + i))
    know_each_other([s.server, *s.clients])
    return s
