"""The satellite role's wiring: its token, and mirroring one image version from the primary.

A version is pulled with the real rsync client from the primary's satellite module (user
sat-NAME, password derived from the satellite token: state/satellites.py) into the catalog's
staging, hard-linked against the newest local version of the same image (`--link-dest`, as getimage
does: versions stay cheap here too), then registered under the primary's name and version number with
its disk layout, and its autoinstall script is written for this appliance's address: a machine in the
satellite's subnet installs exactly as from the primary.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.config import Config, ConfigError
from appliance.images.autoinstall import AutoinstallError, script_settings, write_script
from appliance.images.catalog import Catalog, ImageError
from services.satellite import PrimaryAway, SatelliteLink
from state.eventlog import EventLog
from state.satellites import TOKEN_PREFIX, rsync_secret
from state.store import Store

log = EventLog("imageserver.satellite")

TOKEN_NAME = "satellite.token"
_TREE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}/v\d{1,9}$")
_USER = re.compile(r"^sat-[a-z0-9][a-z0-9-]{0,30}$")
_MODULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def token_path(cfg: Config) -> Path:
    return cfg.satellite.token_file or cfg.state_dir / TOKEN_NAME


def read_token(cfg: Config) -> str:
    path = token_path(cfg)
    try:
        if path.stat().st_mode & 0o077:
            # The token lets its holder pose as this satellite (and read every image tree): owner only.
            raise ConfigError("satellite.token_file", f"{path} is readable by others: chmod 600 {path}")
        token = path.read_text().strip()
    except OSError as e:
        raise ConfigError("satellite.token_file", f"cannot read {path}: {e.strerror} (put the token that "
                          "`imageserver satellites add NAME` printed on the primary there)") from None
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        raise ConfigError("satellite.token_file", f"{path} does not hold a satellite token ({TOKEN_PREFIX}...)")
    return token


def pull_version(cfg: Config, token: str, image: dict[str, Any], rsync: dict[str, Any]) -> None:
    """Mirror one version (blocking: run in a thread). Raises PrimaryAway when rsync cannot reach it."""

    name, version, tree = image.get("name"), image.get("version"), image.get("tree")
    user, module, port = rsync.get("user"), rsync.get("module"), rsync.get("port", 873)
    if not (isinstance(name, str) and isinstance(version, int) and isinstance(tree, str) and _TREE.match(tree)
            and tree == f"{name}/v{version}"):
        raise ImageError(f"the primary named a version this satellite will not write: {name!r} v{version!r}")
    if not (isinstance(user, str) and _USER.match(user) and isinstance(module, str) and _MODULE.match(module)
            and isinstance(port, int) and 0 < port < 65536):
        raise ImageError("the primary's rsync entry is not a module, user and port")
    host = urlsplit(cfg.satellite.primary).hostname or ""
    catalog = Catalog(cfg.state_dir)
    try:
        with catalog.lock(name):
            staged = catalog.new_staging(name)
            argv = [shutil.which("rsync") or "rsync", "-aHAXS", "--numeric-ids", "--devices", "--specials",
                    "--delete", "--timeout=600", "--contimeout=15"]
            previous = catalog.newest(name)
            if previous is not None and os.path.isdir(previous.path):
                argv.append(f"--link-dest={previous.path}")
            argv += [f"rsync://{user}@{host}:{port}/{module}/{tree}/", f"{staged}/"]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RSYNC_PASSWORD": rsync_secret(token)}
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=6 * 3600)
            if r.returncode != 0:
                shutil.rmtree(staged, ignore_errors=True)
                reason = (r.stderr.strip().splitlines() or ["no output"])[-1]
                if r.returncode in (5, 10, 12, 30, 35):  # cannot connect / protocol / timeouts: the primary is away
                    raise PrimaryAway(f"rsync of {tree} from {host}:{port}: exit {r.returncode}: {reason}")
                raise ImageError(f"rsync of {tree} from {host}:{port} failed (exit {r.returncode}): {reason}")
            layout = image.get("layout") if isinstance(image.get("layout"), str) else None
            note = image.get("note") if isinstance(image.get("note"), str) else None
            iv = catalog.register(name, staged, source=f"satellite:{cfg.satellite.primary}", layout_json=layout,
                                  note=note, previous=previous, version=version)
        try:
            write_script(catalog, iv, script_settings(cfg))
        except AutoinstallError as e:  # hosts with their own script still install; say why the image has none
            log.warning('satellite-no-script', module=iv.module, reason=str(e))
    finally:
        catalog.close()


def build_link(cfg: Config, store: Store, on_change: Callable[[], object] | None = None) -> SatelliteLink:
    token = read_token(cfg)

    async def mirror_version(image: dict[str, Any], rsync: dict[str, Any]) -> None:
        await asyncio.to_thread(pull_version, cfg, token, image, rsync)

    return SatelliteLink(cfg.satellite, token, store, mirror_version, on_change=on_change)
