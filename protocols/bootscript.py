"""What a booting machine is told, rendered for its boot loader: an iPXE script, a pxelinux config, or a GRUB config.

Pure text rendering. The decision itself (install / local / wait) is made once, in state/boot.py;
every renderer here takes that same decision, so an iPXE, pxelinux or GRUB machine in the same
state boot the same thing. The decision arrives as any object with the `BootPlan` attributes
(protocols/ imports nothing of ours; state.boot.BootDecision has exactly these fields).

Choices, and why:
- install: kernel + initrd + a command line naming the imageserver, the host, its image and version,
  the fetch nonce (never the install token: anyone can fetch these files) and the MAC, then the
  operator's `[boot] kernel_cmdline`. iPXE fetches the
  installer over HTTP from /boot/files/, pxelinux (TFTP only) from the same boot root over TFTP.
  The MAC is written literally (not iPXE's ${mac}) so both loaders hand the installer identical
  arguments; BOOTIF (pxelinux's IPAPPEND 2 format) tells the installer which NIC booted.
- inspect ([discovery] inspect, a held machine without an inventory): the same installer, its command
  line naming no host or image but INSPECT_NONCE (bound to the MAC and the asking address like the fetch
  nonce): the installer posts the inventory and powers off (appliance/boot/installer/init.sh).
- local: iPXE on BIOS does `sanboot --no-describe --drive 0x80` (the first disk); on UEFI (iPXE's
  ${platform} is "efi") it does `exit 1` back to the firmware, whose next boot entry is the disk. The
  status matters: a plain `exit` returns success, and edk2 (and firmware built on it) then ends the
  boot order and opens its setup menu; an error status makes it go on to the next entry. This keeps
  the firmware's own order (and its Secure Boot checks) deciding what the disk boots, instead of
  iPXE guessing the disk's EFI loader path. pxelinux does `LOCALBOOT 0`.
- wait: iPXE prints why, sleeps poll_seconds and chains its own URL again (--replace, so the image
  stack does not grow). pxelinux cannot loop inside one config, so it waits at its prompt for
  poll_seconds (TIMEOUT is in tenths of a second) and then re-runs itself (`KERNEL pxelinux.0`),
  which fetches pxelinux.cfg/01-<mac> anew; an operator at the console can type `local` instead.
Every value that goes into a script is checked against a conservative character set: a hostname
or image name with a newline or `${` must never become an iPXE command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from protocols.mac import normalize_mac
from protocols.names import InvalidName

KINDS = ("install", "inspect", "local", "wait")
BOOTS_INSTALLER = ("install", "inspect")  # the kinds that start the installer
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:+-]{1,253}$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*$")
_TEXT_DROP = re.compile(r"[^A-Za-z0-9 .,:()/=_'+-]")
_PXELINUX_NAME = re.compile(r"^pxelinux\.cfg/(01-[0-9a-f]{2}(?:-[0-9a-f]{2}){5})$")
# GRUB's ${net_default_mac} is lowercase hex with colons ("52:54:00:12:34:56").
_GRUB_NAME = re.compile(r"^grub/grub\.cfg-01-([0-9a-f]{2}(?::[0-9a-f]{2}){5})$")
_GRUB_WORD = re.compile(r"^[A-Za-z0-9._:+,=/@%-]+$")
GRUB_PREFIX = "grub"  # Debian's signed network GRUB (grubnetx64.efi) has prefix /grub on its boot server
GRUB_BOOTSTRAP = f"{GRUB_PREFIX}/grub.cfg"


class BootScriptError(ValueError):
    """A value that cannot be put into a boot script safely (or an unknown decision kind)."""


class BootPlan(Protocol):
    """The attributes of a boot decision the renderers read (state.boot.BootDecision has them)."""

    @property
    def kind(self) -> str: ...  # "install" | "inspect" | "local" | "wait"

    @property
    def mac(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def hostname(self) -> str | None: ...

    @property
    def image(self) -> str | None: ...

    @property
    def kernel_args(self) -> str | None: ...  # the host's (or its profile's), after [boot] kernel_cmdline

    @property
    def version(self) -> int | None: ...

    @property
    def install_token(self) -> str | None: ...

    @property
    def poll_seconds(self) -> int: ...

    @property
    def fetch_nonce(self) -> str | None: ...  # rendered instead of the install token when set


@dataclass(frozen=True, slots=True)
class BootServer:
    """Where the booting machine finds us, and what the operator adds to the installer's command line."""

    address: str  # the imageserver's IPv4 address as the client reaches it
    http_port: int = 80
    kernel_cmdline: str = ""
    kernel: str = "installer/vmlinuz"  # relative to the boot root (HTTP /boot/files/, TFTP root)
    initrd: str = "installer/initrd.img"
    # The arm64 installer (`mkbootenv --arch arm64`): only GRUB boots arm64 machines (Debian has no arm64
    # iPXE), and GRUB knows what it runs on ($grub_cpu), so one per-machine config serves both.
    arm64_kernel: str = "installer-arm64/vmlinuz"
    arm64_initrd: str = "installer-arm64/initrd.img"
    pxelinux: str = "pxelinux.0"  # what a waiting pxelinux re-runs
    # A GRUB local boot: first the disk's own GRUB config (the directory holding grub.cfg: /boot/grub on
    # the root file system, /grub on a separate /boot), read by this GRUB; else an EFI loader chained.
    grub_dirs: tuple[str, ...] = ("/boot/grub", "/grub")
    efi_loaders: tuple[str, ...] = ("/EFI/BOOT/BOOTX64.EFI", "/EFI/debian/shimx64.efi", "/EFI/debian/grubx64.efi")

    @property
    def http_base(self) -> str:
        host = self.address if self.http_port == 80 else f"{self.address}:{self.http_port}"
        return f"http://{host}"

    def file_url(self, relative: str) -> str:
        return f"{self.http_base}/boot/files/{relative}"

    def script_url(self, mac: str) -> str:
        return f"{self.http_base}/boot/{normalize_mac(mac).replace(':', '-')}.ipxe"


