"""`cri-py play` scenarios through a real daemon: shared tmpfs volume, failing init container,
supervision with restarts, back-off and probes in --watch mode."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cri_py.api import api_pb2
from tests.e2e.play_support import REPO, PlayEnv, Watch, play_session, wait_for, with_image, write_manifest
from tests.e2e.registry_fixtures import TestRegistry, registry  # noqa: F401

EXAMPLES = REPO / "conf" / "examples"


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:  # noqa: F811
    return cri_factory(registry.daemon_overrides())


@pytest.fixture
def play_env(cri: Any, tmp_path: Path) -> Iterator[PlayEnv]:
    with play_session(f"unix://{cri.socket}", tmp_path) as env:
        yield env
    cri.remove_everything()


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        return [line for line in mountinfo if line.split()[4].startswith(str(path))]


def test_play_shared_volume_example_on_tmpfs(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    doc = with_image(yaml.safe_load((EXAMPLES / "shared-volume.yaml").read_text()), registry.busybox)
    manifest = write_manifest(tmp_path / "shared.yaml", [doc])
    play_env.play(manifest)

    sandbox = cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items[0]
    uid = sandbox.labels["io.kubernetes.pod.uid"]
    volume = play_env.volume_root / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "shared"
    (mount,) = mounts_under(volume)
    assert " - tmpfs " in mount and "size=16384k" in mount
    reader_log = play_env.pod_logs_dir / f"default_shared-volume_{uid}" / "reader" / "0.log"
    # the reader sees what the writer writes into the shared volume
    wait_for(lambda: reader_log.exists() and "line 2 from shared-volume" in reader_log.read_text())

    play_env.play(manifest, "--down")
    assert mounts_under(play_env.volume_root) == []
    assert play_env.leftovers() == []


def test_play_failing_init_container_fails_the_pod(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "broken"},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {
                    "name": "ok",
                    "image": registry.busybox,
                    "command": ["sh", "-c", "echo all done > /dev/termination-log"],
                },
                {
                    "name": "fails",
                    "image": registry.busybox,
                    "command": ["sh", "-c", "echo no >&2; exit 3"],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                },
                {"name": "never", "image": registry.busybox, "command": ["true"]},
            ],
            "containers": [{"name": "app", "image": registry.busybox, "command": ["sleep", "3600"]}],
        },
    }
    manifest = write_manifest(tmp_path / "broken.yaml", [doc])
    result = play_env.play(manifest, check=False)
    assert result.returncode == 1
    assert "init container 'fails' exited with code 3 (Init:Error)" in result.stdout
    names = [
        c.metadata.name
        for c in cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    ]
    assert sorted(names) == ["fails", "ok"]
    status = play_env.play(manifest, "--status").stdout
    assert "Exited(3, Error)" in status and "Exited(0, Completed)" in status
    assert "NotReady" in status  # a Failed pod's sandbox is stopped
    lines = {name: line for line in status.splitlines() for name in ("ok", "fails") if f" {name} " in line}
    assert lines["ok"].endswith("all done")  # from the termination-log file
    assert lines["fails"].endswith("no")  # FallbackToLogsOnError: the log's tail
    play_env.play(manifest, "--down", "--grace-period", "0")
    assert play_env.leftovers() == []


def test_play_watch_restarts_with_backoff_and_runs_probes(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "watched"},
        "spec": {
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "crashes", "image": registry.busybox, "command": ["sh", "-c", "sleep 0.2; exit 2"]},
                {"name": "completes", "image": registry.busybox, "command": ["true"]},
                {
                    # healthy for a moment, then the liveness probe kills it and it comes back
                    "name": "sickens",
                    "image": registry.busybox,
                    "command": ["sh", "-c", "touch /tmp/healthy; sleep 1; rm /tmp/healthy; exec sleep 3600"],
                    "livenessProbe": {
                        "exec": {"command": ["cat", "/tmp/healthy"]},
                        "periodSeconds": 1,
                        "failureThreshold": 1,
                    },
                    "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
                },
            ],
        },
    }
    manifest = write_manifest(tmp_path / "watched.yaml", [doc])
    watch = Watch(play_env, manifest, "--backoff", "0.3")
    try:
        watch.wait_line("sickens: ready")
        watch.wait_line("crashes: CrashLoopBackOff, restarting in 0.3s")
        watch.wait_line("crashes: CrashLoopBackOff, restarting in 0.6s")
        watch.wait_line("sickens: failed liveness probe, will be restarted")
        watch.wait_line("started watched/sickens")
        assert watch.interrupt() == 0
    finally:
        watch.kill()
    assert not any(
        "started watched/completes" in line for line in watch.lines[1:] if line.count("completes") > 1
    )
    containers = cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    attempts: dict[str, int] = {}
    for container in containers:
        name = container.metadata.name
        attempts[name] = max(attempts.get(name, 0), container.metadata.attempt)
    assert attempts["crashes"] >= 2 and attempts["sickens"] >= 1 and attempts["completes"] == 0
    # kubelet keeps one dead instance per container besides the current one
    assert sum(c.metadata.name == "crashes" for c in containers) <= 2
    table = play_env.play(manifest, "--status").stdout
    completes = next(line for line in table.splitlines() if " completes " in line)
    assert "Exited(0, Completed)" in completes and completes.split()[-1] == "0"
    play_env.play(manifest, "--down", "--grace-period", "0")
    assert play_env.leftovers() == []


def test_play_hooks_host_path_and_managed_files(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    host_dir = tmp_path / "host"
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hooks", "namespace": "play-e2e"},
        "spec": {
            "hostname": "box",
            "subdomain": "sub",
            "hostAliases": [{"ip": "192.0.2.10", "hostnames": ["alias.example"]}],
            "dnsPolicy": "None",
            "dnsConfig": {
                "nameservers": ["192.0.2.53"],
                "searches": ["play.example"],
                "options": [{"name": "ndots", "value": "2"}],
            },
            "containers": [
                {
                    "name": "main",
                    "image": registry.busybox,
                    "command": ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done'],
                    "env": [{"name": "WHO", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                    "workingDir": "/host",
                    "lifecycle": {
                        "postStart": {"exec": {"command": ["sh", "-c", "echo post $WHO > /host/post"]}},
                        "preStop": {"exec": {"command": ["sh", "-c", "echo pre > /host/pre"]}},
                    },
                    "volumeMounts": [
                        {"name": "host", "mountPath": "/host"},
                        {"name": "host", "mountPath": "/nested", "subPathExpr": "$(WHO)"},
                    ],
                }
            ],
            "volumes": [{"name": "host", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}}],
        },
    }
    manifest = write_manifest(tmp_path / "hooks.yaml", [doc])
    play_env.play(manifest)
    assert (host_dir / "play-e2e").is_dir()  # subPathExpr expanded and created
    wait_for(lambda: (host_dir / "post").exists() and (host_dir / "post").read_text() == "post play-e2e\n")

    (container,) = cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers

    def run(*cmd: str) -> str:
        out = cri.runtime.ExecSync(
            api_pb2.ExecSyncRequest(container_id=container.id, cmd=list(cmd), timeout=10), timeout=30
        )
        assert out.exit_code == 0, out.stderr
        return str(out.stdout.decode())

    assert run("pwd").strip() == "/host"
    assert run("hostname").strip() == "box"
    hosts = run("cat", "/etc/hosts")
    assert hosts.startswith("# Kubernetes-managed hosts file.\n")
    assert "\tbox.sub.play-e2e.svc.cluster.local\tbox\n" in hosts and "192.0.2.10\talias.example\n" in hosts
    resolv = run("cat", "/etc/resolv.conf")
    assert "nameserver 192.0.2.53" in resolv and "search play.example" in resolv and "ndots:2" in resolv
    run("sh", "-c", "echo via-subpath > /nested/file")
    assert (host_dir / "play-e2e" / "file").read_text() == "via-subpath\n"

    play_env.play(manifest, "--down")
    assert (host_dir / "pre").read_text() == "pre\n"  # the preStop hook ran before the stop
    assert play_env.leftovers() == []
    assert host_dir.is_dir()  # hostPath data belongs to the host


def test_play_watch_recreates_a_sandbox_that_died(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "phoenix"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "initContainers": [
                {
                    "name": "count",
                    "image": registry.busybox,
                    "command": ["sh", "-c", "echo run >> /data/runs"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "containers": [
                {
                    "name": "app",
                    "image": registry.busybox,
                    "command": ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done'],
                    "startupProbe": {"exec": {"command": ["cat", "/data/runs"]}, "periodSeconds": 1},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }
    manifest = write_manifest(tmp_path / "phoenix.yaml", [doc])
    watch = Watch(play_env, manifest)
    try:
        watch.wait_line("app: startup probe succeeded")
        (first,) = cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
        cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=first.id), timeout=30)
        watch.wait_line("is not ready: killing the pod and re-creating it")
        watch.wait_line("(attempt 1)")
        watch.wait_line("app: startup probe succeeded")
        assert watch.interrupt() == 0
    finally:
        watch.kill()
    (second,) = cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    assert second.id != first.id and second.metadata.attempt == 1
    containers = cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    attempts = sorted((c.metadata.name, c.metadata.attempt) for c in containers)
    assert attempts == [("app", 1), ("count", 1)]
    uid = second.labels["io.kubernetes.pod.uid"]
    runs = play_env.volume_root / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "data" / "runs"
    assert runs.read_text() == "run\nrun\n"  # the volume outlived the first sandbox
    play_env.play(manifest, "--down")
    assert play_env.leftovers() == []


def test_play_watch_survives_a_runtime_restart(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "steady"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "app",
                    "image": registry.busybox,
                    "command": ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done'],
                    "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
                }
            ],
        },
    }
    manifest = write_manifest(tmp_path / "steady.yaml", [doc])
    watch = Watch(play_env, manifest)
    try:
        watch.wait_line("app: ready")
        cri.restart()
        (container,) = cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
        assert container.state == api_pb2.CONTAINER_RUNNING and container.metadata.attempt == 0
        # the watcher still supervises through the restarted daemon: a container that stops comes back
        cri.runtime.ExecSync(
            api_pb2.ExecSyncRequest(container_id=container.id, cmd=["kill", "1"], timeout=10), timeout=30
        )
        watch.wait_line("app: Running -> Exited(0, Completed)")
        watch.wait_line("started steady/app")
        assert watch.interrupt() == 0
    finally:
        watch.kill()
    assert not any("re-creating" in line for line in watch.lines)
    play_env.play(manifest, "--down")
    assert play_env.leftovers() == []


def test_play_watch_http_and_tcp_probes_reach_the_pod(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probed"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "web",
                    "image": registry.busybox,
                    "command": [
                        "sh",
                        "-c",
                        "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www",
                    ],
                    "ports": [{"name": "http", "containerPort": 80}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                    # nothing listens on 81: the tcp check must fail and the container be restarted
                    "livenessProbe": {
                        "tcpSocket": {"port": 81},
                        "initialDelaySeconds": 1,
                        "periodSeconds": 1,
                        "failureThreshold": 2,
                    },
                }
            ],
        },
    }
    manifest = write_manifest(tmp_path / "probed.yaml", [doc])
    watch = Watch(play_env, manifest, "--backoff", "0.2")
    try:
        watch.wait_line("web: ready")
        failed = watch.wait_line("web: liveness probe failed: dial tcp 10.214.0.")
        assert ":81:" in failed
        watch.wait_line("web: failed liveness probe, will be restarted")
        watch.wait_line("started probed/web")
        assert watch.interrupt() == 0
    finally:
        watch.kill()
    play_env.play(manifest, "--down")
    assert play_env.leftovers() == []


def test_play_image_pull_errors(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "unpullable"},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "ok", "image": registry.busybox, "command": ["sleep", "3600"]},
                # nothing listens on port 1: the pull fails at once
                {"name": "missing", "image": "127.0.0.1:1/nope:latest"},
            ],
        },
    }
    manifest = write_manifest(tmp_path / "unpullable.yaml", [doc])
    result = play_env.play(manifest, check=False)
    assert result.returncode == 1
    assert "container 'missing': ErrImagePull:" in result.stderr and "--down" in result.stderr

    watch = Watch(play_env, manifest, "--backoff", "0.2")
    try:
        # the pod is running already: the watcher adopts it and keeps retrying the pull
        watch.wait_line("watching sandbox")
        watch.wait_line("missing: ErrImagePull:")
        watch.wait_line("retrying in 0.2s")
        assert watch.proc.poll() is None
        assert watch.interrupt() == 0
    finally:
        watch.kill()
    play_env.play(manifest, "--down")
    assert play_env.leftovers() == []


def test_play_host_namespaces(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "on-host"},
        "spec": {
            "hostNetwork": True,
            "hostPID": True,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": registry.busybox, "command": ["sleep", "3600"]}],
        },
    }
    manifest = write_manifest(tmp_path / "on-host.yaml", [doc])
    play_env.play(manifest)
    (container,) = cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers

    def run(*cmd: str) -> str:
        out = cri.runtime.ExecSync(
            api_pb2.ExecSyncRequest(container_id=container.id, cmd=list(cmd), timeout=10), timeout=30
        )
        assert out.exit_code == 0, out.stderr
        return str(out.stdout.decode())

    assert run("hostname").strip() == socket.gethostname()  # no pod hostname on the host network
    assert run("cat", "/etc/hosts").startswith("# Kubernetes-managed hosts file (host network).\n")
    assert run("cat", "/proc/1/comm").strip() != "sleep"  # the host's PID 1, not the container's
    assert os.readlink("/proc/self/ns/net") == run("readlink", "/proc/self/ns/net").strip()
    play_env.play(manifest, "--down")
    assert play_env.leftovers() == []


def test_play_security_context_and_resources(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "locked"},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "securityContext": {
                "runAsUser": 1000,
                "runAsGroup": 3000,
                "fsGroup": 2000,
                "supplementalGroups": [4000],
            },
            "containers": [
                {
                    "name": "c",
                    "image": registry.busybox,
                    "command": ["sleep", "3600"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {"limits": {"cpu": "200m", "memory": "48Mi"}},
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }
    manifest = write_manifest(tmp_path / "locked.yaml", [doc])
    play_env.play(manifest)
    (container,) = cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers

    def run(*cmd: str) -> tuple[int, str]:
        out = cri.runtime.ExecSync(
            api_pb2.ExecSyncRequest(container_id=container.id, cmd=list(cmd), timeout=10), timeout=30
        )
        return out.exit_code, str(out.stdout.decode() + out.stderr.decode())

    code, ids = run("id")
    assert code == 0 and "uid=1000" in ids and "gid=3000" in ids and "2000" in ids and "4000" in ids
    status = run("cat", "/proc/self/status")[1]
    assert "NoNewPrivs:\t1" in status and "CapEff:\t0000000000000000" in status
    assert run("touch", "/rootfs-file")[0] != 0  # read-only root
    assert run("touch", "/scratch/ok")[0] == 0  # the fsGroup owns the emptyDir
    assert run("stat", "-c", "%g", "/scratch/ok")[1].strip() == "2000"  # setgid directory
    uid = container.labels["io.kubernetes.pod.uid"]
    pod_memory = Path("/sys/fs/cgroup/memory/kubepods") / f"pod{uid}" / "memory.limit_in_bytes"
    assert pod_memory.read_text().strip() == str(48 * 2**20)  # Guaranteed: kubelet's pod-level limit
    play_env.play(manifest, "--down")
    assert play_env.leftovers() == []


def test_play_sidecar_runs_beside_the_app_and_stops_after_it(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    shared = [{"name": "shared", "mountPath": "/shared"}]
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "with-sidecar"},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            "initContainers": [
                {
                    "name": "ticker",
                    "image": registry.busybox,
                    "restartPolicy": "Always",
                    "command": [
                        "sh",
                        "-c",
                        'trap "exit 0" TERM; while true; do echo tick >> /shared/log; sleep 0.2; done',
                    ],
                    "startupProbe": {"exec": {"command": ["test", "-s", "/shared/log"]}, "periodSeconds": 1},
                    "volumeMounts": shared,
                },
                # runs only once the sidecar has started: its output is already there
                {
                    "name": "check",
                    "image": registry.busybox,
                    "command": ["test", "-s", "/shared/log"],
                    "volumeMounts": shared,
                },
            ],
            "containers": [
                {
                    "name": "app",
                    "image": registry.busybox,
                    "command": ["sh", "-c", "sleep 1; grep -q tick /shared/log"],
                    "volumeMounts": shared,
                }
            ],
            "volumes": [{"name": "shared", "emptyDir": {}}],
        },
    }
    manifest = write_manifest(tmp_path / "sidecar.yaml", [doc])
    play_env.play(manifest)
    status = play_env.play(manifest, "--status").stdout
    check = next(line for line in status.splitlines() if " check " in line)
    assert "Exited(0, Completed)" in check
    watch = Watch(play_env, manifest)
    try:
        # the app may have finished before the watcher came: it adopts the pod as it is
        watch.wait_line("all app containers completed: stopping the sidecars")
        watch.wait_line("ticker: Running -> Exited(0, Completed)")
        assert watch.interrupt() == 0
    finally:
        watch.kill()
    assert not any("started with-sidecar/app" in line for line in watch.lines)  # Never: no restart
    play_env.play(manifest, "--down")
    assert play_env.leftovers() == []


def test_play_downward_api_volume(
    cri: Any,
    play_env: PlayEnv,
    registry: TestRegistry,  # noqa: F811
    tmp_path: Path,
) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "informed", "labels": {"tier": "front"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "c",
                    "image": registry.busybox,
                    "command": ["sleep", "3600"],
                    "resources": {"limits": {"cpu": "300m", "memory": "40Mi"}},
                    "volumeMounts": [{"name": "podinfo", "mountPath": "/etc/podinfo"}],
                }
            ],
            "volumes": [
                {
                    "name": "podinfo",
                    "downwardAPI": {
                        "items": [
                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                            {
                                "path": "cpu",
                                "resourceFieldRef": {
                                    "containerName": "c",
                                    "resource": "limits.cpu",
                                    "divisor": "1m",
                                },
                            },
                        ]
                    },
                }
            ],
        },
    }
    manifest = write_manifest(tmp_path / "informed.yaml", [doc])
    play_env.play(manifest)
    (container,) = cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers

    def run(*cmd: str) -> tuple[int, str]:
        out = cri.runtime.ExecSync(
            api_pb2.ExecSyncRequest(container_id=container.id, cmd=list(cmd), timeout=10), timeout=30
        )
        return out.exit_code, str(out.stdout.decode())

    assert run("cat", "/etc/podinfo/labels") == (0, 'tier="front"')
    assert run("cat", "/etc/podinfo/cpu") == (0, "300")
    assert run("touch", "/etc/podinfo/x")[0] != 0  # read-only, as kubelet mounts it
    play_env.play(manifest, "--down")
    assert play_env.leftovers() == []
