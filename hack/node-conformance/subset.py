"""The fixed subset of the node e2e suite that `make test` runs (`run --subset`).

The whole [NodeConformance] focus (474 specs) takes about 80 minutes here; `make test` has to
stay within 45 minutes on a fresh 2-core machine, so it runs these specs, named one by one and
chosen so that each exercises a different path between kubelet and the runtime: lifecycle
hooks (exec and HTTP, the sleep action), probes (exec through ExecSync, HTTP), init and
restartable init containers, security contexts (users, read-only root, no_new_privs, a shared
PID namespace, sysctls, masked /proc), volumes (emptyDir on tmpfs, fsGroup, hostPath subPath,
ConfigMap, Secret, projected and downward API volumes updated in place, recursive read-only
mounts), logs (the CRI log path and format, logs over WebSocket, termination messages), exec
over WebSocket and ephemeral containers, pod status and restart policies (exit codes, SIGKILL,
deletion, conditions, activeDeadlineSeconds), the pod network (pod to pod, pod IPs, /etc/hosts,
hostname and FQDN, a sandbox refused for a too long hostname, host network), pod cgroups and
overhead, environment and command overrides, the stats summary kubelet builds from the CRI and
cAdvisor, image pulls from the node's registry (with a
pull secret, and an image updated under a running pod) and static pods. Each takes seconds to
a minute and a half (the slowest: the stats summary, 60 to 80 s); what the full focus has beyond
them is mostly the same paths again, or waits by design (probe periods, back-off caps,
five-minute pending checks). The whole focus stays in `make node-conformance`.

A listed spec that does not run (renamed upstream, say) fails the run, as one that fails does.
"""

from __future__ import annotations

