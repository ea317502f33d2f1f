"""Windowed sends use UDP GSO; where the path MTU is below the block size GSO must fall back.

The check needs a loopback with a 1500-byte MTU, so server and atftp run together in a private
network namespace (`unshare --net`): the host's interfaces are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, os, subprocess, sys
    from pathlib import Path
    from services.tftp import TftpServer

    async def main(root: Path) -> None:
        subprocess.run(["ip", "link", "set", "lo", "mtu", "1500", "up"], check=True)
        server = TftpServer(root=root, host="127.0.0.1", port=0)
        await server.start()
        try:
            for options in (["blksize 8192", "windowsize 8"], ["blksize 1468", "windowsize 8"]):
                out = root / "out.bin"
                args = ["atftp", "-g", "-r", "file.bin", "-l", str(out)]
                for option in options:
                    args += ["--option", option]
                proc = await asyncio.create_subprocess_exec(*args, "127.0.0.1", str(server.port),
                                                            stdout=asyncio.subprocess.DEVNULL)
                assert await asyncio.wait_for(proc.wait(), 30) == 0, options
                assert out.read_bytes() == (root / "file.bin").read_bytes(), options
                print("fetched", options[0], flush=True)
        finally:
            await server.stop()

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    asyncio.run(main(Path(sys.argv[1])))
    """
)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_gso_falls_back_when_blocks_exceed_the_mtu(tmp_path: Path):
    (tmp_path / "file.bin").write_bytes(os.urandom(300_000))
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "fetched blksize 8192" in lines and "fetched blksize 1468" in lines
    # 8192-byte blocks do not fit a 1500-byte MTU: GSO is refused, plain (fragmented) sends work.
    fallbacks = [line for line in lines if line.startswith("event=tftp-gso-off ")]
    assert len(fallbacks) == 1, result.stdout
    transfers = [line for line in lines if line.startswith("event=tftp-transfer ")]
    assert len(transfers) == 2 and all("outcome=completed" in line for line in transfers)
