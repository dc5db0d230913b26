"""Run cri-py and write down what is resident, on SIGUSR2: by mapping, by module, and which modules are loaded.

    python hack/benchlib/memtrace.py <cri-py executable> serve --config FILE   (MEM_OUT=file.json)

A development wrapper for `hack/bench --memory`: tracemalloc starts before cri_py is imported
(MEM_FRAMES frames per allocation, default 1; 0 for none), so every Python allocation still alive is charged
to the file that made it; the mappings come from /proc/self/smaps. The daemon's code is unchanged.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
import threading
import tracemalloc
from types import FrameType


def _smaps() -> dict[str, int]:
    """Resident KiB per mapping name ([anon], [heap], [stack], or the file)."""
    by: collections.Counter[str] = collections.Counter()
    current = "[anon]"
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            parts = line.split()
            if parts and not parts[0].endswith(":"):
                current = parts[5] if len(parts) > 5 else "[anon]"
            elif parts and parts[0] == "Rss:":
                by[current] += int(parts[1])
    return dict(by)


def _package(filename: str) -> str:
    """site-packages/grpc/_channel.py -> grpc; cri_py/pod/store.py -> cri_py.pod; stdlib -> stdlib:asyncio."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/cri_py/" in filename:
        rest = filename.split("/cri_py/", 1)[1].split("/")
        return "cri_py." + rest[0].removesuffix(".py")
    if "/lib/python3" in filename:
        rest = filename.split("/lib/python3", 1)[1].split("/")
        return "stdlib:" + (rest[1].removesuffix(".py") if len(rest) > 1 else "?")
    return filename


def dump(signum: int = 0, frame: FrameType | None = None) -> None:
    if os.environ.get("MEM_TRIM"):  # experiment: what a collection plus malloc_trim would give back
        import ctypes
        import gc

        gc.collect()
        ctypes.CDLL(None).malloc_trim(0)
    by_package: collections.Counter[str] = collections.Counter()
    if tracemalloc.is_tracing():
        for stat in tracemalloc.take_snapshot().statistics("filename"):
            by_package[_package(stat.traceback[0].filename)] += stat.size
    status = {}
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                status[key] = value.strip()
    traced, peak = tracemalloc.get_traced_memory()
    report = {
        "status": status,
        "tracemalloc_kib": traced // 1024,
        "tracemalloc_peak_kib": peak // 1024,
        "python_by_package_kib": {k: v // 1024 for k, v in by_package.most_common(40)},
        "mappings_kib": dict(sorted(_smaps().items(), key=lambda kv: -kv[1])[:30]),
        "modules": sorted(sys.modules),
        "threads": [t.name for t in threading.enumerate()],
    }
    with open(os.environ["MEM_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    frames = int(os.environ.get("MEM_FRAMES", "1"))
    if frames > 0:  # 0: mappings and modules only, RSS as without the wrapper
        tracemalloc.start(frames)
    signal.signal(signal.SIGUSR2, dump)
    sys.argv = ["cri-py", *sys.argv[2:]]
    from cri_py.cli import main

    raise SystemExit(main())
