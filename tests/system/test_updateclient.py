"""updateclient against the real daemon and its supervised rsync daemon, across two namespaces.

The imageserver (server namespace) has image `web` v1 and v2 registered in its store and serves them
from its rsync daemon. An "installed system" tree (a copy of v1 plus the files the install made its own)
sits in the lab's tmp dir; `updateclient --root TREE`, fetched from GET /client/updateclient and run in
the client namespace with curl and rsync, moves it v1 -> v2 -> v1. After each sync the tree equals the
version except the kept files, which are byte-for-byte what they were; --dry-run changes nothing and
lists exactly the differences; the host's record shows the version it runs and when it got there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from domain.hosts import new_host_op
from lab.netns import Lab, Pair
from state.credentials import update_token
from state.db import connect, db_path
from state.images import ImageVersion, insert_version
from tests.system._daemon import API_PORT, Imageserver

pytestmark = pytest.mark.system

HOST = "node1"
MAC = "52:54:00:aa:bb:01"
# What the install made this machine's own (relative to the root) and updateclient must keep.
KEPT = ("etc/hostname", "etc/fstab", "etc/machine-id", "etc/ssh/ssh_host_ed25519_key", "etc/network/interfaces",
        "etc/systemimager/updateclient.conf", "etc/systemimager/updateclient.local.exclude", "opt/local-data",
        # node-local state (issue 13): its logs and journal, leases, random seed, resume device
        "var/log", "var/lib/dhcp", "var/lib/systemd/random-seed", "etc/initramfs-tools/conf.d/resume",
        # its md arrays (new UUIDs) and its LVM metadata backups
        "etc/mdadm/mdadm.conf", "etc/lvm/backup")

Entry = tuple[object, ...]


def write(root: Path, rel: str, text: str, mode: int = 0o644, mtime: int = 1_700_000_000) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    os.utime(path, (mtime, mtime))
    return path


def build_v1(root: Path) -> None:
    write(root, "etc/hostname", "master\n")
    write(root, "etc/fstab", "UUID=master-root / ext4 defaults 0 1\n")
    write(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444)
    write(root, "etc/ssh/ssh_host_ed25519_key", "master's host key\n", 0o600)
    write(root, "etc/network/interfaces", "auto lo\niface lo inet loopback\n")
    write(root, "etc/systemimager/layout.json", '{"disks": []}\n')
    write(root, "etc/mdadm/mdadm.conf", "ARRAY /dev/md0 metadata=1.2 name=master:0 UUID=5eed1312:0:0:1\n")
    write(root, "etc/lvm/backup/vgraid", "# the master's VG metadata\n", 0o600)
    write(root, "etc/motd", "version one\n")
    write(root, "etc/app.conf", "threads=4\n")  # v2: same size, other content and time
    write(root, "usr/bin/tool", "#!/bin/sh\necho v1\n", 0o755)
    write(root, "usr/lib/libold.so", "old library\n")  # gone in v2
    write(root, "usr/share/doc/a.txt", "shared\n")
    os.link(root / "usr/share/doc/a.txt", root / "usr/share/doc/b.txt")  # a hard link pair
    os.symlink("tool", root / "usr/bin/tool-link")
    write(root, "var/lib/app/state", "v1 state\n", 0o640)
    os.chown(root / "var/lib/app/state", 1234, 4321)  # numeric ids that mean nothing on either side
    subprocess.run(["setfattr", "-n", "user.origin", "-v", "v1", str(root / "etc/motd")], check=True)
    (root / "opt").mkdir()
    (root / "proc").mkdir()
    for d in ("var/log", "var/lib/dhcp", "var/lib/systemd", "etc/initramfs-tools/conf.d"):  # as in any Debian
        (root / d).mkdir(parents=True, exist_ok=True)
    write_kernel(root, "boot/vmlinuz-1")


def write_kernel(root: Path, rel: str) -> None:
    """A "kernel" with a long run of zeros: rsync -S would leave a hole there, which syslinux cannot read."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(4096) + bytes(256 * 1024) + os.urandom(4096))
    os.utime(path, (1_700_000_000, 1_700_000_000))


