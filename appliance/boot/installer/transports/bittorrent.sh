# shellcheck shell=sh disable=SC2034  # RSYNC_CHECK is read by pull_image (lib/image.sh)
# transports/bittorrent.sh -- TRANSPORT=bittorrent: the image's regular files by BitTorrent (aria2c, this
# host's private torrent from the imageserver's tracker), then rsync --size-only for the rest. Implements
# the transport contract of lib/image.sh.

BT_PID=''

transport_prepare() {
    stage rsync "$MODULE by BitTorrent from ${IMAGESERVER_URL:-}"
    command -v aria2c >/dev/null 2>&1 || { say "no aria2c in this installer"; return 1; }
    if [ -z "${IMAGESERVER_URL:-}" ] || [ -z "${MAC:-}" ]; then
        say "no IMAGESERVER_URL/MAC for the torrent"
        return 1
    fi
    btdir=${BT_DIR:-/tmp/bt.$$}
    rm -rf "$btdir"
    mkdir -p "$btdir"
}

transport_fetch() {
    pull_torrent || return 1
    RSYNC_CHECK=--size-only
    stage rsync "$MODULE metadata by rsync from $IMAGESERVER_HOST:$RSYNC_PORT (data came by BitTorrent)"
}

transport_fallback() {
    stage rsync "BitTorrent failed: $MODULE by rsync from $IMAGESERVER_HOST:$RSYNC_PORT"
}

# transport_finish [wait] -- the seeding aria2c ended (before unmounting: it holds files of the target
# open); with wait, once it stops by itself (BT_SEED_SECONDS after the download).
transport_finish() {
    [ -n "$BT_PID" ] || return 0
    if [ "${1:-}" = wait ]; then
        wait "$BT_PID" || true
    else
        kill "$BT_PID" 2>/dev/null || true
        wait "$BT_PID" 2>/dev/null || true
    fi
    BT_PID=''
}

# bt_fetch QUERY -- one aria2c run of this host's torrent (GET /install/MAC/torrent?QUERY) in $btdir.
# Returns once every piece is in (SHA-1 checked, written: no disk cache); aria2c then goes on seeding in
# the background while the install continues, for the machines still downloading (a swarm whose finished
# members all leave at once leaves its slowest to the server alone), until transport_finish or BT_SEED_SECONDS.
bt_fetch() {
    curl -fsS -m 120 -o "$btdir/image.torrent" -H "Authorization: Bearer ${INSTALL_TOKEN:-}" \
        "$IMAGESERVER_URL/install/$MAC/torrent?$1" || { say "no torrent from $IMAGESERVER_URL"; return 1; }
    rm -f "$btdir/complete"
    printf '#!/bin/sh\n: >%s/complete\n' "$btdir" >"$btdir/on-complete"
    chmod 755 "$btdir/on-complete"
    # No DHT, peer exchange or local discovery: peers only from the imageserver's tracker (a private torrent).
    # A swarm without progress for BT_STOP_TIMEOUT seconds gives up.
    aria2c --dir="$btdir" --seed-ratio=0.0 --seed-time="$(awk "BEGIN { print ${BT_SEED_SECONDS:-30} / 60 }")" \
        --on-bt-download-complete="$btdir/on-complete" --disk-cache=0 \
        --enable-dht=false --enable-dht6=false --bt-enable-lpd=false \
        --enable-peer-exchange=false --file-allocation=none --auto-file-renaming=false --allow-overwrite=true \
        --summary-interval=0 --console-log-level=error --quiet=true --bt-stop-timeout="${BT_STOP_TIMEOUT:-60}" \
        --bt-tracker-connect-timeout=10 --bt-tracker-timeout=10 --connect-timeout=10 --timeout=30 \
        --max-tries=3 --retry-wait=1 --split=1 --max-connection-per-server=1 --bt-max-peers="${BT_MAX_PEERS:-80}" \
        ${BT_LOG:+--log="$BT_LOG" --log-level=info} -T "$btdir/image.torrent" &
    BT_PID=$!
    while [ ! -e "$btdir/complete" ] && kill -0 "$BT_PID" 2>/dev/null; do sleep 0.2; done
    [ -e "$btdir/complete" ] && return 0
    wait "$BT_PID" || say "aria2c stopped (exit $?)"
    BT_PID=''
    return 1
}

# pull_torrent -- the image's regular files by BitTorrent (aria2c), written straight into $TARGET (the
# torrent's top directory is a symlink to it): from the imageserver's seeder and every machine
# installing the same version at once; if that swarm stalls, again with the imageserver's HTTP web seed
# added (aria2c keeps the pieces it has). 1 if both fail.
pull_torrent() {
    ln -s "$TARGET" "$btdir/${IMAGE}_v${VERSION}"
    if bt_fetch webseed=0 || { say "BitTorrent swarm stalled: again with the web seed"; bt_fetch webseed=1; }; then
        return 0  # $btdir stays while aria2c seeds from it; nothing in it is part of the target
    fi
    rm -rf "$btdir"
    return 1
}
