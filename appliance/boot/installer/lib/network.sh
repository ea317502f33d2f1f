# shellcheck shell=sh
# lib/network.sh -- the installed system's network, for this machine's NIC: written for what the image
# uses (netplan, NetworkManager, ifupdown or systemd-networkd).

mask_to_prefix() {
    bits=0
    old_ifs=$IFS
    IFS=.
    # shellcheck disable=SC2086  # split the dotted quad
    set -- $1
    IFS=$old_ifs
    for octet in "$@"; do
        case $octet in
            255) bits=$((bits + 8)) ;; 254) bits=$((bits + 7)) ;; 252) bits=$((bits + 6)) ;;
            248) bits=$((bits + 5)) ;; 240) bits=$((bits + 4)) ;; 224) bits=$((bits + 3)) ;;
            192) bits=$((bits + 2)) ;; 128) bits=$((bits + 1)) ;;
        esac
    done
    echo "$bits"
}

# image_has PATH... -- one of the PATHs exists in the image (usr-merged links are relative: they resolve there).
image_has() {
    for p in "$@"; do
        if [ -e "$TARGET$p" ]; then return 0; fi
    done
    return 1
}

# unit_enabled UNIT -- the image enables UNIT (a link in some /etc/systemd/system/*.wants).
unit_enabled() {
    for d in "$TARGET"/etc/systemd/system/*.wants; do
        if [ -e "$d/$1" ] || [ -L "$d/$1" ]; then return 0; fi
    done
    return 1
}

# What configures the image's network, from its tree: netplan (it renders for networkd or
# NetworkManager itself), NetworkManager when enabled, ifupdown, systemd-networkd when enabled; else
# the one that is installed. Prints netplan, networkmanager, ifupdown, networkd or none.
network_system() {
    if image_has /usr/sbin/netplan /sbin/netplan && [ -d "$TARGET/etc/netplan" ]; then echo netplan
    elif image_has /usr/sbin/NetworkManager && unit_enabled NetworkManager.service; then echo networkmanager
    elif image_has /sbin/ifup /usr/sbin/ifup && [ -f "$TARGET/etc/network/interfaces" ]; then echo ifupdown
    elif unit_enabled systemd-networkd.service || unit_enabled systemd-networkd.socket; then echo networkd
    elif image_has /usr/sbin/NetworkManager; then echo networkmanager
    elif image_has /lib/systemd/systemd-networkd /usr/lib/systemd/systemd-networkd; then echo networkd
    else echo none
    fi
}

# The network of the installed system: static from IPADDR/NETMASK/GATEWAY/DNS, or DHCP (NET_MODE
# overrides), for the NIC with $MAC (by its MAC where the system matches on it, else by the name the
# image gives it), written for what the image uses (network_system).
configure_network() {
    mode=${NET_MODE:-}
    if [ -z "$mode" ]; then
        if [ -n "${IPADDR:-}" ]; then mode=static; else mode=dhcp; fi
    fi
    mac=$(printf '%s' "${MAC:-}" | tr 'A-F' 'a-f')
    prefix=$(mask_to_prefix "${NETMASK:-255.255.255.0}")
    iface=${TARGET_IFACE:-$(image_ifname)}
    iface=${iface:-${IFACE:-eth0}}
    system=$(network_system)
    case $system in
        netplan) write_netplan ;;
        networkmanager) write_nmconnection ;;
        ifupdown) write_ifupdown ;;
        networkd) write_networkd ;;
        *)
            stage network "no netplan, NetworkManager, ifupdown or systemd-networkd in the image: left as it is"
            return 0 ;;
    esac
    if [ "$mode" = static ] && [ -n "${DNS:-}" ] && [ ! -L "$TARGET/etc/resolv.conf" ]; then
        each "$DNS" | sed 's/^/nameserver /' >"$TARGET/etc/resolv.conf"
    fi
}

# /etc/netplan/90-imageserver.yaml (netplan merges every *.yaml in name order). The master's files that
# configure ethernets name its own NICs: renamed to *.yaml.master (netplan reads only *.yaml), so the
# master's settings cannot win on this machine's NIC; files without ethernets (a renderer) stay.
write_netplan() {
    dir=$TARGET/etc/netplan
    f=$dir/90-imageserver.yaml
    for y in "$dir"/*.yaml; do
        if [ ! -f "$y" ] || [ "$y" = "$f" ]; then continue; fi
        if grep -q '^[[:space:]]*ethernets:' "$y"; then
            mv -f "$y" "$y.master"
            say "netplan: the master's ${y##*/} (its NICs) renamed to ${y##*/}.master"
        fi
    done
    {
        # netplan wants its files private (they may hold secrets): private_file
        printf '# Written by the imageserver autoinstall script.\nnetwork:\n  version: 2\n  ethernets:\n'
        if [ -n "$mac" ]; then
            printf '    imageserver:\n      match:\n        macaddress: "%s"\n' "$mac"
        else
            printf '    %s:\n' "$iface"
        fi
        if [ "$mode" = static ]; then
            printf '      dhcp4: false\n      addresses: ["%s/%s"]\n' "$IPADDR" "$prefix"
            if [ -n "${GATEWAY:-}" ]; then
                printf '      routes:\n        - to: 0.0.0.0/0\n          via: %s\n' "$GATEWAY"
            fi
            if [ -n "${DNS:-}" ] || [ -n "${DOMAIN:-}" ]; then
                printf '      nameservers:\n'
                if [ -n "${DNS:-}" ]; then printf '        addresses: [%s]\n' "$(joined , "$DNS")"; fi
                if [ -n "${DOMAIN:-}" ]; then printf '        search: [%s]\n' "$DOMAIN"; fi
            fi
        else
            printf '      dhcp4: true\n'
        fi
    } | private_file "$f"
    stage network "$mode, netplan (${mac:-$iface})"
}

