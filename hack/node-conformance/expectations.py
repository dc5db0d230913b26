"""What this machine lets the node e2e suite's [NodeConformance] specs do, with the reasons.

A spec that fails or skips on cri-py fails `make node-conformance` unless it is listed here.
A failure is listed only when containerd 2.x, as kubelet's runtime on the same node, fails it
the same way (docs/conformance.md has both runs); everything else is a defect of cri-py.
Keys are substrings of the spec's full name.
"""

from __future__ import annotations

# failures of this machine, whatever the runtime (containerd 2.2.9 fails each the same way in
# the same setup: docs/conformance.md)
MACHINE_FAILURES: dict[str, str] = {
    "PrivilegedPod [NodeConformance] should enable privileged commands": (
        "`ip link add dummy1 type dummy` answers EOPNOTSUPP: this kernel has no dummy network "
        "device (CONFIG_DUMMY is not set) and loads no modules"
    ),
    "ContainerMetrics [LinuxOnly] [NodeConformance] when querying /metrics/cadvisor": (
        "container_blkio_device_usage_total, container_fs_reads_bytes_total and "
        "container_fs_writes_bytes_total never appear: this machine's cgroup v1 blkio accounts no "
        "I/O at all (the root cgroup's blkio.throttle.io_service_bytes is `Total 0`)"
    ),
    "Swap [LinuxOnly] [Feature:NodeSwap] [Serial] [NodeConformance] with a critical pod": (
        "reads the cgroup v2 file memory.swap.max in the container: cgroup v1 here"
    ),
    "MirrorPodWithGracePeriod when create a mirror pod and the container runtime is temporarily down": (
        "stops the runtime through systemd's D-Bus API (/run/systemd/private): no systemd here"
    ),
    "MirrorPod when recreating a static pod it should launch successfully even if it temporarily "
    "failed termination due to volume failing to unmount": (
        "cannot run offline or on this kernel: an NFS server pod from "
        "registry.k8s.io/e2e-test-images/volume/nfs:1.6.0 (not built here) serving from the "
        "kernel's nfsd (CONFIG_NFSD is not set)"
    ),
    "ImageGarbageCollect [Serial] [NodeConformance] when ImageMaximumGCAge is set": (
        "cannot run offline: it first pre-pulls every image of the suite's pre-pull list, among "
        "them gcr.io/cadvisor/cadvisor:v0.47.2, docker.io/nfvpe/sriov-device-plugin:v3.1, the "
        "node-perf npb-ep, npb-is and pytorch-wide-deep workloads and node-problem-detector, "
        "none of which is built here"
    ),
}

# specs that skip themselves here (they check the machine before doing anything); containerd
# skips the same 12
EXPECTED_SKIPS: dict[str, str] = {
    "CPU Manager [Serial] [Feature:CPUManager] When checking the sidecar containers": (
        "needs 3 allocatable CPUs: this machine has 2"
    ),
    "POD Resources API [Serial] [Feature:PodResourcesAPI] with SRIOV devices": "needs an SR-IOV VF",
    "POD Resources API [Serial] [Feature:PodResourcesAPI] without SRIOV devices": "needs 4 CPUs",
    "Summary API [NodeConformance] when querying /stats/summary under pressure": "needs cgroup v2",
    "Swap [LinuxOnly] [Feature:NodeSwap] [Serial] [NodeConformance] with configuration": "needs cgroup v2",
    "Mount recursive read-only when the runtime does not support recursive read-only mounts": (
        "for runtimes without recursive read-only mounts: runc here has them"
    ),
}


def reason(name: str, table: dict[str, str]) -> str:
    return next((why for key, why in table.items() if key in name), "")
