"""sd_notify over a real AF_UNIX datagram socket, as systemd receives it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from appliance.daemon.sdnotify import Notifier


def test_messages_reach_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(path))
        n = Notifier.from_environ(
            {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
        )
        assert n.enabled and n.watchdog_interval == 10.0
        assert n.send(READY=1, STATUS="dhcp tftp http running")
        assert srv.recv(4096) == b"READY=1\nSTATUS=dhcp tftp http running"


def test_abstract_socket(tmp_path: Path) -> None:
    name = f"imageserver-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind("\0" + name)
        assert Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).send(WATCHDOG=1)
        assert srv.recv(100) == b"WATCHDOG=1"


def test_outside_systemd_is_a_quiet_no_op() -> None:
    n = Notifier.from_environ({})
    assert not n.enabled and n.watchdog_interval is None
    assert n.send(READY=1) is False


def test_watchdog_for_another_pid_is_ignored() -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert n.watchdog_interval is None
    assert n.send(READY=1) is False  # socket missing: no exception
