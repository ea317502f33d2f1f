"""`imageserver images list|show|rm|diff|clone|commit|verify`: the image catalog."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from appliance.cli.commands import _rootdevice
from appliance.cli.commands._common import add_config_option, add_json_option, fail, load, print_json, print_table
from appliance.cli.exitcodes import exit_code
from appliance.cli.sizes import human_size
from appliance.images.autoinstall import AutoinstallError, script_settings, write_script
from appliance.images.catalog import Catalog, ImageError, parse_version
from appliance.images.layout import Layout
from appliance.images.manifest import ManifestError, display
from appliance.images.versions import commit, diff, verify
from domain import images
from protocols.names import InvalidName
from state.transports import DEFAULT, TRANSPORTS, image_transport, set_image_transport_op

DESCRIPTION = """\
Images live in <state_dir>/images/NAME/vN; a version never changes after it is registered
(`images verify` checks it against the manifest written at registration).

  list                       every version: size, entries, created, source
  show NAME [vN]             one version (default: newest) with the master's partition layout
  diff NAME vA vB            paths added, removed or changed from vA to vB
  rm NAME vN | --all         remove a version (refused while a host is assigned to it, unless --force)
  clone NAME vN NEWNAME      writable copy at images/.work/NEWNAME to chroot into and edit
  commit NEWNAME             register the edited copy as NEWNAME's next version (v1 for a new name)
  verify NAME vN             compare the tree with its manifest (content, modes, owners, xattrs)
  verify NAME vN --tree DIR  compare another tree, e.g. an installed machine's disk mounted at DIR, with
                             the version's manifest; --ignore PATH (repeatable; "etc/network/" = all under
                             it) leaves out what the install wrote for the machine itself (lost+found/ is
                             always left out with --tree: mkfs makes it)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("images", help="list, show, compare, remove, clone and commit image versions",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")

    v = verbs.add_parser("list", help="every image version")
    add_config_option(v)
    add_json_option(v)
    v.set_defaults(func=run_list)

    v = verbs.add_parser("show", help="one version and its partition layout")
    add_config_option(v)
    add_json_option(v)
    v.add_argument("name")
    v.add_argument("version", nargs="?")
    v.set_defaults(func=run_show)

    v = verbs.add_parser("diff", help="what changed between two versions")
    add_config_option(v)
    add_json_option(v)
    v.add_argument("name")
    v.add_argument("a", metavar="vA")
    v.add_argument("b", metavar="vB")
    v.set_defaults(func=run_diff)

    v = verbs.add_parser("rm", help="remove a version (or --all)")
    add_config_option(v)
    v.add_argument("name")
    v.add_argument("version", nargs="?")
    v.add_argument("--all", action="store_true", help="every version of the image")
    v.add_argument("--force", action="store_true", help="even if hosts are assigned to it")
    v.set_defaults(func=run_rm)

    v = verbs.add_parser("clone", help="a writable copy of a version, to edit (then: images commit)")
    add_config_option(v)
    v.add_argument("name")
    v.add_argument("version")
    v.add_argument("new_name", metavar="NEWNAME")
    v.set_defaults(func=run_clone)

    v = verbs.add_parser("commit", help="register an edited clone as a new version")
    add_config_option(v)
    v.add_argument("new_name", metavar="NEWNAME")
    v.add_argument("--no-script", action="store_true", help="do not write the autoinstall script")
    v.set_defaults(func=run_commit)

    v = verbs.add_parser("transport", help="the image's default install transport (hosts may override it)",
                         description="Show or set how installers of this image fetch it by default: rsync "
                                     "(unicast, the default) or bittorrent (a swarm of the machines installing "
                                     "it at once; falls back to rsync) or multicast (one udpcast stream, with "
                                     "[multicast] enabled; falls back to rsync). '' goes back to rsync. A host's own "
                                     "choice (hosts set --transport) wins.")
    v.add_argument("name", metavar="NAME")
    v.add_argument("transport", nargs="?", choices=(*TRANSPORTS, ""), metavar="TRANSPORT",
                   help="rsync, bittorrent, multicast, or '' (omit to show)")
    add_config_option(v)
    v.set_defaults(func=run_transport)

    v = verbs.add_parser("root-device", help="the disks installs of this image go to (hosts and profiles may "
                                             "override it)",
                         description="Show or set the root-device hints of every host of this image: "
                                     + _rootdevice.HELP + ". A host's own hints (hosts set --root-device) win, "
                                     "then its profile's (profiles set --root-device). A RAID1 image made from "
                                     "two disks: 'serial=A;serial=B' puts its members on those two, whatever "
                                     "order the kernel finds them in. No disk matching fails the install, naming "
                                     "the disks it found.")
    v.add_argument("name", metavar="NAME")
    v.add_argument("hints", nargs="?", metavar="HINTS", help="omit to show; '' clears")
    add_config_option(v)
    v.set_defaults(func=run_root_device)

    v = verbs.add_parser("verify", help="check a version against its manifest")
    add_config_option(v)
    add_json_option(v)
    v.add_argument("name")
    v.add_argument("version")
    v.add_argument("--tree", metavar="DIR", help="compare this tree (e.g. a mounted installed disk) instead of "
                                                 "the version's own")
    v.add_argument("--ignore", metavar="PATH", action="append", default=[],
                   help="a path relative to the tree to leave out (trailing / : everything under it); repeatable")
    v.set_defaults(func=run_verify)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_transport(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    try:
        if catalog.newest(args.name) is None:
            return fail(f"no image named {args.name!r}", 1)
        if args.transport is not None:
            with catalog.conn:
                set_image_transport_op(args.name, args.transport or None)(catalog.conn)
        print(f"{args.name}: {image_transport(catalog.conn, args.name) or DEFAULT}")
    finally:
        catalog.close()
    return 0


def run_root_device(args: argparse.Namespace) -> int:
    cfg = load(args)
    if args.hints is None:
        view = _rootdevice.show(cfg, "image", args.name)
    else:
        view = _rootdevice.apply(cfg, "image", args.name, args.hints)
    print(f"{args.name}: {_rootdevice.describe(view)}")
    return 0


def _catalog(args: argparse.Namespace) -> Any:
    return Catalog(load(args).state_dir)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _row(iv: Any) -> dict[str, Any]:
    return {"name": iv.name, "version": iv.version, "created": iv.created, "source": iv.source,
            "files": iv.files, "bytes": iv.bytes, "path": iv.path, "note": iv.note, "arch": iv.arch}


def run_list(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    try:
        rows = [_row(iv) for iv in images.catalog(catalog.conn).images]  # what GET /api/v1/images lists
    finally:
        catalog.close()
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no images yet (imageserver getimage --master-client HOST --image NAME)")
        return 0
    print_table(rows, ["name", "version", "arch", "bytes", "files", "created", "source"],
                headers=["NAME", "VERSION", "ARCH", "SIZE", "ENTRIES", "CREATED", "SOURCE"],
                formatters={"version": lambda v: f"v{v}", "arch": lambda a: a or "-", "bytes": human_size,
                            "created": _when, "files": lambda n: "-" if n is None else f"{n:,}"})
    return 0


def run_show(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    try:
        iv = catalog.get(args.name, parse_version(args.version) if args.version else None)
        users = catalog.hosts_using(iv.name, iv.version)
        script = catalog.paths.script(iv.name)
    except ImageError as e:
        return fail(str(e), exit_code(e))
    finally:
        catalog.close()
    layout = Layout.from_json(iv.layout) if iv.layout else None
    if args.json:
        print_json({**_row(iv), "hosts": users, "layout": json.loads(iv.layout) if iv.layout else None,
                    "script": str(script) if script.exists() else None})
        return 0
    print(f"image     {iv.name} v{iv.version}")
    print(f"path      {iv.path}")
    print(f"arch      {iv.arch or '- (not known)'}")
    print(f"created   {_when(iv.created)}   source {iv.source or '-'}")
    print(f"size      {human_size(iv.bytes)} in {iv.files or 0:,} entries")
    print(f"hosts     {', '.join(users) or '-'}")
    print(f"script    {script if script.exists() else '- (imageserver mkautoinstallscript --image ' + iv.name + ')'}")
    if iv.note:
        print(f"note      {iv.note}")
    if layout is None:
        print("layout    - (not recorded)")
        return 0
    print(f"layout    firmware {layout.firmware}, {len(layout.disks)} disk(s)")
    for d in layout.disks:
        print(f"  disk {d.name}: {human_size(d.size)}, {d.label or 'no partition table'}")
        rows = [{"n": p.number, "start": p.start, "size": p.size * d.sector_size, "type": p.type,
                 "fs": p.fstype, "label": p.label or p.name} for p in d.partitions]
        if rows:
            print_table(rows, ["n", "start", "size", "type", "fs", "label"],
                        headers=["    #", "START", "SIZE", "TYPE", "FS", "LABEL"],
                        formatters={"size": human_size, "n": lambda n: f"    {n}"})
    return 0


def run_diff(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    try:
        changes = diff(catalog, args.name, parse_version(args.a), parse_version(args.b))
    except (ImageError, ManifestError) as e:
        return fail(str(e), exit_code(e))
    finally:
        catalog.close()
    if args.json:
        print_json([{"path": display(c.path), "change": c.change, "what": list(c.what)} for c in changes])
        return 0
    marks = {"added": "+", "removed": "-", "changed": "M"}
    for c in changes:
        detail = f"  ({', '.join(c.what)})" if c.what else ""
        print(f"{marks[c.change]} /{display(c.path)}{detail}")
    print(f"{len(changes)} change(s) from {args.name} {args.a} to {args.b}", file=sys.stderr)
    return 0


def run_rm(args: argparse.Namespace) -> int:
    if bool(args.version) == bool(args.all):
        return fail("give a version (images rm NAME vN) or --all", 2)
    catalog = _catalog(args)
    try:
        version = None if args.all else parse_version(args.version)
        for n in images.versions_to_remove(catalog, args.name, version, force=args.force):  # refusals: exit 3/4
            iv = catalog.remove(args.name, n)
            print(f"removed {iv.name} v{iv.version} ({human_size(iv.bytes)})")
    except ImageError as e:
        return fail(str(e), exit_code(e))
    finally:
        catalog.close()
    return 0


def run_clone(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    try:
        work = catalog.clone(args.name, parse_version(args.version), args.new_name)
    except (ImageError, InvalidName) as e:
        return fail(str(e), exit_code(e))
    finally:
        catalog.close()
    print(f"writable copy of {args.name} {args.version} at {work}")
    print(f"edit it (e.g. chroot {work}), then: imageserver images commit {args.new_name}")
    return 0


def run_commit(args: argparse.Namespace) -> int:
    cfg = load(args)
    catalog = Catalog(cfg.state_dir)
    try:
        iv = commit(catalog, args.new_name)
        print(f"image {iv.name} v{iv.version}: {iv.files:,} entries, {human_size(iv.bytes)} (from {iv.source})")
        if not args.no_script:
            try:
                print(f"autoinstall script: {write_script(catalog, iv, script_settings(cfg))}")
            except AutoinstallError as e:
                print(f"imageserver: warning: no autoinstall script for {iv.name}: {e}", file=sys.stderr)
    except (ImageError, InvalidName) as e:
        return fail(str(e), exit_code(e))
    finally:
        catalog.close()
    return 0


def run_verify(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    tree = Path(args.tree) if args.tree else None
    ignore = [p.lstrip("/") for p in args.ignore] + (["lost+found/"] if tree is not None else [])
    try:
        changes = verify(catalog, args.name, parse_version(args.version), tree, ignore)
    except (ImageError, ManifestError) as e:
        return fail(str(e), exit_code(e))
    finally:
        catalog.close()
    if args.json:
        print_json([{"path": display(c.path), "change": c.change, "what": list(c.what)} for c in changes])
    else:
        for c in changes:
            print(f"{c.change} /{display(c.path)}" + (f" ({', '.join(c.what)})" if c.what else ""))
        what = f"{args.tree} against {args.name} {args.version}" if tree is not None else f"{args.name} {args.version}"
        print(f"{what}: " + ("intact" if not changes else f"{len(changes)} difference(s)"), file=sys.stderr)
    return 0 if not changes else 1
