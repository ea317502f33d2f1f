# shellcheck shell=sh
# lib/inventory.sh -- the machine's hardware inventory as JSON, shaped like Ironic's (domain/inventory.py
# declares it): CPU, memory, the whole disks an install may use (list_disks of lib/disks.sh), NICs, DMI
# system, firmware boot mode, the BMC's address, each NIC's LLDP frame (tcpdump, a bounded wait). Read from /sys and /proc with busybox alone (no udev in
# the installer: a disk's by-path name is made here as udev's path_id makes it for PCI virtio, NVMe and
# SCSI disks); the BMC's address from `ipmitool lan print` where the initrd has ipmitool and the machine a
# BMC. The installer's /init posts it (POST /install/$MAC/inventory) and installs to the disk the answer
# names. SYS_ROOT and PROC_ROOT: other trees, for tests.

# _iv_read FILE -- the file's first line, control characters dropped and blanks trimmed ('' if unreadable).
_iv_read() {
    [ -r "$1" ] || return 0
    head -n 1 "$1" 2>/dev/null | tr -d '\000-\037' | sed 's/^[[:space:]]*//; s/[[:space:]]*$//'
}
# _iv_str VALUE -- a JSON string, or null for ''; _iv_num and _iv_bool likewise (anything else: null).
_iv_str() { if [ -n "$1" ]; then printf '%s' "$1" | json_str; else printf null; fi; }
_iv_num() { case $1 in '' | *[!0-9]*) printf null ;; *) printf '%s' "$1" ;; esac; }
_iv_bool() { case $1 in 1) printf true ;; 0) printf false ;; *) printf null ;; esac; }

inventory_cpu() {
    _iv_info=${PROC_ROOT:-/proc}/cpuinfo
    _iv_model=$(sed -nE 's/^(model name|cpu model)[[:space:]]*:[[:space:]]*//p' "$_iv_info" 2>/dev/null | head -n 1)
    _iv_count=$(grep -c '^processor' "$_iv_info" 2>/dev/null)
    # x86's "flags", arm64's "Features": words of letters, digits, _ and .
    _iv_flags=$(sed -nE 's/^(flags|Features)[[:space:]]*:[[:space:]]*//p' "$_iv_info" 2>/dev/null | head -n 1 |
        tr -cs 'A-Za-z0-9_.' '\n' | awk 'NF { printf "%s\"%s\"", (n++ ? ", " : ""), $0 }')
    printf '{"model_name": %s, "count": %s, "architecture": %s, "flags": [%s]}' "$(_iv_str "$_iv_model")" \
        "$(_iv_num "$_iv_count")" "$(_iv_str "$(uname -m)")" "$_iv_flags"
}

inventory_memory() {
    _iv_kb=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' "${PROC_ROOT:-/proc}/meminfo" 2>/dev/null)
    # Installed memory: the online memory blocks (MemTotal leaves out what the kernel and firmware keep).
    _iv_mem=${SYS_ROOT:-/sys}/devices/system/memory
    _iv_mb=''
    _iv_block=$(_iv_read "$_iv_mem/block_size_bytes")
    if [ -n "$_iv_block" ]; then
        _iv_online=$(cat "$_iv_mem"/memory*/online 2>/dev/null | grep -c '^1$')
        _iv_mb=$((_iv_online * 0x$_iv_block / 1048576))
        [ "$_iv_mb" != 0 ] || _iv_mb=''
    fi
    printf '{"total": %s, "physical_mb": %s}' "$(_iv_num "${_iv_kb:+$((_iv_kb * 1024))}")" "$(_iv_num "$_iv_mb")"
}

# _iv_by_path NAME -- the disk's /dev/disk/by-path name as udev's path_id gives it, for a disk on PCI:
# pci-DOMAIN:BUS:SLOT.FN (virtio), with -nvme-NSID (NVMe) or -scsi-H:C:T:L (SCSI; udev says -ata-N for
# ATA disks, which this does not tell apart). '' where there is no PCI device above it.
_iv_by_path() {
    _iv_dev=$(readlink -f "${SYS_ROOT:-/sys}/block/$1/device" 2>/dev/null) || return 0
    _iv_pci=$(printf '%s\n' "$_iv_dev" | tr '/' '\n' | grep -E '^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$' | tail -n 1)
    [ -n "$_iv_pci" ] || return 0
    case $1 in
        nvme*) printf 'pci-%s-nvme-%s' "$_iv_pci" "$(_iv_read "${SYS_ROOT:-/sys}/block/$1/nsid")" ;;
        sd*) printf 'pci-%s-scsi-%s' "$_iv_pci" "${_iv_dev##*/}" ;;
        *) printf 'pci-%s' "$_iv_pci" ;;
    esac
}

