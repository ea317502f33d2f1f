#!/bin/sh
# shellcheck source-path=SCRIPTDIR
# imageserver installer: the /init of the initrd every autoinstall client boots.
#
# It finds out who it is and where the imageserver is (kernel command line, then local.cfg on
# attached media, then DHCP), brings the network up, fetches its autoinstall script from
# http://$IMAGESERVER/install/$MAC/script and runs it with those values exported. On success it
# reports "done" and reboots; on any failure it reports the stage and the last lines of output and
# stays up with a shell on the console: rebooting a broken install would only loop.
# Booted to inspect (INSPECT_NONCE=, [discovery] inspect) it posts the machine's inventory and powers off
# (or reboots, when discovery made it a host): no script, no disk written.
# The real tools (sfdisk, mkfs, blkid, rsync) live in /usr; busybox applets fill in the rest.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
umask 022

LOG=/tmp/installer.log
STAGE_FILE=/tmp/imageserver.stage
export STAGE_FILE

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
mkdir -p /dev/pts /run /tmp /mnt
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
exec </dev/console >/dev/console 2>&1
echo 1 >/proc/sys/kernel/printk 2>/dev/null  # keep kernel chatter from interleaving with ours

# The shell library the autoinstall runtime shares (say, report, progress_monitor), from this initrd.
INSTALLER_LIB=/usr/lib/imageserver/installer
PROG=imageserver-installer
# shellcheck source=lib/common.sh
. "$INSTALLER_LIB/lib/common.sh"
# shellcheck source=lib/report.sh
. "$INSTALLER_LIB/lib/report.sh"
# shellcheck source=lib/disks.sh
. "$INSTALLER_LIB/lib/disks.sh"
# shellcheck source=lib/inventory.sh
. "$INSTALLER_LIB/lib/inventory.sh"

# --------------------------------------------------------------------------- reporting

# fail STAGE REASON -- report the failure with the log tail, then stay up (never reboot-loop).
fail() {
    say "FAILED at stage ${1:-(last reported)}: $2"
    _tail=$(tail -n 25 "$LOG" 2>/dev/null)
    # An empty stage lets the imageserver name the last stage the script reported itself.
    report failed "${1:+stage: $1
}reason: $2
$_tail"
    say "the machine stays up so the failure can be inspected; power it off to retry"
    if [ -c /dev/console ]; then
        setsid cttyhack sh
    fi
    # The shell ended (no console input): halt here rather than loop through boots.
    while :; do sleep 3600; done
}

# --------------------------------------------------------------------------- settings

# KEY=VALUE words of the kernel command line that we know, exported.
read_cmdline() {
    # shellcheck disable=SC2013  # the command line is one line of words
    for word in $(cat /proc/cmdline); do
        case "$word" in
            IMAGESERVER=*|IMAGESERVER_URL=*|HOSTNAME=*|IMAGE=*|VERSION=*|INSTALL_TOKEN=*|INSTALL_NONCE=*|MAC=*|BOOTIF=*|\
            IPADDR=*|NETMASK=*|GATEWAY=*|DNS=*|DOMAIN=*|IFACE=*|INSTALLER_DEBUG=*|INSPECT_NONCE=*|LLDP_WAIT=*)
                export "${word?}" ;;
        esac
    done
}

# local.cfg on attached media (SystemImager's way to install without DHCP): plain KEY=VALUE lines.
read_local_cfg() {
    mkdir -p /mnt/media
    for dev in /dev/sr[0-9] /dev/vd[a-z] /dev/vd[a-z][0-9] /dev/sd[a-z] /dev/sd[a-z][0-9]; do
        [ -b "$dev" ] || continue
        mount -o ro "$dev" /mnt/media 2>/dev/null || continue
        if [ -f /mnt/media/local.cfg ]; then
            say "using local.cfg from $dev"
            # Only simple assignments of known names; the file is data, not a script.
            sed -n 's/^[[:space:]]*\(IMAGESERVER\|IMAGESERVER_URL\|HOSTNAME\|IMAGE\|VERSION\|INSTALL_TOKEN\|IPADDR\|NETMASK\|GATEWAY\|DNS\|DOMAIN\|IFACE\)=["'"'"']\{0,1\}\([^"'"'"']*\)["'"'"']\{0,1\}[[:space:]]*$/\1=\2/p' \
                /mnt/media/local.cfg >/tmp/local.cfg
            umount /mnt/media
            while IFS= read -r line; do export "${line?}"; done </tmp/local.cfg
            return 0
        fi
        umount /mnt/media
    done
    return 0
}

