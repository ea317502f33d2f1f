"""protocols.bootscript: iPXE scripts and pxelinux configs rendered from the same decision."""

from __future__ import annotations

import pytest

from protocols.bootscript import (
    BootScriptError,
    BootServer,
    installer_arguments,
    pxelinux_config_mac,
    render_grub,
    render_ipxe,
    render_pxelinux,
)
from state.boot import BootDecision

MAC = "52:54:00:12:34:56"
SERVER = BootServer(address="10.9.0.1", http_port=8080, kernel_cmdline="console=ttyS0 quiet")


def install(**kw: object) -> BootDecision:
    base = dict(kind="install", mac=MAC, reason="host node01 is assigned", poll_seconds=5, hostname="node01",
                image="base", version=3, install_token="T0k-en_1")
    base.update(kw)
    return BootDecision(**base)  # type: ignore[arg-type]


def test_installer_arguments_name_server_host_image_token_and_mac() -> None:
    args = installer_arguments(install(), SERVER).split()
    assert args[:8] == [
        "IMAGESERVER=10.9.0.1", "IMAGESERVER_URL=http://10.9.0.1:8080", "HOSTNAME=node01", "IMAGE=base",
        "VERSION=3", "INSTALL_TOKEN=T0k-en_1", f"MAC={MAC}", "BOOTIF=01-52-54-00-12-34-56",
    ]
    assert args[8:] == ["console=ttyS0", "quiet"]


def test_ipxe_install_loads_kernel_and_initrd_over_http() -> None:
    script = render_ipxe(install(), SERVER)
    lines = script.splitlines()
    assert lines[0] == "#!ipxe"
    kernel = next(line for line in lines if line.startswith("kernel "))
    assert kernel.startswith(
        "kernel --name vmlinuz http://10.9.0.1:8080/boot/files/installer/vmlinuz initrd=initrd.img ")
    assert installer_arguments(install(), SERVER) in kernel
    assert "initrd --name initrd.img http://10.9.0.1:8080/boot/files/installer/initrd.img || goto failed" in lines
    assert "boot || goto failed" in lines
    # A failed download retries through the same URL instead of falling out to the firmware.
    assert lines[-1] == "chain --replace --autofree http://10.9.0.1:8080/boot/52-54-00-12-34-56.ipxe"


def test_ipxe_port_80_is_left_out_of_urls() -> None:
    script = render_ipxe(install(), BootServer(address="10.9.0.1"))
    assert "http://10.9.0.1/boot/files/installer/vmlinuz" in script


def test_ipxe_local_sanboots_on_bios_and_exits_with_an_error_on_efi() -> None:
    """`exit 1`, not `exit`: edk2 stops its boot order at a loader that returned success (setup menu)."""
    d = BootDecision("local", MAC, "host node01 is installed", 5, hostname="node01")
    lines = render_ipxe(d, SERVER).splitlines()
    efi = lines.index("iseq ${platform} efi && exit 1 ||")
    bios = lines.index("sanboot --no-describe --drive 0x80 ||")
    assert efi < bios
    assert lines[-1] == "exit 1"
    assert "exit" not in lines
    assert not any(line.startswith("kernel") for line in lines)


def test_ipxe_wait_sleeps_and_chains_itself() -> None:
    d = BootDecision("wait", MAC, "machine is not a known host", 12)
    lines = render_ipxe(d, SERVER).splitlines()
    assert "sleep 12" in lines
    assert lines[-1] == "chain --replace --autofree http://10.9.0.1:8080/boot/52-54-00-12-34-56.ipxe || goto retry"
    assert lines.index(":retry") < lines.index("sleep 12")


def test_pxelinux_install_has_the_same_arguments_as_ipxe() -> None:
    config = render_pxelinux(install(), SERVER).splitlines()
    assert "DEFAULT install" in config
    assert "  KERNEL installer/vmlinuz" in config
    assert "  INITRD installer/initrd.img" in config
    assert f"  APPEND {installer_arguments(install(), SERVER)}" in config
    ipxe_kernel = next(line for line in render_ipxe(install(), SERVER).splitlines() if line.startswith("kernel"))
    assert installer_arguments(install(), SERVER) in ipxe_kernel


def test_pxelinux_local_is_localboot() -> None:
    config = render_pxelinux(BootDecision("local", MAC, "installed", 5), SERVER).splitlines()
    assert config[1:3] == ["DEFAULT local", "PROMPT 0"]
    assert "  LOCALBOOT 0" in config


