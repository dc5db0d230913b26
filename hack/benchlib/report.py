"""The comparison table: text for the terminal, Markdown for docs, JSON for machines."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

# measure -> (target ratio cri-py / best peer, direction): "le" = at most, "ge" = at least
TARGETS: dict[str, tuple[float, str]] = {
    "RunPodSandbox": (0.7, "le"),
    "CreateContainer+StartContainer": (0.8, "le"),
    "full lifecycle": (0.7, "le"),
    "ExecSync true": (1.0, "le"),
    "ListContainers": (1.0, "le"),
    "ListPodSandbox": (1.0, "le"),
    "PullImage 100 MB (5 layers)": (1.0, "le"),
    "throughput": (1.2, "ge"),
    "memory per pod (RSS)": (0.8, "le"),
    "idle memory (RSS)": (1.0, "le"),
}

# measure -> the most cri-py may take relative to the same work done by hand (p50 / floor p50)
FLOOR_TARGETS: dict[str, float] = {"ExecSync true": 1.15}

# the peers a target is measured against: the best of those in the run (others are columns only)
TARGET_PEERS = ("containerd", "cri-o")

Row = dict[str, Any]


def _target_for(measure: str) -> tuple[float, str] | None:
    for prefix, target in TARGETS.items():
        if measure.startswith(prefix):
            return target
    return None


def _p50(slot: dict[str, Any] | None) -> float | None:
    if not slot or not slot.get("summary"):
        return None
    return float(slot["summary"]["p50"])


def build_rows(
    results: dict[str, dict[str, dict[str, Any]]],
    floors: dict[str, float],
    floor_of: dict[str, str],
    names: list[str],
) -> list[Row]:
    rows: list[Row] = []
    for measure, per_target in results.items():
        if measure in ("memory",) or measure.startswith("throughput"):
            continue
        row: Row = {"measure": measure, "unit": "ms", "values": {}, "detail": {}, "errors": {}}
        for name in [*names, "floor"]:
            slot = per_target.get(name)
            p50 = _p50(slot)
            if name != "floor":
                row["values"][name] = p50 * 1000 if p50 is not None else None
            if slot and slot.get("summary"):
                s = slot["summary"]
                row["detail"][name] = (
                    f"{s['min'] * 1000:.1f} / {s['p50'] * 1000:.1f} / {s['p95'] * 1000:.1f} / "
                    f"{s['max'] * 1000:.1f}"
                )
            if slot and slot.get("errors"):
                row["errors"][name] = len(slot["errors"])
        floor_key = floor_of.get(measure)
        same_rotation = _p50(per_target.get("floor"))
        if floor_key and same_rotation is not None:
            row["floor"] = same_rotation * 1000
            row["floor_name"] = floor_key
        elif floor_key and floor_key in floors:
            row["floor"] = floors[floor_key] * 1000
            row["floor_name"] = floor_key
        rows.append(row)
    for measure, per_target in results.items():
        if measure.startswith("throughput"):
            row = {"measure": measure, "unit": "pods/s", "values": {}, "detail": {}, "errors": {}}
            for name in names:
                slot = per_target.get(name)
                if slot:
                    row["values"][name] = slot["pods_per_s"]
                    row["detail"][name] = f"wall {slot['wall_s']:.2f} s"
                    if slot["errors"]:
                        row["errors"][name] = len(slot["errors"])
            rows.append(row)
    memory = results.get("memory", {})
    if memory:
        picks: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
            ("idle memory (RSS)", lambda m: m.get("idle", {}).get("rss_kib")),
            ("idle memory (PSS)", lambda m: m.get("idle", {}).get("pss_kib")),
            ("memory per pod (RSS)", lambda m: m.get("per_pod_rss_kib")),
            ("memory per pod (PSS)", lambda m: m.get("per_pod_pss_kib")),
        )
        for label, pick in picks:
            row = {"measure": label, "unit": "MiB", "values": {}, "detail": {}, "errors": {}}
            for name in names:
                m = memory.get(name, {})
                value = pick(m)
                row["values"][name] = value / 1024 if value is not None else None
                if "loaded" in m and label == "idle memory (RSS)":
                    row["detail"][name] = (
                        f"{m['pods']} pods: {m['loaded']['rss_kib'] / 1024:.1f} MiB, "
                        f"{m['loaded']['processes']} processes"
                    )
                if m.get("errors"):
                    row["errors"][name] = len(m["errors"])
            rows.append(row)
    for row in rows:
        add_ratios(row, names)
    return rows


def add_ratios(row: Row, names: list[str]) -> None:
    """cri-py (names[0]) against each peer, and against the best of the target peers in this run."""
    vals = row["values"]
    first = vals.get(names[0])
    target = None if row.get("no_target") else (row.get("target_spec") or _target_for(row["measure"]))
    direction = target[1] if target else ("ge" if row["unit"] == "pods/s" else "le")
    row["ratios"] = {n: first / vals[n] for n in names[1:] if first is not None and vals.get(n)}
    candidates = [n for n in names[1:] if n in TARGET_PEERS and vals.get(n)]
    if first is not None and candidates:
        pick = max if direction == "ge" else min
        best = pick(candidates, key=lambda n: vals[n])
        row["best_peer"] = best
        row["ratio"] = first / vals[best]
        if target:
            limit = target[0]
            row["target"] = f"{'<=' if direction == 'le' else '>='} {limit}"
            row["met"] = row["ratio"] <= limit if direction == "le" else row["ratio"] >= limit
    if row.get("floor"):
        row["vs_floor"] = {n: vals[n] / row["floor"] for n in names if vals.get(n) is not None}
        floor_limit = FLOOR_TARGETS.get(row["measure"])
        first_floor = row["vs_floor"].get(names[0])
        if floor_limit is not None and first_floor is not None and "met" in row:
            row["target"] += f", floor <= {floor_limit}"
            row["met"] = row["met"] and first_floor <= floor_limit


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if unit != "ms" or value < 10 else f"{value:.1f}"


def table_lines(rows: list[Row], names: list[str], markdown: bool, floors: bool = True) -> list[str]:
    peers = names[1:]
    header = ["measure", "unit", *[f"{n} p50" for n in names]]
    header += [f"{names[0]}/{p}" for p in peers] + ["vs best peer", "target", "met"]
    if floors:
        header += ["floor p50", *[f"{n}/floor" for n in names]]
    body = []
    for row in rows:
        cells = [row["measure"], row["unit"]]
        for n in names:
            cell = _fmt(row["values"].get(n), row["unit"])
            if row["errors"].get(n):
                cell += f" ({row['errors'][n]} err)"
            cells.append(cell)
        cells += [f"{row['ratios'][p]:.2f}" if p in row.get("ratios", {}) else "—" for p in peers]
        cells += [
            f"{row['ratio']:.2f} ({row['best_peer']})" if "ratio" in row else "—",
            row.get("target", ""),
            "" if "met" not in row else ("yes" if row["met"] else "NO"),
        ]
        if floors:
            floor = _fmt(row.get("floor"), row["unit"])
            cells.append(floor + (f" ({row['floor_name']})" if row.get("floor_name") else ""))
            cells += [f"{row['vs_floor'][n]:.2f}" if n in row.get("vs_floor", {}) else "—" for n in names]
        body.append(cells)
    return render_table(header, body, markdown)


def render_table(header: list[str], body: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return lines
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=True)]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in [header, *body]
    ]


def detail_lines(rows: list[Row], names: list[str]) -> list[str]:
    if any("floor" in row["detail"] for row in rows):
        names = [*names, "floor"]
    lines = [
        "| measure | " + " | ".join(f"{n} min / p50 / p95 / max" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for row in rows:
        if row["detail"]:
            lines.append(
                f"| {row['measure']} | " + " | ".join(row["detail"].get(n, "—") for n in names) + " |"
            )
    return lines


def machine() -> dict[str, str]:
    def cmd(*args: str) -> str:
        try:
            return subprocess.run(list(args), capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return ""

    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "kernel": platform.release(),
        "os": next(
            (
                ln.split("=", 1)[1].strip('"')
                for ln in Path("/etc/os-release").read_text().splitlines()
                if ln.startswith("PRETTY_NAME=")
            ),
            "",
        ),
        "cpu": f"{cpu} x {os.cpu_count()}",
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "runc": cmd("/usr/sbin/runc", "--version").splitlines()[0]
        if cmd("/usr/sbin/runc", "--version")
        else "",
        "containerd-1.6": cmd("/usr/bin/containerd", "--version"),
        "conmon": cmd("/usr/bin/conmon", "--version").splitlines()[0]
        if cmd("/usr/bin/conmon", "--version")
        else "",
    }