# /etc/NetworkManager/system-connections/imageserver.nmconnection: a keyfile for the NIC with $MAC,
# preferred over any connection of the master's (autoconnect-priority).
write_nmconnection() {
    dir=$TARGET/etc/NetworkManager/system-connections
    mkdir -p "$dir"
    f=$dir/imageserver.nmconnection
    uuid=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || true)
    {
        # NetworkManager ignores keyfiles others can read: private_file
        printf '[connection]\nid=imageserver\n'
        if [ -n "$uuid" ]; then printf 'uuid=%s\n' "$uuid"; fi
        printf 'type=ethernet\nautoconnect=true\nautoconnect-priority=100\n'
        if [ -n "$mac" ]; then printf '\n[ethernet]\nmac-address=%s\n' "$mac"
        else printf 'interface-name=%s\n' "$iface"; fi
        if [ "$mode" = static ]; then
            printf '\n[ipv4]\nmethod=manual\naddress1=%s/%s%s\n' "$IPADDR" "$prefix" "${GATEWAY:+,$GATEWAY}"
            if [ -n "${DNS:-}" ]; then printf 'dns=%s;\n' "$(joined ';' "$DNS")"; fi
            if [ -n "${DOMAIN:-}" ]; then printf 'dns-search=%s;\n' "$DOMAIN"; fi
        else
            printf '\n[ipv4]\nmethod=auto\n'
        fi
    } | private_file "$f"
    stage network "$mode, NetworkManager keyfile (${mac:-$iface})"
}

write_ifupdown() {
    mkdir -p "$TARGET/etc/network/interfaces.d"
    retire_master_stanzas "$TARGET/etc/network/interfaces"
    f=$TARGET/etc/network/interfaces.d/imageserver
    {
        printf 'allow-hotplug %s\n' "$iface"
        if [ "$mode" = static ]; then
            printf 'iface %s inet static\n    address %s/%s\n' "$iface" "$IPADDR" "$prefix"
            if [ -n "${GATEWAY:-}" ]; then printf '    gateway %s\n' "$GATEWAY"; fi
            if [ -n "${DNS:-}" ]; then printf '    dns-nameservers %s\n' "$(joined ' ' "$DNS")"; fi
            if [ -n "${DOMAIN:-}" ]; then printf '    dns-search %s\n' "$DOMAIN"; fi
        else
            printf 'iface %s inet dhcp\n' "$iface"
        fi
    } >"$f"
    stage network "$mode, ifupdown on $iface"
}