SPECS: tuple[str, ...] = (
    # lifecycle hooks
    "[sig-node] Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart exec hook properly [NodeConformance] [Conformance]",
    "[sig-node] Container Lifecycle Hook when create a pod with lifecycle hook should execute prestop http hook properly [NodeConformance] [Conformance]",
    "[sig-node] Lifecycle sleep action zero value [NodeConformance] when create a pod with lifecycle hook using sleep action with a duration of zero seconds prestop hook using sleep action with zero duration",
    # probes
    '[sig-node] Probing container should be restarted with a exec "cat /tmp/health" liveness probe [NodeConformance] [Conformance]',
    "[sig-node] Probing container should be restarted with a /healthz http liveness probe [NodeConformance] [Conformance]",
    "[sig-node] Probing container with readiness probe should not be ready before initial delay and never restart [NodeConformance] [Conformance]",
    # init containers
    "[sig-node] InitContainer [NodeConformance] should invoke init containers on a RestartNever pod [Conformance]",
    "[sig-node] InitContainer [NodeConformance] should not start app containers and fail the pod if init containers fail on a RestartNever pod [Conformance]",
    "[sig-node] [NodeConformance] Containers Lifecycle when Running a pod with init containers and regular containers, restartPolicy=Never when A pod initializes successfully should launch init container serially before a regular container",
    "[sig-node] [NodeConformance] Containers Lifecycle when using a restartable init container in a Pod with restartPolicy=Never when a restartable init container runs continuously should complete a Pod successfully and produce log",
    # security context
    "[sig-node] Security Context When creating a container with runAsUser should run the container with uid 65534 [LinuxOnly] [NodeConformance] [Conformance]",
    "[sig-node] Security Context When creating a container with runAsNonRoot [NodeConformance] should run with an image specified user ID",
    "[sig-node] Security Context When creating a pod with readOnlyRootFilesystem should run the container with readonly rootfs when readOnlyRootFilesystem=true [LinuxOnly] [NodeConformance]",
    "[sig-node] Security Context when creating containers with AllowPrivilegeEscalation should not allow privilege escalation when false [LinuxOnly] [NodeConformance] [Conformance]",
    "[sig-node] Security Context [NodeConformance] [LinuxOnly] Container PID namespace sharing processes in containers sharing a pod namespace should be able to see each other",
    "[sig-node] Sysctls [LinuxOnly] [NodeConformance] should support sysctls [Environment:NotInUserNS] [Conformance]",
    "[sig-node] DefaultProcMount [LinuxOnly] [NodeConformance] will mask proc mounts by default",
    # volumes
    "[sig-storage] EmptyDir volumes should support (non-root,0644,tmpfs) [LinuxOnly] [NodeConformance] [Conformance]",
    "[sig-storage] EmptyDir volumes when FSGroup is specified [LinuxOnly] [NodeConformance] new files should be created with FSGroup ownership when container is non-root",
    "[sig-storage] HostPath should support subPath [NodeConformance]",
    "[sig-storage] ConfigMap should be consumable from pods in volume with mappings [NodeConformance] [Conformance]",
    "[sig-storage] Secrets should be consumable from pods in volume with defaultMode set [LinuxOnly] [NodeConformance] [Conformance]",
    "[sig-storage] Projected combined should project all components that make up the projection API [Projection] [NodeConformance] [Conformance]",
    "[sig-storage] Downward API volume should update labels on modification [NodeConformance] [Conformance]",
    "[sig-node] Mount recursive read-only [LinuxOnly] [NodeConformance] Mount recursive read-only when the runtime supports recursive read-only mounts should accept recursive read-only mounts",
    "[sig-node] Kubelet Volume Manager Volume Manager On termination of pod with memory backed volume should remove the volume from the node [NodeConformance]",
    # logs
    "[sig-node] ContainerLogPath [NodeConformance] Pod with a container printed log to stdout should print log to correct cri log path",
    "[sig-node] Kubelet when scheduling a busybox command in a pod should print the output to logs [NodeConformance] [Conformance]",
    "[sig-node] Pods should support retrieving logs from the container over websockets [NodeConformance] [Conformance]",
    "[sig-node] Container Runtime blackbox test on terminated container should report termination message from log output if TerminationMessagePolicy FallbackToLogsOnError is set [NodeConformance] [Conformance]",
    "[sig-node] Container Runtime blackbox test on terminated container should report termination message if TerminationMessagePath is set as non-root user and at a non-default path [NodeConformance] [Conformance]",
    # exec
    "[sig-node] Pods should support remote command execution over websockets [NodeConformance] [Conformance]",
    "[sig-node] Ephemeral Containers [NodeConformance] will start an ephemeral container in an existing pod [Conformance]",
    # status and restart policy
    "[sig-node] Container Runtime blackbox test when starting a container that exits should run with the expected status [NodeConformance] [Conformance]",
    "[sig-node] Kubelet when scheduling a busybox command that always fails in a pod should have an terminated reason [NodeConformance] [Conformance]",
    "[sig-node] Pod SIGKILL [LinuxOnly] [NodeConformance] The containers terminated forcefully by Sigkill should have the correct exit code(137) and reason (Error)",
    "[sig-node] Deleted pods handling [NodeConformance] Should transition to Failed phase a deleted pod if non-zero exit codes Restart policy Never",
    "[sig-node] Pod conditions managed by Kubelet without PodReadyToStartContainersCondition condition [NodeConformance] a pod with init containers should report all conditions set in expected order after the pod is up",
    "[sig-node] Pods should allow activeDeadlineSeconds to be updated [NodeConformance] [Conformance]",
    # network
    "[sig-network] Networking Granular Checks: Pods should function for intra-pod communication: http [NodeConformance] [Conformance]",
    "[sig-network] Pod IPs [NodeConformance] when pod gets terminated should contain podIPs in status for succeeded pod",
    "[sig-node] Kubelet when scheduling an agnhost Pod with hostAliases should write entries to /etc/hosts [NodeConformance] [Conformance]",
    "[sig-node] Hostname of Pod [NodeConformance] a pod with subdomain field has FQDN, when setHostnameAsFQDN is set to true, the FQDN is set as hostname",
    "[sig-node] Hostname of Pod [NodeConformance] a pod configured to set FQDN as hostname will remain in Pending state generating FailedCreatePodSandBox events when the FQDN is longer than 64 bytes",
    "[sig-node] Downward API should provide host IP and pod IP as an env var if pod uses host network [LinuxOnly] [NodeConformance]",
    # resources
    "[sig-node] Kubelet Cgroup Manager Pod containers [NodeConformance] On scheduling a Burstable Pod Pod containers should have been created under the Burstable cgroup",
    "[sig-node] Kubelet PodOverhead handling [LinuxOnly] [NodeConformance] PodOverhead cgroup accounting On running pod with PodOverhead defined Pod cgroup should be sum of overhead and resource limits",
    "[sig-node] Downward API should provide container's limits.cpu/memory and requests.cpu/memory as env vars [NodeConformance] [Conformance]",
    # environment
    "[sig-node] ConfigMap should be consumable via the environment [NodeConformance] [Conformance]",
    "[sig-node] Variable Expansion should allow composing env vars into new env vars [NodeConformance] [Conformance]",
    "[sig-node] Containers should be able to override the image's default command and arguments [NodeConformance] [Conformance]",
    # stats: kubelet's summary merges the CRI's container stats with cAdvisor's (cgroup names,
    # the pod's network counters through the inspect API)
    "[sig-node] Summary API [NodeConformance] when querying /stats/summary should report resource usage through the stats api",
    # images
    "[sig-node] Container Runtime blackbox test when running a container with a new image [Serial] should be able to pull image [NodeConformance]",
    "[sig-node] Container Runtime blackbox test when running a container with a new image [Serial] should be able to pull from private registry with secret [NodeConformance]",
    "[sig-node] [NodeConformance] Containers Lifecycle when A pod is running only regular containers when the regular container has its image updated should successfully restart when the image is updated, restartPolicy=Always",
    # static pods
    "[sig-node] MirrorPod when create a mirror pod should be recreated when mirror pod gracefully deleted [NodeConformance]",
)


def focus_regex() -> str:
    """For ginkgo's --focus (Go's RE2; ginkgo matches it against the suite's description, a
    space and the spec's full text) and Python's re alike: each name as literal text, to its
    end, so that a longer name beginning with a listed one is not taken too."""
    special = set("\\.^$*+?()[]{}|")
    literal = ["".join("\\" + c if c in special else c for c in name) + "$" for name in SPECS]
    return "(?:" + "|".join(literal) + ")"
