"""`make demo`: a lab network, a master client, the imageserver, and one VM installed over PXE.

Builds everything inside network namespaces (the host's interfaces, routes and /etc are never
touched), captures the demo master client with prepareclient + getimage, builds the installer
(mkbootenv), adds a host for the VM's MAC and PXE-boots it with a blank disk, showing each install
stage as it arrives. It ends when the VM has rebooted from its own disk and printed its hostname,
then prints the timeline, the status document and the timings. Ctrl-C cleans up too.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from lab.demo.scenario import DEFAULT_CACHE, DemoError, DemoLab, LabError, raw_rsync_seconds, require_tools


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=".venv/bin/python -m lab.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"kernel and initrd cache (default {DEFAULT_CACHE})")
    parser.add_argument("--hostname", default="demo1", help="the installed machine's host name (default demo1)")
    parser.add_argument("--disk-mb", type=int, default=256, help="the VM's blank disk size (default 256)")
    args = parser.parse_args(argv)
    try:
        require_tools()
    except DemoError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C cleans up even when started from a script that left SIGINT ignored (background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from lab.netns import Lab

    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    try:
        with Lab() as lab:
            demo = DemoLab(lab, cache_dir=args.cache_dir, say=say)
            demo.network()
            demo.master_tree()
            app = demo.appliance()
            capture = demo.capture()
            say(f"image captured in {capture:.1f} s")
            demo.bootenv()
            install = demo.new_install(args.hostname, args.disk_mb)
            demo.add_host(install.name, install.mac)
            say(f"powering on {install.name} ({install.mac}, blank {args.disk_mb} MB disk, PXE first)")
            demo.power_on(install, first=True)
            demo.follow([install])
            installed_after = install.installed_after
            if installed_after is None:
                print(app.cli("hosts", "show", install.name))
                raise DemoError(f"{install.name} did not install (see the timeline above)")
            hostname = demo.reboot_from_disk(install)
            print()
            print(app.cli("hosts", "show", install.name))
            print("status:")
            print(json.dumps(app.get("/api/v1/status"), indent=2))
            raw = raw_rsync_seconds(demo.image_path(), lab.tmp_path("raw-rsync.img"))
            print()
            print(f"power-on -> installed (done reported):   {installed_after:.1f} s")
            print(f"power-on -> booted from its own disk:    {install.marker_after:.1f} s (hostname {hostname})")
            print(f"raw rsync of the same image into an empty file system: {raw:.2f} s")
            print(f"demo total: {time.monotonic() - started:.1f} s; cleaning up")
    except KeyboardInterrupt:
        print("\ndemo: interrupted; the lab was cleaned up", file=sys.stderr)
        return 130
    except (DemoError, LabError) as e:
        print(f"demo: failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
