"""getimage: pull a master client's whole system into a new image version.

1. Read what prepareclient saved on the master (/etc/systemimager: disk layout, mountinfo, swaps)
   over the same transport; no saved layout means prepareclient was not run there.
2. Build the exclude list from it (appliance.images.mounts: virtual filesystems, runtime dirs,
   swap files, --exclude patterns).
3. Pull with `rsync -aHAXS --numeric-ids --devices --specials` (hard links, ACLs, xattrs, sparse files,
   device nodes and FIFOs, owners by number) into images/.staging/NAME.<pid>, with --link-dest to the
   image's newest version so unchanged files share inodes with it.
4. Only if rsync succeeded (exit 0, or 24: files vanished on the live master while it was read),
   register it: manifest, then rename to images/NAME/vN and insert the row in one transaction.

Any failure, SIGINT, SIGTERM or SIGHUP, or rsync being killed removes the staging tree and leaves no
row; the error says why. Runs offline against the store (see catalog.py for why that is safe with a
running daemon).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from appliance.images.arch import reported_arch
from appliance.images.autoinstall import AutoinstallError, installable_plan
from appliance.images.catalog import Catalog, ImageError, remove_tree
from appliance.images.layout import Layout, LayoutError, read_layout
from appliance.images.mounts import Exclude, exclusions
from appliance.images.progress import LineSplitter, Progress, parse_progress
from protocols.names import image_name
from state.images import ImageVersion

RSYNC_FLAGS = ("-aHAXS", "--numeric-ids", "--devices", "--specials")
VANISHED = 24  # rsync: "some files vanished before they could be transferred" (a live system)


class GetImageError(ImageError):
    """getimage failed; nothing was registered and the staging tree is gone."""


@dataclass(frozen=True, slots=True)
class Source:
    host: str
    port: int = 873
    ssh: bool = False
    module: str = "root"
    user: str = "root"

    def url(self, path: str = "/") -> str:
        path = "/" + path.lstrip("/")
        if self.ssh:
            return f"{self.user}@{self.host}:{path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"rsync://{host}:{self.port}/{self.module}{path}"

    def describe(self) -> str:
        return f"ssh://{self.user}@{self.host}" if self.ssh else f"rsync://{self.host}:{self.port}/{self.module}"

    def transport_args(self, interactive: bool) -> list[str]:
        if not self.ssh:
            return ["--contimeout=20"]
        # Without a terminal nobody can type a password: fail at once instead of hanging.
        return ["-e", "ssh" if interactive else "ssh -o BatchMode=yes"]


@dataclass(slots=True)
class Interrupt:
    """Signals received while rsync runs: remembered, and rsync is told to stop."""

    signum: int | None = None
    child: subprocess.Popen[bytes] | None = None

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.child.pid, signal.SIGTERM)


@contextlib.contextmanager
def catching_signals(state: Interrupt) -> Iterator[Interrupt]:
    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, state.handler) for s in signums}
    try:
        yield state
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclass(slots=True)
class RsyncResult:
    code: int
    errors: list[str] = field(default_factory=list)
    last: Progress | None = None
    seconds: float = 0.0

    def reason(self) -> str:
        if self.code < 0:
            try:
                what = f"killed by signal {signal.Signals(-self.code).name}"
            except ValueError:
                what = f"killed by signal {-self.code}"
        else:
            what = f"exit code {self.code}"
        detail = "; ".join(self.errors[-3:])
        return what + (f": {detail}" if detail else "")


def run_rsync(argv: Sequence[str], interrupt: Interrupt, on_progress: Callable[[Progress], None] | None = None,
              monotonic: Callable[[], float] = time.monotonic) -> RsyncResult:
    """Run rsync, feeding progress2 lines to `on_progress`; stderr lines are kept for the error message."""
    started = monotonic()
    # Its own process group: a terminal's Ctrl-C reaches us, and we decide to stop rsync (and its children).
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    interrupt.child = proc
    if interrupt.signum is not None:
        interrupt.handler(interrupt.signum, None)
    result = RsyncResult(code=0)
    splitter = LineSplitter()
    assert proc.stdout is not None and proc.stderr is not None
    errors = bytearray()
    # Both pipes through one selector: rsync blocked on a full stderr pipe must never wait for us.
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        try:
            while sel.get_map():
                if proc.poll() is not None:
                    # rsync itself is gone (killed?): its forked receiver may still hold the pipes and keep
                    # writing into staging. Nothing of that transfer is wanted any more.
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                for key, _ in sel.select(timeout=0.5):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                    elif key.data == "err":
                        errors += chunk
                        del errors[:-65536]
                    else:
                        for line in splitter.feed(chunk):
                            p = parse_progress(line)
                            if p is not None:
                                result.last = p
                                if on_progress is not None:
                                    on_progress(p)
            result.code = proc.wait()
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            interrupt.child = None
            proc.stdout.close()
            proc.stderr.close()
    result.errors = [line for line in errors.decode(errors="replace").splitlines() if line.strip()]
    result.seconds = monotonic() - started
    return result


@dataclass(frozen=True, slots=True)
class Options:
    name: str
    source: Source
    excludes: tuple[str, ...] = ()
    bwlimit: int | None = None  # KiB/s, to spare a production master
    rsync: str = "rsync"
    interactive: bool = False  # a terminal: show progress, allow ssh password prompts
    # Refuse a tree no autoinstall script can be made for (no partitions, fstab matching none): it could be
    # assigned to hosts that would then fail at install time. Off only for an image with its own script.
    require_installable: bool = True


@dataclass(frozen=True, slots=True)
class Captured:
    version: ImageVersion
    layout: Layout
    excluded: tuple[Exclude, ...]
    rsync: RsyncResult


def fetch_layout(opts: Options, dest: Path, interrupt: Interrupt) -> Layout:
    """Copy the master's /etc/systemimager (small) and read the layout prepareclient left there."""
    argv = [opts.rsync, "-rt", "--timeout=60", *opts.source.transport_args(opts.interactive),
            opts.source.url("/etc/systemimager/"), f"{dest}/"]
    result = run_rsync(argv, interrupt)
    if interrupt.signum is not None:
        raise GetImageError(f"interrupted by {signal.Signals(interrupt.signum).name}; nothing was registered")
    if result.code != 0:
        raise GetImageError(f"cannot read /etc/systemimager from {opts.source.describe()} ({result.reason()}). "
                            "Run `prepareclient --server <this imageserver's address>` on the master client "
                            "first" + ("" if not opts.source.ssh else " (with --ssh: `prepareclient --ssh`)"))
    try:
        return read_layout(dest)
    except LayoutError as e:
        raise GetImageError(f"the master client's saved layout is unusable: {e}") from None


