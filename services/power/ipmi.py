"""IPMI over LAN (lanplus) through the `ipmitool` binary, one asyncio subprocess per call.

The password goes to ipmitool in its environment (`-E` reads IPMI_PASSWORD), never in argv, where any
user of the machine could read it in /proc. Cipher suite 3 (`-C 3`): without it ipmitool first asks for the
cipher suites, which BMCs such as OpenIPMI's ipmi_sim do not answer (10 s per call). ipmitool may print an
error and still exit 0 (`chassis bootdev pxe` on some BMCs), so stderr is read as well as the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time

from protocols.rmcp import is_presence_pong, presence_ping
from services.power.driver import BmcFailure
from state.bmcs import BmcSecret

IPMITOOL = "ipmitool"
_TROUBLE = re.compile(r"error|unable|fail|invalid|not supported|insufficient|timeout|unauthori", re.I)
_SESSION = re.compile(r"RAKP|unable to establish|unauthorized name|insufficient privilege", re.I)
PROBE_WAIT = 1.5  # seconds an RMCP presence ping waits for its pong
_NO_ANSWER = re.compile(r"no response|timeout|get session challenge", re.I)


class IpmiTool:
    def __init__(self, bmc: BmcSecret, host: str, port: int, *, timeout: float = 20.0) -> None:
        self.bmc, self.host, self.port = bmc, host, port
        # ipmitool's own retries within the fleet's timeout: -N seconds per try, -R tries
        self.attempt_timeout = max(1, min(5, int(timeout / 6)))
        # keep time to ask why a session failed (the fleet's own timeout would leave only "no answer")
        self.deadline = time.monotonic() + timeout - PROBE_WAIT - 0.5

    def _argv(self, *command: str) -> list[str]:
        return [IPMITOOL, "-I", "lanplus", "-C", "3", "-H", self.host, "-p", str(self.port), "-U",
                self.bmc.username, "-E", "-N", str(self.attempt_timeout), "-R", "2", *command]

    async def _run(self, *command: str) -> str:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "IPMI_PASSWORD": self.bmc.password}
        try:
            proc = await asyncio.create_subprocess_exec(*self._argv(*command), env=env,
                                                        stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError:
            raise BmcFailure("ipmitool is not installed on the imageserver (Debian package ipmitool)") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), max(0.5, self.deadline - time.monotonic()))
        except TimeoutError:
            out, err = None, None
        finally:
            if proc.returncode is None:  # cancelled (the fleet's timeout): the BMC never answered
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    await asyncio.shield(proc.wait())
        if out is None or err is None:  # ipmitool still retrying at the deadline
            raise BmcFailure(await self._why_no_session(timed_out=True))
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        trouble = [line.strip() for line in stderr.splitlines() if _TROUBLE.search(line)]
        if proc.returncode != 0 or trouble:
            lines = trouble or [line.strip() for line in stderr.splitlines() if line.strip()]
            if any(_SESSION.search(line) for line in lines):
                raise BmcFailure(await self._why_no_session())
            raise BmcFailure(_reason(" ".join(command), lines, proc.returncode))
        return stdout

    async def _why_no_session(self, timed_out: bool = False) -> str:
        """ipmitool says the same for a wrong password, a silent address and a garbage answer: an RMCP
        presence ping tells them apart."""
        where = f"{self.host}:{self.port}"
        answer = await rmcp_probe(self.host, self.port)
        if answer == "pong" and timed_out:
            return f"the BMC at {where} answers pings, but no IPMI command in time"
        if answer == "pong":
            return (f"the BMC at {where} refused the IPMI session: wrong user or password (or the user lacks "
                    "the privilege)")
        if answer == "unreachable":
            return f"nothing listens for IPMI at {where} (port unreachable)"
        if answer == "silent":
            return f"the BMC at {where} does not answer"
        return f"{where} answers, but not IPMI (not an RMCP answer)"

    async def power_status(self) -> str:
        out = await self._run("chassis", "power", "status")
        m = re.search(r"Chassis Power is (on|off)", out, re.I)
        if m is None:
            raise BmcFailure(f"ipmitool chassis power status: unexpected answer {out.strip()[:200]!r}")
        return m.group(1).lower()

    async def power_on(self) -> None:
        await self._run("chassis", "power", "on")

    async def power_off(self) -> None:
        await self._run("chassis", "power", "off")

    async def power_cycle(self) -> None:
        # Off, seen off, on: `chassis power cycle` is optional for a BMC (ipmi_sim's chassis_control only
        # powers off), and its off time is the BMC's choice. The fleet's timeout bounds the wait.
        await self._run("chassis", "power", "off")
        while await self.power_status() != "off":
            await asyncio.sleep(0.5)
        await self._run("chassis", "power", "on")

    async def set_boot_pxe_once(self) -> None:
        # Without options=persistent the override holds for the next boot only.
        await self._run("chassis", "bootdev", "pxe")

    async def close(self) -> None:
        return None  # one process per call: nothing held


class _Probe(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result("pong" if is_presence_pong(data) else "garbage")

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_result("unreachable")


async def rmcp_probe(host: str, port: int, wait: float = PROBE_WAIT) -> str:
    """pong, garbage, unreachable or silent: what an RMCP presence ping to host:port brings back."""
    loop = asyncio.get_running_loop()
    try:
        transport, probe = await loop.create_datagram_endpoint(_Probe, remote_addr=(host, port))
    except OSError:
        return "unreachable"
    try:
        transport.sendto(presence_ping())
        return await asyncio.wait_for(asyncio.shield(probe.answer), wait)
    except TimeoutError:
        return "silent"
    finally:
        transport.close()


def _reason(command: str, lines: list[str], code: int | None) -> str:
    text = "; ".join(dict.fromkeys(lines))[:300] or f"exit status {code}"
    if _NO_ANSWER.search(text):
        return f"the BMC did not answer IPMI: {text}"
    return f"ipmitool {command}: {text}"
