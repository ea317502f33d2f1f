"""The labs the e2e tests start from: a namespace LAN and the real imageserver daemon with its boot
environment (a cached Debian kernel + our installer initrd); the demo image captured already
(demo_image_site), or a master machine's namespace left for a real Debian master's prepareclient
(real_os_site, then tests/e2e/test_real_debian.capture)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.demo.scenario import DemoLab
from lab.netns import Lab


@contextlib.contextmanager
def real_os_site(cache_dir: Path, kernel, appliance_config: str = "") -> Iterator[DemoLab]:  # kernel: bootenv.Kernel
    """`appliance_config`: TOML appended to the daemon's config (e.g. uefi_loader = "shim")."""
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed (make deps)")
    with Lab() as lab:
        demo = DemoLab(lab, cache_dir=cache_dir, kernel_package=kernel.package, say=print)
        demo.kernel = kernel
        demo.network()
        demo.appliance(appliance_config)
        demo.bootenv()
        yield demo


@contextlib.contextmanager
def demo_image_site(cache_dir: Path, kernel, say: Callable[[str], object] = print) -> Iterator[DemoLab]:
    """The demo's path up to the first power-on: the demo master tree captured as image "demo"."""
    with Lab() as lab:
        demo = DemoLab(lab, cache_dir=cache_dir, kernel_package=kernel.package, say=say)
        demo.network()
        demo.master_tree()
        demo.appliance()
        demo.capture()
        demo.bootenv()
        yield demo
