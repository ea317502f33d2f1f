"""Autoinstall scripts: <state_dir>/scripts/NAME.master, a POSIX sh script per image.

Made from an image version's saved disk layout (what prepareclient recorded) and the image's own
/etc/fstab: partition the disks (sfdisk; GPT or MBR, partition numbers, types, starts and sizes as
on the master, the last partition grown to fill the disk), make the md arrays and LVM volume groups
and logical volumes the master's filesystems were on (mdadm, lvm; new UUIDs), make the filesystems
fstab names (ext2/3/4, xfs, vfat, swap) with fresh UUIDs, mount them in order, pull the image from
the imageserver's rsync daemon, rewrite fstab with the new UUIDs, set hostname and network, install
the boot loader, run the image's /etc/systemimager/post-install/* hooks, and report every stage
over HTTP.

Nothing about the target machine is fixed at generation time: disks are found on the client (the
first whole disks in /sys/block order, or DISK=/DISK1=...), and the imageserver, image version,
hostname and network come from variables (the installer exports them from the kernel command line,
local.cfg or DHCP). Variables the script reads:

    IMAGESERVER / IMAGESERVER_HOST   the imageserver's address (rsync); IMAGESERVER_URL for reports
    IMAGE, VERSION, MODULE           what to install (default: this image, the version the script was
                                     made from; MODULE defaults to IMAGE_vVERSION)
    RSYNC_PORT                       the imageserver's rsync port
    RSYNC_RETRY_FIRST, RSYNC_RETRY_MAX, RSYNC_QUEUE_TIMEOUT   waiting in line when the rsync daemon is
                                     full (first and longest pause, give up after; seconds: 2, 30, 21600)
    HOSTNAME, DOMAIN, IPADDR, NETMASK, GATEWAY, DNS, MAC, IFACE, NET_MODE (static|dhcp)
    INSTALL_TOKEN                    bearer token for POST /install/MAC/events
    RSYNC_USER, RSYNC_PASSWORD       this install's rsync credentials (rsync reads the password from
                                     its environment); UPDATE_TOKEN goes into updateclient.conf
    TRANSPORT                        rsync (default), bittorrent (BT_STOP_TIMEOUT) or multicast; both fall
                                     back to rsync
    DISK (= DISK0), DISK1, ...       target disks
    TARGET                           where the new system is mounted (default /mnt/target)
    SKIP_BOOTLOADER=1                leave the boot loader out (host-side tests; the VM test installs it)
    KERNEL_APPEND                    extra kernel arguments for extlinux (default: serial + VGA console)
    STAGE_FILE                       the installer's file naming the current stage (set by its init)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Config
from appliance.images.catalog import Catalog, ImageError
from appliance.images.crypttab import plan_crypttab
from appliance.images.layout import (
    ESP_TYPES,
    Disk,
    Growth,
    Layout,
    LayoutError,
    Placement,
    Plan,
    Volume,
    growth,
    plan,
    required_bytes,
    sfdisk_script,
)
from appliance.images.mounts import DISK_FILESYSTEMS
from state.images import ImageVersion


class AutoinstallError(ImageError):
    """The script cannot be made for this image; the message says what is missing or unsupported."""


def q(s: str) -> str:
    """Single-quote for sh."""
    return "'" + s.replace("'", "'\\''") + "'"


@dataclass(frozen=True, slots=True)
class ScriptSettings:
    rsync_port: int = 873
    imageserver: str | None = None  # default when the client is not told (appliance.address)


def script_settings(cfg: Config) -> ScriptSettings:
    """What the appliance's config tells every autoinstall script."""
    return ScriptSettings(rsync_port=cfg.rsyncd.port,
                          imageserver=str(cfg.appliance.address) if cfg.appliance.address else None)


def _var(disk: int, number: int) -> str:
    return f"DEV{disk}_{number}"


def _uuid_var(disk: int, number: int) -> str:
    return f"UUID{disk}_{number}"


def _fstab_rest(raw: str) -> str:
    """The fields after the source in an fstab line, as written (keeps \\040 escapes and spacing simple)."""
    fields = raw.split()
    return "\t".join(fields[1:])


def _depth(mountpoint: str) -> int:
    return 0 if mountpoint == "/" else mountpoint.rstrip("/").count("/")


class _Names:
    """The sh variable names of what a plan makes: partitions DEV<d>_<n>, arrays MD<i>, LVs LV<g>_<j>;
    the filesystem UUIDs on them UUID<d>_<n>, MDUUID<i>, LVUUID<g>_<j>."""

    def __init__(self, the_plan: Plan) -> None:
        self.arrays = {a.device: i for i, a in enumerate(the_plan.stack.arrays)}
        self.vgs = {vg.name: g for g, vg in enumerate(the_plan.stack.vgs)}

    def dev(self, place: Placement | Volume) -> str:
        if isinstance(place, Placement):
            return _var(place.disk, place.partition.number)
        if place.md is not None:
            return f"MD{self.arrays[place.md.device]}"
        assert place.vg is not None and place.lv is not None
        return f"LV{self.vgs[place.vg.name]}_{place.vg.lvs.index(place.lv)}"

    def uuid(self, place: Placement | Volume) -> str:
        if isinstance(place, Placement):
            return _uuid_var(place.disk, place.partition.number)
        return self.dev(place).replace("MD", "MDUUID", 1) if place.md else "LVUUID" + self.dev(place)[2:]

    def pv(self, layout: Layout, device: str) -> str:
        """The variable of a PV: an array of the stack, else a recorded partition."""
        a = layout.md_array(device)
        if a is not None:
            return f"MD{self.arrays[a.device]}"
        place = layout.partition_at(device)
        assert place is not None
        return _var(place.disk, place.partition.number)


def _under(layout: Layout, place: Placement | Volume) -> list[Placement]:
    """The partitions a filesystem's device is made of (itself, an array's members, a VG's PVs')."""
    if isinstance(place, Placement):
        return [place]
    devices = [m.device for m in place.md.members] if place.md else list(place.vg.pvs if place.vg else ())
    out: list[Placement] = []
    for dev in devices:
        a = layout.md_array(dev)
        out += _under(layout, Volume(md=a)) if a is not None and not place.md else []
        p = layout.partition_at(dev)
        if p is not None:
            out.append(p)
    return out


