"""Reading /proc/net tables for the holder of a port (the text of a real /proc/net/udp and tcp)."""

from __future__ import annotations

import errno
import os
import socket

from appliance.config import Config, DhcpConfig
from appliance.daemon.portholder import Holder, address_in_use, bound_inodes, holders, overlaps, parse_ss, service_ports

UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  263: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41713 2 000000007f1f 0
  264: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41714 2 000000007f1f 0
  265: 0101A8C0:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41715 2 000000007f1f 0
"""
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1683 1 0000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:A104 01 00000000:00000000 00:00000000 00000000     0        0 1690 1 0000 20 4 0 10 -1
   2: 0100007F:A104 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 1691 1 0000 20 4 0 10 -1
"""


def test_udp_sockets_on_the_port_whatever_their_address() -> None:
    assert bound_inodes(UDP, 67, listening_only=False) == {41713, 41715}
    assert bound_inodes(UDP, 53, listening_only=False) == {41714}
    assert bound_inodes(UDP, 69, listening_only=False) == set()


def test_tcp_counts_only_the_listener_not_its_connections() -> None:
    assert bound_inodes(TCP, 8080, listening_only=True) == {1683}


def test_a_socket_of_this_process_is_found_with_its_pid() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        found = holders("udp", port)
    assert [h.pid for h in found] == [os.getpid()]


def test_service_ports_follow_the_config() -> None:
    cfg = Config()
    assert service_ports(cfg, "http") == [("tcp", 80)]
    assert service_ports(cfg, "dns") == [("udp", 53), ("tcp", 53)]
    assert service_ports(Config(dhcp=DhcpConfig(mode="proxy", port=1067)), "dhcp") == [("udp", 1067), ("udp", 4011)]
    assert service_ports(cfg, "rsyncd") == []


def test_address_in_use_is_found_through_the_cause_chain() -> None:
    try:
        try:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        except OSError as e:
            raise RuntimeError("tftp: cannot listen") from e
    except RuntimeError as wrapped:
        assert address_in_use(wrapped)
    assert not address_in_use(RuntimeError("tftp: root /x is not a directory"))


SS_UDP = """\
UNCONN 0      0      0.0.0.0%virbr0:67 0.0.0.0:* users:(("dnsmasq",pid=812,fd=4))
UNCONN 0      0      0.0.0.0%eth1:67 0.0.0.0:* users:(("python3",pid=900,fd=7))
UNCONN 0      0      127.0.0.53%lo:53 0.0.0.0:* users:(("systemd-resolve",pid=300,fd=13))
UNCONN 0      0         [::]:67      [::]:* users:(("a",pid=1,fd=3),("b",pid=2,fd=3))
"""


def test_ss_lines_give_address_device_and_holders() -> None:
    assert parse_ss(SS_UDP) == [
        ("0.0.0.0", "virbr0", [Holder(812, "dnsmasq")]),
        ("0.0.0.0", "eth1", [Holder(900, "python3")]),
        ("127.0.0.53", "lo", [Holder(300, "systemd-resolve")]),
        ("[::]", None, [Holder(1, "a"), Holder(2, "b")]),
    ]


def test_only_sockets_that_receive_the_same_datagrams_overlap() -> None:
    ours = ("0.0.0.0", "eth1")
    assert not overlaps(ours, ("0.0.0.0", "virbr0"))  # libvirt's dnsmasq on its own bridge
    assert overlaps(ours, ("0.0.0.0", "eth1"))
    assert overlaps(ours, ("0.0.0.0", None))  # unbound to a device: hears eth1 too
    assert overlaps(("0.0.0.0", None), ("10.0.0.1", "virbr0"))
    assert not overlaps(("10.0.0.1", None), ("127.0.0.53", "lo"))  # a resolver next to our DNS
    assert overlaps(("10.0.0.1", None), ("[::]", None))
