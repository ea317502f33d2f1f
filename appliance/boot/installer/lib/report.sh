# shellcheck shell=sh
# lib/report.sh -- the install's stages: each one said, reported (lib/common.sh's report) and kept in
# $STAGE_FILE for the installer's /init, which reports a failure with the stage it happened in; and
# /init's copy progress while the stage is "rsync".

# stage NAME DETAIL -- the install is now at stage NAME.
stage() {
    STAGE=$1
    if [ -n "${STAGE_FILE:-}" ]; then echo "$1" >"$STAGE_FILE" || true; fi
    say "[$1] $2"
    report "$1" "$2"
}

# die REASON -- stop the install; the installer's init reports the failure with the log tail.
die() {
    say "FAILED at stage ${STAGE:-start}: $*"
    [ -n "${STAGE_FILE:-}" ] || report failed "stage: ${STAGE:-start}: $*"
    exit 1
}

# progress_monitor -- copy progress while the script's stage (in $STAGE_FILE) is "rsync": bytes written to
# the block devices mounted at and under $TARGET since the copy began (their kernel write counters,
# /sys/class/block/NAME/stat: whatever the transport, rsync, aria2c or udp-receiver), against IMAGE_BYTES
# (the imageserver's variables carry it). Not df: a filesystem's used space goes down as well as up while
# it is written (xfs trims its speculative preallocations), and the progress went backwards. Counters only
# grow; the count includes the filesystems' own metadata and journal, so it stops at IMAGE_BYTES. Reported
# as stage "progress", which the imageserver keeps as the host's live progress, not as timeline rows. Runs
# in the background of /init until the copy is over. PROC_MOUNTS and SYS_BLOCK: other files for tests.
progress_monitor() {
    _p_base='' _p_copying='' _p_last=0
    while :; do
        sleep "${PROGRESS_INTERVAL:-1}"
        _p_stage=$(cat "$STAGE_FILE" 2>/dev/null)
        _p_written=$(target_bytes_written)
        if [ "$_p_stage" != rsync ]; then
            [ -z "$_p_copying" ] || return 0  # the copy is over
            _p_base=$_p_written  # mounted and still empty (mkfs's writes are not the copy's): the baseline
            continue
        fi
        _p_copying=1
        [ -n "$_p_base" ] || _p_base=$_p_written
        _p_bytes=$((_p_written - _p_base))
        # A device no longer mounted takes its count with it: the progress still never goes back.
        [ "$_p_bytes" -ge "$_p_last" ] || _p_bytes=$_p_last
        if [ -n "${IMAGE_BYTES:-}" ] && [ "$_p_bytes" -gt "$IMAGE_BYTES" ]; then _p_bytes=$IMAGE_BYTES; fi
        _p_last=$_p_bytes
        http_request POST "$IMAGESERVER_URL/install/$MAC/events" "${INSTALL_TOKEN:-}" \
            "{\"stage\": \"progress\", \"bytes\": $_p_bytes${IMAGE_BYTES:+, \"total\": $IMAGE_BYTES}}" 5 \
            /dev/null /dev/null >/dev/null
    done
}

# target_bytes_written -- bytes the kernel has written to the block devices mounted at and under $TARGET
# (each device once: btrfs subvolumes and bind mounts share one), from the 7th field of their stat
# (sectors written, always of 512 bytes).
target_bytes_written() {
    _p_target=${TARGET:-/mnt/target}
    awk -v t="$_p_target" '$2 == t || index($2, t "/") == 1 { print $1 }' "${PROC_MOUNTS:-/proc/mounts}" |
        while IFS= read -r _p_dev; do
            case $_p_dev in /dev/*) ;; *) continue ;; esac
            _p_real=$(readlink -f "$_p_dev" 2>/dev/null) || _p_real=$_p_dev
            echo "${_p_real##*/}"
        done | sort -u | while IFS= read -r _p_name; do
            cat "${SYS_BLOCK:-/sys/class/block}/$_p_name/stat" 2>/dev/null
        done | awk '{ s += $7 } END { printf "%.0f\n", s * 512 }'
}
