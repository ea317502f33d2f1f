# shellcheck shell=sh
# lib/disks.sh -- the target disks: finding them, checking their size, partition nodes (or loop devices
# over a partition), and the md arrays and LVM volume groups the master's filesystems were on.

# Whole disks of this machine in /sys/block order (no loop, RAM, optical, floppy or virtual devices,
# and not the boot medium the installer came from: MEDIA_DEVICE, a USB stick made by mkbootmedia).
# SYS_ROOT: another /sys tree (tests; its disks need no device node).
list_disks() {
    for path in "${SYS_ROOT:-/sys}"/block/*; do
        name=${path##*/}
        case $name in loop*|ram*|zram*|sr*|fd*|dm-*|md*|nbd*) continue ;; esac
        case ${MEDIA_DEVICE:-} in "/dev/$name"|"/dev/$name"[0-9]*|"/dev/${name}p"[0-9]*) continue ;; esac
        [ "$(cat "$path/ro" 2>/dev/null || echo 1)" = 0 ] || continue
        [ "$(cat "$path/size" 2>/dev/null || echo 0)" != 0 ] || continue
        if [ -n "${SYS_ROOT:-}" ] || [ -b "/dev/$name" ]; then echo "/dev/$name"; fi
    done
    return 0
}

# DISK0 is DISK (or the first disk found); AUTO1, AUTO2 ... are the other disks, in order, in the slots
# DISK1, DISK2 ... that are not set already (root-device hints for several disks set some: use_disks).
pick_disks() {
    DISK0=${DISK0:-${DISK:-}}
    named=" $DISK0 "
    n=1
    while [ $n -le 32 ]; do
        eval "d=\${DISK$n:-}"
        [ -z "$d" ] || named="$named$d "
        n=$((n + 1))
    done
    n=0
    for d in $(list_disks); do
        if [ -z "$DISK0" ]; then DISK0=$d; continue; fi
        case $named in *" $d "*) continue ;; esac
        n=$((n + 1))
        while eval "[ -n \"\${DISK$n:-}\" ]"; do n=$((n + 1)); done
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
    # shellcheck disable=SC2086,SC3028  # $extra: one option or none; HOSTNAME is ours (not bash's)
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
