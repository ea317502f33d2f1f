"""The image-name rule lives in protocols/names.py. These names stay only for services/api_hostadmin.py,
which another change owns; it should import protocols.names (InvalidName, image_name_problem) instead."""

from __future__ import annotations

from protocols.names import InvalidName as ImageNameError
from protocols.names import image_name_problem

__all__ = ["ImageNameError", "image_name_problem"]
