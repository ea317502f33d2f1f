# shellcheck shell=sh
# lib/bootloader.sh -- the new system boots on this machine: its initramfs retied to the new disks (resume
# device, md arrays), then GRUB (BIOS, UEFI, Secure Boot shim) or extlinux.

# The image names the master's disks where fstab is not the only place: the kernel command line
# (retie_boot_settings) and the initramfs' resume device (a UUID that no longer exists costs every boot a
# 30 s wait with initramfs-tools, and a wait without end with systemd in a dracut initramfs).
# /etc/initramfs-tools/conf.d/resume is pointed at this machine's swap (or none), so every later
# update-initramfs on the node is right.
# The image's initramfs itself: a dracut image (host-only ones hold the master's machine-id, hostname and
# command line) is always rebuilt by the image's own dracut in the new system. An initramfs-tools image
# holds no identity of the master's, only these settings: with INITRAMFS_REBUILD=1 rebuilt by the image's
# own update-initramfs; by default the new conf/conf.d/resume (and on md this machine's etc/mdadm/mdadm.conf) is
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
    retie_boot_settings
    if [ ! -x "$TARGET/usr/sbin/update-initramfs" ]; then
        if [ -x "$TARGET/usr/bin/dracut" ] || [ -x "$TARGET/usr/sbin/dracut" ]; then
            # dracut writes the machine into its image in its own way: rebuilt by the image's own dracut.
            stage initramfs "dracut in the new system ($resume${MDS:+; md arrays}; this machine's identity)"
            chroot "$TARGET" dracut -f --regenerate-all >/dev/null || die "dracut in the new system failed"
            return 0
        fi
        [ "${STACKED:-0}" != 1 ] ||
            die "the image has no update-initramfs or dracut: its initramfs cannot learn this machine's md arrays"
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

# The kernel command line names the master's disks where the image keeps it: /etc/default/grub and its
# grub.d/*.cfg (GRUB_CMDLINE_LINUX*: RHEL's installer puts resume= there, and update-grub copies it into
# grub.cfg), BLS entries' options lines (/boot/loader/entries/*.conf), /etc/kernel/cmdline (kernel-install),
# and dracut's settings (/etc/dracut.conf.d/*.conf: kernel_cmdline, add_device). Every master filesystem
# UUID and partition PARTUUID in them becomes the clone's (RETIE_UUIDS: "master=clone ..."), and a resume= still naming a device by
# UUID or PARTUUID names this machine's swap, or is removed when it has none.
retie_boot_settings() {
    retied=''
    for f in "$TARGET/etc/default/grub" "$TARGET"/etc/default/grub.d/*.cfg "$TARGET"/boot/loader/entries/*.conf \
        "$TARGET/etc/kernel/cmdline" "$TARGET"/etc/dracut.conf.d/*.conf; do
        if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
        cp -p "$f" "$f.imageserver-retie"
        for pair in ${RETIE_UUIDS:-}; do
            sed -i "s/${pair%%=*}/${pair#*=}/g" "$f"
        done
        # BLS entries: the options line only (title, version, linux ... stay as they are).
        case $f in */boot/loader/entries/*) only='/^options[[:space:]]/' ;; *) only='' ;; esac
        # A resume= token, after a quote, a blank or the line's start (not noresume= or resume_offset=).
        token="(^|[\"'[:space:]])resume=(UUID|PARTUUID)=[^[:space:]\"']*"
        if [ -n "$SWAP_UUID" ]; then
            sed -E -i "${only}s/${token}/\\1resume=UUID=$SWAP_UUID/g" "$f"
        else
            sed -E -i "${only}s/${token}[[:space:]]?/\\1/g" "$f"
        fi
        cmp -s "$f" "$f.imageserver-retie" || retied="$retied ${f#"$TARGET"}"
        rm -f "$f.imageserver-retie"
    done
    if [ -n "$retied" ]; then say "master's disks retied to this machine's in:$retied"; fi
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

# firmware -- "uefi" or "bios": how this machine booted the installer.
firmware() { if [ -d /sys/firmware/efi ]; then echo uefi; else echo bios; fi; }

# efi_names -- this machine's EFI names (the installer runs on the machine it installs): GRUB's target,
# the suffix of Debian's signed shim and GRUB (shim$EFI_SUFFIX.efi.signed, $EFI_TARGET-signed/
# grub$EFI_SUFFIX.efi.signed) and the removable-media loader the firmware starts without NVRAM entries.
efi_names() {
    case $(uname -m) in
        aarch64) EFI_TARGET=arm64-efi EFI_SUFFIX=aa64 EFI_REMOVABLE=BOOTAA64.EFI ;;
        *) EFI_TARGET=x86_64-efi EFI_SUFFIX=x64 EFI_REMOVABLE=BOOTX64.EFI ;;
    esac
}

install_bootloader() {
    if [ "${SKIP_BOOTLOADER:-0}" = 1 ]; then
        stage bootloader "skipped (SKIP_BOOTLOADER=1)"
        return 0
    fi
    fw=$(firmware)
    if [ -x "$TARGET/usr/sbin/grub-install" ]; then
        if [ "$fw" = uefi ]; then
            [ -n "$ESP_MOUNT" ] || die "UEFI firmware, but the image's fstab has no EFI system partition"
            # --- Secure Boot (issue 13): an image with Debian's signed shim and GRUB gets them on the ESP
            # the removable-media way (EFI/BOOT/BOOTX64.EFI = shim, grubx64.efi beside it; on arm64
            # BOOTAA64.EFI and grubaa64.efi), which boots with Secure Boot on or off; other images get GRUB
            # alone, as before.
            efi_names
            sb=''
            if [ -f "$TARGET/usr/lib/shim/shim$EFI_SUFFIX.efi.signed" ] &&
                [ -f "$TARGET/usr/lib/grub/$EFI_TARGET-signed/grub$EFI_SUFFIX.efi.signed" ]; then
                sb=--uefi-secure-boot
            fi
            stage bootloader "grub for UEFI in $ESP_MOUNT${sb:+ (signed shim + grub: Secure Boot)}"
            # --removable: EFI/BOOT/$EFI_REMOVABLE boots without NVRAM entries (new machines, VMs).
            # shellcheck disable=SC2086  # $sb is one option or none
            chroot "$TARGET" grub-install --target="$EFI_TARGET" --efi-directory="$ESP_MOUNT" --removable \
                --no-nvram $sb || die "grub-install (UEFI) failed"
            if [ -n "$sb" ] && ! { cmp -s "$TARGET/usr/lib/shim/shim$EFI_SUFFIX.efi.signed" \
                "$TARGET$ESP_MOUNT/EFI/BOOT/$EFI_REMOVABLE" &&
                [ -f "$TARGET$ESP_MOUNT/EFI/BOOT/grub$EFI_SUFFIX.efi" ]; }; then
                die "grub-install --uefi-secure-boot did not put shim at EFI/BOOT/$EFI_REMOVABLE with grub$EFI_SUFFIX.efi"
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
