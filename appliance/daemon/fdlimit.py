"""The process' open-file limit: raised at `serve` start so idle connections cannot starve the services.

systemd's unit sets LimitNOFILE; outside systemd the soft limit is often 1024 while the hard limit is
far higher, so the soft limit is raised to the hard one (capped: a huge hard limit would only make the
per-service caps derived from it meaningless).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

MAX_SOFT = 1 << 20


@dataclass(frozen=True, slots=True)
class FdLimit:
    before: int
    soft: int
    hard: int
    error: str | None = None


def raise_nofile(cap: int = MAX_SOFT) -> FdLimit:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft >= target:
        return FdLimit(soft, soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        return FdLimit(soft, soft, hard, str(e))
    return FdLimit(soft, target, hard)


def nofile_soft() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MAX_SOFT if soft == resource.RLIM_INFINITY else int(soft)