inventory_disks() {
    _iv_sep=''
    for _iv_disk in $(list_disks); do
        _iv_n=${_iv_disk##*/}
        _iv_b=${SYS_ROOT:-/sys}/block/$_iv_n
        # serial: NVMe and some SCSI drivers in device/, virtio-blk beside it; SCSI's VPD page 0x80 else
        _iv_serial=$(_iv_read "$_iv_b/device/serial")
        [ -n "$_iv_serial" ] || _iv_serial=$(_iv_read "$_iv_b/serial")
        if [ -z "$_iv_serial" ] && [ -r "$_iv_b/device/vpd_pg80" ]; then
            _iv_serial=$(tail -c +5 "$_iv_b/device/vpd_pg80" | tr -d '\000-\037' | sed 's/^ *//; s/ *$//')
        fi
        _iv_wwn=$(_iv_read "$_iv_b/wwid")
        [ -n "$_iv_wwn" ] || _iv_wwn=$(_iv_read "$_iv_b/device/wwid")
        _iv_sectors=$(_iv_read "$_iv_b/size")
        printf '%s{"name": %s, "size": %s, "model": %s, "serial": %s, "wwn": %s, "rotational": %s, "by_path": %s}' \
            "$_iv_sep" "$(_iv_str "$_iv_disk")" "$(_iv_num "${_iv_sectors:+$((_iv_sectors * 512))}")" \
            "$(_iv_str "$(_iv_read "$_iv_b/device/model")")" "$(_iv_str "$_iv_serial")" "$(_iv_str "$_iv_wwn")" \
            "$(_iv_bool "$(_iv_read "$_iv_b/queue/rotational")")" "$(_iv_str "$(_iv_by_path "$_iv_n")")"
        _iv_sep=', '
    done
}

# LLDP: the first LLDP frame (ethertype 0x88cc) each physical NIC receives within LLDP_WAIT seconds (unset or
# 0: none is looked for; /init waits 30 s, one default transmit interval, when it inspects), all NICs at once,
# captured by tcpdump where the initrd has it (-Z root: the initrd has no tcpdump user to drop to). A NIC
# that is down hears nothing: it is set up. The frames go to LLDP_DIR, one pcap file per NIC.
LLDP_DIR=${TMPDIR:-/tmp}/lldp
inventory_lldp_capture() {
    case ${LLDP_WAIT:-0} in '' | *[!0-9]* | 0) return 0 ;; esac
    command -v tcpdump >/dev/null 2>&1 || return 0
    mkdir -p "$LLDP_DIR"
    _iv_pids=''
    for _iv_path in "${SYS_ROOT:-/sys}"/class/net/*; do
        [ -e "$_iv_path/device" ] || continue
        _iv_n=${_iv_path##*/}
        ip link set dev "$_iv_n" up 2>/dev/null
        timeout "$LLDP_WAIT" tcpdump -Z root -i "$_iv_n" -c 1 -U -w "$LLDP_DIR/$_iv_n.pcap" ether proto 0x88cc \
            >/dev/null 2>&1 &
        _iv_pids="$_iv_pids $!"
    done
    # shellcheck disable=SC2086  # the pids, one word each
    [ -z "$_iv_pids" ] || wait $_iv_pids
}

# _iv_lldp NIC -- its captured frame's TLVs as Ironic posts them, [[type, "hex of the value"], ...]; null
# without one. The imageserver reads the neighbour from them (protocols/lldp.py). A pcap file is a 24-byte
# header and a 16-byte record header before the frame; an 802.1Q tag may precede the ethertype.
_iv_lldp() {
    [ -s "$LLDP_DIR/$1.pcap" ] || { printf null; return 0; }
    od -An -v -tx1 -j 40 "$LLDP_DIR/$1.pcap" | awk '
        function byte(x) { return (index(H, substr(x, 1, 1)) - 1) * 16 + index(H, substr(x, 2, 1)) - 1 }
        BEGIN { H = "0123456789abcdef" }
        { for (i = 1; i <= NF; i++) b[n++] = $i }
        END {
            at = (b[12] b[13] == "8100") ? 16 : 12
            if (b[at] b[at + 1] != "88cc") { printf "null"; exit }
            at += 2
            while (at + 1 < n) {
                header = byte(b[at]) * 256 + byte(b[at + 1]); type = int(header / 512); len = header % 512
                if (type == 0 || at + 2 + len > n) break
                value = ""
                for (i = at + 2; i < at + 2 + len; i++) value = value b[i]
                out = out (out == "" ? "" : ", ") "[" type ", \"" value "\"]"
                at += 2 + len
            }
            printf "[%s]", out
        }'
}

