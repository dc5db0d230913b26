"""Given a manifest, the exact CRI messages kubelet would send."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument
from cri_py.play import translate
from cri_py.play.security import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS
from cri_py.play.translate import ImageFacts, container_config, sandbox_config
from tests.unit.play.helpers import CTX, UID, load_pod

WEB = """
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: web}
  annotations: {note: hi}
spec:
  hostname: front
  subdomain: svc1
  runtimeClassName: gvisor
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
    supplementalGroups: [4000]
    sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: "0"}]
  dnsConfig:
    nameservers: [192.0.2.99]
    searches: [extra.example]
    options: [{name: ndots, value: "3"}, {name: single-request}]
  initContainers:
  - name: init
    image: busybox:1.36
    command: [sh, -c, "echo $(GREETING) > /data/x"]
    env: [{name: GREETING, value: hello}]
    volumeMounts: [{name: data, mountPath: /data}]
  containers:
  - name: app
    image: registry.example/app:2
    command: [/app, "--name=$(POD_NAME)", "$$(POD_NAME)"]
    args: ["--mem=$(MEM_MI)", "$(UNDEFINED)"]
    workingDir: /srv
    tty: true
    stdin: true
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: CPU_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}
    - {name: URL, value: "http://$(POD_IP):8080/$(MISSING)"}
    ports:
    - {name: http, containerPort: 8080, hostPort: 18080}
    - {containerPort: 9090, protocol: UDP}
    resources:
      requests: {cpu: 250m, memory: 64Mi}
      limits: {cpu: 500m, memory: 128Mi}
    securityContext:
      runAsUser: 1001
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {add: [NET_ADMIN], drop: [ALL]}
      seccompProfile: {type: RuntimeDefault}
    volumeMounts:
    - {name: data, mountPath: /data, readOnly: true}
    - {name: host, mountPath: /host, mountPropagation: HostToContainer, subPath: sub}
    lifecycle:
      preStop: {exec: {command: [sleep, "1"]}}
  volumes:
  - {name: data, emptyDir: {medium: Memory}}
  - {name: host, hostPath: {path: /srv/data, type: DirectoryOrCreate}}
