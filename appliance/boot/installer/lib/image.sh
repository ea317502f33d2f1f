# shellcheck shell=sh
# lib/image.sh -- the image onto the mounted target: the host's transport (transports/$TRANSPORT.sh)
# first, then always the rsync pass from the imageserver's rsync daemon, which brings what the transport
# could not carry (or everything, when it is plain rsync or failed).
#
# The transport contract (one file per transport, sourced by runtime.sh):
#   transport_prepare                     its tools and scratch space; 1 when it cannot run here
#   transport_fetch [--exclude=/MOUNT]... the image's data into $TARGET, reporting stage rsync; 0 when the
#                                         data came: RSYNC_CHECK is then the rsync pass's comparison option
#   transport_fallback                    it failed: report the rsync pass that brings the image instead
#                                         (RSYNC_CHECK for it)
#   transport_finish [wait]               end what it left running (wait: until that ends by itself)

# rsync_admitted ARGS... -- rsync ARGS, waiting in line while the imageserver's rsync daemon is full
# (rsync_in_line). A refused machine reports stage "queued" (status/watch/the dashboard show it waiting);
# once admitted it reports its stage again.
rsync_admitted() {
    QUEUED_FROM=$STAGE
    rsync_in_line "$@"
}
# Every refusal would be one event per machine every few seconds: the first and every tenth.
in_line_refused() {
    if [ "$1" = 1 ] || [ $(($1 % 10)) = 0 ]; then
        stage queued "waiting for a free transfer slot on $IMAGESERVER_HOST:$RSYNC_PORT (try $1)"
    fi
}
in_line_admitted() { stage "$QUEUED_FROM" "admitted after $1 refusal(s), $2 s in line"; }

# shellcheck disable=SC2120  # called with --exclude options only when the image has FAT mounts
# pull_image [--exclude=...] -- the whole image, with hard links, ACLs, xattrs, sparse files, devices: the
# transport's data, then rsync. After BitTorrent the rsync runs with --size-only and writes what a torrent
# cannot carry (owners, modes, mtimes, xattrs, ACLs, hard links, symlinks, devices, empty files and
# directories) without moving file data (the pieces were SHA-1 checked); after multicast it moves only
# what the stream did not bring. A transport that failed leaves the full rsync (no --size-only: a
# half-written file has the size but not the mtime; after a stream whose digest did not match, --checksum).
pull_image() {
    RSYNC_CHECK=''
    if ! { transport_prepare && transport_fetch "$@"; }; then
        transport_fallback
    fi
    # shellcheck disable=SC2086  # empty or one option
    rsync_admitted -aHAXS $RSYNC_CHECK --numeric-ids --devices --specials --delete --timeout=600 \
        --exclude=/boot/ "$@" \
        "rsync://${RSYNC_AUTH}$IMAGESERVER_HOST:$RSYNC_PORT/$MODULE/" "$TARGET/" ||
        die "rsync of $MODULE from $IMAGESERVER_HOST:$RSYNC_PORT failed"
    # /boot without -S: boot loaders (syslinux, some grub stages) cannot read files with holes.
    if rsync_admitted --list-only "rsync://${RSYNC_AUTH}$IMAGESERVER_HOST:$RSYNC_PORT/$MODULE/boot/" \
        >/dev/null 2>&1; then
        # shellcheck disable=SC2086  # empty or one option
        rsync_admitted -aHAX $RSYNC_CHECK --numeric-ids --delete --timeout=600 \
            "rsync://${RSYNC_AUTH}$IMAGESERVER_HOST:$RSYNC_PORT/$MODULE/boot/" "$TARGET/boot/" ||
            die "rsync of $MODULE/boot from $IMAGESERVER_HOST:$RSYNC_PORT failed"
    fi
}

# pull_fat MOUNTPOINT -- a FAT filesystem (the ESP) keeps no owners, modes, links or xattrs.
pull_fat() {
    rsync_admitted -rtO --modify-window=1 --delete --timeout=600 \
        "rsync://${RSYNC_AUTH}$IMAGESERVER_HOST:$RSYNC_PORT/$MODULE$1/" "$TARGET$1/" ||
        die "rsync of $MODULE$1 (FAT) failed"
}
