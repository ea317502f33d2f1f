"""A strict checker of the Prometheus text exposition format (0.0.4), independent of our renderer.

`parse(text)` returns every sample keyed by (name, sorted label pairs) and each family's type, or raises
ExpositionError naming the line. It checks what a Prometheus server would reject or silently mangle:
names and label names, quoting and escapes in label values, numeric values, HELP/TYPE appearing once
and before their samples, a family's samples kept together, duplicate series, negative counters, and
histograms (le labels, cumulative buckets, +Inf bucket equal to _count, _sum present).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
Key = tuple[str, tuple[tuple[str, str], ...]]


class ExpositionError(AssertionError):
    pass


@dataclass
class Exposition:
    samples: dict[Key, float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, tuple(sorted(labels.items())))]

    def get(self, name: str, default: float = 0.0, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), default)

    def series(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


def _family_of(sample: str, types: dict[str, str]) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and types.get(base) in ("histogram", "summary"):
            return base
    return sample


def _labels(text: str, where: str) -> tuple[tuple[str, str], ...]:
    """`a="x",b="y\\"z"` -> pairs, with escapes resolved; only \\\\, \\" and \\n are allowed."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        m = LABEL_NAME.match(text, i)
        if not m:
            raise ExpositionError(f"{where}: bad label name at {text[i:]!r}")
        name = m.group()
        i = m.end()
        if text[i:i + 2] != '="':
            raise ExpositionError(f"{where}: label {name} is not followed by =\"")
        i += 2
        value = []
        while True:
            if i >= len(text):
                raise ExpositionError(f"{where}: unterminated value of label {name}")
            c = text[i]
            if c == "\\":
                nxt = text[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ExpositionError(f"{where}: bad escape \\{nxt} in label {name}")
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise ExpositionError(f"{where}: raw newline in label {name}")
            else:
                value.append(c)
                i += 1
        if name in dict(pairs):
            raise ExpositionError(f"{where}: label {name} given twice")
        pairs.append((name, "".join(value)))
        if i < len(text):
            if text[i] != ",":
                raise ExpositionError(f"{where}: expected ',' after label {name}")
            i += 1
    return tuple(sorted(pairs))


def _value(text: str, where: str) -> float:
    if text in ("NaN", "+Inf", "-Inf", "Inf"):
        return float(text.replace("Inf", "inf"))
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise ExpositionError(f"{where}: value {text!r} is not a number")
    return float(text)


def parse(text: str) -> Exposition:
    if not text.endswith("\n"):
        raise ExpositionError("the exposition must end with a newline")
    out = Exposition()
    done: set[str] = set()  # families whose samples are over (another family began)
    current: str | None = None
    for number, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {number} ({line[:80]!r})"
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.fullmatch(name):
                    raise ExpositionError(f"{where}: bad metric name")
                if name in done or (current is not None and current != name and name in out.types):
                    raise ExpositionError(f"{where}: {parts[1]} for {name} after its samples")
                table = out.helps if parts[1] == "HELP" else out.types
                if name in table:
                    raise ExpositionError(f"{where}: second {parts[1]} for {name}")
                if parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise ExpositionError(f"{where}: unknown type")
                    if any(_family_of(k[0], {name: parts[3]}) == name for k in out.samples):
                        raise ExpositionError(f"{where}: TYPE for {name} after its samples")
                    out.types[name] = parts[3]
                else:
                    out.helps[name] = parts[3] if len(parts) == 4 else ""
                if current is not None and current != name:
                    done.add(current)
                current = name
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$", line)
        if not m:
            raise ExpositionError(f"{where}: not a sample line")
        sample = m.group(1)
        labels = _labels(m.group(3), where) if m.group(3) else ()
        value = _value(m.group(4), where)
        family = _family_of(sample, out.types)
        if family in done:
            raise ExpositionError(f"{where}: samples of {family} are not kept together")
        if current is not None and current != family:
            done.add(current)
        current = family
        kind = out.types.get(family, "untyped")
        if kind == "counter" and (value < 0 or math.isnan(value)):
            raise ExpositionError(f"{where}: counter {sample} is negative or NaN")
        if kind == "histogram" and sample == family:
            raise ExpositionError(f"{where}: histogram {family} has a bare sample")
        key = (sample, labels)
        if key in out.samples:
            raise ExpositionError(f"{where}: duplicate series {sample}{dict(labels)}")
        out.samples[key] = value
    _check_histograms(out)
    return out


def _check_histograms(out: Exposition) -> None:
    for family, kind in out.types.items():
        if kind != "histogram":
            continue
        groups: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        for (name, labels), value in out.samples.items():
            if name == f"{family}_bucket":
                le = dict(labels).get("le")
                if le is None:
                    raise ExpositionError(f"{family}_bucket without an le label")
                rest = tuple(p for p in labels if p[0] != "le")
                groups.setdefault(rest, []).append((_value(le, f"{family} le"), value))
        for rest, buckets in groups.items():
            buckets.sort()
            counts = [c for _, c in buckets]
            if counts != sorted(counts):
                raise ExpositionError(f"{family}{dict(rest)}: buckets are not cumulative")
            if buckets[-1][0] != math.inf:
                raise ExpositionError(f"{family}{dict(rest)}: no +Inf bucket")
            if out.samples.get((f"{family}_count", rest)) != buckets[-1][1]:
                raise ExpositionError(f"{family}{dict(rest)}: _count differs from the +Inf bucket")
            if (f"{family}_sum", rest) not in out.samples:
                raise ExpositionError(f"{family}{dict(rest)}: no _sum")
