# shellcheck shell=sh
# lib/filesystems.sh -- new filesystems (new UUIDs) on the new partitions and volumes, mounted under
# $TARGET in order (every mount remembered for the cleanup), swap files, and the installer's /dev, /proc,
# /sys bound into the new system.

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

remember_mount() {
    MOUNTED="$1
$MOUNTED"
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
        btrfs) set -- "$1" "$2" "$3" mkfs.btrfs -f -q ;;
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

# mount_fs TYPE DEVICE MOUNTPOINT [OPTIONS] -- OPTIONS: a btrfs subvolume and compression (subvol=@home,...)
mount_fs() {
    mkdir -p "$TARGET$3"
    mount -t "$1" ${4:+-o "$4"} "$2" "$TARGET$3" || die "cannot mount $2 ($1${4:+, $4}) on $TARGET$3"
    remember_mount "$TARGET$3"
}

# make_subvolumes DEVICE DEFAULT SUBVOLUME... -- the master's btrfs subvolumes (paths from the top level,
# parents first) on the new filesystem, and its default subvolume (DEFAULT; '' keeps the top level).
make_subvolumes() {
    dev=$1 default=$2
    shift 2
    top=/tmp/imageserver-btrfs-top
    mkdir -p "$top"
    mount -t btrfs -o subvolid=5 "$dev" "$top" || die "cannot mount the top level of $dev (btrfs)"
    for sv in "$@"; do
        case $sv in */*) mkdir -p "$top/${sv%/*}" ;; esac
        if ! btrfs subvolume create "$top/$sv" >/dev/null; then
            umount "$top"
            die "btrfs subvolume create $sv on $dev failed"
        fi
    done
    if [ -n "$default" ] && ! btrfs subvolume set-default "$top/$default" >/dev/null; then
        umount "$top"
        die "btrfs subvolume set-default $default on $dev failed"
    fi
    umount "$top" || die "cannot unmount the top level of $dev"
    say "btrfs on $dev: subvolume(s) $* (default: ${default:-the top level})"
}

make_swapfile() {
    say "swap file $1 ($2 KiB)"
    dd if=/dev/zero of="$TARGET$1" bs=1024 count="$2" 2>/dev/null || die "cannot write swap file $1"
    chmod 600 "$TARGET$1"
    mkswap "$TARGET$1" >/dev/null
}

# /dev, /proc and /sys inside the new system, for the boot loader and hooks run there; and an empty /run
# (a tmpfs of its own: dracut turns host-only mode off, building a generic initramfs, when /run is no mount).
bind_system() {
    for fs in dev proc sys; do
        mkdir -p "$TARGET/$fs"
        mount -o bind "/$fs" "$TARGET/$fs" || die "cannot bind /$fs into $TARGET"
        remember_mount "$TARGET/$fs"
    done
    mkdir -p "$TARGET/run"
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$TARGET/run" || die "cannot mount a tmpfs on $TARGET/run"
    remember_mount "$TARGET/run"
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