def build_v2(v1: Path, root: Path) -> None:
    shutil.copytree(v1, root, symlinks=True)  # copies hard links as two files: relink below
    write(root, "etc/hostname", "master2\n")  # the image's own host files change too: still kept
    write(root, "etc/ssh/ssh_host_ed25519_key", "master's new host key\n", 0o600)
    write(root, "etc/motd", "version two\n", mtime=1_700_000_100)
    write(root, "etc/app.conf", "threads=8\n", mtime=1_700_000_100)
    write(root, "usr/bin/tool", "#!/bin/sh\necho v2\n", 0o750, mtime=1_700_000_100)
    (root / "usr/lib/libold.so").unlink()
    write(root, "usr/lib/libnew.so", "new library\n")
    (root / "usr/lib/zeros.bin").write_bytes(bytes(1 << 20))  # sparse on the client, and that is fine
    write(root, "usr/share/new/dir/file", "in a new directory\n")
    (root / "usr/share/doc/b.txt").unlink()
    os.link(root / "usr/share/doc/a.txt", root / "usr/share/doc/b.txt")
    (root / "usr/bin/tool-link").unlink()
    os.symlink("/usr/bin/tool", root / "usr/bin/tool-link")
    subprocess.run(["setfattr", "-n", "user.origin", "-v", "v2", str(root / "etc/motd")], check=True)
    (root / "boot/vmlinuz-1").unlink()
    write_kernel(root, "boot/vmlinuz-2")
    for d in ("etc", "usr/bin", "usr/lib", "usr/share", "usr/share/doc"):
        os.utime(root / d, (1_700_000_200, 1_700_000_200))


def kept_rel(rel: str) -> bool:
    return any(rel == k or rel.startswith(k + "/") for k in KEPT)


def manifest(root: Path, *, keep_only: bool = False) -> dict[str, Entry]:
    """Every path below root: type, mode, ids, and for non-directories size, mtime, content or link, xattrs.

    With keep_only, only the kept paths; otherwise everything but them."""
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if kept_rel(rel) != keep_only:
                continue
            st = path.lstat()
            xattrs = tuple(sorted((k, os.getxattr(path, k, follow_symlinks=False))
                                  for k in os.listxattr(path, follow_symlinks=False)))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path), st.st_uid, st.st_gid)
            elif path.is_dir():
                out[rel] = ("dir", st.st_mode, st.st_uid, st.st_gid, xattrs)
            else:
                out[rel] = ("file", st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                            hashlib.sha256(path.read_bytes()).hexdigest(), xattrs)
    return out


def inode_groups(root: Path) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if st.st_nlink > 1 and not kept_rel(str(path.relative_to(root))):
                groups.setdefault(st.st_ino, set()).add(str(path.relative_to(root)))
    return {frozenset(g) for g in groups.values()}


def expected_changes(current: dict[str, Entry], target: dict[str, Entry]) -> set[str]:
    """Paths rsync has to touch: new, gone, or different (a directory in both only if its kind changed)."""
    out = set(current) ^ set(target)
    for rel in set(current) & set(target):
        a, b = current[rel], target[rel]
        if a != b and not (a[0] == "dir" and b[0] == "dir"):
            out.add(rel)
    return out


def listed_paths(output: str) -> set[str]:
    """Paths in rsync -i lines ('>f.st...... usr/bin/tool', '*deleting   x/', 'hf+++ b => a', 'cL... l -> t')."""
    out = set()
    for line in output.splitlines():
        if line.startswith("updateclient:") or not line.strip():
            continue
        _, _, rest = line.partition(" ")
        rest = rest.strip().split(" => ")[0].split(" -> ")[0]
        out.add(rest.rstrip("/"))
    return out


