"""`imageserver mkbootmedia`: an ISO or a USB disk image that boots the installer without PXE.

SystemImager's makeautoinstallcd / makeautoinstalldiskette: the same installer the network serves,
plus an optional local.cfg (VARIABLE=value) that the installer prefers over DHCP.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.boot import bootmedia
from appliance.boot.installer import INSTALLER_DIR
from appliance.cli.commands._common import add_config_option, add_json_option, fail, load, print_json
from appliance.config import BootConfig, Config, ConfigError
from state.db import connect, db_path
from state.hosts import fixed_address


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mkbootmedia",
        help="make an ISO or a USB disk image that boots the installer (machines that cannot PXE boot)",
        description="Put the installer kernel + initrd (<state_dir>/boot/installer/, from `imageserver mkbootenv`) "
                    "and an optional local.cfg on boot media: --iso FILE (isolinux for BIOS, GRUB for UEFI; hybrid, "
                    "so it can also be written to a stick) and/or --usb FILE (a disk image: dd if=FILE of=/dev/sdX). "
                    "local.cfg holds VARIABLE=value lines (IMAGESERVER, HOSTNAME, IPADDR, NETMASK, GATEWAY, DEVICE); "
                    "the installer reads it from the medium and uses DHCP only for what it leaves out.",
        epilog="example: imageserver mkbootmedia --iso node7.iso --set IMAGESERVER=10.0.0.1 --set HOSTNAME=node7 "
               "--set IPADDR=10.0.0.57 --set NETMASK=255.255.255.0 --set GATEWAY=10.0.0.1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(p)
    add_json_option(p)
    p.add_argument("--iso", type=Path, metavar="FILE", help="write a bootable ISO image here")
    p.add_argument("--usb", type=Path, metavar="FILE", help="write a USB disk image here")
    p.add_argument("--local-cfg", type=Path, metavar="FILE", help="put this local.cfg on the media (checked first)")
    p.add_argument("--host", metavar="NAME",
                   help="local.cfg for this host: its name, this imageserver, and its fixed or reserved address "
                        "with the subnet's netmask and router (a host without one gets DHCP)")
    p.add_argument("--set", action="append", default=[], metavar="VARIABLE=value",
                   help="a local.cfg value (repeatable; wins over --local-cfg)")
    p.add_argument("--append", default=None, metavar="ARGS",
                   help="kernel command line (default: [boot] kernel_cmdline of the config)")
    p.add_argument("--timeout", type=int, default=3, metavar="SECONDS", help="boot menu timeout (default 3)")
    p.add_argument("--efi", choices=("auto", "yes", "no"), default="auto",
                   help="a GRUB EFI loader too (auto: when grub-efi-amd64-bin is installed)")
    p.add_argument("--size", type=int, default=None, metavar="MIB", help="USB image size (default: what fits)")
    p.add_argument("--state-dir", type=Path, default=None,
                   help="take the installer from this state directory instead of the configured one")
    p.add_argument("--kernel", type=Path, default=None, help="installer kernel (default: <state_dir>/boot/installer/)")
    p.add_argument("--initrd", type=Path, default=None, help="installer initrd (default: <state_dir>/boot/installer/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.iso is None and args.usb is None:
        return fail("mkbootmedia: say what to make: --iso FILE and/or --usb FILE", 2)
    append = args.append
    state_dir = args.state_dir
    cfg = None
    if state_dir is None or append is None or args.host is not None:
        try:
            cfg = load(args)
        except ConfigError:
            if state_dir is None:
                raise  # main() reports it
            cfg = None  # --state-dir (and --append) say all we need
        if state_dir is None and cfg is not None:
            state_dir = cfg.state_dir
        if append is None:
            append = cfg.boot.kernel_cmdline if cfg is not None else BootConfig().kernel_cmdline
    try:
        values: dict[str, str] = {}
        if args.host is not None:
            if cfg is None:
                return fail("mkbootmedia: --host needs the configuration (the imageserver's address, the subnets)")
            values = _host_values(cfg, args.host)
        if args.local_cfg is not None:
            try:
                text = args.local_cfg.read_text()
            except OSError as e:
                return fail(f"mkbootmedia: cannot read {args.local_cfg}: {e.strerror}")
            values |= bootmedia.parse_local_cfg(text, source=str(args.local_cfg))
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                return fail(f"mkbootmedia: --set {item!r}: expected VARIABLE=value", 2)
            values[key.strip()] = value.strip()
        values = bootmedia.check_local_cfg(values, source="--set")
        installer = state_dir / INSTALLER_DIR
        inputs = bootmedia.MediaInputs(kernel=args.kernel or installer / "vmlinuz",
                                       initrd=args.initrd or installer / "initrd.img",
                                       append=append, local_cfg=values, timeout_seconds=max(0, args.timeout))
        efi = None if args.efi == "auto" else args.efi == "yes"
        made = []
        if args.iso is not None:
            made.append(bootmedia.build_iso(inputs, args.iso, efi=efi))
        if args.usb is not None:
            made.append(bootmedia.build_usb(inputs, args.usb, efi=efi, size_mib=args.size))
    except bootmedia.BootMediaError as e:
        return fail(f"mkbootmedia: {e}")
    if args.json:
        print_json([m.as_dict() for m in made])
        return 0
    for m in made:
        loaders = "BIOS (isolinux)" if m.kind == "iso" else "BIOS (syslinux)"
        if m.efi:
            loaders += " + UEFI (GRUB)"
        cfg_note = "with local.cfg" if m.local_cfg else "no local.cfg (DHCP)"
        print(f"{m.kind}: {m.path} ({m.bytes // (1 << 20)} MiB), {loaders}, {cfg_note}")
    if values:
        print("local.cfg: " + " ".join(f"{k}={v}" for k, v in values.items()))
    return 0


def _host_values(cfg: Config, name: str) -> dict[str, str]:
    """local.cfg values for host `name`, from the state database (read-only) and the config."""

    path = db_path(cfg.state_dir)
    if not path.exists():
        raise bootmedia.BootMediaError(f"no state database at {path}: no hosts to make media for")
    conn = connect(path, readonly=True)
    try:
        found = fixed_address(conn, name)
        if found is None:
            raise bootmedia.BootMediaError(f"no host named {name!r} (imageserver hosts add {name} ...)")
        ip = found[1]
    finally:
        conn.close()
    server = str(cfg.appliance.address) if cfg.appliance.address is not None else None
    return bootmedia.host_local_cfg(name, ip, server, cfg.http.port,
                                    [(s.subnet, s.router, s.dns) for s in cfg.dhcp.subnets])