def test_pxelinux_wait_times_out_into_itself() -> None:
    config = render_pxelinux(BootDecision("wait", MAC, "unknown", 4), SERVER).splitlines()
    assert "DEFAULT retry" in config
    assert "PROMPT 1" in config
    assert "TIMEOUT 40" in config  # tenths of a second
    assert config[config.index("LABEL retry") + 1] == "  KERNEL pxelinux.0"


@pytest.mark.parametrize("field", ["hostname", "image", "install_token"])
@pytest.mark.parametrize("evil", ["a\nshell", "x${net0/ip}", "a b", "a||reboot", ""])
def test_unsafe_values_are_refused_not_rendered(field: str, evil: str) -> None:
    d = install(**{field: evil})
    with pytest.raises(BootScriptError):
        render_ipxe(d, SERVER)
    with pytest.raises(BootScriptError):
        render_pxelinux(d, SERVER)


def test_reason_text_cannot_inject_commands() -> None:
    d = BootDecision("wait", MAC, "x\nreboot || ${evil} && shell", 5)
    script = render_ipxe(d, SERVER)
    assert "\nreboot" not in script
    assert "${evil}" not in script
    assert "||" not in script.splitlines()[2]  # the echo line


def test_kernel_cmdline_with_a_newline_is_refused() -> None:
    with pytest.raises(BootScriptError):
        render_ipxe(install(), BootServer(address="10.9.0.1", kernel_cmdline="quiet\nshell"))


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(BootScriptError):
        render_ipxe(BootDecision("reboot", MAC, "?", 5), SERVER)


@pytest.mark.parametrize(
    ("name", "mac"),
    [
        ("pxelinux.cfg/01-52-54-00-12-34-56", MAC),
        ("/pxelinux.cfg/01-52-54-00-12-34-56", MAC),
        ("pxelinux.cfg/01-52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef"),
        ("pxelinux.cfg/default", None),
        ("pxelinux.cfg/C0A80001", None),
        ("pxelinux.cfg/564d1234-5678-90ab-cdef-0123456789ab", None),
        ("pxelinux.cfg/01-52-54-00-12-34", None),
        ("pxelinux.cfg/../01-52-54-00-12-34-56", None),
        ("undionly.kpxe", None),
    ],
)
def test_pxelinux_config_names(name: str, mac: str | None) -> None:
    assert pxelinux_config_mac(name) == mac


def test_ipxe_via_pxelinux_chains_pxelinux_on_bios_and_falls_back_to_the_script() -> None:
    plain = render_ipxe(install(), SERVER).splitlines()
    lines = render_ipxe(install(), SERVER, via_pxelinux=True).splitlines()
    assert lines[2] == "iseq ${platform} pcbios || goto script"
    assert "set 210:string tftp://10.9.0.1/" in lines
    assert "chain tftp://10.9.0.1/pxelinux.0 || goto script" in lines
    # After the :script label comes exactly the plain script (UEFI, or pxelinux failed to load).
    assert lines[lines.index(":script") + 1:] == plain[2:]


def inspect(**kw: object) -> BootDecision:
    base = dict(kind="inspect", mac=MAC, reason="machine is not a known host and has no inventory",
                poll_seconds=5, fetch_nonce="i0123abc")
    base.update(kw)
    return BootDecision(**base)  # type: ignore[arg-type]


def test_inspect_starts_the_installer_with_its_nonce_and_no_host_image_or_token() -> None:
    args = installer_arguments(inspect(), SERVER).split()
    assert args == ["IMAGESERVER=10.9.0.1", "IMAGESERVER_URL=http://10.9.0.1:8080", "INSPECT_NONCE=i0123abc",
                    f"MAC={MAC}", "BOOTIF=01-52-54-00-12-34-56", "console=ttyS0", "quiet"]
    ipxe = render_ipxe(inspect(), SERVER)
    assert f"initrd=initrd.img {installer_arguments(inspect(), SERVER)} || goto failed" in ipxe
    assert "echo imageserver: inspecting this machine" in ipxe
    pxelinux = render_pxelinux(inspect(), SERVER).splitlines()
    assert f"  APPEND {installer_arguments(inspect(), SERVER)}" in pxelinux and "DEFAULT install" in pxelinux
    grub = render_grub(inspect(), BootServer(address="10.9.0.1"))
    assert "INSPECT_NONCE=i0123abc" in grub and "HOSTNAME" not in grub
    with pytest.raises(BootScriptError):
        installer_arguments(inspect(fetch_nonce="i0;reboot"), SERVER)