def _stack_lines(the_plan: Plan, names: _Names) -> list[str]:
    """sh building the md arrays and volume groups the filesystems live on (after partitioning)."""
    layout, stack, out = the_plan.layout, the_plan.stack, []
    for i, a in enumerate(stack.arrays):
        slots = {m.role: m for m in a.members}
        members = []
        for slot in range(a.raid_devices):
            m = slots.get(str(slot))
            place = layout.partition_at(m.device) if m else None
            members.append(f'"${_var(place.disk, place.partition.number)}"' if place else "missing")
        for m in a.members:
            if m.role == "spare" and (place := layout.partition_at(m.device)) is not None:
                members.append(f'"${_var(place.disk, place.partition.number)}"')
        out.append(f'stage raid "{_safe(a.device)}: {_safe(a.level)} of {len(members)} device(s), metadata '
                   f'{_safe(a.metadata)} (master: {_safe(a.uuid or "?")})"')
        out.append(f"make_md MD{i} {q(a.device)} {q(a.level)} {a.raid_devices} {q(a.metadata)} {q(a.short_name)} "
                   + " ".join(members))
    swap_lvs = {(p.vg.name, p.lv.name) for p, e in the_plan.filesystems
                if isinstance(p, Volume) and p.vg and p.lv and e.fstype == "swap"}
    for g, vg in enumerate(stack.vgs):
        pvs = [f'"${names.pv(layout, pv)}"' for pv in vg.pvs]
        out.append(f'stage lvm "volume group {_safe(vg.name)} on {len(pvs)} physical volume(s), '
                   f'{len(vg.lvs)} logical volume(s)"')
        out.append(f"make_vg {q(vg.name)} {vg.extent_size} " + " ".join(pvs))
        # The last data LV in physical order takes what is left (as the last partition does); every other
        # keeps its size in extents, scaled down if this VG has fewer extents than the master's.
        data = [lv for lv in vg.lvs if (vg.name, lv.name) not in swap_lvs and lv.fstype != "swap"]
        grower = data[-1] if data else None
        for j, lv in sorted(enumerate(vg.lvs), key=lambda jl: jl[1] is grower):
            size = "rest" if lv is grower else str(max(1, lv.size // vg.extent_size))
            out.append(f"make_lv LV{g}_{j} {q(vg.name)} {q(lv.name)} {size} {vg.extent_count}")
    return out


def render(iv: ImageVersion, the_plan: Plan, settings: ScriptSettings, generated: float) -> str:
    layout = the_plan.layout
    name, version = iv.name, iv.version
    names = _Names(the_plan)
    used_disks = sorted({p.disk for p in the_plan.partitions})
    out: list[str] = []
    w = out.append

    # --- disks
    w("pick_disks")
    for i in used_disks:
        if i == 0:
            continue
        w(f'DISK{i}=${{DISK{i}:-${{AUTO{i}:-}}}}')
        w(f'[ -n "$DISK{i}" ] || die "the image was made from {len(layout.disks)} disks; '
          f'no disk {i} here (set DISK{i}=/dev/...)"')
    w('say "disks: $DISK0' + "".join(f' $DISK{i}' for i in used_disks if i) + '"')
    # The size check is part of partitioning, so a too-small disk fails at stage "partition".
    w('stage partition "checking disk sizes"')
    for i in used_disks:
        disk = layout.disks[i]
        w(f'need_bytes "$DISK{i}" {required_bytes(disk)}')
    for i in used_disks:
        disk = layout.disks[i]
        growing = growth(disk)
        tail_var = f"TAIL{i}" if growing.tail else None
        try:
            table = sfdisk_script(disk, tail_var=tail_var)
        except LayoutError as e:
            raise AutoinstallError(str(e)) from None
        w(f'stage partition "$DISK{i}: {disk.label}, {len(disk.partitions)} partition(s) (master: {_safe(disk.name)})"')
        if tail_var is not None:
            w(_swap_tail_lines(i, disk, growing))
        quote = "" if tail_var else "'"
        w(f'sfdisk -q --wipe always --wipe-partitions always "$DISK{i}" <<{quote}EOF_SFDISK{i}{quote}')
        out.extend(table.rstrip("\n").splitlines())
        w(f"EOF_SFDISK{i}")
        w(f'settle "$DISK{i}"')
    needed = sorted({(p.disk, p.partition.number) for p in the_plan.partitions})
    for d, n in needed:
        w(f'part_dev {_var(d, n)} "$DISK{d}" {n}')
    out.extend(_stack_lines(the_plan, names))

    # --- filesystems
    for place, e in the_plan.filesystems:
        v = names.dev(place)
        label = (place.partition.label if isinstance(place, Placement) else place.label) or ""
        fstype = "swap" if e.fstype == "swap" else e.fstype
        purpose = "swap" if fstype == "swap" else _safe(e.mountpoint)
        w(f'stage mkfs "{fstype} on ${v} for {purpose}"')
        esp = fstype == "vfat" and isinstance(place, Placement) and place.partition.type.lower() in ESP_TYPES
        w(f'mkfs_fs {fstype} "${v}" {q(label)}{" esp" if esp else ""}')
        w(f'{names.uuid(place)}=$(fs_uuid "${v}")')
    mounts = sorted(((p, e) for p, e in the_plan.filesystems if e.fstype != "swap"),
                    key=lambda pe: (_depth(pe[1].mountpoint), pe[1].mountpoint))
    w('stage mount "' + " ".join(_safe(e.mountpoint) for _, e in mounts) + '"')
    for place, e in mounts:
        w(f'mount_fs {e.fstype} "${names.dev(place)}" {q(e.mountpoint)}')

    # --- the image
    vfat = [e.mountpoint for _, e in mounts if e.fstype == "vfat"]
    excludes = " ".join(f"--exclude={q(m.rstrip('/'))}" for m in vfat if m != "/")
    w('stage rsync "$MODULE from $IMAGESERVER_HOST:$RSYNC_PORT"')
    if not excludes:
        w("# shellcheck disable=SC2119  # no FAT filesystems: nothing to exclude")
    w(f"pull_image {excludes}".rstrip())
    for m in vfat:
        w(f"pull_fat {q(m.rstrip('/'))}")

    # --- fstab, swap files
    w(f'stage fstab "{len(the_plan.filesystems)} filesystem(s) by their new UUIDs"')
    w('{')
    w(f"    printf '%s\\n' {q(f'# Written by the imageserver autoinstall script (image {name}): new UUIDs.')}")
    placed = {id(e): p for p, e in the_plan.filesystems}
    for fl in the_plan.fstab:
        e = fl.entry
        if e is not None and id(e) in placed:
            p = placed[id(e)]
            w(f"    printf '%s\\t%s\\n' \"UUID=${names.uuid(p)}\" {q(_fstab_rest(fl.raw))}")
        else:
            w(f"    printf '%s\\n' {q(fl.raw)}")
    w('} >"$TARGET/etc/fstab.new"')
    w('mv -f "$TARGET/etc/fstab.new" "$TARGET/etc/fstab"')
    for e, kib in the_plan.swapfiles:
        w(f'make_swapfile {q(e.spec)} {kib}')
    out.extend(_crypttab_lines(layout, Path(iv.path), set(used_disks)))

    # --- identity, boot loader, hooks
    w("stage hostname \"${HOSTNAME:-(kept from the image)}\"")
    w("set_hostname")
    w("setup_updateclient")
    root = next(p for p, e in mounts if e.mountpoint == "/")
    boot = next((p for p, e in mounts if e.mountpoint == "/boot"), root)
    esp = next(((p, e) for p, e in mounts if e.fstype == "vfat" and isinstance(p, Placement)
                and p.partition.type.lower() in ESP_TYPES), None)
    w(f'ROOT_UUID=${names.uuid(root)}')
    # GRUB goes on every disk /boot is on (each half of a RAID1 boots alone); extlinux boots partitions only.
    boot_disks = sorted({p.disk for p in _under(layout, boot)})
    first = boot_disks[0] if boot_disks else 0
    boot_part = boot.partition.number if isinstance(boot, Placement) else "''"
    w(f"BOOT_DISK=$DISK{first} BOOT_PART={boot_part} "
      f"BOOT_LABEL={layout.disks[first].label} BOOT_SEPARATE={1 if boot is not root else 0}")
    w('BOOT_DISKS="' + " ".join(f"$DISK{d}" for d in boot_disks) + '"')
    w(f"ESP_MOUNT={q(esp[1].mountpoint) if esp else q('')}")
    swaps = [p for p, e in the_plan.filesystems if e.fstype == "swap"]
    w(f"SWAP_UUID={'$' + names.uuid(swaps[0]) if swaps else q('')}")
    w("FS_UUIDS=\"" + " ".join(f"${names.dev(p)}=${names.uuid(p)}" for p, _ in the_plan.filesystems) + "\"")
    w(f"STACKED={1 if the_plan.stack.arrays or the_plan.stack.vgs else 0}")
    w("bind_system")
    if the_plan.stack.arrays:
        w("write_mdadm_conf")
    w("configure_network")
    w("new_machine_identity")
    w("retie_to_new_disks")
    w("install_bootloader")
    w("run_post_install")
    w('stage finished "image $MODULE installed on $DISK0"')
    body = "\n".join(out)

    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(generated))
    header = (TEMPLATE
              .replace("@@NAME@@", name)
              .replace("@@VERSION@@", str(version))
              .replace("@@WHEN@@", when)
              .replace("@@PORT@@", str(settings.rsync_port))
              .replace("@@SERVER@@", _safe(settings.imageserver or ""))
              .replace("@@FIRMWARE@@", layout.firmware)
              .replace("@@DISKS@@", ", ".join(f"{d.name} ({d.label or 'no table'}, {d.size} bytes)"
                                              for d in layout.disks)))
    warnings = "".join(f"# warning: {_safe(x)}\n" for x in the_plan.warnings)
    return f"{header}{warnings}\n# ---- generated from the layout {'-' * 60}\n{body}\n"


def _crypttab_lines(layout: Layout, tree: Path, recreated: set[int]) -> list[str]:
    """sh rewriting the image's /etc/crypttab when entries name partitions this install recreates
    (appliance/images/crypttab.py: retie random-key volumes by the new PARTUUID, drop the others)."""
    try:
        text = (tree / "etc" / "crypttab").read_text(errors="surrogateescape")
    except OSError:
        return []
    lines = plan_crypttab(text, layout, recreated)
    changed = [c for c in lines if c.action != "keep"]
    if not changed:
        return []
    out = [f'stage crypttab "{sum(c.action == "retie" for c in changed)} entry(ies) retied to new partitions, '
           f'{sum(c.action == "drop" for c in changed)} dropped"', "{"]
    for c in lines:
        place = c.placement
        if c.action == "keep" or place is None:
            out.append(f"    printf '%s\\n' {q(c.raw)}")
            continue
        disk, n = layout.disks[place.disk], place.partition.number
        if c.action == "retie":
            out.append(f"    printf '%s\\tPARTUUID=%s\\t%s\\n' {q(c.name)} "
                       f'"$(new_partuuid "$DISK{place.disk}" {n} {disk.label})" {q(c.rest)}')
        else:
            note = "# dropped by the imageserver install (its partition was recreated, the encrypted data is " \
                   "not on this machine): "
            out.append(f"    printf '%s\\n' {q(note + c.raw)}")
    out.append('} >"$TARGET/etc/crypttab.new"')
    out.append('mv -f "$TARGET/etc/crypttab.new" "$TARGET/etc/crypttab"')
    for c in changed:
        assert c.placement is not None
        where = f"partition {c.placement.partition.number} of $DISK{c.placement.disk}"
        if c.action == "retie":
            out.append(f'say "crypttab: {_safe(c.name)} ({_safe(c.raw.split()[1])}) retied to {where}, '
                       f'new PARTUUID $(new_partuuid "$DISK{c.placement.disk}" {c.placement.partition.number} '
                       f'{layout.disks[c.placement.disk].label})"')
        else:
            out.append(f'say "crypttab: {_safe(c.name)} ({_safe(c.raw.split()[1])}) was on {where}, which this '
                       'install recreated without the encrypted data: entry dropped"')
    return out


def _swap_tail_lines(i: int, disk: Disk, g: Growth) -> str:
    """sh setting TAIL<i>: where the swap partitions that end the master's disk start on this disk (the
    last data partition grows up to them; the swap keeps its size)."""
    assert g.grower is not None
    label = disk.label or "dos"
    return (f'swap_tail TAIL{i} "$DISK{i}" {g.tail_span} {g.tail_start} {label}\n'
            f'say "partition {g.grower.number} grows to the swap partition(s) at the end of $DISK{i}, '
            f'which keep their size (from sector $TAIL{i})"')


def _safe(s: str) -> str:
    """Text placed inside double quotes or comments: nothing that sh would expand or that ends the line."""
    return "".join(c for c in s if c.isprintable() and c not in '"$`\\')


def installable_plan(layout: Layout | None, tree: Path, label: str) -> Plan:
    """The plan an autoinstall script for `tree` would follow; AutoinstallError says why there is none."""
    if layout is None:
        raise AutoinstallError(f"{label} has no recorded disk layout (captured without prepareclient?)")
    if not layout.disks:
        raise AutoinstallError(f"{label}: prepareclient recorded no disks on the master client")
    fstab = tree / "etc" / "fstab"
    try:
        text = fstab.read_text(errors="surrogateescape")
    except OSError as e:
        raise AutoinstallError(f"{label}: cannot read the image's /etc/fstab ({e.strerror})") from None
    try:
        the_plan = plan(layout, text, DISK_FILESYSTEMS)
    except LayoutError as e:
        raise AutoinstallError(f"{label}: {e}") from None
    # The installed system assembles its arrays and activates its volumes with its own tools, at boot.
    for needed, tool, package in ((the_plan.stack.arrays, "mdadm", "mdadm"), (the_plan.stack.vgs, "lvm", "lvm2")):
        if needed and not any((tree / d / tool).exists() for d in ("usr/sbin", "sbin")):
            raise AutoinstallError(f"{label}: the master's filesystems are on {'md' if tool == 'mdadm' else 'LVM'}, "
                                   f"but the image has no {tool} (Debian package {package}) to boot from them")
    return the_plan


def generate(iv: ImageVersion, settings: ScriptSettings, generated: float | None = None) -> tuple[str, Plan]:
    """The script text for `iv` and the plan it follows; AutoinstallError says what is missing."""
    layout = Layout.from_json(iv.layout) if iv.layout else None
    the_plan = installable_plan(layout, Path(iv.path), f"{iv.name} v{iv.version}")
    return render(iv, the_plan, settings, time.time() if generated is None else generated), the_plan


def fetch_script(name: str, version: int, settings: ScriptSettings) -> str:
    """The installer's image fetch step alone (its own pull_image, by the same variables: TRANSPORT,
    TARGET, MAC, INSTALL_TOKEN, RSYNC_USER ...) into $TARGET: no disks touched. For benchmarks and
    transport tests that run the real installer commands without partitioning a disk."""
    header = (TEMPLATE.replace("@@NAME@@", name).replace("@@VERSION@@", str(version))
              .replace("@@WHEN@@", "-").replace("@@PORT@@", str(settings.rsync_port))
              .replace("@@SERVER@@", _safe(settings.imageserver or "")).replace("@@FIRMWARE@@", "-")
              .replace("@@DISKS@@", "-"))
    # A machine that is done goes on seeding for as long as its install would go on (BT_SEED_SECONDS).
    return header + ('\nmkdir -p "$TARGET"\npull_image\nstage finished "fetched $MODULE into $TARGET"\n'
                     'if [ -n "$BT_PID" ]; then wait "$BT_PID" || true; BT_PID=\'\'; fi\n')


def write_script(catalog: Catalog, iv: ImageVersion, settings: ScriptSettings) -> Path:
    """Write scripts/NAME.master atomically (mode 0644; it holds no secrets: tokens come per host)."""
    text, _ = generate(iv, settings)
    path = catalog.paths.script(iv.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


TEMPLATE = r'''#!/bin/sh
# shellcheck disable=SC2153  # DEV0_1, UUID0_1 ... are set through eval (part_dev) and command substitution
# @@NAME@@.master -- autoinstall script for image @@NAME@@, made from v@@VERSION@@ by the imageserver on @@WHEN@@.
# Master client: firmware @@FIRMWARE@@; disks: @@DISKS@@.
#
# Partitions and formats this machine's disks, pulls the image over rsync, makes it bootable.
# Every value about this machine comes from the environment (the installer exports what the
# imageserver passed on the kernel command line or over DHCP):
#   IMAGESERVER(_HOST) RSYNC_PORT IMAGE VERSION MODULE  where and what to pull
#   HOSTNAME DOMAIN IPADDR NETMASK GATEWAY DNS MAC IFACE NET_MODE   the installed system's identity
#   IMAGESERVER_URL INSTALL_TOKEN   stage reports (POST $IMAGESERVER_URL/install/$MAC/events)
#   RSYNC_USER RSYNC_PASSWORD       this install's rsync credentials; UPDATE_TOKEN for updateclient
#   DISK (DISK0) DISK1 ...          target disks (default: the first whole disks in /sys/block)
#   TARGET                          mount root of the new system (default /mnt/target)
#   SKIP_BOOTLOADER=1               do not install a boot loader
#   TRANSPORT                       rsync (default) | bittorrent (the version's torrent, then rsync --size-only)
#                                   | multicast (the imageserver's udpcast session, then rsync)
#   BT_LOG                          a file for aria2c's own log (peers, pieces: for diagnosing a swarm)
set -eu
umask 022
export PATH="$PATH:/sbin:/usr/sbin:/bin:/usr/bin"

IMAGE=${IMAGE:-@@NAME@@}
VERSION=${VERSION:-@@VERSION@@}
MODULE=${MODULE:-${IMAGE}_v${VERSION}}
IMAGESERVER_HOST=${IMAGESERVER_HOST:-${IMAGESERVER:-@@SERVER@@}}
IMAGESERVER_HOST=${IMAGESERVER_HOST%%:*}
RSYNC_PORT=${RSYNC_PORT:-@@PORT@@}
# This install's rsync user (the password is in RSYNC_PASSWORD, exported: rsync reads it from there).
RSYNC_AUTH=${RSYNC_USER:+$RSYNC_USER@}
TARGET=${TARGET:-/mnt/target}
TARGET=${TARGET%/}
STAGE=start
MOUNTED=''
LOOPS=''
MDS=''
VGS=''
BT_PID=''
export IMAGE VERSION MODULE IMAGESERVER_HOST TARGET

say() { echo "autoinstall: $*"; }

# The text of a JSON string: quotes, backslashes and control characters dropped.
json_text() { printf '%s' "$1" | tr -d '\000-\037"\134'; }

# report STAGE DETAIL -- POST an install event; a reporting failure never stops the install.
report() {
    [ -n "${IMAGESERVER_URL:-}" ] && [ -n "${MAC:-}" ] || return 0
    body="{\"stage\": \"$(json_text "$1")\", \"detail\": \"$(json_text "$2")\"}"
    url="$IMAGESERVER_URL/install/$MAC/events"
    auth="Authorization: Bearer ${INSTALL_TOKEN:-}"
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -m 10 -o /dev/null -H "$auth" -H 'Content-Type: application/json' --data "$body" "$url" \
            >/dev/null 2>&1 || say "could not report stage $1"
    elif command -v wget >/dev/null 2>&1; then
        # timeout(1), not wget -T: busybox 1.35's static wget crashes on -T.
        timeout 10 wget -q -O /dev/null --header "$auth" --header 'Content-Type: application/json' \
            --post-data "$body" "$url" >/dev/null 2>&1 || say "could not report stage $1"
    elif command -v busybox >/dev/null 2>&1; then
        busybox timeout 10 busybox wget -q -O /dev/null --header "$auth" --header 'Content-Type: application/json' \
            --post-data "$body" "$url" >/dev/null 2>&1 || say "could not report stage $1"
    fi
    return 0
}

stage() {
    STAGE=$1
    if [ -n "${STAGE_FILE:-}" ]; then echo "$1" >"$STAGE_FILE" || true; fi
    say "[$1] $2"
    report "$1" "$2"
}

# die REASON -- stop the install; the installer's init reports the failure with the log tail.
die() {
    say "FAILED at stage $STAGE: $*"
    [ -n "${STAGE_FILE:-}" ] || report failed "stage: $STAGE: $*"
    exit 1
}

cleanup() {
    rc=$?
    set +e
    stop_seeding
    sync
    printf '%s\n' "$MOUNTED" | while IFS= read -r m; do
        [ -n "$m" ] || continue
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "could not unmount $m"
    done
    # Volume groups, then arrays, closed cleanly (an array stopped clean needs no resync at its next start).
    for vg in $VGS; do lvm_ vgchange -an "$vg" >/dev/null 2>&1 || say "could not deactivate volume group $vg"; done
    for md in $MDS; do mdadm --stop "$md" >/dev/null 2>&1 || say "could not stop $md"; done
    for l in $LOOPS; do losetup -d "$l" 2>/dev/null || say "could not detach $l"; done
    if [ "$rc" != 0 ] && [ "$STAGE" != failed ]; then say "stopped at stage $STAGE (exit $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

remember_mount() {
    MOUNTED="$1
$MOUNTED"
}

# Whole disks of this machine in /sys/block order (no loop, RAM, optical, floppy or virtual devices,
# and not the boot medium the installer came from: MEDIA_DEVICE, a USB stick made by mkbootmedia).
list_disks() {
    for path in /sys/block/*; do
        name=${path##*/}
        case $name in loop*|ram*|zram*|sr*|fd*|dm-*|md*|nbd*) continue ;; esac
        case ${MEDIA_DEVICE:-} in "/dev/$name"|"/dev/$name"[0-9]*|"/dev/${name}p"[0-9]*) continue ;; esac
        [ "$(cat "$path/ro" 2>/dev/null || echo 1)" = 0 ] || continue
        [ "$(cat "$path/size" 2>/dev/null || echo 0)" != 0 ] || continue
        [ -b "/dev/$name" ] && echo "/dev/$name"
    done
    return 0
}

# DISK0 is DISK (or the first disk found); AUTO1, AUTO2 ... are the other disks, in order.
pick_disks() {
    DISK0=${DISK0:-${DISK:-}}
    n=0
    for d in $(list_disks); do
        if [ -z "$DISK0" ]; then DISK0=$d; continue; fi
        [ "$d" = "$DISK0" ] && continue
        n=$((n + 1))
        eval "AUTO$n=\$d"
    done
    [ -n "$DISK0" ] || die "no disk found (set DISK=/dev/...)"
    [ -b "$DISK0" ] || [ -f "$DISK0" ] || die "$DISK0 is not a block device"
}

disk_bytes() {
    if [ -b "$1" ]; then blockdev --getsize64 "$1"; else stat -c %s "$1"; fi
}

need_bytes() {
    have=$(disk_bytes "$1")
    [ "$have" -ge "$2" ] || die "$1 has $have bytes; the partition layout needs at least $2"
}

# new_partuuid DISK N LABEL -- partition N's PARTUUID as this install made it (GPT: its GUID; MBR:
# the new disk id and the number), read from the table: a loop-mapped partition shows no PARTUUID.
new_partuuid() {
    if [ "$3" = gpt ]; then
        sfdisk --part-uuid "$1" "$2" | tr 'A-F' 'a-f'
    else
        id=$(sfdisk --disk-id "$1" | tr 'A-F' 'a-f')
        printf '%s-%02x\n' "${id#0x}" "$2"
    fi
}

# swap_tail VAR DISK SPAN MASTER_START LABEL -- where swap partitions spanning SPAN sectors at the end of
# the master's disk start on DISK: as late as they fit (GPT keeps 33 sectors for its backup table), on a
# MiB boundary, never before where they started on the master (a disk of the master's size).
swap_tail() {
    ss=512
    if [ -b "$2" ]; then ss=$(blockdev --getss "$2"); fi
    end=$(($(disk_bytes "$2") / ss))
    if [ "$5" = gpt ]; then end=$((end - 33)); fi
    align=$((1048576 / ss))
    start=$(((end - $3) / align * align))
    if [ "$start" -lt "$4" ]; then start=$4; fi
    eval "$1=\$start"
}

# settle DISK -- wait (up to 3 s) for the partition nodes the kernel makes after sfdisk re-read the table.
settle() {
    name=${1##*/}
    if [ -f "/sys/block/$name/loop/partscan" ] && [ "$(cat "/sys/block/$name/loop/partscan")" = 0 ]; then
        return 0  # a loop device without partition scanning: part_dev maps partitions itself
    fi
    n=0
    while [ $n -lt 30 ]; do
        for p in "$1"1 "$1"p1; do [ -b "$p" ] && return 0; done
        [ $n = 5 ] && command -v mdev >/dev/null 2>&1 && mdev -s
        sleep 0.1
        n=$((n + 1))
    done
    return 0
}

# part_dev VAR DISK N -- set VAR to partition N's device: the kernel's node, or (no node: a loop
# device without partition scanning, a disk image file) a loop device over its sectors.
part_dev() {
    case $2 in *[0-9]) dev=$2p$3 ;; *) dev=$2$3 ;; esac
    if [ ! -b "$dev" ]; then
        ss=512
        if [ -b "$2" ]; then ss=$(blockdev --getss "$2"); fi
        geometry=$(sfdisk --dump "$2" | sed -n "s|^$2p\{0,1\}$3 *: *start= *\([0-9]*\), *size= *\([0-9]*\).*|\1 \2|p")
        [ -n "$geometry" ] || die "partition $3 of $2 is not in its partition table"
        # shellcheck disable=SC2086  # "START SIZE" split into $4 $5
        set -- "$1" "$2" "$3" $geometry
        dev=$(losetup -f --show -o $(($4 * ss)) --sizelimit $(($5 * ss)) "$2") ||
            die "no device node for partition $3 of $2, and losetup could not map it"
        LOOPS="$LOOPS $dev"
    fi
    eval "$1=\$dev"
}

# ---- software RAID and LVM: the arrays and volume groups the master's filesystems were on ----

# make_md VAR DEVICE LEVEL N METADATA NAME MEMBER... -- a new md array (a new UUID) of the MEMBER
# partitions in slot order ("missing": a slot the master's array had empty; members past N are spares),
# its name this host's (HOSTNAME:NAME). It starts at once and resyncs in the background (md copies
# while the install goes on, and goes on after the reboot where it stopped): nothing waits for it.
make_md() {
    var=$1 dev=$2 level=$3 n=$4 meta=$5 name=$6
    shift 6
    command -v mdadm >/dev/null 2>&1 || die "no mdadm in this installer: cannot make $dev"
    for m in "$@"; do
        [ "$m" = missing ] || mdadm --zero-superblock --force "$m" >/dev/null 2>&1 || true
    done
    extra=''
    if [ $(($# - n)) -gt 0 ]; then extra="--spare-devices=$(($# - n))"; fi
    # shellcheck disable=SC2086  # $extra: one option or none
    mdadm --create "$dev" --run --metadata="$meta" --level="$level" --raid-devices="$n" --name="$name" \
        ${HOSTNAME:+--homehost="$HOSTNAME"} $extra "$@" </dev/null || die "mdadm --create $dev ($level) failed"
    MDS="$dev $MDS"
    [ -b "$dev" ] || die "mdadm made no $dev"
    eval "$var=\$dev"
}

# The installer has no udev: LVM makes its /dev nodes itself and waits for no udev event.
LVM_CONFIG='activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
devices { obtain_device_list_from_udev = 0 external_device_info_source = "none" use_devicesfile = 0 }'
lvm_() {
    cmd=$1
    shift
    lvm "$cmd" --config "$LVM_CONFIG" "$@"
}

# make_vg NAME EXTENT_BYTES PV... -- physical volumes (new UUIDs) and the volume group on them.
make_vg() {
    vg=$1 extent=$2
    shift 2
    command -v lvm >/dev/null 2>&1 || die "no lvm in this installer: cannot make volume group $vg"
    mkdir -p /run/lock/lvm /run/lvm
    for pv in "$@"; do
        lvm_ pvcreate -ff -y "$pv" >/dev/null || die "pvcreate $pv failed"
    done
    lvm_ vgcreate -y -s "$((extent / 1024))k" "$vg" "$@" >/dev/null || die "vgcreate $vg failed"
    VGS="$vg $VGS"
}

# make_lv VAR VG LV EXTENTS|rest MASTER_VG_EXTENTS -- a logical volume of EXTENTS extents (fewer in the
# same proportion when this VG is smaller than the master's), or all that is left ("rest").
make_lv() {
    var=$1 vg=$2 lv=$3 n=$4 total=$5
    if [ "$n" = rest ]; then
        set -- -l 100%FREE
    else
        have=$(lvm_ vgs --noheadings -o vg_extent_count "$vg" | tr -d ' ')
        [ "$have" -ge "$total" ] || n=$((n * have / total))
        set -- -l "$n"
    fi
    lvm_ lvcreate -y -Wy -Zy -n "$lv" "$@" "$vg" >/dev/null || die "lvcreate $vg/$lv failed"
    # device-mapper's name: VG-LV, each '-' inside a name doubled
    dmname="$(printf '%s' "$vg" | sed 's/-/--/g')-$(printf '%s' "$lv" | sed 's/-/--/g')"
    dev=/dev/mapper/$dmname
    [ -b "$dev" ] || lvm_ vgmknodes "$vg" >/dev/null 2>&1 || true
    [ -b "$dev" ] || die "lvcreate made no $dev"
    say "logical volume $vg/$lv: $(lvm_ lvs --noheadings --units m -o lv_size "$vg/$lv" | tr -d ' ')"
    eval "$var=\$dev"
}

# The new system's /etc/mdadm/mdadm.conf: its own settings kept, the master's ARRAY lines replaced by
# this machine's arrays (new UUIDs), which the initramfs assembles at boot.
write_mdadm_conf() {
    conf=$TARGET/etc/mdadm/mdadm.conf
    stage raid "mdadm.conf: $(echo "$MDS" | wc -w) array(s) of this machine"
    mkdir -p "${conf%/*}"
    {
        printf '# ARRAY lines written by the imageserver autoinstall script: this machine'"'"'s arrays.\n'
        if [ -f "$conf" ]; then
            # ARRAY lines and their indented continuation lines (devices=...) go.
            awk '/^[ \t]*ARRAY[ \t]/ { skip = 1; next } skip && /^[ \t]/ { next } { skip = 0 }
                 /^# ARRAY lines written by the imageserver/ { next } { print }' "$conf"
        fi
        mdadm --detail --scan
    } >"$conf.new" || die "cannot write $conf"
    mv -f "$conf.new" "$conf"
}

# mkfs_fs TYPE DEVICE LABEL [esp] -- a new filesystem (new UUID), keeping the master's label. An EFI
# system partition of 64 MiB or more is FAT32, as the UEFI specification wants (mkfs.vfat alone makes
# FAT16 below 512 MiB); a smaller one cannot hold enough clusters for FAT32 and stays what mkfs picks.
mkfs_fs() {
    if [ "$1" = vfat ] && [ "${4:-}" = esp ] && [ "$(disk_bytes "$2")" -ge 67108864 ]; then
        mkfs_fs vfat32 "$2" "$3"
        return
    fi
    case $1 in
        ext2|ext3|ext4) set -- "$1" "$2" "$3" "mkfs.$1" -F -q ;;
        xfs) set -- "$1" "$2" "$3" mkfs.xfs -f -q ;;
        vfat) set -- "$1" "$2" "$3" mkfs.vfat ;;
        vfat32) set -- vfat "$2" "$3" mkfs.vfat -F 32 ;;
        swap) set -- "$1" "$2" "$3" mkswap ;;
        *) die "cannot make a $1 filesystem" ;;
    esac
    fs=$1 dev=$2 label=$3
    shift 3
    if [ -n "$label" ]; then
        if [ "$fs" = vfat ]; then set -- "$@" -n "$label"; else set -- "$@" -L "$label"; fi
    fi
    "$@" "$dev" >/dev/null || die "$1 on $dev failed"
}

fs_uuid() {
    u=$(blkid -c /dev/null -o value -s UUID "$1") || true
    [ -n "$u" ] || die "no UUID on $1 after mkfs"
    echo "$u"
}

# mount_fs TYPE DEVICE MOUNTPOINT
mount_fs() {
    mkdir -p "$TARGET$3"
    mount -t "$1" "$2" "$TARGET$3" || die "cannot mount $2 ($1) on $TARGET$3"
    remember_mount "$TARGET$3"
}

# bt_fetch QUERY -- one aria2c run of this host's torrent (GET /install/MAC/torrent?QUERY) in $btdir.
# Returns once every piece is in (SHA-1 checked, written: no disk cache); aria2c then goes on seeding in
# the background while the install continues, for the machines still downloading (a swarm whose finished
# members all leave at once leaves its slowest to the server alone), until stop_seeding or BT_SEED_SECONDS.
bt_fetch() {
    curl -fsS -m 120 -o "$btdir/image.torrent" -H "Authorization: Bearer ${INSTALL_TOKEN:-}" \
        "$IMAGESERVER_URL/install/$MAC/torrent?$1" || { say "no torrent from $IMAGESERVER_URL"; return 1; }
    rm -f "$btdir/complete"
    printf '#!/bin/sh\n: >%s/complete\n' "$btdir" >"$btdir/on-complete"
    chmod 755 "$btdir/on-complete"
    # No DHT, peer exchange or local discovery: peers only from the imageserver's tracker (a private torrent).
    # A swarm without progress for BT_STOP_TIMEOUT seconds gives up.
    aria2c --dir="$btdir" --seed-ratio=0.0 --seed-time="$(awk "BEGIN { print ${BT_SEED_SECONDS:-30} / 60 }")" \
        --on-bt-download-complete="$btdir/on-complete" --disk-cache=0 \
        --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
        --enable-peer-exchange=false --file-allocation=none --auto-file-renaming=false --allow-overwrite=true \
        --summary-interval=0 --console-log-level=error --quiet=true --bt-stop-timeout="${BT_STOP_TIMEOUT:-60}" \
        --bt-tracker-connect-timeout=10 --bt-tracker-timeout=10 --connect-timeout=10 --timeout=30 \
        --max-tries=3 --retry-wait=1 --split=1 --max-connection-per-server=1 --bt-max-peers="${BT_MAX_PEERS:-80}" \
        ${BT_LOG:+--log="$BT_LOG" --log-level=info} -T "$btdir/image.torrent" &
    BT_PID=$!
    while [ ! -e "$btdir/complete" ] && kill -0 "$BT_PID" 2>/dev/null; do sleep 0.2; done
    [ -e "$btdir/complete" ] && return 0
    wait "$BT_PID" || say "aria2c stopped (exit $?)"
    BT_PID=''
    return 1
}

# stop_seeding -- end the background seeding (before unmounting: aria2c holds files of the target open).
stop_seeding() {
    [ -n "$BT_PID" ] || return 0
    kill "$BT_PID" 2>/dev/null || true
    wait "$BT_PID" 2>/dev/null || true
    BT_PID=''
}

# pull_torrent -- the image's regular files by BitTorrent (aria2c), written straight into $TARGET (the
# torrent's top directory is a symlink to it): from the imageserver's seeder and every machine
# installing the same version at once; if that swarm stalls, again with the imageserver's HTTP web seed
# added (aria2c keeps the pieces it has). 1 if both fail.
pull_torrent() {
    command -v aria2c >/dev/null 2>&1 || { say "no aria2c in this installer"; return 1; }
    if [ -z "${IMAGESERVER_URL:-}" ] || [ -z "${MAC:-}" ]; then
        say "no IMAGESERVER_URL/MAC for the torrent"
        return 1
    fi
    btdir=${BT_DIR:-/tmp/bt.$$}
    rm -rf "$btdir"
    mkdir -p "$btdir"
    ln -s "$TARGET" "$btdir/${IMAGE}_v${VERSION}"
    if bt_fetch webseed=0 || { say "BitTorrent swarm stalled: again with the web seed"; bt_fetch webseed=1; }; then
        return 0  # $btdir stays while aria2c seeds from it; nothing in it is part of the target
    fi
    rm -rf "$btdir"
    return 1
}

# jitter N -- a random whole number in [0, N): machines refused together must not retry together.
jitter() {
    r=$(od -An -N2 -tu2 /dev/urandom 2>/dev/null | tr -dc 0-9) || true
    echo $(( ${r:-$$} % ($1 > 0 ? $1 : 1) ))
}

# rsync_admitted ARGS... -- rsync ARGS, waiting in line while the imageserver's rsync daemon is full.
# The daemon runs at most [rsyncd] max_connections transfers and refuses the rest with "@ERROR: max
# connections (N) reached" (exit code 5): a mass reboot then queues instead of failing. A refused
# machine reports stage "queued" (status/watch/the dashboard show it waiting), sleeps a jittered,
# doubling pause (RSYNC_RETRY_FIRST s up to RSYNC_RETRY_MAX s) and tries again, for at most
# RSYNC_QUEUE_TIMEOUT s; once admitted it reports its stage again. Any other failure returns at once.
rsync_admitted() {
    tries=0 waited=0 pause=${RSYNC_RETRY_FIRST:-2} resume=$STAGE
    err=$(mktemp 2>/dev/null) || err=/tmp/autoinstall-rsync.$$
    while :; do
        rc=0
        rsync "$@" 2>"$err" || rc=$?
        if [ "$rc" = 5 ] && grep -q 'max connections' "$err" && [ "$waited" -lt "${RSYNC_QUEUE_TIMEOUT:-21600}" ]; then
            tries=$((tries + 1))
            sleep_for=$((pause + $(jitter "$pause")))
            # Every refusal would be one event per machine every few seconds: the first and every tenth.
            if [ "$tries" = 1 ] || [ $((tries % 10)) = 0 ]; then
                stage queued "waiting for a free transfer slot on $IMAGESERVER_HOST:$RSYNC_PORT (try $tries)"
            fi
            sleep "$sleep_for"
            waited=$((waited + sleep_for))
            pause=$((pause * 2))
            [ "$pause" -le "${RSYNC_RETRY_MAX:-30}" ] || pause=${RSYNC_RETRY_MAX:-30}
            continue
        fi
        cat "$err" >&2
        rm -f "$err"
        [ "$tries" = 0 ] || stage "$resume" "admitted after $tries refusal(s), ${waited} s in line"
        return "$rc"
    done
}

# shellcheck disable=SC2120  # called with --exclude options only when the image has FAT mounts
# pull_image [--exclude=...] -- the whole image, with hard links, ACLs, xattrs, sparse files, devices.
# TRANSPORT=bittorrent: the files' data by torrent first; then the same rsync with --size-only writes
# what a torrent cannot carry (owners, modes, mtimes, xattrs, ACLs, hard links, symlinks, devices,
# empty files and directories) without moving file data (the pieces were SHA-1 checked). If the
# torrent fails, the full rsync runs (no --size-only: a half-written file has the size but not the mtime).
# TRANSPORT=multicast first takes the image from the imageserver's udpcast session; the rsync pass after it
# then moves only what the stream did not bring (nothing, when it arrived whole), or, if the stream's digest
# did not match, compares every file by checksum.
pull_image() {
    rsync_check=''
    case "${TRANSPORT:-rsync}" in
    bittorrent)
        stage rsync "$MODULE by BitTorrent from $IMAGESERVER_URL"
        if pull_torrent; then
            rsync_check=--size-only
            stage rsync "$MODULE metadata by rsync from $IMAGESERVER_HOST:$RSYNC_PORT (data came by BitTorrent)"
        else
            stage rsync "BitTorrent failed: $MODULE by rsync from $IMAGESERVER_HOST:$RSYNC_PORT"
        fi
        ;;
    multicast)
        if pull_multicast "$@"; then
            stage rsync "$MODULE from $IMAGESERVER_HOST:$RSYNC_PORT: what the multicast did not bring"
        else
            rsync_check=--checksum
            stage rsync "$MODULE from $IMAGESERVER_HOST:$RSYNC_PORT (multicast fallback: $MULTICAST_WHY)"
        fi
        ;;
    esac
    # shellcheck disable=SC2086  # empty or one option
    rsync_admitted -aHAXS $rsync_check --numeric-ids --devices --specials --delete --timeout=600 \
        --exclude=/boot/ "$@" \
        "rsync://${RSYNC_AUTH}$IMAGESERVER_HOST:$RSYNC_PORT/$MODULE/" "$TARGET/" ||
        die "rsync of $MODULE from $IMAGESERVER_HOST:$RSYNC_PORT failed"
    # /boot without -S: boot loaders (syslinux, some grub stages) cannot read files with holes.
    if rsync_admitted --list-only "rsync://${RSYNC_AUTH}$IMAGESERVER_HOST:$RSYNC_PORT/$MODULE/boot/" \
        >/dev/null 2>&1; then
        # shellcheck disable=SC2086  # empty or one option
        rsync_admitted -aHAX $rsync_check --numeric-ids --delete --timeout=600 \
            "rsync://${RSYNC_AUTH}$IMAGESERVER_HOST:$RSYNC_PORT/$MODULE/boot/" "$TARGET/boot/" ||
            die "rsync of $MODULE/boot from $IMAGESERVER_HOST:$RSYNC_PORT failed"
    fi
}

# mc_field NAME FILE -- one NAME=value line of the imageserver's text answer (values: [A-Za-z0-9.:_-])
mc_field() { sed -n "s/^$1=\([A-Za-z0-9.:_-]*\)\$/\1/p" "$2" | head -n 1; }

# pull_multicast [--exclude=/MOUNT ...] -- join the udpcast session of this version and unpack the stream
# straight into $TARGET (no staging): udp-receiver | tee (sha256) | openssl (the session's key) | GNU tar.
# 0 when the stream's digest equals the one the server sent; else MULTICAST_WHY says why and 1.
MULTICAST_WHY=''
pull_multicast() {
    for tool in udp-receiver openssl sha256sum mkfifo curl; do
        command -v "$tool" >/dev/null 2>&1 || { MULTICAST_WHY="no $tool in the installer"; return 1; }
    done
    [ -x /usr/bin/tar ] || { MULTICAST_WHY="no GNU tar (/usr/bin/tar) in the installer"; return 1; }
    mc=${MULTICAST_DIR:-/tmp/multicast}
    rm -rf "$mc" && mkdir -m 700 "$mc"
    mc_url="$IMAGESERVER_URL/install/$MAC/multicast"
    mc_auth="Authorization: Bearer ${INSTALL_TOKEN:-}"
    if ! curl -sS -m 20 -f -X POST -H "$mc_auth" -H 'Accept: text/plain' -o "$mc/seat" "$mc_url" 2>"$mc/err"; then
        MULTICAST_WHY="no seat: $(head -c 200 "$mc/err")"; return 1
    fi
    portbase=$(mc_field portbase "$mc/seat"); rdv=$(mc_field rdv_address "$mc/seat")
    sender=$(mc_field sender "$mc/seat"); key=$(mc_field key "$mc/seat"); window=$(mc_field start_window "$mc/seat")
    case $sender in *[!0-9.]*) sender='' ;; esac  # a name, not the address udp-receiver prints: no check
    case "$portbase:$key:$rdv" in
        *[!0-9a-f:.]*|:*|*::*|*:) MULTICAST_WHY="a seat without portbase, key or address"; return 1 ;;
    esac
    (umask 077 && printf '%s' "$key" >"$mc/key")
    mc_exclude=''
    for a in "$@"; do
        case $a in --exclude=/*) p=${a#--exclude=/}; mc_exclude="$mc_exclude --exclude=./${p%/}" ;; esac
    done
    # Multicast leaves by the provisioning NIC even when a default route points elsewhere.
    ip route replace 224.0.0.0/4 dev "$IFACE" 2>/dev/null || true
    stage multicast "$MODULE: session on $rdv port $portbase, start window ${window:-?} s"
    mkfifo "$mc/ciphertext"
    sha256sum <"$mc/ciphertext" >"$mc/received" &
    hasher=$!
    # The pipeline's status is tar's; a receiver or cipher failure shows in the digest compared below.
    # shellcheck disable=SC2086  # mc_exclude: a list of options
    # --receive-timeout: a sender that stops mid-stream (killed, dropped us, gone) ends the pull; the
    # rsync fallback then brings the image instead of the machine waiting forever.
    ( udp-receiver --nokbd --interface "$IFACE" --portbase "$portbase" --mcast-rdv-address "$rdv" \
          --start-timeout "$(( ${window%.*} + 60 ))" --receive-timeout "${MULTICAST_RECEIVE_TIMEOUT:-60}" \
          2>"$mc/log" |
          tee "$mc/ciphertext" | openssl enc -d -aes-256-ctr -pbkdf2 -pass "file:$mc/key" |
          /usr/bin/tar -x -C "$TARGET" --numeric-owner --acls --xattrs --xattrs-include='*' --same-permissions \
              --same-owner --delay-directory-restore $mc_exclude -f - ) 2>"$mc/unpack"
    rc=$?
    wait "$hasher" || true
    rm -f "$mc/key"
    if [ "$rc" != 0 ]; then
        MULTICAST_WHY="the stream failed ($rc): $(tr '\r' '\n' <"$mc/log" | tail -n 2 | tr '\n' ' ')"
        MULTICAST_WHY="$MULTICAST_WHY$(head -c 200 "$mc/unpack")"
        return 1
    fi
    if [ -n "$sender" ] && ! tr '\r' '\n' <"$mc/log" | grep -q "Connected as #[0-9]* to $sender\$"; then
        MULTICAST_WHY="the stream came from another sender than $sender"; return 1
    fi
    got=$(cut -d' ' -f1 "$mc/received")
    want=''
    i=0
    while [ $i -lt 30 ]; do
        if curl -sS -m 10 -f -H "$mc_auth" -H 'Accept: text/plain' -o "$mc/state" "$mc_url" 2>/dev/null; then
            case $(mc_field state "$mc/state") in
                done) want=$(mc_field sha256 "$mc/state"); break ;;
                failed) break ;;
            esac
        fi
        sleep 1; i=$((i + 1))
    done
    if [ -z "$want" ] || [ "$got" != "$want" ]; then
        MULTICAST_WHY="digest ${got:-none} is not the sender's ${want:-unknown}"; return 1
    fi
    say "multicast: $MODULE arrived whole (sha256 $got)"
    return 0
}

# pull_fat MOUNTPOINT -- a FAT filesystem (the ESP) keeps no owners, modes, links or xattrs.
pull_fat() {
    rsync_admitted -rtO --modify-window=1 --delete --timeout=600 \
        "rsync://${RSYNC_AUTH}$IMAGESERVER_HOST:$RSYNC_PORT/$MODULE$1/" "$TARGET$1/" ||
        die "rsync of $MODULE$1 (FAT) failed"
}

make_swapfile() {
    say "swap file $1 ($2 KiB)"
    dd if=/dev/zero of="$TARGET$1" bs=1024 count="$2" 2>/dev/null || die "cannot write swap file $1"
    chmod 600 "$TARGET$1"
    mkswap "$TARGET$1" >/dev/null
}

# private_file PATH -- stdin into PATH, readable by root only. A umask set inside "( ... ) >PATH" comes
# too late (the shell opens PATH first), and an existing file keeps its mode: a new file, renamed.
private_file() {
    rm -f "$1.new"
    (umask 077 && cat >"$1.new") && chmod 600 "$1.new" && mv -f "$1.new" "$1"
}

# updateclient on the installed system: its settings (the host's update token, not the install
# token, authenticates its reports) and the script itself, best effort (an install without them is still an install).
setup_updateclient() {
    [ -n "${IMAGESERVER_URL:-}" ] || return 0
    mkdir -p "$TARGET/etc/systemimager"
    {
        printf '# Written by the imageserver autoinstall script; read by updateclient.\n'
        printf 'IMAGESERVER=%s\nHOSTNAME=%s\nTOKEN=%s\n' "$IMAGESERVER_URL" "${HOSTNAME:-}" \
            "${UPDATE_TOKEN:-${INSTALL_TOKEN:-}}"
    } | private_file "$TARGET/etc/systemimager/updateclient.conf"
    mkdir -p "$TARGET/usr/local/sbin"
    dst=$TARGET/usr/local/sbin/updateclient src=$IMAGESERVER_URL/client/updateclient
    # curl where there is one (busybox wget has no working timeout of its own); under sh -e.
    got=0
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -m 60 -o "$dst" "$src" 2>/dev/null || got=$?
    else
        timeout 60 wget -q -O "$dst" "$src" 2>/dev/null || got=$?
    fi
    if [ "$got" = 0 ]; then
        chmod 755 "$TARGET/usr/local/sbin/updateclient"
    else
        rm -f "$TARGET/usr/local/sbin/updateclient"
        say "updateclient not fetched from $IMAGESERVER_URL/client/updateclient (fetch it later)"
    fi
}

set_hostname() {
    [ -n "${HOSTNAME:-}" ] || return 0
    echo "$HOSTNAME" >"$TARGET/etc/hostname"
    fqdn=$HOSTNAME
    if [ -n "${DOMAIN:-}" ]; then fqdn=$HOSTNAME.$DOMAIN; fi
    if [ -f "$TARGET/etc/hosts" ]; then
        sed -i '/^127\.0\.1\.1[[:space:]]/d' "$TARGET/etc/hosts"
    fi
    printf '127.0.1.1\t%s %s\n' "$fqdn" "$HOSTNAME" >>"$TARGET/etc/hosts"
}

mask_to_prefix() {
    bits=0
    old_ifs=$IFS
    IFS=.
    # shellcheck disable=SC2086  # split the dotted quad
    set -- $1
    IFS=$old_ifs
    for octet in "$@"; do
        case $octet in
            255) bits=$((bits + 8)) ;; 254) bits=$((bits + 7)) ;; 252) bits=$((bits + 6)) ;;
            248) bits=$((bits + 5)) ;; 240) bits=$((bits + 4)) ;; 224) bits=$((bits + 3)) ;;
            192) bits=$((bits + 2)) ;; 128) bits=$((bits + 1)) ;;
        esac
    done
    echo "$bits"
}

# ---- the installed system's network: netplan, NetworkManager, ifupdown or systemd-networkd ----

# image_has PATH... -- one of the PATHs exists in the image (usr-merged links are relative: they resolve there).
image_has() {
    for p in "$@"; do
        if [ -e "$TARGET$p" ]; then return 0; fi
    done
    return 1
}

# unit_enabled UNIT -- the image enables UNIT (a link in some /etc/systemd/system/*.wants).
unit_enabled() {
    for d in "$TARGET"/etc/systemd/system/*.wants; do
        if [ -e "$d/$1" ] || [ -L "$d/$1" ]; then return 0; fi
    done
    return 1
}

# What configures the image's network, from its tree: netplan (it renders for networkd or
# NetworkManager itself), NetworkManager when enabled, ifupdown, systemd-networkd when enabled; else
# the one that is installed. Prints netplan, networkmanager, ifupdown, networkd or none.
network_system() {
    if image_has /usr/sbin/netplan /sbin/netplan && [ -d "$TARGET/etc/netplan" ]; then echo netplan
    elif image_has /usr/sbin/NetworkManager && unit_enabled NetworkManager.service; then echo networkmanager
    elif image_has /sbin/ifup /usr/sbin/ifup && [ -f "$TARGET/etc/network/interfaces" ]; then echo ifupdown
    elif unit_enabled systemd-networkd.service || unit_enabled systemd-networkd.socket; then echo networkd
    elif image_has /usr/sbin/NetworkManager; then echo networkmanager
    elif image_has /lib/systemd/systemd-networkd /usr/lib/systemd/systemd-networkd; then echo networkd
    else echo none
    fi
}

# each LIST -- a comma/space separated list, one item per line; joined SEP LIST -- its items joined by SEP.
each() { printf '%s\n' "$1" | sed 's/[, ]/\n/g' | sed '/^$/d'; }
joined() {
    joined_items=$(each "$2" | tr '\n' '\001')
    printf '%s' "${joined_items%?}" | tr '\001' "$1"
}

# The network of the installed system: static from IPADDR/NETMASK/GATEWAY/DNS, or DHCP (NET_MODE
# overrides), for the NIC with $MAC (by its MAC where the system matches on it, else by the name the
# image gives it), written for what the image uses (network_system).
configure_network() {
    mode=${NET_MODE:-}
    if [ -z "$mode" ]; then
        if [ -n "${IPADDR:-}" ]; then mode=static; else mode=dhcp; fi
    fi
    mac=$(printf '%s' "${MAC:-}" | tr 'A-F' 'a-f')
    prefix=$(mask_to_prefix "${NETMASK:-255.255.255.0}")
    iface=${TARGET_IFACE:-$(image_ifname)}
    iface=${iface:-${IFACE:-eth0}}
    system=$(network_system)
    case $system in
        netplan) write_netplan ;;
        networkmanager) write_nmconnection ;;
        ifupdown) write_ifupdown ;;
        networkd) write_networkd ;;
        *)
            stage network "no netplan, NetworkManager, ifupdown or systemd-networkd in the image: left as it is"
            return 0 ;;
    esac
    if [ "$mode" = static ] && [ -n "${DNS:-}" ] && [ ! -L "$TARGET/etc/resolv.conf" ]; then
        each "$DNS" | sed 's/^/nameserver /' >"$TARGET/etc/resolv.conf"
    fi
}

# /etc/netplan/90-imageserver.yaml (netplan merges every *.yaml in name order). The master's files that
# configure ethernets name its own NICs: renamed to *.yaml.master (netplan reads only *.yaml), so the
# master's settings cannot win on this machine's NIC; files without ethernets (a renderer) stay.
write_netplan() {
    dir=$TARGET/etc/netplan
    f=$dir/90-imageserver.yaml
    for y in "$dir"/*.yaml; do
        if [ ! -f "$y" ] || [ "$y" = "$f" ]; then continue; fi
        if grep -q '^[[:space:]]*ethernets:' "$y"; then
            mv -f "$y" "$y.master"
            say "netplan: the master's ${y##*/} (its NICs) renamed to ${y##*/}.master"
        fi
    done
    {
        # netplan wants its files private (they may hold secrets): private_file
        printf '# Written by the imageserver autoinstall script.\nnetwork:\n  version: 2\n  ethernets:\n'
        if [ -n "$mac" ]; then
            printf '    imageserver:\n      match:\n        macaddress: "%s"\n' "$mac"
        else
            printf '    %s:\n' "$iface"
        fi
        if [ "$mode" = static ]; then
            printf '      dhcp4: false\n      addresses: ["%s/%s"]\n' "$IPADDR" "$prefix"
            if [ -n "${GATEWAY:-}" ]; then
                printf '      routes:\n        - to: 0.0.0.0/0\n          via: %s\n' "$GATEWAY"
            fi
            if [ -n "${DNS:-}" ] || [ -n "${DOMAIN:-}" ]; then
                printf '      nameservers:\n'
                if [ -n "${DNS:-}" ]; then printf '        addresses: [%s]\n' "$(joined , "$DNS")"; fi
                if [ -n "${DOMAIN:-}" ]; then printf '        search: [%s]\n' "$DOMAIN"; fi
            fi
        else
            printf '      dhcp4: true\n'
        fi
    } | private_file "$f"
    stage network "$mode, netplan (${mac:-$iface})"
}

# /etc/NetworkManager/system-connections/imageserver.nmconnection: a keyfile for the NIC with $MAC,
# preferred over any connection of the master's (autoconnect-priority).
write_nmconnection() {
    dir=$TARGET/etc/NetworkManager/system-connections
    mkdir -p "$dir"
    f=$dir/imageserver.nmconnection
    uuid=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || true)
    {
        # NetworkManager ignores keyfiles others can read: private_file
        printf '[connection]\nid=imageserver\n'
        if [ -n "$uuid" ]; then printf 'uuid=%s\n' "$uuid"; fi
        printf 'type=ethernet\nautoconnect=true\nautoconnect-priority=100\n'
        if [ -n "$mac" ]; then printf '\n[ethernet]\nmac-address=%s\n' "$mac"
        else printf 'interface-name=%s\n' "$iface"; fi
        if [ "$mode" = static ]; then
            printf '\n[ipv4]\nmethod=manual\naddress1=%s/%s%s\n' "$IPADDR" "$prefix" "${GATEWAY:+,$GATEWAY}"
            if [ -n "${DNS:-}" ]; then printf 'dns=%s;\n' "$(joined ';' "$DNS")"; fi
            if [ -n "${DOMAIN:-}" ]; then printf 'dns-search=%s;\n' "$DOMAIN"; fi
        else
            printf '\n[ipv4]\nmethod=auto\n'
        fi
    } | private_file "$f"
    stage network "$mode, NetworkManager keyfile (${mac:-$iface})"
}

write_ifupdown() {
    mkdir -p "$TARGET/etc/network/interfaces.d"
    retire_master_stanzas "$TARGET/etc/network/interfaces"
    f=$TARGET/etc/network/interfaces.d/imageserver
    {
        printf 'allow-hotplug %s\n' "$iface"
        if [ "$mode" = static ]; then
            printf 'iface %s inet static\n    address %s/%s\n' "$iface" "$IPADDR" "$prefix"
            if [ -n "${GATEWAY:-}" ]; then printf '    gateway %s\n' "$GATEWAY"; fi
            if [ -n "${DNS:-}" ]; then printf '    dns-nameservers %s\n' "$(joined ' ' "$DNS")"; fi
            if [ -n "${DOMAIN:-}" ]; then printf '    dns-search %s\n' "$DOMAIN"; fi
        else
            printf 'iface %s inet dhcp\n' "$iface"
        fi
    } >"$f"
    stage network "$mode, ifupdown on $iface"
}

write_networkd() {
    mkdir -p "$TARGET/etc/systemd/network"
    f=$TARGET/etc/systemd/network/10-imageserver.network
    {
        if [ -n "$mac" ]; then printf '[Match]\nMACAddress=%s\n' "$mac"
        else printf '[Match]\nName=%s\n' "$iface"; fi
        printf '\n[Network]\n'
        if [ "$mode" = static ]; then
            printf 'Address=%s/%s\n' "$IPADDR" "$prefix"
            if [ -n "${GATEWAY:-}" ]; then printf 'Gateway=%s\n' "$GATEWAY"; fi
            each "${DNS:-}" | sed 's/^/DNS=/'
            if [ -n "${DOMAIN:-}" ]; then printf 'Domains=%s\n' "$DOMAIN"; fi
        else
            printf 'DHCP=ipv4\n'
        fi
    } >"$f"
    stage network "$mode, systemd-networkd (${mac:-$iface})"
}

# ---- what makes a clone this machine, not the master (issue 13) ----

# The installed system's name for the NIC with $MAC, as the image's own udev names it: its net_id
# builtin run on this machine's /sys (bound into $TARGET). The installer's kernel calls it eth0; the
# image, with predictable names, ens2 or enp0s3. Empty when no NIC has $MAC.
image_ifname() {
    [ -n "${MAC:-}" ] || return 0
    want=$(printf '%s' "$MAC" | tr 'A-F' 'a-f')
    kname=''
    for n in /sys/class/net/*; do
        [ "$(cat "$n/address" 2>/dev/null)" = "$want" ] && kname=${n##*/}
    done
    [ -n "$kname" ] || return 0
    # net.ifnames=0 on the image's kernel command line: the kernel's name stays.
    if grep -qs 'net.ifnames=0' "$TARGET/etc/default/grub" "$TARGET/etc/kernel/cmdline" ||
        { [ ! -x "$TARGET/bin/udevadm" ] && [ ! -x "$TARGET/usr/bin/udevadm" ]; }; then
        echo "$kname"
        return 0
    fi
    ids=$(chroot "$TARGET" udevadm test-builtin net_id "/sys/class/net/$kname" 2>&1) || true
    # udev's default NamePolicy order (99-default.link): database, onboard, slot, path.
    for key in ID_NET_NAME_FROM_DATABASE ID_NET_NAME_ONBOARD ID_NET_NAME_SLOT ID_NET_NAME_PATH; do
        name=$(printf '%s\n' "$ids" | sed -n "s/^$key=//p" | head -n 1)
        if [ -n "$name" ]; then echo "$name"; return 0; fi
    done
    echo "$kname"
}

# The master's own NIC stanzas in /etc/network/interfaces (named for the master's hardware) are
# commented out, so they neither clash with this machine's nor wait for a NIC it does not have; lo stays.
retire_master_stanzas() {
    [ -f "$1" ] || return 0
    awk '
        /^[ \t]*(auto|allow-[a-z]+)[ \t]/ {
            keep = ""; n = split($0, w, /[ \t]+/)
            for (i = 2; i <= n; i++) if (w[i] == "lo") keep = "lo"
            if (keep == "") { print "# (master) " $0; next }
            print $1 " lo"; next
        }
        /^[ \t]*iface[ \t]/ { inblock = ($2 != "lo") }
        /^[ \t]*(mapping|source|source-directory|rename)[ \t]/ { inblock = 0 }
        { if (inblock) print "# (master) " $0; else print }
    ' "$1" >"$1.new" && mv -f "$1.new" "$1"
}

# A machine-id, ssh host keys, no random seed, credential secret or DHCP leases of its own: a clone
# that keeps the master's is the same machine to journald, DHCP servers (client id), ssh clients.
new_machine_identity() {
    stage identity "new machine-id and ssh host keys; the master's random seed and leases dropped"
    id=$(cat "$TARGET/etc/machine-id" 2>/dev/null || true)
    # An image made for first boot (empty or "uninitialized") keeps that: systemd makes the id then.
    if printf '%s' "$id" | grep -qE '^[0-9a-f]{32}$'; then
        new=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
        printf '%s\n' "$new" >"$TARGET/etc/machine-id"
        chmod 444 "$TARGET/etc/machine-id"
        if [ -f "$TARGET/var/lib/dbus/machine-id" ] && [ ! -L "$TARGET/var/lib/dbus/machine-id" ]; then
            printf '%s\n' "$new" >"$TARGET/var/lib/dbus/machine-id"
        fi
    fi
    rm -f "$TARGET/var/lib/systemd/random-seed" "$TARGET/var/lib/urandom/random-seed" \
        "$TARGET/var/lib/systemd/credential.secret" \
        "$TARGET"/var/lib/dhcp/*.leases "$TARGET"/var/lib/dhcp/*.lease "$TARGET"/var/lib/dhclient/*.lease* \
        "$TARGET"/var/lib/dhcpcd/*.lease* "$TARGET"/var/lib/NetworkManager/*.lease
    if ls "$TARGET"/etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
        rm -f "$TARGET"/etc/ssh/ssh_host_*_key "$TARGET"/etc/ssh/ssh_host_*_key.pub
        chroot "$TARGET" ssh-keygen -A >/dev/null || die "ssh-keygen -A in the new system failed"
    fi
}

# The image names the master's disks where fstab is not the only place: the initramfs' resume device
# (a UUID that no longer exists costs every boot a 30 s wait). /etc/initramfs-tools/conf.d/resume
# is pointed at this machine's swap (or none), so every later update-initramfs on the node is right.
# The image's initramfs itself: with INITRAMFS_REBUILD=1 rebuilt by the image's own tool in the new
# system; by default the new conf/conf.d/resume (and on md this machine's etc/mdadm/mdadm.conf) is
# appended to it as a further cpio archive (the kernel unpacks concatenated archives in order, the later
# file wins): exact for what changed, and seconds instead of minutes (mkinitramfs with MODULES=most runs
# thousands of commands: over 200 s under TCG). The image's initramfs already has mdadm and lvm when
# the image has them installed (their packages' hooks put them in, and their triggers rebuilt it).
retie_to_new_disks() {
    f=$TARGET/etc/initramfs-tools/conf.d/resume
    if [ -n "$SWAP_UUID" ]; then resume="RESUME=UUID=$SWAP_UUID"; else resume=RESUME=none; fi
    overlays=''
    MDS=${MDS:-}
    if [ -f "$f" ]; then
        sed -i "s|^[[:space:]]*RESUME=.*|$resume|" "$f"
        grep -q '^RESUME=' "$f" || echo "$resume" >>"$f"
        overlays="$f=conf/conf.d/resume"
    fi
    # On md: the initramfs assembles the arrays its etc/mdadm/mdadm.conf names, this machine's now.
    # (LVM needs nothing of this machine's: it activates the root LV by the name on the command line.)
    conf=$TARGET/etc/mdadm/mdadm.conf
    if [ "${STACKED:-0}" = 1 ] && [ -n "${MDS:-}" ] && [ -f "$conf" ]; then
        overlays="$overlays $conf=etc/mdadm/mdadm.conf"
    fi
    if [ "${STACKED:-0}" = 1 ] && [ ! -x "$TARGET/usr/sbin/update-initramfs" ]; then
        # dracut writes the configuration into its image in its own way: rebuilt by the image's own dracut.
        [ -x "$TARGET/usr/bin/dracut" ] || [ -x "$TARGET/usr/sbin/dracut" ] ||
            die "the image has no update-initramfs or dracut: its initramfs cannot learn this machine's md arrays"
        stage initramfs "dracut in the new system (md/LVM)"
        chroot "$TARGET" dracut -f --regenerate-all >/dev/null || die "dracut in the new system failed"
        return 0
    fi
    [ -n "$overlays" ] || return 0
    if [ "${INITRAMFS_REBUILD:-0}" = 1 ] && [ -x "$TARGET/usr/sbin/update-initramfs" ]; then
        stage initramfs "update-initramfs in the new system ($resume${MDS:+; md arrays})"
        chroot "$TARGET" update-initramfs -u -k all >/dev/null || die "update-initramfs in the new system failed"
        return 0
    fi
    n=0
    for img in "$TARGET"/boot/initrd.img-*; do
        [ -f "$img" ] || continue
        for pair in $overlays; do
            overlay_initramfs "$img" "${pair%%=*}" "${pair#*=}" || die "cannot add ${pair#*=} to $img"
        done
        n=$((n + 1))
    done
    stage initramfs "$resume${MDS:+ and the new mdadm.conf} in $n initramfs image(s)"
}

# cpio_member NAME MODE_HEX [FILE] -- one newc archive member on stdout (FILE: a regular file's content).
cpio_member() {
    size=0
    if [ -n "${3:-}" ]; then size=$(wc -c <"$3" | tr -d ' '); fi
    namesize=$((${#1} + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        "$CPIO_INO" "0x$2" 0 0 1 0 "$size" 0 0 0 0 "$namesize" 0
    printf '%s\000' "$1"
    head -c $(((4 - (110 + namesize) % 4) % 4)) /dev/zero
    if [ -n "${3:-}" ]; then
        cat "$3"
        head -c $(((4 - size % 4) % 4)) /dev/zero
    fi
    CPIO_INO=$((CPIO_INO + 1))
}

# overlay_initramfs IMAGE FILE PATH -- append a cpio archive holding FILE as PATH (and its directories).
overlay_initramfs() {
    CPIO_INO=1
    size=$(wc -c <"$1" | tr -d ' ')
    {
        head -c $(((4 - size % 4) % 4)) /dev/zero  # archives start on a 4-byte boundary
        d=''
        rest=${3%/*}
        while [ -n "$rest" ]; do
            d=${d:+$d/}${rest%%/*}
            cpio_member "$d" 41ED
            case $rest in */*) rest=${rest#*/} ;; *) rest='' ;; esac
        done
        cpio_member "$3" 81A4 "$2"
        cpio_member TRAILER!!! 0
    } >>"$1"
}

# grub-mkconfig writes root=UUID=... only when /dev/disk/by-uuid/UUID exists, and the installer has
# no udev to make those links (root=/dev/vda1 otherwise). Called on the installer only (its /dev).
link_fs_uuids() {
    mkdir -p /dev/disk/by-uuid
    for pair in $FS_UUIDS; do
        dev=${pair%%=*} uuid=${pair#*=}
        [ -e "/dev/disk/by-uuid/$uuid" ] || ln -s "$dev" "/dev/disk/by-uuid/$uuid"
    done
}

# /dev, /proc and /sys inside the new system, for the boot loader and hooks run there.
bind_system() {
    for fs in dev proc sys; do
        mkdir -p "$TARGET/$fs"
        mount -o bind "/$fs" "$TARGET/$fs" || die "cannot bind /$fs into $TARGET"
        remember_mount "$TARGET/$fs"
    done
}

install_bootloader() {
    if [ "${SKIP_BOOTLOADER:-0}" = 1 ]; then
        stage bootloader "skipped (SKIP_BOOTLOADER=1)"
        return 0
    fi
    if [ -d /sys/firmware/efi ]; then fw=uefi; else fw=bios; fi
    if [ -x "$TARGET/usr/sbin/grub-install" ]; then
        if [ "$fw" = uefi ]; then
            [ -n "$ESP_MOUNT" ] || die "UEFI firmware, but the image's fstab has no EFI system partition"
            # --- Secure Boot (issue 13): an image with Debian's signed shim and GRUB gets them on the ESP
            # the removable-media way (EFI/BOOT/BOOTX64.EFI = shim, grubx64.efi beside it), which boots
            # with Secure Boot on or off; other images get GRUB alone, as before.
            sb=''
            if [ -f "$TARGET/usr/lib/shim/shimx64.efi.signed" ] &&
                [ -f "$TARGET/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" ]; then
                sb=--uefi-secure-boot
            fi
            stage bootloader "grub for UEFI in $ESP_MOUNT${sb:+ (signed shim + grub: Secure Boot)}"
            # --removable: EFI/BOOT/BOOTX64.EFI boots without NVRAM entries (new machines, VMs).
            # shellcheck disable=SC2086  # $sb is one option or none
            chroot "$TARGET" grub-install --target=x86_64-efi --efi-directory="$ESP_MOUNT" --removable \
                --no-nvram $sb || die "grub-install (UEFI) failed"
            if [ -n "$sb" ] && ! { cmp -s "$TARGET/usr/lib/shim/shimx64.efi.signed" \
                "$TARGET$ESP_MOUNT/EFI/BOOT/BOOTX64.EFI" && [ -f "$TARGET$ESP_MOUNT/EFI/BOOT/grubx64.efi" ]; }; then
                die "grub-install --uefi-secure-boot did not put shim at EFI/BOOT/BOOTX64.EFI with grubx64.efi"
            fi
            # --- end Secure Boot
        else
            # Every disk /boot is on (both halves of a RAID1): the machine boots from either alone.
            stage bootloader "grub for BIOS on $BOOT_DISKS"
            for d in $BOOT_DISKS; do
                chroot "$TARGET" grub-install --target=i386-pc "$d" || die "grub-install (BIOS) on $d failed"
            done
        fi
        link_fs_uuids
        if [ -x "$TARGET/usr/sbin/update-grub" ]; then
            chroot "$TARGET" update-grub || die "update-grub failed"
        else
            chroot "$TARGET" grub-mkconfig -o /boot/grub/grub.cfg || die "grub-mkconfig failed"
        fi
    elif command -v extlinux >/dev/null 2>&1; then
        [ "$fw" = bios ] || die "only extlinux is available, and it boots BIOS machines only"
        install_extlinux
    else
        die "no boot loader: the image has no grub-install and extlinux is not available"
    fi
}

install_extlinux() {
    [ -n "$BOOT_PART" ] || die "extlinux cannot boot from md or LVM (the image has no grub-install)"
    kernel='' initrd=''
    for k in "$TARGET"/boot/vmlinuz-*; do [ -f "$k" ] && kernel=${k##*/}; done
    [ -n "$kernel" ] || die "no /boot/vmlinuz-* in the image"
    for i in "$TARGET"/boot/initrd.img-"${kernel#vmlinuz-}" "$TARGET"/boot/initramfs-"${kernel#vmlinuz-}".img; do
        [ -f "$i" ] && initrd=${i##*/}
    done
    # Paths are relative to the filesystem extlinux lives on: /boot itself when it is separate.
    if [ "$BOOT_SEPARATE" = 1 ]; then dir=''; else dir=/boot; fi
    stage bootloader "extlinux (BIOS) with $kernel on $BOOT_DISK"
    mkdir -p "$TARGET/boot/extlinux"
    extlinux --install "$TARGET/boot/extlinux" >/dev/null || die "extlinux --install failed"
    {
        printf 'DEFAULT linux\nTIMEOUT 10\nLABEL linux\n    KERNEL %s/%s\n' "$dir" "$kernel"
        if [ -n "$initrd" ]; then printf '    INITRD %s/%s\n' "$dir" "$initrd"; fi
        printf '    APPEND root=UUID=%s ro %s\n' "$ROOT_UUID" "${KERNEL_APPEND-console=tty0 console=ttyS0,115200}"
    } >"$TARGET/boot/extlinux/extlinux.conf"
    mbr=''
    for m in "$TARGET/usr/lib/syslinux/mbr" /usr/lib/syslinux/mbr /usr/share/syslinux /usr/lib/EXTLINUX; do
        if [ "$BOOT_LABEL" = gpt ]; then f=$m/gptmbr.bin; else f=$m/mbr.bin; fi
        if [ -f "$f" ]; then mbr=$f; break; fi
    done
    [ -n "$mbr" ] || die "no syslinux MBR code (mbr.bin/gptmbr.bin) found"
    dd bs=440 count=1 conv=notrunc if="$mbr" of="$BOOT_DISK" 2>/dev/null || die "cannot write the MBR code"
    if [ "$BOOT_LABEL" = gpt ]; then
        sfdisk -q --part-attrs "$BOOT_DISK" "$BOOT_PART" LegacyBIOSBootable
    else
        sfdisk -q --activate "$BOOT_DISK" "$BOOT_PART"
    fi
}

# /etc/systemimager/post-install/* of the image, in name order, run inside the new system.
run_post_install() {
    dir=$TARGET/etc/systemimager/post-install
    [ -d "$dir" ] || return 0
    export HOSTNAME="${HOSTNAME:-}" DOMAIN="${DOMAIN:-}" IPADDR="${IPADDR:-}" NETMASK="${NETMASK:-}" \
        GATEWAY="${GATEWAY:-}" DNS="${DNS:-}" MAC="${MAC:-}"
    for hook in "$dir"/*; do
        if [ ! -f "$hook" ] || [ ! -x "$hook" ]; then continue; fi
        name=${hook##*/}
        stage post-install "$name"
        chroot "$TARGET" "/etc/systemimager/post-install/$name" || die "post-install hook $name failed"
    done
}

'''
