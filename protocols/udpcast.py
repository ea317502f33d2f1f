"""Multicast installs with udpcast (udp-sender / udp-receiver): the command lines and the sender's log.

One session sends one image version to every installer that joined it, as a single stream on one L2
segment: `tar` of the version's tree (owners, modes, ACLs, xattrs, hard links, devices, symlinks, holes), encrypted
with a per-session key (`openssl enc -aes-256-ctr`), so a stranger on the segment who receives the packets
learns nothing of the image. The key reaches only installers that asked with their install token from their
own address. The sender hashes the ciphertext it sent; each receiver hashes what it received and compares
with the server's digest before it trusts the tree: a stranger injecting packets (or posing as a sender)
makes the comparison fail, and the installer's rsync pass then repairs every file by checksum.

Sans-IO: argv lists and a parser for udp-sender's stderr lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

CIPHER = "aes-256-ctr"
# GNU tar options that carry everything rsync -aHAXS would: numeric owners, ACLs, every xattr namespace, holes.
TAR_CREATE = ("--numeric-owner", "--acls", "--xattrs", "--xattrs-include=*", "--sparse", "--sort=name")
TAR_EXTRACT = ("--numeric-owner", "--acls", "--xattrs", "--xattrs-include=*", "--same-permissions",
               "--same-owner", "--delay-directory-restore")


@dataclass(frozen=True, slots=True)
class SenderPlan:
    """What one udp-sender session is told."""

    interface: str
    portbase: int  # even: udpcast uses portbase and portbase + 1
    min_receivers: int  # start as soon as this many joined (and min_wait passed)
    min_wait: float  # seconds after the first receiver before starting, even with min_receivers there
    max_wait: float  # the start window: start anyway this long after the first receiver joined
    start_timeout: float  # give up if no receiver at all joined within this
    retries_until_drop: int  # the slow-receiver policy: REQACKs unanswered before a receiver is dropped
    max_bitrate: str | None = None  # e.g. "600m"; None: as fast as the segment goes
    ttl: int = 1  # one L2 segment: never routed


def check_portbase(port: int) -> int:
    if port % 2 or not 1024 <= port <= 65534:
        raise ValueError(f"portbase {port} must be even and in 1024..65534 (udpcast uses it and the next port)")
    return port


def sender_argv(plan: SenderPlan) -> list[str]:
    """udp-sender reading the (encrypted) stream from stdin."""
    check_portbase(plan.portbase)
    argv = ["udp-sender", "--nokbd", "--no-progress", "--interface", plan.interface,
            "--portbase", str(plan.portbase), "--ttl", str(plan.ttl),
            "--min-receivers", str(max(1, plan.min_receivers)),
            "--min-wait", str(int(plan.min_wait)), "--max-wait", str(max(1, int(plan.max_wait))),
            "--start-timeout", str(max(1, int(plan.start_timeout))),
            "--retries-until-drop", str(max(1, plan.retries_until_drop))]
    if plan.max_bitrate:
        argv += ["--max-bitrate", plan.max_bitrate]
    return argv


def tar_create_argv(tree: str, excludes: Sequence[str] = ()) -> list[str]:
    """GNU tar writing the version's tree to stdout (relative names: ./etc/passwd)."""
    return ["tar", "-C", tree, *TAR_CREATE, *[f"--exclude=.{e.rstrip('/')}" for e in excludes], "-cf", "-", "."]


def encrypt_argv(key_file: str) -> list[str]:
    return ["openssl", "enc", f"-{CIPHER}", "-pbkdf2", "-pass", f"file:{key_file}"]


def decrypt_argv(key_file: str) -> list[str]:
    return ["openssl", "enc", "-d", f"-{CIPHER}", "-pbkdf2", "-pass", f"file:{key_file}"]


# udp-sender's stderr, one event per line (udpcast 20120424):
#   "New connection from 10.0.0.7  (#0) 00000019"
#   "Starting transfer: 00000019"
#   "Dropping client #1 because of timeout"
#   "Transfer complete."
_CONNECTED = re.compile(r"New connection from (\d{1,3}(?:\.\d{1,3}){3})\s+\(#(\d+)\)")
_DROPPED = re.compile(r"Dropping client #(\d+)")
_STARTED = re.compile(r"Starting transfer")
_COMPLETE = re.compile(r"Transfer complete")
_DISCONNECTED = re.compile(r"Disconnecting #(\d+) \((\d{1,3}(?:\.\d{1,3}){3})\)")


@dataclass(frozen=True, slots=True)
class SenderEvent:
    kind: str  # "connected" | "started" | "dropped" | "complete" | "disconnected"
    client: int | None = None
    address: str | None = None


def parse_sender_line(line: str) -> SenderEvent | None:
    """What one line of udp-sender's stderr says, if it says something the session tracks."""
    if m := _CONNECTED.search(line):
        return SenderEvent("connected", int(m.group(2)), m.group(1))
    if m := _DROPPED.search(line):
        return SenderEvent("dropped", int(m.group(1)))
    if m := _DISCONNECTED.search(line):
        return SenderEvent("disconnected", int(m.group(1)), m.group(2))
    if _STARTED.search(line):
        return SenderEvent("started")
    if _COMPLETE.search(line):
        return SenderEvent("complete")
    return None
