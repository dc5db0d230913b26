"""Several saved runs of one mode side by side: each measure's ratio to the best peer per round,
and the median over the rounds.

On a shared 2-core machine one run's ratio near its target flips with the neighbours' load; the
ratio measured within each rotation is what a round can be trusted for, so a target is judged
by the median of those per-round ratios (not by a ratio of medians taken across rounds).

    hack/bench --rounds bench-results/compare-*.json bench-results/node-*.json [--write-docs]
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from benchlib import report

INTRO = (
    "Each round is one `hack/bench` run (its full table is below for the latest round). `rN ratio` is "
    "cri-py's p50 (or MiB, CPU-s/min, pods/s) over the best peer's in that round, measured in one "
    "rotation; the target is judged on the median of those ratios. `median` columns are the "
    "medians of each runtime's own figure over the rounds. The load average shows how busy the "
    "shared machine was."
)

Rows = Callable[[dict[str, Any]], list[report.Row]]


def _rows_of(mode: str) -> Rows:
    if mode == "node":
        from benchlib import kubelet, node

        return lambda result: [*node.rows(result), *kubelet.rows(result.get("kubelet"))]
    if mode == "critest":
        from benchlib import critest

        return critest.rows
    from benchlib.compare import FLOOR_OF

    def compare_rows(result: dict[str, Any]) -> list[report.Row]:
        names = list(result.get("versions", {}).keys())
        rows = report.build_rows(result.get("results", {}), result.get("floors", {}), FLOOR_OF, names)
        for row in list(rows):
            limit = report.FLOOR_TARGETS.get(row["measure"])
            if limit is not None and names[0] in row.get("vs_floor", {}):
                # the floor target on a row of its own: the peer ratio and the floor ratio can
                # differ in which rounds they are met
                rows.append(
                    {
                        "measure": f"{row['measure']} / runc floor",
                        "unit": "x",
                        "values": {},
                        "ratio": row["vs_floor"][names[0]],
                        "best_peer": "floor",
                        "target": f"<= {limit}",
                        "met": row["vs_floor"][names[0]] <= limit,
                        "detail": {},
                        "errors": {},
                    }
                )
        return rows

    return compare_rows


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(results: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """One mode's rounds (oldest first): the runtime names and one line per measure."""
    rows_of = _rows_of(results[0]["mode"])
    names = list(results[0].get("versions", {}).keys())
    per_round = [{row["measure"]: row for row in rows_of(r)} for r in results]
    measures: list[str] = []
    for rows in per_round:
        measures += [m for m in rows if m not in measures]
    lines = []
    for measure in measures:
        present = [rows[measure] for rows in per_round if measure in rows]
        unit = present[0]["unit"]
        ratios = [rows[measure].get("ratio") if measure in rows else None for rows in per_round]
        known = [r for r in ratios if r is not None]
        target = next((row["target"] for row in present if row.get("target")), "").split(",")[0]
        median_ratio = _median(known)
        lines.append(
            {
                "measure": measure,
                "unit": unit,
                "values": {
                    n: _median([row["values"][n] for row in present if row["values"].get(n) is not None])
                    for n in names
                },
                "ratios": ratios,
                "best_peers": [
                    rows[measure].get("best_peer") if measure in rows else None for rows in per_round
                ],
                "median_ratio": median_ratio,
                "target": target,
                "met": _meets(median_ratio, target),
                "rounds_met": sum(1 for r in known if _meets(r, target)),
                "rounds_judged": len(known) if target else 0,
            }
        )
    return names, lines


def _meets(ratio: float | None, target: str) -> bool | None:
    """`target` as the rows write it: "<= 0.8" or ">= 1.2" (a floor clause is a row of its own)."""
    if not target or ratio is None:
        return None
    op, limit = target.split()[:2]
    return ratio <= float(limit) if op == "<=" else ratio >= float(limit)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if unit not in ("ms", "s") or value < 10 else f"{value:.1f}"


def render(results: list[dict[str, Any]], markdown: bool) -> list[str]:
    by_mode: dict[str, list[dict[str, Any]]] = {}
    for result in sorted(results, key=lambda r: r["started"]):
        by_mode.setdefault(result["mode"], []).append(result)
    out: list[str] = []
    for mode, runs in by_mode.items():
        names, lines = summarize(runs)
        rounds = "; ".join(
            f"r{i + 1} {r['started'][11:16]} at {r.get('commit', '?')}, load "
            f"{'/'.join(r.get('loadavg_start', [])[:1])}→{'/'.join(r.get('loadavg_end', [])[:1])}"
            for i, r in enumerate(runs)
        )
        header = [
            "measure",
            "unit",
            *[f"{n} median" for n in names],
            *[f"r{i + 1} ratio" for i in range(len(runs))],
            "median ratio",
            "target",
            "met (median)",
            "rounds met",
        ]
        body = []
        for line in lines:
            body.append(
                [
                    line["measure"],
                    line["unit"],
                    *[_fmt(line["values"][n], line["unit"]) for n in names],
                    *[
                        "—"
                        if r is None
                        else f"{r:.2f}" + (f" ({p})" if p and p != "floor" and markdown else "")
                        for r, p in zip(line["ratios"], line["best_peers"], strict=True)
                    ],
                    "—" if line["median_ratio"] is None else f"{line['median_ratio']:.2f}",
                    line["target"],
                    "" if line["met"] is None else ("yes" if line["met"] else "NO"),
                    f"{line['rounds_met']}/{line['rounds_judged']}" if line["rounds_judged"] else "",
                ]
            )
        title = (
            f"{mode}, {len(runs)} rounds (UTC start, cri-py commit, load average 1 min start→end): {rounds}"
        )
        out += [f"### {title}" if markdown else title, ""]
        out += report.render_table(header, body, markdown)
        out.append("")
    return out
