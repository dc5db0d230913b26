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
