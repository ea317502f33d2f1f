"""What a failed system or e2e test shows without a rerun: its labs' processes, consoles and logs.

A report names, for the labs given (lab/netns.py finds them by name: a Lab that exits on an exception
adds its own report to the exception, and the test session adds one for the labs still open when a test
fails): the processes left in their namespaces (state, command line), the tail of each VM's serial
console, of each daemon's log and of every other process log the lab kept. The text is capped, consoles
and daemons first.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# How much of each kind of file a report shows: a console's last screens say what the guest did last,
# a daemon's tail says what the server saw; other process logs are usually one-line tools.
SERIAL_LINES = 40
DAEMON_LINES = 60
OTHER_LINES = 15
MAX_CHARS = 24_000


@dataclass(frozen=True, slots=True)
class LabFiles:
    tmp_dirs: tuple[Path, ...]
    namespaces: tuple[str, ...]


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _is_daemon_log(path: Path) -> bool:
    # lab.popen names a log after argv[0]: the daemon runs as this interpreter (python3.11.log ...).
    return path.name.split("-", 1)[-1].startswith("python")


def _process_line(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"{pid:>7} (gone)"
    return f"{pid:>7} {stat[0]} {argv[:200]}"


def processes(namespace: str) -> list[str]:
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False).stdout
    return [_process_line(int(p)) for p in pids.split() if p.isdigit()]


def report(files: LabFiles, max_chars: int = MAX_CHARS) -> str:
    """The diagnostic text for `files` (empty when there is no open lab)."""
    parts: list[str] = []
    for ns in files.namespaces:
        listed = processes(ns)
        parts.append(f"--- processes in {ns}:\n" + ("\n".join(listed) if listed else "(none)"))
    logs = [p for d in files.tmp_dirs for p in d.iterdir() if p.is_file() and p.suffix in (".serial", ".log")]
    # Consoles first, then daemons, then the rest; within each kind the newest first.
    order = sorted(logs, key=lambda p: (p.suffix != ".serial", not _is_daemon_log(p), -p.stat().st_mtime))
    for path in order:
        lines = SERIAL_LINES if path.suffix == ".serial" else DAEMON_LINES if _is_daemon_log(path) else OTHER_LINES
        tail = _tail(path, lines)
        if tail.strip():
            parts.append(f"--- last {lines} lines of {path}:\n{tail}")
    text = "\n".join(parts)
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n... (cut at {max_chars} characters; the files stay until the lab closes)"
    return text
