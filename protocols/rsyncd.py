"""rsyncd.conf rendering and rsync daemon log parsing, sans-IO.

The imageserver's rsync daemon exports one read-only module per image version (`NAME_vN`) plus
`NAME` for the newest version, so an installer can pin a version or follow the newest. The config is
re-read by rsync on every connection, which is why a rewritten file takes effect without a restart.

The daemon's log goes to its stdout (``log file = /dev/stdout`` in the global section: rsync opens it
before the chroot; a command-line ``--log-file`` is closed in the child before the transfer and loses
the per-transfer lines). `TransferLog` turns those lines into one event per client transfer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Characters that would let a value break out of its line in rsyncd.conf.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
MODULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RsyncdConfigError(ValueError):
    """A module cannot be written into rsyncd.conf safely (bad name or path)."""


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: str
    comment: str = ""
    image: str = ""  # the image and version it serves (None: the newest alias), for per-client access
    version: int | None = None


@dataclass(frozen=True, slots=True)
class Access:
    """Who may read one module: rsync users (their passwords are in the secrets file) from these addresses."""

    users: tuple[str, ...]
    addresses: tuple[str, ...]


def modules_for(versions: Iterable[tuple[str, int, str]]) -> list[Module]:
    """Modules for (image name, version, tree path) triples: `NAME_vN` each, `NAME` = the newest."""
    newest: dict[str, tuple[int, str]] = {}
    out: list[Module] = []
    for name, version, path in sorted(versions):
        out.append(Module(f"{name}_v{version}", path, f"{name} version {version}", name, version))
        if name not in newest or version > newest[name][0]:
            newest[name] = (version, path)
    for name, (version, path) in sorted(newest.items()):
        out.append(Module(name, path, f"{name} newest (v{version})", name, version))
    return sorted(out, key=lambda m: m.name)


def _check(module: Module) -> None:
    if not MODULE_NAME.match(module.name):
        raise RsyncdConfigError(f"module name {module.name!r} is not allowed in rsyncd.conf")
    if _UNSAFE.search(module.path) or not module.path.startswith("/") or module.path != module.path.strip():
        raise RsyncdConfigError(f"module {module.name}: path {module.path!r} cannot be written into rsyncd.conf")
    if _UNSAFE.search(module.comment):
        raise RsyncdConfigError(f"module {module.name}: comment has control characters")


_USER = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PASSWORD = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


def render_secrets(credentials: Mapping[str, str]) -> str:
    """The `secrets file`: user:password lines (users are host names, passwords derived tokens)."""
    lines = []
    for user, password in sorted(credentials.items()):
        if not _USER.match(user) or not _PASSWORD.match(password):
            raise RsyncdConfigError(f"rsync user {user!r} or its password cannot be written into the secrets file")
        lines.append(f"{user}:{password}")
    return "".join(f"{line}\n" for line in lines)


def render_config(modules: Sequence[Module], hosts_allow: Sequence[str], *, log_file: str = "/dev/stdout",
                  timeout: int = 600, access: Mapping[str, Access] | None = None,
                  secrets_file: str | None = None, max_connections: int = 0,
                  lock_file: str | None = None) -> str:
    """The whole rsyncd.conf. Raises RsyncdConfigError for a module that cannot be written safely.

    `max_connections` (0: no limit) caps transfers across the whole daemon: every module inherits it
    from the global section and they all count their slots in the one `lock_file`, so N running
    transfers of any mix of modules fill it. A client over the cap is refused with
    "@ERROR: max connections (N) reached -- try again later" (rsync exit code 5) and retries.

    With `access` (module name -> Access), every module needs rsync auth (`auth users`, `secrets_file`)
    and answers only the addresses named; a module nobody may read is left out. Without it (a bare
    supervisor, e.g. in tests) the modules are open to `hosts_allow`.
    """
    for m in modules:
        _check(m)
    if access is not None:
        if not secrets_file or _UNSAFE.search(secrets_file) or not secrets_file.startswith("/"):
            raise RsyncdConfigError(f"secrets file {secrets_file!r} must be an absolute path")
        for name, a in access.items():
            for item in (*a.users, *a.addresses):
                if not item or _UNSAFE.search(item) or " " in item or "," in item:
                    raise RsyncdConfigError(f"module {name}: access entry {item!r} cannot be written")
        modules = [m for m in modules if m.name in access and access[m.name].users and access[m.name].addresses]
    for h in hosts_allow:
        if _UNSAFE.search(h) or " " in h or not h:
            raise RsyncdConfigError(f"hosts allow entry {h!r} is not an address or network")
    if max_connections < 0:
        raise RsyncdConfigError(f"max connections {max_connections} must be 0 (no limit) or more")
    if max_connections and (not lock_file or _UNSAFE.search(lock_file) or not lock_file.startswith("/")):
        raise RsyncdConfigError(f"lock file {lock_file!r} must be an absolute path")
    allow = " ".join(hosts_allow)
    lines = [
        "# Written by the imageserver from its image catalog; changes here are overwritten.",
        "# rsync re-reads this file for every connection: a new image version is served at once.",
        f"log file = {log_file}",
        "reverse lookup = no",
        "use chroot = yes",
        # Images are numeric-id trees owned by many uids; root reads them all.
        "uid = 0",
        "gid = 0",
        "numeric ids = yes",
        "munge symlinks = no",
        "read only = yes",
        "write only = no",
        # Nobody gets the module list: a machine on the LAN must not learn which images exist.
        "list = no",
        f"timeout = {timeout}",
        f"hosts allow = {allow}" if allow else "# hosts allow: (nobody configured: deny all)",
        "hosts deny = *",
    ]
    if max_connections:
        lines += [f"max connections = {max_connections}", f"lock file = {lock_file}"]
    lines.append("")
    for m in modules:
        lines += [f"[{m.name}]", f"    path = {m.path}"]
        if m.comment:
            lines.append(f"    comment = {m.comment}")
        if access is not None:
            a = access[m.name]
            lines += [f"    auth users = {', '.join(a.users)}", f"    secrets file = {secrets_file}",
                      "    strict modes = yes", f"    hosts allow = {' '.join(a.addresses)}"]
        lines.append("")
    return "\n".join(lines)


# --- the daemon's log ------------------------------------------------------------------------------

# "2026/11/25 18:25:53 [16329] rsync on img_v1/ from UNDETERMINED (127.0.0.1)"
_LINE = re.compile(r"^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?\[(?P<pid>\d+)\] (?P<msg>.*)$")
_CONNECT = re.compile(r"^connect from (?P<host>\S+) \((?P<addr>[^)]*)\)$")
_ON = re.compile(r"^rsync (?:on|to) (?P<module>[^/\s]+)(?P<path>/\S*)? from (?P<host>\S+) \((?P<addr>[^)]*)\)$")
_DENIED = re.compile(r"^rsync denied on module (?P<module>\S+) from (?P<host>\S+) \((?P<addr>[^)]*)\)$")
# "auth failed on module img_v1 from UNDETERMINED (10.0.0.5) for node1: password mismatch" (authenticate.c)
_AUTH_FAILED = re.compile(r"^auth failed on module (?P<module>\S+) from (?P<host>\S+) \((?P<addr>[^)]*)\)"
                          r"(?: for (?P<user>[^:\s]*))?(?::\s*(?P<reason>.*))?$")
_UNKNOWN = re.compile(r"^unknown module '(?P<module>[^']*)' tried from (?P<host>\S+) \((?P<addr>[^)]*)\)$")
_SENT = re.compile(r"^sent (?P<sent>[\d,.]+) bytes\s+received (?P<received>[\d,.]+) bytes\s+total size "
                   r"(?P<total>[\d,.]+)")
_START = re.compile(r"^rsyncd version (?P<version>\S+) starting, listening on port (?P<port>\d+)")
_BUSY = re.compile(r"^max connections \((?P<limit>\d+)\) reached")
_ERROR = re.compile(r"^(?:rsync error: |rsync: |@ERROR)(?P<error>.*)$")


def _num(s: str) -> int:
    return int(s.replace(",", "").replace(".", ""))


@dataclass(slots=True)
class _Session:
    addr: str
    started: float
    module: str | None = None
    path: str = ""
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class TransferLog:
    """Folds the daemon's log lines into events, keyed by the per-connection child pid.

    `feed(line, now)` returns zero or more events, each a dict with an "event" key:
    "listening", "transfer" (module, client, bytes sent, seconds, errors), "denied", "unknown-module",
    "auth-failed" (a wrong user or password for a module the client's address may read),
    "busy" (a client refused because `max connections` transfers were running; it waits and retries).
    """

    sessions: dict[int, _Session] = field(default_factory=dict)

    def feed(self, line: str, now: float) -> list[dict[str, object]]:
        m = _LINE.match(line.rstrip("\r\n"))
        if not m:
            return []
        pid, msg = int(m["pid"]), m["msg"]
        if (s := _START.match(msg)) is not None:
            return [{"event": "listening", "version": s["version"], "port": int(s["port"])}]
        if (s := _CONNECT.match(msg)) is not None:
            self.sessions[pid] = _Session(addr=s["addr"], started=now)
            return []
        session = self.sessions.get(pid)
        if (s := _ON.match(msg)) is not None:
            if session is None:
                session = self.sessions[pid] = _Session(addr=s["addr"], started=now)
            session.module, session.path = s["module"], s["path"] or "/"
            return []
        if (s := _DENIED.match(msg)) is not None:
            self.sessions.pop(pid, None)
            return [{"event": "denied", "module": s["module"], "client": s["addr"]}]
        if (s := _AUTH_FAILED.match(msg)) is not None:
            self.sessions.pop(pid, None)
            return [{"event": "auth-failed", "module": s["module"], "client": s["addr"], "user": s["user"] or "",
                     "reason": (s["reason"] or "").strip()}]
        if (s := _UNKNOWN.match(msg)) is not None:
            self.sessions.pop(pid, None)
            return [{"event": "unknown-module", "module": s["module"], "client": s["addr"]}]
        if (s := _BUSY.match(msg)) is not None:
            gone = self.sessions.pop(pid, None)
            return [{"event": "busy", "limit": int(s["limit"]), "client": gone.addr if gone else ""}]
        if (s := _SENT.match(msg)) is not None:
            if session is None or session.module is None:
                # A module listing, or the daemon's own exit summary: not a transfer.
                self.sessions.pop(pid, None)
                return []
            del self.sessions[pid]
            return [{
                "event": "transfer", "module": session.module, "path": session.path, "client": session.addr,
                "sent": _num(s["sent"]), "received": _num(s["received"]), "total": _num(s["total"]),
                "seconds": round(max(0.0, now - session.started), 3),
                "errors": len(session.errors), "error": session.errors[-1] if session.errors else None,
            }]
        if (s := _ERROR.match(msg)) is not None and session is not None:
            session.errors.append(s["error"].strip())
        return []

    def active(self) -> int:
        """Transfers running now: sessions past the connection cap (they named their module) and not ended."""
        return sum(1 for s in self.sessions.values() if s.module is not None)

    def forget_older_than(self, cutoff: float) -> None:
        """Drop sessions that never logged an end (killed children), so the table stays small."""
        for pid in [p for p, s in self.sessions.items() if s.started < cutoff]:
            del self.sessions[pid]
