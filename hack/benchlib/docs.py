"""docs/benchmarks.md: one section per bench mode, each rewritten by that mode's --write-docs.

A section sits between `<!-- bench:MODE -->` and `<!-- /bench:MODE -->`; the rest of the page (the
introduction, how to reproduce, and the findings written by hand in hack/benchlib/notes.md) is
written around them, so the compare, node and critest runs of one session land in one page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "benchmarks.md"
NOTES_FILE = REPO / "hack" / "benchlib" / "notes.md"
MODES = ("rounds", "compare", "node", "critest")

INTRO = """# Benchmarks: cri-py against containerd 2.x and CRI-O 1.36

Both peers are built from their Go modules at pinned versions (hack/peers/: containerd v2.2.9 with
its runc shim, CRI-O v1.36.3 with its pinns) and run beside cri-py, each with its own root,
socket, bridge and /24 behind a FORWARD guard, the same runc 1.1.5, conmon 2.1.6, CNI plugins
(/usr/lib/cni), local registry and images. Every target is a ratio of cri-py to the **best peer in
the same run** (the lower latency or memory, the higher pods/s); the ratios to each peer are
shown beside it. This machine is shared by other helpers' builds and tests: the load average is
printed with every run, and only ratios measured in one rotation are compared."""

REPRODUCE = """## Reproduce

```
make install                              # the venv and the Debian packages
hack/peers/build                          # containerd 2.x and CRI-O into /var/cache/cri-py (bench does it when absent)
hack/bench --compare --write-docs         # as root; ~6 min here (make bench: the same without docs)
hack/bench --node --write-docs            # 110 pods each, 2 min polling each, kubelet Deployment: ~20 min
hack/bench --critest --write-docs         # critest -benchmark against each runtime
hack/bench --rounds bench-results/{compare,node,critest}-*.json --write-docs   # medians of the rounds
hack/bench --spans --n 20                 # cri-py's RPCs broken down (subprocesses, threads, loop stalls)
hack/bench --compare --profile            # cri-py under py-spy record (pip install py-spy into .venv)
hack/bench --endpoint unix:///run/x.sock --busybox-image REF   # any running CRI endpoint
```

Memory is the RSS (and PSS) of the daemon plus every monitor it started (conmon,
containerd-shim-runc-v2), found by walking the process tree and matching the monitors' command
lines to the daemon's directories; container processes (pause, sleep) are not counted. CPU is
utime + stime from `/proc/<pid>/stat` of the same processes, with the children they reaped
(cutime + cstime: runc, CNI plugins)."""


def _markers(mode: str) -> tuple[str, str]:
    return f"<!-- bench:{mode} -->", f"<!-- /bench:{mode} -->"


def _sections(text: str) -> dict[str, str]:
    found = {}
    for mode in MODES:
        begin, end = _markers(mode)
        match = re.search(re.escape(begin) + r"\n(.*?)" + re.escape(end), text, re.S)
        if match:
            found[mode] = match.group(1)
    return found


def write_section(mode: str, lines: list[str]) -> Path:
    """Replace this mode's section of docs/benchmarks.md, keeping the other modes' sections."""
    old = PAGE.read_text() if PAGE.exists() else ""
    sections = _sections(old)
    sections[mode] = "\n".join(lines).rstrip("\n") + "\n"
    notes = NOTES_FILE.read_text().rstrip("\n") if NOTES_FILE.exists() else ""
    parts = [INTRO, ""]
    for name in MODES:
        begin, end = _markers(name)
        body = sections.get(name, f"(no `hack/bench --{name} --write-docs` run recorded yet)\n")
        parts += [begin, body + end, ""]
    parts += [REPRODUCE, "", notes, ""]
    PAGE.parent.mkdir(exist_ok=True)
    PAGE.write_text("\n".join(parts))
    return PAGE


def run_line(result: dict[str, Any], argv: list[str]) -> str:
    return (
        f"Run: {result['started']} at cri-py {result.get('commit', '?')}, `hack/bench {' '.join(argv)}`, "
        f"wall time {result.get('wall_s', 0):.0f} s; "
        f"load average (1/5/15 min) {'/'.join(result.get('loadavg_start', []))} at the start, "
        f"{'/'.join(result.get('loadavg_end', []))} at the end."
    )


def versions_line(result: dict[str, Any]) -> str:
    machine = result.get("machine", {})
    versions = ", ".join(f"{k}: {v}" for k, v in result.get("versions", {}).items())
    return (
        f"Machine: {machine.get('os', '')}, kernel {machine.get('kernel', '')}, {machine.get('cpu', '')}, "
        f"{machine.get('memory', '')}; {machine.get('runc', '')}; {machine.get('conmon', '')}; "
        f"Python {machine.get('python', '')}. Runtimes: {versions}."
    )