def _value(name: str, value: object) -> str:
    text = str(value)
    if not _SAFE_VALUE.match(text):
        raise BootScriptError(f"{name} {text!r} has characters that are not allowed in a boot script")
    return text


def _path(name: str, value: str) -> str:
    if not _SAFE_PATH.match(value) or ".." in value.split("/"):
        raise BootScriptError(f"{name} {value!r} is not a plain relative path")
    return value


def _text(message: str) -> str:
    """Free text for echo/SAY/comments: printable, no iPXE operators or settings expansion."""
    return _TEXT_DROP.sub("?", message)[:200]


def _cmdline(extra: str) -> str:
    if any(ord(c) < 0x20 or c == "\x7f" for c in extra):
        raise BootScriptError("[boot] kernel_cmdline contains a control character")
    return " ".join(extra.split())


def installer_arguments(plan: BootPlan, server: BootServer) -> str:
    """The installer's kernel command line (without loader-specific parts such as initrd=)."""
    if plan.kind not in BOOTS_INSTALLER:
        raise BootScriptError(f"installer arguments asked for a {plan.kind!r} decision")
    mac = normalize_mac(plan.mac)
    if plan.kind == "inspect":
        args = [f"IMAGESERVER={_value('address', server.address)}", f"IMAGESERVER_URL={server.http_base}",
                f"INSPECT_NONCE={_value('inspect nonce', plan.fetch_nonce)}", f"MAC={mac}",
                f"BOOTIF=01-{mac.replace(':', '-')}"]
        extra = _cmdline(server.kernel_cmdline)
        return " ".join(args) + (f" {extra}" if extra else "")
    args = [
        f"IMAGESERVER={_value('address', server.address)}",
        f"IMAGESERVER_URL={server.http_base}",
        f"HOSTNAME={_value('hostname', plan.hostname)}",
        f"IMAGE={_value('image', plan.image)}",
        f"VERSION={_value('version', plan.version)}",
        # A boot file anyone can fetch carries only the fetch nonce; the token itself only where the host
        # asked for its own command line with its own credential (updateclient --autoinstall).
        (f"INSTALL_NONCE={_value('fetch nonce', plan.fetch_nonce)}" if plan.fetch_nonce
         else f"INSTALL_TOKEN={_value('install token', plan.install_token)}"),
        f"MAC={mac}",
        f"BOOTIF=01-{mac.replace(':', '-')}",
    ]
    extra = " ".join(x for x in (_cmdline(server.kernel_cmdline), _cmdline(plan.kernel_args or "")) if x)
    return " ".join(args) + (f" {extra}" if extra else "")


