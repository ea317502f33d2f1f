"""state.boot.decide_boot: the one table that says what a machine boots, for every host state."""

from __future__ import annotations

import pytest

from state.boot import BootPolicy, decide_boot
from state.hosts import HOST_STATES, Host

MAC = "52:54:00:12:34:56"
WAIT = BootPolicy(unknown="wait", poll_seconds=7)
LOCAL = BootPolicy(unknown="local", poll_seconds=7)


def host(state: str = "assigned", image: str | None = "base", version: int | None = None,
         token: str | None = "tok") -> Host:
    return Host(name="node01", mac=MAC, ip=None, image=image, version=version, state=state, created=0.0,
                updated=0.0, install_token=token, running_version=2 if state == "installed" else None)


@pytest.mark.parametrize(
    ("state", "kind"),
    [("new", "install"), ("assigned", "install"), ("installing", "install"),
     ("installed", "local"), ("failed", "local")],
)
def test_host_state_decides_install_or_local(state: str, kind: str) -> None:
    d = decide_boot(MAC, host(state), versions=(1, 2, 3), policy=WAIT)
    assert d.kind == kind
    assert d.hostname == "node01"
    assert d.mac == MAC


def test_every_host_state_is_in_the_table() -> None:
    # A new state added to HOST_STATES without a decision would fall to "unexpected state".
    for state in HOST_STATES:
        assert "unexpected" not in decide_boot(MAC, host(state), (1,), WAIT).reason


def test_install_takes_the_newest_version_when_the_host_names_none() -> None:
    d = decide_boot(MAC, host(version=None), versions=(1, 3, 2), policy=WAIT)
    assert (d.kind, d.image, d.version, d.install_token) == ("install", "base", 3, "tok")


def test_install_takes_the_pinned_version() -> None:
    d = decide_boot(MAC, host(version=2), versions=(1, 2, 3), policy=WAIT)
    assert (d.kind, d.version) == ("install", 2)


def test_pinned_version_that_does_not_exist_waits() -> None:
    d = decide_boot(MAC, host(version=9), versions=(1, 2), policy=LOCAL)
    assert d.kind == "wait"
    assert "no version 9" in d.reason


def test_image_without_versions_waits_even_with_local_policy() -> None:
    # The operator assigned an image; it only has to be captured: wait, do not boot an empty disk.
    d = decide_boot(MAC, host(), versions=(), policy=LOCAL)
    assert d.kind == "wait"
    assert d.poll_seconds == 7


def test_installed_host_never_installs_again() -> None:
    d = decide_boot(MAC, host("installed"), versions=(1, 2, 3), policy=WAIT)
    assert d.kind == "local"
    assert d.version == 2  # the running version, for the record
    assert d.install_token is None


def test_failed_host_boots_local_rather_than_looping() -> None:
    d = decide_boot(MAC, host("failed"), versions=(1,), policy=WAIT)
    assert d.kind == "local"
    assert "reinstall" in d.reason


def test_unknown_state_boots_local() -> None:
    d = decide_boot(MAC, host("bogus"), versions=(1,), policy=WAIT)
    assert d.kind == "local"
    assert "unexpected state" in d.reason


@pytest.mark.parametrize(("policy", "kind"), [(WAIT, "wait"), (LOCAL, "local")])
def test_unknown_machine_follows_the_policy(policy: BootPolicy, kind: str) -> None:
    d = decide_boot(MAC, None, versions=(), policy=policy)
    assert d.kind == kind
    assert d.hostname is None
    assert d.poll_seconds == 7


@pytest.mark.parametrize(("policy", "kind"), [(WAIT, "wait"), (LOCAL, "local")])
def test_host_without_image_follows_the_policy(policy: BootPolicy, kind: str) -> None:
    d = decide_boot(MAC, host(image=None), versions=(), policy=policy)
    assert d.kind == kind
    assert d.hostname == "node01"


def test_install_token_is_not_in_the_api_view() -> None:
    d = decide_boot(MAC, host(), versions=(1,), policy=WAIT)
    assert d.install_token == "tok"
    assert "install_token" not in d.as_dict()


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError):
        BootPolicy(unknown="install")
    with pytest.raises(ValueError):
        BootPolicy(poll_seconds=0)


INSPECT = BootPolicy(unknown="wait", poll_seconds=7, inspect=True)


def test_a_held_machine_without_an_inventory_is_inspected_once() -> None:
    d = decide_boot(MAC, None, (), INSPECT, inventoried=False)
    assert (d.kind, d.hostname, d.image, d.install_token) == ("inspect", None, None, None)
    assert "no inventory" in d.reason
    assert decide_boot(MAC, None, (), INSPECT, inventoried=True).kind == "wait", "inspected: it waits as before"
    assert decide_boot(MAC, None, (), WAIT, inventoried=False).kind == "wait", "inspection off (the default)"
    assert not BootPolicy().inspect


