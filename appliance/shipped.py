"""The files shipped inside the `appliance` package (appliance/data/), read through importlib.resources so an
installed wheel or the Debian package finds them where a checkout does: the annotated example config, the
systemd unit template and the client scripts (prepareclient, updateclient) GET /client/{name} serves."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

DATA: Traversable = files("appliance") / "data"
EXAMPLE_CONFIG = "imageserver.toml"
UNIT_TEMPLATE = "imageserver.service"


def example_config() -> str:
    """The annotated example configuration: every key with its default."""
    return (DATA / EXAMPLE_CONFIG).read_text()


def unit_template() -> str:
    """The systemd unit with @IMAGESERVER@ where the command goes."""
    return (DATA / UNIT_TEMPLATE).read_text()


def data_dir() -> Path:
    """appliance/data as a directory on disk (the package is installed as files, never zipped: the
    rsync daemon and the initrd builder need real paths too)."""
    path = Path(str(DATA))
    if not path.is_dir():
        raise RuntimeError(f"imageserver's data files are not on disk ({DATA}): install the package unzipped")
    return path
