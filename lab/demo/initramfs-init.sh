#!/bin/sh
# /init of the demo client's own initramfs: load the disk and filesystem drivers, find root=
# (a device, UUID= or LABEL=), mount it and switch to it. Nothing else: this is a boot shim.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
echo 1 >/proc/sys/kernel/printk 2>/dev/null
while IFS= read -r module; do insmod "$module" 2>/dev/null; done </etc/initrd-modules
root=
# shellcheck disable=SC2013  # the command line is one line of words
for word in $(cat /proc/cmdline); do
    case "$word" in root=*) root=${word#root=} ;; esac
done
device=
tries=0
while [ -z "$device" ] && [ $tries -lt 100 ]; do
    case "$root" in
        UUID=*|LABEL=*) device=$(findfs "$root" 2>/dev/null) ;;
        *) [ -b "$root" ] && device=$root ;;
    esac
    [ -n "$device" ] || { tries=$((tries + 1)); sleep 0.1; }
done
if [ -z "$device" ]; then
    # root= names nothing findfs knows (PARTUUID=, a re-made file system): the first disk's first partition.
    for candidate in /dev/vda1 /dev/sda1 /dev/nvme0n1p1; do
        [ -b "$candidate" ] && device=$candidate && break
    done
fi
mkdir -p /newroot
if [ -z "$device" ] || ! mount -t ext4 "$device" /newroot; then
    echo "demo initramfs: cannot mount root '$root'"
    setsid cttyhack sh
    while :; do sleep 3600; done
fi
# The real system starts with /dev, /proc and /sys in place (and writes nothing into its own /dev).
for fs in dev proc sys; do
    mkdir -p "/newroot/$fs"
    mount --move "/$fs" "/newroot/$fs" 2>/dev/null || true
done
exec switch_root /newroot /sbin/init
