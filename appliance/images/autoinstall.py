"""Autoinstall scripts: <state_dir>/scripts/NAME.master, the install plan of an image, a POSIX sh script.

Made from an image version's saved disk layout (what prepareclient recorded) and the image's own
/etc/fstab: partition the disks (sfdisk; GPT or MBR, partition numbers, types, starts and sizes as
on the master, the last partition grown to fill the disk), make the md arrays and LVM volume groups
and logical volumes the master's filesystems were on (mdadm, lvm; new UUIDs), make the filesystems
fstab names (ext2/3/4, xfs, btrfs with the master's subvolumes and default subvolume, vfat, swap) with
fresh UUIDs, mount them in order (btrfs subvolumes with their subvol= and compression), pull the image (the
host's transport, then rsync), rewrite fstab with the new UUIDs, set hostname and network, install
the boot loader, run the image's /etc/systemimager/post-install/* hooks, and report every stage
over HTTP.

The plan holds only variables and calls: the commands are the installer's shell runtime
(appliance/boot/installer/runtime.sh, lib/*.sh, transports/*.sh), which the plan sources from the installer
initrd (INSTALLER_LIB, appliance.boot.installer.runtime). Nothing about the target machine is fixed at
generation time: disks are found on the client (the first whole disks in /sys/block order, or
DISK=/DISK1=...), and the imageserver, image version, hostname and network come from variables (the
installer exports them from the kernel command line, local.cfg or DHCP; runtime.sh lists them).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.boot.installer.runtime import HERE as RUNTIME_DIR
from appliance.boot.installer.runtime import RUNTIME_PATH
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
    btrfs_mount_options,
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
        for b in the_plan.btrfs:
            if b.place is place and (b.subvolumes or b.default):
                w(f'make_subvolumes "${v}" {q(b.default)} ' + " ".join(q(s) for s in b.subvolumes))
    mounts = sorted(((p, e) for p, e in [*the_plan.filesystems, *the_plan.subvolume_mounts] if e.fstype != "swap"),
                    key=lambda pe: (_depth(pe[1].mountpoint), pe[1].mountpoint))
    w('stage mount "' + " ".join(_safe(e.mountpoint) for _, e in mounts) + '"')
    for place, e in mounts:
        options = btrfs_mount_options(e) if e.fstype == "btrfs" else ""
        w(f'mount_fs {e.fstype} "${names.dev(place)}" {q(e.mountpoint)}{" " + q(options) if options else ""}')

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
    placed = {id(e): p for p, e in [*the_plan.filesystems, *the_plan.subvolume_mounts]}
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
    w('RETIE_UUIDS="' + " ".join(f"{old}=${names.uuid(p)}" for p, old in _master_uuids(the_plan)) + '"')
    # A kernel command line or BLS entry may name a partition by the master's PARTUUID: this machine's instead.
    for place, _ in the_plan.filesystems:
        if isinstance(place, Placement):
            disk = layout.disks[place.disk]
            if (old := disk.partuuid(place.partition)) and _UUID.fullmatch(old):
                w(f'RETIE_UUIDS="$RETIE_UUIDS {old}=$(new_partuuid "$DISK{place.disk}" {place.partition.number} '
                  f'{disk.label})"')
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
    disks = ", ".join(f"{d.name} ({d.label or 'no table'}, {d.size} bytes)" for d in layout.disks)
    head = header(name, version, settings, made=f"made from v{version} by the imageserver on {when}",
                  master=f"firmware {layout.firmware}; disks: {disks}")
    warnings = "".join(f"# warning: {_safe(x)}\n" for x in the_plan.warnings)
    return f"{head}{warnings}\n# ---- generated from the layout {'-' * 60}\n{body}\n"


_UUID = re.compile(r"[0-9A-Fa-f]{4,}(?:-[0-9A-Fa-f]{2,}){0,4}")


def _master_uuids(the_plan: Plan) -> list[tuple[Placement | Volume, str]]:
    """Each filesystem's UUID on the master (lsblk's record, else fstab's UUID=), for retie_boot_settings
    to put the clone's in its place on the kernel command line and in dracut's settings."""
    out = []
    for place, e in the_plan.filesystems:
        if isinstance(place, Placement):
            old = place.partition.fsuuid
        else:
            old = place.md.fsuuid if place.md else place.lv.fsuuid if place.lv else None
        if not old and e.spec.upper().startswith("UUID="):
            old = e.spec[5:]
        if old and _UUID.fullmatch(old):
            out.append((place, old))
    return out


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


def header(name: str, version: int, settings: ScriptSettings, *, made: str = "", master: str = "",
           lib: str = RUNTIME_PATH) -> str:
    """The plan's first lines: the defaults only the generator knows, then the installer's runtime
    (runtime.sh and lib/*.sh in the initrd at `lib`; INSTALLER_LIB= points a test or bench elsewhere)."""
    return f"""#!/bin/sh
# shellcheck disable=SC2153,SC2034,SC3028  # DEV0_1 ... are set through eval (part_dev); ROOT_UUID ... are
# read by the runtime; HOSTNAME is the installer's (the host's name), not bash's
# {name}.master -- the autoinstall plan of image {name}{', ' + _safe(made) if made else ''}.
# Master client: {_safe(master) or '-'}.
#
# Partitions and formats this machine's disks, pulls the image, makes it bootable: the steps below, in
# order. The commands are the installer's runtime (appliance/boot/installer/runtime.sh, lib/*.sh and the
# host's transports/$TRANSPORT.sh in the initrd); every value about this machine comes from the
# environment (the installer exports what the imageserver passed: see runtime.sh).
set -eu
umask 022
export PATH="$PATH:/sbin:/usr/sbin:/bin:/usr/bin"

IMAGE=${{IMAGE:-{name}}}
VERSION=${{VERSION:-{version}}}
IMAGESERVER_HOST=${{IMAGESERVER_HOST:-${{IMAGESERVER:-{_safe(settings.imageserver or "")}}}}}
RSYNC_PORT=${{RSYNC_PORT:-{settings.rsync_port}}}
INSTALLER_LIB=${{INSTALLER_LIB:-{lib}}}
# shellcheck source=/dev/null  # the installer's runtime
. "$INSTALLER_LIB/runtime.sh"
"""


def fetch_script(name: str, version: int, settings: ScriptSettings, lib: Path = RUNTIME_DIR) -> str:
    """The installer's image fetch step alone (its own pull_image, by the same variables: TRANSPORT,
    TARGET, MAC, INSTALL_TOKEN, RSYNC_USER ...) into $TARGET: no disks touched. For benchmarks and
    transport tests that run the real installer commands on this machine (the runtime from `lib`)."""
    # A machine that is done goes on seeding for as long as its install would go on (BT_SEED_SECONDS).
    return header(name, version, settings, lib=str(lib)) + (
        '\nmkdir -p "$TARGET"\npull_image\nstage finished "fetched $MODULE into $TARGET"\ntransport_finish wait\n')


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