write_networkd() {
    mkdir -p "$TARGET/etc/systemd/network"
    f=$TARGET/etc/systemd/network/10-imageserver.network
    {
        if [ -n "$mac" ]; then printf '[Match]\nMACAddress=%s\n' "$mac"
        else printf '[Match]\nName=%s\n' "$iface"; fi
        printf '\n[Network]\n'
        if [ "$mode" = static ]; then
            printf 'Address=%s/%s\n' "$IPADDR" "$prefix"
            if [ -n "${GATEWAY:-}" ]; then printf 'Gateway=%s\n' "$GATEWAY"; fi
            each "${DNS:-}" | sed 's/^/DNS=/'
            if [ -n "${DOMAIN:-}" ]; then printf 'Domains=%s\n' "$DOMAIN"; fi
        else
            printf 'DHCP=ipv4\n'
        fi
    } >"$f"
    stage network "$mode, systemd-networkd (${mac:-$iface})"
}

# The installed system's name for the NIC with $MAC, as the image's own udev names it: its net_id
# builtin run on this machine's /sys (bound into $TARGET). The installer's kernel calls it eth0; the
# image, with predictable names, ens2 or enp0s3. Empty when no NIC has $MAC.
image_ifname() {
    [ -n "${MAC:-}" ] || return 0
    want=$(printf '%s' "$MAC" | tr 'A-F' 'a-f')
    kname=''
    for n in /sys/class/net/*; do
        [ "$(cat "$n/address" 2>/dev/null)" = "$want" ] && kname=${n##*/}
    done
    [ -n "$kname" ] || return 0
    # net.ifnames=0 on the image's kernel command line: the kernel's name stays.
    if grep -qs 'net.ifnames=0' "$TARGET/etc/default/grub" "$TARGET/etc/kernel/cmdline" ||
        { [ ! -x "$TARGET/bin/udevadm" ] && [ ! -x "$TARGET/usr/bin/udevadm" ]; }; then
        echo "$kname"
        return 0
    fi
    ids=$(chroot "$TARGET" udevadm test-builtin net_id "/sys/class/net/$kname" 2>&1) || true
    # udev's default NamePolicy order (99-default.link): database, onboard, slot, path.
    for key in ID_NET_NAME_FROM_DATABASE ID_NET_NAME_ONBOARD ID_NET_NAME_SLOT ID_NET_NAME_PATH; do
        name=$(printf '%s\n' "$ids" | sed -n "s/^$key=//p" | head -n 1)
        if [ -n "$name" ]; then echo "$name"; return 0; fi
    done
    echo "$kname"
}

# The master's own NIC stanzas in /etc/network/interfaces (named for the master's hardware) are
# commented out, so they neither clash with this machine's nor wait for a NIC it does not have; lo stays.
retire_master_stanzas() {
    [ -f "$1" ] || return 0
    awk '
        /^[ \t]*(auto|allow-[a-z]+)[ \t]/ {
            keep = ""; n = split($0, w, /[ \t]+/)
            for (i = 2; i <= n; i++) if (w[i] == "lo") keep = "lo"
            if (keep == "") { print "# (master) " $0; next }
            print $1 " lo"; next
        }
        /^[ \t]*iface[ \t]/ { inblock = ($2 != "lo") }
        /^[ \t]*(mapping|source|source-directory|rename)[ \t]/ { inblock = 0 }
        { if (inblock) print "# (master) " $0; else print }
    ' "$1" >"$1.new" && mv -f "$1.new" "$1"
}
