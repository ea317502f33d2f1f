#!/bin/sh
# udhcpc hook of the installer: set the address (and default route), keep the lease's values in
# /tmp/dhcp.env for /init. It runs inside the installer's own initrd, never on a host.
# udhcpc passes the lease in the environment:
# shellcheck disable=SC2154  # interface ip subnet router dns siaddr serverid hostname
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface" 2>/dev/null
        ip link set "$interface" up
        ;;
    bound|renew)
        ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}"
        if [ -n "$router" ]; then
            route add default gw "${router%% *}" dev "$interface" 2>/dev/null
        fi
        {
            echo "DHCP_IP='$ip'"
            echo "DHCP_MASK='${subnet:-255.255.255.0}'"
            echo "DHCP_ROUTER='${router%% *}'"
            echo "DHCP_DNS='$dns'"
            echo "DHCP_SERVER='${siaddr:-$serverid}'"
            echo "DHCP_HOSTNAME='$hostname'"
        } >/tmp/dhcp.env
        ;;
esac
exit 0
