"""The CLI from a workstation: which server (`--server URL`, else $IMAGESERVER_URL), which token
($IMAGESERVER_TOKEN, else ~/.config/imageserver/token, which must be 0600), and how its certificate is
believed (`--ca FILE`, else pinned on first use in ~/.config/imageserver/known_servers).

main() makes the choice once per command line (`select`); ApiClient.from_config hands out the chosen
client. Only the commands that ask the daemon go remote (REMOTE_COMMANDS); the others read or write the
appliance's state directory and refuse --server. Remotely there is no offline fallback: a server that
does not answer is an error (exit 5), never a reason to write a local state directory.
"""

from __future__ import annotations

import os
import stat
from contextvars import ContextVar
from pathlib import Path
from urllib.parse import urlsplit

from appliance.cli.apiclient import ApiClient, Trust
from appliance.cli.exitcodes import USAGE, CommandFailed

# The commands that talk to the daemon (each works with --server); every other one works on this box.
REMOTE_COMMANDS = frozenset({"status", "watch", "hosts", "leases", "reservations", "machines", "addclients",
                             "makedhcpstatic", "power", "profiles", "satellites", "tokens", "audit"})

TOKEN_FILE = "token"
KNOWN_SERVERS = "known_servers"

# The client this command line chose, for ApiClient.from_config: a context variable (each main() run sets
# its own, so a test calling main() twice or a library caller never sees another run's server).
_SELECTED: ContextVar[ApiClient | None] = ContextVar("imageserver_remote_client", default=None)


def config_dir() -> Path:
    """$XDG_CONFIG_HOME/imageserver, else ~/.config/imageserver."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "imageserver"


def env_token() -> str | None:
    return os.environ.get("IMAGESERVER_TOKEN", "").strip() or None


def file_token(path: Path) -> str | None:
    """The token in `path` (None: no such file); refused if others may read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise CommandFailed(f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}): it holds an API token; "
                            f"chmod 600 {path}", code=USAGE)
    return path.read_text().strip() or None


def server_url(given: str) -> str:
    """`given` as a base URL: https:// unless it says http://; CommandFailed if it is not one."""
    scheme, _, rest = given.strip().rpartition("://")
    url = f"{scheme or 'https'}://{rest.rstrip('/')}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandFailed(f"--server {given!r}: expected https://HOST[:PORT]", code=USAGE)
    try:
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise CommandFailed(f"--server {given!r}: bad port", code=USAGE) from None
    return url


def select(server: str | None, ca: str | None, command: str | None) -> ApiClient | None:
    """Choose the client of this command line: --server (or $IMAGESERVER_URL for a command that asks the
    daemon). --server with a command that works on this box is refused."""
    _SELECTED.set(None)
    explicit = server is not None
    server = server or os.environ.get("IMAGESERVER_URL") or None
    if server is None:
        return None
    if command not in REMOTE_COMMANDS:
        if not explicit:
            return None  # $IMAGESERVER_URL is for the commands that ask the daemon
        raise CommandFailed(
            f"imageserver {command} works on the appliance itself (its state directory), not through --server; "
            f"run it there. Commands that work remotely: {', '.join(sorted(REMOTE_COMMANDS))}", code=USAGE)
    ca_path = Path(ca or os.environ.get("IMAGESERVER_CA", "")) if (ca or os.environ.get("IMAGESERVER_CA")) else None
    if ca_path is not None and not ca_path.is_file():
        raise CommandFailed(f"--ca {ca_path}: no such file", code=USAGE)
    here = config_dir()
    token = env_token() or file_token(here / TOKEN_FILE)
    client = ApiClient(server_url(server), token, trust=Trust(known_servers=here / KNOWN_SERVERS, ca=ca_path),
                       remote=True)
    _SELECTED.set(client)
    return client


def selected() -> ApiClient | None:
    return _SELECTED.get()