def _check_kind(plan: BootPlan) -> None:
    if plan.kind not in KINDS:
        raise BootScriptError(f"unknown boot decision kind {plan.kind!r}")


def _starting(plan: BootPlan) -> str:
    """What the console says when the installer starts."""
    if plan.kind == "inspect":
        return "inspecting this machine: its hardware inventory, nothing is installed"
    return (f"installing image {_value('image', plan.image)} v{_value('version', plan.version)} on "
            f"{_value('hostname', plan.hostname)}")


def _poll(plan: BootPlan) -> int:
    return max(1, int(plan.poll_seconds))


def render_ipxe(plan: BootPlan, server: BootServer, *, via_pxelinux: bool = False) -> str:
    """The iPXE script served at /boot/<mac>.ipxe.

    via_pxelinux ([boot] loader = "pxelinux"): a BIOS machine chains pxelinux.0 over TFTP, which reads
    pxelinux.cfg/01-<mac> (rendered by render_pxelinux from the same decision). Option 210 (pxelinux's
    path prefix) is set first, because pxelinux would otherwise derive its prefix from the DHCP file
    name, which for iPXE is this script's http URL. UEFI machines (pxelinux.0 is BIOS only), and any
    machine whose chain fails, fall through to the plain script below.
    """
    _check_kind(plan)
    mac = normalize_mac(plan.mac)
    again = server.script_url(mac)
    lines = ["#!ipxe", f"# imageserver: {plan.kind} for {mac}: {_text(plan.reason)}"]
    if via_pxelinux:
        tftp = f"tftp://{_value('address', server.address)}/"
        lines += [
            "iseq ${platform} pcbios || goto script",
            "echo imageserver: handing over to pxelinux",
            f"set 210:string {tftp}",
            f"chain {tftp}{_path('pxelinux', server.pxelinux)} || goto script",
            ":script",
        ]
    if plan.kind in BOOTS_INSTALLER:
        args = installer_arguments(plan, server)
        kernel = server.file_url(_path("kernel", server.kernel))
        initrd = server.file_url(_path("initrd", server.initrd))
        lines += [
            f"echo imageserver: {_starting(plan)}",
            # initrd=<name> lets an EFI-stub kernel find the initrd iPXE registered under that name.
            f"kernel --name vmlinuz {kernel} initrd=initrd.img {args} || goto failed",
            f"initrd --name initrd.img {initrd} || goto failed",
            "boot || goto failed",
            ":failed",
            f"echo imageserver: could not start the installer, asking again in {_poll(plan)} s",
            f"sleep {_poll(plan)}",
            f"chain --replace --autofree {again}",
        ]
    elif plan.kind == "local":
        lines += [
            f"echo imageserver: booting from the local disk ({_text(plan.reason)})",
            "iseq ${platform} efi && exit 1 ||",  # an error status: the firmware tries its next boot entry
            "sanboot --no-describe --drive 0x80 ||",
            "echo imageserver: the local disk did not boot, handing back to the firmware",
            "exit 1",
        ]
    else:
        lines += [
            f"echo imageserver: {_text(plan.reason)} - asking again every {_poll(plan)} s",
            ":retry",
            f"sleep {_poll(plan)}",
            f"chain --replace --autofree {again} || goto retry",
        ]
    return "\n".join(lines) + "\n"


