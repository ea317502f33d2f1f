"""Profiles: a change reaches every host that inherits it and not those that override it; the host view says
where each value comes from; the boot decision installs the inherited image with the inherited kernel
arguments; a profile in use is not removed (exit 4, naming its hosts). Offline CLI over the state database:
the same use cases as the API."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from domain import profiles
from domain.errors import Invalid
from state.boot import BootDecision, BootPolicy, boot_decision_for_mac
from state.db import connect
from state.hosts import Host
from state.images import ImageVersion, insert_version
from tests.unit.test_cli_leases_offline import config, run  # noqa: F401  (the fixture and the runner)


def _db(config_path: Path) -> Path:
    return Path(config_path.read_text().split('state_dir = "')[1].split('"')[0]) / "imageserver.db"


def _show(config_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> dict:
    code, out, err = run(config_path, capsys, "hosts", "show", name, "--json")
    assert code == 0, err
    return json.loads(out)


def test_a_profile_change_reaches_inheriting_hosts_only(config: Path,  # noqa: F811
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(config, capsys, "profiles", "add", "compute", "--image", "demo", "--transport",
                         "bittorrent", "--kernel-args", "quiet  net.ifnames=0")
    assert code == 0, err
    for i in (1, 2, 3):
        assert run(config, capsys, "hosts", "add", f"node{i}", "--mac", f"52:54:00:00:00:0{i}")[0] == 0
    code, out, err = run(config, capsys, "hosts", "set", "node[1-3]", "--profile", "compute")
    assert code == 0, (out, err)
    assert run(config, capsys, "hosts", "set", "node3", "--image", "other", "--transport", "rsync")[0] == 0

    one, three = _show(config, capsys, "node1"), _show(config, capsys, "node3")
    assert one["image"] is None and one["profile"] == "compute"
    assert one["state"] == "assigned"  # the profile's image is what an install needs
    assert one["effective"]["image"] == {"value": "demo", "source": "profile compute"}
    assert one["effective"]["transport"] == {"value": "bittorrent", "source": "profile compute"}
    assert one["effective"]["kernel_args"] == {"value": "quiet net.ifnames=0", "source": "profile compute"}
    assert one["effective"]["version"] == {"value": None, "source": "default"}
    assert one["transport_effective"] == "bittorrent"
    assert three["effective"]["image"] == {"value": "other", "source": "host"}
    assert three["effective"]["transport"] == {"value": "rsync", "source": "host"}

    code, out, err = run(config, capsys, "profiles", "set", "compute", "--image", "demo2", "--version", "2")
    assert code == 0, err
    one, two, three = (_show(config, capsys, n) for n in ("node1", "node2", "node3"))
    assert [h["effective"]["image"]["value"] for h in (one, two, three)] == ["demo2", "demo2", "other"]
    assert one["effective"]["version"] == {"value": 2, "source": "profile compute"}
    # a host with its own image does not inherit a version of the profile's image
    assert three["effective"]["version"] == {"value": None, "source": "default"}
    text = run(config, capsys, "hosts", "show", "node1")[1]
    assert "image      demo2  (from profile compute)" in text and "profile    compute" in text

    # The boot decision reads the effective host: the profile's image and version, its kernel arguments.
    with connect(_db(config)) as conn:
        for image, version in (("demo2", 1), ("demo2", 2), ("other", 1)):
            insert_version(conn, ImageVersion(image, version, f"/x/{image}/v{version}", 1.0))
        conn.commit()
        d1 = boot_decision_for_mac(conn, "52:54:00:00:00:01", BootPolicy())
        d3 = boot_decision_for_mac(conn, "52:54:00:00:00:03", BootPolicy())
    assert (d1.kind, d1.image, d1.version, d1.kernel_args) == ("install", "demo2", 2, "quiet net.ifnames=0")
    assert (d3.kind, d3.image, d3.version) == ("install", "other", 1)

    code, out, err = run(config, capsys, "profiles", "rm", "compute")
    assert code == 4 and "node1, node2, node3" in err and "Traceback" not in err
    code, out, err = run(config, capsys, "profiles", "show", "compute", "--json")
    assert json.loads(out)["host_names"] == ["node1", "node2", "node3"]
    code, out, err = run(config, capsys, "hosts", "set", "node1", "--no-profile")
    assert code == 4 and "no image to be assigned with" in err  # as clearing its own image would be
    assert run(config, capsys, "hosts", "set", "node[1-3]", "--no-profile", "--state", "new")[0] == 0
    assert _show(config, capsys, "node1")["effective"]["image"] == {"value": None, "source": "default"}
    code, out, err = run(config, capsys, "profiles", "rm", "compute")
    assert code == 0 and "profile compute removed" in out
    assert json.loads(run(config, capsys, "profiles", "list", "--json")[1]) == []


def test_profile_refusals(config: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert run(config, capsys, "hosts", "add", "node1", "--mac", "52:54:00:00:00:01")[0] == 0
    code, _, err = run(config, capsys, "hosts", "set", "node1", "--profile", "nope")
    assert code == 3 and "no profile named 'nope'" in err
    assert run(config, capsys, "profiles", "add", "gpu")[0] == 0
    code, _, err = run(config, capsys, "profiles", "add", "gpu")
    assert code == 4 and "exists already" in err
    code, _, err = run(config, capsys, "profiles", "set", "gpu", "--kernel-args", "a;reboot")
    assert code == 2 and "kernel_args" in err
    code, _, err = run(config, capsys, "profiles", "set", "gpu", "--bmc", "ftp://{host}")
    assert code == 2 and "BMC address" in err
    code, _, err = run(config, capsys, "profiles", "rm", "nope")
    assert code == 3


def test_profile_bmc_password_is_stored_never_shown(config: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                                     tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-pw\n")
    code, out, err = run(config, capsys, "profiles", "add", "rack", "--bmc", "ipmi://{host}-bmc:6230", "--bmc-user",
                         "admin", "--bmc-password-file", str(secret), "--json")
    assert code == 0, err
    assert "s3cret" not in out and json.loads(out)["bmc_password_set"] is True
    assert run(config, capsys, "hosts", "add", "n7", "--mac", "52:54:00:00:00:07")[0] == 0
    assert run(config, capsys, "hosts", "set", "n7", "--profile", "rack")[0] == 0
    shown = _show(config, capsys, "n7")
    assert shown["effective"]["bmc"] == {"value": True, "source": "profile rack"}
    with sqlite3.connect(_db(config)) as conn:
        from domain.power import power_targets
        targets, refused = power_targets(conn, ["n7"])
    assert not refused and targets["n7"].address == "ipmi://n7-bmc:6230" and targets["n7"].password == "s3cret-pw"


def test_checked_settings() -> None:
    assert profiles.checked_settings({"image": "", "version": 3, "kernel_args": " a=1   b "}) == {
        "image": None, "version": 3, "kernel_args": "a=1 b"}
    for bad in ({"version": 0}, {"transport": "ftp"}, {"image": "../x"}, {"colour": "red"},
                {"kernel_args": "${x}"}, {"bmc_username": "a\nb"}):
        with pytest.raises(Invalid):
            profiles.checked_settings(bad)


def test_value_sources_name_host_profile_image_default() -> None:
    own = Host("n1", None, None, None, None, "new", 0, 0, transport=None, profile="p")
    eff = Host("n1", None, None, "img", 4, "new", 0, 0, transport=None, profile="p", kernel_args=None)
    out = profiles.value_sources(own, eff, "multicast", own_bmc=True, profile_bmc=True)
    assert out["image"].source == "profile p" and out["version"].value == 4
    assert (out["transport"].value, out["transport"].source) == ("multicast", "image img")
    assert out["kernel_args"].source == "default" and out["bmc"].source == "host"


def test_inherited_kernel_arguments_follow_the_operators_on_every_loader() -> None:
    from protocols.bootscript import BootServer, render_grub, render_ipxe, render_pxelinux

    decision = BootDecision("install", "52:54:00:00:00:01", "install", 5, hostname="n1", image="demo", version=2,
                            install_token="t", kernel_args="net.ifnames=0 ip=dhcp")
    server = BootServer(address="10.9.0.1", kernel_cmdline="console=ttyS0")
    for render in (render_ipxe, render_pxelinux, render_grub):
        text = render(decision, server)
        assert "console=ttyS0 net.ifnames=0 ip=dhcp" in text, render.__name__


def test_a_redfish_address_may_name_its_system() -> None:
    from domain.power import parse_bmc_address

    a = parse_bmc_address("http://127.0.0.1:8000/redfish/v1/Systems/node007")
    assert (a.kind, a.port, a.system, a.base_url) == ("redfish", 8000, "/redfish/v1/Systems/node007",
                                                      "http://127.0.0.1:8000")
    assert parse_bmc_address("redfish://bmc1").system is None
    for bad in ("ipmi://10.0.0.1/redfish/v1/Systems/x", "https://bmc/redfish/v1/Managers/1",
                "https://bmc/redfish/v1/Systems/a/b"):
        with pytest.raises(Invalid):
            parse_bmc_address(bad)


def test_root_device_hints_inherit_host_then_profile_then_image(config: Path,  # noqa: F811
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`hosts add --profile`: the profile's image makes the host assigned; its root-device hints apply unless the
    host has its own, and win over the image's; `hosts show` names whose they are; a profile that does not
    exist is exit 3 and nothing is added."""
    code, _, err = run(config, capsys, "hosts", "add", "node9", "--mac", "52:54:00:00:00:09", "--profile", "nope")
    assert code == 3 and "no profile named 'nope'" in err and "Traceback" not in err
    assert run(config, capsys, "hosts", "show", "node9")[0] == 3, "nothing was added"

    code, out, err = run(config, capsys, "profiles", "add", "compute", "--image", "demo", "--root-device",
                         "rotational=false, smallest", "--json")
    assert code == 0, err
    assert json.loads(out)["root_device"] == "rotational=false,smallest"
    for i in (1, 2, 3):
        code, out, err = run(config, capsys, "hosts", "add", f"node{i}", "--mac", f"52:54:00:00:00:0{i}",
                             "--profile", "compute", "--json")
        assert code == 0, err
        assert (json.loads(out)["profile"], json.loads(out)["state"]) == ("compute", "assigned")
    # images with hints must exist (and be installable: an operator's own script, no disk layout needed)
    with connect(_db(config)) as conn:
        insert_version(conn, ImageVersion("demo", 1, "/x/demo/v1", 1.0))
        insert_version(conn, ImageVersion("other", 1, "/x/other/v1", 1.0))
        conn.commit()
    for image in ("demo", "other"):
        (_db(config).parent / "scripts").mkdir(exist_ok=True)
        (_db(config).parent / "scripts" / f"{image}.master").write_text("#!/bin/sh\n")
    assert run(config, capsys, "images", "root-device", "demo", "serial=IMG")[0] == 0
    assert run(config, capsys, "images", "root-device", "other", "serial=A;serial=B")[0] == 0
    assert run(config, capsys, "hosts", "set", "node2", "--root-device", "serial=OWN")[0] == 0
    code, out, err = run(config, capsys, "hosts", "set", "node3", "--no-profile", "--image", "other")
    assert code == 0, err

    one, two, three = (_show(config, capsys, n) for n in ("node1", "node2", "node3"))
    assert one["effective"]["root_device"] == {"value": "rotational=false,smallest", "source": "profile compute"}
    assert one["root_device"] == {"hints": "rotational=false,smallest", "source": "profile"}
    assert two["effective"]["root_device"] == {"value": "serial=OWN", "source": "host"}
    assert three["effective"]["root_device"] == {"value": "serial=A;serial=B", "source": "image other"}
    text = run(config, capsys, "hosts", "show", "node1")[1]
    assert "root disk  rotational=false,smallest (profile compute's hints)" in text, text

    # a profile change reaches node1 (inherits) and not node2 (its own hints) nor node3 (no longer its host)
    assert run(config, capsys, "profiles", "set", "compute", "--root-device", "size>=100G,largest")[0] == 0
    one, two, three = (_show(config, capsys, n) for n in ("node1", "node2", "node3"))
    assert one["effective"]["root_device"]["value"] == "size>=100G,largest"
    assert two["effective"]["root_device"]["value"] == "serial=OWN"
    assert three["effective"]["root_device"]["value"] == "serial=A;serial=B"
    # cleared on the profile: the image's apply
    assert run(config, capsys, "profiles", "set", "compute", "--root-device", "")[0] == 0
    assert _show(config, capsys, "node1")["effective"]["root_device"] == {"value": "serial=IMG",
                                                                         "source": "image demo"}
    code, _, err = run(config, capsys, "profiles", "set", "compute", "--root-device", "serial=A;colour=red")
    assert code == 2 and "disk 1: root-device hint 'colour=red'" in err

    # a removed profile's hints go with it (a new profile of the name starts without any)
    assert run(config, capsys, "profiles", "set", "compute", "--root-device", "serial=P")[0] == 0
    assert run(config, capsys, "hosts", "rm", "node[1-2]")[0] == 0
    assert run(config, capsys, "profiles", "rm", "compute")[0] == 0
    assert run(config, capsys, "profiles", "add", "compute")[0] == 0
    assert json.loads(run(config, capsys, "profiles", "show", "compute", "--json")[1])["root_device"] is None


