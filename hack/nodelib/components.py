"""The configuration files and command lines of the node's components.

Every component runs in the node's network namespace; each listens on the node's address or
on the namespace's own loopback (which is nobody else's), so their ports never meet the host's.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nodelib.layout import API_PORT, KUBELET_PORT, REGISTRY_PORT, Layout, Slot
from nodelib.pki import Pki

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CRI_CONFIG = REPO / "conf" / "cri-py.yaml"
MIRRORED_HOSTS = ("docker.io", "registry.k8s.io", "gcr.io", "quay.io")
REGISTRY = f"127.0.0.1:{REGISTRY_PORT}"
ETCD_CLIENT = "http://127.0.0.1:2379"
ETCD_PEER = "http://127.0.0.1:2380"

# What kubelet's container manager insists on (pkg/kubelet/cm: setupKernelTunables). Without
# protectKernelDefaults it writes them host-wide; with it, it refuses to start where they differ.
# kubelet gets a mount namespace of its own in which the ones this host has otherwise read as
# kubelet wants them: nothing on the host changes.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1000000,
    "kernel/keys/root_maxbytes": 25000000,
}


# where kubelet's mount namespace binds directories of the node's own
KUBELET_MOUNT_POINTS = (Path("/var/log"), Path("/var/lib/kubelet"))


@dataclass
class Component:
    name: str
    argv: list[str]
    # a shell script run (in a mount namespace of the component's own) before exec'ing argv
    mount_setup: list[str] = field(default_factory=list)


def cri_config(layout: Layout, slot: Slot) -> dict[str, Any]:
    """The default config (conf/cri-py.yaml) with the node's own paths and registry."""
    config: dict[str, Any] = yaml.safe_load(DEFAULT_CRI_CONFIG.read_text())
    cni = layout.cri_dir / "cni"
    config.update(
        listen=f"unix://{layout.cri_socket}",
        root=str(layout.cri_dir / "root"),
        run_dir=str(layout.cri_dir / "run"),
        cgroup_parent=f"{slot.cgroup_root}/cri-py",
        # the node's images come from its own registry only: the host's containers files
        # (registries.conf, auth.json, policy.json) are not the node's
        registries_conf="",
        auth_file="",
        signature_policy="",
        registries={
            REGISTRY: {"insecure": True},
            **{host: {"mirrors": [f"http://{REGISTRY}"], "mirror_only": True} for host in MIRRORED_HOSTS},
        },
    )
    config["cni"] = {
        **config.get("cni", {}),
        "conf_dir": str(layout.cni_conf_dir),
        "cache_dir": str(cni / "cache"),
    }
    return config


def cni_conflist(layout: Layout, slot: Slot) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": f"cri-py-{slot.name}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": slot.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": slot.pod_subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cri_dir / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def write_cri_files(layout: Layout, slot: Slot) -> None:
    layout.cri_dir.mkdir(parents=True, exist_ok=True)
    layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    layout.cri_config.write_text(yaml.safe_dump(cri_config(layout, slot)))
    (layout.cni_conf_dir / "10-cri-py-node.conflist").write_text(
        json.dumps(cni_conflist(layout, slot), indent=2)
    )


def registry(layout: Layout) -> Component:
    return Component(
        "registry",
        [sys.executable, str(REPO / "hack" / "test-registry"), "--dir", str(layout.registry_dir),
         "--port", str(REGISTRY_PORT)],
    )  # fmt: skip


def cri_py(layout: Layout) -> Component:
    return Component(
        "cri-py", [sys.executable, "-m", "cri_py.cli", "serve", "--config", str(layout.cri_config)]
    )


def etcd(layout: Layout, bin_dir: Path) -> Component:
    return Component(
        "etcd",
        [str(bin_dir / "etcd"), "--name", "node", "--data-dir", str(layout.etcd_dir),
         "--listen-client-urls", ETCD_CLIENT, "--advertise-client-urls", ETCD_CLIENT,
         "--listen-peer-urls", ETCD_PEER, "--initial-advertise-peer-urls", ETCD_PEER,
         "--initial-cluster", f"node={ETCD_PEER}", "--log-level", "warn"],
    )  # fmt: skip


def kube_apiserver(layout: Layout, slot: Slot, pki: Pki, bin_dir: Path) -> Component:
    return Component(
        "kube-apiserver",
        [str(bin_dir / "kube-apiserver"),
         f"--advertise-address={slot.node_address}", f"--bind-address={slot.node_address}",
         f"--secure-port={API_PORT}", f"--etcd-servers={ETCD_CLIENT}",
         f"--service-cluster-ip-range={slot.service_range}",
         f"--tls-cert-file={pki.apiserver.cert}", f"--tls-private-key-file={pki.apiserver.key}",
         f"--client-ca-file={pki.ca.cert}",
         f"--kubelet-client-certificate={pki.apiserver_kubelet_client.cert}",
         f"--kubelet-client-key={pki.apiserver_kubelet_client.key}",
         f"--kubelet-certificate-authority={pki.ca.cert}",
         "--kubelet-preferred-address-types=InternalIP",
         "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
         f"--service-account-key-file={pki.service_account_pub}",
         f"--service-account-signing-key-file={pki.service_account_key}",
         "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
         "--allow-privileged=true", "--profiling=false",
         f"--cert-dir={layout.pki / 'apiserver-generated'}", "--v=1"],
    )  # fmt: skip


