"""Start a real cri-py daemon with its own config, directories and socket, and check it leaves nothing.

Used by the `cri` fixtures in conftest.py; importable by benchmarks and other tests too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml

from cri_py.api import api_pb2, api_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
CRI_PY = [sys.executable, "-m", "cri_py.cli"]

# The suite's own pod network: never the default 10.88.0.0/16 / cni0.
E2E_BRIDGE = "cripye2e0"
E2E_SUBNET = "10.214.0.0/24"


def network_name(workdir: Path) -> str:
    """Each daemon's network has its own name, so its portmap rules are told apart from others'."""
    return f"cri-py-e2e-{workdir.name.removeprefix('cripy-')}"


def e2e_conflist(workdir: Path) -> dict[str, Any]:
    ipam_dir = workdir / "cni" / "ipam"
    return {
        "cniVersion": "1.0.0",
        "name": network_name(workdir),
        "plugins": [
            {
                "type": "bridge",
                "bridge": E2E_BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": E2E_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


@dataclass
class Daemon:
    """A running cri-py under test."""

    workdir: Path
    config_path: Path
    config: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    channel: grpc.Channel | None = None
    runtime: Any = None
    image: Any = None
    starts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # added to the daemon's environment at each start (CRI_PY_FAILPOINTS, say)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return Path(self.config["listen"].removeprefix("unix://"))

    @property
    def root(self) -> Path:
        return Path(self.config["root"])

    @property
    def run_dir(self) -> Path:
        return Path(self.config["run_dir"])

    @property
    def log_path(self) -> Path:
        return self.workdir / "daemon.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the daemon owns it until it exits
        self.proc = subprocess.Popen(
            [*CRI_PY, "serve", "--config", str(self.config_path)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        self.channel = grpc.insecure_channel(
            f"unix://{self.socket}",
            options=[("grpc.max_receive_message_length", 80 * 1024 * 1024)],
        )
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.image = api_pb2_grpc.ImageServiceStub(self.channel)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cri-py exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            try:
                self.runtime.Version(api_pb2.VersionRequest(), timeout=1)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cri-py did not come up:\n{self.log_text()[-4000:]}") from None
                time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Stop the daemon process (containers keep running); returns its exit status."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is None:
            return 0
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def remove_everything(self) -> None:
        """Stop and remove every pod and container through the CRI (the test's own cleanup)."""
        assert self.runtime is not None
        with contextlib.suppress(grpc.RpcError):
            for ctr in self.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=30).containers:
                with contextlib.suppress(grpc.RpcError):
                    self.runtime.RemoveContainer(
                        api_pb2.RemoveContainerRequest(container_id=ctr.id), timeout=60
                    )
        with contextlib.suppress(grpc.RpcError):
            for pod in self.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items:
                with contextlib.suppress(grpc.RpcError):
                    self.runtime.StopPodSandbox(
                        api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=60
                    )
                with contextlib.suppress(grpc.RpcError):
                    self.runtime.RemovePodSandbox(
                        api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=60
                    )


def make_config(workdir: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    cni_dir = workdir / "cni"
    conf_dir = cni_dir / "net.d"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "10-e2e.conflist").write_text(json.dumps(e2e_conflist(workdir)))
    config: dict[str, Any] = {
        "listen": f"unix://{workdir}/cri.sock",
        "root": str(workdir / "root"),
        "run_dir": str(workdir / "run"),
        "log_level": "debug",
        "cgroup_parent": f"/cri-py-e2e-{workdir.name}",
        "cni": {"conf_dir": str(conf_dir), "bin_dirs": ["/usr/lib/cni"], "cache_dir": str(cni_dir / "cache")},
        "streaming": {"address": "127.0.0.1", "port": 0},
        # the host's /etc/containers files (registries.conf, auth.json, policy.json) stay out
        "registries_conf": "",
        "auth_file": "",
        "signature_policy": "",
    }
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def leftovers(workdir: Path, networks: set[str] | None = None) -> list[str]:
    """Kernel objects and processes that still belong to the daemon's directories."""
    found: list[str] = []
    prefix = str(workdir)
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            mountpoint = line.split()[4]
            if mountpoint.startswith(prefix):
                found.append(f"mount {mountpoint}")
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if prefix in cmdline:
            found.append(f"process {pid}: {cmdline[:200]}")
    return found + network_leftovers(workdir, networks)


def conf_network_names(conf_dir: Path) -> set[str]:
    """The names of the CNI networks configured in a conf dir."""
    names: set[str] = set()
    for conf in conf_dir.glob("*.conf*") if conf_dir.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            names.add(str(json.loads(conf.read_text()).get("name", "")))
    return names - {""}


def ip_allocations(workdir: Path) -> list[str]:
    """The addresses host-local IPAM holds for this daemon's pods (one file per address)."""
    ipam = workdir / "cni" / "ipam"
    return sorted(
        p.name
        for p in ipam.rglob("*")
        if p.is_file() and p.name != "lock" and not p.name.startswith("last_reserved_ip")
    )