def test_the_inheritance_rule_has_one_home(tmp_path: Path) -> None:
    """The hosts_effective view is built from state.schema.INHERITED, and a change being checked is inherited
    by the same expressions (state.hosts.inherited); a database whose view is older is given the new one."""
    from state.hosts import effective_host_by_name, inherited, insert_host
    from state.schema import VIEWS

    db = tmp_path / "s.db"
    conn = connect(db)
    assert conn.execute("SELECT sql FROM sqlite_master WHERE name = 'hosts_effective'").fetchone()[0] == \
        VIEWS["hosts_effective"]
    conn.execute("INSERT INTO profiles (name, image, version, transport, kernel_args, created, updated) "
                 "VALUES ('p', 'img', 3, 'multicast', 'quiet', 0, 0)")
    cases = [Host("a", None, None, None, None, "new", 0, 0, profile="p"),
             Host("b", None, None, "img", None, "new", 0, 0, profile="p", kernel_args="own"),
             Host("c", None, None, "other", None, "new", 0, 0, profile="p", transport="rsync"),
             Host("d", None, None, None, 7, "new", 0, 0, profile="p"),
             Host("e", None, None, None, None, "new", 0, 0, profile="missing"),
             Host("f", None, None, "x", 2, "new", 0, 0)]
    for host in cases:
        insert_host(conn, host)
    for host in cases:
        assert inherited(conn, host) == effective_host_by_name(conn, host.name), host.name
    got = {h.name: (inherited(conn, h).image, inherited(conn, h).version, inherited(conn, h).transport,
                    inherited(conn, h).kernel_args) for h in cases}
    assert got == {"a": ("img", 3, "multicast", "quiet"), "b": ("img", 3, "multicast", "own"),
                   "c": ("other", None, "rsync", "quiet"), "d": ("img", 7, "multicast", "quiet"),
                   "e": (None, None, None, None), "f": ("x", 2, None, None)}
    # the BMC: a host's own, else its profile's defaults where complete (address, user and password)
    from state.hosts import bmc_sources
    assert bmc_sources(conn) == {}
    conn.execute("UPDATE profiles SET bmc_address = 'ipmi://{host}-bmc', bmc_username = 'u'")
    assert bmc_sources(conn) == {}, "no password: not complete"
    conn.execute("UPDATE profiles SET bmc_password = 'pw'")
    conn.execute("INSERT INTO bmcs (host, address, username, password) VALUES ('b', 'ipmi://b', 'u', 'pw')")
    conn.execute("INSERT INTO bmcs (host, address, username, password) VALUES ('f', 'ipmi://f', 'u', 'pw')")
    assert bmc_sources(conn) == {"a": "profile", "b": "host", "c": "profile", "d": "profile", "f": "host"}
    assert bmc_sources(conn, ["a", "b", "e"]) == {"a": "profile", "b": "host"}
    # an older view (migration 9's, as a database made before this one has it) is replaced at the next open
    conn.execute("DROP VIEW hosts_effective")
    conn.execute("CREATE VIEW hosts_effective AS SELECT * FROM hosts")
    conn.close()
    conn = connect(db)
    assert conn.execute("SELECT sql FROM sqlite_master WHERE name = 'hosts_effective'").fetchone()[0] == \
        VIEWS["hosts_effective"]
    assert effective_host_by_name(conn, "a") == inherited(conn, cases[0])
    conn.close()


def test_addclients_makes_hosts_of_a_profile(config: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """The bulk form of `hosts add --profile`: a range of new hosts inheriting from one profile (assigned once
    they have a MAC, with the profile's image); a profile that does not exist is exit 3 and nothing is made."""
    code, _, err = run(config, capsys, "addclients", "--base", "node", "--range", "1-3", "--profile", "nope")
    assert code == 3 and "no profile named 'nope'" in err, err
    assert run(config, capsys, "profiles", "add", "compute", "--image", "demo")[0] == 0
    macs = config.parent / "macs.txt"
    macs.write_text("52:54:00:00:00:01 node1\n")
    code, _, err = run(config, capsys, "addclients", "--base", "node", "--range", "1-3", "--profile", "compute",
                         "--first-ip", "10.79.0.21", "--macs", str(macs))
    assert code == 0, err
    shown = [_show(config, capsys, f"node{i}") for i in (1, 2, 3)]
    assert [h["profile"] for h in shown] == ["compute"] * 3
    assert [h["state"] for h in shown] == ["assigned", "new", "new"]  # node2, node3 wait for their machine
    assert shown[1]["effective"]["image"] == {"value": "demo", "source": "profile compute"}
