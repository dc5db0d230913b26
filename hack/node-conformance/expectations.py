"""What this machine lets the node e2e suite's [NodeConformance] specs do, with the reasons.

A spec that fails or skips on cri-py fails `make node-conformance` unless it is listed here.
A failure is listed only when containerd 2.x, as kubelet's runtime on the same node, fails it
the same way (docs/conformance.md has both runs); everything else is a defect of cri-py.
Keys are substrings of the spec's full name.
"""

from __future__ import annotations

# failures of this machine, whatever the runtime
MACHINE_FAILURES: dict[str, str] = {}

# specs that skip themselves here (they check the machine before doing anything)
EXPECTED_SKIPS: dict[str, str] = {}


def reason(name: str, table: dict[str, str]) -> str:
    return next((why for key, why in table.items() if key in name), "")


# `make test` runs the focus without these (hack/node-conformance/run --subset): together they
# take most of the 80 minutes of the whole focus. Each is a group of specs that wait by design (probe periods, back-offs,
# grace periods, pods kept pending for minutes) or that restart kubelet or the runtime.
SUBSET_SKIPS: dict[str, str] = {
    "Serial": "one at a time, after everything else: kubelet restarts, configuration changes, GC",
    "Slow": "minutes each by design (back-off caps, pods that must stay pending for 5 minutes)",
    "Disruptive": "restarts kubelet or the runtime",
    "Flaky": "upstream marks them unreliable",
    "Probing container": "probe periods and failure thresholds: about 100 s a spec",
    "Probing restartable init container": "the same for sidecars",
    "Containers Lifecycle": "129 specs, 20 s on average: start, restart and termination orderings",
    "Device Plugin": "device plugin registration and health waits",
    "Pods should": "back-off and restart timing",
    # not for time: it fails on cri-py (docs/conformance.md); the whole focus reports it
    "ContainerMetrics": "fails on cri-py: kubelet's cAdvisor labels only containerd's and CRI-O's containers",
}


def subset_skip_regex() -> str:
    """For ginkgo's --skip (Go's RE2): the keys as literal text, alternatives of one regex."""
    special = set("\\.^$*+?()[]{}|")
    return "|".join("".join("\\" + c if c in special else c for c in key) for key in SUBSET_SKIPS)