def test_only_machines_no_host_has_and_that_wait_are_inspected() -> None:
    local = BootPolicy(unknown="local", inspect=True)
    assert decide_boot(MAC, None, (), local, inventoried=False).kind == "local", "its own disk: never powered off"
    assert decide_boot(MAC, host(), (1,), INSPECT, inventoried=False).kind == "install"
    assert decide_boot(MAC, host(image=None), (), INSPECT, inventoried=False).kind == "wait", "a host waits"


# The arch re-check at boot: a host assigned before its machine was ever seen (no option 93 known then,
# so the assignment could not refuse it) is refused at boot when the firmware reports another architecture.
ARM64_UEFI, ARM64_HTTP, X64_UEFI = 11, 19, 7


@pytest.mark.parametrize("client_arch", [ARM64_UEFI, ARM64_HTTP])
def test_an_arm64_machine_assigned_an_x86_64_image_is_refused_with_the_reason(client_arch: int) -> None:
    d = decide_boot(MAC, host(), versions=(1, 2), policy=WAIT, client_arch=client_arch,
                    arches={1: "arm64", 2: "x86_64"})
    assert d.kind == "wait" and d.install_token is None
    assert (d.hostname, d.image, d.version) == ("node01", "base", 2)
    assert "refused to install base v2 on host node01" in d.reason
    assert "the image is x86_64" in d.reason and f"client architecture {client_arch}" in d.reason


def test_the_arch_check_is_of_the_version_the_host_boots() -> None:
    arches = {1: "arm64", 2: "x86_64"}
    pinned = decide_boot(MAC, host(version=1), versions=(1, 2), policy=WAIT, client_arch=ARM64_UEFI, arches=arches)
    assert (pinned.kind, pinned.version) == ("install", 1)
    x64 = decide_boot(MAC, host(), versions=(1, 2), policy=WAIT, client_arch=X64_UEFI, arches=arches)
    assert (x64.kind, x64.version) == ("install", 2)
    arm_on_x64 = decide_boot(MAC, host(version=1), versions=(1, 2), policy=WAIT, client_arch=X64_UEFI,
                             arches=arches)
    assert arm_on_x64.kind == "wait" and "the image is arm64" in arm_on_x64.reason


@pytest.mark.parametrize(("client_arch", "arches"), [(None, {1: "arm64"}), (ARM64_UEFI, {1: None}),
                                                     (ARM64_UEFI, {}), (ARM64_UEFI, None), (9999, {1: "x86_64"})])
def test_nothing_is_refused_on_a_guess(client_arch: int | None, arches: dict[int, str | None] | None) -> None:
    d = decide_boot(MAC, host(), versions=(1,), policy=WAIT, client_arch=client_arch, arches=arches)
    assert d.kind == "install"


def test_an_installed_host_boots_its_disk_whatever_the_arch() -> None:
    d = decide_boot(MAC, host("installed"), versions=(1,), policy=WAIT, client_arch=ARM64_UEFI, arches={1: "x86_64"})
    assert d.kind == "local"


def test_boot_decision_for_mac_reads_the_machines_and_the_images_arch(tmp_path) -> None:
    from state.boot import boot_decision_for_mac
    from state.db import connect, transaction
    from state.hosts import insert_host
    from state.images import ImageVersion, insert_version
    from state.sightings import Machine, insert_machines

    conn = connect(tmp_path / "imageserver.db")
    arm, x64, unseen = "52:54:00:00:11:11", "52:54:00:00:07:07", "52:54:00:00:00:99"
    try:
        with transaction(conn):
            insert_version(conn, ImageVersion("deb", 1, "/x/deb/v1", 1.0, arch="x86_64"))
            for name, mac in (("arm1", arm), ("x1", x64), ("new1", unseen)):
                insert_host(conn, Host(name=name, mac=mac, ip=None, image="deb", version=None, state="assigned",
                                       created=0.0, updated=0.0))
            insert_machines(conn, [Machine(arm, 1.0, 2.0, ARM64_UEFI, "PXEClient:Arch:00011:UNDI:003000"),
                                   Machine(x64, 1.0, 2.0, X64_UEFI, "PXEClient:Arch:00007:UNDI:003016")])
        refused = boot_decision_for_mac(conn, arm, WAIT)
        assert refused.kind == "wait" and "client architecture 11" in refused.reason, refused
        assert boot_decision_for_mac(conn, x64, WAIT).kind == "install"
        assert boot_decision_for_mac(conn, unseen, WAIT).kind == "install"  # not seen yet: nothing known
    finally:
        conn.close()