# Physical NICs (a device behind them: not lo, bridges, veths, tunnels).
inventory_nics() {
    _iv_sep=''
    for _iv_path in "${SYS_ROOT:-/sys}"/class/net/*; do
        [ -e "$_iv_path/device" ] || continue
        _iv_driver=$(readlink -f "$_iv_path/device/driver" 2>/dev/null) || _iv_driver=''
        printf '%s{"name": %s, "mac_address": %s, "driver": %s, "speed_mbps": %s, "has_carrier": %s, "lldp": %s}' \
            "$_iv_sep" "$(_iv_str "${_iv_path##*/}")" "$(_iv_str "$(_iv_read "$_iv_path/address")")" \
            "$(_iv_str "${_iv_driver##*/}")" "$(_iv_num "$(_iv_read "$_iv_path/speed")")" \
            "$(_iv_bool "$(_iv_read "$_iv_path/carrier")")" "$(_iv_lldp "${_iv_path##*/}")"
        _iv_sep=', '
    done
}

inventory_system() {
    _iv_dmi=${SYS_ROOT:-/sys}/class/dmi/id
    printf '{"manufacturer": %s, "product_name": %s, "serial_number": %s, "uuid": %s}' \
        "$(_iv_str "$(_iv_read "$_iv_dmi/sys_vendor")")" "$(_iv_str "$(_iv_read "$_iv_dmi/product_name")")" \
        "$(_iv_str "$(_iv_read "$_iv_dmi/product_serial")")" "$(_iv_str "$(_iv_read "$_iv_dmi/product_uuid")")"
}

inventory_boot() {
    _iv_mode=bios
    [ ! -d "${SYS_ROOT:-/sys}/firmware/efi" ] || _iv_mode=uefi
    printf '{"current_boot_mode": "%s", "pxe_interface": %s}' "$_iv_mode" "$(_iv_str "${MAC:-}")"
}

# The BMC's address, if the machine has one and the initrd ipmitool (none: nothing, quickly).
inventory_bmc() {
    command -v ipmitool >/dev/null 2>&1 || return 0
    _iv_ip=$(timeout 10 ipmitool lan print 2>/dev/null | sed -n 's/^IP Address[[:space:]]*:[[:space:]]*//p' | head -n 1)
    case $_iv_ip in '' | 0.0.0.0) ;; *) printf '%s' "$_iv_ip" ;; esac
}

# inventory_json -- the whole inventory, one JSON object on one line.
inventory_json() {
    inventory_lldp_capture
    printf '{"cpu": %s, "memory": %s, "disks": [%s], "interfaces": [%s], "system_vendor": %s, "boot": %s, "bmc_address": %s}\n' \
        "$(inventory_cpu)" "$(inventory_memory)" "$(inventory_disks)" "$(inventory_nics)" "$(inventory_system)" \
        "$(inventory_boot)" "$(_iv_str "$(inventory_bmc)")"
}

# inspect_post -- an inspection ([discovery] inspect: a machine no host has, booted once to be looked at):
# the inventory to POST /inspect/$MAC/inventory with the boot file's $INSPECT_NONCE. Sets INSPECT_THEN to
# what the machine does next: "reboot" (a discovery rule made it a host: its next boot installs) or
# "poweroff" (it waits, off, for an assignment; also when the imageserver took nothing: never a loop).
inspect_post() {
    _ip_dir=${TMPDIR:-/tmp}
    INSPECT_THEN=poweroff
    inventory_json >"$_ip_dir/inventory.json" 2>"$_ip_dir/inventory.err" ||
        say "inventory: $(head -c 300 "$_ip_dir/inventory.err")"
    _ip_status=$(http_request POST "$IMAGESERVER_URL/inspect/$MAC/inventory" "$INSPECT_NONCE" \
        "$(cat "$_ip_dir/inventory.json")" 30 "$_ip_dir/inspect.answer" "$_ip_dir/inspect.err")
    case $_ip_status in
        2??) ;;
        *)
            say "the imageserver took no inventory (HTTP $_ip_status): $(head -c 300 "$_ip_dir/inspect.answer" 2>/dev/null)"
            return 1 ;;
    esac
    [ "$(json_value "then" "$_ip_dir/inspect.answer")" != reboot ] || INSPECT_THEN=reboot
    say "inventory taken; host: $(json_value host "$_ip_dir/inspect.answer"); next: $INSPECT_THEN"
}

# json_value KEY FILE -- a string value of KEY in the JSON object in FILE (flat keys; null or absent: '').
json_value() {
    sed -nE "s/.*\"$1\": \"(([^\"\\\\]|\\\\.)*)\".*/\\1/p" "$2" | head -n 1 |
        sed 's/\\n/ /g; s/\\"/"/g; s/\\\\/\\/g'
}

# json_list KEY FILE -- the strings of the array KEY in the JSON object in FILE, one per line (device paths:
# no quotes, commas or blanks inside; absent or null: nothing).
json_list() {
    sed -nE "s/.*\"$1\": \[([^]]*)\].*/\1/p" "$2" | head -n 1 | tr ',' '\n' | sed 's/^ *"//; s/" *$//' | grep -v '^$'
    return 0
}

# use_disks ANSWER -- the disks the imageserver's answer to the inventory names: ROOT_DEVICE ('' when none),
# exported as DISK, and for hints of several disks (a RAID or LVM layout's) DISK1, DISK2 ... in the layout's
# order, exported for the plan (pick_disks of lib/disks.sh leaves them and numbers the other disks around them).
use_disks() {
    ROOT_DEVICE=$(json_value root_device "$1")
    [ -n "$ROOT_DEVICE" ] || return 0
    DISK=$ROOT_DEVICE
    export DISK
    _ud_n=0
    for _ud_d in $(json_list disks "$1"); do
        if [ $_ud_n != 0 ]; then
            eval "DISK$_ud_n=\$_ud_d"
            export "DISK$_ud_n"
        fi
        _ud_n=$((_ud_n + 1))
    done
}