# The medium we booted from, if mkbootmedia made it (ISO and USB file systems are labelled
# IMAGESERVER): exported as MEDIA_DEVICE so the autoinstall script never takes a USB stick for the
# disk to install. Booted from media (isolinux, syslinux and GRUB name the kernel they loaded in
# BOOT_IMAGE), wait for it: a USB stick is still enumerating when /init starts.
find_media() {
    MEDIA_DEVICE=''
    case " $(cat /proc/cmdline) " in
        *" BOOT_IMAGE="*/imageserver/vmlinuz" "*) tries=100 ;;
        *) tries=1 ;;
    esac
    while [ "$tries" -gt 0 ]; do
        if MEDIA_DEVICE=$(blkid -c /dev/null -L IMAGESERVER 2>/dev/null) && [ -n "$MEDIA_DEVICE" ]; then
            export MEDIA_DEVICE
            say "boot medium: $MEDIA_DEVICE"
            return 0
        fi
        MEDIA_DEVICE=''
        tries=$((tries - 1))
        [ "$tries" -eq 0 ] || sleep 0.1
    done
    return 0
}

load_modules() {
    [ -f /etc/initrd-modules ] || return 0
    while IFS= read -r module; do
        insmod "$module" 2>/dev/null  # absent hardware or an already loaded module is not an error
    done </etc/initrd-modules
}

# The interface to use: IFACE=, else the one with $MAC, else BOOTIF's, else the first with a link.
pick_interface() {
    [ -n "$IFACE" ] && return 0
    want=$MAC
    if [ -z "$want" ] && [ -n "$BOOTIF" ]; then
        want=$(echo "$BOOTIF" | sed 's/^01-//; s/-/:/g')
    fi
    tries=0
    while [ $tries -lt 50 ]; do
        for path in /sys/class/net/*; do
            name=${path##*/}
            [ "$name" = lo ] && continue
            if [ -z "$want" ] || [ "$(cat "$path/address")" = "$(echo "$want" | tr 'A-F' 'a-f')" ]; then
                IFACE=$name
                export IFACE
                return 0
            fi
        done
        tries=$((tries + 1))
        sleep 0.1  # NIC drivers may still be probing
    done
    return 1
}

