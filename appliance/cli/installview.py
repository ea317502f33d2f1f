"""Text renderings of hosts and their installs for people: `hosts show`, `watch` and the demo."""

from __future__ import annotations

import json
import time
from typing import Any

from appliance.cli.inventoryview import inventory_lines
from appliance.cli.sizes import human_size

BAR_WIDTH = 24


def progress_bar(done: int | None, total: int | None, width: int = BAR_WIDTH) -> str:
    if not done or not total:
        return ""
    fraction = max(0.0, min(1.0, done / total))
    filled = round(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%"


def progress_line(host: dict[str, Any]) -> str:
    """One line per host: name, state, stage, a progress bar when bytes are known, elapsed time."""
    p = host.get("progress") or {}
    parts = [f"{host['name']:<16}", f"{host['state']:<10}", f"{(p.get('stage') or '-'):<12}"]
    bar = progress_bar(p.get("bytes"), p.get("total"))
    if bar:
        parts.append(f"{bar} {human_size(p.get('bytes'))}/{human_size(p.get('total'))}")
    elif p.get("bytes"):
        parts.append(human_size(p.get("bytes")))
    if p.get("elapsed") is not None:
        parts.append(f"{p['elapsed']:.1f} s")
    failure = p.get("failure")
    if failure:
        parts.append(f"FAILED at {failure.get('stage')}: {failure.get('reason')}")
    return "  ".join(parts).rstrip()


def _detail_text(detail: Any) -> str:
    if detail is None:
        return ""
    if isinstance(detail, dict):
        text = detail.get("text")
        rest = {k: v for k, v in detail.items() if k != "text"}
        first = text.strip().splitlines()[0] if isinstance(text, str) and text.strip() else ""
        extra = " ".join(f"{k}={v}" for k, v in rest.items() if not isinstance(v, dict | list))
        return " ".join(x for x in (first, extra) if x)
    return json.dumps(detail)


def timeline_lines(events: list[dict[str, Any]]) -> list[str]:
    """Each event: its time, seconds since the first event, stage and a one-line detail."""
    if not events:
        return ["  (no install events)"]
    start = events[0]["time"]
    lines = []
    for e in events:
        clock = time.strftime("%H:%M:%S", time.localtime(e["time"]))
        lines.append(f"  {clock} +{e['time'] - start:7.2f}s  {e['stage']:<12} {_detail_text(e['detail'])}".rstrip())
    return lines


def _from(sourced: dict[str, Any] | None) -> str:
    """Where an effective value comes from, as `hosts show` says it: "" for the host's own."""
    source = (sourced or {}).get("source")
    return "" if source in (None, "host") else f"  (from {source})"


def power_text(power: dict[str, Any] | None) -> str:
    """The last known power state: "on", "off", "?" or "ERROR: reason"."""
    if not power:
        return "-"
    if power.get("error"):
        return f"ERROR: {power['error']}"
    return str(power.get("state") or "?")


def effective_image(host: dict[str, Any]) -> tuple[str | None, int | None]:
    """The image and version the host installs: its own, else its profile's."""
    eff = host.get("effective") or {}
    image = (eff.get("image") or {}).get("value", host.get("image"))
    version = (eff.get("version") or {}).get("value", host.get("version"))
    return image, version


def host_detail(host: dict[str, Any]) -> str:
    binding = host.get("binding") or {}
    boot = host.get("boot") or {}
    eff = host.get("effective") or {}
    image, version = effective_image(host)
    lines = [
        f"host       {host['name']}",
        f"mac        {host.get('mac') or '-'}",
        f"address    {binding.get('ip') or host.get('ip') or '-'}"
        + (f" ({binding.get('kind')}{', ' + binding['source'] if binding.get('source') else ''})" if binding else ""),
        f"profile    {host.get('profile') or '-'}",
        f"image      {image or '-'}" + _from(eff.get("image")),
        f"version    {f'v{version}' if version is not None else 'newest'}" + _from(eff.get("version")),
        f"state      {host['state']}"
        + (f", running v{host['running_version']}" if host.get("running_version") is not None else ""),
    ]
    if host.get("transport_effective"):
        lines.append(f"transport  {host['transport_effective']}" + _from(eff.get("transport")))
    if eff.get("kernel_args", {}).get("value") or host.get("kernel_args"):
        lines.append(f"kernel     {eff.get('kernel_args', {}).get('value') or host.get('kernel_args')}"
                     + _from(eff.get("kernel_args")))
    if eff.get("bmc", {}).get("value"):
        lines.append(f"bmc        yes{_from(eff.get('bmc'))}")
    lines.append(f"power      {power_text(host.get('power'))}")
    if host.get("last_update") is not None:
        lines.append(f"updated    {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(host['last_update']))} "
                     "(updateclient)")
    if boot:
        lines.append(f"next boot  {boot.get('kind')}: {boot.get('reason')}")
    failure = (host.get("progress") or {}).get("failure")
    if failure:
        lines.append(f"failure    stage {failure.get('stage')}: {failure.get('reason')}")
    hints = host.get("root_device")
    whose = (eff.get("root_device") or {}).get("source") or (hints or {}).get("source")
    lines.append(f"root disk  {hints['hints']} ({whose}'s hints)" if hints else
                 "root disk  the first disk found (no root-device hints)")
    lines += inventory_lines(host.get("inventory"))
    lines.append("timeline")
    lines += timeline_lines(host.get("timeline") or [])
    return "\n".join(lines)
