"""Whether a host may be given an image: the one rule, shared by every way a host gets one.

getimage refuses to register a capture no machine could be installed from (autoinstall's
`installable_plan`: a recorded disk layout and an fstab it can place). A version captured anyway
(`getimage --no-script`) installs only with a script of the operator's own (scripts/NAME.master);
a host assigned to it without one would PXE-boot into an install that cannot start. So `hosts add`,
`hosts set`, `machines assign` and the admin API ask `install_problem` first, online or offline.

An image not captured yet may be assigned (it installs the version captured later, which getimage
checks then); a pinned version that is not captured may not.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path

from appliance.images.autoinstall import AutoinstallError, installable_plan
from appliance.images.catalog import ImagePaths
from appliance.images.layout import Layout, LayoutError
from state.images import get_version, list_versions, newest


def install_problem(conn: sqlite3.Connection, state_dir: Path, image: str, version: int | None) -> str | None:
    """Why a host with `image` (pinned `version`, else the newest) cannot be installed; None when it can."""
    versions = list_versions(conn, image)
    if not versions:
        return None
    iv = newest(conn, image) if version is None else get_version(conn, image, version)
    if iv is None:
        have = ", ".join(f"v{v.version}" for v in versions)
        return f"it has no version v{version} (it has {have})"
    try:
        layout = Layout.from_json(iv.layout) if iv.layout else None
        installable_plan(layout, Path(iv.path), f"v{iv.version}")
    except (AutoinstallError, LayoutError, ValueError) as e:
        script = ImagePaths(state_dir).script(image)
        if script.is_file():
            return None  # the operator's own autoinstall script installs it (getimage --no-script)
        return (f"{e}; no autoinstall script can be made for it and there is none of your own "
                f"({script}); nothing changed")
    return None


def image_problem_rule(conn: sqlite3.Connection, state_dir: Path) -> Callable[[str, int | None], str | None]:
    """`install_problem` over this connection: what domain.hostbook.HostBook.image_problem takes."""
    return partial(install_problem, conn, state_dir)
