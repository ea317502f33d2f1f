"""What the use cases read: the committed store (a reader connection) and the daemon's live models.

Offline (the CLI with the daemon down) only `reader` is set; every use case answers from the store then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from state.boot import BootPolicy
from state.db import Connection
from state.installs import LiveProgress
from state.leases import LeaseModel
from state.sightings import MachineLog


@dataclass(slots=True)
class Sources:
    reader: Connection
    leases: LeaseModel | None = None  # the DHCP lease book (live), else bindings come from the store
    machines: MachineLog | None = None  # machines seen (live), else from the store
    boot_policy: BootPolicy | None = None  # what the boot path decides for unknown machines; None: no decisions
    progress: LiveProgress | None = None  # the installers' newest byte counts (not written per report)
    # Why an image (pinned version or newest) cannot be installed, None when it can: getimage's rule,
    # injected by the front end (appliance.images.assignable); None: images are checked by name only.
    image_problem: Callable[[str, int | None], str | None] | None = None
