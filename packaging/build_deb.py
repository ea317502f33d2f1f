"""`make deb`: build imageserver_<version>_amd64.deb for Debian 12.

The layout is built by hand and packed with `dpkg-deb --build` (no debian/ tree, no debhelper, no
dh-virtualenv): every file's place is in this one script, and the build needs nothing beyond dpkg and the
dev venv. What goes in:

  /usr/lib/imageserver/         a private venv of Debian's python3.11: the wheel built from this tree and its
                                Python dependencies at the versions the dev venv runs (aiohttp, msgspec, ...;
                                Debian's python3-aiohttp 3.8.4 and python3-dnslib 0.9.23 are below our pins),
                                byte-compiled; nothing in the system's site-packages, so the bare top-level
                                names (appliance, services, domain, state, protocols) meet no other package
  /usr/lib/imageserver/bin/imageserver   a sh launcher: the venv's python -I (no cwd, no PYTHONPATH)
  /usr/bin/imageserver          -> ../lib/imageserver/bin/imageserver
  /lib/systemd/system/imageserver.service   the unit (ExecStart=/usr/bin/imageserver; inactive until
                                /etc/imageserver/imageserver.toml exists; enabled by nobody but the operator)
  /usr/share/doc/imageserver/   README.md, docs/, the annotated example imageserver.toml, copyright
  /usr/share/man/man8/imageserver.8.gz              from the argparse parsers (argparse-manpage)
  /usr/share/bash-completion/completions/imageserver  from the same parsers (shtab)

Depends/Recommends/Suggests come from deps/runtime-packages.txt. Python dependencies are fetched by pip
(the index, or its cache); everything else is local.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from the checkout: the parsers come from this tree

from appliance.cli.commands.install_service import render_unit  # noqa: E402
from appliance.cli.main import build_parser  # noqa: E402

PREFIX = Path("/usr/lib/imageserver")
PACKAGES = ("appliance", "services", "domain", "state", "protocols")
DOCS = ("README.md",)
TARGET_PYTHON = "/usr/bin/python3.11"  # Debian 12's; the venv's bin/python3 links to it (Depends: python3.11)
MAINTAINER = "imageserver maintainers <imageserver@localhost>"

LAUNCHER = """#!/bin/sh
# imageserver, run by the private environment's python (found beside this script through the
# /usr/bin/imageserver link, so an unpacked tree runs as well). -I: no current directory, PYTHONPATH or user
# site on the path, so nothing but this package is imported; -B: no __pycache__ written into /usr/lib.
here=$(dirname "$(readlink -f "$0")")
exec "$here/python3" -I -B -m appliance.cli "$@"
"""

POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # An upgrade ($2: the version replaced) restarts a running appliance on the new code, whose daemon
    # migrates the state database as it opens it; a stopped one stays stopped. deb-systemd-invoke asks
    # policy-rc.d first (nothing starts in a chroot). A first install starts nothing: the unit waits for
    # /etc/imageserver/imageserver.toml (`imageserver init`).
    if [ -n "$2" ]; then
        deb-systemd-invoke try-restart imageserver.service \
            || echo "imageserver: restart failed: journalctl -u imageserver" >&2
    fi
fi
if [ "$1" = configure ] && [ -z "$2" ] && [ ! -e /etc/imageserver/imageserver.toml ]; then
    echo "imageserver: next, write a config with \\`imageserver init\\`, then \\`systemctl enable --now imageserver\\`"
fi
exit 0
"""

PRERM = """#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop imageserver.service || true
fi
exit 0
"""

POSTRM = """#!/bin/sh
set -e
# The state directory (database, images) and /etc/imageserver are the site's: purge leaves them.
if [ "$1" = purge ]; then
    rm -f /etc/systemd/system/multi-user.target.wants/imageserver.service \\
          /etc/systemd/system/imageserver.service.d/install-service.conf
    rmdir /etc/systemd/system/imageserver.service.d 2>/dev/null || true
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
"""

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: imageserver
Comment: the Python dependencies in /usr/lib/imageserver keep their own licence files in their
 *.dist-info directories.

Files: *
Copyright: the imageserver authors
License: GPL-2.0-or-later
 This program is free software; you can redistribute it and/or modify it under the terms of the GNU
 General Public License as published by the Free Software Foundation; either version 2 of the License,
 or (at your option) any later version.
 .
 On Debian systems, the complete text of the GNU General Public License version 2 can be found in
 /usr/share/common-licenses/GPL-2.