def install_client(v1: Path, root: Path, token: str, server: str) -> None:
    """The installed system: the image as the install left it, plus what the install made this machine's."""
    subprocess.run(["cp", "-a", f"{v1}/.", str(root)], check=True)
    write(root, "etc/hostname", f"{HOST}\n")
    write(root, "etc/fstab", "UUID=1111-node1 / ext4 defaults 0 1\n")
    write(root, "etc/machine-id", "feedfacefeedfacefeedfacefeedface\n", 0o444)
    write(root, "etc/ssh/ssh_host_ed25519_key", "node1's own host key\n", 0o600)
    write(root, "etc/network/interfaces", "auto eth0\niface eth0 inet static\n    address 10.1.2.3/24\n")
    write(root, "etc/systemimager/updateclient.conf",
          f"# written by the autoinstall script\nIMAGESERVER={server}\nHOSTNAME={HOST}\nTOKEN='{token}'\n", 0o600)
    write(root, "etc/systemimager/updateclient.local.exclude", "# this machine's data\n/opt/local-data\n")
    write(root, "opt/local-data/notes.txt", "node1's own data\n")
    write(root, "var/log/wtmp", "node1's logins\n", 0o664)
    write(root, "var/log/journal/feedface/system.journal", "node1's journal\n", 0o640)
    write(root, "var/lib/dhcp/dhclient.ens2.leases", "lease { fixed-address 10.1.2.3; }\n")
    write(root, "var/lib/systemd/random-seed", "node1's seed\n", 0o600)
    write(root, "etc/initramfs-tools/conf.d/resume", "RESUME=UUID=node1-swap\n")
    write(root, "etc/mdadm/mdadm.conf", "ARRAY /dev/md0 metadata=1.2 name=node1:0 UUID=0a1b2c3d:0:0:1\n")
    write(root, "etc/lvm/backup/vgraid", "# node1's VG metadata\n", 0o600)
    write(root, "var/cache/junk", "not in any image\n")  # not kept: --delete removes it


@pytest.fixture
def world(lab: Lab) -> tuple[Pair, Imageserver, Path, Path, Path, Path]:
    pair = lab.server_client_pair()
    client_ip = pair.host(20)
    pair.client.add_address(pair.client_if, f"{client_ip}/{pair.subnet.prefixlen}")
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet)
    images = server.state_dir / "images" / "web"
    v1, v2 = images / "v1", images / "v2"
    build_v1(v1)
    build_v2(v1, v2)
    now = time.time()
    conn = connect(db_path(server.state_dir))
    try:
        for n, path in ((1, v1), (2, v2)):
            insert_version(conn, ImageVersion("web", n, str(path), now, source="test"))
        empty = server.state_dir / "images" / "empty" / "v1"
        empty.mkdir(parents=True)  # a broken version: syncing to it would delete everything
        insert_version(conn, ImageVersion("empty", 1, str(empty), now, source="test"))
        # Follows the newest version; at client_ip (its update token works from its own address).
        new_host_op(HOST, MAC, "web", client_ip, now)(conn)
        conn.execute("UPDATE hosts SET state = 'installed', running_version = 1 WHERE name = ?", (HOST,))
        token = conn.execute("SELECT install_token FROM hosts WHERE name = ?", (HOST,)).fetchone()[0]
    finally:
        conn.close()
    server.start()
    root = lab.tmp_path("node1-root")
    root.mkdir()
    # What the autoinstall script writes: the host's update token (not its install token).
    install_client(v1, root, update_token(token), f"{pair.server_ip}:{API_PORT}")
    script = lab.tmp_path("updateclient")
    pair.client.run(["curl", "-sSf", "-o", str(script), f"http://{pair.server_ip}:{API_PORT}/client/updateclient"])
    return pair, server, v1, v2, root, script


def host_row(server: Imageserver) -> tuple[int | None, float | None]:
    with server.db() as conn:
        row = conn.execute("SELECT running_version, last_update FROM hosts WHERE name = ?", (HOST,)).fetchone()
    return row[0], row[1]


