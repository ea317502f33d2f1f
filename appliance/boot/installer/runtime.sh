# shellcheck shell=sh disable=SC2034  # PROG, RSYNC_AUTH, STAGE ...: read by lib/*.sh
# runtime.sh -- the autoinstall runtime, sourced by every generated NAME.master (the plan: variables and
# calls) from $INSTALLER_LIB, the installer initrd's /usr/lib/imageserver/installer. It loads lib/*.sh and
# the transport the host was given (transports/$TRANSPORT.sh; an unknown one is rsync), fills in the
# defaults of what the plan and the installer's environment left unset, and sets the cleanup trap.
#
# Variables (the installer exports what the imageserver passed on the kernel command line, over DHCP
# or at the top of the served script):
#   IMAGESERVER(_HOST) RSYNC_PORT IMAGE VERSION MODULE  where and what to pull
#   HOSTNAME DOMAIN IPADDR NETMASK GATEWAY DNS MAC IFACE NET_MODE   the installed system's identity
#   IMAGESERVER_URL INSTALL_TOKEN   stage reports (POST $IMAGESERVER_URL/install/$MAC/events)
#   RSYNC_USER RSYNC_PASSWORD       this install's rsync credentials; UPDATE_TOKEN for updateclient
#   RSYNC_RETRY_FIRST RSYNC_RETRY_MAX RSYNC_QUEUE_TIMEOUT   waiting in line for the rsync daemon
#   DISK (DISK0) DISK1 ...          target disks (default: the first whole disks in /sys/block)
#   TARGET                          mount root of the new system (default /mnt/target)
#   SKIP_BOOTLOADER=1               do not install a boot loader
#   KERNEL_APPEND                   extra kernel arguments for extlinux (default: serial + VGA console)
#   TRANSPORT                       rsync (default) | bittorrent (the version's torrent, then rsync --size-only)
#                                   | multicast (the imageserver's udpcast session, then rsync)
#   BT_LOG                          a file for aria2c's own log (peers, pieces: for diagnosing a swarm)
#   STAGE_FILE                      the installer's file naming the current stage (set by its init)

for lib in common report disks filesystems image network system bootloader; do
    # shellcheck source=/dev/null  # lib/*.sh beside this file
    . "$INSTALLER_LIB/lib/$lib.sh"
done
TRANSPORT=${TRANSPORT:-rsync}
[ -f "$INSTALLER_LIB/transports/$TRANSPORT.sh" ] || TRANSPORT=rsync
# shellcheck source=/dev/null  # transports/*.sh beside this file
. "$INSTALLER_LIB/transports/$TRANSPORT.sh"

PROG=autoinstall
MODULE=${MODULE:-${IMAGE}_v${VERSION}}
IMAGESERVER_HOST=${IMAGESERVER_HOST%%:*}
# This install's rsync user (the password is in RSYNC_PASSWORD, exported: rsync reads it from there).
RSYNC_AUTH=${RSYNC_USER:+$RSYNC_USER@}
TARGET=${TARGET:-/mnt/target}
TARGET=${TARGET%/}
STAGE=start
MOUNTED=''
LOOPS=''
MDS=''
VGS=''
export IMAGE VERSION MODULE IMAGESERVER_HOST TARGET

# On any exit: end what the transport left running, unmount, close volume groups and arrays, detach loops.
cleanup() {
    rc=$?
    set +e
    transport_finish
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
