"""The real `imageserver` command's exit codes (appliance/cli/exitcodes.py): 3 for a host that does not exist,
4 for a conflict (a MAC that is another host's), 5 when a command needs the daemon and none runs, 2 for bad
usage; offline, on the state database, the same use cases as the API."""

from __future__ import annotations

from pathlib import Path

from tests.service.test_status_command import _cli, _free_port  # the real command in a subprocess, a free port


def test_exit_codes_of_the_real_command_with_no_daemon(tmp_path: Path) -> None:
    cfg = tmp_path / "imageserver.toml"
    cfg.write_text(f'[appliance]\nstate_dir = "{tmp_path / "state"}"\naddress = "10.79.0.1"\n'
                   f'[dhcp]\nsubnet = "10.79.0.0/24"\npool = "10.79.0.100-10.79.0.199"\n'
                   f'[http]\nlisten = "127.0.0.1"\nport = {_free_port()}\n')
    added = _cli(cfg, "hosts", "add", "node1", "--mac", "52:54:00:00:00:01")
    assert added.returncode == 0, added.stderr
    clash = _cli(cfg, "hosts", "add", "node2", "--mac", "52:54:00:00:00:01")
    assert clash.returncode == 4 and "is host node1's" in clash.stderr, clash.stderr
    moved = _cli(cfg, "hosts", "add", "node2", "--mac", "52:54:00:00:00:02")
    assert moved.returncode == 0, moved.stderr
    taken = _cli(cfg, "hosts", "set", "node2", "--mac", "52:54:00:00:00:01")
    assert taken.returncode == 4 and "is host node1's" in taken.stderr, taken.stderr
    unknown = _cli(cfg, "hosts", "set", "nosuch", "--image", "demo")
    assert unknown.returncode == 3 and "no host named 'nosuch'" in unknown.stderr, unknown.stderr
    assert _cli(cfg, "hosts", "show", "nosuch").returncode == 3
    assert _cli(cfg, "hosts", "rm", "nosuch").returncode == 3
    assert _cli(cfg, "reservations", "rm", "52:54:00:00:00:09").returncode == 3
    assert _cli(cfg, "hosts", "script", "nosuch").returncode == 3  # the API's use case, offline
    none_yet = _cli(cfg, "hosts", "script", "node1")
    assert none_yet.returncode == 1 and "has no script yet" in none_yet.stderr, none_yet.stderr
    bad = _cli(cfg, "hosts", "set", "node1", "--mac", "zz")
    assert bad.returncode == 2 and "not a MAC address" in bad.stderr, bad.stderr
    assert _cli(cfg, "hosts", "frobnicate").returncode == 2  # argparse's own usage error
    # reinstall mints a token in the running daemon: with none running it is 5, and nothing changes.
    again = _cli(cfg, "hosts", "reinstall", "node1")
    assert again.returncode == 5 and "not answering" in again.stderr, again.stderr
    assert _cli(cfg, "status").returncode == 5
    assert "Traceback" not in clash.stderr + unknown.stderr + again.stderr
