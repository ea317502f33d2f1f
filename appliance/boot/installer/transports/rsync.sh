# shellcheck shell=sh disable=SC2034  # RSYNC_CHECK is read by pull_image (lib/image.sh)
# transports/rsync.sh -- TRANSPORT=rsync (the default): no transport before the rsync pass of
# lib/image.sh, which brings the whole image. Implements the transport contract of lib/image.sh.

transport_prepare() { return 0; }
transport_fetch() { RSYNC_CHECK=''; }
transport_fallback() { RSYNC_CHECK=''; }
transport_finish() { return 0; }
