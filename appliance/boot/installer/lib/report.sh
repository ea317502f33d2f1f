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

# progress_monitor -- copy progress while the script's stage (in $STAGE_FILE) is "rsync": bytes on the
# target file systems beyond what they held when the copy began, against IMAGE_BYTES (the imageserver's
# variables carry it). Reported as stage "progress", which the imageserver keeps as the host's live
# progress, not as timeline rows. Runs in the background of /init until the copy is over.
progress_monitor() {
    _p_target=${TARGET:-/mnt/target}
    _p_base='' _p_copying=''
    while :; do
        sleep 1
        _p_stage=$(cat "$STAGE_FILE" 2>/dev/null)
        _p_used=$(df -k 2>/dev/null |
            awk -v t="$_p_target" '$6 == t || index($6, t "/") == 1 { s += $3 } END { print s + 0 }')
        if [ "$_p_stage" != rsync ]; then
            [ -z "$_p_copying" ] || return 0  # the copy is over
            _p_base=$_p_used  # mounted and still empty: the baseline
            continue
        fi
        _p_copying=1
        [ -n "$_p_base" ] || _p_base=$_p_used
        _p_bytes=$(( (_p_used - _p_base) * 1024 ))
        [ "$_p_bytes" -ge 0 ] || _p_bytes=0
        http_request POST "$IMAGESERVER_URL/install/$MAC/events" "${INSTALL_TOKEN:-}" \
            "{\"stage\": \"progress\", \"bytes\": $_p_bytes${IMAGE_BYTES:+, \"total\": $IMAGE_BYTES}}" 5 \
            /dev/null /dev/null >/dev/null
    done
}
