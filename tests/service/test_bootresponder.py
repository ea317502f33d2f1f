"""BootResponder against a real store: iPXE and pxelinux answers agree, tokens are issued once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.bootresponder import BootResponder, BootSettings
from state.boot import BootPolicy
from state.credentials import fetch_nonce
from state.store import Store

MAC = "52:54:00:aa:bb:cc"
CFG = "pxelinux.cfg/01-52-54-00-aa-bb-cc"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path)
    try:
        yield s
    finally:
        await s.close()


def responder(store: Store, address: str | None = "10.0.0.1") -> BootResponder:
    tokens = iter(f"token{n}" for n in range(100))
    return BootResponder(store, BootSettings(policy=BootPolicy("wait", 2), address=address), clock=lambda: 50.0,
                         new_token=lambda: next(tokens))


async def _host(store: Store, state: str) -> None:
    await store.journal.run(lambda c: c.execute(
        "INSERT INTO images(name, version, path, created) VALUES ('base', 4, '/x', 0)"))
    await store.journal.run(lambda c: c.execute(
        "INSERT INTO hosts(name, mac, image, state, created, updated) VALUES ('n1', ?, 'base', ?, 0, 0)",
        (MAC, state)))


@pytest.mark.parametrize(("state", "ipxe_line", "pxelinux_line"), [
    (None, "sleep 2", "DEFAULT retry"),
    ("assigned", "boot || goto failed", "DEFAULT install"),
    ("installed", "sanboot --no-describe --drive 0x80 ||", "DEFAULT local"),
    ("failed", "sanboot --no-describe --drive 0x80 ||", "DEFAULT local"),
])
async def test_ipxe_and_pxelinux_say_the_same_thing(store: Store, state: str | None, ipxe_line: str,
                                                    pxelinux_line: str) -> None:
    if state:
        await _host(store, state)
    r = responder(store)
    config = r.pxelinux_config(CFG, ("10.0.0.50", 2000))
    _, script = await r.ipxe_script(MAC, "10.0.0.1", 80)
    assert config is not None
    assert pxelinux_line in config.decode().splitlines()
    assert ipxe_line in script.splitlines()


async def test_one_token_for_both_loaders_stored_and_only_its_nonce_handed_out(store: Store) -> None:
    await _host(store, "assigned")
    r = responder(store)
    config = r.pxelinux_config(CFG, ("10.0.0.50", 2000))  # issues token0, write still queued
    nonce = fetch_nonce("token0", MAC, "10.0.0.50")
    assert config is not None and f"INSTALL_NONCE={nonce} ".encode() in config
    assert b"token0" not in config and b"INSTALL_TOKEN" not in config, "the token never goes into a boot file"
    _, script = await r.ipxe_script(MAC, "10.0.0.1", peer="10.0.0.50")  # same token while the write is in flight
    assert f"INSTALL_NONCE={nonce} " in script and "token0" not in script
    await store.journal.flush()
    row = store.read_one("SELECT install_token, last_seen FROM hosts WHERE name='n1'")
    assert row is not None and tuple(row) == ("token0", 50.0)
    _, again = await r.ipxe_script(MAC, "10.0.0.1", peer="10.0.0.51")
    assert f"INSTALL_NONCE={fetch_nonce('token0', MAC, '10.0.0.51')} " in again, "bound to the asking address"


async def test_other_pxelinux_names_are_not_answered(store: Store) -> None:
    r = responder(store)
    for name in ("pxelinux.cfg/default", "pxelinux.cfg/0A000032", "pxelinux.0", "ldlinux.c32"):
        assert r.pxelinux_config(name, ("10.0.0.50", 2000)) is None


async def test_pxelinux_is_not_answered_without_an_address(store: Store) -> None:
    assert responder(store, address=None).pxelinux_config(CFG, ("10.0.0.50", 2000)) is None
