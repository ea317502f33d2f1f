"""The Prometheus text exposition format (version 0.0.4), written by hand: metric families -> text.

Sans-IO like the other protocols: the caller collects values, this module only spells them. Names
and label names are checked (a bad one is a programming error, so it raises); label values and HELP
texts are escaped as the format requires (backslash, double quote, newline).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

Labels = Mapping[str, str]


class MetricError(ValueError):
    """A metric the format cannot express (bad name, bad label name, histogram buckets out of order)."""


@dataclass(slots=True)
class Family:
    """One metric family: HELP, TYPE and its samples (suffix, labels, value)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise MetricError(f"metric name {self.name!r} is not valid")
        if self.kind not in TYPES:
            raise MetricError(f"metric type {self.kind!r} is not one of {TYPES}")

    def add(self, value: float, labels: Labels | None = None, *, suffix: str = "") -> Family:
        for key in labels or {}:
            if not _LABEL.match(key) or key.startswith("__"):
                raise MetricError(f"label name {key!r} of {self.name} is not valid")
        self.samples.append((suffix, dict(labels or {}), float(value)))
        return self

    def histogram(self, observations: Iterable[float], bounds: Sequence[float], labels: Labels | None = None) -> Family:
        """Cumulative buckets (le), +Inf, _sum and _count from raw observations."""
        if list(bounds) != sorted(set(bounds)):
            raise MetricError(f"histogram bounds of {self.name} must be increasing")
        values = list(observations)
        base = dict(labels or {})
        for bound in bounds:
            self.add(sum(1 for v in values if v <= bound), {**base, "le": format_value(bound)}, suffix="_bucket")
        self.add(len(values), {**base, "le": "+Inf"}, suffix="_bucket")
        self.add(sum(values), base, suffix="_sum")
        self.add(len(values), base, suffix="_count")
        return self

    def histogram_counts(self, counts: Sequence[int], bounds: Sequence[float], total: float,
                         labels: Labels | None = None) -> Family:
        """The same from counts kept incrementally: counts[i] observations in (bounds[i-1], bounds[i]],
        the last one above every bound; `total` their sum."""
        if list(bounds) != sorted(set(bounds)) or len(counts) != len(bounds) + 1:
            raise MetricError(f"histogram of {self.name}: increasing bounds and one count per bucket and +Inf")
        base = dict(labels or {})
        running = 0
        for bound, count in zip(bounds, counts, strict=False):
            running += count
            self.add(running, {**base, "le": format_value(bound)}, suffix="_bucket")
        observed = running + counts[-1]
        self.add(observed, {**base, "le": "+Inf"}, suffix="_bucket")
        self.add(total, base, suffix="_sum")
        self.add(observed, base, suffix="_count")
        return self


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def render(families: Iterable[Family]) -> str:
    """The exposition text; families without samples still get HELP/TYPE (a scraper learns they exist)."""
    out: list[str] = []
    seen: set[str] = set()
    for fam in families:
        if fam.name in seen:
            raise MetricError(f"metric family {fam.name} is rendered twice")
        seen.add(fam.name)
        out.append(f"# HELP {fam.name} {escape_help(fam.help)}")
        out.append(f"# TYPE {fam.name} {fam.kind}")
        for suffix, labels, value in fam.samples:
            text = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
            out.append(f"{fam.name}{suffix}{'{' + text + '}' if text else ''} {format_value(value)}")
    return "\n".join(out) + "\n"
