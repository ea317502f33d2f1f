"""The Secure Boot chain over TFTP, fetched by real clients (atftp with GRUB's blksize, curl) from our
server: Debian's signed shim and network GRUB byte-identical from the boot root bootfiles fills, GRUB's
grub/grub.cfg and the per-MAC grub/grub.cfg-01-<mac> rendered from a real store's decision (the fetch
nonce bound to the asking address, never the install token)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.boot.bootfiles import secure_boot_files, sync_boot_files
from appliance.config import BootConfig
from services.bootresponder import BootResponder, BootSettings
from state.boot import BootPolicy
from state.credentials import fetch_nonce
from state.store import Store
from tests.service.test_tftp_support import HOST, atftp, curl, running_server

MAC = "52:54:00:5b:00:01"
GRUB_CFG = f"grub/grub.cfg-01-{MAC}"
DEBIAN = BootConfig()  # Debian's paths: /usr/lib/shim/shimx64.efi.signed, .../grubnetx64.efi.signed


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "state")
    try:
        yield s
    finally:
        await s.close()


def boot_root(tmp_path: Path) -> tuple[Path, BootConfig]:
    """The boot root as bootfiles fills it: the real signed files where installed, else stand-ins."""
    boot = DEBIAN
    if not all(f.source.exists() for f in secure_boot_files(DEBIAN)):
        fake = tmp_path / "distro"
        fake.mkdir()
        (fake / "shimx64.efi.signed").write_bytes(b"MZ shim" * 20000)
        (fake / "grubnetx64.efi.signed").write_bytes(b"MZ grub" * 50000)
        boot = BootConfig(shim=fake / "shimx64.efi.signed", grub_efi=fake / "grubnetx64.efi.signed")
    root = tmp_path / "boot"
    report = sync_boot_files(secure_boot_files(boot), root)
    assert sorted(report.present) == ["grubx64.efi", "shimx64.efi"]
    return root, boot


async def add_host(store: Store, state: str) -> None:
    await store.journal.run(lambda c: c.execute(
        "INSERT INTO images(name, version, path, created) VALUES ('deb', 2, '/x', 0)"))
    await store.journal.run(lambda c: c.execute(
        "INSERT INTO hosts(name, mac, image, state, created, updated) VALUES ('sb1', ?, 'deb', ?, 0, 0)",
        (MAC, state)))


def responder(store: Store) -> BootResponder:
    return BootResponder(store, BootSettings(policy=BootPolicy("wait", 3), address="10.0.0.1"), clock=lambda: 50.0,
                         new_token=lambda: "tok-secret-1")


async def test_shim_and_grub_are_served_byte_identical(store: Store, tmp_path: Path) -> None:
    root, boot = boot_root(tmp_path)
    async with running_server(root, dynamic=responder(store).tftp_config) as server:
        for name, source in (("shimx64.efi", boot.shim), ("grubx64.efi", boot.grub_efi)):
            out = tmp_path / f"got-{name}"
            # GRUB and edk2's PXE ask for blksize 1024 / 512 without windowsize; curl asks for nothing.
            rc, text = await atftp(server.port, name, out, "blksize 1024", "tsize 0")
            assert rc == 0, text
            assert out.read_bytes() == source.read_bytes(), name
            rc, text = await curl(server.port, name, tmp_path / f"curl-{name}")
            assert rc == 0, text
            assert (tmp_path / f"curl-{name}").read_bytes() == source.read_bytes(), name


async def test_grub_reads_the_bootstrap_then_its_install_config_with_the_nonce(store: Store, tmp_path: Path) -> None:
    root, _ = boot_root(tmp_path)
    await add_host(store, "assigned")
    async with running_server(root, dynamic=responder(store).tftp_config) as server:
        rc, text = await atftp(server.port, "grub/grub.cfg", tmp_path / "bootstrap", "blksize 1024")
        assert rc == 0, text
        assert "source $prefix/grub.cfg-01-$net_default_mac" in (tmp_path / "bootstrap").read_text()
        rc, text = await atftp(server.port, GRUB_CFG, tmp_path / "mine", "blksize 1024")
        assert rc == 0, text
    config = (tmp_path / "mine").read_text()
    assert "if linux (tftp,10.0.0.1)/installer/vmlinuz " in config
    assert f"INSTALL_NONCE={fetch_nonce('tok-secret-1', MAC, HOST)} " in config, "bound to the asking address"
    assert "tok-secret-1" not in config and "INSTALL_TOKEN" not in config
    await store.journal.flush()
    row = store.read_one("SELECT install_token FROM hosts WHERE name='sb1'")
    assert row is not None and row[0] == "tok-secret-1", "the token the nonce derives from is stored"


async def test_an_installed_host_is_told_to_chain_its_disk(store: Store, tmp_path: Path) -> None:
    root, _ = boot_root(tmp_path)
    await add_host(store, "installed")
    async with running_server(root, dynamic=responder(store).tftp_config) as server:
        rc, text = await atftp(server.port, GRUB_CFG, tmp_path / "mine", "blksize 1024")
        assert rc == 0, text
    config = (tmp_path / "mine").read_text()
    assert "configfile $prefix/grub.cfg" in config and "linux " not in config


async def test_unknown_names_and_traversal_get_tftp_errors(store: Store, tmp_path: Path) -> None:
    root, _ = boot_root(tmp_path)
    (tmp_path / "secret").write_text("outside the root")
    async with running_server(root, dynamic=responder(store).tftp_config) as server:
        for name in ("grub/x86_64-efi/grub.cfg", "grub/grub.cfg-01-52:54:00", "grub/../../secret",
                     "grub/grub.cfg-01-../../secret"):
            rc, text = await curl(server.port, name, tmp_path / "out")
            assert rc != 0, (name, text)
        assert server.status()["counters"].get("dynamic_served", 0) == 0
