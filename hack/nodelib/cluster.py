"""Bring a one-node cluster up, report on it, restart its parts, take it down without a trace."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from nodelib import cgroups, components, network, pki, procs, runtimes
from nodelib.components import REPO, Component
from nodelib.layout import REGISTRY_PORT, Layout, NodeState, Slot
from nodelib.network import NodeError, in_netns, run

K8S_BUILD = REPO / "hack" / "k8s" / "build"
# start order; down stops them in reverse
COMPONENTS = (
    "registry",
    "runtime",  # cri-py, or containerd in its place
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
)


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        if time.monotonic() > deadline:
            raise NodeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def build_binaries() -> Path:
    """The Kubernetes binaries (hack/k8s/build is a no-op when they are cached)."""
    subprocess.run([str(K8S_BUILD)], check=True, stdout=sys.stderr)
    out = subprocess.run([str(K8S_BUILD), "--bin-dir"], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


class Cluster:
    def __init__(self, directory: Path) -> None:
        self.layout = Layout(directory)

    # ---- state -------------------------------------------------------------------------------

    @property
    def state(self) -> NodeState | None:
        return NodeState.load(self.layout)

    @property
    def slot(self) -> Slot:
        state = self.state
        if state is None:
            raise NodeError(f"no node in {self.layout.dir} (hack/node up)")
        return Slot(state.slot)

    @property
    def bin_dir(self) -> Path:
        state = self.state
        if state is None:
            raise NodeError(f"no node in {self.layout.dir}")
        return Path(state.bin_dir)

    @property
    def kubeconfig(self) -> Path:
        return self.layout.admin_kubeconfig

    @property
    def runtime(self) -> str:
        state = self.state
        return state.runtime if state else "cri-py"

    @property
    def runtime_socket(self) -> Path:
        return runtimes.socket(self.layout, self.runtime)

    def running(self) -> dict[str, int | None]:
        names = [self.runtime if name == "runtime" else name for name in COMPONENTS]
        return {name: procs.pid_of(self.layout, name) for name in names}

    # ---- the API, as the admin ---------------------------------------------------------------

    def _tls(self) -> ssl.SSLContext:
        d = self.layout.pki
        ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
        ctx.load_cert_chain(str(d / "admin.crt"), str(d / "admin.key"))
        return ctx

    def api(self, path: str, timeout: float = 5.0) -> httpx.Response:
        return httpx.get(self.slot.api_url + path, verify=self._tls(), timeout=timeout)

    def node_ready(self) -> bool:
        response = self.api(f"/api/v1/nodes/{self.slot.node_name}")
        if response.status_code != 200:
            return False
        conditions = response.json().get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # ---- up ----------------------------------------------------------------------------------

    def up(
        self, bin_dir: Path | None = None, log: Callable[[str], None] = print, runtime: str = "cri-py"
    ) -> None:
        alive = [name for name, pid in self.running().items() if pid]
        if alive:
            raise NodeError(
                f"a node already runs in {self.layout.dir} ({', '.join(alive)}); hack/node down first"
            )
        if self.state is not None or network.pinned(self.layout):
            log("node: removing what an earlier node left in this directory")
            self.down(keep_logs=True)
        started = time.monotonic()
        bin_dir = bin_dir or build_binaries()
        layout = self.layout
        layout.dir.mkdir(parents=True, exist_ok=True)
        network.create_netns(layout)
        slot = network.claim_slot(layout)
        NodeState(slot=slot.index, bin_dir=str(bin_dir), runtime=runtime).save(layout)
        try:
            self._up(slot, bin_dir, log)
        except BaseException:
            log(f"node: start-up failed; logs in {layout.logs}")
            self.down(keep_logs=True)
            raise
        log(f"node: {slot.node_name} Ready at {slot.node_address} in {time.monotonic() - started:.0f} s")

    def _up(self, slot: Slot, bin_dir: Path, log: Callable[[str], None]) -> None:
        layout = self.layout
        network.configure(layout, slot)
        certs = pki.generate(layout, slot)
        cgroups.create_root(slot.cgroup_root)
        self._share_kubelet_dir()
        components.write_cri_files(layout, slot)

        self._start(components.registry(layout))
        wait_for(lambda: self.connect_in_node(REGISTRY_PORT), 20, "the registry")
        self.push_images("busybox")
        if self.runtime != "cri-py":
            self.push_upstream_images("node")
        self._start(runtimes.component(layout, slot, self.runtime))
        wait_for(self._cri_ready, 60, self.runtime)
        driver = self.cri_cgroup_driver()
        state = self.state
        assert state is not None
        state.cgroup_driver = driver
        state.save(layout)
        log(f"node: registry and {self.runtime} up (cgroup driver {driver})")

        self._start(components.etcd(layout, bin_dir))
        wait_for(lambda: self.connect_in_node(2379), 30, "etcd")
        self._start(components.kube_apiserver(layout, slot, certs, bin_dir))
        wait_for(lambda: self.api("/readyz").status_code == 200, 90, "kube-apiserver /readyz", 0.3)
        self._start(components.kube_controller_manager(layout, certs, bin_dir))
        self._start(components.kube_scheduler(layout, bin_dir))
        log("node: etcd, kube-apiserver, kube-controller-manager and kube-scheduler up")

        components.write_kubelet_config(layout, slot, certs, driver, f"unix://{self.runtime_socket}")
        self._make_kubelet_mount_points()
        self._start(components.kubelet(layout, slot, bin_dir))
        wait_for(self.node_ready, 120, f"node {slot.node_name} to be Ready", 0.5)
        # pods need the default service account and the cluster CA published to their namespace
        wait_for(
            lambda: self.api("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200,
            60, "the default service account",
        )  # fmt: skip
        wait_for(
            lambda: self.api("/api/v1/namespaces/default/configmaps/kube-root-ca.crt").status_code == 200,
            60, "kube-root-ca.crt",
        )  # fmt: skip

    def _start(self, component: Component) -> None:
        procs.start(self.layout, component)
        time.sleep(0.05)
        if procs.pid_of(self.layout, component.name) is None:
            time.sleep(0.5)
            if procs.pid_of(self.layout, component.name) is None:
                raise NodeError(f"{component.name} exited at start:\n{self.log_tail(component.name)}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        try:
            return self.layout.log(name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _share_kubelet_dir(self) -> None:
        """kubelet mounts volumes (tmpfs for secrets, projected tokens) from its own mount
        namespace: its root dir is a shared mount, so cri-py (on the host's) sees them too."""
        d = str(self.layout.kubelet_dir)
        self.layout.kubelet_dir.mkdir(parents=True, exist_ok=True)
        run(["mount", "--bind", d, d])
        run(["mount", "--make-shared", d])

    def _make_kubelet_mount_points(self) -> None:
        state = self.state
        assert state is not None
        for point in components.KUBELET_MOUNT_POINTS:
            if not point.exists():
                point.mkdir(parents=True)
                state.host_dirs.append(str(point))
        state.save(self.layout)

    def connect_in_node(self, port: int, host: str = "127.0.0.1") -> bool:
        sock = network.socket_in_netns(self.layout)
        try:
            sock.settimeout(1.0)
            sock.connect((host, port))
            return True
        except OSError:
            return False
        finally:
            sock.close()

    def push_images(self, only: str) -> dict[str, str]:
        """Build the named test images (hack/build-test-images) and push them to the node's registry."""
        out = run(
            [*in_netns(self.layout), sys.executable, str(REPO / "hack" / "build-test-images"),
             "--registry", components.REGISTRY, "--only", only],
            timeout=600,
        )  # fmt: skip
        pushed: dict[str, str] = json.loads(out.stdout)
        return pushed

    def push_upstream_images(self, *consumers: str) -> None:
        """Images under upstream names (hack/upstream-images), pushed to the node's registry."""
        run(
            [*in_netns(self.layout), sys.executable, str(REPO / "hack" / "upstream-images" / "push"),
             "--registry", components.REGISTRY, *consumers],
            timeout=600,
        )  # fmt: skip

    def _cri_stub(self) -> tuple[Any, Any]:
        import grpc

        from cri_py.api import api_pb2_grpc

        channel = grpc.insecure_channel(f"unix://{self.runtime_socket}")
        return channel, api_pb2_grpc.RuntimeServiceStub(channel)

    def _cri_ready(self) -> bool:
        from cri_py.api import api_pb2

        if procs.pid_of(self.layout, self.runtime) is None:
            raise NodeError(f"{self.runtime} exited:\n{self.log_tail(self.runtime)}")
        channel, stub = self._cri_stub()
        try:
            stub.Version(api_pb2.VersionRequest(), timeout=1)
            return True
        except Exception:
            return False
        finally:
            channel.close()

    def cri_cgroup_driver(self) -> str:
        from cri_py.api import api_pb2

        channel, stub = self._cri_stub()
        try:
            reply = stub.RuntimeConfig(api_pb2.RuntimeConfigRequest(), timeout=5)
        finally:
            channel.close()
        return "systemd" if reply.linux.cgroup_driver == api_pb2.CgroupDriver.SYSTEMD else "cgroupfs"

    # ---- restarts (for the tests of daemon and kubelet restarts) ---------------------------

    def stop_component(self, name: str, sig: int = signal.SIGTERM) -> bool:
        return procs.stop(self.layout, name, sig)

    def start_component(self, name: str) -> None:
        layout, slot, bin_dir = self.layout, self.slot, self.bin_dir
        if name == self.runtime:
            self._start(runtimes.component(layout, slot, name))
            wait_for(self._cri_ready, 60, name)
        elif name == "kubelet":
            self._start(components.kubelet(layout, slot, bin_dir))
        else:
            raise NodeError(f"restarting {name} is not supported")

    # ---- down --------------------------------------------------------------------------------

    def down(self, keep_logs: bool = True) -> list[str]:
        """Stop everything and remove every kernel object and file the node made; returns what
        would not go (an empty list when the host is as before)."""
        layout = self.layout
        state = self.state
        slot = Slot(state.slot) if state else None
        for name in ("kubelet", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            procs.stop(layout, name, timeout=20)
        self._remove_pods()
        procs.stop(layout, self.runtime, timeout=30)
        runtimes.cleanup(layout, slot, self.runtime)
        procs.stop(layout, "registry", timeout=10)
        # whatever is left: conmons and containers (in the node's cgroups), anything in the netns
        for _attempt in range(3):
            leftover = set(network.processes_in_netns(layout))
            if slot is not None:
                leftover |= cgroups.pids_under(slot.cgroup_root)
            if not leftover:
                break
            procs.kill_all(sorted(leftover))
        self._unmount_all()
        network.remove_netns(layout, slot)
        problems: list[str] = []
        if slot is not None:
            problems += cgroups.remove_root(slot.cgroup_root)
        # another node's kubelet may bind the same mount point in its namespace: removing it
        # would detach that bind, so the empty directory stays until the last node goes
        other_kubelets = procs.running_binaries("kubelet")
        for made in reversed(state.host_dirs if state else []):
            if other_kubelets:
                continue
            try:
                Path(made).rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                problems.append(f"{made}: {exc.strerror}")
        problems += [f"mount {m}" for m in self.mounts()]
        if layout.dir.is_dir():
            for entry in layout.dir.iterdir():
                if keep_logs and entry == layout.logs:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            if not keep_logs:
                shutil.rmtree(layout.dir, ignore_errors=True)
        return problems

    def _remove_pods(self) -> None:
        """Stop and remove every pod through cri-py, so CNI DEL, unmounts and cgroups run as usual."""
        state = self.state
        if state is None or not network.pinned(self.layout):
            return
        runtime = self.runtime
        if procs.pid_of(self.layout, runtime) is None:
            with contextlib.suppress(NodeError, OSError):
                self._start(runtimes.component(self.layout, Slot(state.slot), runtime))
                wait_for(self._cri_ready, 30, runtime)
        if procs.pid_of(self.layout, runtime) is None:
            return
        from cri_py.api import api_pb2

        channel, stub = self._cri_stub()
        try:
            for pod in stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items:
                with contextlib.suppress(Exception):
                    stub.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
                with contextlib.suppress(Exception):
                    stub.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
        except Exception:  # noqa: BLE001 - down goes on with the cruder cleanup below
            pass
        finally:
            channel.close()

    def mounts(self) -> list[str]:
        prefix = str(self.layout.dir)
        found = []
        with open("/proc/self/mountinfo", encoding="utf-8") as info:
            for line in info:
                point = line.split()[4].replace("\\040", " ")
                if point == prefix or point.startswith(prefix + "/"):
                    found.append(point)
        return sorted(set(found), key=lambda p: len(p.split("/")), reverse=True)

    def _unmount_all(self) -> None:
        netns_pin = str(self.layout.netns_pin)
        for _attempt in range(5):
            points = [p for p in self.mounts() if p != netns_pin]
            if not points:
                return
            for point in points:
                if run(["umount", point], check=False).returncode != 0:
                    run(["umount", "-l", point], check=False)

    # ---- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        state = self.state
        out: dict[str, Any] = {"dir": str(self.layout.dir), "up": False}
        if state is None:
            return out
        slot = Slot(state.slot)
        out.update(
            node=slot.node_name, runtime=state.runtime, address=slot.node_address, api=slot.api_url,
            kubeconfig=str(self.kubeconfig), pod_subnet=slot.pod_subnet,
            cgroup_root=slot.cgroup_root, components=self.running(),
        )  # fmt: skip
        with contextlib.suppress(Exception):
            out["ready"] = self.node_ready()
        out["up"] = all(out["components"].values()) and out.get("ready", False)
        return out