def render_pxelinux(plan: BootPlan, server: BootServer) -> str:
    """The pxelinux config served over TFTP as pxelinux.cfg/01-<mac>."""
    _check_kind(plan)
    mac = normalize_mac(plan.mac)
    lines = [f"# imageserver: {plan.kind} for {mac}: {_text(plan.reason)}"]
    local = ["LABEL local", "  LOCALBOOT 0"]
    if plan.kind in BOOTS_INSTALLER:
        lines += [
            "DEFAULT install",
            "PROMPT 0",
            f"SAY imageserver: {_starting(plan)}",
            "LABEL install",
            f"  KERNEL {_path('kernel', server.kernel)}",
            f"  INITRD {_path('initrd', server.initrd)}",
            f"  APPEND {installer_arguments(plan, server)}",
            *local,
        ]
    elif plan.kind == "local":
        lines += ["DEFAULT local", "PROMPT 0", f"SAY imageserver: booting from the local disk ({_text(plan.reason)})",
                  *local]
    else:
        lines += [
            "DEFAULT retry",
            # PROMPT 1 makes pxelinux honour TIMEOUT (tenths of a second) before booting the default.
            "PROMPT 1",
            f"TIMEOUT {_poll(plan) * 10}",
            f"SAY imageserver: {_text(plan.reason)} - asking again in {_poll(plan)} s (type 'local' to boot the disk)",
            "LABEL retry",
            f"  KERNEL {_path('pxelinux', server.pxelinux)}",
            *local,
        ]
    return "\n".join(lines) + "\n"


def pxelinux_config_mac(filename: str) -> str | None:
    """'pxelinux.cfg/01-aa-bb-cc-dd-ee-ff' (a leading '/' allowed) -> 'aa:bb:cc:dd:ee:ff'; else None.

    pxelinux also asks for pxelinux.cfg/<UUID>, /<hex IP prefixes> and /default; those get None
    (file not found) because the MAC file, asked first, always exists for every machine.
    """
    match = _PXELINUX_NAME.match(filename.removeprefix("/").lower())
    if match is None:
        return None
    try:
        return normalize_mac(match.group(1))
    except InvalidName:
        return None


# --- GRUB (the Secure Boot chain: shim -> Debian's signed network GRUB -> this config) ---------------

def grub_bootstrap() -> str:
    """grub/grub.cfg, the same for every machine: GRUB reads it first ($prefix/grub.cfg on the TFTP server).

    Debian 12's GRUB (2.06) does not look for per-MAC files itself, so this file asks for its own
    grub/grub.cfg-01-<mac> in a loop. `source` (not `configfile`) runs the per-MAC file in this same
    context: an install or local boot never comes back, a wait file only says why and sets the poll
    interval, and the loop asks again without nesting a new menu context per poll (a machine may wait
    for days). A fetch that fails (server restarting) is just another round.
    """
    return "\n".join([
        "# imageserver: per-machine boot config (grub.cfg-01-<mac>), asked again while it says wait",
        "set timeout=0",
        "set imageserver_poll=5",
        "while true; do",
        "  source $prefix/grub.cfg-01-$net_default_mac",
        "  sleep $imageserver_poll",
        "done",
    ]) + "\n"


def _grub_word(name: str, word: str) -> str:
    """One kernel argument for GRUB's `linux`: plain words as they are, anything else single-quoted so
    GRUB neither expands $variables nor splits on ; (a quote or control character is refused)."""
    if _GRUB_WORD.match(word):
        return word
    if "'" in word or "\\" in word or any(ord(c) < 0x20 or c == "\x7f" for c in word):
        raise BootScriptError(f"{name} argument {word!r} cannot be quoted for GRUB")
    return f"'{word}'"


