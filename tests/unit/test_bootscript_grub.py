"""protocols.bootscript's GRUB configs (the Secure Boot chain: shim -> signed network GRUB -> these)."""

from __future__ import annotations

import re

import pytest

from protocols.bootscript import (
    GRUB_BOOTSTRAP,
    BootScriptError,
    BootServer,
    grub_bootstrap,
    grub_config_mac,
    installer_arguments,
    render_grub,
    render_ipxe,
    render_pxelinux,
)
from state.boot import BootDecision

MAC = "52:54:00:12:34:56"
SERVER = BootServer(address="10.9.0.1", http_port=8080, kernel_cmdline="console=ttyS0,115200 quiet")


def install(**kw: object) -> BootDecision:
    base = dict(kind="install", mac=MAC, reason="host node01 is assigned", poll_seconds=5, hostname="node01",
                image="base", version=3, install_token=None, fetch_nonce="n0123abcd")
    base.update(kw)
    return BootDecision(**base)  # type: ignore[arg-type]


def test_bootstrap_asks_for_the_per_mac_file_in_a_loop_without_nesting() -> None:
    text = grub_bootstrap()
    assert GRUB_BOOTSTRAP == "grub/grub.cfg"  # Debian's grubnetx64.efi: prefix /grub on its TFTP server
    assert "source $prefix/grub.cfg-01-$net_default_mac" in text
    assert "configfile" not in text  # a machine waiting for days must not stack a menu context per poll
    assert text.splitlines()[-3:] == ["  source $prefix/grub.cfg-01-$net_default_mac",
                                      "  sleep $imageserver_poll", "done"]


def test_install_boots_the_installer_over_tftp_with_the_same_arguments_as_ipxe() -> None:
    for server in (SERVER, BootServer(address="10.9.0.1")):
        lines = render_grub(install(), server).splitlines()
        args = installer_arguments(install(), server)
        i = lines.index(f"  if linux (tftp,10.9.0.1)/installer/vmlinuz {args}; then")
        assert lines[i + 1:i + 4] == ["    if initrd (tftp,10.9.0.1)/installer/initrd.img; then boot; fi", "  fi", "fi"]
        # An arm64 GRUB (the only loader arm64 machines have) takes the arm64 installer, with the same arguments.
        a = lines.index('if [ "$grub_cpu" = "arm64" ]; then')
        assert lines[a + 1:a + 5] == [f"  if linux (tftp,10.9.0.1)/installer-arm64/vmlinuz {args}; then",
                                      "    if initrd (tftp,10.9.0.1)/installer-arm64/initrd.img; then boot; fi",
                                      "  fi", "else"]
        assert lines[a + 5] == lines[i]
        # Debian's signed network GRUB has no http module: an (http,...) path only prints an error.
        assert not any(line.startswith("if linux (http") for line in lines)
        assert lines[-1].startswith("echo 'imageserver: could not start the installer")
    # The same command line the iPXE script and the pxelinux config carry.
    assert installer_arguments(install(), SERVER) in render_ipxe(install(), SERVER)
    assert installer_arguments(install(), SERVER) in render_pxelinux(install(), SERVER)


def test_install_carries_the_fetch_nonce_never_the_install_token() -> None:
    text = render_grub(install(), SERVER)
    assert "INSTALL_NONCE=n0123abcd" in text and "INSTALL_TOKEN" not in text


def test_kernel_arguments_grub_would_expand_are_single_quoted() -> None:
    server = BootServer(address="10.9.0.1", kernel_cmdline="a=$root b=x;reboot c=${prefix} plain=1")
    kernel = next(line for line in render_grub(install(), server).splitlines() if "linux " in line)
    assert "'a=$root' 'b=x;reboot' 'c=${prefix}' plain=1" in kernel
    # Outside quotes nothing is left for GRUB to expand or split.
    assert not re.search(r"(?<!')\$", kernel.replace("'a=$root'", "").replace("'c=${prefix}'", ""))


