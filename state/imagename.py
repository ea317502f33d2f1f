"""The one rule for image names, wherever a name comes in (API, CLI, update reports, the catalog).

An image name becomes a directory name under the images root, a file name under scripts/
(`<image>.master`) and rsync module names (NAME and NAME_vN): so no '/', no leading '.', no '..',
nothing that reads like a version module, and short enough for a file name.
"""

from __future__ import annotations

import re

IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_VERSION_SUFFIX = re.compile(r"_v\d+$")


class ImageNameError(ValueError):
    """A refused image name; the message names it and the rule."""


def image_name_problem(name: object) -> str | None:
    """Why `name` cannot be an image name, or None when it can."""
    if not isinstance(name, str) or not IMAGE_NAME.fullmatch(name):
        return (f"image name {name!r}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or "
                "digit")
    if _VERSION_SUFFIX.search(name):
        return f"image name {name!r} ends like a version module (NAME_vN); choose another name"
    return None


def check_image_name(name: object) -> str:
    problem = image_name_problem(name)
    if problem is not None:
        raise ImageNameError(problem)
    assert isinstance(name, str)
    return name