def test_updateclient_moves_a_system_v1_to_v2_and_back_keeping_its_own_files(world) -> None:
    pair, server, v1, v2, root, script = world

    def updateclient(*args: str) -> str:
        return pair.client.run(["sh", str(script), "--root", str(root), *args], timeout=60).stdout

    kept = manifest(root, keep_only=True)
    assert "opt/local-data/notes.txt" in kept and "etc/systemimager/updateclient.conf" in kept

    # --dry-run: the exact differences to the assigned version (v2, the newest), and nothing changes.
    before = manifest(root)
    listed = listed_paths(updateclient("--dry-run"))
    assert listed == expected_changes(before, manifest(v2)), listed
    assert {"var/cache/junk", "usr/lib/libold.so", "usr/share/new/dir/file", "etc/app.conf"} <= listed
    assert manifest(root) == before and manifest(root, keep_only=True) == kept
    assert host_row(server) == (1, None)

    # The assigned version: v2. The tree is v2 except the kept files, which are untouched.
    out = updateclient()
    assert "runs web v2" in out
    # vmlinuz-1 -> vmlinuz-2: the boot loader must be regenerated; under --root, the machine is told to.
    assert "kernels changed under" in out and "update-grub" in out, out
    assert manifest(root) == manifest(v2)
    assert manifest(root, keep_only=True) == kept
    assert inode_groups(root) == inode_groups(v2) == {frozenset({"usr/share/doc/a.txt", "usr/share/doc/b.txt"})}
    running, last_update = host_row(server)
    assert running == 2 and last_update is not None
    kernel = (root / "boot/vmlinuz-2").stat()
    assert kernel.st_blocks * 512 >= kernel.st_size, "/boot is written without holes (boot loaders read blocks)"
    zeros = root / "usr/lib/zeros.bin"
    assert zeros.stat().st_blocks * 512 < zeros.stat().st_size, "elsewhere rsync -S leaves holes"
    assert listed_paths(updateclient("--dry-run")) == set()  # in step: nothing to do

    # Rollback to v1 by name; then roll forward again with --image/--version.
    assert listed_paths(updateclient("--dry-run", "--version", "1")) == expected_changes(manifest(root), manifest(v1))
    updateclient("--version", "1")
    assert manifest(root) == manifest(v1) and manifest(root, keep_only=True) == kept
    assert host_row(server)[0] == 1
    updateclient("--image", "web", "--version", "2")
    assert manifest(root) == manifest(v2) and manifest(root, keep_only=True) == kept

    # The record shows it: update events, the running version and the last update in `hosts show`.
    with server.db() as conn:
        stages = [r[0] for r in conn.execute("SELECT stage FROM update_events WHERE host = ? ORDER BY id", (HOST,))]
    assert stages == ["start", "done"] * 3
    shown = server.cli("hosts", "show", HOST)
    assert "running v2" in shown and "updated" in shown, shown


def test_updateclient_refuses_what_does_not_exist_and_reports_need_the_hosts_token(world) -> None:
    pair, server, _v1, _v2, root, script = world
    before = manifest(root)
    bad = pair.client.run(["sh", str(script), "--root", str(root), "--version", "7"], check=False)
    assert bad.returncode == 1 and "no version 7" in bad.stderr
    bad = pair.client.run(["sh", str(script), "--root", str(root), "--image", "empty"], check=False)
    assert bad.returncode == 1 and "has no /etc: not a system image" in bad.stderr, bad.stderr
    assert manifest(root) == before  # nothing was synced
    # A wrong token: no rsync access to the image (its module needs this update's credentials), nothing
    # synced, nothing recorded.
    out = pair.client.run(["sh", str(script), "--root", str(root), "--token", "wrong"], check=False)
    assert out.returncode == 1 and "is not this host's update token, nothing changed" in out.stderr, out.stderr
    assert manifest(root) == before
    assert host_row(server) == (1, None)


EXTLINUX_CONF = """UI menu.c32
DEFAULT linux
ONTIMEOUT linux
TIMEOUT 10
LABEL linux
    KERNEL /boot/vmlinuz-6.1.0-28-amd64
    INITRD /boot/initrd.img-6.1.0-28-amd64
    APPEND root=UUID=1111-node1 ro
LABEL rescue
    MENU DEFAULT
    KERNEL /boot/vmlinuz-6.1.0-28-amd64
    APPEND root=UUID=1111-node1 single
"""


def extlinux_entries(text: str) -> tuple[str | None, dict[str, dict[str, str]]]:
    """A small reading of a syslinux config: the DEFAULT in force and each LABEL's KERNEL/INITRD/APPEND."""
    default, labels, current = None, {}, None
    menu_default = ontimeout = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        key = key.upper()
        if key == "DEFAULT":  # the last one read is in force
            default = value.strip()
        elif key == "ONTIMEOUT":
            ontimeout = value.strip()
        elif key == "LABEL":
            name = value.strip()
            current = labels.setdefault(name, {})
        elif key == "MENU" and value.strip().upper() == "DEFAULT" and current is not None:
            menu_default = name  # under a menu UI this entry is highlighted (and started on timeout)
        elif current is not None and key in ("KERNEL", "INITRD", "APPEND"):
            current[key] = value.strip()
    chosen = {default, menu_default or default, ontimeout or default} - {None}
    assert len(chosen) == 1, f"DEFAULT {default}, MENU DEFAULT {menu_default}, ONTIMEOUT {ontimeout} disagree"
    return chosen.pop(), labels


