"""Real TFTP clients (atftp, curl, tftp-hpa, tftpy) fetch byte-identical files from our server."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from pathlib import Path

import pytest

from domain.settings import TftpConfig
from tests.service.test_tftp_support import atftp, curl, running_server, sha256, tftp_hpa, tftpy_get

# 0, one byte short of a block, one block, a multiple of 1468 only, a multiple of both 1468 and 512
SIZES = [0, 511, 512, 1468 * 4, 1468 * 512]
# More than 65,535 blocks of 512 bytes: block numbers wrap at default blksize.
ROLLOVER_SIZE = 65_600 * 512 + 100


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    rng = random.Random(1350)
    for size in SIZES:
        (root / f"f{size}.bin").write_bytes(rng.randbytes(size))
    return root


@pytest.fixture(scope="module")
def rollover_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rollover")
    block = os.urandom(1 << 20)
    with (root / "big.bin").open("wb") as f:
        for i in range(ROLLOVER_SIZE // len(block) + 1):
            # Each MiB differs (an index prefix) so a misplaced block cannot go unnoticed.
            f.write(i.to_bytes(8, "big") + block[8:])
        f.truncate(ROLLOVER_SIZE)
    return root


def _same(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and sha256(a) == sha256(b)


@pytest.mark.parametrize("cache_limit", [8 << 20, 0], ids=["memory", "pread"])
async def test_atftp_with_blksize_windowsize_tsize(root: Path, tmp_path: Path, cache_limit: int):
    async with running_server(root, memory_cache_limit=cache_limit) as server:
        for size in SIZES:
            out = tmp_path / f"atftp{size}"
            rc, text = await atftp(
                server.port, f"f{size}.bin", out, "blksize 1468", "windowsize 16", "tsize 0"
            )
            assert rc == 0, text
            assert _same(root / f"f{size}.bin", out), size
        counters = server.status()["counters"]
    assert counters["transfers_completed"] == len(SIZES)
    assert counters["bytes_sent"] == sum(SIZES)


@pytest.mark.parametrize("cache_limit", [8 << 20, 0], ids=["memory", "pread"])
async def test_curl_with_tftp_blksize(root: Path, tmp_path: Path, cache_limit: int):
    async with running_server(root, memory_cache_limit=cache_limit) as server:
        for size in SIZES:
            for blksize in (None, 1468):
                out = tmp_path / f"curl{size}-{blksize}"
                rc, text = await curl(server.port, f"f{size}.bin", out, blksize)
                assert rc == 0, text
                assert _same(root / f"f{size}.bin", out), (size, blksize)


async def test_tftp_hpa_without_options(root: Path, tmp_path: Path):
    async with running_server(root) as server:
        for size in SIZES:
            out = tmp_path / f"hpa{size}"
            rc, text = await tftp_hpa(server.port, f"f{size}.bin", out)
            assert rc == 0 and "rror" not in text, text
            assert _same(root / f"f{size}.bin", out), size
        assert server.status()["counters"]["transfers_completed"] == len(SIZES)


async def test_tftp_hpa_netascii_round_trips_cr_and_lf(root: Path, tmp_path: Path):
    text = b"first\nsecond\r\nbare\rcr\n\r\n" * 100 + b"\r"
    (root / "text.cfg").write_bytes(text)
    async with running_server(root) as server:
        rc, output = await tftp_hpa(server.port, "text.cfg", tmp_path / "text.out", mode="netascii")
        assert rc == 0 and "rror" not in output, output
        # The client undoes LF -> CR LF and CR -> CR NUL, so only a correct conversion round-trips.
        assert (tmp_path / "text.out").read_bytes() == text


async def test_tftpy_client(root: Path, tmp_path: Path):
    async with running_server(root) as server:
        for size in SIZES:
            for options in ({}, {"blksize": 1468}):
                out = tmp_path / f"tftpy{size}-{len(options)}"
                await tftpy_get(server.port, f"f{size}.bin", out, options)
                assert _same(root / f"f{size}.bin", out), (size, options)


async def test_rollover_file_at_default_blksize_with_atftp(rollover_root: Path, tmp_path: Path):
    async with running_server(rollover_root) as server:
        out = tmp_path / "big.out"
        rc, text = await atftp(server.port, "big.bin", out)
        assert rc == 0, text
        assert _same(rollover_root / "big.bin", out)
        counters = server.status()["counters"]
    assert counters["files_streamed"] == 1  # 33 MB is read with pread, not loaded into memory
    assert counters["datagrams_sent"] >= ROLLOVER_SIZE // 512 + 1 > 65_535


async def test_rollover_file_with_windowsize_and_tsize(rollover_root: Path, tmp_path: Path):
    async with running_server(rollover_root) as server:
        out = tmp_path / "big.out"
        rc, text = await atftp(server.port, "big.bin", out, "blksize 512", "windowsize 16", "tsize 0")
        assert rc == 0, text
        assert _same(rollover_root / "big.bin", out)


async def test_fifty_concurrent_transfers_all_complete(root: Path, tmp_path: Path):
    (root / "ipxe.efi").write_bytes(os.urandom(300_000))
    option_sets = [(), ("blksize 1468",), ("blksize 1468", "windowsize 16", "tsize 0"), ("blksize 8192",)]
    # All fifty come from 127.0.0.1: the per-client cap (8 by default) is lifted for this test.
    async with running_server(root, settings=TftpConfig(max_transfers_per_client=50)) as server:
        results = await asyncio.gather(
            *(
                atftp(server.port, "ipxe.efi", tmp_path / f"c{i}", *option_sets[i % len(option_sets)])
                for i in range(50)
            )
        )
        assert all(rc == 0 for rc, _ in results), [t for rc, t in results if rc]
        for i in range(50):
            assert _same(root / "ipxe.efi", tmp_path / f"c{i}"), i
        status = server.status()
    assert status["counters"]["transfers_completed"] == 50
    assert status["counters"]["cache_misses"] == 1  # one read from disk, 49 from memory
    assert status["active_transfers"] == 0


async def test_dynamic_content_is_asked_first_then_the_file_system(root: Path, tmp_path: Path):
    asked: list[tuple[str, tuple[str, int]]] = []
    (root / "pxelinux.cfg").mkdir()
    (root / "pxelinux.cfg" / "default").write_bytes(b"DEFAULT local\n")

    def dynamic(name: str, peer: tuple[str, int]) -> bytes | None:
        asked.append((name, peer))
        if name == "pxelinux.cfg/01-52-54-00-12-34-56":
            return f"DEFAULT install\n# for {peer[0]}\n".encode()
        return None

    async with running_server(root, dynamic=dynamic) as server:
        out = tmp_path / "mac.cfg"
        rc, text = await atftp(server.port, "/pxelinux.cfg/01-52-54-00-12-34-56", out, "tsize 0")
        assert rc == 0, text
        assert out.read_bytes() == b"DEFAULT install\n# for 127.0.0.1\n"
        rc, text = await atftp(server.port, "pxelinux.cfg/default", tmp_path / "default.cfg")
        assert rc == 0, text
        assert (tmp_path / "default.cfg").read_bytes() == b"DEFAULT local\n"
        assert server.status()["counters"]["dynamic_served"] == 1
    assert [name for name, _ in asked] == ["pxelinux.cfg/01-52-54-00-12-34-56", "pxelinux.cfg/default"]
    assert all(peer[0] == "127.0.0.1" and peer[1] > 0 for _, peer in asked)


async def test_changed_file_is_not_served_stale_from_memory(root: Path, tmp_path: Path):
    path = root / "undionly.kpxe"
    path.write_bytes(b"A" * 1000)
    async with running_server(root) as server:
        assert (await atftp(server.port, path.name, tmp_path / "1"))[0] == 0
        path.write_bytes(b"B" * 1000)  # same size
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
        assert (await atftp(server.port, path.name, tmp_path / "2"))[0] == 0
        path.write_bytes(b"C" * 10)
        assert (await atftp(server.port, path.name, tmp_path / "3"))[0] == 0
        assert (await atftp(server.port, path.name, tmp_path / "4"))[0] == 0
        counters = server.status()["counters"]
    assert [(tmp_path / n).read_bytes() for n in "1234"] == [b"A" * 1000, b"B" * 1000, b"C" * 10, b"C" * 10]
    assert (counters["cache_misses"], counters["cache_hits"]) == (3, 1)


async def test_one_log_line_per_transfer_with_key_values(root: Path, tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="imageserver.tftp")
    async with running_server(root) as server:
        rc, _ = await atftp(server.port, "f512.bin", tmp_path / "o", "blksize 1468", "windowsize 4")
        assert rc == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event=tftp-transfer ")]
    assert len(lines) == 1
    for field in ("peer=127.0.0.1:", "file=f512.bin", "bytes=512", "blksize=1468", "windowsize=4",
                  "seconds=", "outcome=completed"):
        assert field in lines[0], (field, lines[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="SO_BINDTODEVICE needs CAP_NET_RAW")
async def test_bind_device_serves_on_that_interface(root: Path, tmp_path: Path):
    async with running_server(root, bind_device="lo") as server:
        rc, text = await atftp(server.port, "f511.bin", tmp_path / "o", "blksize 1468")
        assert rc == 0, text
        assert _same(root / "f511.bin", tmp_path / "o")
