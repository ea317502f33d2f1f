# shellcheck shell=sh
# lib/system.sh -- what makes the clone this machine, not the master: hostname, updateclient's settings,
# a new machine identity; and the image's own post-install hooks.

set_hostname() {
    [ -n "${HOSTNAME:-}" ] || return 0
    echo "$HOSTNAME" >"$TARGET/etc/hostname"
    fqdn=$HOSTNAME
    if [ -n "${DOMAIN:-}" ]; then fqdn=$HOSTNAME.$DOMAIN; fi
    if [ -f "$TARGET/etc/hosts" ]; then
        sed -i '/^127\.0\.1\.1[[:space:]]/d' "$TARGET/etc/hosts"
    fi
    printf '127.0.1.1\t%s %s\n' "$fqdn" "$HOSTNAME" >>"$TARGET/etc/hosts"
}

# updateclient on the installed system: its settings (the host's update token, not the install
# token, authenticates its reports) and the script itself, best effort (an install without them is still an install).
setup_updateclient() {
    [ -n "${IMAGESERVER_URL:-}" ] || return 0
    mkdir -p "$TARGET/etc/systemimager"
    {
        printf '# Written by the imageserver autoinstall script; read by updateclient.\n'
        printf 'IMAGESERVER=%s\nHOSTNAME=%s\nTOKEN=%s\n' "$IMAGESERVER_URL" "${HOSTNAME:-}" \
            "${UPDATE_TOKEN:-${INSTALL_TOKEN:-}}"
    } | private_file "$TARGET/etc/systemimager/updateclient.conf"
    mkdir -p "$TARGET/usr/local/sbin"
    dst=$TARGET/usr/local/sbin/updateclient src=$IMAGESERVER_URL/client/updateclient
    # curl where there is one (busybox wget has no working timeout of its own); under sh -e.
    got=0
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -m 60 -o "$dst" "$src" 2>/dev/null || got=$?
    else
        timeout 60 wget -q -O "$dst" "$src" 2>/dev/null || got=$?
    fi
    if [ "$got" = 0 ]; then
        chmod 755 "$TARGET/usr/local/sbin/updateclient"
    else
        rm -f "$TARGET/usr/local/sbin/updateclient"
        say "updateclient not fetched from $IMAGESERVER_URL/client/updateclient (fetch it later)"
    fi
}

# A machine-id, ssh host keys and none of the master's per-machine state: a clone that keeps the master's
# is the same machine to journald, DHCP servers (client id, DUID), ssh clients, IPv6 stable-privacy addresses.
# What is per-machine is listed once, in per-machine.paths beside the runtime (getimage leaves the "drop"
# entries out of new images; images captured before an entry was listed still carry it: removed here).
new_machine_identity() {
    stage identity "new machine-id and ssh host keys; the master's per-machine state dropped"
    drop_per_machine_state
    id=$(cat "$TARGET/etc/machine-id" 2>/dev/null || true)
    # An image made for first boot (empty or "uninitialized") keeps that: systemd makes the id then.
    if printf '%s' "$id" | grep -qE '^[0-9a-f]{32}$'; then
        new=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
        printf '%s\n' "$new" >"$TARGET/etc/machine-id"
        chmod 444 "$TARGET/etc/machine-id"
        if [ -f "$TARGET/var/lib/dbus/machine-id" ] && [ ! -L "$TARGET/var/lib/dbus/machine-id" ]; then
            printf '%s\n' "$new" >"$TARGET/var/lib/dbus/machine-id"
        fi
    fi
    if ls "$TARGET"/etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
        rm -f "$TARGET"/etc/ssh/ssh_host_*_key "$TARGET"/etc/ssh/ssh_host_*_key.pub
        chroot "$TARGET" ssh-keygen -A >/dev/null || die "ssh-keygen -A in the new system failed"
    fi
}

# Remove every "drop" path of per-machine.paths from the new system, saying what went.
drop_per_machine_state() {
    dropped=''
    while read -r action pm_path _; do
        [ "$action" = drop ] || continue
        # The path's own * expand (it is anchored at $TARGET, holds no spaces and no "..": per_machine.py checks).
        for f in "$TARGET"$pm_path; do
            if [ -e "$f" ] || [ -L "$f" ]; then
                rm -rf "$f" || die "cannot remove the master's $f"
                dropped="$dropped ${f#"$TARGET"}"
            fi
        done
    done <"$INSTALLER_LIB/per-machine.paths"
    if [ -n "$dropped" ]; then say "the master's per-machine state removed:$dropped"; fi
}

# /etc/systemimager/post-install/* of the image, in name order, run inside the new system.
run_post_install() {
    dir=$TARGET/etc/systemimager/post-install
    [ -d "$dir" ] || return 0
    export HOSTNAME="${HOSTNAME:-}" DOMAIN="${DOMAIN:-}" IPADDR="${IPADDR:-}" NETMASK="${NETMASK:-}" \
        GATEWAY="${GATEWAY:-}" DNS="${DNS:-}" MAC="${MAC:-}"
    for hook in "$dir"/*; do
        if [ ! -f "$hook" ] || [ ! -x "$hook" ]; then continue; fi
        name=${hook##*/}
        stage post-install "$name"
        chroot "$TARGET" "/etc/systemimager/post-install/$name" || die "post-install hook $name failed"
    done
}
