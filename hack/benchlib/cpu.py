"""CPU time of a CRI daemon and its monitors, from /proc/<pid>/stat.

A sample holds, per process of the runtime (the daemon, and the monitors memory.py finds: conmon,
containerd-shim), its own utime + stime and what it reaped from its children (cutime + cstime:
runc, CNI plugins, exec'd helpers). The difference of two samples is the CPU spent in between; a
process that started in between counts from zero, one that ended in between is charged to
whoever reaped it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib.memory import runtime_processes

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcCpu:
    start: int  # starttime in ticks: a reused pid is another process
    own: int  # utime + stime, ticks
    reaped: int  # cutime + cstime, ticks


@dataclass(frozen=True)
class CpuSample:
    at: float
    daemon_pid: int
    procs: dict[int, ProcCpu]


@dataclass(frozen=True)
class CpuUsage:
    seconds: float  # the window
    daemon_s: float  # the daemon's own CPU plus what it reaped
    monitors_s: float  # every other process of the runtime, with what they reaped
    monitors: int

    def per_minute(self) -> dict[str, float]:
        scale = 60.0 / self.seconds if self.seconds > 0 else 0.0
        return {
            "window_s": self.seconds,
            "daemon_cpu_s_per_min": self.daemon_s * scale,
            "monitors_cpu_s_per_min": self.monitors_s * scale,
            "total_cpu_s_per_min": (self.daemon_s + self.monitors_s) * scale,
            "monitors": self.monitors,
        }


def _read(pid: int) -> ProcCpu | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after the comm: state is fields[0], so field N of proc(5) is fields[N - 3]
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return ProcCpu(int(fields[19]), utime + stime, cutime + cstime)


def sample(daemon_pid: int, markers: list[str]) -> CpuSample:
    pids, _ = runtime_processes(daemon_pid, markers)
    procs = {pid: cpu for pid in pids if (cpu := _read(pid)) is not None}
    return CpuSample(time.monotonic(), daemon_pid, procs)


def usage(before: CpuSample, after: CpuSample) -> CpuUsage:
    daemon = monitors = 0
    others = 0
    for pid, now in after.procs.items():
        then = before.procs.get(pid)
        if then is None or then.start != now.start:
            then = ProcCpu(now.start, 0, 0)
        spent = (now.own - then.own) + (now.reaped - then.reaped)
        if pid == after.daemon_pid:
            daemon += spent
        else:
            monitors += spent
            others += 1
    return CpuUsage(after.at - before.at, daemon / TICK, monitors / TICK, others)