def pull_argv(opts: Options, staging: Path, exclude_file: Path, link_dest: Path | None) -> list[str]:
    argv = [opts.rsync, *RSYNC_FLAGS, "--info=progress2", "--timeout=600", f"--exclude-from={exclude_file}",
            *opts.source.transport_args(opts.interactive)]
    if link_dest is not None:
        argv.append(f"--link-dest={link_dest}")
    if opts.bwlimit:
        argv.append(f"--bwlimit={opts.bwlimit}")
    argv += [opts.source.url("/"), f"{staging}/"]
    return argv


def capture(catalog: Catalog, opts: Options, on_progress: Callable[[Progress], None] | None = None,
            say: Callable[[str], None] = lambda s: None) -> Captured:
    """Pull and register a new version of `opts.name`; raises GetImageError (nothing left behind) on failure,
    InvalidName for a name that cannot be an image's."""
    image_name(opts.name)
    if os.geteuid() != 0:
        raise GetImageError("getimage must run as root: an image keeps every file's owner, device nodes and "
                            "attributes")
    interrupt = Interrupt()
    with catching_signals(interrupt), catalog.lock(opts.name):
        for stale in catalog.clean_stale_staging():
            say(f"removed stale staging {stale}")
        staging = catalog.new_staging(opts.name)
        meta = staging.with_name(staging.name + ".meta")
        exclude_file = staging.with_name(staging.name + ".excludes")
        try:
            remove_tree(meta)
            meta.mkdir()
            layout = fetch_layout(opts, meta, interrupt)
            excluded = tuple(exclusions(layout.mounts, layout.swaps, opts.excludes))
            # Patterns are bytes on the wire: write them as the filesystem encoding would.
            exclude_file.write_bytes(b"".join(os.fsencode(e.pattern) + b"\n" for e in excluded))
            previous = catalog.newest(opts.name)
            link_dest = Path(previous.path) if previous is not None and Path(previous.path).is_dir() else None
            say(f"pulling {opts.source.describe()} into image {opts.name} v{catalog.next_version(opts.name)}"
                + (f" (unchanged files linked to v{previous.version})" if link_dest and previous else ""))
            result = run_rsync(pull_argv(opts, staging, exclude_file, link_dest), interrupt, on_progress)
            if interrupt.signum is not None:
                raise GetImageError(f"interrupted by {signal.Signals(interrupt.signum).name} after "
                                    f"{result.seconds:.1f} s; nothing was registered")
            if result.code not in (0, VANISHED):
                raise GetImageError(f"rsync from {opts.source.describe()} failed ({result.reason()}); "
                                    "nothing was registered")
            if opts.require_installable:
                try:
                    installable_plan(layout, staging, f"image {opts.name}")
                except AutoinstallError as e:
                    raise GetImageError(f"{e}; no machine could be installed from it, so nothing was registered "
                                        "(fix the master client and run getimage again, or give --no-script to "
                                        "keep it with a script of your own)") from None
            note = None
            if result.code == VANISHED:
                note = "rsync: some files vanished on the master client while it was read"
                say(f"warning: {note}")
            iv = catalog.register(opts.name, staging, source=opts.source.describe(), layout_json=layout.to_json(),
                                  note=note, previous=previous, arch=reported_arch(meta))
            if iv.arch is None:
                say("warning: the image's architecture is not known (no ELF binary at /bin/sh or /usr/bin/env, "
                    "and prepareclient reported no `uname -m`): hosts are not checked against it")
            return Captured(version=iv, layout=layout, excluded=excluded, rsync=result)
        finally:
            for path in (staging, meta, exclude_file, staging.with_name(staging.name + ".manifest.gz")):
                remove_tree(path)


def default_progress(stream: TextIO = sys.stderr) -> Callable[[Progress], None]:
    """A one-line progress display, redrawn at most 5 times a second."""
    last = [0.0]

    def show(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.2 or p.percent == 100:
            last[0] = now
            stream.write("\r\033[K" + p.render())
            stream.flush()

    return show