def network_leftovers(workdir: Path, networks: set[str] | None = None) -> list[str]:
    """Host-local IP allocations and the iptables rules (portmap, masquerade) of this daemon's
    networks (a DEL removes them, and the pod's veth with them); other daemons' pods on a
    shared bridge are not ours to count."""
    found = [f"IP allocation {address}" for address in ip_allocations(workdir)]
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    # CNI plugins put the network name in rule comments, which iptables-save prints escaped
    quoted = {f'\\"{name}\\"' for name in {network_name(workdir), *(networks or set())}}
    found += [f"iptables {line}" for line in rules.splitlines() if any(q in line for q in quoted)]
    return found


SHARED_PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK")


def _nat(*args: str) -> None:
    subprocess.run(["iptables", "-w", "-t", "nat", *args], check=False, capture_output=True)


def portmap_chains_exist() -> bool:
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=False).stdout
    return "CNI-HOSTPORT-DNAT" in nat


def drop_shared_portmap_chains() -> None:
    """The portmap plugin's shared chains and their jumps (it creates them and never removes them);
    called only by whoever saw them absent before its tests ran."""
    _nat("-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT")
    _nat("-D", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT")
    _nat("-D", "POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade",
         "-j", "CNI-HOSTPORT-MASQ")  # fmt: skip
    for chain in SHARED_PORTMAP_CHAINS:
        _nat("-F", chain)
        _nat("-X", chain)


def remove_cgroup_parent(name: str) -> list[str]:
    """Remove the test's cgroup parent in every hierarchy; report child cgroups left inside it."""
    found: list[str] = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / name
        if not parent.is_dir():
            continue
        children = sorted(
            (p for p in parent.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        )
        found += [f"cgroup {child}" for child in children]
        for cgroup in [*children, parent]:
            with contextlib.suppress(OSError):
                cgroup.rmdir()
    return found


def remove_rules_mentioning(needles: set[str]) -> None:
    """Delete every iptables rule whose line contains one of `needles`, then the per-pod CNI
    chains that are left empty and unreferenced."""
    for table in ("nat", "filter"):
        dump = subprocess.run(
            ["iptables-save", "-t", table], capture_output=True, text=True, check=False
        ).stdout
        for line in dump.splitlines():
            if line.startswith("-A ") and any(n in line for n in needles):
                subprocess.run(["iptables", "-w", "-t", table, "-D", *shlex.split(line)[1:]], check=False)
        dump = subprocess.run(
            ["iptables-save", "-t", table], capture_output=True, text=True, check=False
        ).stdout
        chains = {c[1:].split()[0] for c in dump.splitlines() if c.startswith(":CNI-")}
        for chain in chains - set(SHARED_PORTMAP_CHAINS):
            if f"-A {chain} " not in dump and f"-j {chain}" not in dump:
                subprocess.run(["iptables", "-w", "-t", table, "-X", chain], check=False)


def force_clean(workdir: Path, networks: set[str] | None = None) -> None:
    """Last resort after a failed test: kill processes, unmount, drop rules, so the next test
    starts clean."""
    for entry in leftovers(workdir):
        if entry.startswith("process "):
            pid = int(entry.split()[1].rstrip(":"))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    mounts = [e.split(" ", 1)[1] for e in leftovers(workdir) if e.startswith("mount ")]
    for mountpoint in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], check=False, capture_output=True)
    names = {network_name(workdir), *(networks or set())}
    remove_rules_mentioning({f'\\"{name}\\"' for name in names})


@contextlib.contextmanager
def running_daemon(
    overrides: dict[str, Any] | None = None, base: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[Daemon]:
    workdir = Path(tempfile.mkdtemp(prefix="cripy-", dir=base or "/tmp"))
    config = make_config(workdir, overrides)
    config_path = workdir / "cri-py.yaml"
    config_path.write_text(yaml.safe_dump(config))
    daemon = Daemon(workdir=workdir, config_path=config_path, config=config, env=dict(env or {}))
    conf_dir = Path(config["cni"]["conf_dir"])
    networks = conf_network_names(conf_dir)
    try:
        daemon.start()
        yield daemon
    finally:
        networks |= conf_network_names(conf_dir)  # also confs the test wrote meanwhile
        problems: list[str] = []
        try:
            if daemon.proc is None or daemon.proc.poll() is not None:
                daemon.env.pop("CRI_PY_FAILPOINTS", None)  # cleaning up must not hit one again
                with contextlib.suppress(RuntimeError):
                    daemon.start()
            if daemon.proc is not None:
                daemon.remove_everything()
        finally:
            daemon.stop()
            time.sleep(0.05)
            problems = leftovers(workdir, networks)
            if problems:
                force_clean(workdir, networks)
            problems += remove_cgroup_parent(f"cri-py-e2e-{workdir.name}")
            # the daemon's own account of what went wrong is the evidence for a leftover
            warnings = [
                line
                for line in daemon.log_text().splitlines()
                if "level=warning" in line or "level=error" in line
            ]
            shutil.rmtree(workdir, ignore_errors=True)
        assert not problems, (
            "the daemon left things behind:\n"
            + "\n".join(problems)
            + "\nits warnings:\n"
            + "\n".join(warnings[-40:])
        )
