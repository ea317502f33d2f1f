#!/bin/sh
# Install the Debian packages in deps/apt-packages.txt (what `make deps` runs; root only).
# Some packages are here only for a binary the tests or benchmarks call (nginx, promtool, dhcpd -t,
# kea-dhcp4 -t). On a real box their postinst would start and enable a daemon: a web server on :80, a
# DHCP server on the LAN. A temporary policy-rc.d keeps them from starting, and they are disabled after.
set -eu
cd "$(dirname "$0")"
[ "$(id -u)" = 0 ] || { echo "deps/install.sh: run as root (it installs Debian packages)" >&2; exit 1; }

# `mkbootenv --arch arm64` fetches Debian's arm64 packages (kernel, the installer's userland, the network
# GRUB) with `apt-get download PKG:arm64` into its cache, never installing them: apt must list arm64.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
fi

pkgs=$(sed -e 's/#.*//' apt-packages.txt | tr -s ' \n' '  ')
missing=''
for p in $pkgs; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -n "$missing" ] || exit 0
echo "installing:$missing"

made_policy=''
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT INT TERM

apt-get update -qq
# shellcheck disable=SC2086  # a word list on purpose
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing

# Binaries only: never leave these daemons enabled on the box.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for unit in nginx prometheus isc-dhcp-server kea-dhcp4-server; do
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
fi
