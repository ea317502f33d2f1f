#!/bin/sh
# /sbin/init of the demo master client: a machine that proves it booted from its own disk.
# It prints its marker on the console and powers off, so a demo or test run ends by itself.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
# /dev may already be mounted (moved here by the initramfs); until it is, /dev/null is not there.
[ -c /dev/null ] || mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
[ -f /etc/hostname ] && hostname -F /etc/hostname
root=$(awk '$2 == "/" { print $1 }' /proc/mounts | tail -n 1)
# Also straight to the first serial port: a boot loader config written by an install may not put
# console=ttyS0 on the kernel command line, and the marker must reach the serial log regardless.
tell() {
    echo "$*"
    if [ -c /dev/ttyS0 ] && ! grep -q 'console=ttyS0' /proc/cmdline; then echo "$*" >/dev/ttyS0; fi
}
tell "demo client: root $root, fstab: $(grep -v '^#' /etc/fstab | head -n 1)"
tell "IMAGESERVER-INSTALLED hostname=$(hostname)"
sync
if grep -q 'demo.shell' /proc/cmdline; then
    setsid cttyhack sh
fi
poweroff -f