network_up() {
    ip link set lo up
    pick_interface || fail network "no network interface${MAC:+ with MAC $MAC}"
    ip link set "$IFACE" up
    [ -n "$MAC" ] || MAC=$(cat "/sys/class/net/$IFACE/address")
    export MAC
    if [ -n "$IPADDR" ]; then
        ifconfig "$IFACE" "$IPADDR" netmask "${NETMASK:-255.255.255.0}" || fail network "cannot set $IPADDR on $IFACE"
        [ -z "$GATEWAY" ] || route add default gw "$GATEWAY" || fail network "cannot route via $GATEWAY"
        NET_MODE=${NET_MODE:-static}  # a fixed address: the installed system keeps it
    else
        # The same NIC, so the same lease as the PXE ROM and iPXE had (the server keys leases by MAC).
        udhcpc -i "$IFACE" -f -q -n -t 10 -T 2 -s /etc/udhcpc.sh ${HOSTNAME:+-x hostname:"$HOSTNAME"} ||
            fail network "no DHCP answer on $IFACE"
        # shellcheck source=/dev/null  # written by /etc/udhcpc.sh
        . /tmp/dhcp.env
        IPADDR=$DHCP_IP NETMASK=${NETMASK:-$DHCP_MASK} GATEWAY=${GATEWAY:-$DHCP_ROUTER} DNS=${DNS:-$DHCP_DNS}
        [ -n "$IMAGESERVER" ] || IMAGESERVER=$DHCP_SERVER
        export IPADDR NETMASK GATEWAY DNS IMAGESERVER
        # Addressed by DHCP: so is the installed system (a reservation gives it the same address).
        NET_MODE=${NET_MODE:-dhcp}
    fi
    export NET_MODE
    [ -n "$IMAGESERVER" ] || fail network "no IMAGESERVER= on the command line, in local.cfg or from DHCP"
    [ -n "$IMAGESERVER_URL" ] || IMAGESERVER_URL="http://$IMAGESERVER"
    # The address part alone (IMAGESERVER=host:port names the HTTP port, rsync uses its own).
    IMAGESERVER_HOST=${IMAGESERVER%%:*}
    export IMAGESERVER_URL IMAGESERVER_HOST
    if [ -n "$DNS" ]; then
        for server in $DNS; do echo "nameserver $server"; done >/etc/resolv.conf
    fi
}

# The imageserver's values for this host head the script it serves: "KEY='value'; export KEY" lines from
# its second line to a "# ---" line (domain/install_script.py). That section alone is kept, and sourced in a
# subshell (init keeps its own settings) for the values init needs itself: the install token (a PXE
# boot carries only a fetch nonce) and the image's size (the progress reports' total).
served_vars() {
    sed -n '2,/^# ---$/p' "$1" | grep -E "^[A-Z_][A-Z0-9_]*='[^']*'; export [A-Z_][A-Z0-9_]*\$"
}
served_value() {
    # shellcheck source=/dev/null  # written by served_vars
    (. /tmp/install.vars && eval "printf '%s' \"\${$1:-}\"")
}

# The machine's inventory to the imageserver, which answers with the disk the host's root-device hints
# choose (domain/rootdevice.py: the rule lives there only): exported as DISK for the script (and the disks
# of a RAID or LVM layout named by hints as DISK1 ...: use_disks, lib/inventory.sh). No hints: the
# script's own order. Hints that match no disk, or no answer while the host has hints: the install fails
# with the reason (which names the candidate disks), never a guess.
root_device() {
    inventory_json >/tmp/inventory.json 2>/tmp/inventory.err || say "inventory: $(head -c 300 /tmp/inventory.err)"
    hints=$(served_value ROOT_DEVICE_HINTS)
    status=$(http_request POST "$IMAGESERVER_URL/install/$MAC/inventory" "$INSTALL_TOKEN" "$(cat /tmp/inventory.json)" \
        30 /tmp/inventory.answer /tmp/inventory.err)
    case $status in
        2??) ;;
        *)
            [ -z "$hints" ] || fail disks "the imageserver took no inventory (HTTP $status): the root-device hints of the $hints cannot be applied"
            say "the imageserver took no inventory (HTTP $status); the script picks the disks itself"
            return 0 ;;
    esac
    use_disks /tmp/inventory.answer
    failure=$(json_value failure /tmp/inventory.answer)
    if [ -n "$ROOT_DEVICE" ]; then
        others=$(json_list disks /tmp/inventory.answer | tail -n +2 | tr '\n' ' ')
        say "root device $ROOT_DEVICE${others:+, then ${others% }} (root-device hints of the $hints:" \
            "$(json_value hints /tmp/inventory.answer))"
    elif [ -n "$failure" ]; then
        fail disks "$failure"
    elif [ -n "$hints" ]; then
        fail disks "the imageserver named no root device for the root-device hints of the $hints"
    fi
}

# --------------------------------------------------------------------------- main

say "starting ($(uname -r))"
read_cmdline
load_modules
find_media
[ -n "$IMAGESERVER" ] || [ -n "$IMAGESERVER_URL" ] || read_local_cfg
case "$IMAGESERVER_URL" in
    "") [ -z "$IMAGESERVER" ] || IMAGESERVER_URL="http://$IMAGESERVER" ;;