def render_grub(plan: BootPlan, server: BootServer) -> str:
    """grub/grub.cfg-01-<mac> over TFTP, sourced by grub_bootstrap's loop (GRUB behind shim, UEFI only).

    - install: the installer's kernel and initrd over TFTP from the boot root; under Secure Boot GRUB
      has shim verify the kernel (Debian's kernel is signed by Debian's CA, which shim trusts). The
      same arguments as iPXE and pxelinux: the fetch nonce, never the install token.
    - local: this GRUB reads the disk's own grub.cfg (root and prefix set to the disk), so the disk's
      menu boots the disk's kernel, which shim checks like the installer's. Not `exit`: this GRUB's
      exit takes no status, it always returns success, and edk2 then stops its boot order and opens
      its menu instead of trying the disk (iPXE's `exit 1` has no equivalent here). Not chaining the
      disk's shim first: a second shim started by GRUB from a network boot gets the NIC as its device
      ("Failed to find fs" in OVMF, so it cannot load its grubx64.efi). Chaining an EFI loader
      (BootServer.efi_loaders) stays as the fallback for a disk without a GRUB config, then `exit`.
    - wait: say why and set the poll interval; the bootstrap loop asks again.
    """
    _check_kind(plan)
    mac = normalize_mac(plan.mac)
    reason = _text(plan.reason).replace("'", "?")  # it goes into single-quoted echo words
    lines = [f"# imageserver: {plan.kind} for {mac}: {reason}", f"set imageserver_poll={_poll(plan)}"]
    if plan.kind in BOOTS_INSTALLER:
        address = _value("address", server.address)
        args = " ".join(_grub_word("kernel", w) for w in installer_arguments(plan, server).split())
        arm64 = (_path("kernel", server.arm64_kernel), _path("initrd", server.arm64_initrd))
        x86_64 = (_path("kernel", server.kernel), _path("initrd", server.initrd))
        lines.append(f"echo 'imageserver: {_starting(plan)}'")
        # TFTP, though GRUB's is one 1 KiB block per round trip (43-74 s for the 12 MB kernel in a TCG VM):
        # Debian's signed network GRUB has no http module built in, and under Secure Boot it loads none.
        source = f"(tftp,{address})"
        boot = [[f"  if linux {source}/{kernel} {args}; then", f"    if initrd {source}/{initrd}; then boot; fi",
                 "  fi"] for kernel, initrd in (arm64, x86_64)]
        lines += ['if [ "$grub_cpu" = "arm64" ]; then', *boot[0], "else", *boot[1], "fi"]
        lines.append(f"echo 'imageserver: could not start the installer, asking again in {_poll(plan)} s'")
    elif plan.kind == "local":
        loaders = " ".join("/" + _path("EFI loader", p.removeprefix("/")) for p in server.efi_loaders)
        lines.append(f"echo 'imageserver: booting from the local disk ({reason})'")
        for directory in server.grub_dirs:
            grub_dir = "/" + _path("GRUB directory", directory.removeprefix("/"))
            lines += [
                f"if search --no-floppy --file --set=disk {grub_dir}/grub.cfg; then",
                "  set root=$disk",
                f"  set prefix=($disk){grub_dir}",
                "  configfile $prefix/grub.cfg",
                "fi",
            ]
        lines += [
            f"for loader in {loaders}; do",
            "  if search --no-floppy --file --set=disk $loader; then",
            "    chainloader ($disk)$loader",
            "    boot",
            "  fi",
            "done",
            "echo 'imageserver: no EFI boot loader on a local disk, handing back to the firmware'",
            "exit",
        ]
    else:
        lines.append(f"echo 'imageserver: {reason} - asking again in {_poll(plan)} s'")
    return "\n".join(lines) + "\n"


def grub_config_mac(filename: str) -> str | None:
    """'grub/grub.cfg-01-aa:bb:cc:dd:ee:ff' (a leading '/' allowed) -> 'aa:bb:cc:dd:ee:ff'; else None."""
    match = _GRUB_NAME.match(filename.removeprefix("/").lower())
    if match is None:
        return None
    try:
        return normalize_mac(match.group(1))
    except InvalidName:
        return None
