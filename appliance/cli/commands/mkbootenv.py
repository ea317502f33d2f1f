"""`imageserver mkbootenv`: build the installer (kernel + initrd) that autoinstall clients boot."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from appliance.boot import bootenv
from appliance.boot.installer import install_bootenv
from appliance.cli.commands._common import add_config_option, add_json_option, fail, load, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mkbootenv",
        help="build the installer kernel + initrd into <state_dir>/boot/installer/",
        description="Fetch a Debian kernel (downloaded, never installed on this machine) and build the installer "
                    "initrd: busybox, sfdisk, mkfs, rsync, extlinux with their libraries, NIC and disk drivers, "
                    "and the installer's /init. Cached: nothing is rebuilt unless an input changed.",
    )
    add_config_option(p)
    add_json_option(p)
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where kernels and initrds are cached (default: $IMAGESERVER_CACHE_DIR or "
                        "/var/cache/imageserver)")
    p.add_argument("--kernel-package", default=None,
                   help="kernel package, e.g. linux-image-6.1.0-28-amd64 or -arm64 (Ubuntu's -generic too; -cloud is "
                        "refused: no drivers for real hardware) (default: the newest one of --arch already "
                        "cached, else the newest apt knows)")
    p.add_argument("--arch", choices=bootenv.ARCHES, default="amd64",
                   help="the machines' architecture: amd64, or arm64 (built here from Debian's arm64 packages "
                        "into <state_dir>/boot/installer-arm64/, with the network GRUB and shim for arm64 UEFI)")
    p.add_argument("--state-dir", type=Path, default=None, help="install into this state directory "
                                                                  "instead of the configured one")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    state_dir = args.state_dir if args.state_dir is not None else load(args).state_dir
    cache_dir = args.cache_dir or Path(os.environ.get("IMAGESERVER_CACHE_DIR", str(bootenv.DEFAULT_CACHE_DIR)))
    started = time.monotonic()
    try:
        env = install_bootenv(state_dir, cache_dir, args.kernel_package, args.arch)
    except bootenv.BootEnvError as e:
        return fail(f"mkbootenv: {e}")
    if args.json:
        print_json({**env.as_dict(), "seconds": round(time.monotonic() - started, 2)})
        return 0
    what = "installed" if env.changed else "unchanged"
    print(f"installer {what}: {env.vmlinuz} ({env.vmlinuz.stat().st_size // 1024} KiB), "
          f"{env.initrd} ({env.initrd.stat().st_size // 1024} KiB)")
    print(f"kernel {env.kernel_package}, initrd {env.initrd_digest}, {time.monotonic() - started:.1f} s")
    return 0
