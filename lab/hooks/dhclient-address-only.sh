#!/bin/sh
# shellcheck disable=SC2154  # the variables come from the DHCP client's environment
# dhclient hook for tests: configures ONLY the leased address on the interface and records what the
# server sent. Never touches /etc (resolv.conf, hostname): dhclient's default hook would rewrite the
# HOST's files even inside a network namespace. dhclient passes LAB_RECORD via `-e LAB_RECORD=<file>`.
PATH=/usr/sbin:/usr/bin:/sbin:/bin

record() {
    [ -n "$LAB_RECORD" ] || return 0
    {
        echo "--- $reason"
        echo "client=dhclient"
        echo "interface=$interface"
        echo "ip=$1"
        echo "mask=$2"
        echo "router=$3"
        echo "dns=$4"
        echo "lease=$5"
        echo "serverid=$6"
        echo "domain=$7"
        echo "hostname=$8"
    } >>"$LAB_RECORD"
}

case "$reason" in
    BOUND|RENEW|REBIND|REBOOT)
        if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
            ip addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null
        fi
        ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" 2>/dev/null
        record "$new_ip_address" "$new_subnet_mask" "$new_routers" "$new_domain_name_servers" \
            "$new_dhcp_lease_time" "$new_dhcp_server_identifier" "$new_domain_name" "$new_host_name"
        ;;
    EXPIRE|FAIL|RELEASE|STOP)
        if [ -n "$old_ip_address" ]; then
            ip addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null
        fi
        record "$old_ip_address" "$old_subnet_mask" "" "" "" "" "" ""
        ;;
esac
exit 0
