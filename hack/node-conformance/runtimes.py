"""The container runtimes the node runs kubelet on: cri-py, or containerd 2.x as the peer.

Both run inside the node (nodens.py), so their default /run paths are the node's own; each
gets the same CNI network (bridge cripync0, 10.216.0.0/24, portmap), the same registry mirrors
(every upstream host of the suite's images served by the node's local registry) and runc.
`stop()` removes every pod through the CRI first, so nothing of theirs outlives the runtime.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from nodens import BRIDGE, POD_SUBNET, join_cgroup

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from cri_py.api import api_pb2, api_pb2_grpc  # noqa: E402

RUNC = "/usr/sbin/runc"
CNI_BIN = "/usr/lib/cni"
# the runtime's cgroup in the node's view, named to kubelet as --runtime-cgroups
RUNTIME_CGROUP = "/runtime"
# the RuntimeClass handler the suite expects every node to have (runc here, as in its CI)
TEST_HANDLER = "test-handler"


def conflist() -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "cripy-nconf",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


class RuntimeError_(Exception):
    pass


@dataclass
class Runtime:
    """One runtime process in the node, reached at `endpoint`."""

    name: str
    workdir: Path
    hierarchies: list[str]
    registry: str  # 127.0.0.1:PORT
    upstream_hosts: list[str]
    proc: subprocess.Popen[bytes] | None = None

    endpoint = ""
    pid_file = ""
    process_name = ""

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def write_config(self) -> None:
        raise NotImplementedError

    def start(self, timeout: float = 120.0) -> None:
        self.write_config()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env=self.environment(),
                start_new_session=True,
            )
        join_cgroup(self.proc.pid, RUNTIME_CGROUP, self.hierarchies)
        Path(self.pid_file).parent.mkdir(parents=True, exist_ok=True)
        Path(self.pid_file).write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError_(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with grpc.insecure_channel(self.endpoint) as channel:
                    api_pb2_grpc.RuntimeServiceStub(channel).Version(api_pb2.VersionRequest(), timeout=2)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise RuntimeError_(f"{self.name} did not answer on {self.endpoint}") from None
                time.sleep(0.2)

    def remove_pods(self) -> list[str]:
        """Stop and remove every pod through the CRI; returns what could not be removed."""
        failed: list[str] = []
        with grpc.insecure_channel(self.endpoint) as channel:
            runtime = api_pb2_grpc.RuntimeServiceStub(channel)
            try:
                pods = runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items
            except grpc.RpcError as err:
                return [f"ListPodSandbox: {err}"]
            for pod in pods:
                for call, request in (
                    (runtime.StopPodSandbox, api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id)),
                    (runtime.RemovePodSandbox, api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id)),
                ):
                    try:
                        call(request, timeout=120)
                    except grpc.RpcError as err:
                        failed.append(f"{pod.metadata.namespace}/{pod.metadata.name}: {err.details()}")
                        break
        return failed

    def stop(self) -> list[str]:
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            problems = self.remove_pods()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append(f"{self.name} ignored SIGTERM for 30 s")
        return problems


class CriPy(Runtime):
    endpoint = "unix:///run/cri-py/cri-py.sock"
    pid_file = "/run/cri-py/cri-py.pid"
    process_name = "cri-py"

    @property
    def config_path(self) -> Path:
        return self.workdir / "cri-py.yaml"

    def write_config(self) -> None:
        conf_dir = self.workdir / "cni" / "net.d"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "10-cripy-nconf.conflist").write_text(json.dumps(conflist(), indent=1))
        registries: dict[str, Any] = {
            host: {"mirrors": [f"http://{self.registry}"], "mirror_only": True}
            for host in self.upstream_hosts
        }
        registries[self.registry] = {"insecure": True}
        config = {
            "listen": self.endpoint,
            "root": str(self.workdir / "root"),
            "run_dir": "/run/cri-py",
            "log_level": "debug",  # every RPC with its duration: what a failing spec asked of it
            "cgroup_driver": "cgroupfs",
            # the handler the suite's RuntimeClass specs name (runtimeclass.PreconfiguredRuntimeClassHandler)
            "runtimes": {"runc": {"path": RUNC}, TEST_HANDLER: {"path": RUNC}},
            "default_runtime": "runc",
            "cni": {
                "conf_dir": str(conf_dir),
                "bin_dirs": [CNI_BIN],
                "cache_dir": str(self.workdir / "cni-cache"),
            },
            "streaming": {"address": "127.0.0.1", "port": 0},
            "registries": registries,
            # kubelet's cAdvisor labels /metrics/cadvisor through it (the node's /run is its own)
            "inspect_socket": "/var/run/crio/crio.sock",
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def command(self) -> list[str]:
        return [sys.executable, "-m", "cri_py.cli", "serve", "--config", str(self.config_path)]


class Containerd(Runtime):
    endpoint = "unix:///run/containerd/containerd.sock"
    pid_file = "/run/containerd/containerd.pid"
    process_name = "containerd"
    bin_dir: Path = Path()

    def environment(self) -> dict[str, str]:
        # the shim (containerd-shim-runc-v2) is found on PATH
        env = dict(os.environ)
        env["PATH"] = f"{self.bin_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        return env

    def write_config(self) -> None:
        root = self.workdir
        conf_dir = root / "cni" / "net.d"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "10-cripy-nconf.conflist").write_text(json.dumps(conflist(), indent=1))
        certs = root / "certs.d"
        for host in [*self.upstream_hosts, self.registry]:
            directory = certs / host
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "hosts.toml").write_text(
                f'server = "http://{self.registry}"\n\n'
                f'[host."http://{self.registry}"]\n'
                '  capabilities = ["pull", "resolve"]\n'
                "  skip_verify = true\n"
            )
        images = "plugins.'io.containerd.cri.v1.images'"
        runtime = "plugins.'io.containerd.cri.v1.runtime'"
        (root / "config.toml").write_text(
            f"""version = 3