"""


def assert_messages_equal(got: object, want: object) -> None:
    assert text_format.MessageToString(got) == text_format.MessageToString(want)  # type: ignore[arg-type]


def test_sandbox_config_matches_kubelet() -> None:
    pod = load_pod(WEB)
    want = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="web", uid=UID, namespace="shop", attempt=0),
        hostname="front",
        log_directory=f"/var/log/pods/shop_web_{UID}",
        dns_config=api_pb2.DNSConfig(
            servers=["192.0.2.53", "192.0.2.54", "192.0.2.99"],
            searches=["example.org", "corp.example.org", "extra.example"],
            options=["ndots:3", "edns0", "single-request"],
        ),
        port_mappings=[
            api_pb2.PortMapping(protocol=api_pb2.TCP, container_port=8080, host_port=18080),
            api_pb2.PortMapping(protocol=api_pb2.UDP, container_port=9090),
        ],
        labels={
            "app": "web",
            "io.kubernetes.pod.name": "web",
            "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.pod.uid": UID,
        },
        annotations={
            "note": "hi",
            "kubernetes.io/config.source": "file",
            "kubernetes.io/config.hash": UID,
            "kubernetes.io/config.seen": "2026-01-02T03:04:05Z",
        },
        linux=api_pb2.LinuxPodSandboxConfig(
            cgroup_parent=f"/kubepods/burstable/pod{UID}",
            security_context=api_pb2.LinuxSandboxSecurityContext(
                namespace_options=api_pb2.NamespaceOption(
                    network=api_pb2.POD,
                    pid=api_pb2.CONTAINER,
                    ipc=api_pb2.POD,
                    userns_options=api_pb2.UserNamespace(mode=api_pb2.NODE),
                ),
                run_as_user=api_pb2.Int64Value(value=1000),
                run_as_group=api_pb2.Int64Value(value=3000),
                supplemental_groups=[2000, 4000],
                seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.RuntimeDefault),
            ),
            sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
            # the pod's totals: app requests/limits (the init container asks for nothing)
            resources=api_pb2.LinuxContainerResources(
                cpu_period=100000, cpu_quota=50000, cpu_shares=256, memory_limit_in_bytes=128 * 2**20
            ),
            overhead=api_pb2.LinuxContainerResources(),
        ),
    )
    got = sandbox_config(pod, CTX)
    assert_messages_equal(got, want)
    assert got.linux.HasField("overhead")
    assert translate.runtime_handler(pod) == "gvisor"


def test_app_container_config_matches_kubelet() -> None:
    pod = load_pod(WEB)
    app = pod.spec.containers[0]
    got = container_config(
        pod,
        app,
        CTX,
        restart_count=2,
        image=ImageFacts(ref="sha256:" + "b" * 64, uid=0, username=""),
        pod_ips=("10.214.0.7",),
        termination_log=f"/var/lib/play/pods/{UID}/containers/app/0badcafe",
    )
    empty_dir = f"/var/lib/play/pods/{UID}/volumes/kubernetes.io~empty-dir/data"
    want = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="app", attempt=2),
        image=api_pb2.ImageSpec(image="sha256:" + "b" * 64, user_specified_image="registry.example/app:2"),
        command=["/app", "--name=web", "$(POD_NAME)"],
        args=["--mem=128", "$(UNDEFINED)"],
        working_dir="/srv",
        envs=[
            api_pb2.KeyValue(key="POD_NAME", value="web"),
            api_pb2.KeyValue(key="POD_IP", value="10.214.0.7"),
            api_pb2.KeyValue(key="NODE", value="node1"),
            api_pb2.KeyValue(key="APP", value="web"),
            api_pb2.KeyValue(key="MEM_MI", value="128"),
            api_pb2.KeyValue(key="CPU_M", value="250"),
            api_pb2.KeyValue(key="URL", value="http://10.214.0.7:8080/$(MISSING)"),
        ],
        mounts=[
            api_pb2.Mount(container_path="/data", host_path=empty_dir, readonly=True),
            api_pb2.Mount(
                container_path="/host",
                host_path="/srv/data/sub",
                propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER,
            ),
            api_pb2.Mount(container_path="/etc/hosts", host_path=f"/var/lib/play/pods/{UID}/etc-hosts"),
            api_pb2.Mount(
                container_path="/dev/termination-log",
                host_path=f"/var/lib/play/pods/{UID}/containers/app/0badcafe",
            ),
        ],
        labels={
            "io.kubernetes.pod.name": "web",
            "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.pod.uid": UID,
            "io.kubernetes.container.name": "app",
        },
        annotations={
            "io.kubernetes.container.hash": translate.container_hash(app),
            "io.kubernetes.container.restartCount": "2",
            "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
            "io.kubernetes.container.terminationMessagePolicy": "File",
            "io.kubernetes.pod.terminationGracePeriod": "30",
            "io.kubernetes.container.preStopHandler": '{"exec":{"command":["sleep","1"]}}',
            "io.kubernetes.container.ports": '[{"name":"http","hostPort":18080,"containerPort":8080,"protocol":"TCP"},'
            '{"containerPort":9090,"protocol":"UDP"}]',
        },
        log_path="app/2.log",
        stdin=True,
        tty=True,
        linux=api_pb2.LinuxContainerConfig(
            resources=api_pb2.LinuxContainerResources(
                cpu_period=100000,
                cpu_quota=50000,
                cpu_shares=256,
                memory_limit_in_bytes=128 * 2**20,
                # burstable: 1000 - 1000 * 64Mi / 8Gi
                oom_score_adj=993,
                hugepage_limits=[
                    api_pb2.HugepageLimit(page_size="2MB", limit=0),
                    api_pb2.HugepageLimit(page_size="1GB", limit=0),
                ],
                memory_swap_limit_in_bytes=128 * 2**20,
            ),
            security_context=api_pb2.LinuxContainerSecurityContext(
                capabilities=api_pb2.Capability(add_capabilities=["NET_ADMIN"], drop_capabilities=["ALL"]),
                namespace_options=api_pb2.NamespaceOption(
                    network=api_pb2.POD,
                    pid=api_pb2.CONTAINER,
                    ipc=api_pb2.POD,
                    userns_options=api_pb2.UserNamespace(mode=api_pb2.NODE),
                ),
                run_as_user=api_pb2.Int64Value(value=1001),
                run_as_group=api_pb2.Int64Value(value=3000),
                readonly_rootfs=True,
                supplemental_groups=[2000, 4000],
                no_new_privs=True,
                masked_paths=DEFAULT_MASKED_PATHS,
                readonly_paths=DEFAULT_READONLY_PATHS,
                seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.RuntimeDefault),
            ),
        ),
    )
    assert_messages_equal(got, want)


def test_init_container_config_and_image_user() -> None:
    pod = load_pod(WEB)
    init = pod.spec.init_containers[0]
    got = container_config(
        pod,
        init,
        CTX,
        restart_count=0,
        image=ImageFacts("sha256:i", uid=None, username="www"),
        pod_ips=(),
        termination_log=None,
    )
    assert list(got.command) == ["sh", "-c", "echo hello > /data/x"]
    assert got.log_path == "init/0.log"
    # no pod IP yet: no /etc/hosts mount; no termination-log file: no mount for it
    assert [m.container_path for m in got.mounts] == ["/data"]
    sc = got.linux.security_context
    # the pod's runAsUser wins over the image's user; seccomp stays Unconfined without a profile
    assert sc.run_as_user.value == 1000 and sc.run_as_username == ""
    assert sc.seccomp.profile_type == api_pb2.SecurityProfile.Unconfined
    assert not sc.no_new_privs
    res = got.linux.resources
    assert (res.cpu_shares, res.cpu_quota, res.cpu_period, res.memory_limit_in_bytes) == (2, 0, 100000, 0)
    assert res.oom_score_adj == 999  # burstable pod, container without memory request


def test_image_user_fills_in_when_the_pod_names_none() -> None:
    pod = load_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}\n"
    )
    container = pod.spec.containers[0]
    named = container_config(
        pod,
        container,
        CTX,
        restart_count=0,
        image=ImageFacts("r", None, "nobody"),
        pod_ips=(),
        termination_log=None,
    ).linux.security_context
    assert not named.HasField("run_as_user") and named.run_as_username == "nobody"
    numeric = container_config(
        pod, container, CTX, restart_count=0, image=ImageFacts("r", 0, ""), pod_ips=(), termination_log=None
    ).linux.security_context
    assert numeric.HasField("run_as_user") and numeric.run_as_user.value == 0


def test_best_effort_pod_on_host_namespaces() -> None:
    pod = load_pod(
        """
