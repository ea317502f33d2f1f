#!/bin/sh
# shellcheck disable=SC2154  # the variables come from the DHCP client's environment
# busybox udhcpc hook for tests (and for test initrds): configures ONLY the leased address on the
# interface and records what the server sent into $LAB_RECORD if set. Never touches /etc: udhcpc's
# default script would rewrite the HOST's resolv.conf even inside a network namespace.
PATH=/usr/sbin:/usr/bin:/sbin:/bin

record() {
    [ -n "$LAB_RECORD" ] || return 0
    {
        echo "--- $1"
        echo "client=udhcpc"
        echo "interface=$interface"
        echo "ip=$ip"
        echo "mask=$mask"
        echo "router=$router"
        echo "dns=$dns"
        echo "lease=$lease"
        echo "serverid=$serverid"
        echo "domain=$domain"
        echo "hostname=$hostname"
    } >>"$LAB_RECORD"
}

case "$1" in
    bound|renew)
        current=$(ip -4 -o addr show dev "$interface" | awk '{print $4}')
        for address in $current; do
            [ "$address" = "$ip/$mask" ] || ip addr del "$address" dev "$interface"
        done
        ip addr add "$ip/$mask" dev "$interface" 2>/dev/null
        record "$1"
        ;;
    deconfig)
        # udhcpc reports deconfig when it starts and after a release; drop only IPv4 addresses.
        ip -4 addr flush dev "$interface"
        record "$1"
        ;;
    leasefail|nak)
        record "$1"
        ;;
esac
exit 0