"""


def log(msg: str) -> None:
    print(f"build_deb: {msg}", flush=True)


def run(argv: list[str], **kw: object) -> None:
    subprocess.run(argv, check=True, **kw)  # type: ignore[call-overload]


def project() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def relations(path: Path) -> dict[str, list[str]]:
    """deps/runtime-packages.txt: NAME RELATION lines -> {"Depends": [...], "Recommends": [...], ...}."""
    out: dict[str, list[str]] = {"Depends": [], "Recommends": [], "Suggests": []}
    for raw in path.read_text().splitlines():
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        name, relation = words
        out[relation.capitalize()].append(name)
    return out


def dependency_pins(dist: str = "imageserver") -> list[str]:
    """name==version of every runtime dependency of `dist` as the dev venv has them (the tested versions)."""
    seen: dict[str, str] = {}
    todo = [dist]
    while todo:
        requires = metadata.requires(todo.pop()) or []
        for req in requires:
            if "extra ==" in req:
                continue
            marker = req.split(";", 1)[1] if ";" in req else ""
            if marker and not _marker_holds(marker):
                continue
            name = re.split(r"[ <>=!~\[;(]", req, maxsplit=1)[0].lower().replace("_", "-")
            if name not in seen:
                seen[name] = metadata.version(name)
                todo.append(name)
    return [f"{n}=={v}" for n, v in sorted(seen.items())]


def _marker_holds(marker: str) -> bool:
    from packaging.markers import Marker  # pip's dependency, present wherever pip is

    return Marker(marker).evaluate({"python_version": "3.11", "python_full_version": "3.11.2"})


def build_wheel(work: Path) -> Path:
    src = work / "src"
    src.mkdir()
    for name in (*PACKAGES, "pyproject.toml", "README.md", "LICENSE"):
        run(["cp", "-a", str(REPO / name), str(src)])
    for cache in src.rglob("__pycache__"):
        shutil.rmtree(cache)
    out = work / "wheel"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)])
    (wheel,) = out.glob("imageserver-*.whl")
    return wheel


def build_venv(stage: Path, wheel: Path, work: Path) -> None:
    venv = stage / PREFIX.relative_to("/")
    run([TARGET_PYTHON, "-m", "venv", "--without-pip", str(venv)])
    pins = work / "constraints.txt"
    pins.write_text("\n".join(dependency_pins()) + "\n")
    log("python dependencies: " + " ".join(pins.read_text().split()))
    # The dev venv's pip installs into the target venv (--python): the package ships no pip of its own.
    # Without PYTHONPATH: a checkout on it shows pip an imageserver (its egg-info) "already satisfied",
    # and the wheel would be left out.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python3"), "install", "-q", "--no-compile",
         "--only-binary=:all:", "--no-warn-script-location", "-c", str(pins), str(wheel)], env=env)
    if not (venv / "lib/python3.11/site-packages/appliance/cli/main.py").is_file():
        raise SystemExit(f"build_deb: {wheel.name} is not in the private environment")
    for script in (venv / "bin").iterdir():
        if not script.name.startswith("python"):
            script.unlink()  # activate*, pip's console scripts: they name the staging directory
    launcher = venv / "bin/imageserver"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    cfg = venv / "pyvenv.cfg"
    cfg.write_text(cfg.read_text().replace(str(venv), str(PREFIX)))
    for direct_url in venv.rglob("direct_url.json"):
        direct_url.unlink()  # the build's temporary wheel path
        record = direct_url.parent / "RECORD"
        record.write_text("".join(line for line in record.read_text().splitlines(keepends=True)
                                  if "direct_url.json" not in line))
    # Byte-compiled by the target python, with the installed paths in tracebacks.
    run([str(venv / "bin/python3"), "-m", "compileall", "-q", "-s", str(stage), "-p", "/", str(venv / "lib")])
    leaked = subprocess.run(["grep", "-rl", str(stage), str(venv)], capture_output=True, text=True).stdout
    if leaked:
        raise SystemExit(f"build_deb: the staging path is left in:\n{leaked}")


def manpage(version: str) -> bytes:
    from argparse_manpage.manpage import Manpage

    page = Manpage(build_parser())
    page.source = f"imageserver {version}"
    page.manual = "imageserver manual"
    page.section = 8
    page.description = "network provisioning appliance: PXE installs of system images over DHCP, TFTP, HTTP, rsync"
    text = str(page)
    text += (".SH FILES\n.TP\n/etc/imageserver/imageserver.toml\nthe configuration (`imageserver init` writes it; "
             "the annotated example is /usr/share/doc/imageserver/imageserver.toml)\n.TP\n/var/lib/imageserver\n"
             "the default state directory: database, images, boot files, admin token\n"
             ".SH SEE ALSO\n.BR systemctl (1),\n.BR journalctl (1);\n/usr/share/doc/imageserver/README.md\n")
    return gzip.compress(text.encode(), mtime=0)


def completion() -> str:
    import shtab

    return shtab.complete(build_parser(), shell="bash")


def put(stage: Path, path: str, data: bytes | str, mode: int = 0o644) -> Path:
    dest = stage / path.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data.encode() if isinstance(data, str) else data)
    dest.chmod(mode)
    return dest


def control(stage: Path, version: str) -> None:
    meta = project()
    size_kib = sum(p.lstat().st_size for p in stage.rglob("*") if not p.is_dir()) // 1024
    fields = {
        "Package": "imageserver",
        "Version": version,
        "Architecture": "amd64",
        "Maintainer": MAINTAINER,
        "Installed-Size": str(size_kib),
        **{k: ", ".join(v) for k, v in relations(REPO / "deps/runtime-packages.txt").items() if v},
        "Section": "net",
        "Priority": "optional",
        "Description": f"{meta['description']}\n"
                       " A network provisioning appliance in the line of VA SystemImager. It answers PXE machines\n"
                       " (DHCP, TFTP, HTTP boot scripts), installs them from golden images over rsync, BitTorrent\n"
                       " or multicast, and serves DNS for the installed hosts. Its Python dependencies live in a\n"
                       " private environment under /usr/lib/imageserver.",
    }
    text = "".join(f"{k}: {v}\n" for k, v in fields.items())
    put(stage, "DEBIAN/control", text)
    for name, body in (("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)):
        put(stage, f"DEBIAN/{name}", body, 0o755)
    sums = io.StringIO()
    for path in sorted(stage.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.parts[len(stage.parts)] != "DEBIAN":
            sums.write(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(stage)}\n")
    put(stage, "DEBIAN/md5sums", sums.getvalue())


def build(out: Path, version: str) -> Path:
    started = time.monotonic()
    os.umask(0o022)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imageserver-deb.") as tmp:
        work = Path(tmp)
        stage = work / "stage"
        log("building the wheel")
        wheel = build_wheel(work)
        log(f"building the private environment in {PREFIX}")
        build_venv(stage, wheel, work)
        link = stage / "usr/bin/imageserver"
        link.parent.mkdir(parents=True)
        link.symlink_to(Path("..") / PREFIX.relative_to("/usr") / "bin/imageserver")
        put(stage, "/lib/systemd/system/imageserver.service", render_unit("/usr/bin/imageserver", man_page=True))
        doc = "/usr/share/doc/imageserver"
        for name in DOCS:
            put(stage, f"{doc}/{name}", (REPO / name).read_bytes())
        for md in sorted((REPO / "docs").glob("*.md")):
            put(stage, f"{doc}/docs/{md.name}", md.read_bytes())
        put(stage, f"{doc}/imageserver.toml", (REPO / "appliance/data/imageserver.toml").read_bytes())
        put(stage, f"{doc}/copyright", COPYRIGHT)
        put(stage, "/usr/share/man/man8/imageserver.8.gz", manpage(version))
        put(stage, "/usr/share/bash-completion/completions/imageserver", completion())
        control(stage, version)
        deb = out / f"imageserver_{version}_amd64.deb"
        run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(stage), str(deb)], stdout=subprocess.DEVNULL)
    log(f"{deb} ({deb.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - started:.0f} s")
    return deb


def main() -> int:
    ap = argparse.ArgumentParser(description="build imageserver_<version>_amd64.deb (make deb)")
    ap.add_argument("--out", type=Path, default=REPO / "dist", help="where the .deb goes (default: dist/)")
    ap.add_argument("--version", default=str(project()["version"]), help="package version (default: pyproject's)")
    args = ap.parse_args()
    build(args.out, args.version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
