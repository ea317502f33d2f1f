# shellcheck shell=sh disable=SC2034  # RSYNC_CHECK is read by pull_image (lib/image.sh)
# transports/multicast.sh -- TRANSPORT=multicast: the image from the imageserver's udpcast session of this
# version (encrypted with a per-session key this host gets with its seat), then the rsync pass for what
# the stream did not bring. Implements the transport contract of lib/image.sh.

# mc_field NAME FILE -- one NAME=value line of the imageserver's text answer (values: [A-Za-z0-9.:_-])
mc_field() { sed -n "s/^$1=\([A-Za-z0-9.:_-]*\)\$/\1/p" "$2" | head -n 1; }

MULTICAST_WHY=''

# The receiver's tools and a private scratch directory (the session's key goes there).
transport_prepare() {
    for tool in udp-receiver openssl sha256sum mkfifo curl; do
        command -v "$tool" >/dev/null 2>&1 || { MULTICAST_WHY="no $tool in the installer"; return 1; }
    done
    [ -x /usr/bin/tar ] || { MULTICAST_WHY="no GNU tar (/usr/bin/tar) in the installer"; return 1; }
    mc=${MULTICAST_DIR:-/tmp/multicast}
    rm -rf "$mc" && mkdir -m 700 "$mc"
}

transport_fetch() {
    pull_stream "$@" || return 1
    stage rsync "$MODULE from $IMAGESERVER_HOST:$RSYNC_PORT: what the multicast did not bring"
}

# A stream whose digest did not match may have written any file wrong: rsync compares every file's content.
transport_fallback() {
    RSYNC_CHECK=--checksum
    stage rsync "$MODULE from $IMAGESERVER_HOST:$RSYNC_PORT (multicast fallback: $MULTICAST_WHY)"
}

transport_finish() { return 0; }

# pull_multicast [--exclude=/MOUNT ...] -- the whole multicast pull (prepare and stream) alone.
pull_multicast() { transport_prepare && pull_stream "$@"; }

# pull_stream [--exclude=/MOUNT ...] -- join the udpcast session of this version and unpack the stream
# straight into $TARGET (no staging): udp-receiver | tee (sha256) | openssl (the session's key) | GNU tar.
# 0 when the stream's digest equals the one the server sent; else MULTICAST_WHY says why and 1.
pull_stream() {
    mc_url="$IMAGESERVER_URL/install/$MAC/multicast"
    mc_auth="Authorization: Bearer ${INSTALL_TOKEN:-}"
    if ! curl -sS -m 20 -f -X POST -H "$mc_auth" -H 'Accept: text/plain' -o "$mc/seat" "$mc_url" 2>"$mc/err"; then
        MULTICAST_WHY="no seat: $(head -c 200 "$mc/err")"; return 1
    fi
    portbase=$(mc_field portbase "$mc/seat"); rdv=$(mc_field rdv_address "$mc/seat")
    sender=$(mc_field sender "$mc/seat"); key=$(mc_field key "$mc/seat"); window=$(mc_field start_window "$mc/seat")
    case $sender in *[!0-9.]*) sender='' ;; esac  # a name, not the address udp-receiver prints: no check
    case "$portbase:$key:$rdv" in
        *[!0-9a-f:.]*|:*|*::*|*:) MULTICAST_WHY="a seat without portbase, key or address"; return 1 ;;
    esac
    (umask 077 && printf '%s' "$key" >"$mc/key")
    mc_exclude=''
    for a in "$@"; do
        case $a in --exclude=/*) p=${a#--exclude=/}; mc_exclude="$mc_exclude --exclude=./${p%/}" ;; esac
    done
    # Multicast leaves by the provisioning NIC even when a default route points elsewhere.
    ip route replace 224.0.0.0/4 dev "$IFACE" 2>/dev/null || true
    stage multicast "$MODULE: session on $rdv port $portbase, start window ${window:-?} s"
    mkfifo "$mc/ciphertext"
    sha256sum <"$mc/ciphertext" >"$mc/received" &
    hasher=$!
    # The pipeline's status is tar's; a receiver or cipher failure shows in the digest compared below.
    # shellcheck disable=SC2086  # mc_exclude: a list of options
    # --receive-timeout: a sender that stops mid-stream (killed, dropped us, gone) ends the pull; the
    # rsync fallback then brings the image instead of the machine waiting forever.
    ( udp-receiver --nokbd --interface "$IFACE" --portbase "$portbase" --mcast-rdv-address "$rdv" \
          --start-timeout "$(( ${window%.*} + 60 ))" --receive-timeout "${MULTICAST_RECEIVE_TIMEOUT:-60}" \
          2>"$mc/log" |
          tee "$mc/ciphertext" | openssl enc -d -aes-256-ctr -pbkdf2 -pass "file:$mc/key" |
          /usr/bin/tar -x -C "$TARGET" --numeric-owner --acls --xattrs --xattrs-include='*' --same-permissions \
              --same-owner --delay-directory-restore $mc_exclude -f - ) 2>"$mc/unpack"
    rc=$?
    wait "$hasher" || true
    rm -f "$mc/key"
    if [ "$rc" != 0 ]; then
        MULTICAST_WHY="the stream failed ($rc): $(tr '\r' '\n' <"$mc/log" | tail -n 2 | tr '\n' ' ')"
        MULTICAST_WHY="$MULTICAST_WHY$(head -c 200 "$mc/unpack")"
        return 1
    fi
    if [ -n "$sender" ] && ! tr '\r' '\n' <"$mc/log" | grep -q "Connected as #[0-9]* to $sender\$"; then
        MULTICAST_WHY="the stream came from another sender than $sender"; return 1
    fi
    got=$(cut -d' ' -f1 "$mc/received")
    want=''
    i=0
    while [ $i -lt 30 ]; do
        if curl -sS -m 10 -f -H "$mc_auth" -H 'Accept: text/plain' -o "$mc/state" "$mc_url" 2>/dev/null; then
            case $(mc_field state "$mc/state") in
                done) want=$(mc_field sha256 "$mc/state"); break ;;
                failed) break ;;
            esac
        fi
        sleep 1; i=$((i + 1))
    done
    if [ -z "$want" ] || [ "$got" != "$want" ]; then
        MULTICAST_WHY="digest ${got:-none} is not the sender's ${want:-unknown}"; return 1
    fi
    say "multicast: $MODULE arrived whole (sha256 $got)"
    return 0
}
