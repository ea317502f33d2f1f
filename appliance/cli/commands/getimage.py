"""`imageserver getimage`: pull a master client's system into a new image version."""

from __future__ import annotations

import argparse
import sys

from appliance.cli.commands._common import add_config_option, fail, load
from appliance.cli.exitcodes import exit_code
from appliance.images.autoinstall import AutoinstallError, script_settings, write_script
from appliance.images.catalog import Catalog, ImageError
from appliance.images.getimage import Options, Source, capture, default_progress
from protocols.names import InvalidName, image_name

DESCRIPTION = """\
Pull the whole system of a master client into image NAME: a new image, or the next version of an
existing one (unchanged files are hard links to the previous version). Run `prepareclient --server
<this imageserver's address>` on the master client first (GET /client/prepareclient serves it).

Virtual filesystems (proc, sysfs, tmpfs, devtmpfs, nfs, fuse, overlay ...), /tmp, /var/tmp, /run, swap
files and the master's per-machine state are left out; see the list printed at the end. The version is
registered only when rsync succeeded: an error, Ctrl-C or SIGTERM leaves nothing behind. Afterwards the
autoinstall script scripts/NAME.master is (re)written. Works offline against the state directory; a running daemon
serves the new version within seconds.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("getimage", help="pull a master client's system into a new image version",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    p.add_argument("--master-client", required=True, metavar="HOST", help="address or name of the master client")
    p.add_argument("--image", required=True, metavar="NAME", help="image name (letters, digits, '.', '_', '-')")
    p.add_argument("--ssh", action="store_true",
                   help="pull over ssh as root instead of from prepareclient's rsync daemon")
    p.add_argument("--port", type=int, default=873, help="the master client's rsync daemon port (default 873)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="also leave out PATTERN (rsync syntax, anchored with a leading /); repeatable")
    p.add_argument("--bwlimit", type=int, metavar="KIB_PER_S", help="limit the pull's bandwidth")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation on a terminal")
    p.add_argument("--no-script", action="store_true",
                   help="do not write the autoinstall script, and keep an image no script can be made for "
                        "(its hosts need a script of their own: hosts script NAME --edit)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    try:
        image_name(args.image)
    except InvalidName as e:
        return fail(str(e), 2)
    catalog = Catalog(cfg.state_dir)
    source = Source(host=args.master_client, port=args.port, ssh=args.ssh)
    if interactive and not args.yes:
        answer = input(f"Pull {source.describe()} into image {args.image} "
                       f"v{catalog.next_version(args.image)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return fail("cancelled", 1)
    opts = Options(name=args.image, source=source, excludes=tuple(args.exclude), bwlimit=args.bwlimit,
                   interactive=interactive, require_installable=not args.no_script)
    try:
        got = capture(catalog, opts, on_progress=default_progress() if interactive else None,
                      say=lambda s: print(s, file=sys.stderr))
    except (ImageError, InvalidName) as e:
        if interactive:
            sys.stderr.write("\n")
        return fail(f"getimage {args.image}: {e}", exit_code(e))
    finally:
        catalog.close()
    if interactive:
        sys.stderr.write("\n")
    iv, r = got.version, got.rsync
    moved = r.last.bytes if r.last else 0
    rate = moved / r.seconds / 1048576 if r.seconds > 0 else 0.0
    print(f"image {iv.name} v{iv.version}: {iv.files:,} entries, {iv.bytes:,} bytes, at {iv.path}")
    print(f"architecture {iv.arch or '- (not known)'}")
    print(f"pulled {moved:,} bytes in {r.seconds:.1f} s ({rate:.1f} MiB/s) from {iv.source}")
    # The per-machine paths are one list of the installer's (per-machine.paths): counted, not spelled out.
    per_machine = [e for e in got.excluded if e.reason == "per-machine state"]
    print("left out: " + ", ".join(f"{e.pattern} ({e.reason})" for e in got.excluded if e not in per_machine)
          + (f"; per-machine state: {len(per_machine)} path(s) of per-machine.paths (DHCP client identities, "
             "NetworkManager's secret key, random seeds, the journal ...)" if per_machine else ""))
    if iv.note:
        print(f"note: {iv.note}")
    if not args.no_script:
        catalog = Catalog(cfg.state_dir)
        try:
            path = write_script(catalog, iv, script_settings(cfg))
            print(f"autoinstall script: {path}")
        except AutoinstallError as e:
            print(f"imageserver: warning: no autoinstall script for {iv.name}: {e}", file=sys.stderr)
        finally:
            catalog.close()
    return 0