@pytest.mark.parametrize("bad", ["x='", "x=\\", "x=\x01"])
def test_arguments_that_cannot_be_quoted_are_refused(bad: str) -> None:
    with pytest.raises(BootScriptError):
        render_grub(install(), BootServer(address="10.9.0.1", kernel_cmdline=bad))


def test_hostile_names_never_reach_the_config() -> None:
    with pytest.raises(BootScriptError):
        render_grub(install(hostname="x'; reboot; echo '"), SERVER)
    with pytest.raises(BootScriptError):
        render_grub(install(image="base\nlinux /evil"), SERVER)


def test_reason_text_cannot_close_its_quotes() -> None:
    d = BootDecision("wait", MAC, "it's $bad; exit", 7)
    text = render_grub(d, SERVER)
    echo = next(line for line in text.splitlines() if line.startswith("echo "))
    assert echo.count("'") == 2 and "$" not in echo and ";" not in echo
    assert "set imageserver_poll=7" in text


def test_local_reads_the_disks_grub_config_first() -> None:
    """GRUB 2.06's `exit` takes no status (edk2 would stop at its menu), and a disk shim chained from a
    network GRUB cannot find its own file system: this GRUB reads the disk's grub.cfg instead."""
    d = BootDecision("local", MAC, "host node01 is installed", 5, hostname="node01")
    lines = render_grub(d, SERVER).splitlines()
    first = lines.index("if search --no-floppy --file --set=disk /boot/grub/grub.cfg; then")
    assert lines[first + 1:first + 5] == ["  set root=$disk", "  set prefix=($disk)/boot/grub",
                                          "  configfile $prefix/grub.cfg", "fi"]
    separate_boot = lines.index("if search --no-floppy --file --set=disk /grub/grub.cfg; then")
    assert first < separate_boot < lines.index("    chainloader ($disk)$loader")


def test_local_falls_back_to_chaining_an_efi_loader_and_exits_only_if_none() -> None:
    d = BootDecision("local", MAC, "host node01 is installed", 5, hostname="node01")
    lines = render_grub(d, SERVER).splitlines()
    loop = next(line for line in lines if line.startswith("for loader in "))
    assert loop == "for loader in /EFI/BOOT/BOOTX64.EFI /EFI/debian/shimx64.efi /EFI/debian/grubx64.efi; do"
    assert "  if search --no-floppy --file --set=disk $loader; then" in lines
    assert lines.index("    chainloader ($disk)$loader") < lines.index("    boot") < lines.index("exit")
    assert not any("linux" in line for line in lines)


def test_wait_only_sets_the_poll_and_says_why() -> None:
    d = BootDecision("wait", MAC, "machine is not a known host", 9)
    lines = render_grub(d, SERVER).splitlines()
    assert "set imageserver_poll=9" in lines
    assert not any(line.startswith(("linux", "chainloader", "boot", "exit")) for line in lines)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(BootScriptError):
        render_grub(BootDecision("reboot", MAC, "?", 5), SERVER)


@pytest.mark.parametrize(("name", "mac"), [
    ("grub/grub.cfg-01-52:54:00:12:34:56", MAC),
    ("/grub/grub.cfg-01-52:54:00:12:34:56", MAC),
    ("grub/grub.cfg-01-52:54:00:AB:CD:EF", "52:54:00:ab:cd:ef"),
    ("grub/grub.cfg", None),
    ("grub/grub.cfg-01-", None),  # GRUB without $net_default_mac (not booted from the network)
    ("grub/grub.cfg-01-52-54-00-12-34-56", None),
    ("grub/../grub.cfg-01-52:54:00:12:34:56", None),
    ("pxelinux.cfg/01-52-54-00-12-34-56", None),
    ("grub/grub.cfg-01-52:54:00:12:34:56:78", None),
])
def test_grub_config_names(name: str, mac: str | None) -> None:
    assert grub_config_mac(name) == mac
