"""The words of an install report (POST /install/<mac>/events, and a satellite relaying its installers'
reports): a stage is a short lower-case word the installer and the autoinstall plan choose ("partition",
"rsync", "done"). Checked here so the use case and the satellite relay refuse the same words.
"""

from __future__ import annotations

import re

_STAGE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")


class InvalidReport(ValueError):
    """A report the installs refuse (its stage, its byte counts); the message says why."""


def check_stage(stage: object) -> str:
    if not isinstance(stage, str) or not _STAGE.match(stage):
        raise InvalidReport(f"stage {stage!r} must be a short lower-case word (e.g. partition, rsync, done)")
    return stage