apiVersion: v1
kind: Pod
metadata: {name: host}
spec:
  hostNetwork: true
  hostPID: true
  hostIPC: true
  containers:
  - name: c
    image: i
    ports: [{containerPort: 8081}]
    securityContext: {privileged: true, procMount: Unmasked}
"""
    )
    config = sandbox_config(pod, CTX)
    assert config.hostname == ""  # host network: the node's hostname
    assert config.linux.cgroup_parent == f"/kubepods/besteffort/pod{UID}"
    ns = config.linux.security_context.namespace_options
    assert (ns.network, ns.pid, ns.ipc) == (api_pb2.NODE, api_pb2.NODE, api_pb2.NODE)
    assert config.linux.security_context.privileged
    assert list(config.port_mappings) == [
        api_pb2.PortMapping(protocol=api_pb2.TCP, container_port=8081, host_port=8081)
    ]
    # ClusterFirst on the host network falls back to the node's resolv.conf
    assert list(config.dns_config.servers) == ["192.0.2.53", "192.0.2.54"]
    c = container_config(
        pod,
        pod.spec.containers[0],
        CTX,
        restart_count=0,
        image=ImageFacts("r", 0, ""),
        pod_ips=("192.0.2.1",),
        termination_log=None,
    )
    assert c.linux.resources.oom_score_adj == 1000
    assert c.linux.security_context.privileged
    assert (
        list(c.linux.security_context.masked_paths) == []
        and list(c.linux.security_context.readonly_paths) == []
    )


def test_guaranteed_pod_and_systemd_cgroup_parent() -> None:
    pod = load_pod(
        """
apiVersion: v1
kind: Pod
metadata: {name: g}
spec:
  containers:
  - name: c
    image: i
    resources: {limits: {cpu: "2", memory: 1Gi}}
"""
    )
    assert translate.cgroup_parent(pod, CTX) == f"/kubepods/pod{UID}"
    systemd = translate.PlayContext(node=CTX.node, root_dir=CTX.root_dir, cgroup_driver="systemd")
    assert translate.cgroup_parent(pod, systemd) == f"/kubepods.slice/kubepods-pod{UID}.slice"
    c = container_config(
        pod,
        pod.spec.containers[0],
        CTX,
        restart_count=0,
        image=ImageFacts("r", 0, ""),
        pod_ips=(),
        termination_log=None,
    )
    res = c.linux.resources
    assert (res.cpu_shares, res.cpu_quota, res.memory_limit_in_bytes, res.oom_score_adj) == (
        2048,
        200000,
        2**30,
        -997,
    )


def test_unsupported_things_fail_with_their_path() -> None:
    base = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n"
    facts = ImageFacts("r", 0, "")

    def translate_container(text: str) -> None:
        pod = load_pod(text)
        container_config(
            pod, pod.spec.containers[0], CTX, restart_count=0, image=facts, pod_ips=(), termination_log=None
        )

    with pytest.raises(InvalidArgument, match=r"spec.containers\[0\].envFrom: not supported"):
        translate_container(base + "    envFrom: [{configMapRef: {name: x}}]\n")
    with pytest.raises(InvalidArgument, match=r"spec.containers\[0\].volumeMounts\[0\].name: Not found"):
        translate_container(base + "    volumeMounts: [{name: nope, mountPath: /x}]\n")
    with pytest.raises(InvalidArgument, match=r"spec.volumes\[0\]: volume type config_map is not supported"):
        translate_container(
            base
            + "    volumeMounts: [{name: v, mountPath: /x}]\n  volumes: [{name: v, configMap: {name: x}}]\n"
        )
    with pytest.raises(InvalidArgument, match="Bidirectional requires a privileged container"):
        translate_container(
            base
            + "    volumeMounts: [{name: v, mountPath: /x, mountPropagation: Bidirectional}]\n  volumes: [{name: v}]\n"
        )
    with pytest.raises(InvalidArgument, match="runAsNonRoot and image will run as root"):
        translate_container(base + "    securityContext: {runAsNonRoot: true}\n")
    with pytest.raises(InvalidArgument, match="spec.hostUsers"):
        sandbox_config(load_pod(base + "  hostUsers: false\n"), CTX)


def test_etc_hosts_content() -> None:
    pod = load_pod(WEB)
    text = translate.etc_hosts_content(pod, CTX, ("10.214.0.7",))
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert text.endswith("10.214.0.7\tfront.svc1.shop.svc.cluster.local\tfront\n")