def test_autoinstall_marks_the_host_and_makes_the_next_boot_the_installer(world) -> None:
    pair, server, _v1, _v2, root, script = world
    installer = server.state_dir / "boot" / "installer"
    installer.mkdir(parents=True, exist_ok=True)
    (installer / "vmlinuz").write_bytes(b"a kernel " * 1000)
    (installer / "initrd.img").write_bytes(b"an initrd " * 2000)
    write(root, "boot/extlinux/extlinux.conf", EXTLINUX_CONF)
    write(root, "boot/grub/grub.cfg", "# grub.cfg of the installed system\n")
    with server.db() as conn:
        old_token = conn.execute("SELECT install_token FROM hosts WHERE name = ?", (HOST,)).fetchone()[0]

    out = pair.client.run(["sh", str(script), "--root", str(root), "--autoinstall"], timeout=60).stdout
    assert "marked for reinstall" in out and "DEFAULT is now the installer" in out, out

    # The imageserver: the host installs again, with a new install token; the request is on record.
    with server.db() as conn:
        state, token = conn.execute("SELECT state, install_token FROM hosts WHERE name = ?", (HOST,)).fetchone()
        stages = [r[0] for r in conn.execute("SELECT stage FROM update_events WHERE host = ?", (HOST,))]
    assert state == "assigned" and token and token != old_token
    assert stages == ["autoinstall"]

    # extlinux: the installer is the default, its files beside the config, the original kept aside.
    ext = root / "boot/extlinux"
    assert (ext / "imageserver-installer.vmlinuz").read_bytes() == (installer / "vmlinuz").read_bytes()
    assert (ext / "imageserver-installer.initrd").read_bytes() == (installer / "initrd.img").read_bytes()
    assert (ext / "extlinux.conf.before-autoinstall").read_text() == EXTLINUX_CONF
    default, labels = extlinux_entries((ext / "extlinux.conf").read_text())
    assert default == "imageserver-autoinstall"
    assert set(labels) == {"imageserver-autoinstall", "linux", "rescue"}
    assert labels["linux"]["KERNEL"] == "/boot/vmlinuz-6.1.0-28-amd64"  # the installed system stays bootable
    entry = labels["imageserver-autoinstall"]
    assert entry["KERNEL"] == "imageserver-installer.vmlinuz" and entry["INITRD"] == "imageserver-installer.initrd"
    args = dict(word.split("=", 1) for word in entry["APPEND"].split() if "=" in word)
    assert args["INSTALL_TOKEN"] == token and args["MAC"] == MAC and args["HOSTNAME"] == HOST
    assert args["IMAGESERVER"] == str(pair.server_ip) and args["IMAGE"] == "web" and args["VERSION"] == "2"
    assert args["IMAGESERVER_URL"] == f"http://{pair.server_ip}:{API_PORT}"

    # GRUB: the installer in /boot/imageserver-installer/ and a grub.d entry for grub-reboot (run on the machine).
    assert (root / "boot/imageserver-installer/vmlinuz").read_bytes() == (installer / "vmlinuz").read_bytes()
    snippet = root / "etc/grub.d/45_imageserver_autoinstall"
    assert os.access(snippet, os.X_OK)
    subprocess.run(["sh", "-n", str(snippet)], check=True)
    assert f"INSTALL_TOKEN={token}" in snippet.read_text() and "--id imageserver-autoinstall" in snippet.read_text()

    # A second run does not stack entries or lose the original.
    pair.client.run(["sh", str(script), "--root", str(root), "--autoinstall", "--token", update_token(token)],
                    timeout=60)
    default, labels = extlinux_entries((ext / "extlinux.conf").read_text())
    assert default == "imageserver-autoinstall" and set(labels) == {"imageserver-autoinstall", "linux", "rescue"}
    assert (ext / "extlinux.conf.before-autoinstall").read_text() == EXTLINUX_CONF

    # The system asked to be reinstalled: its old token reports nothing any more.
    refused = pair.client.run(["sh", str(script), "--root", str(root), "--dry-run", "--token",
                               update_token(old_token)], check=False)
    assert refused.returncode == 1, "a dead token gets no rsync access either"
    again = pair.client.run(["sh", str(script), "--root", str(root), "--autoinstall", "--token",
                             update_token(old_token)], check=False)
    assert again.returncode == 1 and "401" in again.stderr