esac
network_up
say "network: $IFACE $MAC $IPADDR/$NETMASK gw ${GATEWAY:--} imageserver $IMAGESERVER_URL"
echo installer >"$STAGE_FILE"

# An inspection, as MAAS commissions and Ironic inspects: the inventory, then off. Powered off, a machine
# that waits for an assignment draws nothing and asks nothing; its BMC (read from this inventory) or a
# hand starts it again. Made a host by a rule on this inventory, it reboots into its install instead.
if [ -n "$INSPECT_NONCE" ]; then
    say "inspecting this machine (nothing is installed)"
    # An LLDP frame per NIC is worth one transmit interval (30 s by default) where nobody waits for an install.
    LLDP_WAIT=${LLDP_WAIT:-30}
    inspect_post || true
    sync
    if [ "$INSPECT_THEN" = reboot ]; then
        say "inspection done; rebooting to install"
        reboot -f
    fi
    say "inspection done; powering off"
    poweroff -f
    while :; do sleep 3600; done
fi

# PXE boots carry only a fetch nonce (bound to our MAC and address; the boot files are readable by
# anyone): it opens our script, which carries this install's token. The token then authenticates
# every report, so the first report comes after the fetch.
# Booted from media (no nonce, no token): ask for the nonce as iPXE would, from our own address.
if [ -z "$INSTALL_TOKEN" ] && [ -z "$INSTALL_NONCE" ]; then
    INSTALL_NONCE=$(timeout 30 wget -q -O - "$IMAGESERVER_URL/boot/$MAC.ipxe" 2>/dev/null |
        sed -n 's/.* INSTALL_NONCE=\([^ ]*\) .*/\1/p' | head -n 1)
fi
if ! timeout 30 wget -q -O /tmp/autoinstall.sh \
        --header "Authorization: Bearer ${INSTALL_TOKEN:-$INSTALL_NONCE}" "$IMAGESERVER_URL/install/$MAC/script"; then
    fail script "cannot fetch $IMAGESERVER_URL/install/$MAC/script"
fi
served_vars /tmp/autoinstall.sh >/tmp/install.vars
[ -n "$INSTALL_TOKEN" ] || INSTALL_TOKEN=$(served_value INSTALL_TOKEN)
report installer "$IFACE $IPADDR, kernel $(uname -r)"
export HOSTNAME IMAGE VERSION INSTALL_TOKEN MAC IMAGESERVER IMAGESERVER_URL
root_device
IMAGE_BYTES=$(served_value IMAGE_BYTES)
say "running the autoinstall script"
progress_monitor &
monitor=$!
# The script's output goes to the console and to the log whose tail a failure report carries.
( sh -e /tmp/autoinstall.sh; echo $? >/tmp/autoinstall.rc ) 2>&1 | tee "$LOG"
kill "$monitor" 2>/dev/null
rc=$(cat /tmp/autoinstall.rc 2>/dev/null || echo 255)
if [ "$rc" != 0 ]; then
    stage=$(cat "$STAGE_FILE" 2>/dev/null)
    [ "$stage" != installer ] || stage=""  # the script kept no stage file of its own
    reason="autoinstall script exited with status $rc"
    # A script that says "FAILED at stage X: why" names both better than its exit status does.
    said=$(grep -o 'FAILED at stage [^ :]*: .*' "$LOG" | tail -n 1)
    if [ -n "$said" ]; then
        rest=${said#FAILED at stage }
        [ -n "$stage" ] || stage=${rest%%:*}
        reason="${rest#*: } (exit status $rc)"
    fi
    fail "$stage" "$reason"
fi
report "done" "installed ${IMAGE:-image} v${VERSION:-?} as ${HOSTNAME:-?}"
say "install complete; rebooting"
sync
reboot -f
while :; do sleep 3600; done