def kube_controller_manager(layout: Layout, pki: Pki, bin_dir: Path) -> Component:
    kubeconfig = layout.kubeconfig("controller-manager")
    return Component(
        "kube-controller-manager",
        [str(bin_dir / "kube-controller-manager"),
         f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
         f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
         "--leader-elect=false", "--use-service-account-credentials=true",
         f"--service-account-private-key-file={pki.service_account_key}",
         f"--root-ca-file={pki.ca.cert}",
         f"--cluster-signing-cert-file={pki.ca.cert}", f"--cluster-signing-key-file={pki.ca.key}",
         f"--cert-dir={layout.pki / 'controller-manager-generated'}", "--v=1"],
    )  # fmt: skip


def kube_scheduler(layout: Layout, bin_dir: Path) -> Component:
    kubeconfig = layout.kubeconfig("scheduler")
    return Component(
        "kube-scheduler",
        [str(bin_dir / "kube-scheduler"),
         f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
         f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
         "--leader-elect=false", f"--cert-dir={layout.pki / 'scheduler-generated'}", "--v=1"],
    )  # fmt: skip


def feature_gates(spec: str) -> dict[str, bool]:
    """`NODE_FEATURE_GATES=EventedPLEG=true,Other=false` as kubelet's featureGates."""
    gates: dict[str, bool] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        if value.lower() not in ("true", "false") or not name:
            raise ValueError(f"NODE_FEATURE_GATES: {item!r} is not Name=true|false")
        gates[name] = value.lower() == "true"
    return gates


def kubelet_config(layout: Layout, slot: Slot, pki: Pki, cgroup_driver: str, endpoint: str) -> dict[str, Any]:
    config = _kubelet_config(layout, slot, pki, cgroup_driver, endpoint)
    gates = feature_gates(os.environ.get("NODE_FEATURE_GATES", ""))
    if gates:
        config["featureGates"] = gates
    return config


def _kubelet_config(layout: Layout, slot: Slot, pki: Pki, cgroup_driver: str, endpoint: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": slot.node_address,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca.cert)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki.kubelet_serving.cert),
        "tlsPrivateKeyFile": str(pki.kubelet_serving.key),
        "containerRuntimeEndpoint": endpoint,
        "imageServiceEndpoint": endpoint,
        # kubelet takes the driver from cri-py's RuntimeConfig; this says the same
        "cgroupDriver": cgroup_driver,
        "cgroupRoot": slot.cgroup_root,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "failCgroupV1": False,
        "podLogsDir": str(layout.pod_logs),
        # flexvolume drivers (none): otherwise kubelet makes /usr/libexec/kubernetes/... on the host
        "volumePluginDir": str(layout.kubelet_dir / "volume-plugins"),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "registerNode": True,
    }


def write_kubelet_config(layout: Layout, slot: Slot, pki: Pki, cgroup_driver: str, endpoint: str) -> None:
    layout.kubelet_config.write_text(
        yaml.safe_dump(kubelet_config(layout, slot, pki, cgroup_driver, endpoint))
    )


def kubelet_mount_setup(layout: Layout) -> list[str]:
    """Binds for kubelet's own mount namespace: the kernel tunables it insists on (read-only
    copies holding the values it wants, where this host differs), /var/log, where it makes its
    /var/log/containers links, and /var/lib/kubelet (the device-plugin socket). The mount points
    must exist on the host (KUBELET_MOUNT_POINTS)."""
    layout.sysctl_dir.mkdir(parents=True, exist_ok=True)
    layout.kubelet_var_log.mkdir(parents=True, exist_ok=True)
    layout.kubelet_var_lib.mkdir(parents=True, exist_ok=True)
    script = []
    for key, wanted in KUBELET_SYSCTLS.items():
        proc_file = Path("/proc/sys") / key
        try:
            current = int(proc_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if current == wanted:
            continue
        copy = layout.sysctl_dir / key.replace("/", ".")
        copy.write_text(f"{wanted}\n")
        script.append(f"mount --bind -o ro {copy} {proc_file}")
    script.append(f"mount --bind {layout.kubelet_var_log} /var/log")
    script.append(f"mount --bind {layout.kubelet_var_lib} /var/lib/kubelet")
    return script


def kubelet(layout: Layout, slot: Slot, bin_dir: Path) -> Component:
    return Component(
        "kubelet",
        [str(bin_dir / "kubelet"), f"--config={layout.kubelet_config}",
         f"--kubeconfig={layout.kubeconfig('kubelet')}", f"--root-dir={layout.kubelet_dir}",
         f"--cert-dir={layout.pki / 'kubelet-generated'}", f"--hostname-override={slot.node_name}",
         f"--node-ip={slot.node_address}", "--v=2"],
        mount_setup=kubelet_mount_setup(layout),
    )  # fmt: skip
