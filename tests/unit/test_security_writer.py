"""Pure parts of issue 14 items 9/10: the state-dir lock, the relay rule, RELEASE from its own address,
the image-name rule, the config file checks, private modes, the stale-child check."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from appliance.config import ConfigError, load_config
from protocols.dhcp.codec import DhcpPacket, decode, encode
from protocols.dhcp.options import MessageType
from protocols.dhcp.relay import relay_problem
from protocols.dhcp.reply import respond
from protocols.names import InvalidName as ImageNameError
from protocols.names import image_name as check_image_name
from services.childproc import reap_stale, start_time, write_pid_file
from state.permissions import private_database, secure_state_dir
from state.statelock import StateLocked, acquire, holder
from tests.unit.test_dhcp_book import MemoryLeaseBook
from tests.unit.test_dhcp_reply import SERVER, SETTINGS, client, dora

IP = IPv4Address
RELAY = IP("10.98.5.1")


# ------------------------------------------------------------------ the lock


def test_the_state_lock_is_exclusive_names_its_holder_and_is_freed_on_release(tmp_path: Path) -> None:
    lock = acquire(tmp_path, "serve")
    with pytest.raises(StateLocked) as e:
        acquire(tmp_path, "cli")
    assert e.value.holder == f"pid={os.getpid()} role=serve" and str(tmp_path) in str(e.value)
    assert holder(tmp_path) == f"pid={os.getpid()} role=serve"
    lock.release()
    assert holder(tmp_path) is None
    with acquire(tmp_path, "cli"):
        assert holder(tmp_path) == f"pid={os.getpid()} role=cli"
    assert stat.S_IMODE((tmp_path / "imageserver.lock").stat().st_mode) == 0o600


def test_the_state_lock_dies_with_its_process_and_is_not_inherited(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from state.statelock import acquire\n"
            "lock = acquire(Path(sys.argv[1]), 'serve'); print('held', flush=True); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert holder(tmp_path) == f"pid={child.pid} role=serve"
        child.kill()
        child.wait(5)
        assert holder(tmp_path) is None  # kill -9 leaves no stale lock
    finally:
        child.kill()
        child.wait(5)
    with acquire(tmp_path, "serve") as lock:
        assert lock.fd is not None and not os.get_inheritable(lock.fd)


# ------------------------------------------------------------------ relays and RELEASE


def relayed(hops: int = 1, options: dict[int, bytes] | None = None) -> DhcpPacket:
    return decode(encode(DhcpPacket(op=1, xid=1, hops=hops, giaddr=RELAY, chaddr=bytes(range(6)).ljust(16, b"\0"),
                                    options={53: b"\x01", **(options or {})})))


def test_only_what_a_relay_sends_is_taken_as_relayed() -> None:
    trusted = (IPv4Network("10.98.5.0/30"), IPv4Network("0.0.0.0/32"))
    assert relay_problem(relayed(), RELAY, 67, broadcast=False, trusted=trusted) is None
    assert "port 68" in (relay_problem(relayed(), RELAY, 68, broadcast=False, trusted=trusted) or "")
    assert "0.0.0.0" in (relay_problem(relayed(), IP(0), 67, broadcast=False, trusted=trusted) or "")
    assert "broadcast" in (relay_problem(relayed(), RELAY, 67, broadcast=True, trusted=trusted) or "")
    assert "hops" in (relay_problem(relayed(hops=0), RELAY, 67, broadcast=False, trusted=trusted) or "")
    # RFC 8357: another source port with the Relay Source Port sub-option.
    rsp = relayed(options={82: bytes([19, 2, 0x1F, 0x90])})
    assert relay_problem(rsp, RELAY, 8080, broadcast=False, trusted=trusted) is None
    assert "trusted_relays" in (relay_problem(relayed(), IP("10.98.6.1"), 67, broadcast=False, trusted=trusted) or "")
    # No relay named: nothing is relayed, whatever port or option 82 the packet carries.
    assert "trusted_relays" in (relay_problem(relayed(), RELAY, 67, broadcast=False) or "")
    assert "trusted_relays" in (relay_problem(rsp, RELAY, 8080, broadcast=False) or "")
    unrelayed = decode(encode(DhcpPacket(op=1, xid=1, chaddr=bytes(16), options={53: b"\x01"})))
    assert relay_problem(unrelayed, IP(0), 68, broadcast=True) is None


def test_a_release_counts_only_from_the_address_it_releases() -> None:
    book = MemoryLeaseBook()
    ip = dora(book).packet.yiaddr
    release = client(MessageType.RELEASE, ciaddr=ip, options={54: SERVER.packed})
    assert respond(release, book, SETTINGS, 1.0, source=IP("10.99.0.50")) is None
    assert not any(call[0] == "release" for call in book.calls)
    respond(release, book, SETTINGS, 1.0, source=ip)
    assert any(call[0] == "release" for call in book.calls)


# ------------------------------------------------------------------ image names


@pytest.mark.parametrize("bad", ["../../x", "..", ".", "", "x/y", ".hidden", "-x", "a" * 64, "img_v2", "a b", 3,
                                 None, "x\n"])
def test_path_like_or_odd_image_names_are_refused(bad: object) -> None:
    with pytest.raises(ImageNameError, match="image name"):
        check_image_name(bad)


@pytest.mark.parametrize("good", ["rocky9", "debian-12.5", "web_v", "a", "A" * 63])
def test_ordinary_image_names_pass(good: str) -> None:
    assert check_image_name(good) == good


# ------------------------------------------------------------------ config files


def test_a_config_path_that_is_no_regular_file_or_too_big_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"fifo.toml: not a regular file \(a FIFO\)"):
        load_config(fifo)
    assert time.monotonic() - started < 1
    with pytest.raises(ConfigError, match="/dev/zero: not a regular file"):
        load_config(Path("/dev/zero"))
    with pytest.raises(ConfigError, match="a directory"):
        load_config(tmp_path)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load_config(big)


# ------------------------------------------------------------------ modes


def test_state_dir_and_database_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh"
        assert secure_state_dir(fresh) is None
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
        loose = tmp_path / "loose"
        loose.mkdir(mode=0o755)
        assert secure_state_dir(loose) == 0o755
        assert stat.S_IMODE(loose.stat().st_mode) == 0o700
        db = fresh / "imageserver.db"
        (fresh / "imageserver.db-wal").write_bytes(b"")
        private_database(db)
        for path in (db, fresh / "imageserver.db-wal"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


# ------------------------------------------------------------------ stale children


def test_a_stale_child_is_reaped_only_when_it_is_still_that_process_running_our_command(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        # Until its exec, the child still runs our interpreter's command line: wait for "sleep".
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/cmdline").read_bytes().split(b"\0")[:1] != [b"sleep"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        write_pid_file(pid_file, child.pid)
        assert reap_stale(pid_file, lambda argv: "rsync" in argv) is None  # not our command: left alone
        assert child.poll() is None and not pid_file.exists()
        pid_file.write_text(f"{child.pid} 1\n")  # a reused pid (another start time): left alone
        assert reap_stale(pid_file, lambda argv: True) is None and child.poll() is None
        write_pid_file(pid_file, child.pid)
        assert reap_stale(pid_file, lambda argv: argv[:1] == ["sleep"]) == child.pid
        assert child.wait(5) == -15
        assert start_time(child.pid) is None
    finally:
        child.kill()
        child.wait(5)


def test_trusted_relays_are_parsed_into_the_server_settings_and_bad_ones_name_the_key() -> None:
    from appliance.config import parse_config
    from appliance.daemon.dhcp_setup import server_settings

    base = {"appliance": {"state_dir": "/tmp/x", "address": "10.0.0.1"},
            "dhcp": {"subnet": "10.0.0.0/24", "pool": "10.0.0.100-10.0.0.199"}}
    cfg = parse_config({**base, "dhcp": {**base["dhcp"], "trusted_relays": ["10.0.0.2", "10.9.0.0/24"]}})
    assert server_settings(cfg).trusted_relays == (IPv4Network("10.0.0.2/32"), IPv4Network("10.9.0.0/24"))
    assert parse_config(base).dhcp.trusted_relays == ()
    with pytest.raises(ConfigError, match=r"dhcp.trusted_relays\[0\]"):
        parse_config({**base, "dhcp": {**base["dhcp"], "trusted_relays": ["nope"]}})


def test_cli_offline_writes_need_the_state_lock_and_reads_do_not(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.cli.main import main
    from tests.unit.test_cli_leases_offline import free_port

    config = tmp_path / "imageserver.toml"
    config.write_text(f'[appliance]\nstate_dir = "{tmp_path / "state"}"\naddress = "10.79.0.1"\n'
                      f'[dhcp]\nsubnet = "10.79.0.0/24"\npool = "10.79.0.100-10.79.0.199"\n'
                      f'[http]\nlisten = "127.0.0.1"\nport = {free_port()}\n')
    args = ["reservations", "add", "52:54:00:00:00:01", "10.79.0.20", "--config", str(config)]
    (tmp_path / "state").mkdir()
    with acquire(tmp_path / "state", "serve"):  # a daemon whose API does not answer (nothing listens)
        assert main(args) != 0
        err = capsys.readouterr().err
        assert "Nothing was written" in err and f"pid={os.getpid()} role=serve" in err and "refused" in err
        assert main(["reservations", "--config", str(config), "--json"]) == 0  # a read still works
        assert json.loads(capsys.readouterr().out) == []
    with acquire(tmp_path / "state", "cli"):  # another command writing offline
        assert main(args) != 0
        assert "another process" in capsys.readouterr().err
    assert main(args) == 0  # nobody holds it: written offline, as before
    assert "reserved 10.79.0.20" in capsys.readouterr().out