root = '{root}/root'
state = '/run/containerd'
imports = []

[grpc]
  address = '/run/containerd/containerd.sock'

[plugins.'io.containerd.internal.v1.opt']
  path = '{root}/opt'

[{images}]
  snapshotter = 'overlayfs'
[{images}.pinned_images]
  sandbox = 'registry.k8s.io/pause:3.10.2'
[{images}.registry]
  config_path = '{certs}'

[{runtime}]
  restrict_oom_score_adj = true
  enable_cdi = false
[{runtime}.cni]
  bin_dirs = ['{CNI_BIN}']
  conf_dir = '{conf_dir}'
[{runtime}.containerd]
  default_runtime_name = 'runc'
[{runtime}.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'
[{runtime}.containerd.runtimes.runc.options]
  BinaryName = '{RUNC}'
  SystemdCgroup = false
[{runtime}.containerd.runtimes.{TEST_HANDLER}]
  runtime_type = 'io.containerd.runc.v2'
[{runtime}.containerd.runtimes.{TEST_HANDLER}.options]
  BinaryName = '{RUNC}'
  SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'

[plugins.'io.containerd.nri.v1.nri']
  disable = true
"""
        )

    def command(self) -> list[str]:
        return [str(self.bin_dir / "containerd"), "--config", str(self.workdir / "config.toml")]

    def version(self) -> str:
        out = subprocess.run([str(self.bin_dir / "containerd"), "--version"], capture_output=True, text=True)
        return out.stdout.strip()


def containerd_bin_dir() -> Path:
    """containerd 2.x, built by the peers' hack/peers/build when absent."""
    build = REPO / "hack" / "peers" / "build"
    subprocess.run([str(build), "containerd"], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run([str(build), "--bin-dir", "containerd"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def make(kind: str, workdir: Path, hierarchies: list[str], registry: str, hosts: list[str]) -> Runtime:
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "cri-py":
        return CriPy("cri-py", workdir, hierarchies, registry, hosts)
    if kind == "containerd":
        runtime = Containerd("containerd", workdir, hierarchies, registry, hosts)
        runtime.bin_dir = containerd_bin_dir()
        return runtime
    raise RuntimeError_(f"unknown runtime {kind!r}")


def cleanup_dir(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
