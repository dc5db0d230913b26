"""`cri-py play` as a command: errors before any RPC, dry runs, an endpoint that is not there."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cri_py.play import play_main

POD = """apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: c
    image: busybox
    imagePullPolicy: IfNotPresent
"""


def run(tmp_path: Path, text: str, *flags: str) -> int:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(text)
    endpoint = f"unix://{tmp_path}/nothing.sock"
    return play_main([str(manifest), "--endpoint", endpoint, "--volume-root", str(tmp_path / "v"), *flags])


def test_unknown_field_fails_with_its_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, POD.replace("imagePullPolicy:", "imagePullPolicyy:")) == 1
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path}/pod.yaml#0: spec.containers[0].imagePullPolicyy: unknown field\n"
    assert not (tmp_path / "v").exists()


def test_env_from_is_refused_before_touching_the_runtime(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, POD + "    envFrom: [{secretRef: {name: s}}]\n") == 1
    assert "spec.containers[0].envFrom: not supported by cri-py play" in capsys.readouterr().err


def test_init_container_restart_policy_other_than_always_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = POD + "  initContainers: [{name: s, image: busybox, restartPolicy: Never}]\n"
    assert run(tmp_path, text, "--dry-run") == 1
    assert "spec.initContainers[0].restartPolicy: Unsupported value 'Never'" in capsys.readouterr().err
    sidecar = POD + "  initContainers: [{name: s, image: busybox, restartPolicy: Always}]\n"
    assert run(tmp_path, sidecar, "--dry-run") == 0


def test_dry_run_prints_the_cri_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, POD, "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.startswith("# RunPodSandbox (runtime_handler '')\nmetadata {\n  name: \"web\"\n")
    assert "# CreateContainer c\n" in out and 'log_path: "c/0.log"' in out


def test_unreachable_endpoint_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, POD, "--status") == 1
    assert "nothing.sock: UNAVAILABLE" in capsys.readouterr().err


def test_only_unix_endpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(POD)
    assert play_main([str(manifest), "--endpoint", "tcp://127.0.0.1:1", "--status"]) == 1
    assert "only unix:///path endpoints" in capsys.readouterr().err


def test_unsafe_sysctls_need_permission(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = POD.replace(
        "spec:\n", "spec:\n  securityContext: {sysctls: [{name: kernel.msgmax, value: '65536'}]}\n"
    )
    assert run(tmp_path, text, "--dry-run") == 1
    assert "sysctls[0]: SysctlForbidden: kernel.msgmax" in capsys.readouterr().err
    assert run(tmp_path, text, "--dry-run", "--allowed-unsafe-sysctls", "kernel.msg*") == 0
    host = POD.replace(
        "spec:\n",
        "spec:\n  hostNetwork: true\n  securityContext: {sysctls: [{name: net.ipv4.tcp_syncookies, value: '1'}]}\n",
    )
    assert run(tmp_path, host, "--dry-run") == 1
    assert "network sysctl and the pod uses the host network" in capsys.readouterr().err


def test_fields_without_a_cluster_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = POD + "  imagePullSecrets: [{name: s}]\n  nodeSelector: {a: b}\n"
    assert run(tmp_path, text, "--dry-run") == 0
    err = capsys.readouterr().err
    assert (
        "warning: default/web: ignoring spec.imagePullSecrets" in err and "ignoring spec.nodeSelector" in err
    )


def test_manifest_from_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(POD))
    assert play_main(["-", "--dry-run", "--volume-root", str(tmp_path)]) == 0
    assert 'name: "web"' in capsys.readouterr().out
