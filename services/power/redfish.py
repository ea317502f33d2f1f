"""Redfish through aiohttp: the system is the one the address names (/redfish/v1/Systems/ID), else the first
member of /redfish/v1/Systems; power through its
ComputerSystem.Reset action, the one-time network boot through a PATCH of its Boot override.

TLS: with a pinned fingerprint only the certificate of that SHA-256 is accepted (aiohttp.Fingerprint);
without one the BMC's certificate is not checked (BMCs ship self-signed certificates): pin it to be sure
who gets the password.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from services.power.driver import BmcFailure
from state.bmcs import BmcSecret

_POWER = {"on": "on", "poweringoff": "on", "off": "off", "poweringon": "off"}


class Redfish:
    def __init__(self, bmc: BmcSecret, base_url: str, *, tls: bool, timeout: float,
                 system: str | None = None) -> None:
        self.base_url = base_url
        self.system_path = system
        self.ssl: aiohttp.Fingerprint | bool = (aiohttp.Fingerprint(bytes.fromhex(bmc.fingerprint))
                                                if bmc.fingerprint else False) if tls else True
        # the basic-auth header built here (aiohttp's `auth=` is deprecated, encode_basic_auth is only in 3.12+)
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout), auth=aiohttp.BasicAuth(bmc.username, bmc.password),
            headers={"Accept": "application/json", "OData-Version": "4.0"})
        self._system: dict[str, Any] | None = None

    async def close(self) -> None:
        await self.session.close()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = path if path.startswith("http") else self.base_url + path
        try:
            # no redirects: the password goes to the BMC named, nowhere else
            async with self.session.request(method, url, json=body, ssl=self.ssl, allow_redirects=False) as resp:
                text = await resp.text()
                if resp.status == 401:
                    raise BmcFailure("the Redfish service refused the user or password (HTTP 401)")
                if resp.status >= 300:
                    raise BmcFailure(f"Redfish {method} {path}: HTTP {resp.status} {_message(text)}".rstrip())
                if not text.strip():
                    return None
                try:
                    return await resp.json(content_type=None)
                except ValueError:
                    raise BmcFailure(f"Redfish {method} {path}: the answer is not JSON "
                                     f"({text.strip()[:80]!r})") from None
        except aiohttp.ServerFingerprintMismatch:
            raise BmcFailure("the BMC's TLS certificate is not the pinned one (fingerprint mismatch)") from None
        except aiohttp.ClientConnectorError as e:
            raise BmcFailure(f"cannot reach the Redfish service at {self.base_url}: {e.os_error.strerror or e}") \
                from None
        except aiohttp.ClientError as e:
            raise BmcFailure(f"Redfish {method} {path}: {type(e).__name__}: {e}") from None

    async def system(self) -> dict[str, Any]:
        if self._system is None:
            member = self.system_path or await self._first_system()
            self._system = await self._call("GET", member)
            if not isinstance(self._system, dict):
                raise BmcFailure(f"Redfish GET {member}: not a ComputerSystem")
            self._system.setdefault("@odata.id", member)
        return self._system

    async def _first_system(self) -> str:
        systems = await self._call("GET", "/redfish/v1/Systems")
        try:
            return str(systems["Members"][0]["@odata.id"])
        except (KeyError, IndexError, TypeError):
            raise BmcFailure("the Redfish service lists no system under /redfish/v1/Systems") from None

    async def _reset(self, kind: str) -> None:
        system = await self.system()
        target = (system.get("Actions", {}).get("#ComputerSystem.Reset", {}).get("target")
                  or f"{system['@odata.id']}/Actions/ComputerSystem.Reset")
        await self._call("POST", target, {"ResetType": kind})

    async def power_status(self) -> str:
        self._system = None  # fresh: the power changes under us
        state = str((await self.system()).get("PowerState", "")).lower()
        if state not in _POWER:
            raise BmcFailure(f"Redfish: unknown PowerState {state!r}")
        return _POWER[state]

    async def power_on(self) -> None:
        await self._reset("On")

    async def power_off(self) -> None:
        await self._reset("ForceOff")

    async def power_cycle(self) -> None:
        await self._reset("ForceRestart")

    async def set_boot_pxe_once(self) -> None:
        system = await self.system()
        await self._call("PATCH", system["@odata.id"],
                         {"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}})


def _message(text: str) -> str:
    """The Redfish error's own words (error.@Message.ExtendedInfo / error.message), else the body's start."""
    try:
        err = json.loads(text).get("error", {})
        info = err.get("@Message.ExtendedInfo") or []
        return str((info[0].get("Message") if info else None) or err.get("message") or "")[:200]
    except (ValueError, AttributeError, IndexError, TypeError):
        return text.strip()[:120]
