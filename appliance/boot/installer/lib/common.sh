# shellcheck shell=sh
# lib/common.sh -- what every imageserver shell program shares: the installer's /init (init.sh), the
# autoinstall runtime (lib/*.sh, transports/*.sh) and updateclient on installed machines (served with
# this file inlined: appliance/boot/installer/runtime.py). Messages, JSON strings, HTTP POSTs, the install
# event report, jittered retries and private files. POSIX sh; no local variables in POSIX sh, so the
# functions here name theirs with a leading underscore (a caller's $status or $tries stays its own).

# PROG names the program in its messages: "autoinstall: ...", "updateclient: ...".
say() { echo "${PROG:-imageserver}: $*"; }

# json_str -- a JSON string literal of stdin (control characters dropped, lines joined with \n).
json_str() {
    tr -d '\000-\010\013\014\016-\037' | awk 'BEGIN { ORS = ""; printf "\"" }
        { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\r/, ""); if (NR > 1) printf "\\n"; printf "%s", $0 }
        END { printf "\"" }'
}

# http_request METHOD URL TOKEN BODY SECONDS OUT ERR -- a request with a bearer token (POST: BODY as JSON),
# the answer's body into OUT, messages into ERR; prints the HTTP status (000: no answer). curl where there
# is one; else wget (busybox's, under timeout(1): busybox 1.35's wget crashes on -T), whose failure
# message carries the status line of a refusal; else busybox's own wget.
http_request() {
    if command -v curl >/dev/null 2>&1; then
        if [ "$1" = POST ]; then
            curl -sS -m "$5" -o "$6" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
                -H "Authorization: Bearer $3" --data-binary "$4" "$2" 2>"$7" || true
        else
            curl -sS -m "$5" -o "$6" -w '%{http_code}' -H "Authorization: Bearer $3" "$2" 2>"$7" || true
        fi
        return 0  # curl printed the status (000: no answer)
    fi
    _h_bb=''
    command -v wget >/dev/null 2>&1 || _h_bb=busybox
    # shellcheck disable=SC2086  # $_h_bb: "busybox" (its applets) or nothing (the wget on PATH)
    if [ "$1" = POST ]; then
        $_h_bb timeout "$5" $_h_bb wget -q -O "$6" --header "Authorization: Bearer $3" \
            --header 'Content-Type: application/json' --post-data "$4" "$2" 2>"$7"
    else
        $_h_bb timeout "$5" $_h_bb wget -q -O "$6" --header "Authorization: Bearer $3" "$2" 2>"$7"
    fi && { echo 200; return 0; }
    _h_status=$(sed -n 's/.*HTTP\/1\.[01] \([0-9][0-9][0-9]\).*/\1/p' "$7" | head -n 1)
    echo "${_h_status:-000}"
}

# report STAGE [DETAIL] -- POST an install event ($IMAGESERVER_URL/install/$MAC/events, with the install
# token); never fails the caller (reporting is best effort). "done" and "failed" are what the imageserver
# acts on, so they are retried: a server whose disk is busy (its journal's fsync waiting behind other
# writers) can take tens of seconds to answer. A refusal (HTTP 4xx: e.g. the token is spent because an
# earlier attempt did land) ends the retries.
report() {
    [ -n "${IMAGESERVER_URL:-}" ] && [ -n "${MAC:-}" ] || return 0
    _r_body="{\"stage\": \"$(printf '%s' "$1" | tr -d '\000-\037"\134')\", \"detail\": $(printf '%s' "${2:-}" | json_str)}"
    case $1 in done|failed) _r_tries=5 _r_wait=${REPORT_TIMEOUT:-30} ;; *) _r_tries=1 _r_wait=10 ;; esac
    _r_err=${TMPDIR:-/tmp}/report.$$.err
    _r_try=1
    while :; do
        _r_status=$(http_request POST "$IMAGESERVER_URL/install/$MAC/events" "${INSTALL_TOKEN:-}" "$_r_body" \
            "$_r_wait" /dev/null "$_r_err") || _r_status=000
        case $_r_status in 2??) rm -f "$_r_err"; return 0 ;; esac
        if [ "$_r_try" -ge "$_r_tries" ] || case $_r_status in 4??) true ;; *) false ;; esac; then
            say "could not report stage $1 to $IMAGESERVER_URL (HTTP $_r_status: $(tr '\n' ' ' <"$_r_err" 2>/dev/null)attempt $_r_try)"
            rm -f "$_r_err"
            return 0
        fi
        sleep $((_r_try * 2))
        _r_try=$((_r_try + 1))
    done
}

# jitter N -- a random whole number in [0, N): machines refused together must not retry together.
jitter() {
    _j=$(od -An -N2 -tu2 /dev/urandom 2>/dev/null | tr -dc 0-9) || true
    echo $(( ${_j:-$$} % ($1 > 0 ? $1 : 1) ))
}

# rsync_in_line ARGS... -- rsync ARGS, waiting in line while the imageserver's rsync daemon is full. The
# daemon runs at most [rsyncd] max_connections transfers and refuses the rest with "@ERROR: max
# connections (N) reached" (exit code 5): a mass reboot (or a rack updating at once) then queues instead
# of failing. A refused caller sleeps a jittered, doubling pause (RSYNC_RETRY_FIRST s up to
# RSYNC_RETRY_MAX s) and tries again, for at most RSYNC_QUEUE_TIMEOUT s. The caller's in_line_refused
# TRIES and in_line_admitted TRIES WAITED say so (they are called when defined). Any other failure
# returns at once.
rsync_in_line() {
    _q_tries=0 _q_waited=0 _q_pause=${RSYNC_RETRY_FIRST:-2}
    _q_err=$(mktemp 2>/dev/null) || _q_err=${TMPDIR:-/tmp}/rsync-in-line.$$
    while :; do
        _q_rc=0
        rsync "$@" 2>"$_q_err" || _q_rc=$?
        if [ "$_q_rc" = 5 ] && grep -q 'max connections' "$_q_err" &&
            [ "$_q_waited" -lt "${RSYNC_QUEUE_TIMEOUT:-21600}" ]; then
            _q_tries=$((_q_tries + 1))
            _q_sleep=$((_q_pause + $(jitter "$_q_pause")))
            if command -v in_line_refused >/dev/null 2>&1; then in_line_refused "$_q_tries"; fi
            sleep "$_q_sleep"
            _q_waited=$((_q_waited + _q_sleep))
            _q_pause=$((_q_pause * 2))
            [ "$_q_pause" -le "${RSYNC_RETRY_MAX:-30}" ] || _q_pause=${RSYNC_RETRY_MAX:-30}
            continue
        fi
        cat "$_q_err" >&2
        rm -f "$_q_err"
        if [ "$_q_tries" != 0 ] && command -v in_line_admitted >/dev/null 2>&1; then
            in_line_admitted "$_q_tries" "$_q_waited"
        fi
        return "$_q_rc"
    done
}

# private_file PATH -- stdin into PATH, readable by root only. A umask set inside "( ... ) >PATH" comes
# too late (the shell opens PATH first), and an existing file keeps its mode: a new file, renamed.
private_file() {
    rm -f "$1.new"
    (umask 077 && cat >"$1.new") && chmod 600 "$1.new" && mv -f "$1.new" "$1"
}

# each LIST -- a comma/space separated list, one item per line; joined SEP LIST -- its items joined by SEP.
each() { printf '%s\n' "$1" | sed 's/[, ]/\n/g' | sed '/^$/d'; }
joined() {
    _jn=$(each "$2" | tr '\n' '\001')
    printf '%s' "${_jn%?}" | tr '\001' "$1"
}
